//! The man page ftpfs(1) and the shell completions (bash, zsh, fish), generated from the
//! command line's clap definition (`ftpfs --generate man|bash|zsh|fish`), so that they never
//! drift from what the binary accepts. The mount options, which clap sees as one `-o` string,
//! come from [`crate::mount_options`], the table the parser itself checks.

use std::io::{self, Write};

use clap_complete::Shell;

use crate::cli::Generate;
use crate::mount_options::{GENERIC, MOUNT_OPTIONS};

const ENVIRONMENT: &[(&str, &str)] = &[
    ("FTPFS_PASSWORD", "The password, when the URL has none (it is then blanked from the process's environment)."),
    ("FTPFS_LOG_FILE", "Where a background mount logs; without it, it logs to syslog (the journal)."),
    ("RUST_LOG", "What to log, e.g. ftpfs=debug (overrides -v)."),
    ("XDG_CACHE_HOME", "The default cache_dir is $XDG_CACHE_HOME/ftpfs (else $HOME/.cache/ftpfs)."),
];

const EXAMPLES: &[(&str, &str)] = &[
    ("ftpfs ftp://alice@ftp.example.org/pub ~/ftp", "Mount /pub; the password comes from ~/.netrc or a prompt."),
    ("fusermount -u ~/ftp", "Unmount it."),
    (
        "ftpfs -o tls,fingerprint=SHA256:AB:CD:... ftp://alice@nas.local ~/nas",
        "FTPS with a self-signed certificate, pinned.",
    ),
    ("ftpfs -o proxy=socks5://127.0.0.1:1080 ftp://ftp.example.org ~/ftp", "Through an ssh -D tunnel."),
    ("ftpfs stats ~/ftp", "What the mount is doing now."),
    ("ftpfs refresh -r ~/ftp ~/ftp/incoming", "See what others changed under incoming now, not in cache_timeout."),
    (
        "ftp://alice@nas.local /mnt/nas fuse.ftpfs password_file=/etc/nas.pw,_netdev,allow_other 0 0",
        "An /etc/fstab line.",
    ),
];

/// Text for a roff line: backslashes escaped, hyphens as minus signs, and no control
/// character (`.` or `'`) at the start.
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) { format!("\\&{escaped}") } else { escaped }
}

/// A section of tagged paragraphs.
fn section(out: &mut dyn Write, title: &str, items: &[(&str, &str)], bold: bool) -> io::Result<()> {
    writeln!(out, ".SH \"{title}\"")?;
    for (tag, text) in items {
        writeln!(out, ".TP")?;
        if bold {
            writeln!(out, "\\fB{}\\fR", roff(tag))?;
        } else {
            writeln!(out, "{}", roff(tag))?;
        }
        writeln!(out, "{}", roff(text))?;
    }
    Ok(())
}

/// ftpfs(1) in roff.
pub fn man_page(out: &mut dyn Write) -> io::Result<()> {
    let man = clap_mangen::Man::new(crate::cli::command());
    man.render_title(out)?;
    man.render_name_section(out)?;
    // clap_mangen's synopsis shows `-o` without its value and the forms not apart.
    writeln!(
        out,
        ".SH SYNOPSIS\n\\fBftpfs\\fR [\\fB\\-f\\fR] [\\fB\\-v\\fR]... [\\fB\\-o\\fR \\fIOPT\\fR[,\\fIOPT\\fR]...] \\fIURL\\fR \\fIMOUNTPOINT\\fR\n\
         .br\n\\fBftpfs \\-\\-probe\\fR [\\fB\\-o\\fR \\fIOPT\\fR[,\\fIOPT\\fR]...] \\fIURL\\fR\n\
         .br\n\\fBftpfs stats\\fR \\fIMOUNTPOINT\\fR\n\
         .br\n\\fBftpfs refresh\\fR [\\fB\\-r\\fR] \\fIMOUNTPOINT\\fR [\\fIPATH\\fR]\n\
         .br\n\\fBftpfs cache clear\\fR \\fIMOUNTPOINT\\fR|\\fIURL\\fR [\\fB\\-o\\fR cache_dir=\\fIDIR\\fR]\n\
         .br\n\\fBftpfs \\-\\-generate\\fR \\fBman\\fR|\\fBbash\\fR|\\fBzsh\\fR|\\fBfish\\fR"
    )?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    section(
        out,
        "COMMANDS",
        &[
            (
                "ftpfs stats MOUNTPOINT",
                "Print what a running mount is doing: connections busy and idle, transfers in flight with \
             their bytes and rates, retries and errors by kind, listing cache hits and misses, \
             read-ahead, files fetched ahead and the write-back queue. The mount answers on a Unix \
             socket in the abstract namespace named after its device number (ftpfs-stats-MAJOR:MINOR), \
             to its own user and root only (to everyone with allow_other).",
            ),
            (
                "ftpfs refresh [-r] MOUNTPOINT [PATH]",
                "Make the next access to PATH (a file or directory inside the mount; the whole mount \
             without one) see the server as it is now: the mount forgets the cached listings there \
             (PATH's own and its directory's, with -r every one below PATH) and what it fetched ahead, \
             and the kernel the names, attributes and pages it holds of them. Open files keep what \
             they hold. Only the mount's own user and root may ask.",
            ),
            (
                "ftpfs cache clear MOUNTPOINT|URL [-o cache_dir=DIR]",
                "Empty the disk cache (-o disk_cache): of a running mount, given its mount point (the \
                 kernel's copies of file content go too, so the next read of every file comes from the \
                 server), or of a server and directory not mounted now, given its URL (and the cache_dir \
                 the mount used, if not the default). A URL whose mount is running is refused.",
            ),
        ],
        true,
    )?;
    section(out, "MOUNT OPTIONS", MOUNT_OPTIONS, true)?;
    writeln!(
        out,
        ".PP\n{}",
        roff(&format!(
            "Options that mount(8), fstab and systemd pass are accepted and ignored: {}, x-*, X-*, comment=.",
            GENERIC.join(", ")
        ))
    )?;
    section(out, "ENVIRONMENT", ENVIRONMENT, true)?;
    section(out, "EXAMPLES", EXAMPLES, false)?;
    writeln!(out, ".SH \"SEE ALSO\"\n\\fBfusermount\\fR(1), \\fBmount.fuse\\fR(8), \\fBfstab\\fR(5)")?;
    man.render_version_section(out)
}

/// Writes what `--generate` asks for.
pub fn generate(what: Generate, out: &mut dyn Write) -> io::Result<()> {
    let shell = match what {
        Generate::Man => return man_page(out),
        Generate::Bash => Shell::Bash,
        Generate::Zsh => Shell::Zsh,
        Generate::Fish => Shell::Fish,
    };
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut crate::cli::command(), "ftpfs", &mut buf);
    out.write_all(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value of the kind a documented option's form names.
    fn sample(form: &str) -> String {
        // `name[=VALUE]`: the value may be left out; given here.
        let form = form.replace("[=", "=").replace(']', "");
        let Some((key, kind)) = form.split_once('=') else { return form.to_string() };
        let value = match kind {
            "N" => "2".to_string(),
            "S" => "5".to_string(),
            "OCT" => "022".to_string(),
            "PATH" | "DIR" | "FILE" => "/tmp/x".to_string(),
            "UP[:DOWN" => "4M:1M".to_string(),
            "CHARSET" => "latin1".to_string(),
            "+HH:MM" => "+02:00".to_string(),
            "SHA256:HEX" => format!("SHA256:{}", ["AB"; 32].join(":")),
            "URL" => "socks5://127.0.0.1:1080".to_string(),
            "SIZE" => "10G".to_string(),
            other => other.to_string(),
        };
        format!("{key}={value}")
    }

    #[test]
    fn every_documented_mount_option_parses() {
        for (form, text) in MOUNT_OPTIONS {
            assert!(!text.is_empty());
            let opt = sample(form);
            crate::cli::parse_mount_options(std::slice::from_ref(&opt))
                .unwrap_or_else(|e| panic!("{form} ({opt}): {e}"));
        }
    }

    #[test]
    fn the_man_page_names_every_option_and_the_stats_command() {
        let mut page = Vec::new();
        man_page(&mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(page.starts_with(".ie") || page.starts_with(".TH"), "{}", &page[..80]);
        assert!(page.contains(".TH ftpfs 1"), "{}", &page[..200]);
        for (form, _) in MOUNT_OPTIONS {
            assert!(page.contains(&roff(form)), "{form} missing");
        }
        for needle in ["\\-\\-probe", "stats", "fuse.ftpfs", "FTPFS_LOG_FILE", "SEE ALSO"] {
            assert!(page.contains(needle), "{needle} missing");
        }
    }

    #[test]
    fn completions_know_the_options() {
        for (what, needle) in [(Generate::Bash, "--probe"), (Generate::Zsh, "--probe"), (Generate::Fish, "probe")] {
            let mut out = Vec::new();
            generate(what, &mut out).unwrap();
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains(needle) && text.contains("stats"), "{what:?}: {text}");
        }
    }
}

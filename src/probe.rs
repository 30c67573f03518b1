//! `ftpfs --probe URL`: connects, logs in, tries the things a mount relies on, and prints what
//! the server offers and which mount options suit it. Nothing is mounted or changed.

use crate::cli::{MountOpts, Target};
use crate::ftp::listing::{ListContext, parse_dos_line, parse_unix_line};
use crate::ftp::{ConnectOptions, Connection, TlsMode};

/// Prints one line of the report with control characters escaped
/// ([`crate::printable::printable`]): most of it is what the server said (greeting, SYST,
/// FEAT, paths, errors), and it goes to the user's terminal.
macro_rules! say {
    ($($arg:tt)*) => {
        println!("{}", crate::printable::printable(&format!($($arg)*)))
    };
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Which LIST dialect the lines of a listing are in.
fn list_dialect(raw: &[u8]) -> &'static str {
    let ctx = ListContext::now_utc();
    let text = String::from_utf8_lossy(raw);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with("total ")).collect();
    if lines.is_empty() {
        return "unknown (empty directory)";
    }
    let unix = lines.iter().filter(|l| parse_unix_line(l, &ctx).is_some()).count();
    let dos = lines.iter().filter(|l| parse_dos_line(l, &ctx).is_some()).count();
    if unix * 2 >= lines.len() {
        "Unix ls -l"
    } else if dos * 2 >= lines.len() {
        "DOS/IIS"
    } else {
        "unrecognised (please report it)"
    }
}

/// Runs the probe and prints the report on stdout.
pub fn run(opts: &ConnectOptions, target: &Target, mount: &MountOpts) -> Result<(), String> {
    let mut c = Connection::connect(opts).map_err(|e| format!("cannot connect to {}: {e}", target.display_url()))?;
    let f = c.features().clone();
    let root = match &target.dir {
        Some(d) => d.clone(),
        None => c.pwd().unwrap_or_else(|_| "/".into()),
    };
    say!("server        {}", target.display_url());
    if let Some(proxy) = &mount.proxy {
        say!("proxy         {} (control and data connections)", proxy.display());
    }
    say!("greeting      {}", c.welcome().lines().last().unwrap_or(""));
    say!("system        {}", c.syst().unwrap_or_else(|e| format!("({e})")));
    match c.tls_version() {
        Some(v) => say!(
            "TLS           {v}, data connections {}",
            if opts.tls_mode == TlsMode::Off { "plain" } else { "encrypted" }
        ),
        None => say!("TLS           not used (server offers AUTH TLS: {})", yes(f.auth_tls())),
    }
    if let Some(fp) = c.tls_fingerprint() {
        say!("certificate   {fp} (once the server's owner confirms it, pin it with -o fingerprint={fp})");
    }
    say!("features      {}", if f.raw.is_empty() { "(FEAT not supported)".into() } else { f.raw.join(", ") });
    say!(
        "UTF8 {}  SIZE {}  MDTM {}  MFMT {}  REST STREAM {}  EPSV {}",
        yes(f.utf8),
        yes(f.size),
        yes(f.mdtm),
        yes(f.mfmt),
        yes(f.rest_stream),
        yes(f.epsv)
    );

    let mut suggest: Vec<&str> = Vec::new();
    let mlsd_ok = if f.mlst.is_some() {
        match c.mlsd(&root) {
            Ok(entries) => {
                say!("listing       MLSD ({} entries in {root})", entries.len());
                true
            }
            Err(e) => {
                say!("listing       MLSD advertised but failed ({e})");
                suggest.push("no_mlsd");
                false
            }
        }
    } else {
        false
    };
    match c.list_raw(&root) {
        Ok(raw) => {
            if !mlsd_ok {
                say!("listing       LIST, {} dialect", list_dialect(&raw));
            }
        }
        Err(e) => say!("listing       LIST failed: {e}"),
    }
    let passive = if opts.data_mode == crate::ftp::DataMode::Active {
        "active (PORT/EPRT)"
    } else if c.uses_pasv_fallback() {
        suggest.push("no_epsv");
        "PASV (EPSV failed)"
    } else if opts.use_epsv {
        "EPSV"
    } else {
        "PASV"
    };
    say!("data channel  {passive}");
    if c.tls_version().is_none() && f.auth_tls() {
        suggest.push("tls");
    }
    if !f.mfmt {
        say!("note          no MFMT: file times cannot be set (cp -p, rsync -t keep the server's times)");
    }
    if mount.connections > 2 {
        say!("note          if the server refuses connections (421), try connections=2");
    }
    c.quit();
    if suggest.is_empty() {
        say!("suggested     no special options needed");
    } else {
        say!("suggested     -o {}", suggest.join(","));
    }
    Ok(())
}

//! The command line: arguments, the FTP URL, `-o` mount options and where the password comes from.
//!
//! Parsing only: nothing here touches the network or mounts anything. The password is resolved
//! in order from the URL, `FTPFS_PASSWORD`, `~/.netrc`, and a no-echo prompt on a terminal.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use percent_encoding::percent_decode_str;

use crate::ftp::{ConnectOptions, DataMode, Fingerprint, Proxy, Secret, TlsContext, TlsMode, TlsSettings};

/// The command line's definition, with the `-o` help made from the table of mount options.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    Args::command().mut_arg("options", |a| a.help(crate::mount_options::help()))
}

/// Parses the process's arguments (clap prints help or an error and exits on its own).
pub fn parse_args() -> Args {
    use clap::FromArgMatches;
    Args::from_arg_matches(&command().get_matches()).unwrap_or_else(|e| e.exit())
}

/// Memory for files fetched ahead when `ahead_mib` is not given, in MiB.
pub const DEFAULT_AHEAD_MIB: u64 = 32;

const LONG_ABOUT: &str = "Mount a remote FTP server as a local directory (FUSE).

ftpfs turns the kernel's file operations into FTP commands over a small pool of control \
connections: listings (MLSD or LIST) are cached, reads resume with REST, writes are uploaded \
with STOR or APPE. It goes to the background once the mount is ready, like sshfs; unmount with \
fusermount -u MOUNTPOINT. Mount options (-o) are the same on the command line and in /etc/fstab \
(type fuse.ftpfs); the man page ftpfs(1) describes each.";

#[derive(Parser, Debug)]
#[command(
    name = "ftpfs",
    version,
    about,
    long_about = LONG_ABOUT,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    disable_help_subcommand = true
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// ftp://[user[:password]@]host[:port][/dir] (or ftps:// for implicit TLS)
    #[arg(required_unless_present = "generate")]
    pub url: Option<String>,
    /// Where to mount it (an existing, empty directory); not needed with --probe
    #[arg(required_unless_present_any = ["probe", "generate"])]
    pub mountpoint: Option<PathBuf>,
    /// Connect, log in and report what the server offers and which options suit it; mount nothing
    #[arg(long)]
    pub probe: bool,
    /// Stay in the foreground (default: go to the background once the mount is ready)
    #[arg(short = 'f', long = "foreground")]
    pub foreground: bool,
    /// Mount options (the help text is made from crate::mount_options by [`command`])
    #[arg(short = 'o', value_name = "OPT[,OPT...]")]
    pub options: Vec<String>,
    /// More logging (repeat for more); RUST_LOG overrides
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Print the man page (man) or a shell completion script (bash, zsh, fish) and exit
    #[arg(long, value_enum, value_name = "WHAT", conflicts_with_all = ["url", "mountpoint", "probe"])]
    pub generate: Option<Generate>,
}

/// What `ftpfs` does besides mounting.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Show what a running mount is doing: connections, transfers in flight, retries and
    /// errors, listing cache, read-ahead, files fetched ahead and the write-back queue
    Stats {
        /// The mount point of a running ftpfs mount
        mountpoint: PathBuf,
    },
    /// Manage the disk cache (-o disk_cache)
    Cache {
        #[command(subcommand)]
        action: CacheAction,
    },
    /// Forget the cached listings and attributes at PATH (the whole mount without it), so the
    /// next access sees the server as it is now; with -r, everything below PATH too
    Refresh {
        /// The mount point of a running ftpfs mount
        mountpoint: PathBuf,
        /// A file or directory inside the mount
        path: Option<PathBuf>,
        /// Also every directory below PATH
        #[arg(short = 'r', long)]
        recursive: bool,
    },
}

/// What `ftpfs cache` does.
#[derive(clap::Subcommand, Debug)]
pub enum CacheAction {
    /// Empty the disk cache (-o disk_cache) of a running mount (give its mount point), or of a
    /// server and directory not mounted now (give its URL; with -o cache_dir=DIR when the mount
    /// used one)
    Clear {
        /// A mount point, or ftp://[user@]host[:port][/dir]
        target: String,
        /// cache_dir=DIR, as the mount was given
        #[arg(short = 'o', value_name = "cache_dir=DIR")]
        options: Vec<String>,
    },
}

/// What `--generate` prints.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Generate {
    Man,
    Bash,
    Zsh,
    Fish,
}

/// Mount options after parsing `-o`.
#[derive(Clone, Debug, PartialEq)]
pub struct MountOpts {
    pub read_only: bool,
    pub allow_other: bool,
    pub allow_root: bool,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub umask: u32,
    pub connections: usize,
    pub cache_timeout: Duration,
    pub timeout: Duration,
    /// Silence on a control connection during a transfer before a NOOP (where the server
    /// takes one then); zero: never.
    pub keepalive: Duration,
    pub active: bool,
    pub no_epsv: bool,
    pub no_mlsd: bool,
    pub pasv_ip: bool,
    pub list_tz_offset: i64,
    /// Memory for small files fetched ahead of the reader, in MiB; 0 turns work ahead off.
    /// Unset: [`DEFAULT_AHEAD_MIB`] when the server turns out to be far away (see mount).
    pub ahead_mib: Option<u64>,
    /// close() returns once the data is spooled on disk; uploads run in the background.
    pub writeback: bool,
    /// Content read through the mount is kept in `cache_dir` across mounts: `Some(None)` for the
    /// default size, `Some(Some(bytes))` for a given one.
    pub disk_cache: Option<Option<u64>>,
    /// Whole-file uploads go to a temporary name and are renamed over the target at the end.
    pub atomic_upload: bool,
    /// Mount without waiting for the server; connect on first use (`backend::delayed`).
    pub delay_connect: bool,
    /// Check each whole-file upload against the server's digest.
    pub verify_upload: bool,
    /// Absolute link targets inside the mounted directory are shown relative (default on).
    pub transform_symlinks: bool,
    /// Links are shown as what the server resolves them to.
    pub follow_symlinks: bool,
    /// Bytes per second of file transfers, up and down (`bwlimit=UP[:DOWN]`).
    pub bwlimit: (Option<u64>, Option<u64>),
    /// Commands per second on all control connections together.
    pub max_requests_per_second: Option<u64>,
    /// A file time the server cannot set is ignored instead of failing with EPERM.
    pub ignore_time_errors: bool,
    /// TLS asked for with `-o tls` (the URL's `ftps://` asks for implicit TLS by itself).
    pub tls: Option<TlsMode>,
    pub cafile: Option<PathBuf>,
    /// Our certificate (and its key) for servers that require one.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub no_verify: bool,
    /// Trust exactly the server certificate with this SHA-256 (`fingerprint=SHA256:…`).
    pub fingerprint: Option<Fingerprint>,
    /// Reach the server through this SOCKS5 or HTTP CONNECT proxy.
    pub proxy: Option<Proxy>,
    pub netrc: Option<PathBuf>,
    pub password_file: Option<PathBuf>,
    /// The server's character set for names, when not UTF-8.
    pub encoding: Option<&'static encoding_rs::Encoding>,
    /// Where temp copies of files changed at random offsets live (`None`: [`default_cache_dir`]).
    pub cache_dir: Option<PathBuf>,
    /// Let the kernel check permissions against the mode bits shown. `None`: on with
    /// allow_other (otherwise every local user would act with the FTP account's rights).
    pub default_permissions: Option<bool>,
}

impl MountOpts {
    /// Whether the kernel checks permissions (default_permissions).
    pub fn kernel_checks_permissions(&self) -> bool {
        self.default_permissions.unwrap_or(self.allow_other)
    }
}

/// `$XDG_CACHE_HOME/ftpfs`, else `$HOME/.cache/ftpfs`, else `/var/tmp/ftpfs-<uid>`: private
/// to the user, on disk (see [`crate::private_files`]).
pub fn default_cache_dir() -> PathBuf {
    crate::private_files::default_cache_dir()
}

impl Default for MountOpts {
    fn default() -> Self {
        MountOpts {
            read_only: false,
            allow_other: false,
            allow_root: false,
            uid: None,
            gid: None,
            umask: 0,
            connections: 4,
            cache_timeout: Duration::from_secs(20),
            timeout: Duration::from_secs(30),
            keepalive: crate::ftp::control::DEFAULT_KEEPALIVE,
            active: false,
            no_epsv: false,
            no_mlsd: false,
            pasv_ip: false,
            list_tz_offset: 0,
            ahead_mib: None,
            writeback: false,
            disk_cache: None,
            atomic_upload: false,
            delay_connect: false,
            verify_upload: false,
            transform_symlinks: true,
            follow_symlinks: false,
            bwlimit: (None, None),
            max_requests_per_second: None,
            ignore_time_errors: false,
            tls: None,
            cafile: None,
            cert: None,
            key: None,
            no_verify: false,
            fingerprint: None,
            proxy: None,
            netrc: None,
            password_file: None,
            encoding: None,
            cache_dir: None,
            default_permissions: None,
        }
    }
}

/// A size in bytes with an optional K, M, G or T suffix (powers of 1024): `10G`, `512M`.
pub fn parse_size(v: &str) -> Result<u64, String> {
    let bad = || format!("invalid size {v:?} (a number of bytes, or with K, M, G or T: 10G)");
    let (digits, shift) = match v.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(bad()),
            };
            (&v[..i], shift)
        }
        _ => (v, 0),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(1 << shift).filter(|&b| b > 0).ok_or_else(bad)
}

fn number<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, String> {
    v.parse().map_err(|_| format!("invalid value for {key}: {v:?}"))
}

fn seconds(key: &str, v: &str) -> Result<Duration, String> {
    let s: f64 = number(key, v)?;
    if !(0.0..=86_400.0 * 365.0).contains(&s) {
        return Err(format!("invalid value for {key}: {v:?}"));
    }
    Ok(Duration::from_secs_f64(s))
}

/// An unknown option with an `@` is not shown: `-o` splits at commas, so it may be the rest
/// of a proxy's password.
const UNKNOWN_WITH_AT: &str = "unknown mount option with an @ (not shown: it may be part of a password; \
                               a comma in the proxy's password cuts it in two)";

/// Parses every `-o` argument. An unknown option is an error.
pub fn parse_mount_options(args: &[String]) -> Result<MountOpts, String> {
    let mut o = MountOpts::default();
    for opt in args.iter().flat_map(|a| a.split(',')).map(str::trim).filter(|s| !s.is_empty()) {
        let (key, value) = match opt.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (opt, None),
        };
        if key == "ftps" {
            return Err("ftps is not an option: use tls (AUTH TLS on an ftp:// URL) or an ftps:// URL \
                        (TLS from the first byte, port 990)"
                .into());
        }
        // Every option accepted is one the man page and --help document.
        if !crate::mount_options::is_documented(key) && !crate::mount_options::is_generic(opt) {
            return Err(if opt.contains('@') {
                UNKNOWN_WITH_AT.into()
            } else {
                format!("unknown mount option: {opt}")
            });
        }
        match (key, value) {
            ("ro", None) => o.read_only = true,
            ("allow_other", None) => o.allow_other = true,
            ("allow_root", None) => o.allow_root = true,
            ("uid", Some(v)) => o.uid = Some(number(key, v)?),
            ("gid", Some(v)) => o.gid = Some(number(key, v)?),
            ("umask", Some(v)) => {
                o.umask = u32::from_str_radix(v, 8).map_err(|_| format!("invalid value for umask: {v:?}"))? & 0o777
            }
            ("connections", Some(v)) => {
                o.connections = number(key, v)?;
                if !(1..=32).contains(&o.connections) {
                    return Err("connections must be between 1 and 32".into());
                }
            }
            ("cache_timeout", Some(v)) => o.cache_timeout = seconds(key, v)?,
            ("timeout", Some(v)) => {
                o.timeout = seconds(key, v)?;
                if o.timeout.is_zero() {
                    return Err("timeout must be more than 0".into());
                }
            }
            ("keepalive", Some(v)) => o.keepalive = seconds(key, v)?,
            ("active", None) => o.active = true,
            ("no_epsv", None) => o.no_epsv = true,
            ("no_mlsd", None) => o.no_mlsd = true,
            ("pasv_ip", None) => o.pasv_ip = true,
            ("list_tz", Some(v)) => o.list_tz_offset = parse_tz(v)?,
            ("writeback", None) => o.writeback = true,
            ("disk_cache", None) => o.disk_cache = Some(None),
            ("disk_cache", Some(v)) => o.disk_cache = Some(Some(parse_size(v)?)),
            ("atomic_upload", None) => o.atomic_upload = true,
            ("delay_connect", None) => o.delay_connect = true,
            ("verify_upload", None) => o.verify_upload = true,
            ("transform_symlinks", None) => o.transform_symlinks = true,
            ("no_transform_symlinks", None) => o.transform_symlinks = false,
            ("follow_symlinks", None) => o.follow_symlinks = true,
            ("bwlimit", Some(v)) => {
                // 0 is off, as in rclone.
                let rate = |r: &str| if r == "off" || r == "0" { Ok(None) } else { parse_size(r).map(Some) };
                o.bwlimit = match v.split_once(':') {
                    Some((up, down)) => (rate(up)?, rate(down)?),
                    None => (rate(v)?, rate(v)?),
                };
            }
            ("max_requests_per_second", Some(v)) => {
                o.max_requests_per_second = Some(number(key, v)?).filter(|&n: &u64| n > 0);
            }
            ("ignore_time_errors", None) => o.ignore_time_errors = true,
            ("ahead_mib", Some(v)) => {
                let mib = number(key, v)?;
                o.ahead_mib = Some(mib);
                if mib > 4096 {
                    return Err("ahead_mib must be at most 4096".into());
                }
            }
            ("tls", None) | ("tls", Some("explicit")) => o.tls = Some(TlsMode::Explicit),
            ("tls", Some("implicit")) => o.tls = Some(TlsMode::Implicit),
            ("cafile", Some(v)) if !v.is_empty() => o.cafile = Some(PathBuf::from(v)),
            ("cert", Some(v)) if !v.is_empty() => o.cert = Some(PathBuf::from(v)),
            ("key", Some(v)) if !v.is_empty() => o.key = Some(PathBuf::from(v)),
            ("no_verify" | "no_check_certificate", None) => o.no_verify = true,
            ("fingerprint", Some(v)) => o.fingerprint = Some(Fingerprint::parse(v)?),
            ("proxy", Some(v)) => o.proxy = Some(Proxy::parse(v)?),
            ("netrc", Some(v)) if !v.is_empty() => o.netrc = Some(PathBuf::from(v)),
            ("password_file", Some(v)) if !v.is_empty() => o.password_file = Some(PathBuf::from(v)),
            ("encoding", Some(v)) => {
                let enc = encoding_rs::Encoding::for_label(v.as_bytes())
                    .ok_or_else(|| format!("unknown encoding {v:?} (try latin1, cp1251, shift_jis, gbk, …)"))?;
                o.encoding = (enc != encoding_rs::UTF_8).then_some(enc);
            }
            ("cache_dir", Some(v)) if !v.is_empty() => o.cache_dir = Some(PathBuf::from(v)),
            ("default_permissions", None) => o.default_permissions = Some(true),
            ("no_default_permissions", None) => o.default_permissions = Some(false),
            _ if crate::mount_options::is_generic(opt) => log::debug!("ignoring mount option {opt}"),
            _ if opt.contains('@') => return Err(UNKNOWN_WITH_AT.into()),
            _ => return Err(format!("invalid mount option: {opt} (see man ftpfs for its form)")),
        }
    }
    Ok(o)
}

/// `+HH:MM`, `-HH`, `UTC` → seconds east of UTC.
fn parse_tz(v: &str) -> Result<i64, String> {
    let bad = || format!("invalid value for list_tz: {v:?} (use +HH:MM or -HH:MM)");
    if v.eq_ignore_ascii_case("utc") || v == "0" {
        return Ok(0);
    }
    let (sign, rest) = match v.as_bytes().first() {
        Some(b'+') => (1, &v[1..]),
        Some(b'-') => (-1, &v[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
    let (h, m): (i64, i64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 14 || m > 59 {
        return Err(bad());
    }
    Ok(sign * (h * 3600 + m * 60))
}

/// What the URL says.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<Secret>,
    /// The remote directory; `None` means the login directory.
    pub dir: Option<String>,
    /// `ftps://` means implicit TLS.
    pub implicit_tls: bool,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.display_url())
    }
}

impl Target {
    /// `ftp://user@host:port/dir`, never with the password: for the mount table and messages.
    pub fn display_url(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        let port = if self.port == 21 { String::new() } else { format!(":{}", self.port) };
        let dir = self.dir.as_deref().unwrap_or("/");
        // Keep the fsname free of characters that would break the mount table's option list.
        let clean = |s: &str| s.replace([',', ' ', '\t', '\n', '\\'], "_");
        let (scheme, default_port) = if self.implicit_tls { ("ftps", 990) } else { ("ftp", 21) };
        let port = if self.port == default_port { String::new() } else { port };
        clean(&format!("{scheme}://{}@{host}{port}{dir}", self.user))
    }
}

fn decode(s: &str) -> Result<String, String> {
    percent_decode_str(s).decode_utf8().map(|c| c.into_owned()).map_err(|_| "the URL is not valid UTF-8".to_string())
}

/// Parses `ftp://[user[:password]@]host[:port][/dir]`.
pub fn parse_url(s: &str) -> Result<Target, String> {
    let url = url::Url::parse(s).map_err(|e| format!("invalid URL {:?}: {e}", redact(s)))?;
    let implicit_tls = match url.scheme() {
        "ftp" => false,
        "ftps" => true,
        other => return Err(format!("unsupported URL scheme {other:?}: use ftp:// or ftps://")),
    };
    let host = url.host_str().ok_or("the URL has no host")?.trim_start_matches('[').trim_end_matches(']').to_string();
    let user = match decode(url.username())? {
        u if u.is_empty() => "anonymous".to_string(),
        u => u,
    };
    let password = url.password().map(decode).transpose()?.map(Secret::new);
    let path = decode(url.path())?;
    let dir = match path.trim_end_matches('/') {
        "" => None,
        p => Some(p.to_string()),
    };
    for part in [&host, &user].into_iter().chain(dir.as_ref()) {
        if part.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            return Err("the URL contains a line break or NUL".into());
        }
    }
    let port = url.port().unwrap_or(if implicit_tls { 990 } else { 21 });
    Ok(Target { host, port, user, password, dir, implicit_tls })
}

/// The URL with any password replaced by `****`, for error messages. A URL the parser refuses
/// is read loosely: everything from the first `:` after the scheme to the last `@` is hidden.
pub fn redact(s: &str) -> String {
    match password_in(s, false).map(|r| r.start + 1..r.end).or_else(|| password_in(s, true)) {
        Some(r) => format!("{}****{}", &s[..r.start], &s[r.end..]),
        None => s.to_string(),
    }
}

/// Where the password of a URL in `s` (the URL argument, or `-o proxy=…` among other options)
/// is: the byte range of `:password`, in every form the URL parser (WHATWG, the `url` crate)
/// takes with one: `ftp://u:pw@h`, and for the schemes it treats as special (ftp, http) also
/// `ftp:u:pw@h`, `ftp:/u:pw@h`, `ftp:\\u:pw@h`, `ftp:///u:pw@h`, any case, with spaces or
/// control characters before. `None` when there is no password.
pub fn password_span(s: &str) -> Option<std::ops::Range<usize>> {
    password_in(s, false)
}

/// [`password_span`]; `loose`: the authority runs to the last `@` of `s`, for text the parser
/// refused (a password with a `/` in it, say), and the range is the password alone.
fn password_in(s: &str, loose: bool) -> Option<std::ops::Range<usize>> {
    let in_scheme = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.');
    let mut from = 0;
    while let Some(found) = s[from..].find(':') {
        let colon = from + found;
        from = colon + 1;
        let start = s[..colon].char_indices().rev().find(|&(_, c)| !in_scheme(c)).map_or(0, |(i, c)| i + c.len_utf8());
        let scheme = &s[start..colon];
        if !scheme.starts_with(|c: char| c.is_ascii_alphabetic()) {
            continue;
        }
        let special = ["ftp", "http", "https", "ws", "wss", "file"].iter().any(|k| scheme.eq_ignore_ascii_case(k));
        let rest = &s[colon + 1..];
        let slashes = rest.len() - rest.trim_start_matches(['/', '\\', '\t', '\n', '\r']).len();
        if !special && slashes < 2 {
            continue;
        }
        let auth_start = colon + 1 + slashes;
        let ends: &[char] = if special { &['/', '\\', '?', '#'] } else { &['/', '?', '#'] };
        let auth_end = match loose {
            true => s.len(),
            false => s[auth_start..].find(ends).map_or(s.len(), |i| auth_start + i),
        };
        let authority = &s[auth_start..auth_end];
        let Some(at) = authority.rfind('@') else { continue };
        let Some(pw) = authority[..at].find(':') else { continue };
        let skip = usize::from(loose);
        return Some(auth_start + pw + skip..auth_start + at);
    }
    None
}

/// Warns when a file holding a password can be read by other users.
fn warn_if_readable_by_others(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o044 != 0
    {
        eprintln!("ftpfs: warning: {} is readable by other users (chmod 600 it)", path.display());
    }
}

/// Finds the password (and maybe the user) for `target`: the URL, `FTPFS_PASSWORD`,
/// `-o password_file=`, `-o netrc=` or `~/.netrc`, then a prompt on a terminal.
pub fn resolve_password(target: &mut Target, opts: &MountOpts) -> Result<Secret, String> {
    if let Some(p) = target.password.take() {
        return Ok(p);
    }
    if let Ok(p) = std::env::var("FTPFS_PASSWORD") {
        return Ok(Secret::new(p));
    }
    if let Some(path) = &opts.password_file {
        warn_if_readable_by_others(path);
        let text = std::fs::read_to_string(path).map_err(|e| format!("password_file {}: {e}", path.display()))?;
        let first = text.lines().next().unwrap_or("").to_string();
        return Ok(Secret::new(first));
    }
    let netrc = match &opts.netrc {
        Some(p) => {
            if !p.exists() {
                return Err(format!("netrc {}: no such file", p.display()));
            }
            Some(p.clone())
        }
        None => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".netrc")),
    };
    if let Some(netrc) = netrc
        && let Ok(text) = std::fs::read_to_string(&netrc)
    {
        warn_if_readable_by_others(&netrc);
        if let Some((login, password)) = crate::netrc::lookup(&text, &target.host) {
            let login_matches = login.as_deref().is_none_or(|l| target.user == "anonymous" || l == target.user);
            if login_matches {
                if target.user == "anonymous"
                    && let Some(l) = login
                {
                    target.user = l;
                }
                if let Some(p) = password {
                    return Ok(Secret::new(p));
                }
            }
        }
    }
    if target.user == "anonymous" {
        return Ok(Secret::new("anonymous@"));
    }
    if std::io::stdin().is_terminal() {
        let prompt = format!("Password for {}: ", target.display_url());
        return rpassword::prompt_password(prompt)
            .map(Secret::new)
            .map_err(|e| format!("cannot read the password: {e}"));
    }
    Err(format!(
        "no password for {}: give it in the URL, FTPFS_PASSWORD or ~/.netrc, or run on a terminal",
        target.display_url()
    ))
}

/// Connection options from the URL and the mount options (TLS configuration included).
pub fn connect_options(target: &Target, password: Secret, o: &MountOpts) -> Result<ConnectOptions, String> {
    // `-o tls=implicit` on an ftp:// URL without a port means what ftps:// means: port 990
    // (the URL parser cannot tell `:21` from no port at all).
    let port = match (o.tls, target.implicit_tls, target.port) {
        (Some(TlsMode::Implicit), false, 21) => 990,
        _ => target.port,
    };
    let mut c = ConnectOptions::new(&target.host, port, &target.user, "");
    c.password = password;
    c.timeout = o.timeout;
    c.keepalive = o.keepalive;
    c.limits = std::sync::Arc::new(crate::ftp::throttle::Limits {
        up: o.bwlimit.0.map(crate::ftp::throttle::Rate::new),
        down: o.bwlimit.1.map(crate::ftp::throttle::Rate::new),
        commands: o.max_requests_per_second.map(crate::ftp::throttle::Rate::new),
    });
    c.data_mode = if o.active { DataMode::Active } else { DataMode::Passive };
    c.use_epsv = !o.no_epsv;
    c.trust_pasv_address = o.pasv_ip;
    c.encoding = o.encoding;
    if let Some(proxy) = &o.proxy {
        if o.active {
            return Err("active mode cannot work through a proxy (the server would have to connect to us)".into());
        }
        c.proxy = Some(std::sync::Arc::new(proxy.clone()));
    }
    c.tls_mode = if target.implicit_tls { TlsMode::Implicit } else { o.tls.unwrap_or(TlsMode::Off) };
    if c.tls_mode != TlsMode::Off {
        if o.no_verify {
            eprintln!("ftpfs: warning: no_verify: the server's certificate is not checked");
        }
        if o.fingerprint.is_some() && (o.no_verify || o.cafile.is_some()) {
            return Err("fingerprint= trusts one certificate: it cannot be combined with cafile= or no_verify".into());
        }
        if o.key.is_some() && o.cert.is_none() {
            return Err("key= goes with cert= (the certificate it belongs to)".into());
        }
        if let Some(key) = o.key.as_ref().or(o.cert.as_ref()) {
            warn_if_others_read(key);
        }
        let settings = TlsSettings {
            cafile: o.cafile.clone(),
            no_verify: o.no_verify,
            fingerprint: o.fingerprint,
            cert: o.cert.clone(),
            key: o.key.clone(),
        };
        let ctx = TlsContext::new(&target.host, &settings).map_err(|e| e.to_string())?;
        c.tls = Some(std::sync::Arc::new(ctx));
    } else if o.cafile.is_some() || o.no_verify || o.fingerprint.is_some() || o.cert.is_some() || o.key.is_some() {
        return Err("cafile, fingerprint, cert and no_verify need TLS: use ftps:// or -o tls".into());
    }
    Ok(c)
}

/// Warns, as ssh does, when the file holding our private key can be read by other users.
fn warn_if_others_read(key: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(key)
        && meta.permissions().mode() & 0o077 != 0
    {
        eprintln!(
            "ftpfs: warning: the private key in {} can be read by other users (mode {:o}): chmod 600 it",
            key.display(),
            meta.permissions().mode() & 0o777
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_url("ftp://bob:s%40cret@example.com:2121/some%20dir/").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.user.as_str()), ("example.com", 2121, "bob"));
        assert_eq!(t.password.as_ref().map(Secret::expose), Some("s@cret"));
        assert_eq!(t.dir.as_deref(), Some("/some dir"));
        assert_eq!(t.display_url(), "ftp://bob@example.com:2121/some_dir");
        assert!(!format!("{t:?}").contains("cret"));
        let t = parse_url("ftp://[::1]/").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.user.as_str(), t.dir.clone()), ("::1", 21, "anonymous", None));
        assert!(parse_url("http://x/").is_err());
        let t = parse_url("ftps://u@x/").unwrap();
        assert!(t.implicit_tls && t.port == 990);
        assert_eq!(t.display_url(), "ftps://u@x/");
        assert!(parse_url("not a url").is_err());
        assert_eq!(redact("ftp://u:pw@h/"), "ftp://u:****@h/");
        assert_eq!(redact("ftp://h/"), "ftp://h/");
    }

    /// Every form the URL parser takes with a password, and forms it refuses: the password is
    /// found, and never in an error.
    #[test]
    fn passwords_in_every_url_form() {
        for url in [
            "ftp:u:hunter2@h",
            "ftp:/u:hunter2@h/d",
            "ftp:\\\\u:hunter2@h",
            "ftp:///u:hunter2@h",
            "FTP://u:hunter2@h",
            " ftp://u:hunter2@h?x@y",
        ] {
            let t = parse_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(t.password.as_ref().map(Secret::expose), Some("hunter2"), "{url}");
            assert!(!redact(url).contains("hunter2"), "{url}: {}", redact(url));
        }
        for url in [
            "ftp:u:hunter2@",
            "ftp:/u:hunter2@h:99999",
            "ftp:\\\\u:hunter2@[::1",
            "ftp://u:hun/ter2@h",
            "ftp://u:hunter2@h%zz",
        ] {
            let e = parse_url(url).expect_err(url);
            assert!(!e.contains("ter2"), "{url}: {e}");
        }
        let without = |s: &str| password_span(s).map(|r| format!("{}{}", &s[..r.start], &s[r.end..]));
        assert_eq!(without("ftp:u:pw@h").as_deref(), Some("ftp:u@h"));
        assert_eq!(without("ftp:/u:pw@h/d:x@y").as_deref(), Some("ftp:/u@h/d:x@y"));
        assert_eq!(without("ftp:\\\\a@b:p:w@h\\d").as_deref(), Some("ftp:\\\\a@b@h\\d"));
        assert_eq!(without("x,proxy=http:u:pw@h:8080,ro").as_deref(), Some("x,proxy=http:u@h:8080,ro"));
        assert_eq!(without("é:ftp://u:pw@h").as_deref(), Some("é:ftp://u@h"));
        for none in ["ftp://u@h/a:b@c", "ftps:u:pw@h", "socks5:/u:pw@h", "/mnt/a:b@c", "ftp:u@h", "u:pw@h"] {
            assert_eq!(password_span(none), None, "{none}");
        }
        // A password cut at a comma in -o proxy=… is not shown as an unknown option.
        let e = parse_mount_options(&["proxy=http://u:1,hunter2@h:8080".into()]).expect_err("unknown option");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn mount_options() {
        let o = parse_mount_options(&["ro,uid=5,gid=6".into(), "umask=022,connections=2,cache_timeout=1.5".into()])
            .unwrap();
        assert!(o.read_only);
        assert_eq!((o.uid, o.gid, o.umask, o.connections), (Some(5), Some(6), 0o22, 2));
        assert_eq!(o.cache_timeout, Duration::from_millis(1500));
        let o =
            parse_mount_options(&["active,no_epsv,no_mlsd,pasv_ip,timeout=5,_netdev,x-systemd.automount,rw".into()])
                .unwrap();
        assert!(o.active && o.no_epsv && o.no_mlsd && o.pasv_ip);
        assert_eq!(o.timeout, Duration::from_secs(5));
        assert_eq!(o.keepalive, Duration::from_secs(30), "the default");
        let o = parse_mount_options(&["keepalive=2.5".into()]).unwrap();
        assert_eq!(o.keepalive, Duration::from_millis(2500));
        assert_eq!(parse_mount_options(&["keepalive=0".into()]).unwrap().keepalive, Duration::ZERO);
        assert!(parse_mount_options(&["keepalive=-1".into()]).is_err());
        assert!(parse_mount_options(&["bogus".into()]).is_err());
        assert!(parse_mount_options(&["uid=x".into()]).is_err());
        assert!(parse_mount_options(&["connections=0".into()]).is_err());
        assert_eq!(parse_mount_options(&["list_tz=+02:30".into()]).unwrap().list_tz_offset, 9000);
        assert_eq!(parse_mount_options(&["list_tz=-5".into()]).unwrap().list_tz_offset, -18000);
        let o = parse_mount_options(&["tls,cafile=/x/ca.pem,no_verify,netrc=/n,password_file=/p".into()]).unwrap();
        assert_eq!(o.tls, Some(TlsMode::Explicit));
        assert_eq!(o.cafile.as_deref(), Some(std::path::Path::new("/x/ca.pem")));
        assert!(o.no_verify);
        assert!(parse_mount_options(&["tls,no_check_certificate".into()]).unwrap().no_verify, "the common alias");
        assert!(parse_mount_options(&["delay_connect".into()]).unwrap().delay_connect);
        assert_eq!(parse_mount_options(&["bwlimit=4M".into()]).unwrap().bwlimit, (Some(4 << 20), Some(4 << 20)));
        assert_eq!(parse_mount_options(&["bwlimit=10M:2M".into()]).unwrap().bwlimit, (Some(10 << 20), Some(2 << 20)));
        assert_eq!(parse_mount_options(&["bwlimit=off:512K".into()]).unwrap().bwlimit, (None, Some(512 << 10)));
        assert_eq!(parse_mount_options(&["bwlimit=0".into()]).unwrap().bwlimit, (None, None));
        assert!(parse_mount_options(&["bwlimit=fast".into()]).is_err());
        assert_eq!(
            parse_mount_options(&["max_requests_per_second=5".into()]).unwrap().max_requests_per_second,
            Some(5)
        );
        assert!(parse_mount_options(&["max_requests_per_second=x".into()]).is_err());
        assert_eq!(parse_mount_options(&["tls=implicit".into()]).unwrap().tls, Some(TlsMode::Implicit));
        assert!(parse_mount_options(&["tls=bogus".into()]).is_err());
        assert_eq!(parse_mount_options(&["encoding=cp1251".into()]).unwrap().encoding, Some(encoding_rs::WINDOWS_1251));
        assert_eq!(parse_mount_options(&["encoding=latin1".into()]).unwrap().encoding, Some(encoding_rs::WINDOWS_1252));
        assert_eq!(parse_mount_options(&["encoding=utf-8".into()]).unwrap().encoding, None);
        assert!(parse_mount_options(&["encoding=klingon".into()]).is_err());
        let fp = format!("SHA256:{}", ["AB"; 32].join(":"));
        assert_eq!(
            parse_mount_options(&[format!("tls,fingerprint={fp}")]).unwrap().fingerprint,
            Some(Fingerprint::parse(&fp).unwrap())
        );
        assert!(parse_mount_options(&["fingerprint=SHA256:AB".into()]).is_err());
    }

    #[test]
    fn fingerprint_needs_tls_and_stands_alone() {
        let fp = format!("fingerprint=SHA256:{}", ["0F"; 32].join(":"));
        let target = parse_url("ftp://u@h/").unwrap();
        let with = |extra: &str| {
            let o = parse_mount_options(&[format!("{fp},{extra}")]).unwrap();
            connect_options(&target, Secret::new("p"), &o)
        };
        assert!(with("tls").is_ok());
        assert!(with("ro").unwrap_err().contains("need TLS"));
        assert!(with("tls,no_verify").unwrap_err().contains("cannot be combined"));
        assert!(with("tls,cafile=/x").unwrap_err().contains("cannot be combined"));
    }

    #[test]
    fn generic_options_of_mount_are_accepted_and_ftps_is_refused_with_a_hint() {
        let generic = ["nodiratime", "lazytime", "sync", "dirsync", "nosymfollow", "X-mount.mkdir", "x-gvfs-show"];
        for opt in generic {
            parse_mount_options(&[opt.to_string()]).unwrap_or_else(|e| panic!("{opt}: {e}"));
        }
        let e = parse_mount_options(&["ftps".into()]).unwrap_err();
        assert!(e.contains("tls") && e.contains("ftps://"), "{e}");
        assert!(parse_mount_options(&["tls=bogus".into()]).is_err());
        assert!(parse_mount_options(&["no_such_option".into()]).unwrap_err().contains("unknown"));
    }

    #[test]
    fn tls_implicit_on_an_ftp_url_without_port_connects_to_990() {
        let opts = parse_mount_options(&["tls=implicit,no_verify".into()]).unwrap();
        let c = connect_options(&parse_url("ftp://u@h/").unwrap(), Secret::new(String::new()), &opts).unwrap();
        assert_eq!((c.port, c.tls_mode), (990, TlsMode::Implicit));
        let c = connect_options(&parse_url("ftp://u@h:2990/").unwrap(), Secret::new(String::new()), &opts).unwrap();
        assert_eq!(c.port, 2990, "a port given stays");
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        for bad in ["", "0", "G", "10X", "-1", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        let o = parse_mount_options(&["disk_cache".into()]).unwrap();
        assert_eq!(o.disk_cache, Some(None));
        let o = parse_mount_options(&["disk_cache=1G".into()]).unwrap();
        assert_eq!(o.disk_cache, Some(Some(1 << 30)));
    }

    #[test]
    fn help_lists_every_mount_option() {
        let help = command().render_long_help().to_string();
        for (form, _) in crate::mount_options::MOUNT_OPTIONS {
            assert!(help.contains(form), "--help lacks {form}");
        }
        assert!(help.contains("allow_root"));
    }
}

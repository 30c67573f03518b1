//! How the commands that talk to a running mount reach it (`ftpfs stats MOUNTPOINT`, `ftpfs
//! refresh MOUNTPOINT [PATH]`): a Unix socket in Linux's abstract namespace named after the
//! mount's device number (`ftpfs-stats-0:53`). A client sends one request line ([`Request`]);
//! the mount answers it through the [`Handler`] the mount gave [`serve`] and closes the
//! connection. This room knows nothing of the mount beyond that trait: the mount uses it, it
//! never reaches back.
//!
//! Why this channel: both sides find the name in /proc/self/mountinfo, so there is no socket
//! file to place, find, protect or clean up after a crash (an abstract name goes with its
//! process), and device numbers are unique among live mounts, also after a lazy unmount. The
//! mount answers only its own user and root (everyone with `allow_other`), checked on the
//! connection's credentials, and `ftpfs stats` believes only an answer from the user who
//! mounted (or root): another user could take the name first, so a mount tries [`NAMES`] names
//! in turn and the client skips those held by others. It costs the file system's hot path
//! nothing; an extended attribute of the root, tried first, made the kernel ask the mount for
//! `security.capability` on every write(2) once extended attributes were answered at all
//! (measurably slower writes on loopback). Requests that change what the mount holds (refresh)
//! are taken only from the mounting user and root, also with `allow_other`. Device numbers are
//! unique among live mounts only: the kernel may give an unmounted file system's number to a new
//! mount while the old process still saves its files, so an unmounted mount lets its name go at
//! once ([`Serving::end`]), and a client whose connection closes unanswered tries the next name.
//! Every wait is bounded: the client gives the mount [`WAIT`], the mount gives a reader as long.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::mount_table::mount_entry;

/// What a client asks of a running mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// The mount's figures (`ftpfs stats`).
    Stats,
    /// Forget cached listings and attributes at `path` (relative to the mount's root; empty:
    /// everything), below it too with `recursive` (`ftpfs refresh`).
    Refresh { path: String, recursive: bool },
    /// Empty the disk cache (`ftpfs cache clear`).
    CacheClear,
}

/// A request line is never longer than this.
const MAX_REQUEST: u64 = 8192;

/// How long the mount waits for a request line, in all: a client that sends nothing in this
/// time (an older `ftpfs stats`, or a script that only reads) gets the stats.
const REQUEST_WAIT: Duration = Duration::from_secs(1);

impl Request {
    /// The request as one line on the wire.
    fn line(&self) -> String {
        match self {
            Request::Stats => "stats\n".to_string(),
            Request::Refresh { path, recursive } => {
                format!("refresh {} {path}\n", if *recursive { "-r" } else { "-" })
            }
            Request::CacheClear => "cache-clear\n".to_string(),
        }
    }

    /// Parses a request line (without its end). An empty line is [`Request::Stats`] (what an
    /// older client that sends nothing gets).
    pub fn parse(line: &str) -> Result<Request, String> {
        let line = line.trim_end_matches(['\r', '\n']);
        match line.split_once(' ').unwrap_or((line, "")) {
            ("" | "stats", _) => Ok(Request::Stats),
            ("cache-clear", "") => Ok(Request::CacheClear),
            ("refresh", rest) => {
                let (flag, path) = rest.split_once(' ').unwrap_or((rest, ""));
                let recursive = match flag {
                    "-r" => true,
                    "-" => false,
                    other => return Err(format!("bad refresh flag {other:?}")),
                };
                Ok(Request::Refresh { path: path.to_string(), recursive })
            }
            (other, _) => Err(format!("unknown request {:?}", crate::printable::printable(other))),
        }
    }

    /// Whether only the mounting user and root may make it.
    fn owner_only(&self) -> bool {
        !matches!(self, Request::Stats)
    }
}

/// What the mount does for each request: an answer to print, or an error to show.
pub trait Handler: Send + Sync {
    fn stats(&self) -> String;
    fn refresh(&self, path: &str, recursive: bool) -> Result<String, String>;
    fn cache_clear(&self) -> Result<String, String>;
}

/// How long either side waits for the other.
const WAIT: Duration = Duration::from_secs(5);

/// A report is never longer than this (a bound on what the client reads).
const MAX_REPORT: u64 = 16 << 20;

/// Names a mount tries in turn: another local user may have taken the first ones (any user
/// may bind any abstract name), and the client skips those by their owner.
const NAMES: usize = 8;

fn address(device: &str, n: usize) -> std::io::Result<SocketAddr> {
    let name = if n == 0 { format!("ftpfs-stats-{device}") } else { format!("ftpfs-stats-{device}-{n}") };
    SocketAddr::from_abstract_name(name.as_bytes())
}

/// The uid of the process at the other end of `s`.
fn peer_uid(s: &UnixStream) -> Option<u32> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: SO_PEERCRED fills a ucred of the size given.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(cred.uid)
}

/// A mount answering requests: [`Serving::end`] stops it when the mount is over.
pub struct Serving {
    ended: Arc<std::sync::atomic::AtomicBool>,
    name: SocketAddr,
}

impl Serving {
    /// The mount is over (its file system unmounted): the name goes at once, before the process
    /// has saved its files and ended. The kernel may already have given the device number to a
    /// new mount, whose clients must not get this one's answers; a request already waiting
    /// sees its connection closed, and the client tries the next name.
    pub fn end(&self) {
        if !self.ended.swap(true, std::sync::atomic::Ordering::AcqRel) {
            // Wakes the thread waiting for a connection, which then lets the name go.
            let _ = UnixStream::connect_addr(&self.name);
        }
    }
}

/// Starts answering requests for the mount with device `device`, through `handler`.
/// `everyone`: answer any user's stats (allow_other), not only ours and root's.
pub fn serve(device: &str, handler: Arc<dyn Handler>, everyone: bool) -> std::io::Result<Serving> {
    let mut bound = Err(std::io::Error::other("no name to bind"));
    for n in 0..NAMES {
        bound = UnixListener::bind_addr(&address(device, n)?);
        match &bound {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => log::warn!("stats socket name {n} taken: {e}"),
            _ => break,
        }
    }
    let listener = bound?;
    let name = listener.local_addr()?;
    let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = ended.clone();
    // SAFETY: getuid cannot fail.
    let own = unsafe { libc::getuid() };
    let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    std::thread::Builder::new().name("stats".into()).spawn(move || {
        for conn in listener.incoming() {
            if stop.load(std::sync::atomic::Ordering::Acquire) {
                // The listener closes here: connections waiting in it are closed unanswered.
                break;
            }
            let Ok(mut conn) = conn else {
                // Out of descriptors, say: no spinning while it lasts.
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            let _ = conn.set_write_timeout(Some(WAIT));
            let owner = peer_uid(&conn).is_some_and(|uid| uid == own || uid == 0);
            if !owner && !everyone {
                // Refused before anything is read: a stranger cannot hold the channel.
                let _ = conn.write_all(NOT_ALLOWED.as_bytes());
                continue;
            }
            // Each request on a thread of its own, a few at once: a client that sends its
            // line slowly holds only its own.
            if running.fetch_add(1, std::sync::atomic::Ordering::AcqRel) >= MAX_CLIENTS {
                running.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
                let _ = conn.write_all(b"ftpfs: busy, try again\n");
                continue;
            }
            let (handler, done, stop) = (handler.clone(), running.clone(), stop.clone());
            let spawned = std::thread::Builder::new().name("stats-client".into()).spawn(move || {
                let answer = answer(&conn, handler.as_ref(), owner, everyone);
                // Ended meanwhile: closed unanswered, the client tries the next name.
                if !stop.load(std::sync::atomic::Ordering::Acquire) {
                    let _ = conn.write_all(answer.as_bytes());
                }
                done.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            });
            if spawned.is_err() {
                running.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            }
        }
    })?;
    Ok(Serving { ended, name })
}

/// Requests answered at once, at most.
const MAX_CLIENTS: usize = 8;

const NOT_ALLOWED: &str = "ftpfs: not allowed: the mount answers its own user and root\n";

/// The request line `conn` sends within [`REQUEST_WAIT`] in all (empty when none came).
fn read_request(conn: &UnixStream) -> std::io::Result<String> {
    let deadline = std::time::Instant::now() + REQUEST_WAIT;
    let mut line = Vec::new();
    let mut byte = [0u8; 512];
    while !line.contains(&b'\n') && (line.len() as u64) < MAX_REQUEST {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        conn.set_read_timeout(Some(left))?;
        match (&*conn).read(&mut byte) {
            Ok(0) => break,
            Ok(n) => line.extend_from_slice(&byte[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let end = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
    Ok(String::from_utf8_lossy(&line[..end]).into_owned())
}

/// Reads one request from `conn` and answers it (an error starts with `ftpfs: `).
fn answer(conn: &UnixStream, handler: &dyn Handler, owner: bool, everyone: bool) -> String {
    let line = match read_request(conn) {
        Ok(line) => line,
        Err(e) => return format!("ftpfs: no request read: {e}\n"),
    };
    let request = match Request::parse(&line) {
        Ok(r) => r,
        Err(e) => return format!("ftpfs: {e}\n"),
    };
    if !(owner || (everyone && !request.owner_only())) {
        return NOT_ALLOWED.to_string();
    }
    match request {
        Request::Stats => handler.stats(),
        Request::Refresh { path, recursive } => match handler.refresh(&path, recursive) {
            Ok(done) => done,
            Err(e) => format!("ftpfs: {e}\n"),
        },
        Request::CacheClear => match handler.cache_clear() {
            Ok(done) => done,
            Err(e) => format!("ftpfs: {e}\n"),
        },
    }
}

/// `path` made absolute without asking the file system mounted there: the parent is resolved,
/// and a last component that is a symbolic link is followed by hand (readlink does not enter the
/// mount), since a stat of the mount's root is the mount's to answer and a hung mount would hang.
fn resolve(path: &Path) -> std::io::Result<std::path::PathBuf> {
    let mut path = path.to_path_buf();
    for _ in 0..16 {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return path.canonicalize();
        };
        let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
        let resolved = parent.canonicalize()?.join(name);
        match std::fs::read_link(&resolved) {
            Ok(target) => path = resolved.parent().unwrap_or(Path::new("/")).join(target),
            Err(_) => return Ok(resolved),
        }
    }
    Err(std::io::Error::other("too many levels of symbolic links"))
}

/// The report of the mount at `mountpoint`, within [`WAIT`] and a second.
pub fn fetch(mountpoint: &Path) -> Result<String, String> {
    send(mountpoint, Request::Stats)
}

/// The mount's answer to `request`, within [`WAIT`] and a second.
pub fn send(mountpoint: &Path, request: Request) -> Result<String, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = mountpoint.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(ask(&path, &request));
    });
    rx.recv_timeout(WAIT + Duration::from_secs(1))
        .unwrap_or_else(|_| Err(format!("the mount at {} did not answer in time", mountpoint.display())))
}

fn ask(mountpoint: &Path, request: &Request) -> Result<String, String> {
    let shown = mountpoint.display().to_string();
    let path = resolve(mountpoint).map_err(|e| format!("{shown}: {e}"))?;
    let entry = match mount_entry(&path) {
        // Plain `fuse`: an ftpfs mounted by root on a kernel older than 5.4 (no subtype there);
        // another file system's process just will not answer on our names.
        Some(m) if m.kind == "fuse.ftpfs" || m.kind == "fuse" => m,
        Some(m) => return Err(format!("{shown} is a {} mount, not an ftpfs one", m.kind)),
        None => return Err(format!("{shown} is not a mount point")),
    };
    ask_device(&entry.device, entry.user_id, &shown, request)
}

/// The report of the mount with device `device`, mounted by `user_id`, named `shown` in errors.
pub fn ask_device(device: &str, user_id: Option<u32>, shown: &str, request: &Request) -> Result<String, String> {
    // Any local user may bind an abstract name: believe only the user who mounted, or root.
    // A mount that just ended (its device number already a new mount's) closes the connection
    // unanswered: the next name is tried.
    let mut last = String::new();
    for n in 0..NAMES {
        let conn = match UnixStream::connect_addr(&address(device, n).map_err(|e| e.to_string())?) {
            Ok(c) => c,
            Err(e) => {
                // Nobody there (now): the mount may hold a later name, a squatter having left.
                if last.is_empty() {
                    last = format!(
                        "the mount at {shown} does not answer ({e}): its process is gone, or an older ftpfs serves it"
                    );
                }
                continue;
            }
        };
        let server = peer_uid(&conn);
        if !server.is_some_and(|uid| uid == 0 || Some(uid) == user_id) {
            last = format!(
                "the statistics sockets of {shown} belong to another user (uid {server:?}, the mount's is {user_id:?}): not trusted"
            );
            continue;
        }
        match exchange(conn, shown, request) {
            Ok(answered) => return answered,
            Err(Unanswered(e)) => last = e,
        }
    }
    Err(last)
}

/// The connection closed without an answer (a mount that just ended): why.
struct Unanswered(String);

/// Sends `request` on `conn` and reads the answer, within [`WAIT`] each: the answer or an
/// error to show, or `Unanswered` (the next name may hold the mount).
fn exchange(mut conn: UnixStream, shown: &str, request: &Request) -> Result<Result<String, String>, Unanswered> {
    use std::io::ErrorKind::{BrokenPipe, ConnectionReset, TimedOut, WouldBlock};
    let setup = conn.set_read_timeout(Some(WAIT)).and_then(|_| conn.set_write_timeout(Some(WAIT)));
    if let Err(e) = setup {
        return Ok(Err(e.to_string()));
    }
    let mut report = String::new();
    let exchanged = conn.write_all(request.line().as_bytes()).and_then(|_| {
        let _ = conn.shutdown(std::net::Shutdown::Write);
        conn.take(MAX_REPORT).read_to_string(&mut report)
    });
    match exchanged {
        // A refusal written before the request was read ends in a reset after it.
        Err(e) if e.kind() == ConnectionReset && !report.is_empty() => Ok(Err(refusal_of(&report))),
        Err(e) if matches!(e.kind(), BrokenPipe | ConnectionReset) => Err(Unanswered(format!("{shown}: {e}"))),
        Err(e) if matches!(e.kind(), WouldBlock | TimedOut) => {
            Ok(Err(format!("the mount at {shown} did not answer within {} s", WAIT.as_secs())))
        }
        Err(e) => Ok(Err(format!("{shown}: {e}"))),
        // A mount always answers something.
        Ok(_) if report.is_empty() => Err(Unanswered(format!("the mount at {shown} closed the connection unanswered"))),
        Ok(_) => Ok(match report.starts_with("ftpfs: ") {
            true => Err(refusal_of(&report)),
            false => Ok(report),
        }),
    }
}

/// The error a report starting with `ftpfs: ` (or cut short by a reset) stands for.
fn refusal_of(report: &str) -> String {
    report.strip_prefix("ftpfs: ").unwrap_or(report).trim_end().to_string()
}

/// `ftpfs stats MOUNTPOINT`.
pub fn print(mountpoint: &Path) -> Result<(), String> {
    print!("{}", fetch(mountpoint)?);
    Ok(())
}

/// `ftpfs refresh MOUNTPOINT [PATH] [-r]`: PATH inside the mount (absolute, or relative to the
/// current directory), or the whole mount without one.
pub fn refresh(mountpoint: &Path, path: Option<&Path>, recursive: bool) -> Result<(), String> {
    let root = resolve(mountpoint).map_err(|e| format!("{}: {e}", mountpoint.display()))?;
    let rel = match path {
        None => String::new(),
        Some(p) => relative_to_mount(&root, mountpoint, p)?,
    };
    print_answer(&root, Request::Refresh { path: rel, recursive }, "refreshed")
}

/// `path` relative to the mount's root `root`, resolved without entering the mount (its parts
/// are taken as written; `..` may not climb out).
fn relative_to_mount(root: &Path, spelled: &Path, path: &Path) -> Result<String, String> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map_err(|e| e.to_string())?.join(path)
    };
    let mut parts: Vec<String> = Vec::new();
    // The mount point resolved, or as the user spelled it (through a symlink, say).
    let inside = absolute
        .strip_prefix(root)
        .or_else(|_| absolute.strip_prefix(spelled))
        .map_err(|_| format!("{} is not inside {}", path.display(), root.display()))?;
    for c in inside.components() {
        match c {
            std::path::Component::Normal(n) => {
                let n = n.to_str().ok_or_else(|| format!("{}: not UTF-8", path.display()))?;
                if n.contains(['\r', '\n']) {
                    return Err(format!("{:?}: a name with CR or LF", path.display()));
                }
                parts.push(n.to_string());
            }
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                parts.pop().ok_or_else(|| format!("{} is not inside {}", path.display(), root.display()))?;
            }
            _ => return Err(format!("{}: not a path inside the mount", path.display())),
        }
    }
    Ok(parts.join("/"))
}

/// `ftpfs cache clear MOUNTPOINT`: the running mount empties its disk cache.
pub fn cache_clear(mountpoint: &Path) -> Result<(), String> {
    print_answer(mountpoint, Request::CacheClear, "cleared")
}

/// Sends `request` and prints the answer, which must start with `done` (an older mount that
/// does not know the request answers with its stats).
fn print_answer(mountpoint: &Path, request: Request, done: &str) -> Result<(), String> {
    let answer = send(mountpoint, request)?;
    if !answer.starts_with(done) {
        return Err(format!("the mount at {} did not take the request (an older ftpfs?)", mountpoint.display()));
    }
    print!("{answer}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_through_their_line() {
        for r in [
            Request::Stats,
            Request::Refresh { path: String::new(), recursive: true },
            Request::Refresh { path: "a dir/with spaces".into(), recursive: false },
            Request::CacheClear,
        ] {
            let line = r.line();
            assert_eq!(Request::parse(&line), Ok(r), "{line:?}");
        }
        assert_eq!(Request::parse(""), Ok(Request::Stats), "an older client sends nothing");
        assert!(Request::parse("refresh -x a").is_err());
        assert!(Request::parse("drop everything").is_err());
    }

    struct Fake;

    impl Handler for Fake {
        fn stats(&self) -> String {
            "figures\n".into()
        }
        fn refresh(&self, path: &str, recursive: bool) -> Result<String, String> {
            Ok(format!("refreshed {path} {recursive}\n"))
        }
        fn cache_clear(&self) -> Result<String, String> {
            Ok("cleared\n".into())
        }
    }

    fn answer_to(request: &str, owner: bool, everyone: bool) -> String {
        let (mut client, server) = UnixStream::pair().unwrap();
        client.write_all(request.as_bytes()).unwrap();
        answer(&server, &Fake, owner, everyone)
    }

    #[test]
    fn only_the_owner_refreshes_and_everyone_sees_stats_only_with_allow_other() {
        assert_eq!(answer_to("refresh -r a\n", true, false), "refreshed a true\n");
        assert!(answer_to("refresh -r a\n", false, true).contains("not allowed"));
        assert!(answer_to("cache-clear\n", false, true).contains("not allowed"));
        assert_eq!(answer_to("cache-clear\n", true, false), "cleared\n");
        assert!(answer_to("stats\n", false, false).contains("not allowed"));
        assert_eq!(answer_to("stats\n", false, true), "figures\n");
        assert_eq!(answer_to("", true, false), "figures\n", "nothing sent within a second: the stats");
        assert!(answer_to("bogus\n", true, false).starts_with("ftpfs: unknown request"));
    }

    struct Named(&'static str);

    impl Handler for Named {
        fn stats(&self) -> String {
            format!("{}\n", self.0)
        }
        fn refresh(&self, _: &str, _: bool) -> Result<String, String> {
            Ok(format!("{} refreshed\n", self.0))
        }
        fn cache_clear(&self) -> Result<String, String> {
            Err("no cache".into())
        }
    }

    /// A device name no real mount has, for this test alone.
    fn test_device(what: &str) -> String {
        format!("test-{what}-{}", std::process::id())
    }

    fn me() -> Option<u32> {
        // SAFETY: getuid cannot fail.
        Some(unsafe { libc::getuid() })
    }

    #[test]
    fn an_ended_mount_lets_its_name_go_and_the_new_one_answers() {
        // The kernel gave an unmounted file system's device number to a new mount while the old
        // process was still saving its files: the new mount took the next name.
        let device = test_device("reuse");
        let old = serve(&device, Arc::new(Named("old")), false).unwrap();
        let new = serve(&device, Arc::new(Named("new")), false).unwrap();
        assert_eq!(ask_device(&device, me(), "m", &Request::Stats).unwrap(), "old\n");
        old.end();
        let refresh = Request::Refresh { path: String::new(), recursive: true };
        assert_eq!(ask_device(&device, me(), "m", &refresh).unwrap(), "new refreshed\n");
        // The old name is free again, soon (the old thread lets it go once woken).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while UnixListener::bind_addr(&address(&device, 0).unwrap()).is_err() {
            assert!(std::time::Instant::now() < deadline, "the ended mount still holds its name");
            std::thread::sleep(Duration::from_millis(10));
        }
        new.end();
    }

    #[test]
    fn a_connection_closed_unanswered_sends_the_client_to_the_next_name() {
        // What a client meets while an ended mount's thread lets its name go: the connection
        // taken and closed without a word.
        let device = test_device("closed");
        let mute = UnixListener::bind_addr(&address(&device, 0).unwrap()).unwrap();
        std::thread::spawn(move || {
            for conn in mute.incoming() {
                drop(conn);
            }
        });
        let live = serve(&device, Arc::new(Named("live")), false).unwrap();
        assert_eq!(ask_device(&device, me(), "m", &Request::Stats).unwrap(), "live\n");
        assert_eq!(ask_device(&device, me(), "m", &Request::CacheClear).err().as_deref(), Some("no cache"));
        live.end();
    }

    #[test]
    fn paths_are_taken_relative_to_the_mount() {
        let root = Path::new("/mnt/ftp");
        let spelled = Path::new("/home/u/ftp");
        assert_eq!(relative_to_mount(root, spelled, Path::new("/mnt/ftp")).unwrap(), "");
        assert_eq!(relative_to_mount(root, spelled, Path::new("/mnt/ftp/a/./b/../c")).unwrap(), "a/c");
        assert_eq!(relative_to_mount(root, spelled, Path::new("/home/u/ftp/d")).unwrap(), "d", "through a symlink");
        assert!(relative_to_mount(root, spelled, Path::new("/mnt/ftp/../etc")).is_err());
        assert!(relative_to_mount(root, spelled, Path::new("/etc/passwd")).is_err());
    }
}

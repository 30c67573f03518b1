//! How `ftpfs stats MOUNTPOINT` reaches a running mount: a Unix socket in Linux's abstract
//! namespace named after the mount's device number (`ftpfs-stats-0:53`), on which the mount
//! answers every connection with its report ([`crate::stats::report`]) and closes it.
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
//! (measurably slower writes on loopback).
//! Every wait is bounded: the client gives the mount [`WAIT`], the mount gives a reader as long.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

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

/// Starts answering `ftpfs stats` for the mount with device `device`: each report starts with
/// `header`. `everyone`: answer any user (allow_other), not only ours and root.
pub fn serve(device: &str, header: String, everyone: bool) -> std::io::Result<()> {
    let mut bound = Err(std::io::Error::other("no name to bind"));
    for n in 0..NAMES {
        bound = UnixListener::bind_addr(&address(device, n)?);
        match &bound {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => log::warn!("stats socket name {n} taken: {e}"),
            _ => break,
        }
    }
    let listener = bound?;
    // SAFETY: getuid cannot fail.
    let own = unsafe { libc::getuid() };
    std::thread::Builder::new().name("stats".into()).spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else {
                // Out of descriptors, say: no spinning while it lasts.
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            let allowed = everyone || peer_uid(&conn).is_some_and(|uid| uid == own || uid == 0);
            let answer = if allowed {
                crate::stats::report(&header)
            } else {
                "ftpfs: not allowed: the mount answers its own user and root\n".to_string()
            };
            let _ = conn.set_write_timeout(Some(WAIT));
            let _ = conn.write_all(answer.as_bytes());
        }
    })?;
    Ok(())
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
    let (tx, rx) = std::sync::mpsc::channel();
    let path = mountpoint.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(ask(&path));
    });
    rx.recv_timeout(WAIT + Duration::from_secs(1))
        .unwrap_or_else(|_| Err(format!("the mount at {} did not answer in time", mountpoint.display())))
}

fn ask(mountpoint: &Path) -> Result<String, String> {
    let shown = mountpoint.display().to_string();
    let path = resolve(mountpoint).map_err(|e| format!("{shown}: {e}"))?;
    let entry = match crate::mount::mount_entry(&path) {
        // Plain `fuse`: an ftpfs mounted by root on a kernel older than 5.4 (no subtype there);
        // another file system's process just will not answer on our names.
        Some(m) if m.kind == "fuse.ftpfs" || m.kind == "fuse" => m,
        Some(m) => return Err(format!("{shown} is a {} mount, not an ftpfs one", m.kind)),
        None => return Err(format!("{shown} is not a mount point")),
    };
    ask_device(&entry.device, entry.user_id, &shown)
}

/// The report of the mount with device `device`, mounted by `user_id`, named `shown` in errors.
pub fn ask_device(device: &str, user_id: Option<u32>, shown: &str) -> Result<String, String> {
    // Any local user may bind an abstract name: believe only the user who mounted, or root.
    let mut last = String::new();
    let mut found = None;
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
        if server.is_some_and(|uid| uid == 0 || Some(uid) == user_id) {
            found = Some(conn);
            break;
        }
        last = format!(
            "the statistics sockets of {shown} belong to another user (uid {server:?}, the mount's is {user_id:?}): not trusted"
        );
    }
    let conn = found.ok_or(last)?;
    conn.set_read_timeout(Some(WAIT)).map_err(|e| e.to_string())?;
    let mut report = String::new();
    conn.take(MAX_REPORT).read_to_string(&mut report).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            format!("the mount at {shown} did not answer within {} s", WAIT.as_secs())
        }
        _ => format!("{shown}: {e}"),
    })?;
    if let Some(refusal) = report.strip_prefix("ftpfs: ") {
        return Err(refusal.trim_end().to_string());
    }
    Ok(report)
}

/// `ftpfs stats MOUNTPOINT`.
pub fn print(mountpoint: &Path) -> Result<(), String> {
    print!("{}", fetch(mountpoint)?);
    Ok(())
}

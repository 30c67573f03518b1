//! Hostile and broken servers (a scripted fake, since real servers behave): bounded replies,
//! nonsense passive replies, silence, garbage and dropped connections end in clear errors,
//! never a hang or a panic, and the mount keeps answering.

mod support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ftpfs::ftp::{Connection, FtpError, ListContext};
use support::{FakeServer, fetch};
use support::mount::fuse_available;

fn list(c: &mut Connection, path: &str) -> Result<Vec<String>, FtpError> {
    c.mlsd(path).map(|v| v.into_iter().map(|e| e.name).collect())
}

#[test]
fn wire_errors_are_clear_and_bounded() {
    let srv = FakeServer::start(&[]);
    let o = srv.options(3);
    let mut c = Connection::connect(&o).unwrap();
    let mut root = list(&mut c, "/").unwrap();
    root.sort();
    assert!(root.contains(&"hello.txt".to_string()), "{root:?}");

    for (dir, what) in [
        ("/endless_dir", "line longer"),
        ("/huge_dir", "multi-line reply too long"),
        ("/garbage_dir", "does not start with a code"),
    ] {
        let mut c = Connection::connect(&o).unwrap();
        let err = list(&mut c, dir).expect_err(dir);
        assert!(matches!(err, FtpError::Protocol(_)), "{dir}: {err:?}");
        assert!(err.to_string().contains(what), "{dir}: {err}");
        assert!(c.is_dead(), "{dir}: a connection out of sync must not be reused");
        assert!(matches!(c.noop(), Err(FtpError::Closed)));
    }

    let mut c = Connection::connect(&o).unwrap();
    let err = list(&mut c, "/close_dir").expect_err("closed mid-reply");
    assert!(matches!(err, FtpError::Io(_)), "{err:?}");
    assert_eq!(err.errno(ftpfs::ftp::Op::Lookup), libc::EIO);

    let mut c = Connection::connect(&o).unwrap();
    let started = Instant::now();
    let err = list(&mut c, "/silent_dir").expect_err("silent");
    assert!(matches!(&err, FtpError::Io(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(30), "the reply timeout did not fire");

    // After all that, a fresh connection works as before.
    let mut c = Connection::connect(&o).unwrap();
    assert_eq!(fetch(&mut c, "/hello.txt", 0), b"hello world\n");
}

#[test]
fn nonsense_pasv_is_an_error_and_foreign_pasv_is_ignored() {
    let srv = FakeServer::start(&["--bad-pasv"]);
    let mut c = Connection::connect(&srv.options(3)).unwrap();
    let err = c.retr("/hello.txt", 0).err().expect("nonsense 227");
    assert!(err.to_string().contains("bad PASV reply"), "{err}");
    assert!(c.uses_pasv_fallback());
    c.noop().unwrap();

    // 227 names 10.255.255.1: we connect to the control connection's peer instead.
    let srv = FakeServer::start(&["--foreign-pasv"]);
    let mut o = srv.options(3);
    o.use_epsv = false;
    let mut c = Connection::connect(&o).unwrap();
    assert_eq!(fetch(&mut c, "/hello.txt", 0), b"hello world\n");
    assert!(c.list("/", &ListContext::now_utc()).unwrap().iter().any(|e| e.name == "hello.txt"));
}

fn mount_fake(srv: &FakeServer, opts: &str) -> (tempfile::TempDir, support::mount::MountGuard) {
    let dir = tempfile::Builder::new().prefix("ftpfs-mnt-").tempdir().unwrap();
    let out = support::mount::ftpfs_command(&[&srv.url(), dir.path().to_str().unwrap(), "-o", opts])
        .env("FTPFS_PASSWORD", "p")
        .output()
        .unwrap();
    assert!(out.status.success(), "mount: {}", String::from_utf8_lossy(&out.stderr));
    let guard = support::mount::MountGuard::new(dir.path());
    (dir, guard)
}

fn sh(dir: &std::path::Path, script: &str) -> std::process::Output {
    Command::new("bash").arg("-c").arg(script).current_dir(dir).stdin(Stdio::null()).output().unwrap()
}

#[test]
fn mount_survives_hostile_replies() {
    if !fuse_available() {
        return;
    }
    let srv = FakeServer::start(&[]);
    let (dir, _guard) = mount_fake(&srv, "timeout=2,cache_timeout=0");
    let d = dir.path();
    for bad in ["endless_dir", "huge_dir", "garbage_dir", "close_dir"] {
        let out = sh(d, &format!("ls {bad}"));
        assert!(!out.status.success(), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("Input/output error"), "{bad}: {err}");
        // The mount still works.
        assert_eq!(std::fs::read(d.join("hello.txt")).unwrap(), b"hello world\n", "after {bad}");
    }
    // A silent server: the call fails when the timeout fires; meanwhile others are answered.
    let started = Instant::now();
    let mut slow = Command::new("ls").arg(d.join("silent_dir")).stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(std::fs::read(d.join("hello.txt")).unwrap(), b"hello world\n");
    assert!(slow.try_wait().unwrap().is_none(), "the silent call should still be waiting");
    let status = slow.wait().unwrap();
    assert!(!status.success());
    assert!(started.elapsed() < Duration::from_secs(30), "the timeout did not fire");
    let mut err = String::new();
    slow.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(err.contains("timed out") || err.contains("Input/output"), "{err}");
    // Still mounted and answering.
    assert!(sh(d, "ls").status.success());
}

#[test]
fn mount_survives_a_server_that_drops_connections() {
    if !fuse_available() {
        return;
    }
    let srv = FakeServer::start(&["--drop-every", "9"]);
    let (dir, _guard) = mount_fake(&srv, "timeout=3,cache_timeout=0");
    let d = dir.path();
    for i in 0..15 {
        let out = sh(d, &format!("ls >/dev/null && cat hello.txt && echo line{i} > f{i}.txt && cat f{i}.txt"));
        assert!(out.status.success(), "round {i}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("hello world\nline{i}\n"));
    }
}

#[test]
fn broken_mlsd_falls_back_to_list_and_dos_listings_work() {
    if !fuse_available() {
        return;
    }
    for flag in ["--broken-mlsd", "--dos"] {
        let srv = FakeServer::start(&[flag]);
        let (dir, _guard) = mount_fake(&srv, "timeout=3");
        let d = dir.path();
        let out = sh(d, "ls -l");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{flag}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("hello.txt") && text.contains("normal_dir"), "{flag}: {text}");
        let meta = std::fs::metadata(d.join("hello.txt")).unwrap();
        assert_eq!(meta.len(), 12, "{flag}");
        assert!(std::fs::metadata(d.join("normal_dir")).unwrap().is_dir(), "{flag}");
        if flag == "--dos" {
            // 01-31-24 02:15PM is 2024-01-31 14:15 UTC.
            let mtime = meta.modified().unwrap().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
            assert_eq!(mtime, 1_706_710_500, "{flag}");
        }
        assert_eq!(std::fs::read(d.join("hello.txt")).unwrap(), b"hello world\n", "{flag}");
    }
}

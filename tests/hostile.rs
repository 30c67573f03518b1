//! Hostile and broken servers (a scripted fake, since real servers behave): bounded replies,
//! nonsense passive replies, silence, garbage and dropped connections end in clear errors,
//! never a hang or a panic, and the mount keeps answering. Start-up is bounded by the `timeout`
//! option as a whole (a silent server), while a start-up connection that breaks is tried again.
//! Renames on a server that refuses to rename over an existing target still replace it, and a
//! rename that fails never costs the target.

mod support;

use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use ftpfs::ftp::{Connection, FtpError, ListContext, Op};
use support::mount::fuse_available;
use support::{FakeServer, fetch};

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
    assert!(
        matches!(&err, FtpError::Io(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "{err:?}"
    );
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

/// vsftpd's `500 OOPS` (no free passive port) ends the session: a broken connection (EIO, and
/// tried again on a fresh one), never EINVAL, and never a reason to give up EPSV. A server that
/// says it does not know EPSV on a session that still answers gets PASV, on that connection.
#[test]
fn a_session_ended_by_oops_is_broken_and_keeps_epsv() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let srv = FakeServer::start(&["--oops-epsv", "1", "--log-commands", log.path().to_str().unwrap()]);
    let mut c = Connection::connect(&srv.options(3)).unwrap();
    let err = c.retr("/hello.txt", 0).err().expect("500 OOPS");
    assert!(c.is_dead(), "the server ended the session");
    assert!(err.is_reconnectable(), "{err:?}");
    for op in [Op::Read, Op::Write, Op::Lookup, Op::SetAttr] {
        assert_eq!(err.errno(op), libc::EIO, "{op:?}");
    }
    assert!(!c.uses_pasv_fallback(), "a session the server ended is no sign that EPSV is unknown");
    let sent = std::fs::read_to_string(log.path()).unwrap();
    assert!(sent.contains("EPSV") && !sent.contains("PASV\n"), "PASV must not be tried on a dead session: {sent}");

    let srv = FakeServer::start(&["--no-epsv"]);
    let mut c = Connection::connect(&srv.options(3)).unwrap();
    assert_eq!(fetch(&mut c, "/hello.txt", 0), b"hello world\n");
    assert!(c.uses_pasv_fallback(), "500 to EPSV on a live session: PASV");
    assert_eq!(fetch(&mut c, "/hello.txt", 0), b"hello world\n");
}

/// A server taken for vsftpd by its greeting that answers what is sent behind an upload's data
/// during the transfer (as pyftpdlib and ProFTPD do): the upload still succeeds with the size
/// asked again after its end, the time and mode sent behind it are reported as not taken (the
/// caller sets them again: they may have run before the data's end), and the connection stops
/// sending SIZE behind uploads.
#[test]
fn replies_behind_an_upload_answered_during_the_transfer_are_paired_right() {
    use ftpfs::ftp::upload::Settle;
    use std::io::Write;
    let srv = FakeServer::start(&["--greeting", "(vsFTPd 3.0.3) fake", "--answer-during-stor"]);
    let mut c = Connection::connect(&srv.options(5)).unwrap();
    c.set_open_ahead(true);
    for (i, body) in [&b"first upload"[..], &b"the second, longer upload"[..]].into_iter().enumerate() {
        let path = format!("/settled{i}.txt");
        c.open_data_ahead().unwrap();
        let mut up = c.stor_early(&path).unwrap();
        up.write_all(body).unwrap();
        let (size, taken) = up
            .end_with_size_then(&path, &[Settle::Mfmt(1_600_000_000), Settle::Chmod(0o640)])
            .unwrap_or_else(|e| panic!("upload {i}: {e}"));
        drop(up);
        assert_eq!(size, Some(body.len() as u64), "upload {i}: the size of the whole file");
        assert_eq!(taken, [false, false], "upload {i}: nothing behind the data counts as taken");
        assert!(!c.is_dead(), "upload {i}");
        assert_eq!(fetch(&mut c, &path, 0), body, "upload {i}");
        assert_eq!(c.size(&path).unwrap(), body.len() as u64, "upload {i}: replies in step");
    }
    c.quit();
}

/// The device number (st_dev) of the mount at `dir`, from /proc/self/mountinfo.
fn device_of(dir: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = dir.to_str()?;
    info.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.get(4) == Some(&want)).then(|| f[2].to_string())
    })
}

/// An unmounted mount whose process still saves a write-back upload (on a slow server) while
/// the kernel gives its device number to the next mount: `ftpfs stats` on the new mount gets
/// the new mount's answer, not the old process's.
#[test]
fn stats_reach_the_new_mount_while_the_old_one_still_saves_its_files() {
    if !fuse_available() {
        return;
    }
    let srv = FakeServer::start(&["--slow-stor", "1", "--slow-secs", "4"]);
    let cache = tempfile::tempdir().unwrap();
    let opts = format!("writeback,cache_dir={}", cache.path().display());
    let (old_dir, old_guard) = mount_fake(&srv, &opts);
    let old_device = device_of(old_dir.path());
    let old_pid = ftpfs_pid(old_dir.path());
    std::fs::write(old_dir.path().join("saved-late.txt"), b"uploaded at the unmount").unwrap();
    let out = Command::new("fusermount3").arg("-u").arg(old_dir.path()).output().unwrap();
    assert!(out.status.success(), "unmount: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!process_ended(old_pid), "the old process ended before the test could start the new mount");
    let (new_dir, _new_guard) = mount_fake(&srv, "");
    let new_device = device_of(new_dir.path());
    let out = support::mount::ftpfs_command(&["stats", new_dir.path().to_str().unwrap()]).output().unwrap();
    let stats = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    eprintln!("device numbers: old {old_device:?}, new {new_device:?}");
    assert!(out.status.success(), "{stats}");
    assert!(stats.contains(&new_dir.path().display().to_string()), "not the new mount's answer:\n{stats}");
    drop(old_guard);
}

/// Through the mount: a server that ends every third session at EPSV costs nothing but time;
/// every write and read succeeds, and PASV is never used.
#[test]
fn mount_rides_out_sessions_the_server_ends() {
    if !fuse_available() {
        return;
    }
    let log = tempfile::NamedTempFile::new().unwrap();
    let srv = FakeServer::start(&["--oops-epsv", "3", "--log-commands", log.path().to_str().unwrap()]);
    let (dir, _guard) = mount_fake(&srv, "");
    let out = sh(dir.path(), "for i in $(seq 30); do echo $i > f$i || exit 1; done; cat f7 f30 hello.txt");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "7\n30\nhello world\n");
    let sent = std::fs::read_to_string(log.path()).unwrap();
    assert!(sent.matches("EPSV").count() >= 30, "{sent}");
    assert!(!sent.lines().any(|l| l == "PASV"), "no downgrade: {sent}");
}

fn mount_fake(srv: &FakeServer, opts: &str) -> (tempfile::TempDir, support::mount::MountGuard) {
    let dir = tempfile::Builder::new().prefix("ftpfs-mnt-").tempdir().unwrap();
    let opts = support::mount::pin_work_ahead(&[opts]).join(",");
    let out = support::mount::ftpfs_command(&[&srv.url(), dir.path().to_str().unwrap(), "-o", &opts])
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
    let log = tempfile::NamedTempFile::new().unwrap();
    let srv = FakeServer::start(&["--log-commands", log.path().to_str().unwrap()]);
    // The silent call is tried again on fresh connections until about 8 timeouts have passed:
    // it is surely still waiting while the others are answered, however slow the machine.
    let (dir, _guard) = mount_fake(&srv, "timeout=3,cache_timeout=0");
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
    let mut slow =
        Command::new("ls").arg(d.join("silent_dir")).stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    // Once the server has the silent call's listing command, another call is answered meanwhile.
    let asked = |log: &std::path::Path| std::fs::read_to_string(log).unwrap_or_default().contains("silent_dir");
    while !asked(log.path()) && started.elapsed() < Duration::from_secs(6) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(asked(log.path()), "the silent call never reached the server");
    assert_eq!(std::fs::read(d.join("hello.txt")).unwrap(), b"hello world\n");
    assert!(slow.try_wait().unwrap().is_none(), "the silent call should still be waiting");
    let status = slow.wait().unwrap();
    assert!(!status.success());
    // Each attempt ends at the timeout (the lookup and the listing, each tried again on fresh
    // connections: about 8 × 3 s); a silence is 60 s per command.
    assert!(started.elapsed() < Duration::from_secs(50), "the timeout did not fire: {:?}", started.elapsed());
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
    let (dir, _guard) = mount_fake(&srv, "timeout=10,cache_timeout=0");
    let d = dir.path();
    for i in 0..15 {
        let out = sh(d, &format!("ls >/dev/null && cat hello.txt && echo line{i} > f{i}.txt && cat f{i}.txt"));
        assert!(out.status.success(), "round {i}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("hello world\nline{i}\n"));
    }
}

/// Uploads sent before the server's first reply (work ahead forced on, as for a far server)
/// whose connection is dropped at the STOR are sent again whole on a fresh connection: every
/// file lands with its content, and the log shows the STORs that were repeated.
#[test]
fn uploads_sent_early_are_repeated_after_a_dropped_connection() {
    if !fuse_available() {
        return;
    }
    let log = tempfile::NamedTempFile::new().unwrap();
    // Greeting as vsftpd does: like it, this server takes a data connection only after its
    // command, so uploads go out before the first reply.
    let srv = FakeServer::start(&[
        "--drop-stor",
        "3",
        "--greeting",
        "(vsFTPd 3.0.3) fake",
        "--log-commands",
        log.path().to_str().unwrap(),
    ]);
    let (dir, _guard) = mount_fake(&srv, "timeout=10,ahead_mib=8");
    let d = dir.path();
    let bodies: Vec<Vec<u8>> = (0..20u64).map(|i| support::DataGen::bytes(i, 100 + 9_000 * i as usize)).collect();
    for (i, body) in bodies.iter().enumerate() {
        std::fs::write(d.join(format!("f{i}.bin")), body).unwrap_or_else(|e| panic!("f{i}: {e}"));
    }
    for (i, body) in bodies.iter().enumerate() {
        assert_eq!(&std::fs::read(d.join(format!("f{i}.bin"))).unwrap(), body, "f{i}");
    }
    let commands = std::fs::read_to_string(log.path()).unwrap();
    let repeated = (0..20).filter(|i| commands.lines().filter(|l| *l == format!("STOR /f{i}.bin")).count() > 1).count();
    // Every third STOR is dropped: about a third of the files went up twice.
    assert!(repeated >= 5, "{repeated} uploads repeated:\n{commands}");
}

#[test]
fn broken_mlsd_falls_back_to_list_and_dos_listings_work() {
    if !fuse_available() {
        return;
    }
    for flag in ["--broken-mlsd", "--dos"] {
        let srv = FakeServer::start(&[flag]);
        let (dir, _guard) = mount_fake(&srv, "timeout=10");
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

/// Runs `cmd` for at most `limit` (killed after that): its exit status (None when it had to be
/// killed), its stderr and how long it ran.
fn run_bounded(mut cmd: Command, limit: Duration) -> (Option<ExitStatus>, String, Duration) {
    let started = Instant::now();
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn");
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break Some(st);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = started.elapsed();
    let mut err = String::new();
    if status.is_some() {
        let _ = child.stderr.take().expect("stderr").read_to_string(&mut err);
    }
    (status, err, took)
}

/// ftpfs mounting `srv` on a fresh directory with `-o opts`, bounded by `limit`.
fn mount_fake_bounded(srv: &FakeServer, opts: &str, limit: Duration) -> (Option<ExitStatus>, String, Duration) {
    let dir = tempfile::Builder::new().prefix("ftpfs-mnt-").tempdir().unwrap();
    let _guard = support::mount::MountGuard::new(dir.path());
    let mut cmd = support::mount::ftpfs_command(&[&srv.url(), dir.path().to_str().unwrap(), "-o", opts]);
    cmd.env("FTPFS_PASSWORD", "p");
    run_bounded(cmd, limit)
}

#[test]
fn silent_greeting_fails_within_the_timeout() {
    let srv = FakeServer::start(&["--silent-greeting"]);

    // The wire layer: one deadline for the whole connect, and the error names the step.
    let started = Instant::now();
    let err =
        Connection::connect_until(&srv.options(30), Instant::now() + Duration::from_secs(2)).expect_err("no greeting");
    // The deadline (2 s) ends it, not the timeout (30 s).
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the deadline did not end the connect: {:?}",
        started.elapsed()
    );
    assert!(matches!(&err, FtpError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut), "{err:?}");
    assert!(err.to_string().contains("no greeting from the server"), "{err}");

    // ftpfs: one start-up of at most `timeout` (5 s), not one per retry (15 s and more), and a
    // message saying what did not come.
    let (status, err, took) = mount_fake_bounded(&srv, "timeout=5", Duration::from_secs(40));
    let status = status.unwrap_or_else(|| panic!("ftpfs still running after {took:?}: {err}"));
    assert!(!status.success(), "mounted a server that never greeted: {err}");
    assert!(took < Duration::from_secs(12), "start-up took {took:?}, not bounded by timeout=5: {err}");
    assert!(took >= Duration::from_millis(4500), "gave up after {took:?}, before the timeout: {err}");
    assert!(err.contains("no greeting from the server within 5 s"), "{err}");
    assert!(err.contains(&format!("ftp://u@127.0.0.1:{}/", srv.port)), "{err}");
}

#[test]
fn broken_start_up_connections_are_retried() {
    if !fuse_available() {
        return;
    }
    // The first two logins are cut off (closed at PASS): the third attempt mounts.
    let log = tempfile::NamedTempFile::new().unwrap();
    let srv = FakeServer::start(&["--drop-login", "2", "--log-commands", log.path().to_str().unwrap()]);
    let (dir, _guard) = mount_fake(&srv, "timeout=5");
    assert_eq!(std::fs::read(dir.path().join("hello.txt")).unwrap(), b"hello world\n");
    let sent = std::fs::read_to_string(log.path()).unwrap();
    assert!(!sent.lines().any(|l| l == "PASS p"), "password not masked in the log:\n{sent}");
    assert!(sent.lines().filter(|l| *l == "PASS ****").count() >= 3, "{sent}");

    // Three in a row: ftpfs gives up, quickly (no timeout of 20 s involved), saying the server
    // closed.
    let srv = FakeServer::start(&["--drop-login", "3"]);
    let (status, err, took) = mount_fake_bounded(&srv, "timeout=20", Duration::from_secs(40));
    let status = status.unwrap_or_else(|| panic!("ftpfs still running after {took:?}: {err}"));
    assert!(!status.success(), "{err}");
    assert!(took < Duration::from_secs(12), "{took:?}: {err}");
    assert!(err.contains("closed"), "{err}");
}

/// The names in the fake server's root, read over a fresh wire connection.
fn server_names(srv: &FakeServer) -> Vec<String> {
    let mut c = Connection::connect(&srv.options(5)).expect("connect to the fake server");
    let mut names = list(&mut c, "/").expect("MLSD /");
    names.sort();
    names
}

/// The fake server's initial root plus `extra`, sorted.
fn initial_names_and(extra: &[&str]) -> Vec<String> {
    let mut names: Vec<String> =
        ["close_dir", "endless_dir", "garbage_dir", "hello.txt", "huge_dir", "normal_dir", "silent_dir"]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect();
    names.sort();
    names
}

/// The names of a directory through the mount, sorted.
fn mount_names(d: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Waits (at most 10 s) until the fake server has `path` with `content`.
fn wait_on_server(srv: &FakeServer, path: &str, content: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut c = Connection::connect(&srv.options(5)).expect("connect to the fake server");
        if c.size(path).ok() == Some(content.len() as u64) && fetch(&mut c, path, 0) == content {
            return;
        }
        assert!(Instant::now() < deadline, "{path} never reached the server with {content:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn rename_over_existing_on_a_server_that_refuses_it() {
    if !fuse_available() {
        return;
    }
    let log = tempfile::NamedTempFile::new().unwrap();
    let srv = FakeServer::start(&["--refuse-rename-over-existing", "--log-commands", log.path().to_str().unwrap()]);
    let (dir, _guard) = mount_fake(&srv, "timeout=5,cache_timeout=0");
    let d = dir.path();
    std::fs::write(d.join("a"), "A").unwrap();
    std::fs::write(d.join("b"), "B").unwrap();
    wait_on_server(&srv, "/a", b"A");
    wait_on_server(&srv, "/b", b"B");

    std::fs::rename(d.join("a"), d.join("b")).expect("rename a over b on a server that refuses RNTO onto b");

    assert_eq!(std::fs::read(d.join("b")).unwrap(), b"A");
    let gone = std::fs::symlink_metadata(d.join("a")).expect_err("a is still there");
    assert_eq!(gone.kind(), std::io::ErrorKind::NotFound);
    // Nothing else is left behind (no moved-aside copy of the old b), on the server…
    assert_eq!(server_names(&srv), initial_names_and(&["b"]));
    let mut c = Connection::connect(&srv.options(5)).unwrap();
    assert_eq!(fetch(&mut c, "/b", 0), b"A");
    // …and through the mount (cache_timeout=0: a fresh listing).
    assert_eq!(mount_names(d), initial_names_and(&["b"]));
    // The target was never deleted under its own name (only a copy moved aside may be).
    let sent = std::fs::read_to_string(log.path()).unwrap();
    assert!(!sent.lines().any(|l| l == "DELE /b" || l == "DELE b"), "the target was deleted:\n{sent}");
}

#[test]
fn failed_rename_never_removes_the_target() {
    if !fuse_available() {
        return;
    }
    for flags in [&["--refuse-rename-over-existing"][..], &[][..]] {
        let srv = FakeServer::start(flags);
        // A long cache timeout: the mount keeps believing in a after it vanished.
        let (dir, _guard) = mount_fake(&srv, "timeout=5,cache_timeout=60");
        let d = dir.path();
        std::fs::write(d.join("b"), "B").unwrap();
        std::fs::write(d.join("a"), "A").unwrap();
        wait_on_server(&srv, "/a", b"A");
        wait_on_server(&srv, "/b", b"B");
        let listed = mount_names(d);
        assert!(listed.contains(&"a".to_string()) && listed.contains(&"b".to_string()), "{flags:?}: {listed:?}");

        // a vanishes behind the mount's back.
        let mut c = Connection::connect(&srv.options(5)).unwrap();
        c.dele("/a").unwrap();

        let err = std::fs::rename(d.join("a"), d.join("b")).expect_err("renamed a file that is gone");
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "{flags:?}: {err}");
        // b is still there, unchanged, and nothing else appeared.
        assert_eq!(server_names(&srv), initial_names_and(&["b"]), "{flags:?}");
        let mut c = Connection::connect(&srv.options(5)).unwrap();
        assert_eq!(fetch(&mut c, "/b", 0), b"B", "{flags:?}");
        assert_eq!(std::fs::read(d.join("b")).unwrap(), b"B", "{flags:?}");
    }
}

/// The pid of the ftpfs process serving `mountpoint`.
fn ftpfs_pid(mountpoint: &Path) -> u32 {
    let out = Command::new("pgrep").arg("-f").arg(format!("ftpfs .*{}", mountpoint.display())).output().expect("pgrep");
    let text = String::from_utf8_lossy(&out.stdout);
    let pids: Vec<u32> = text.split_whitespace().filter_map(|p| p.parse().ok()).collect();
    assert_eq!(pids.len(), 1, "one ftpfs process for {}: {text:?}", mountpoint.display());
    pids[0]
}

/// True once the process is gone (or a zombie nobody reaped).
fn process_ended(pid: u32) -> bool {
    support::mount::process_gone(pid as i32)
}

/// SIGTERM, and an unmount from outside, end ftpfs within a few seconds even while a request is
/// stuck on a server that does not answer (timeout 60 s); the stuck call fails.
#[test]
fn sigterm_and_unmount_end_pending_requests() {
    if !fuse_available() {
        return;
    }
    let srv = FakeServer::start(&[]);
    for how in ["SIGTERM", "fusermount -u -z"] {
        let (dir, _guard) = mount_fake(&srv, "timeout=60,cache_timeout=0");
        let d = dir.path();
        let pid = ftpfs_pid(d);
        let mut stuck =
            Command::new("ls").arg(d.join("silent_dir")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(500));
        assert!(stuck.try_wait().unwrap().is_none(), "{how}: the call to the silent server should be waiting");
        let started = Instant::now();
        let ok = match how {
            "SIGTERM" => Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap().success(),
            _ => Command::new("fusermount3").args(["-u", "-z"]).arg(d).status().unwrap().success(),
        };
        assert!(ok, "{how} could not be sent");
        while !process_ended(pid) && started.elapsed() < Duration::from_secs(40) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let took = started.elapsed();
        assert!(process_ended(pid), "{how}: ftpfs still runs after {took:?}");
        // About 4 s (the unmount watch's second and the exit grace of 3 s); the timeout is 60.
        assert!(took < Duration::from_secs(30), "{how}: ftpfs took {took:?} to end");
        let status = loop {
            if let Some(st) = stuck.try_wait().unwrap() {
                break st;
            }
            assert!(started.elapsed() < Duration::from_secs(45), "{how}: the stuck call never ended");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(!status.success(), "{how}: the stuck call cannot have succeeded");
    }
}

/// A server that answers a command with `150` lines without end: the command fails after a
/// bounded number of them, the connection is not reused, and a fresh one works.
#[test]
fn endless_preliminary_replies_are_refused() {
    let srv = FakeServer::start(&["--endless-preliminary"]);
    let o = srv.options(5);
    let (tx, rx) = std::sync::mpsc::channel();
    let opts = o.clone();
    std::thread::spawn(move || {
        let mut c = Connection::connect(&opts).expect("connect");
        let res = c.cwd("/prelim_dir").map_err(|e| e.to_string());
        let _ = tx.send((res, c.is_dead()));
    });
    let (res, dead) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("CWD still reads 150 replies after 20 s: preliminary replies are not bounded");
    let err = res.expect_err("CWD answered only by 150 replies succeeded");
    assert!(err.contains("preliminary"), "{err}");
    assert!(dead, "a connection out of sync must not be reused");
    let mut c = Connection::connect(&o).unwrap();
    assert_eq!(fetch(&mut c, "/hello.txt", 0), b"hello world\n");
}

/// Listings past the bounds (250 000 entries; 64 MiB on the wire) are refused with ENOMEM
/// (what open(2), stat(2) and opendir(3) give when the memory for the answer is not there) and
/// a message naming the directory and the limit, on a connection that stays usable or is
/// replaced, never by holding them whole.
#[test]
fn oversized_listings_are_refused() {
    let srv = FakeServer::start(&["--many-entries", "300000", "--fat-listing", "80"]);
    let ctx = ListContext::now_utc();
    let mut c = Connection::connect(&srv.options(10)).unwrap();
    let Err(err) = list(&mut c, "/many_dir") else { panic!("MLSD of 300 000 entries was accepted") };
    assert_eq!(err.errno(ftpfs::ftp::Op::Lookup), libc::ENOMEM, "{err}");
    assert!(err.to_string().contains("/many_dir") && err.to_string().contains("250000 entries"), "{err}");
    let mut c = Connection::connect(&srv.options(10)).unwrap();
    let Err(err) = c.list("/many_dir", &ctx) else { panic!("LIST of 300 000 entries was accepted") };
    assert_eq!(err.errno(ftpfs::ftp::Op::Lookup), libc::ENOMEM, "{err}");
    let mut c = Connection::connect(&srv.options(10)).unwrap();
    let Err(err) = list(&mut c, "/fat_dir") else { panic!("an MLSD listing of 80 MiB was accepted") };
    assert_eq!(err.errno(ftpfs::ftp::Op::Lookup), libc::ENOMEM, "{err}");
    assert!(err.to_string().contains("/fat_dir") && err.to_string().contains("64 MiB"), "{err}");
    let mut c = Connection::connect(&srv.options(10)).unwrap();
    let Err(err) = c.nlst("/many_dir") else { panic!("NLST of 300 000 names was accepted") };
    assert_eq!(err.errno(ftpfs::ftp::Op::Lookup), libc::ENOMEM, "{err}");
    let mut c = Connection::connect(&srv.options(10)).unwrap();
    assert_eq!(fetch(&mut c, "/hello.txt", 0), b"hello world\n");
}

/// Through the mount: `ls` of a directory over the bounds fails with "Cannot allocate memory",
/// the log names the directory and the limit, and the rest of the mount works.
#[test]
fn oversized_listing_through_the_mount() {
    if !fuse_available() {
        return;
    }
    let srv = FakeServer::start(&["--many-entries", "300000"]);
    let log = tempfile::NamedTempFile::new().unwrap();
    let dir = tempfile::Builder::new().prefix("ftpfs-mnt-").tempdir().unwrap();
    let opts = support::mount::pin_work_ahead(&["timeout=10"]).join(",");
    let out = support::mount::ftpfs_command(&[&srv.url(), dir.path().to_str().unwrap(), "-o", &opts])
        .env("FTPFS_PASSWORD", "p")
        .env("FTPFS_LOG_FILE", log.path())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(out.status.success(), "mount: {}", String::from_utf8_lossy(&out.stderr));
    let _guard = support::mount::MountGuard::new(dir.path());
    let d = dir.path();
    let out = sh(d, "ls many_dir | wc -l");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Cannot allocate memory"),
        "ls of 300 000 entries: {err} (stdout {})",
        String::from_utf8_lossy(&out.stdout)
    );
    let logged = std::fs::read_to_string(log.path()).unwrap();
    assert!(
        logged.lines().any(|l| l.contains("/many_dir") && l.contains("250000 entries")),
        "no log line names the directory and the limit:\n{logged}"
    );
    assert_eq!(std::fs::read(d.join("hello.txt")).unwrap(), b"hello world\n");
}

/// Control characters anywhere: a string from the server or the user.
fn control_chars(s: &str) -> Vec<char> {
    s.chars().filter(|c| c.is_control() && *c != '\n').collect()
}

/// A password never shows in an error: one with CR/LF in it (refused before anything is sent)
/// or one the server's character set cannot carry.
#[test]
fn password_never_in_errors() {
    let srv = FakeServer::start(&[]);
    let mut o = srv.options(5);
    o.password = ftpfs::ftp::Secret::new("hunter2\r\nDELE /hello.txt");
    let Err(err) = Connection::connect(&o) else { panic!("a password with CR LF was sent") };
    assert!(matches!(err, FtpError::InvalidArgument(_)), "{err:?}");
    assert!(!err.to_string().contains("hunter2") && !format!("{err:?}").contains("hunter2"), "{err} / {err:?}");

    let mut o = srv.options(5);
    o.encoding = encoding_rs::Encoding::for_label(b"latin1");
    o.password = ftpfs::ftp::Secret::new("密hunter2");
    let Err(err) = Connection::connect(&o) else { panic!("a password latin1 cannot carry was sent") };
    assert!(!err.to_string().contains("hunter2") && !format!("{err:?}").contains("hunter2"), "{err} / {err:?}");

    // The command line: a password with CR LF in the URL, and URL forms the parser refuses.
    for url in [
        format!("ftp://u:hun%0D%0Ater2@127.0.0.1:{}/", srv.port),
        "ftp:u:hunter2@".to_string(),
        "ftp:/u:hunter2@h:99999".to_string(),
        "ftp:\\\\u:hunter2@[::1".to_string(),
        "ftp://u:hun/ter2@h".to_string(),
    ] {
        let out = support::mount::ftpfs_command(&["--probe", &url]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{url}: {err}");
        assert!(!err.contains("ter2"), "{url}: the password is in the message: {err}");
    }
}

/// The URL forms the parser takes with a password (`ftp:user:pw@host`, `ftp:/user:pw@host`)
/// are scrubbed from the command line `ps` shows, like `ftp://user:pw@host`.
#[test]
fn password_scrubbed_from_ps_in_every_url_form() {
    if !fuse_available() {
        return;
    }
    let srv = FakeServer::start(&[]);
    for url in [
        format!("ftp:u:hunter2@127.0.0.1:{}/", srv.port),
        format!("ftp:/u:hunter2@127.0.0.1:{}/", srv.port),
        format!("ftp:\\\\u:hunter2@127.0.0.1:{}/", srv.port),
    ] {
        let dir = tempfile::Builder::new().prefix("ftpfs-mnt-").tempdir().unwrap();
        let out =
            support::mount::ftpfs_command(&[&url, dir.path().to_str().unwrap(), "-o", "timeout=5"]).output().unwrap();
        assert!(out.status.success(), "{url}: {}", String::from_utf8_lossy(&out.stderr));
        let _guard = support::mount::MountGuard::new(dir.path());
        let pid = ftpfs_pid(dir.path());
        let cmdline =
            String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap()).replace('\0', " ");
        assert!(!cmdline.contains("hunter2"), "password visible in ps: {cmdline}");
        assert!(cmdline.contains("u@127.0.0.1"), "{cmdline}");
    }
}

/// Terminal control sequences in what the server says (greeting, SYST, FEAT, error replies)
/// never reach the terminal raw: not in errors, not in `--probe`'s report, not in the log.
#[test]
fn server_text_is_escaped_in_messages() {
    let srv = FakeServer::start(&["--escapes"]);
    let mut c = Connection::connect(&srv.options(5)).unwrap();
    let err = c.size("/missing").expect_err("SIZE of a missing file");
    assert_eq!(err.code(), Some(550));
    let shown = err.to_string();
    assert!(control_chars(&shown).is_empty(), "control characters in an error: {shown:?}");
    assert!(shown.contains("owned"), "{shown:?}");

    let out = support::mount::ftpfs_command(&["--probe", &srv.url()]).env("RUST_LOG", "ftpfs=trace").output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("greeting") && stdout.contains("owned"), "{stdout}");
    assert!(control_chars(&stdout).is_empty(), "control characters in --probe's report: {stdout:?}");
    assert!(stderr.contains("<- 220"), "no trace of replies in the log: {stderr}");
    assert!(control_chars(&stderr).is_empty(), "control characters in the log: {stderr:?}");
}

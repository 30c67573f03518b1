//! `-o delay_connect` through the kernel: the mount comes up while the server is down, each call
//! fails fast until the server answers (not a timeout per call), and the mount connects by
//! itself once it does; a refused login shows as EACCES on the calls, not as a failed mount.

#[macro_use]
mod support;

use std::time::{Duration, Instant};

use support::mount::{Mount, fuse_available, server_url};
use support::{FtpServer, ServerKind};

fn stats(m: &Mount) -> String {
    let out = support::mount::ftpfs_command(&["stats", m.path().to_str().unwrap()]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn mounts_before_the_server_answers(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    let mut srv = FtpServer::start(kind);
    srv.put_file("d/a", b"hello\n");
    srv.kill();

    let t0 = Instant::now();
    let m = Mount::new(&srv, &["delay_connect"]);
    assert!(t0.elapsed() < Duration::from_secs(10), "the mount waited {:?} for a server that is down", t0.elapsed());
    for _ in 0..3 {
        let t = Instant::now();
        let out = m.sh("ls d");
        assert!(!out.status.success(), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("Input/output error"), "{out:?}");
        // The default timeout is 30 s: a call may wait for one try, never for a timeout.
        assert!(t.elapsed() < Duration::from_secs(10), "a call took {:?}", t.elapsed());
    }
    let shown = stats(&m);
    assert!(shown.contains("not connected yet") && shown.contains("refused"), "{shown}");

    srv.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = m.sh("ls d");
        if out.status.success() {
            assert_eq!(String::from_utf8_lossy(&out.stdout), "a\n");
            break;
        }
        assert!(Instant::now() < deadline, "not connected 20 s after the server came up: {out:?}\n{}", stats(&m));
        std::thread::sleep(Duration::from_millis(200));
    }
    m.sh_ok("echo landed > d/new");
    assert_eq!(std::fs::read(srv.disk("d/new")).unwrap(), b"landed\n");
    assert!(stats(&m).contains("server        online"), "{}", stats(&m));
}

fn a_refused_login_fails_the_calls(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(kind);
    let url = server_url(&srv, "").replacen('@', ":wrong-password@", 1);
    let m = Mount::try_new(&srv, &["delay_connect"], Some(&url)).expect("mounted without the server's answer");
    // Servers answer a wrong password slowly (vsftpd 1 s, pyftpdlib 3 s): a call during that
    // try fails as one without an answer yet (EIO); the calls after it with the refusal.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = m.sh("ls");
        assert!(!out.status.success(), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        if err.contains("Permission denied") {
            break;
        }
        assert!(err.contains("Input/output error") && Instant::now() < deadline, "{out:?}");
    }
    let shown = stats(&m);
    assert!(shown.contains("530") && !shown.contains("wrong-password"), "{shown}");
}

on_servers!(
    [vsftpd: Vsftpd, pyftpdlib: Pyftpdlib],
    mounts_before_the_server_answers,
    a_refused_login_fails_the_calls,
);

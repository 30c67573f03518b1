//! Long transfers behind a NAT that forgets idle connections (issue 27, part 3).
//!
//! The kernel tests mount a real server through `examples/wan_proxy` as a NAT
//! ([`Wan::nat`]): control and data connections pass through it, data at 16 Mbit/s, and any
//! connection that carried no payload either way for 3 s is closed on both sides (TCP
//! keepalive probes carry none). A 16 MiB copy in or out then takes about 8 s, almost three
//! times the idle limit, while its control connection has nothing to say: NOOPs keep it alive
//! on the servers that take them (`ftp::keepalive`), and where the control connection is lost
//! all the same, an upload the server took whole counts as landed once SIZE shows it
//! (`remote::landed`). The scripted server checks that rule on its own: whole, short by a byte,
//! or with a time before the upload.

#[macro_use]
mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ftpfs::backend::{Backend, WriteMode};
use ftpfs::ftp::Connection;
use ftpfs::remote::{FtpBackend, FtpBackendConfig, Pool};
use support::mount::{Mount, ftpfs_command, fuse_available, pin_work_ahead};
use support::wan::Wan;
use support::{DataGen, FakeServer, FtpServer, ServerKind};

/// The NAT forgets a connection idle this long.
const IDLE: Duration = Duration::from_secs(3);
/// The NAT's rate each way: 2 MB/s.
const RATE_MBIT: u32 = 16;
/// Bytes of each copy: about 8.4 s at that rate.
const LEN: usize = 16 << 20;

/// `cp from to`: its exit status and standard error.
fn cp(from: &Path, to: &Path) -> (bool, String, Duration) {
    let started = Instant::now();
    let out = Command::new("cp").arg(from).arg(to).stdin(Stdio::null()).output().expect("run cp");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).trim().to_string(), started.elapsed())
}

/// What one copy in and one copy out through the NAT did.
struct Copies {
    up: (bool, String, Duration),
    up_on_disk: Option<Vec<u8>>,
    down: (bool, String, Duration),
    down_right: bool,
    /// Connections the NAT dropped on the server's control port.
    control_drops: usize,
}

/// Mounts `srv` through a NAT with `options`, copies a file in and another out.
fn copy_through_nat(kind: ServerKind, options: &[&str]) -> Copies {
    let srv = FtpServer::start(kind);
    srv.put_file("out.bin", &DataGen::bytes(28, LEN));
    let nat = Wan::nat(&srv, IDLE, RATE_MBIT);
    let m = Mount::try_new(&srv, options, Some(&Wan::nat_url(&srv))).unwrap_or_else(|e| panic!("mount: {e}"));
    let local = tempfile::tempdir().expect("temp dir");
    let body = DataGen::bytes(27, LEN);
    std::fs::write(local.path().join("in.bin"), &body).expect("local file");
    let up = cp(&local.path().join("in.bin"), &m.p("in.bin"));
    let up_on_disk = std::fs::read(srv.disk("in.bin")).ok();
    let down = cp(&m.p("out.bin"), &local.path().join("out.bin"));
    let down_right = std::fs::read(local.path().join("out.bin")).is_ok_and(|got| got == DataGen::bytes(28, LEN));
    let control_drops = nat.dropped().iter().filter(|&&p| p == srv.port).count();
    eprintln!(
        "{kind:?} {options:?}: upload {:?} in {:.1} s, download {:?} in {:.1} s, NAT dropped {:?}",
        (up.0, &up.1),
        up.2.as_secs_f64(),
        (down.0, &down.1),
        down.2.as_secs_f64(),
        nat.dropped()
    );
    Copies { up, up_on_disk, down, down_right, control_drops }
}

/// With NOOPs every second of silence, a copy in and a copy out that each last about three
/// times the NAT's idle limit succeed, the server's disk and the copy have the exact bytes, and
/// the NAT never dropped a control connection.
fn long_transfers_through_a_nat(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    let c = copy_through_nat(kind, &["keepalive=1"]);
    assert!(c.up.0, "copy into the mount failed: {}", c.up.1);
    assert!(c.up_on_disk.as_deref() == Some(&DataGen::bytes(27, LEN)[..]), "the server's copy differs");
    assert!(c.up.2 > IDLE * 2, "the upload took {:?}: not long enough to test anything", c.up.2);
    assert!(c.down.0, "copy out of the mount failed: {}", c.down.1);
    assert!(c.down_right, "the downloaded copy differs");
    assert!(c.down.2 > IDLE * 2, "the download took {:?}: not long enough to test anything", c.down.2);
    // Without NOOPs the copies above may still succeed by other means (a download resumes at
    // its end, vsftpd's upload is found whole): that their control connections lived is this.
    assert_eq!(c.control_drops, 0, "the NAT dropped a control connection");
}

on_servers!([vsftpd: Vsftpd, pyftpdlib: Pyftpdlib, proftpd: Proftpd], long_transfers_through_a_nat);

/// The test can fail: without NOOPs the NAT drops the control connection during the upload,
/// and pyftpdlib ends the session and its transfer with it: the copy fails (EPIPE), and the
/// server holds no whole copy.
#[test]
fn without_noops_the_nat_breaks_an_upload_on_pyftpdlib() {
    if !fuse_available() {
        return;
    }
    let c = copy_through_nat(ServerKind::Pyftpdlib, &["keepalive=0"]);
    assert!(!c.up.0, "the copy succeeded without NOOPs: the NAT did not test anything");
    assert!(c.control_drops >= 1, "the NAT dropped no control connection");
    assert!(c.up_on_disk.as_deref() != Some(&DataGen::bytes(27, LEN)[..]));
}

/// Without NOOPs on vsftpd, which finishes a transfer whatever happens to the control
/// connection: the NAT drops it during the upload, the 226 is lost, and the upload counts as
/// landed because SIZE (and MDTM) show it whole; the download's lost 226 is made good by
/// resuming at its end. Both copies succeed, with the exact bytes.
#[test]
fn without_noops_a_lost_226_lands_on_vsftpd() {
    if !fuse_available() {
        return;
    }
    let c = copy_through_nat(ServerKind::Vsftpd, &["keepalive=0"]);
    assert!(c.control_drops >= 1, "the NAT dropped no control connection");
    assert!(c.up.0, "copy into the mount failed: {}", c.up.1);
    assert!(c.up_on_disk.as_deref() == Some(&DataGen::bytes(27, LEN)[..]), "the server's copy differs");
    assert!(c.down.0, "copy out of the mount failed: {}", c.down.1);
    assert!(c.down_right, "the downloaded copy differs");
}

/// A backend over a pool of two transfer connections on the scripted server.
fn backend(srv: &FakeServer) -> FtpBackend {
    let opts = srv.options(5);
    let first = Connection::connect(&opts).expect("connect");
    let features = first.features().clone();
    let pool = Pool::new(opts, 2, Some(first));
    let cfg = FtpBackendConfig::new("/");
    FtpBackend::new(cfg, pool, features)
}

fn upload(be: &FtpBackend, path: &str, body: &[u8]) -> Result<Option<u64>, String> {
    let mut w = be
        .write(path, WriteMode::Replace, Duration::from_secs(3))
        .map_err(|e| format!("{e}"))?
        .ok_or("no connection")?;
    for chunk in body.chunks(16 * 1024) {
        w.write_all(chunk).map_err(|e| format!("write: {e}"))?;
    }
    w.finish().map_err(|e| format!("finish: {e:?}"))
}

/// The scripted server reads every STOR to its end, stores it and closes the control connection
/// without its 226: the upload counts as landed, since SIZE shows every byte and MDTM a time
/// after the start; the next upload, on a fresh connection, too.
#[test]
fn a_lost_226_after_the_whole_upload_counts_as_landed() {
    let srv = FakeServer::start(&["--lose-stor-reply", "1"]);
    let be = backend(&srv);
    for (i, len) in [300_000usize, 0, 1].into_iter().enumerate() {
        let body = DataGen::bytes(i as u64 + 60, len);
        let path = format!("lost{i}.bin");
        assert_eq!(upload(&be, &path, &body), Ok(Some(len as u64)), "{path}");
        assert_eq!(be.size(&path), Ok(Some(len as u64)));
    }
}

/// The same, but the server lost the last byte, or its file has a time from before the upload:
/// the upload fails (EIO), whatever the server holds.
#[test]
fn a_lost_226_without_the_whole_file_fails() {
    for flag in ["--store-short", "--stale-mdtm"] {
        let srv = FakeServer::start(&["--lose-stor-reply", "1", flag]);
        let be = backend(&srv);
        let body = DataGen::bytes(61, 300_000);
        let res = upload(&be, "short.bin", &body);
        assert!(matches!(&res, Err(e) if e.contains("Broken")), "{flag}: {res:?}");
    }
}

/// Through the kernel: `cp` into a mount of the scripted server that loses every 226 succeeds
/// and the server holds the file; where the server lost its last byte, `cp` fails with EIO.
#[test]
fn cp_through_a_lost_226() {
    if !fuse_available() {
        return;
    }
    for (flag, lands) in [("--lose-stor-reply", true), ("--store-short", false)] {
        let flags: &[&str] = if lands { &["--lose-stor-reply", "1"] } else { &["--lose-stor-reply", "1", flag] };
        let srv = FakeServer::start(flags);
        let dir = tempfile::Builder::new().prefix("ftpfs-mnt-").tempdir().expect("mountpoint");
        let opts = pin_work_ahead(&["timeout=5"]).join(",");
        let out = ftpfs_command(&[&srv.url(), dir.path().to_str().expect("path"), "-o", &opts])
            .env("FTPFS_PASSWORD", "p")
            .output()
            .expect("run ftpfs");
        assert!(out.status.success(), "mount: {}", String::from_utf8_lossy(&out.stderr));
        let _guard = support::mount::MountGuard::new(dir.path());
        let local = tempfile::tempdir().expect("temp dir");
        let body = DataGen::bytes(62, 200_000);
        std::fs::write(local.path().join("f.bin"), &body).expect("local file");
        let (ok, err, _) = cp(&local.path().join("f.bin"), &dir.path().join("f.bin"));
        assert_eq!(ok, lands, "{flag}: {err}");
        if lands {
            let mut c = Connection::connect(&srv.options(5)).expect("connect");
            assert_eq!(support::fetch(&mut c, "/f.bin", 0), body);
        } else {
            assert!(err.contains("Input/output error"), "{err}");
        }
    }
}

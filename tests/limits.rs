//! `-o bwlimit` and `-o max_requests_per_second` through the kernel (vsftpd, pyftpdlib): reads and
//! writes are paced to the limit each way (never faster; the bytes unchanged), and commands to
//! the server to their rate. Only lower bounds are checked here: on loopback the same work
//! takes a few milliseconds without the limits. How close to the limit they run is measured by
//! `scripts/bench.sh` (64 MiB at 4 MiB/s against 16 s), not asserted.

#[macro_use]
mod support;

use std::time::{Duration, Instant};

use support::mount::{Mount, fuse_available};
use support::{DataGen, FtpServer, ServerKind};

/// What a limit may let through at once (`ftp::throttle::BURST`), and slack for the clock.
const BURST: Duration = Duration::from_millis(300);

fn transfers_keep_to_the_bandwidth_limit(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(kind);
    let data = DataGen::bytes(3, 2 << 20);
    srv.put_file("two_mib", &data);
    // Up 512 KiB/s, down 1 MiB/s: each transfer below takes 2 s at least.
    let m = Mount::new(&srv, &["bwlimit=512K:1M"]);
    let t0 = Instant::now();
    assert!(std::fs::read(m.p("two_mib")).unwrap() == data);
    let read = t0.elapsed();
    assert!(read >= Duration::from_secs(2) - BURST, "2 MiB read at 1 MiB/s in {read:?}");
    let t0 = Instant::now();
    std::fs::write(m.p("up"), &data[..1 << 20]).unwrap();
    let written = t0.elapsed();
    assert!(written >= Duration::from_secs(2) - BURST, "1 MiB written at 512 KiB/s in {written:?}");
    assert!(std::fs::read(srv.disk("up")).unwrap() == data[..1 << 20]);
}

fn commands_keep_to_the_request_limit(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(kind);
    let m = Mount::new(&srv, &["max_requests_per_second=10"]);
    // Ten directories: ten MKDs at least, one a tenth of a second.
    let t0 = Instant::now();
    m.sh_ok("for i in 0 1 2 3 4 5 6 7 8 9; do mkdir d$i; done");
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(1000) - BURST, "10 MKDs at 10 a second in {took:?}");
    assert!((0..10).all(|i| srv.disk(&format!("d{i}")).is_dir()));
}

on_servers!(
    [vsftpd: Vsftpd, pyftpdlib: Pyftpdlib],
    transfers_keep_to_the_bandwidth_limit,
    commands_keep_to_the_request_limit,
);

//! Uploads sent before the server's first reply (see `ftp::upload`), and ones that wait for it,
//! through the FTP backend and its pool, on the scripted server greeting as vsftpd (it takes data
//! connections only after their command, as vsftpd does): an upload is sent again only when the
//! server's session provably did nothing with it, and sending it again does not wait behind its
//! own broken connection.

#[macro_use]
mod support;

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ftpfs::backend::{Backend, WriteMode};
use ftpfs::ftp::Connection;
use ftpfs::remote::{FtpBackend, FtpBackendConfig, Pool};
use support::FakeServer;

const AS_VSFTPD: &str = "(vsFTPd 3.0.3) scripted";

/// A backend over a pool of `connections` on `srv`, whose first transfer already proved that
/// the server takes data connections opened ahead.
fn backend(srv: &FakeServer, timeout_secs: u64, connections: usize) -> (FtpBackend, Arc<Pool>) {
    backend_opening_ahead(srv, timeout_secs, connections, true)
}

/// As [`backend`]; without `ahead`, the pool opens no data connection ahead after the first
/// transfer, so the next upload cannot go early: it waits for its 150 as any STOR (as an upload
/// does on a connection logged in meanwhile, which never had a data connection opened ahead
/// taken: under load, the pool may hand out such a one).
fn backend_opening_ahead(
    srv: &FakeServer,
    timeout_secs: u64,
    connections: usize,
    ahead: bool,
) -> (FtpBackend, Arc<Pool>) {
    let opts = srv.options(timeout_secs);
    let mut first = Connection::connect(&opts).expect("connect");
    first.try_data_ahead().expect("EPSV");
    let features = first.features().clone();
    let pool = Pool::new(opts, connections, Some(first));
    pool.open_data_ahead(ahead);
    let cfg = FtpBackendConfig::new("/");
    let be = FtpBackend::new(cfg, pool.clone(), features);
    upload(&be, "first", b"proves data connections opened ahead").expect("first upload");
    // The next upload takes this connection, back and idle (with its next data connection
    // opened ahead where the pool opens them): asked for while it is still being prepared, the
    // pool would also log in another, and under load may hand out that one instead, which never
    // sends early.
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool.spare() < connections {
        assert!(Instant::now() < deadline, "the first connection never came back idle");
        std::thread::sleep(Duration::from_millis(10));
    }
    (be, pool)
}

fn upload(be: &FtpBackend, path: &str, body: &[u8]) -> Result<Option<u64>, String> {
    let wait = Duration::from_secs(3);
    let mut w = be.write(path, WriteMode::Replace, wait).map_err(|e| format!("{e}"))?.ok_or("no connection")?;
    for chunk in body.chunks(16 * 1024) {
        w.write_all(chunk).map_err(|e| format!("write: {e}"))?;
    }
    w.finish().map_err(|e| format!("finish: {e}"))
}

/// Uploads `b` where the server carries its STOR out late (after our reply timeout): the upload
/// must fail (`why`), and the server never end up holding less than a copy reported saved. The
/// old session carries the STOR out late, with what it got: sending the file again elsewhere
/// would have been overwritten by that, after close() had said it was saved.
fn assert_slow_upload_fails_and_stays_whole(srv: &FakeServer, be: &FtpBackend, why: &str) {
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let res = upload(be, "b", &body);
    std::thread::sleep(Duration::from_millis(3500));
    let held = server_copy(srv, "/b");
    assert!(
        res.is_err() || held == body,
        "upload reported {res:?}, server holds {} of {} bytes",
        held.len(),
        body.len()
    );
    assert!(res.is_err(), "{why}: {res:?}");
}

fn server_copy(srv: &FakeServer, path: &str) -> Vec<u8> {
    let mut c = Connection::connect(&srv.options(5)).expect("connect");
    let mut d = c.retr(path, 0).expect("RETR");
    let mut got = Vec::new();
    d.read_to_end(&mut got).expect("read");
    d.finish().expect("226");
    got
}

#[test]
fn an_early_upload_whose_first_reply_timed_out_is_not_sent_again() {
    // Every second STOR waits 3 s in the server; we wait 2 s for a reply.
    let srv = FakeServer::start(&["--slow-stor", "2", "--slow-secs", "3", "--greeting", AS_VSFTPD]);
    let (be, _pool) = backend(&srv, 2, 4);
    assert_slow_upload_fails_and_stays_whole(&srv, &be, "a timed-out early upload must fail, not be sent again");
}

#[test]
fn an_upload_whose_first_reply_timed_out_is_not_started_again() {
    // As above, on a connection that cannot send the upload early: its STOR waits for its 150,
    // which times out. The old session carries the STOR out late with the data connection we
    // closed: an empty file, over any copy sent again on another connection.
    let srv = FakeServer::start(&["--slow-stor", "2", "--slow-secs", "3", "--greeting", AS_VSFTPD]);
    let (be, _pool) = backend_opening_ahead(&srv, 2, 4, false);
    assert_slow_upload_fails_and_stays_whole(
        &srv,
        &be,
        "an upload whose first reply timed out must fail, not be started again",
    );
}

#[test]
fn an_early_upload_dropped_by_the_server_is_sent_again_without_waiting_for_its_own_connection() {
    for connections in [1, 4] {
        // Every second STOR closes the session without a reply and without reading the data.
        let srv = FakeServer::start(&["--drop-stor", "2", "--greeting", AS_VSFTPD]);
        // A reply timeout of 15 s: waiting behind its own broken connection would cost all of
        // it, while the upload sent again on another connection takes well under a second.
        let (be, _pool) = backend(&srv, 15, connections);
        let started = Instant::now();
        let res = upload(&be, "b", b"second body");
        assert_eq!(res, Ok(Some(11)), "connections={connections}");
        assert!(started.elapsed() < Duration::from_secs(7), "connections={connections}: {:?}", started.elapsed());
        assert_eq!(server_copy(&srv, "/b"), b"second body", "connections={connections}");
    }
}

//! The wire layer against real servers: every test runs on vsftpd, pyftpdlib, pure-ftpd and
//! proftpd, and checks results on the server's own disk.

#[macro_use]
mod support;

use std::io::{Read, Write};

use ftpfs::ftp::{Connection, DataMode, EntryKind, FtpError, ListContext, Op, TransferType};
use support::{DataGen, FtpServer, PASSWORD, ServerConfig, ServerKind, TlsServer, assert_stream_matches, fetch};

fn listing_names(conn: &mut Connection, kind: ServerKind, path: &str) -> Vec<(String, EntryKind, Option<u64>)> {
    let entries = if kind.has_mlsd() {
        conn.mlsd(path).expect("MLSD")
    } else {
        conn.list(path, &ListContext::now_utc()).expect("LIST")
    };
    let mut v: Vec<_> = entries.into_iter().map(|e| (e.name, e.kind, e.size)).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn login_ok(kind: ServerKind) {
    let srv = FtpServer::start(kind);
    let mut c = srv.connect();
    assert_eq!(c.pwd().unwrap(), "/");
    let f = c.features().clone();
    assert!(f.epsv && f.size && f.mdtm && f.utf8 && f.rest_stream, "{f:?}");
    assert_eq!(f.mlst.is_some(), kind.has_mlsd(), "{f:?}");
    assert_eq!(f.mfmt, kind.has_mfmt(), "{f:?}");
    assert!(!c.syst().unwrap().is_empty());
    c.noop().unwrap();
    assert_eq!(c.transfer_type(), TransferType::Binary);
    c.set_type(TransferType::Ascii).unwrap();
    assert_eq!(c.transfer_type(), TransferType::Ascii);
    c.set_type(TransferType::Binary).unwrap();
    c.quit();
}

fn wrong_password(kind: ServerKind) {
    let srv = FtpServer::start(kind);
    let mut o = srv.options();
    o.password = ftpfs::ftp::Secret::new("not-the-password");
    let err = Connection::connect(&o).expect_err("login must fail");
    match &err {
        FtpError::Reply { code, text } => {
            assert_eq!(*code, 530, "{err}");
            assert!(!text.is_empty());
        }
        other => panic!("expected a 530 reply, got {other:?}"),
    }
    assert_eq!(err.errno(Op::Session), libc::EACCES);
    assert!(!format!("{err} {err:?}").contains(PASSWORD));
}

/// A later connection logs in with USER, PASS, OPTS and TYPE in one write where the server is
/// known to read them in turn (one round trip instead of four); the session is the same as
/// after a login step by step, and a wrong password still fails as a login.
fn pipelined_login(kind: ServerKind) {
    let srv = FtpServer::start(kind);
    let first = srv.connect();
    assert_eq!(
        ftpfs::ftp::control::reads_pipelined_login(first.welcome()),
        kind.reads_pipelined_login(),
        "{:?}",
        first.welcome()
    );
    srv.put_file("d/f", b"12345");
    let mut o = srv.options();
    o.known_features = Some(first.features().clone());
    let mut c = Connection::connect(&o).expect("pipelined login");
    assert_eq!(c.transfer_type(), TransferType::Binary);
    assert_eq!(c.pwd().unwrap(), "/");
    assert_eq!(c.size("/d/f").unwrap(), 5, "TYPE I in force");
    assert_eq!(listing_names(&mut c, kind, "/d"), vec![("f".to_string(), EntryKind::File, Some(5))]);
    o.password = ftpfs::ftp::Secret::new("not-the-password");
    let err = Connection::connect(&o).expect_err("login must fail");
    assert!(matches!(&err, FtpError::Reply { code: 530, .. }), "{err}");
    assert_eq!(err.errno(Op::Session), libc::EACCES);
    assert!(!format!("{err} {err:?}").contains(PASSWORD));
}

fn directory_commands(kind: ServerKind) {
    let srv = FtpServer::start(kind);
    let mut c = srv.connect();
    let made = c.mkd("/new dir").unwrap();
    assert!(made.ends_with("new dir"), "{made}");
    assert!(srv.disk("new dir").is_dir());
    c.cwd("/new dir").unwrap();
    assert_eq!(c.pwd().unwrap(), "/new dir");
    c.cwd("/").unwrap();
    let err = c.mkd("/new dir").expect_err("MKD of an existing dir");
    assert_eq!(err.errno(Op::Mkdir), libc::EEXIST, "{err}");
    let err = c.cwd("/missing").expect_err("CWD missing");
    assert_eq!(err.errno(Op::Lookup), libc::ENOENT, "{err}");

    srv.put_file("new dir/inner.txt", b"x");
    let err = c.rmd("/new dir").expect_err("RMD of a non-empty dir");
    assert!(matches!(err.code(), Some(550)), "{err}");
    assert!(srv.disk("new dir").is_dir());
    c.dele("/new dir/inner.txt").unwrap();
    assert!(!srv.disk("new dir/inner.txt").exists());
    c.rmd("/new dir").unwrap();
    assert!(!srv.disk("new dir").exists());
    let err = c.dele("/new dir/inner.txt").expect_err("DELE missing");
    assert_eq!(err.errno(Op::Delete), libc::ENOENT, "{err}");
}

fn file_commands(kind: ServerKind) {
    let srv = FtpServer::start(kind);
    srv.put_file("a.txt", b"hello world");
    let mut c = srv.connect();
    assert_eq!(c.size("/a.txt").unwrap(), 11);
    let (mtime, _) = c.mdtm("/a.txt").unwrap();
    let disk_mtime = std::fs::metadata(srv.disk("a.txt")).unwrap();
    let disk_secs = disk_mtime.modified().unwrap().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert_eq!(mtime, disk_secs);
    let err = c.size("/nope").expect_err("SIZE missing");
    assert_eq!(err.errno(Op::Lookup), libc::ENOENT);

    c.rename("/a.txt", "/b c.txt").unwrap();
    assert!(!srv.disk("a.txt").exists());
    assert_eq!(std::fs::read(srv.disk("b c.txt")).unwrap(), b"hello world");
    let err = c.rename("/a.txt", "/x").expect_err("RNFR missing");
    assert_eq!(err.errno(Op::Rename), libc::ENOENT);

    c.site_chmod("/b c.txt", 0o600).unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(srv.disk("b c.txt")).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    let stamp = 1_600_000_000; // 2020-09-13 12:26:40 UTC
    match kind.has_mfmt() {
        true => {
            c.mfmt("/b c.txt", stamp).unwrap();
            assert_eq!(c.mdtm("/b c.txt").unwrap().0, stamp);
            let m = std::fs::metadata(srv.disk("b c.txt")).unwrap().modified().unwrap();
            assert_eq!(m.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64, stamp);
            let e = c.mlst("/b c.txt").unwrap();
            assert_eq!((e.name.as_str(), e.size, e.mtime), ("b c.txt", Some(11), Some(stamp)));
            assert_eq!(e.kind, EntryKind::File);
        }
        false => {
            // Not ENOSYS: the kernel takes that for "never implemented" (src/adapter.rs).
            let err = c.mfmt("/b c.txt", stamp).expect_err("vsftpd has no MFMT");
            assert_eq!(err.errno(Op::SetAttr), libc::EOPNOTSUPP, "{err}");
            let err = c.mlst("/b c.txt").expect_err("vsftpd has no MLST");
            assert_eq!(err.errno(Op::Lookup), libc::EOPNOTSUPP, "{err}");
        }
    }
    // The connection is still in sync after all those refusals.
    assert_eq!(c.size("/b c.txt").unwrap(), 11);
}

/// MDTM of many names pipelined (more than one window of them): each file's time to the
/// second, nothing for a directory or a missing name, and the connection in sync afterwards.
fn mdtm_of_many_files_pipelined(kind: ServerKind) {
    let srv = FtpServer::start(kind);
    let count = ftpfs::ftp::times::WINDOW * 2 + 7;
    let mut paths = Vec::new();
    for i in 0..count {
        let name = format!("f {i}.txt");
        srv.put_file(&name, b"x");
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000 + i as u64 * 61);
        std::fs::File::options().write(true).open(srv.disk(&name)).unwrap().set_modified(when).unwrap();
        paths.push(format!("/{name}"));
    }
    srv.put_file("d/inside", b"");
    paths.insert(3, "/missing".into());
    paths.insert(10, "/d".into());
    let mut c = srv.connect();
    let times = c.mdtm_many(&paths).unwrap();
    assert_eq!(times.len(), paths.len());
    for (p, t) in paths.iter().zip(&times) {
        match p.strip_prefix("/f ").and_then(|r| r.strip_suffix(".txt")) {
            Some(i) => {
                let i: i64 = i.parse().unwrap();
                assert_eq!(t.map(|t| t.0), Some(1_600_000_000 + i * 61), "{p}");
            }
            None if p == "/d" && kind == ServerKind::Pyftpdlib => {} // pyftpdlib times directories too
            None => assert_eq!(*t, None, "{p}"),
        }
    }
    assert!(!c.is_dead());
    assert_eq!(c.size("/f 0.txt").unwrap(), 1, "in sync after the pipelined replies");
}

/// Listings of several directories by pipelined STAT (vsftpd): the same entries as LIST, in
/// one round trip; a name that forges the end of a reply is caught by the echoed REST behind
/// the batch, and the batch refused.
#[test]
fn stat_listings_on_vsftpd() {
    let srv = FtpServer::start(ServerKind::Vsftpd);
    srv.put_file("a/one.txt", b"1");
    srv.put_file("a/.dotfile", b"22");
    srv.put_file("b/name with  spaces.txt", b"333");
    srv.put_file("b/sub/deeper", b"4444");
    std::fs::create_dir_all(srv.disk("c")).unwrap();
    let mut c = srv.connect();
    assert!(c.can_list_by_stat());
    let ctx = ListContext::now_utc();
    let dirs: Vec<String> = ["/a", "/b", "/c"].iter().map(|d| d.to_string()).collect();
    let batch = c.stat_listings(&dirs, &ctx).expect("STAT batch");
    assert_eq!(batch.len(), 3);
    let key = |e: &ftpfs::ftp::Entry| (e.name.clone(), format!("{:?}", e.kind), e.size, e.mtime);
    for (d, listed) in dirs.iter().zip(&batch) {
        let mut by_stat: Vec<_> = listed.iter().map(key).collect();
        let mut by_list: Vec<_> = c.list(d, &ctx).expect("LIST").iter().map(key).collect();
        by_stat.sort();
        by_list.sort();
        assert_eq!(by_stat, by_list, "{d}");
    }
    assert_eq!(batch[0].len(), 2, "dotfiles listed: {:?}", batch[0]);
    assert!(batch[2].is_empty());
    assert_eq!(c.size("/a/one.txt").unwrap(), 1, "in sync after the batch");

    // A name with CR LF that forges the end of its STAT reply and a listing for the next
    // directory (with a file that does not exist), as another user of the server could.
    let forged = "x\r\n213 End of status\r\n213-Status follows:\r\n-rw-r--r-- 1 0 0 5 Jan 01 2020 planted";
    srv.put_file("evil/plain", b"");
    std::fs::write(srv.disk("evil").join(forged), b"").unwrap();
    let dirs: Vec<String> = ["/evil", "/a"].iter().map(|d| d.to_string()).collect();
    let err = c.stat_listings(&dirs, &ctx).expect_err("a forged reply must refuse the batch");
    assert!(matches!(err, FtpError::Protocol(_)), "{err}");
    assert!(c.is_dead(), "a connection out of step is not used again");
}

fn listings(kind: ServerKind) {
    let srv = FtpServer::start(kind);
    srv.put_file("one.txt", b"1");
    srv.put_file(".dotfile", b"22");
    srv.put_file("sub/deeper.bin", b"333");
    srv.put_file("name with  spaces é.txt", b"4444");
    std::os::unix::fs::symlink("one.txt", srv.disk("link")).unwrap();
    let mut c = srv.connect();
    let names = listing_names(&mut c, kind, "/");
    let find = |n: &str| names.iter().find(|e| e.0 == n).unwrap_or_else(|| panic!("{n} missing in {names:?}"));
    assert_eq!(find("one.txt").1, EntryKind::File);
    assert_eq!(find("one.txt").2, Some(1));
    assert_eq!(find(".dotfile").2, Some(2), "dotfiles must be listed");
    assert_eq!(find("sub").1, EntryKind::Dir);
    assert_eq!(find("name with  spaces é.txt").2, Some(4));
    if kind.lists_symlinks() {
        assert!(matches!(&find("link").1, EntryKind::Symlink(_)), "{:?}", find("link"));
    }
    assert!(names.iter().all(|e| e.0 != "." && e.0 != ".."));
    let sub = listing_names(&mut c, kind, "/sub");
    assert_eq!(sub, vec![("deeper.bin".to_string(), EntryKind::File, Some(3))]);
    let mut nl = c.nlst("/sub").unwrap();
    nl.iter_mut().for_each(|n| *n = n.rsplit('/').next().unwrap_or(n).to_string());
    assert_eq!(nl, vec!["deeper.bin"]);
    // Both servers also answer plain LIST.
    let raw = String::from_utf8(c.list_raw("/").unwrap()).unwrap();
    assert!(raw.contains("one.txt"), "{raw}");
}

fn retr_with_offsets(kind: ServerKind) {
    let srv = FtpServer::start(kind);
    let data = DataGen::bytes(7, 300_000);
    srv.put_file("f.bin", &data);
    let mut c = srv.connect();
    for offset in [0u64, 1, 4096, 123_457, 299_999, 300_000] {
        let got = fetch(&mut c, "/f.bin", offset);
        assert_eq!(got, &data[offset as usize..], "offset {offset}");
    }
    let err = c.retr("/missing.bin", 0).err().expect("RETR missing");
    assert_eq!(err.errno(Op::Read), libc::ENOENT);
}

fn early_end_of_retr_keeps_sync(kind: ServerKind) {
    let srv = FtpServer::start(kind);
    let len = 32 << 20;
    let mut f = std::fs::File::create(srv.disk("big.bin")).unwrap();
    let mut g = DataGen::new(3);
    let mut buf = vec![0; 1 << 20];
    for _ in 0..32 {
        g.fill(&mut buf);
        f.write_all(&buf).unwrap();
    }
    drop(f);
    let mut c = srv.connect();
    for round in 0..3 {
        {
            let mut dl = c.retr("/big.bin", 0).unwrap();
            let mut part = vec![0; 100_000];
            dl.read_exact(&mut part).unwrap();
            assert_eq!(part, DataGen::bytes(3, 100_000), "round {round}");
            // dropped here: early end
        }
        if c.is_dead() {
            c = srv.connect();
        }
        // Whatever happened, the connection we hold answers correctly.
        assert_eq!(c.size("/big.bin").unwrap(), len, "round {round}");
    }
    // A RETR read to the end reports success.
    let tail = fetch(&mut c, "/big.bin", len - 10);
    assert_eq!(tail.len(), 10);
    assert!(!c.is_dead());
}

fn store_append_roundtrip_100mib(kind: ServerKind) {
    let srv = FtpServer::start(kind);
    let mut c = srv.connect();
    let len: u64 = 100 << 20;
    let mut up = c.stor("/big.bin").unwrap();
    let mut g = DataGen::new(42);
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..100 {
        g.fill(&mut buf);
        up.write_all(&buf).unwrap();
    }
    up.finish().unwrap();
    assert_eq!(c.size("/big.bin").unwrap(), len);
    let disk = std::fs::File::open(srv.disk("big.bin")).unwrap();
    assert_stream_matches(std::io::BufReader::new(disk), 42, len, "server disk");
    let mut dl = c.retr("/big.bin", 0).unwrap();
    assert_stream_matches(&mut dl, 42, len, "RETR");
    dl.finish().unwrap();

    // STOR replaces, APPE appends (and creates).
    let mut up = c.stor("/big.bin").unwrap();
    up.write_all(b"short").unwrap();
    up.finish().unwrap();
    assert_eq!(std::fs::read(srv.disk("big.bin")).unwrap(), b"short");
    if kind == ServerKind::Proftpd {
        // proftpd refuses APPE unless AllowStoreRestart is on (the mount falls back to STOR).
        let err = c.appe("/big.bin").err().expect("APPE refused by default");
        assert_eq!(err.code(), Some(451), "{err}");
        assert_eq!(c.size("/big.bin").unwrap(), 5, "connection in sync after the refusal");
    } else {
        let mut up = c.appe("/big.bin").unwrap();
        up.write_all(b"+more").unwrap();
        up.finish().unwrap();
        assert_eq!(std::fs::read(srv.disk("big.bin")).unwrap(), b"short+more");
        let mut up = c.appe("/fresh.txt").unwrap();
        up.write_all(b"new").unwrap();
        up.finish().unwrap();
        assert_eq!(std::fs::read(srv.disk("fresh.txt")).unwrap(), b"new");
    }
    // Empty file.
    c.stor("/empty").unwrap().finish().unwrap();
    assert_eq!(std::fs::metadata(srv.disk("empty")).unwrap().len(), 0);
}

fn data_modes(kind: ServerKind) {
    let srv = FtpServer::start(kind);
    srv.put_file("m.txt", b"mode test");
    for (name, mode, epsv) in
        [("EPSV", DataMode::Passive, true), ("PASV", DataMode::Passive, false), ("active", DataMode::Active, true)]
    {
        let mut o = srv.options();
        o.data_mode = mode;
        o.use_epsv = epsv;
        let mut c = Connection::connect(&o).unwrap();
        let got = fetch(&mut c, "/m.txt", 0);
        assert_eq!(got, b"mode test", "{name}");
        let mut up = c.stor(&format!("/up-{name}.txt")).unwrap();
        up.write_all(name.as_bytes()).unwrap();
        up.finish().unwrap();
        assert_eq!(std::fs::read(srv.disk(&format!("up-{name}.txt"))).unwrap(), name.as_bytes());
        assert!(listing_names(&mut c, kind, "/").iter().any(|e| e.0 == "m.txt"), "{name}");
        assert!(!c.uses_pasv_fallback(), "{name}: EPSV works on loopback, no fallback expected");
    }
}

fn crlf_names_refused(kind: ServerKind) {
    let srv = FtpServer::start(kind);
    srv.put_file("victim.txt", b"keep me");
    let mut c = srv.connect();
    for bad in ["x\r\nDELE /victim.txt", "x\nDELE /victim.txt", "x\0y"] {
        let err = c.dele(bad).expect_err("must refuse");
        assert!(matches!(err, FtpError::InvalidArgument(_)), "{err:?}");
        assert_eq!(err.errno(Op::Delete), libc::EINVAL);
        assert!(c.stor(bad).is_err());
        assert!(c.retr(bad, 0).is_err());
        assert!(c.rename("/victim.txt", bad).is_err());
        assert!(c.list_raw(bad).is_err());
    }
    assert_eq!(std::fs::read(srv.disk("victim.txt")).unwrap(), b"keep me");
    assert!(!c.is_dead());
    assert_eq!(c.size("/victim.txt").unwrap(), 7);
}

fn ipv6_host(kind: ServerKind) {
    let srv = FtpServer::start_with(kind, ServerConfig { host: Some("::1".into()), ..Default::default() });
    srv.put_file("six.txt", b"over ipv6");
    for mode in [DataMode::Passive, DataMode::Active] {
        let mut o = srv.options();
        o.data_mode = mode;
        let mut c = Connection::connect(&o).unwrap();
        assert!(c.peer_addr().is_ipv6());
        let got = fetch(&mut c, "/six.txt", 0);
        assert_eq!(got, b"over ipv6", "{mode:?}");
    }
}

/// The data connection of the next transfer opened ahead (EPSV + handshake while idle), and SIZE
/// asked in an upload's last round trip: transfers, listings and refusals stay correct and the
/// control connection in sync.
fn data_ahead_and_size_behind_uploads(kind: ServerKind) {
    let srv = FtpServer::start(kind);
    let mut c = srv.connect();
    assert!(!c.wants_data_ahead(), "nothing is opened ahead before EPSV proved itself");
    c.open_data_ahead().unwrap();
    for i in 0..12u64 {
        let name = format!("f{i}.txt");
        let path = format!("/{name}");
        let body = DataGen::bytes(i, 1000 + 37 * i as usize);
        let mut up = c.stor(&path).unwrap();
        up.write_all(&body).unwrap();
        assert_eq!(up.finish_with_size(&path).unwrap(), Some(body.len() as u64), "{name}");
        assert_eq!(std::fs::read(srv.disk(&name)).unwrap(), body, "{name} on disk");
        assert!(c.wants_data_ahead(), "EPSV worked: the next data connection may be opened ahead");
        c.open_data_ahead().unwrap();
        assert!(!c.wants_data_ahead());
        // Short commands leave the data connection opened ahead in place.
        assert_eq!(c.size(&path).unwrap(), body.len() as u64);
        assert_eq!(fetch(&mut c, &path, 0), body, "{name} whole");
        c.open_data_ahead().unwrap();
        assert_eq!(fetch(&mut c, &path, 500), &body[500..], "{name} from 500");
        c.open_data_ahead().unwrap();
        let names: Vec<String> = listing_names(&mut c, kind, "/").into_iter().map(|e| e.0).collect();
        assert!(names.contains(&name), "{names:?}");
    }
    // Refused transfers over a data connection opened ahead keep the session in sync.
    c.open_data_ahead().unwrap();
    let err = c.retr("/missing.bin", 0).err().expect("RETR of a missing file");
    assert_eq!(err.errno(Op::Read), libc::ENOENT);
    c.open_data_ahead().unwrap();
    assert!(c.stor("/no-such-dir/x").is_err(), "STOR into a missing directory");
    assert_eq!(c.size("/f3.txt").unwrap(), 1000 + 37 * 3);
    assert!(!c.is_dead());
    c.quit();
}

/// STOR sent on a data connection opened ahead with its data behind it, before the server's
/// first reply: small files in one round trip, a file past the early limit, a refused STOR
/// (the connection is then closed, never reused) and an upload that can be started again.
fn stor_before_its_first_reply(kind: ServerKind) {
    let srv = FtpServer::start(kind);
    let mut c = srv.connect();
    c.open_data_ahead().unwrap();
    // The first transfer over a data connection opened ahead proves the server takes them.
    c.stor("/first.txt").unwrap().finish().unwrap();
    let sizes = [0usize, 1, 4096, ftpfs::ftp::upload::EARLY_BYTES, ftpfs::ftp::upload::EARLY_BYTES + 1, 3 << 20];
    for (i, len) in sizes.into_iter().enumerate() {
        c.open_data_ahead().unwrap();
        let path = format!("/early{i}.bin");
        let body = DataGen::bytes(i as u64 + 40, len);
        let mut up = c.stor_early(&path).unwrap();
        // Several writes, as the kernel hands them over.
        for chunk in body.chunks(10_000) {
            up.write_all(chunk).unwrap();
        }
        assert_eq!(up.finish_with_size(&path).unwrap(), Some(len as u64), "{path}");
        assert_eq!(std::fs::read(srv.disk(&path[1..])).unwrap(), body, "{path} on disk");
        assert!(!c.is_dead(), "{path}");
    }
    // Without SIZE behind it.
    c.open_data_ahead().unwrap();
    let mut up = c.stor_early("/plain.txt").unwrap();
    up.write_all(b"plain finish").unwrap();
    up.finish().unwrap();
    assert_eq!(std::fs::read(srv.disk("plain.txt")).unwrap(), b"plain finish");
    // Refused: the error comes with the finish, nothing lands, the connection is closed.
    c.open_data_ahead().unwrap();
    if kind == ServerKind::Pyftpdlib {
        // pyftpdlib takes data connections before their command: it never gets data early, so
        // the refusal comes at the start and the session goes on.
        let err = c.stor_early("/no-such-dir/x").err().expect("STOR into a missing directory");
        assert!(matches!(err, ftpfs::ftp::FtpError::Reply { code: 550..=553, .. }), "{err}");
        assert!(!c.is_dead());
        c.quit();
        return;
    }
    let mut up = c.stor_early("/no-such-dir/x").unwrap();
    // ProFTPD resets the data connection as it refuses: the write learns it first, and then
    // reads the refusal; either way the finish reports it and nothing is sent again.
    let _ = up.write_all(b"lost on purpose");
    let err = up.end_with_size("/no-such-dir/x").expect_err("STOR into a missing directory");
    assert!(matches!(err, ftpfs::ftp::FtpError::Reply { code: 550..=553, .. }), "{err}");
    assert_eq!(up.replay_after_failure(), None, "a refusal is not sent again");
    drop(up);
    assert!(c.is_dead(), "a refused early STOR ends its connection");
    assert!(!srv.disk("no-such-dir").exists());
    // A new session on the same server is not confused by what the refused one sent.
    let mut c = srv.connect();
    c.open_data_ahead().unwrap();
    c.stor("/after.txt").unwrap().finish().unwrap();
    let body = DataGen::bytes(99, 5000);
    c.open_data_ahead().unwrap();
    let mut up = c.stor_early("/after.txt").unwrap();
    up.write_all(&body).unwrap();
    assert_eq!(up.finish_with_size("/after.txt").unwrap(), Some(5000));
    assert_eq!(std::fs::read(srv.disk("after.txt")).unwrap(), body);
    c.quit();
}

/// APPE sent with its data before the server's first reply, once the server took an APPE on
/// a data connection opened ahead: the bytes land once, in order; a refused one is reported
/// at the end and its connection closed. And a time and a mode sent behind an upload's SIZE:
/// taken after the data on vsftpd (which reads nothing during a transfer), not sent at all on
/// the others (the caller sets them on their own).
fn appe_early_and_settles_behind_uploads(kind: ServerKind) {
    use ftpfs::ftp::upload::Settle;
    let srv = FtpServer::start(kind);
    let mut c = srv.connect();
    c.open_data_ahead().unwrap();
    c.stor("/log.txt").unwrap().finish().unwrap();
    let mut want = Vec::new();
    // ProFTPD as the harness runs it refuses APPE ("Append/Restart not permitted"): the mount
    // never sends one early there (it appends through a copy).
    let appends = kind != ServerKind::Proftpd;
    if !appends {
        let err = c.appe("/log.txt").err().expect("ProFTPD refuses APPE");
        assert!(matches!(err, ftpfs::ftp::FtpError::Reply { code: 451 | 550, .. }), "{err}");
    }
    for i in (0..3).filter(|_| appends) {
        c.open_data_ahead().unwrap();
        let line = format!("line {i}\n");
        let mut up = c.appe_early("/log.txt").unwrap();
        up.write_all(line.as_bytes()).unwrap();
        want.extend_from_slice(line.as_bytes());
        assert_eq!(up.finish_with_size("/log.txt").unwrap(), Some(want.len() as u64));
        assert_eq!(std::fs::read(srv.disk("log.txt")).unwrap(), want, "after append {i}");
    }

    let stamp = 1_600_000_000;
    let time = if kind.has_mfmt() { Settle::Mfmt(stamp) } else { Settle::MdtmSet(stamp) };
    c.open_data_ahead().unwrap();
    let mut up = c.stor_early("/settled.txt").unwrap();
    up.write_all(b"settled").unwrap();
    let (size, taken) = up.end_with_size_then("/settled.txt", &[time, Settle::Chmod(0o640)]).unwrap();
    drop(up);
    assert_eq!(size, Some(7));
    let meta = std::fs::metadata(srv.disk("settled.txt")).unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777;
    let mtime = meta.modified().unwrap().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    if kind == ServerKind::Vsftpd {
        assert_eq!(taken, [true, true]);
        assert_eq!((mtime, mode), (stamp, 0o640), "set after the data");
    } else {
        assert_eq!(taken, [false, false], "nothing behind the data where the server reads during transfers");
        assert_ne!(mtime, stamp);
    }
    assert!(!c.is_dead());
    assert_eq!(c.size("/settled.txt").unwrap(), 7, "in sync");

    if kind == ServerKind::Pyftpdlib || !appends {
        // pyftpdlib takes data connections before their command: nothing is sent early there.
        c.quit();
        return;
    }
    c.open_data_ahead().unwrap();
    let mut up = c.appe_early("/no-such-dir/x").unwrap();
    let _ = up.write_all(b"lost on purpose");
    let err = up.end_with_size("/no-such-dir/x").expect_err("APPE into a missing directory");
    assert!(matches!(err, ftpfs::ftp::FtpError::Reply { code: 550..=553, .. }), "{err}");
    assert_eq!(up.replay_after_failure(), None, "an append is never sent again");
    drop(up);
    assert!(c.is_dead(), "a refused early APPE ends its connection");
    assert_eq!(std::fs::read(srv.disk("log.txt")).unwrap(), want, "nothing else appended");
}

/// The EPSV of the next transfer sent behind the end of the current one (before its final
/// reply is read) on the servers known to answer in order: uploads, downloads and listings stay
/// correct, and each leaves the next data connection open.
fn epsv_behind_the_end_of_transfers(kind: ServerKind) {
    let srv = FtpServer::start(kind);
    let mut c = srv.connect();
    c.set_open_ahead(true);
    c.open_data_ahead().unwrap();
    // Only vsftpd answers in order behind a transfer (see ftp::transfer::answers_in_order).
    let pipelined = kind == ServerKind::Vsftpd;
    for i in 0..8u64 {
        let path = format!("/e{i}.bin");
        let body = DataGen::bytes(i + 70, 500 + 30_000 * i as usize);
        let mut up = c.stor_early(&path).unwrap();
        up.write_all(&body).unwrap();
        assert_eq!(up.finish_with_size(&path).unwrap(), Some(body.len() as u64), "{path}");
        assert_eq!(c.has_data_ahead(), pipelined, "{path}: next data connection open after the upload");
        c.open_data_ahead().unwrap();
        assert_eq!(fetch(&mut c, &path, 0), body, "{path}");
        assert_eq!(c.has_data_ahead(), pipelined, "{path}: next data connection open after the download");
        c.open_data_ahead().unwrap();
        let names: Vec<String> = listing_names(&mut c, kind, "/").into_iter().map(|e| e.0).collect();
        assert!(names.contains(&path[1..].to_string()), "{names:?}");
        assert_eq!(c.has_data_ahead(), pipelined, "{path}: next data connection open after the listing");
        c.open_data_ahead().unwrap();
        assert_eq!(std::fs::read(srv.disk(&path[1..])).unwrap(), body);
        // A short command in between leaves it in place.
        assert_eq!(c.size(&path).unwrap(), body.len() as u64);
    }
    assert!(!c.is_dead());
    c.quit();
}

/// The reply-code → errno table on the live servers: each situation staged on the server's
/// disk, the command sent, its errno checked (the same rows, with the texts, are unit tests in
/// src/ftp/error.rs). Expected errnos are given for [vsftpd, pyftpdlib, pure-ftpd, proftpd];
/// `None` where the situation does not arise there (pyftpdlib runs as root: no permission
/// refusals; vsftpd has no MLSD or MFMT). vsftpd's texts name no reason, so its rows show what
/// the code and the command give; the model looks at the listing where that is not enough
/// (tests/mount.rs `error_messages`).
fn replies_map_to_documented_errnos(kind: ServerKind) {
    use libc::*;
    let srv = FtpServer::start(kind);
    srv.put_file("f", b"hello");
    srv.put_file("full/x", b"x");
    srv.put_file("d/x", b"");
    std::fs::remove_file(srv.disk("d/x")).unwrap();
    srv.put_file("locked", b"secret");
    let mode = |p: &str, m: u32| {
        std::fs::set_permissions(srv.disk(p), std::os::unix::fs::PermissionsExt::from_mode(m)).unwrap()
    };
    mode("locked", 0o000);
    srv.put_file("ro/inner", b"i");
    mode("ro", 0o555);
    std::fs::write(srv.disk("rootfile"), b"r").unwrap();
    std::os::unix::fs::chown(srv.disk("rootfile"), Some(0), Some(0)).unwrap();
    let c = &mut srv.connect();
    let which = match kind {
        ServerKind::Vsftpd => 0,
        ServerKind::Pyftpdlib => 1,
        ServerKind::PureFtpd => 2,
        ServerKind::Proftpd => 3,
    };
    let store = |c: &mut Connection, path: &str| {
        c.stor(path).and_then(|mut up| {
            let _ = up.write_all(b"data");
            up.finish()
        })
    };
    let unknown = |c: &mut Connection| match c.command("XYZZY", None) {
        Ok(r) if r.code >= 400 => Err(r.into_error()),
        Ok(_) => Ok(()),
        Err(e) => Err(e),
    };
    type Row<'a> = (&'a str, Op, Result<(), FtpError>, [Option<i32>; 4]);
    let all = |e| [Some(e); 4];
    let rows: Vec<Row> = vec![
        ("RETR of a missing file", Op::Read, c.retr("/missing", 0).map(drop), all(ENOENT)),
        (
            "RETR of a directory",
            Op::Read,
            c.retr("/d", 0).map(drop),
            [Some(ENOENT), Some(EISDIR), Some(EISDIR), Some(EISDIR)],
        ),
        (
            "RETR of a mode 000 file",
            Op::Read,
            c.retr("/locked", 0).map(drop),
            [Some(ENOENT), None, Some(EACCES), Some(EACCES)],
        ),
        ("SIZE of a missing file", Op::Lookup, c.size("/missing").map(drop), all(ENOENT)),
        ("CWD to a missing directory", Op::Lookup, c.cwd("/missing"), all(ENOENT)),
        ("CWD to a file", Op::Lookup, c.cwd("/f"), [Some(ENOENT), Some(ENOTDIR), Some(ENOTDIR), Some(ENOTDIR)]),
        (
            "MLSD of a missing directory",
            Op::Mlsd,
            c.mlsd("/missing").map(drop),
            [Some(EOPNOTSUPP), Some(ENOENT), Some(ENOENT), Some(ENOENT)],
        ),
        (
            "MLSD of a file",
            Op::Mlsd,
            c.mlsd("/f").map(drop),
            [Some(EOPNOTSUPP), Some(ENOENT), Some(ENOENT), Some(ENOTDIR)],
        ),
        (
            "STOR into a missing directory",
            Op::Write,
            store(c, "/nodir/x"),
            [Some(EACCES), Some(ENOENT), Some(ENOENT), Some(ENOENT)],
        ),
        ("STOR over a directory", Op::Write, store(c, "/d"), [Some(EACCES), Some(EISDIR), Some(EISDIR), Some(EISDIR)]),
        (
            "STOR into a read-only directory",
            Op::Write,
            store(c, "/ro/new"),
            [Some(EACCES), None, Some(EACCES), Some(EACCES)],
        ),
        ("MKD of an existing directory", Op::Mkdir, c.mkd("/d").map(drop), all(EEXIST)),
        (
            "MKD in a missing directory",
            Op::Mkdir,
            c.mkd("/nodir/x").map(drop),
            [Some(EEXIST), Some(ENOENT), Some(ENOENT), Some(ENOENT)],
        ),
        (
            "MKD in a read-only directory",
            Op::Mkdir,
            c.mkd("/ro/new").map(drop),
            [Some(EEXIST), None, Some(EACCES), Some(EACCES)],
        ),
        (
            "RMD of a non-empty directory",
            Op::Rmdir,
            c.rmd("/full"),
            [Some(ENOENT), Some(ENOTEMPTY), Some(ENOTEMPTY), Some(ENOTEMPTY)],
        ),
        ("RMD of a missing directory", Op::Rmdir, c.rmd("/missing"), all(ENOENT)),
        ("RMD of a file", Op::Rmdir, c.rmd("/f"), [Some(ENOENT), Some(ENOTDIR), Some(ENOTDIR), Some(ENOTDIR)]),
        ("DELE of a missing file", Op::Delete, c.dele("/missing"), all(ENOENT)),
        ("DELE of a directory", Op::Delete, c.dele("/d"), [Some(ENOENT), Some(EISDIR), Some(EISDIR), Some(EISDIR)]),
        (
            "DELE in a read-only directory",
            Op::Delete,
            c.dele("/ro/inner"),
            [Some(ENOENT), None, Some(EACCES), Some(EACCES)],
        ),
        ("rename of a missing file", Op::Rename, c.rename("/missing", "/x"), all(ENOENT)),
        (
            "rename over a non-empty directory",
            Op::Rename,
            c.rename("/d", "/full"),
            [Some(ENOENT), Some(ENOTEMPTY), Some(ENOTEMPTY), Some(ENOTEMPTY)],
        ),
        ("rename into a missing directory", Op::Rename, c.rename("/f", "/nodir/x"), all(ENOENT)),
        (
            "rename of a directory into itself",
            Op::Rename,
            c.rename("/d", "/d/sub"),
            [Some(ENOENT), Some(EINVAL), Some(EINVAL), Some(EINVAL)],
        ),
        (
            "SITE CHMOD of a missing file",
            Op::SetAttr,
            c.site_chmod("/missing", 0o600),
            [Some(EPERM), Some(ENOENT), Some(ENOENT), Some(ENOENT)],
        ),
        (
            "SITE CHMOD of another user's file",
            Op::SetAttr,
            c.site_chmod("/rootfile", 0o600),
            [Some(EPERM), None, Some(EPERM), Some(EPERM)],
        ),
        (
            "MFMT of a missing file",
            Op::SetAttr,
            c.mfmt("/missing", 1_600_000_000),
            [Some(EOPNOTSUPP), Some(ENOENT), Some(ENOENT), Some(ENOENT)],
        ),
        ("an unknown command", Op::Lookup, unknown(c), all(EOPNOTSUPP)),
    ];
    let mut wrong = Vec::new();
    for (what, op, res, expected) in rows {
        let Some(expected) = expected[which] else { continue };
        let (got, reply) = match &res {
            Ok(()) => (0, "success".to_string()),
            Err(e) => (e.errno(op), e.to_string()),
        };
        assert_ne!(got, ENOSYS, "{what}: {reply}");
        if got != expected {
            wrong.push(format!("{what}: errno {got}, expected {expected} ({reply})"));
        }
    }
    assert!(wrong.is_empty(), "{kind:?}:\n{}", wrong.join("\n"));
    // The connection is still in sync after all those refusals.
    assert_eq!(c.size("/f").unwrap(), 5);
    if kind == ServerKind::Pyftpdlib {
        // pyftpdlib drops the login at a USER after it: a later 530 ends the session (the pool
        // logs in again on a fresh connection), it is not "permission denied".
        let _ = c.command("USER", Some("somebody"));
        let err = c.pwd().expect_err("logged out");
        assert!(matches!(err, FtpError::LoggedOut(_)), "{err:?}");
        assert!(err.is_session_ended() && err.is_reconnectable(), "{err:?}");
        assert_eq!(err.errno(Op::Lookup), EIO);
        assert!(c.is_dead());
    }
}

/// NOOPs sent during slow transfers (ftp::keepalive): on vsftpd, ProFTPD and pyftpdlib a NOOP
/// goes out after each `keepalive` of silence on the control connection while data flows; none
/// on Pure-FTPd, which does not answer them in step. Uploads (with SIZE and the next EPSV
/// behind them, started early or not), downloads and a download ended early all leave the
/// server's disk right and the control connection in step for the commands after them.
fn noop_during_transfers(kind: ServerKind) {
    let srv = FtpServer::start(kind);
    noops_in_slow_transfers(&srv, kind);
}

/// [`noop_during_transfers`] over TLS (control and data encrypted), where the suite has it.
fn noop_during_tls_transfers(kind: ServerKind) {
    let srv = FtpServer::start_with(kind, ServerConfig { tls: Some(TlsServer::Explicit), ..Default::default() });
    noops_in_slow_transfers(&srv, kind);
}

fn noops_in_slow_transfers(srv: &FtpServer, kind: ServerKind) {
    let mut o = srv.options();
    o.keepalive = std::time::Duration::from_millis(60);
    let mut c = Connection::connect(&o).expect("connect");
    c.set_open_ahead(true);
    let keeps = kind != ServerKind::PureFtpd;
    assert_eq!(c.keeps_transfers_alive(), keeps);
    let pause = || std::thread::sleep(std::time::Duration::from_millis(20));
    let noops = |c: &Connection, before: u64, what: &str| {
        let sent = c.keepalive_noops() - before;
        assert!(if keeps { sent >= 3 } else { sent == 0 }, "{what}: {sent} NOOPs sent");
    };
    for round in 0..3u64 {
        let path = format!("/slow{round}.bin");
        let body = DataGen::bytes(round + 500, 48 * 8192 + round as usize);
        c.open_data_ahead().expect("EPSV ahead");
        let before = c.keepalive_noops();
        let mut up = if round == 1 { c.stor_early(&path) } else { c.stor(&path) }.expect("STOR");
        for chunk in body.chunks(8192) {
            up.write_all(chunk).expect("write");
            pause();
        }
        if round == 2 {
            up.finish().expect("end of the upload");
        } else {
            assert_eq!(up.finish_with_size(&path).expect("end of the upload"), Some(body.len() as u64), "{path}");
        }
        noops(&c, before, &format!("upload of {path}"));
        assert_eq!(std::fs::read(srv.disk(&path)).expect("on disk"), body, "{path} on disk");
        let before = c.keepalive_noops();
        let mut dl = c.retr(&path, 0).expect("RETR");
        let mut got = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = dl.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            pause();
        }
        dl.finish().expect("end of the download");
        noops(&c, before, &format!("download of {path}"));
        assert!(got == body, "{path} read back");
        // In step: each command gets its own reply.
        assert_eq!(c.size(&path).expect("SIZE"), body.len() as u64);
        c.noop().expect("NOOP");
        assert!(listing_names(&mut c, kind, "/").iter().any(|e| e.0 == path[1..]), "{path} listed");
        assert!(!c.is_dead(), "{path}");
    }
    // A download ended early with NOOPs unanswered: in step again, or closed, never out of step.
    srv.put_file("big.bin", &DataGen::bytes(7, 8 << 20));
    let mut dl = c.retr("/big.bin", 0).expect("RETR");
    let mut buf = [0u8; 8192];
    for _ in 0..20 {
        dl.read_exact(&mut buf).expect("read");
        pause();
    }
    drop(dl);
    if !c.is_dead() {
        assert_eq!(c.size("/slow0.bin").expect("SIZE after an early end"), 48 * 8192);
        assert_eq!(fetch(&mut c, "/slow1.bin", 0), DataGen::bytes(501, 48 * 8192 + 1));
    }
    c.quit();
}

mod tls {
    use super::support;
    on_servers!([vsftpd: Vsftpd, pyftpdlib: Pyftpdlib, pureftpd: PureFtpd], noop_during_tls_transfers);
    fn noop_during_tls_transfers(kind: support::ServerKind) {
        super::noop_during_tls_transfers(kind)
    }
}

on_every_server!(
    pipelined_login,
    noop_during_transfers,
    login_ok,
    epsv_behind_the_end_of_transfers,
    stor_before_its_first_reply,
    appe_early_and_settles_behind_uploads,
    wrong_password,
    directory_commands,
    file_commands,
    mdtm_of_many_files_pipelined,
    listings,
    retr_with_offsets,
    early_end_of_retr_keeps_sync,
    store_append_roundtrip_100mib,
    data_modes,
    crlf_names_refused,
    ipv6_host,
    data_ahead_and_size_behind_uploads,
    replies_map_to_documented_errnos,
);

//! A mount that lives through server restarts, idle timeouts, connection limits and long mixed
//! workloads, with data checked against a model or the server's disk.

#[macro_use]
mod support;

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use support::mount::{Mount, fuse_available};
use support::{DataGen, FtpServer, ServerConfig, ServerKind};

fn server_restart_mid_session(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    let mut srv = FtpServer::start(kind);
    srv.put_file("before.txt", b"before");
    let m = Mount::new(&srv, &["cache_timeout=0"]);
    assert_eq!(std::fs::read(m.p("before.txt")).unwrap(), b"before");
    srv.restart();
    // Every kind of operation works again without the user doing anything.
    assert!(m.sh_ok("ls").contains("before.txt"));
    assert_eq!(std::fs::read(m.p("before.txt")).unwrap(), b"before");
    m.sh_ok("echo after > after.txt && mkdir d && mv after.txt d/ && rm before.txt");
    assert_eq!(std::fs::read(srv.disk("d/after.txt")).unwrap(), b"after\n");
    assert!(!srv.disk("before.txt").exists());
    // And once more, with operations that change things first.
    srv.restart();
    m.sh_ok("mkdir e && rmdir e && echo x > d/x && rm d/x");
    assert!(!srv.disk("e").exists() && !srv.disk("d/x").exists());
}

/// With work ahead forced on (as for a far server), uploads go out before the server's first
/// reply on data connections opened ahead; a server restart breaks every idle connection and
/// its data connection, and the uploads after it are started again and land whole.
fn server_restart_between_uploads_sent_early(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    let mut srv = FtpServer::start(kind);
    let m = Mount::new(&srv, &["ahead_mib=8"]);
    for round in 0..3 {
        for i in 0..6 {
            let body = DataGen::bytes(round * 10 + i, 3000 + 20_000 * i as usize);
            std::fs::write(m.p(&format!("r{round}-{i}.bin")), &body).unwrap();
            assert_eq!(std::fs::read(srv.disk(&format!("r{round}-{i}.bin"))).unwrap(), body, "round {round} file {i}");
        }
        srv.restart();
    }
    m.sh_ok("echo last > last.txt");
    assert_eq!(std::fs::read(srv.disk("last.txt")).unwrap(), b"last\n");
}

fn server_killed_during_copy_fails_the_copy(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    let mut srv = FtpServer::start(kind);
    let m = Mount::new(&srv, &["timeout=5"]);
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("big.bin");
    let mut f = std::fs::File::create(&src).unwrap();
    let mut g = DataGen::new(5);
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..400 {
        g.fill(&mut buf);
        f.write_all(&buf).unwrap();
    }
    drop(f);
    let child = std::process::Command::new("cp")
        .arg(&src)
        .arg(m.p("big.bin"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the server once the upload is under way.
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::metadata(srv.disk("big.bin")).map(|m| m.len()).unwrap_or(0) < (8 << 20) && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    srv.kill();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "cp must not claim success when the server died mid-upload");
    let err = String::from_utf8_lossy(&out.stderr);
    // The connection's own error (reset, broken pipe) or EIO, on a write or the close of big.bin.
    let broken =
        ["Input/output error", "Connection reset by peer", "Broken pipe", "Transport endpoint is not connected"];
    assert!(
        err.contains("big.bin") && broken.iter().any(|b| err.contains(b)),
        "cp must report the broken upload: {err}"
    );
}

fn idle_timeout_is_survived(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    // vsftpd drops sessions idle for 2 s; pyftpdlib keeps them, so it serves as the baseline.
    let cfg = ServerConfig { vsftpd_extra: vec!["idle_session_timeout=2".into()], ..Default::default() };
    let srv = FtpServer::start_with(kind, cfg);
    srv.put_file("f.txt", b"data");
    let m = Mount::new(&srv, &["cache_timeout=0"]);
    for round in 0..3 {
        assert_eq!(std::fs::read(m.p("f.txt")).unwrap(), b"data", "round {round}");
        std::thread::sleep(Duration::from_millis(3000));
        m.sh_ok(&format!("mkdir r{round} && echo {round} > r{round}/x && mv r{round}/x r{round}/y"));
        assert!(srv.disk(&format!("r{round}/y")).is_file());
    }
}

/// vsftpd with `max_per_ip=2` refuses a third connection: four readers that each hold a download
/// open still all get their data, and the pool's ceiling (as `ftpfs stats` shows it) comes down
/// to what the server accepts. vsftpd only: the other servers of the suite have no per-address
/// limit configured by the harness.
#[test]
fn connection_limit_shrinks_the_pool() {
    if !fuse_available() {
        return;
    }
    let cfg = ServerConfig { vsftpd_extra: vec!["max_per_ip=2".into()], ..Default::default() };
    let srv = FtpServer::start_with(ServerKind::Vsftpd, cfg);
    for i in 0..4 {
        srv.put_file(&format!("p{i}.bin"), &DataGen::bytes(i, 6 << 20));
    }
    let m = Mount::new(&srv, &["connections=4"]);
    // Four readers open their files at the same moment and take their first MiB, keeping their
    // downloads open: four transfers want four connections (plus the one for listings) before
    // any of them has been idle long enough to give its connection up.
    let start = std::sync::Barrier::new(4);
    let readers: Vec<(std::fs::File, Vec<u8>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let (path, start) = (m.p(&format!("p{i}.bin")), &start);
                s.spawn(move || {
                    start.wait();
                    let mut f = std::fs::File::open(path).unwrap();
                    let mut first = vec![0u8; 1 << 20];
                    f.read_exact(&mut first).unwrap();
                    (f, first)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, (mut r, mut got)) in readers.into_iter().enumerate() {
        r.read_to_end(&mut got).unwrap();
        assert!(got == DataGen::bytes(i as u64, 6 << 20), "reader {i} got other data");
    }
    let out = support::mount::ftpfs_command(&["stats", m.path().to_str().unwrap()]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let ceiling: usize = text
        .split(" open of at most ")
        .nth(1)
        .and_then(|t| t.split(':').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no connections line in ftpfs stats: {text}"));
    assert!(ceiling <= 2, "the pool still aims at {ceiling} connections where the server takes 2: {text}");
    m.sh_ok("ls && echo ok > ok.txt");
    assert!(srv.disk("ok.txt").is_file());
}

/// Random reads, writes, truncates and reopen cycles through the mount, checked against a model
/// after every step, and against the server's disk after every close.
fn random_operations_match_a_model(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(kind);
    let m = Mount::new(&srv, &[]);
    let path = m.p("model.bin");
    let mut model: Vec<u8> = Vec::new();
    let mut rng = DataGen::new(77);
    let mut r = |n: u64| {
        let mut b = [0u8; 8];
        rng.fill(&mut b);
        u64::from_le_bytes(b) % n
    };
    let mut file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
    let ops = 2500;
    for step in 0..ops {
        let op = r(100);
        if std::env::var("MODEL_TRACE").is_ok() {
            eprintln!("step {step}: op {op} len {}", model.len());
        }
        match op {
            0..=39 => {
                let off = r(model.len() as u64 + 4096);
                let len = 1 + r(8192) as usize;
                let data = DataGen::bytes(step, len);
                file.write_all_at(&data, off).unwrap();
                let end = off as usize + len;
                if model.len() < end {
                    model.resize(end, 0);
                }
                model[off as usize..end].copy_from_slice(&data);
            }
            40..=69 => {
                let off = r(model.len() as u64 + 100);
                let len = 1 + r(16384) as usize;
                let mut buf = vec![0u8; len];
                let n = file.read_at(&mut buf, off).unwrap();
                let want = model.get(off as usize..(off as usize + len).min(model.len())).unwrap_or(&[]);
                assert_eq!(&buf[..n], want, "step {step}: read {len} at {off}");
            }
            70..=79 => {
                let len = r(model.len() as u64 * 2 + 1000);
                file.set_len(len).unwrap();
                model.resize(len as usize, 0);
            }
            80..=86 => {
                // Append through O_APPEND.
                let data = DataGen::bytes(step + 1_000_000, 1 + r(3000) as usize);
                let mut a = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
                file.sync_all().unwrap();
                a.write_all(&data).unwrap();
                drop(a);
                model.extend_from_slice(&data);
            }
            _ => {
                drop(file);
                assert_eq!(
                    std::fs::read(srv.disk("model.bin")).unwrap(),
                    model,
                    "step {step}: server disk after close"
                );
                file = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
            }
        }
        // After every step the whole file reads back as the model says.
        let mut all = Vec::new();
        file.seek(SeekFrom::Start(0)).unwrap();
        file.read_to_end(&mut all).unwrap();
        assert!(all == model, "step {step}: content differs (len {} vs {})", all.len(), model.len());
    }
    drop(file);
    assert_eq!(std::fs::read(srv.disk("model.bin")).unwrap(), model);
}

/// 8 processes doing mixed reads, writes, renames, unlinks and listings, each in its own
/// directory, with every file's content checked.
fn stress_mixed_workload(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(kind);
    let m = Mount::new(&srv, &[]);
    let seconds = if kind == ServerKind::Vsftpd { 60 } else { 20 };
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let total_ops = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for w in 0..8u64 {
            let dir = m.p(&format!("w{w}"));
            let total_ops = &total_ops;
            s.spawn(move || {
                std::fs::create_dir(&dir).unwrap();
                let mut files: Vec<(String, Vec<u8>)> = Vec::new();
                let mut n = 0u64;
                while Instant::now() < deadline {
                    n += 1;
                    match n % 6 {
                        0 | 1 => {
                            let name = format!("f{n}");
                            let data = DataGen::bytes(w * 1_000_000 + n, (n as usize * 997) % 300_000);
                            std::fs::write(dir.join(&name), &data).unwrap();
                            files.push((name, data));
                        }
                        2 => {
                            if let Some((name, data)) = files.get(n as usize % files.len().max(1)) {
                                assert_eq!(&std::fs::read(dir.join(name)).unwrap(), data, "worker {w} {name}");
                            }
                        }
                        3 => {
                            if let Some(i) = (!files.is_empty()).then(|| n as usize % files.len()) {
                                let new = format!("r{n}");
                                std::fs::rename(dir.join(&files[i].0), dir.join(&new)).unwrap();
                                files[i].0 = new;
                            }
                        }
                        4 => {
                            if files.len() > 5 {
                                let (name, _) = files.remove(0);
                                std::fs::remove_file(dir.join(name)).unwrap();
                            }
                        }
                        _ => {
                            let mut listed: Vec<String> = std::fs::read_dir(&dir)
                                .unwrap()
                                .map(|e| e.unwrap().file_name().into_string().unwrap())
                                .collect();
                            listed.sort();
                            let mut expect: Vec<String> = files.iter().map(|f| f.0.clone()).collect();
                            expect.sort();
                            assert_eq!(listed, expect, "worker {w} listing");
                        }
                    }
                    total_ops.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                for (name, data) in &files {
                    let on_disk = std::fs::read(dir.join(name)).unwrap();
                    assert_eq!(&on_disk, data, "worker {w} final {name}");
                }
            });
        }
    });
    assert!(total_ops.load(std::sync::atomic::Ordering::Relaxed) > 100);
    // The server's disk agrees with the mount.
    for w in 0..8 {
        let listed = std::fs::read_dir(srv.disk(&format!("w{w}"))).unwrap().count();
        let through = std::fs::read_dir(m.p(&format!("w{w}"))).unwrap().count();
        assert_eq!(listed, through);
    }
}

on_servers!(
    [vsftpd: Vsftpd, pyftpdlib: Pyftpdlib],
    server_restart_mid_session,
    server_restart_between_uploads_sent_early,
    server_killed_during_copy_fails_the_copy,
    idle_timeout_is_survived,
    random_operations_match_a_model,
    stress_mixed_workload,
);

/// vsftpd under load: `seq 1500 | xargs touch` in parallel with few passive ports makes
/// vsftpd fail to bind a passive port now and then; it answers `500 OOPS: …` and ends the
/// session. That is a broken connection, not an invalid argument: every touch succeeds (the step
/// is tried again on a fresh connection) and every file is on the server's disk.
#[test]
fn a_busy_vsftpd_never_turns_into_a_wrong_errno() {
    if !fuse_available() {
        return;
    }
    // Four passive ports for eight parallel writers: without the fix, about 1 run in 200
    // touches failed with EINVAL here; with 8 ports or more it rarely shows on loopback.
    let cfg = ServerConfig { passive_ports: Some(4), ..Default::default() };
    let srv = FtpServer::start_with(ServerKind::Vsftpd, cfg);
    let m = Mount::new(&srv, &[]);
    m.sh_ok("mkdir many");
    let out = m.sh("cd many && seq 1500 | xargs -n 20 -P 8 touch");
    assert!(out.status.success(), "touch failed: {}", String::from_utf8_lossy(&out.stderr));
    let on_disk = std::fs::read_dir(srv.disk("many")).unwrap().count();
    assert_eq!(on_disk, 1500);
}

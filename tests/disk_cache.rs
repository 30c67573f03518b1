//! The disk cache (`-o disk_cache`) through the kernel, on the four servers: what was read
//! is served again after an unmount and a remount without the server, while the server's file
//! keeps its size and time; a file the server changed is read anew; only the parts read are
//! kept; what the cache keeps is private. On vsftpd and pyftpdlib also: a read in the middle of
//! a 2 GiB file keeps that MiB alone; the size limit holds, the files read last kept; `kill -9`
//! while the cache fills, then a remount, serves the server's bytes (a kill leaves what was
//! written in the page cache, so this checks what the next mount trusts, not the syncs; those
//! are the unit tests' `kill before save`).
//!
//! To show that a read came from the disk cache and not from the server, the test changes the
//! bytes of the server's file behind its back and puts its size and time back as they were: a
//! read from the server would show the new bytes.

#[macro_use]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use support::mount::{Mount, fuse_available, wait_process_gone};
use support::{FtpServer, ServerKind};

fn mount(srv: &FtpServer, cache: &Path) -> Mount {
    Mount::new(srv, &["disk_cache=64M", &format!("cache_dir={}", cache.display()), "cache_timeout=1"])
}

/// A cache_dir as the mount requires it: private to us.
fn private_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// Unmounts and waits for the process to end (it saves the cache on its way out).
fn unmount(m: Mount) {
    let pid = m.daemon_pid().expect("the mount's process");
    assert!(m.unmount(), "unmount");
    assert!(wait_process_gone(pid, Duration::from_secs(30)), "the process did not end");
}

/// Replaces the server's file with other bytes of the same length, and its old time.
fn swap_behind_its_back(srv: &FtpServer, rel: &str) {
    let path = srv.disk(rel);
    let when = std::fs::metadata(&path).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.iter_mut().for_each(|b| *b = b'X');
    std::fs::write(&path, &bytes).unwrap();
    std::fs::File::options().write(true).open(&path).unwrap().set_modified(when).unwrap();
}

fn second_reads_come_from_disk_while_the_file_is_the_same(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(kind);
    let cache = private_dir();
    let old = SystemTime::now() - Duration::from_secs(3 * 3600);
    let big: Vec<u8> = (0..8u32 << 20).map(|i| (i * 31 % 251) as u8).collect();
    srv.put_file("small", b"small file content\n");
    srv.put_file("changes", b"version one\n");
    srv.put_file("big", &big);
    for f in ["small", "changes", "big"] {
        std::fs::File::options().write(true).open(srv.disk(f)).unwrap().set_modified(old).unwrap();
    }

    let m = mount(&srv, cache.path());
    assert_eq!(m.sh_ok("cat small"), "small file content\n");
    assert_eq!(m.sh_ok("cat changes"), "version one\n");
    // Only the last MiB of the big file.
    let tail = m.sh_ok("dd if=big bs=1M skip=7 count=1 status=none | sha256sum");
    unmount(m);

    swap_behind_its_back(&srv, "small");
    swap_behind_its_back(&srv, "big");
    srv.put_file("changes", b"version TWO\n"); // same size, a new time
    // Past cache_timeout (1 s): the listings kept on disk are not trusted any more.
    std::thread::sleep(Duration::from_millis(1100));
    let m = mount(&srv, cache.path());
    assert_eq!(m.sh_ok("cat small"), "small file content\n", "served from the disk cache");
    assert_eq!(m.sh_ok("cat changes"), "version TWO\n", "a new time: read from the server");
    assert_eq!(m.sh_ok("dd if=big bs=1M skip=7 count=1 status=none | sha256sum"), tail, "the tail, kept");
    let head = m.sh_ok("dd if=big bs=1M count=1 status=none | tr -d X | wc -c");
    assert_eq!(head.trim(), "0", "the head was never read: it comes from the server (all X now)");
    let stats = support::mount::ftpfs_command(&["stats", m.path().to_str().unwrap()]).output().unwrap();
    let stats = String::from_utf8_lossy(&stats.stdout).into_owned();
    assert!(stats.contains("disk cache") && stats.contains("hits"), "{stats}");

    // What the cache keeps is the mounting user's alone.
    let content = cache.path().join("content");
    assert_eq!(std::fs::metadata(&content).unwrap().permissions().mode() & 0o777, 0o700);
    for d in std::fs::read_dir(&content).unwrap() {
        let d = d.unwrap().path();
        assert_eq!(std::fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700);
        for f in std::fs::read_dir(&d).unwrap() {
            let f = f.unwrap().path();
            assert_eq!(std::fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o600, "{}", f.display());
        }
    }

    // A change of ours drops what was kept: the next read is the file as written.
    m.sh_ok("printf 'written by us\\n' > small");
    assert_eq!(m.sh_ok("cat small"), "written by us\n");
    unmount(m);
    let m = mount(&srv, cache.path());
    assert_eq!(m.sh_ok("cat small"), "written by us\n");

    // `ftpfs cache clear MOUNTPOINT`: the next read asks the server.
    swap_behind_its_back(&srv, "small");
    let (ok, text) = ftpfs(&["cache", "clear", m.path().to_str().unwrap()]);
    assert!(ok && text.contains("cleared"), "{text}");
    assert_eq!(m.sh_ok("cat small"), "XXXXXXXXXXXXXX", "read from the server after the clear");
    unmount(m);
    // Not mounted: by its URL (and cache_dir); nothing of the cache's content is left.
    assert!(data_files(cache.path()) > 0, "the read above was kept");
    let cache_dir = format!("cache_dir={}", cache.path().display());
    let (ok, text) = ftpfs(&["cache", "clear", &srv.url(), "-o", &cache_dir]);
    assert!(ok && text.contains("cleared"), "{text}");
    assert_eq!(data_files(cache.path()), 0);
}

/// Listings are kept with the content and trusted, after a remount too, for `cache_timeout`
/// from their fetch: a remount shows the directory without asking the server. A listing one of
/// our changes touched is not kept, so what we wrote is there after a remount.
fn listings_are_kept_across_remounts(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(kind);
    let cache = private_dir();
    srv.put_file("d/a", b"1");
    let opts =
        ["disk_cache=64M".to_string(), format!("cache_dir={}", cache.path().display()), "cache_timeout=600".into()];
    let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
    let m = Mount::new(&srv, &opts);
    assert_eq!(m.sh_ok("ls d"), "a\n");
    unmount(m);
    // Another client adds a file: the listing kept (younger than cache_timeout) is what shows.
    srv.put_file("d/other", b"2");
    let m = Mount::new(&srv, &opts);
    assert_eq!(m.sh_ok("ls d"), "a\n", "the listing kept on disk, as cached in memory it would be");
    let (ok, text) = ftpfs(&["refresh", m.path().to_str().unwrap(), &format!("{}/d", m.path().display())]);
    assert!(ok, "{text}");
    assert_eq!(m.sh_ok("ls d"), "a\nother\n");
    // Our own change: the directory's kept listing goes with it.
    m.sh_ok("echo mine > d/new && mkdir d/sub");
    unmount(m);
    let m = Mount::new(&srv, &opts);
    assert_eq!(m.sh_ok("ls d"), "a\nnew\nother\nsub\n");
    assert_eq!(m.sh_ok("cat d/new"), "mine\n");
}

/// While the server is away the mount stays up: what is kept on disk (listings, content) is
/// served, what is not fails at once (EIO for a read, EHOSTDOWN for a change), `ftpfs stats`
/// says offline since when; once the server is back the mount is online by itself.
fn the_cache_serves_while_the_server_is_away(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    let mut srv = FtpServer::start(kind);
    let cache = private_dir();
    srv.put_file("d/kept", b"read before\n");
    srv.put_file("d/never", b"never read\n");
    let m = mount(&srv, cache.path());
    assert_eq!(m.sh_ok("ls d"), "kept\nnever\n");
    assert_eq!(m.sh_ok("cat d/kept"), "read before\n");
    srv.kill();
    std::thread::sleep(Duration::from_millis(1100)); // past cache_timeout: listings expired
    let t0 = std::time::Instant::now();
    assert_eq!(m.sh_ok("ls d"), "kept\nnever\n", "the listing kept on disk");
    assert_eq!(m.sh_ok("cat d/kept"), "read before\n", "the content kept on disk");
    let out = m.sh("cat d/never");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Input/output error"), "{out:?}");
    let out = m.sh("echo x > d/new");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Host is down"), "{out:?}");
    let stats = ftpfs(&["stats", m.path().to_str().unwrap()]).1;
    assert!(stats.contains("offline since"), "{stats}");
    // The first failure waits for nothing either: a refused connection is known at once.
    assert!(t0.elapsed() < Duration::from_secs(10), "offline calls took {:?}", t0.elapsed());
    srv.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !ftpfs(&["stats", m.path().to_str().unwrap()]).1.contains("server        online") {
        assert!(
            std::time::Instant::now() < deadline,
            "not online again: {}",
            ftpfs(&["stats", m.path().to_str().unwrap()]).1
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    m.sh_ok("echo x > d/new");
    assert_eq!(std::fs::read(srv.disk("d/new")).unwrap(), b"x\n");
    assert_eq!(m.sh_ok("cat d/never"), "never read\n");
}

/// Sets the server's file `rel` back to `when` (a time the listing tells exactly).
fn set_time(srv: &FtpServer, rel: &str, when: SystemTime) {
    std::fs::File::options().write(true).open(srv.disk(rel)).unwrap().set_modified(when).unwrap();
}

/// Bytes the data files under `cache_dir` take on disk (their allocated blocks: they are sparse).
fn data_bytes_on_disk(cache_dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let content = cache_dir.join("content");
    std::fs::read_dir(content)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .filter(|f| f.file_name().to_string_lossy().ends_with(".data"))
        .map(|f| f.metadata().unwrap().blocks() * 512)
        .sum()
}

/// A read in the middle of a 2 GiB file keeps that part alone, and serves it again after a
/// remount; the cache holds its size limit, keeping the files read last; a `kill -9` while the
/// cache fills never lets a later mount serve a byte the server does not hold.
fn big_files_limits_and_kill_9(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(kind);
    let cache = private_dir();
    let old = SystemTime::now() - Duration::from_secs(3 * 3600);
    let opts = |size: &str| {
        [format!("disk_cache={size}"), format!("cache_dir={}", cache.path().display()), "cache_timeout=1".into()]
    };

    // 2 GiB (sparse on the server's disk), 1 MiB of data in its middle.
    const GIB: u64 = 1 << 30;
    srv.put_file("huge", b"");
    let middle = support::DataGen::bytes(7, 1 << 20);
    let f = std::fs::File::options().write(true).open(srv.disk("huge")).unwrap();
    f.set_len(2 * GIB).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &middle, GIB).unwrap();
    drop(f);
    set_time(&srv, "huge", old);
    let o = opts("64M");
    let m = Mount::new(&srv, &o.iter().map(String::as_str).collect::<Vec<_>>());
    let read_middle = "dd if=huge bs=1M skip=1024 count=1 status=none | sha256sum";
    let sum = m.sh_ok(read_middle);
    unmount(m);
    let kept = data_bytes_on_disk(cache.path());
    assert!((1 << 20..=8 << 20).contains(&kept), "kept {kept} bytes for a read of 1 MiB of 2 GiB");
    // The server's middle changes behind its back (same size and time): the old one is served.
    let f = std::fs::File::options().write(true).open(srv.disk("huge")).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &vec![b'X'; 1 << 20], GIB).unwrap();
    drop(f);
    set_time(&srv, "huge", old);
    std::thread::sleep(Duration::from_millis(1100));
    let m = Mount::new(&srv, &o.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(m.sh_ok(read_middle), sum, "the middle, from the disk cache");
    unmount(m);
    let (ok, text) = ftpfs(&["cache", "clear", &srv.url(), "-o", &format!("cache_dir={}", cache.path().display())]);
    assert!(ok, "{text}");

    // A limit of 4 MiB and 8 files of 1 MiB read in turn: at most 4 MiB kept, the last ones.
    let o = opts("4M");
    let o: Vec<&str> = o.iter().map(String::as_str).collect();
    for i in 0..8 {
        srv.put_file(&format!("e{i}"), &support::DataGen::bytes(i, 1 << 20));
        set_time(&srv, &format!("e{i}"), old);
    }
    let m = Mount::new(&srv, &o);
    for i in 0..8 {
        m.sh_ok(&format!("cat e{i} > /dev/null"));
    }
    unmount(m);
    let kept = data_bytes_on_disk(cache.path());
    assert!(kept <= (4 << 20) + 8 * 4096, "{kept} bytes kept with a limit of 4 MiB");
    for i in [0, 7] {
        srv.put_file(&format!("e{i}"), &vec![b'X'; 1 << 20]);
        set_time(&srv, &format!("e{i}"), old);
    }
    std::thread::sleep(Duration::from_millis(1100));
    let m = Mount::new(&srv, &o);
    let read = |name: &str| std::fs::read(m.p(name)).unwrap();
    assert!(read("e7") == support::DataGen::bytes(7, 1 << 20), "the file read last is kept");
    assert!(read("e0") == vec![b'X'; 1 << 20], "the file read first was evicted: read from the server");
    unmount(m);

    // kill -9 while the cache fills, at three points; each later mount serves the server's bytes.
    let big = support::DataGen::bytes(99, 64 << 20);
    srv.put_file("big", &big);
    set_time(&srv, "big", old);
    std::thread::sleep(Duration::from_millis(1100)); // the root's listing kept on disk expires
    let o = opts("256M");
    let o: Vec<&str> = o.iter().map(String::as_str).collect();
    let m = Mount::new(&srv, &o);
    // A tail kept and saved: the data file is 64 MiB long from now on, with a hole before it
    // that only the killed reads below fill in part.
    m.sh_ok("dd if=big bs=1M skip=60 count=4 status=none > /dev/null");
    unmount(m);
    for delay_ms in [30, 120, 400] {
        let m = Mount::new(&srv, &o);
        let mut reader = std::process::Command::new("dd")
            .args([&format!("if={}", m.p("big").display()), "of=/dev/null", "bs=64k", "status=none"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        m.abort();
        let _ = reader.wait();
        let m = Mount::new(&srv, &o);
        let got = std::fs::read(m.p("big")).unwrap();
        assert!(got == big, "after a kill -9 at {delay_ms} ms: the bytes served differ from the server's");
        unmount(m);
    }
}

fn ftpfs(args: &[&str]) -> (bool, String) {
    let out = support::mount::ftpfs_command(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// Data files in the disk caches under `cache_dir`.
fn data_files(cache_dir: &Path) -> usize {
    let content = cache_dir.join("content");
    std::fs::read_dir(content)
        .map(|dirs| {
            dirs.flatten()
                .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
                .filter(|f| f.file_name().to_string_lossy().ends_with(".data"))
                .count()
        })
        .unwrap_or(0)
}

on_every_server!(
    second_reads_come_from_disk_while_the_file_is_the_same,
    listings_are_kept_across_remounts,
    the_cache_serves_while_the_server_is_away,
);

on_servers!([big_vsftpd: Vsftpd, big_pyftpdlib: Pyftpdlib], big_files_limits_and_kill_9);

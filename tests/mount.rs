//! The mount through the real kernel, on vsftpd, pyftpdlib, pure-ftpd and proftpd: ordinary tools on the mount,
//! results checked on the server's own disk.

#[macro_use]
mod support;

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::mount::{Mount, MountGuard, ftpfs_command, fuse_available, server_url, wait_process_gone};
use support::{DataGen, FtpServer, PASSWORD, ServerKind, USER};

fn disk_mtime(srv: &FtpServer, rel: &str) -> i64 {
    let m = std::fs::metadata(srv.disk(rel)).unwrap().modified().unwrap();
    m.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn mtime_of(p: &std::path::Path) -> i64 {
    std::fs::metadata(p).unwrap().modified().unwrap().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn setup(kind: ServerKind) -> Option<(FtpServer, Mount)> {
    if !fuse_available() {
        return None;
    }
    let srv = FtpServer::start(kind);
    let m = Mount::new(&srv, &[]);
    Some((srv, m))
}

fn listing_and_attributes(kind: ServerKind) {
    let Some((srv, _)) = setup(kind) else { return };
    srv.put_file("plain.txt", b"12345");
    srv.put_file(".hidden", b"h");
    srv.put_file("dir/inner", b"");
    std::os::unix::fs::symlink("plain.txt", srv.disk("link")).unwrap();
    let m = Mount::new(&srv, &[]);
    let out = m.sh_ok("ls -la");
    assert!(out.contains(".hidden"), "{out}");
    assert!(out.contains("plain.txt"), "{out}");
    let meta = std::fs::metadata(m.p("plain.txt")).unwrap();
    assert_eq!(meta.len(), 5);
    assert!(meta.is_file());
    assert!(std::fs::metadata(m.p("dir")).unwrap().is_dir());
    let diff = (mtime_of(&m.p("plain.txt")) - disk_mtime(&srv, "plain.txt")).abs();
    // LIST shows minutes for recent files; MLSD shows seconds.
    let tolerance = if kind.has_mlsd() { 0 } else { 60 };
    assert!(diff <= tolerance, "mtime differs by {diff}s");
    if kind.lists_symlinks() {
        assert!(std::fs::read_link(m.p("link")).unwrap().to_str().unwrap().ends_with("plain.txt"));
        assert_eq!(std::fs::read(m.p("link")).unwrap(), b"12345");
    }
    let mut names: Vec<String> =
        std::fs::read_dir(m.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert!(names.contains(&"dir".to_string()) && names.contains(&".hidden".to_string()), "{names:?}");
    assert!(std::fs::metadata(m.p("missing")).is_err());
}

/// Names looked up in a directory the mount has not listed (MLST where the server has it, a
/// listing elsewhere) get their size, mode, time and kind right; a missing one is missing; a
/// program found that way runs.
fn names_looked_up_in_unlisted_directories(kind: ServerKind) {
    let Some((srv, _)) = setup(kind) else { return };
    srv.put_file("d/f", b"12345");
    srv.put_file("d/sub/inner", b"");
    std::fs::copy("/bin/true", srv.disk("d/run")).unwrap();
    srv.give_to_ftp_user(&srv.disk("d/run"));
    std::fs::set_permissions(srv.disk("d/f"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::set_permissions(srv.disk("d/run"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let when = UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    std::fs::File::options().write(true).open(srv.disk("d/f")).unwrap().set_modified(when).unwrap();
    std::fs::set_permissions(srv.disk("d/sub/inner"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(srv.disk("d/sub"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let m = Mount::new(&srv, &[]);
    let out = m.sh_ok("stat -c '%s %a %F' d/f d/sub d/sub/inner");
    // A directory's size is the server's (its disk's: 4096 on ext4, other sizes on tmpfs or
    // btrfs), or 4096 where the listing gives none.
    let dir_size = std::fs::metadata(srv.disk("d/sub")).unwrap().len();
    let lines: Vec<&str> = out.trim().lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0], "5 640 regular file", "{out}");
    let (size, rest) = lines[1].split_once(' ').unwrap();
    assert!(rest == "755 directory" && (size == dir_size.to_string() || size == "4096"), "{out}");
    assert_eq!(lines[2], "0 644 regular empty file", "{out}");
    let t = mtime_of(&m.p("d/f"));
    // LIST shows only the day of a file this old.
    let tolerance = if kind.has_mlsd() { 0 } else { 86_400 };
    assert!((t - 1_600_000_000).abs() <= tolerance, "mtime {t}");
    assert!(std::fs::metadata(m.p("d/missing")).is_err());
    m.sh_ok("./d/run");
}

/// Paths too long for the server's command line are ENAMETOOLONG before anything is sent
/// (pyftpdlib would take the rest of the line for a second command and answer twice); the
/// connection stays in step and everything after works.
fn paths_longer_than_a_command_line(kind: ServerKind) {
    let Some((srv, m)) = setup(kind) else { return };
    // Deeper and deeper by relative paths (the kernel's own limit is per call): the server's
    // line length is reached first.
    let out = m.sh_ok(&format!(
        "c={}; for i in $(seq 1 30); do mkdir $c 2> err || {{ echo \"$i $(cat err)\"; exit 0; }}; cd $c; done; echo none",
        "d".repeat(200)
    ));
    let (depth, err) = out.trim().split_once(' ').unwrap_or(("0", ""));
    let depth: usize = depth.parse().unwrap_or(0);
    assert!(err.contains("File name too long"), "{out}");
    assert!(depth > 8, "refused already at depth {depth}: {out}");
    let made: String = vec!["d".repeat(200); depth - 1].join("/");
    assert!(srv.disk(&made).is_dir(), "depth {depth}");
    m.sh_ok("ls > /dev/null && echo fine > after.txt && mkdir after-dir");
    assert_eq!(std::fs::read(srv.disk("after.txt")).unwrap(), b"fine\n");
    assert!(srv.disk("after-dir").is_dir());
}

fn copy_in_and_out(kind: ServerKind) {
    let Some((srv, m)) = setup(kind) else { return };
    let local = tempfile::tempdir().unwrap();
    for (name, len) in [("empty", 0usize), ("one", 1), ("ten_mib", 10 << 20)] {
        let data = DataGen::bytes(len as u64 + 1, len);
        let src = local.path().join(name);
        std::fs::write(&src, &data).unwrap();
        m.sh_ok(&format!("cp {} ./{name}", src.display()));
        assert_eq!(std::fs::read(srv.disk(name)).unwrap(), data, "{name} on the server's disk");
        assert_eq!(std::fs::read(m.p(name)).unwrap(), data, "{name} read back through the mount");
        let back = local.path().join(format!("{name}.back"));
        m.sh_ok(&format!("cp ./{name} {}", back.display()));
        assert_eq!(std::fs::read(&back).unwrap(), data);
        let sums = m.sh_ok(&format!("sha256sum ./{name} {} | awk '{{print $1}}' | uniq | wc -l", src.display()));
        assert_eq!(sums.trim(), "1", "checksums differ for {name}");
    }
}

fn writes_in_every_mode(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(kind);
    srv.put_file("f.txt", b"old content that is long");
    srv.put_file("d.bin", b"0123456789");
    srv.put_file("rw.txt", b"abcdefghij");
    let m = Mount::new(&srv, &[]);
    // touch creates an empty file.
    m.sh_ok("touch new");
    assert_eq!(std::fs::read(srv.disk("new")).unwrap(), b"");
    // overwrite
    m.sh_ok("echo fresh > f.txt");
    assert_eq!(std::fs::read(srv.disk("f.txt")).unwrap(), b"fresh\n");
    // append
    m.sh_ok("echo more >> f.txt");
    assert_eq!(std::fs::read(srv.disk("f.txt")).unwrap(), b"fresh\nmore\n");
    // sed -i (temp file + rename)
    m.sh_ok("sed -i 's/fresh/FRESH/' f.txt");
    assert_eq!(std::fs::read(srv.disk("f.txt")).unwrap(), b"FRESH\nmore\n");
    // truncate shrink, grow, zero
    m.sh_ok("truncate -s 3 f.txt");
    assert_eq!(std::fs::read(srv.disk("f.txt")).unwrap(), b"FRE");
    m.sh_ok("truncate -s 6 f.txt");
    assert_eq!(std::fs::read(srv.disk("f.txt")).unwrap(), b"FRE\0\0\0");
    m.sh_ok("truncate -s 0 f.txt");
    assert_eq!(std::fs::read(srv.disk("f.txt")).unwrap(), b"");
    // dd conv=notrunc in the middle
    m.sh_ok("printf XY | dd of=d.bin bs=1 seek=4 conv=notrunc status=none");
    assert_eq!(std::fs::read(srv.disk("d.bin")).unwrap(), b"0123XY6789");
    // O_RDWR: read, then write in place, then read again through the same descriptor.
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(m.p("rw.txt")).unwrap();
    let mut head = [0u8; 3];
    f.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"abc");
    f.write_all(b"XYZ").unwrap();
    f.seek(SeekFrom::Start(8)).unwrap();
    f.write_all(b"__tail").unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut all = Vec::new();
    f.read_to_end(&mut all).unwrap();
    assert_eq!(all, b"abcXYZgh__tail");
    f.sync_all().unwrap();
    drop(f);
    assert_eq!(std::fs::read(srv.disk("rw.txt")).unwrap(), b"abcXYZgh__tail");
    // ftruncate through an open descriptor, then write.
    let f = std::fs::OpenOptions::new().write(true).open(m.p("rw.txt")).unwrap();
    f.set_len(2).unwrap();
    drop(f);
    assert_eq!(std::fs::read(srv.disk("rw.txt")).unwrap(), b"ab");
}

fn directories_and_renames(kind: ServerKind) {
    let Some((srv, m)) = setup(kind) else { return };
    m.sh_ok("mkdir -p a/b/c && echo x > a/b/c/file && echo y > a/top");
    assert!(srv.disk("a/b/c").is_dir());
    assert_eq!(std::fs::read(srv.disk("a/b/c/file")).unwrap(), b"x\n");
    m.sh_ok("rmdir a/b/c 2>/dev/null; test -d a/b/c");
    m.sh_ok("mv a/top a/top2");
    assert!(!srv.disk("a/top").exists());
    assert_eq!(std::fs::read(srv.disk("a/top2")).unwrap(), b"y\n");
    m.sh_ok("mv a/b a/renamed && cat a/renamed/c/file");
    assert!(srv.disk("a/renamed/c/file").is_file());
    m.sh_ok("mkdir dest && mv a/top2 dest/ && test -f dest/top2");
    assert!(srv.disk("dest/top2").is_file());
    m.sh_ok("echo new > n1 && echo old > n2 && mv n1 n2 && cat n2");
    assert_eq!(std::fs::read(srv.disk("n2")).unwrap(), b"new\n");
    assert!(!srv.disk("n1").exists());
    m.sh_ok("rm -r a dest");
    assert!(!srv.disk("a").exists() && !srv.disk("dest").exists());
    m.sh_ok("mkdir empty && rmdir empty");
    assert!(!srv.disk("empty").exists());
}

fn tar_cp_rsync(kind: ServerKind) {
    let Some((srv, m)) = setup(kind) else { return };
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let local = tempfile::tempdir().unwrap();
    let tarball = local.path().join("src.tar");
    let st = std::process::Command::new("tar")
        .arg("cf")
        .arg(&tarball)
        .arg("-C")
        .arg(src.parent().unwrap())
        .arg("src")
        .status()
        .unwrap();
    assert!(st.success());
    m.sh_ok(&format!("mkdir t && tar xf {} -C t", tarball.display()));
    m.sh_ok(&format!("diff -r {} {}", src.display(), srv.disk("t/src").display()));
    let out = local.path().join("out");
    m.sh_ok(&format!("cp -r t/src {}", out.display()));
    m.sh_ok(&format!("diff -r {} {}", src.display(), out.display()));
    m.sh_ok(&format!("rsync -a {}/ r/", src.display()));
    m.sh_ok(&format!("diff -r {} {}", src.display(), srv.disk("r").display()));
    // A second rsync finds nothing to transfer: every server keeps exact times (MFMT, or
    // vsftpd's two-argument MDTM read back with MDTM). Only directory times may be touched
    // again (`.d..t`) where the server sets times on files only (vsftpd, pyftpdlib). On a
    // fresh mount, which knows only what the server shows, not the times it set itself.
    drop(m);
    let m = Mount::new(&srv, &[]);
    let again = m.sh_ok(&format!("rsync -a --itemize-changes {}/ r/", src.display()));
    let transfers: Vec<&str> = again.lines().filter(|l| !l.starts_with(".d..t")).collect();
    assert!(transfers.is_empty(), "rsync wanted to transfer again: {again}");
    // tar x restored the times of the tarball's files.
    for f in ["lib.rs", "model/core.rs"] {
        let want = mtime_of(&src.join(f));
        assert_eq!(disk_mtime(&srv, &format!("t/src/{f}")), want, "tar x: {f} on the server");
        assert_eq!(mtime_of(&m.p(&format!("t/src/{f}"))), want, "tar x: {f} through the mount");
    }
}

/// Times to the second on every server, also where the listing shows only minutes (vsftpd's
/// LIST; days for files older than six months): times put on the server's disk show exactly
/// through the mount; `cp -a` keeps mode and time; `make` rebuilds only what changed.
fn times_are_exact(kind: ServerKind) {
    let Some((srv, m)) = setup(kind) else { return };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let recent = now - 3 * 3600 - 17;
    let old = 1_546_398_245; // 2019-01-02 03:04:05 UTC: listed with a year, to the day
    for (name, when) in [("recent.txt", recent), ("old.txt", old)] {
        srv.put_file(name, name.as_bytes());
        let f = std::fs::File::options().write(true).open(srv.disk(name)).unwrap();
        f.set_modified(UNIX_EPOCH + Duration::from_secs(when)).unwrap();
    }
    assert_eq!(mtime_of(&m.p("recent.txt")) as u64, recent, "a recent file's time");
    assert_eq!(mtime_of(&m.p("old.txt")) as u64, old, "an old file's time");

    let local = tempfile::tempdir().unwrap();
    let script = local.path().join("script.sh");
    std::fs::write(&script, b"#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o750)).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&script)
        .unwrap()
        .set_modified(UNIX_EPOCH + Duration::from_secs(old + 1))
        .unwrap();
    m.sh_ok(&format!("cp -a {} ./script.sh", script.display()));
    let meta = std::fs::metadata(m.p("script.sh")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o750, "cp -a keeps the mode");
    assert_eq!(mtime_of(&m.p("script.sh")) as u64, old + 1, "cp -a keeps the time");
    assert_eq!(disk_mtime(&srv, "script.sh") as u64, old + 1);

    // make: built once, then nothing to do until a source changes.
    m.sh_ok("mkdir mk && printf 'out.txt: in.txt\\n\\tcp in.txt out.txt\\n' > mk/Makefile && echo 1 > mk/in.txt");
    m.sh_ok("sleep 1.1 && make -C mk");
    let second = m.sh_ok("make -C mk");
    assert!(second.contains("up to date"), "make rebuilt with nothing changed: {second}");
    m.sh_ok("sleep 1.1 && echo 2 > mk/in.txt");
    let third = m.sh_ok("make -C mk");
    assert!(third.contains("cp in.txt out.txt"), "make did not rebuild after a change: {third}");
    assert_eq!(std::fs::read(srv.disk("mk/out.txt")).unwrap(), b"2\n");
}

fn cp_p_keeps_mtime(kind: ServerKind) {
    let Some((srv, m)) = setup(kind) else { return };
    let local = tempfile::tempdir().unwrap();
    let f = local.path().join("old.txt");
    std::fs::write(&f, b"old").unwrap();
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    std::fs::File::options().write(true).open(&f).unwrap().set_modified(when).unwrap();
    m.sh_ok(&format!("cp -p {} ./kept.txt", f.display()));
    assert_eq!(std::fs::read(srv.disk("kept.txt")).unwrap(), b"old");
    // Every server sets times: MFMT, or vsftpd's two-argument MDTM (issue 27).
    assert_eq!(disk_mtime(&srv, "kept.txt"), 1_500_000_000, "cp -p did not keep the time on the server");
    assert_eq!(mtime_of(&m.p("kept.txt")), 1_500_000_000);
    m.sh_ok("touch -d '2001-02-03 04:05:06 UTC' kept.txt");
    assert_eq!(disk_mtime(&srv, "kept.txt"), 981_173_106, "touch -d did not set the time on the server");
    m.sh_ok("chmod 600 kept.txt");
    let mode = std::fs::metadata(srv.disk("kept.txt")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

fn unicode_and_spaces(kind: ServerKind) {
    let Some((srv, m)) = setup(kind) else { return };
    let names = ["with space.txt", "ünïcødé-文件.txt", "  leading", "semi;colon", "-dash"];
    for n in names {
        std::fs::write(m.p(n), n.as_bytes()).unwrap_or_else(|e| panic!("write {n:?}: {e}"));
        assert_eq!(std::fs::read(srv.disk(n)).unwrap(), n.as_bytes(), "{n:?} on disk");
    }
    let listed: Vec<String> =
        std::fs::read_dir(m.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    for n in names {
        if !kind.has_mlsd() && n.starts_with(' ') {
            continue; // LIST output cannot carry leading spaces reliably.
        }
        assert!(listed.iter().any(|l| l == n), "{n:?} not listed: {listed:?}");
    }
    let d = "dir é x";
    std::fs::create_dir(m.p(d)).unwrap();
    std::fs::write(m.p(&format!("{d}/in")), b"1").unwrap();
    assert!(srv.disk(&format!("{d}/in")).is_file());
}

fn error_messages(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(kind);
    // vsftpd runs as the FTP user: a root-owned directory is not writable for it.
    std::fs::create_dir(srv.disk("locked")).unwrap();
    std::fs::set_permissions(srv.disk("locked"), std::fs::Permissions::from_mode(0o755)).unwrap();
    // For the server's own refusals below: a file the FTP user may not read, a directory it
    // may not change, a file it does not own.
    srv.put_file("unreadable", b"secret");
    std::fs::set_permissions(srv.disk("unreadable"), std::fs::Permissions::from_mode(0o000)).unwrap();
    srv.put_file("ro/inner", b"i");
    std::fs::create_dir(srv.disk("ro/sub")).unwrap();
    srv.give_to_ftp_user(&srv.disk("ro/sub"));
    std::fs::set_permissions(srv.disk("ro"), std::fs::Permissions::from_mode(0o555)).unwrap();
    std::fs::write(srv.disk("rootfile"), b"r").unwrap();
    let m = Mount::new(&srv, &[]);
    let err = |script: &str| {
        let out = m.sh(script);
        assert!(!out.status.success(), "`{script}` should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(err("cat nothing-here").contains("No such file or directory"));
    m.sh_ok("mkdir full && echo x > full/f");
    assert!(err("rmdir full").contains("Directory not empty"));
    assert!(err("mkdir full").contains("File exists"));
    assert!(err("touch 'bad\nname'").contains("Invalid argument"));
    assert!(!srv.disk("bad\nname").exists() && !srv.disk("bad").exists());
    // What the kernel answers from our attributes, and what the server refuses (the errno
    // table in src/ftp/error.rs, the listing where the server's text names no reason).
    m.sh_ok("mkdir emptydir && echo x > plain");
    assert!(err("echo x > emptydir").contains("Is a directory"));
    assert!(err("unlink emptydir").contains("Is a directory"));
    assert!(err("rmdir plain").contains("Not a directory"));
    assert!(err("ls plain/x").contains("Not a directory"));
    assert!(err("mv -T emptydir full").contains("Directory not empty"));
    assert!(err("mv nothing-here x").contains("No such file or directory"));
    // No hard links, fifos or device nodes over FTP: EPERM as link(2) and mknod(2) document,
    // never ENOSYS.
    assert!(err("ln plain hard").contains("Operation not permitted"));
    assert!(err("mkfifo fifo").contains("Operation not permitted"));
    if kind.runs_as_ftp_user() {
        let e = err("echo x > locked/file");
        assert!(e.contains("Permission denied"), "{e}");
        assert!(!srv.disk("locked/file").exists());
        // Refused by the server (vsftpd says only "550 Failed to open file.", "Delete operation
        // failed.", "Rename failed.": what it still lists makes it EACCES, not ENOENT).
        let e = err("cat unreadable");
        assert!(e.contains("Permission denied"), "{e}");
        let e = err("rm -f ro/inner");
        assert!(e.contains("Permission denied"), "{e}");
        let e = err("rmdir ro/sub");
        assert!(e.contains("Permission denied"), "{e}");
        let e = err("mv ro/inner moved");
        assert!(e.contains("Permission denied"), "{e}");
        assert!(srv.disk("ro/inner").is_file() && srv.disk("ro/sub").is_dir());
        // chmod(2): EPERM when the caller does not own the file.
        let e = err("chmod 600 rootfile");
        assert!(e.contains("Operation not permitted"), "{e}");
    }
}

fn changes_on_server_seen_after_ttl(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(kind);
    let m = Mount::new(&srv, &["cache_timeout=1"]);
    assert_eq!(m.sh_ok("ls").trim(), "");
    srv.put_file("appeared.txt", b"hello");
    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(m.sh_ok("ls").trim(), "appeared.txt");
    assert_eq!(std::fs::read(m.p("appeared.txt")).unwrap(), b"hello");
    srv.put_file("appeared.txt", b"changed content");
    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(std::fs::read(m.p("appeared.txt")).unwrap(), b"changed content");
    std::fs::remove_file(srv.disk("appeared.txt")).unwrap();
    std::thread::sleep(Duration::from_millis(1600));
    assert!(!m.p("appeared.txt").exists());
}

fn stale_listing_never_clobbers(kind: ServerKind) {
    let Some((srv, m)) = setup(kind) else { return };
    assert_eq!(m.sh_ok("ls").trim(), "");
    // Another client creates a file while our listing of the directory is still cached.
    srv.put_file("theirs.txt", b"precious");
    std::thread::sleep(Duration::from_millis(1100));
    // O_CREAT without O_TRUNC (append) must keep their data, not replace it.
    m.sh_ok("echo mine >> theirs.txt");
    assert_eq!(std::fs::read(srv.disk("theirs.txt")).unwrap(), b"preciousmine\n");
    // O_EXCL on a name that exists on the server is refused.
    srv.put_file("theirs2.txt", b"also precious");
    std::thread::sleep(Duration::from_millis(1100));
    let out = m.sh("set -o noclobber; echo x > theirs2.txt");
    assert!(!out.status.success());
    assert_eq!(std::fs::read(srv.disk("theirs2.txt")).unwrap(), b"also precious");
}

fn parallel_writers(kind: ServerKind) {
    let Some((srv, m)) = setup(kind) else { return };
    let len = 3 << 20;
    std::thread::scope(|s| {
        for i in 0..4u64 {
            let path = m.p(&format!("w{i}.bin"));
            s.spawn(move || {
                let mut f = std::fs::File::create(&path).unwrap();
                let mut g = DataGen::new(100 + i);
                let mut buf = vec![0u8; 1 << 20];
                for _ in 0..3 {
                    g.fill(&mut buf);
                    f.write_all(&buf).unwrap();
                }
            });
        }
    });
    for i in 0..4u64 {
        let disk = std::fs::File::open(srv.disk(&format!("w{i}.bin"))).unwrap();
        support::assert_stream_matches(disk, 100 + i, len, &format!("writer {i}"));
    }
}

fn wrong_password_and_bad_mountpoint(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(kind);
    let dir = tempfile::tempdir().unwrap();
    let url = server_url(&srv, "");
    let out = ftpfs_command(&[&url, dir.path().to_str().unwrap()]).env("FTPFS_PASSWORD", "wrong").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(msg.contains("login") && msg.contains("530"), "{msg}");
    let out = ftpfs_command(&[&url, "/nonexistent/mnt"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mountpoint"));
    let out = ftpfs_command(&["ftp://127.0.0.1:1/", dir.path().to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));
    let out = ftpfs_command(&[&url, dir.path().to_str().unwrap(), "-o", "no_such_option"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown mount option"));
}

fn mount_table_hides_password_and_unmount_ends_process(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(kind);
    let host = &srv.host;
    let url = format!("ftp://{USER}:{PASSWORD}@{host}:{}/", srv.port);
    let m = Mount::try_new(&srv, &[], Some(&url)).unwrap();
    let line = m.mount_line().unwrap();
    assert!(!line.contains(PASSWORD), "{line}");
    assert!(line.starts_with(&format!("ftp://{USER}@")), "{line}");
    assert_eq!(line.split(' ').nth(2), Some("fuse.ftpfs"), "mount type in /proc/mounts: {line}");
    let df = m.sh_ok("df -T . | tail -n 1");
    assert_eq!(df.split_whitespace().nth(1), Some("fuse.ftpfs"), "df -T: {df}");
    // Already mounted → refused.
    let again = ftpfs_command(&[&url, m.path().to_str().unwrap()]).output().unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already mounted"));
    let pids = || {
        let out = std::process::Command::new("pgrep").args(["-f", m.path().to_str().unwrap()]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert!(!pids().is_empty(), "the background process is running");
    for pid in pids().lines() {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let shown = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        assert!(!shown.contains(PASSWORD), "password visible in ps: {shown}");
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&environ).contains(PASSWORD), "password visible in the environment");
        assert!(shown.contains(&format!("ftp://{USER}@")), "{shown}");
    }
    assert!(m.unmount(), "fusermount3 -u");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !pids().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(pids().is_empty(), "ftpfs still running after unmount");
}

fn big_files_mmap_exec_and_busy_pool(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(kind);
    let len = 12 << 20; // above the direct-I/O threshold
    srv.put_file("big.bin", &DataGen::bytes(9, len));
    std::fs::copy("/bin/true", srv.disk("true-bin")).unwrap();
    srv.give_to_ftp_user(&srv.disk("true-bin"));
    for i in 0..3 {
        srv.put_file(&format!("other{i}.bin"), &DataGen::bytes(20 + i, 8 << 20));
    }
    let m = Mount::new(&srv, &["connections=2"]);
    // mmap of a large (direct I/O) file sees the right bytes.
    let out = m.sh_ok("python3 -c \"import mmap,sys; f=open('big.bin','rb'); m=mmap.mmap(f.fileno(),0,access=mmap.ACCESS_READ); sys.stdout.write(m[5000000:5000016].hex())\"");
    assert_eq!(out, hex(&DataGen::bytes(9, len)[5_000_000..5_000_016]));
    // A program runs from the mount.
    m.sh_ok("./true-bin");
    // Files held open mid-read on every transfer connection do not block listings or new reads.
    let mut held: Vec<std::fs::File> = Vec::new();
    for i in 0..3 {
        let mut f = std::fs::File::open(m.p(&format!("other{i}.bin"))).unwrap();
        let mut b = [0u8; 1];
        f.read_exact(&mut b).unwrap();
        held.push(f);
    }
    assert!(m.sh_ok("ls").contains("big.bin"));
    assert_eq!(std::fs::read(m.p("big.bin")).unwrap(), DataGen::bytes(9, len));
    // The paused reads resume where they were.
    for (i, f) in held.iter_mut().enumerate() {
        let mut rest = Vec::new();
        f.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, DataGen::bytes(20 + i as u64, 8 << 20)[1..], "file {i}");
    }
}

fn active_mode_and_ipv6(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    let cases: [(&str, Option<&str>, &[&str]); 3] =
        [("active", None, &["active"]), ("ipv6", Some("::1"), &[]), ("ipv6 active", Some("::1"), &["active"])];
    for (name, host, opts) in cases {
        let cfg = support::ServerConfig { host: host.map(str::to_string), ..Default::default() };
        let srv = FtpServer::start_with(kind, cfg);
        srv.put_file("in.txt", name.as_bytes());
        let m = Mount::new(&srv, opts);
        assert!(m.mount_line().unwrap().contains(if host.is_some() { "[::1]" } else { "127.0.0.1" }), "{name}");
        assert!(m.sh_ok("ls -la").contains("in.txt"), "{name}");
        assert_eq!(m.sh_ok("cat in.txt"), name, "{name}");
        m.sh_ok("echo written > out.txt && mkdir d && mv out.txt d/");
        assert_eq!(std::fs::read(srv.disk("d/out.txt")).unwrap(), b"written\n", "{name}");
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A mount made at the path of one unmounted lazily stays mounted when the old process ends
/// later (fuser 0.18.0 would unmount the path as its session ended).
#[test]
fn remount_at_the_same_path_survives_the_old_process() {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(ServerKind::Pyftpdlib);
    srv.put_file("f", b"data");
    let old = Mount::new(&srv, &[]);
    let path = old.path().to_path_buf();
    // A file held open keeps the old session alive after a lazy unmount.
    let held = std::fs::File::open(old.p("f")).unwrap();
    let lazy = std::process::Command::new("fusermount3").arg("-u").arg("-z").arg(&path).status().unwrap();
    assert!(lazy.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while old.is_mounted() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!old.is_mounted());
    let old_pid = old.daemon_pid().expect("the old mount's process serves its open file");
    let url = server_url(&srv, "");
    let out = ftpfs_command(&[&url, path.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let _new = MountGuard::new(&path);
    // The old session ends now; its process must leave the new mount alone. Waited for until it
    // is gone (it leaves within its exit grace of a few seconds), so that the check below comes
    // after anything it could have done.
    drop(held);
    assert!(wait_process_gone(old_pid, Duration::from_secs(30)), "the old process is still running");
    assert!(old.is_mounted(), "the new mount at {} was unmounted by the old process", path.display());
    assert_eq!(std::fs::read(path.join("f")).unwrap(), b"data");
}

/// A server that speaks cp1251 on the wire: `-o encoding=cp1251` converts names both ways.
#[test]
fn legacy_encoding_names_both_ways() {
    if !fuse_available() {
        return;
    }
    let cfg = support::ServerConfig { encoding: Some("cp1251".into()), ..Default::default() };
    let srv = FtpServer::start_with(ServerKind::Pyftpdlib, cfg);
    srv.put_file("привет.txt", b"from the server");
    let m = Mount::new(&srv, &["encoding=cp1251"]);
    assert!(m.sh_ok("ls").contains("привет.txt"));
    assert_eq!(std::fs::read(m.p("привет.txt")).unwrap(), b"from the server");
    std::fs::create_dir(m.p("папка")).unwrap();
    std::fs::write(m.p("папка/файл.txt"), b"through the mount").unwrap();
    // pyftpdlib decoded cp1251 and stored the names in UTF-8 on its disk.
    assert_eq!(std::fs::read(srv.disk("папка/файл.txt")).unwrap(), b"through the mount");
    // A name cp1251 cannot carry is refused, nothing sent.
    let out = m.sh("touch '日本.txt'");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Invalid argument"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// vsftpd with its own default umask (077: new files 0600): a file created 0644 through the
/// mount is 0644 on the server all the same (the mount learns what the server gives new files
/// from the first one and sets the mode asked for), and a private one stays 0600.
#[test]
fn new_files_get_their_mode_on_a_server_with_umask_077() {
    if !fuse_available() {
        return;
    }
    let cfg = support::ServerConfig { vsftpd_extra: vec!["local_umask=077".into()], ..Default::default() };
    let srv = FtpServer::start_with(ServerKind::Vsftpd, cfg);
    let m = Mount::new(&srv, &[]);
    m.sh_ok("set -e; umask 022; echo 1 > first; echo 2 > second; cp first third; (umask 077; echo k > key)");
    let disk_mode = |rel: &str| std::fs::metadata(srv.disk(rel)).unwrap().permissions().mode() & 0o777;
    for name in ["first", "second", "third"] {
        assert_eq!(disk_mode(name), 0o644, "{name} on the server's disk");
        assert_eq!(std::fs::metadata(m.p(name)).unwrap().permissions().mode() & 0o777, 0o644, "{name} in the mount");
    }
    assert_eq!(disk_mode("key"), 0o600);
    assert_eq!(std::fs::read(srv.disk("second")).unwrap(), b"2\n");
}

/// A server that lists local time (vsftpd with use_localtime in UTC+3): `list_tz` corrects it.
#[test]
fn list_tz_corrects_local_time_listings() {
    if !fuse_available() {
        return;
    }
    let cfg = support::ServerConfig {
        vsftpd_extra: vec!["use_localtime=YES".into()],
        env: vec![("TZ".into(), "UTC-3".into())],
        ..Default::default()
    };
    let srv = FtpServer::start_with(ServerKind::Vsftpd, cfg);
    srv.put_file("t.txt", b"x");
    let disk = disk_mtime(&srv, "t.txt");
    let plain = Mount::new(&srv, &[]);
    let off_by = mtime_of(&plain.p("t.txt")) - disk;
    assert!((off_by - 3 * 3600).abs() <= 60, "without list_tz the time is 3 h ahead: {off_by}");
    let fixed = Mount::new(&srv, &["list_tz=+03:00"]);
    let off_by = mtime_of(&fixed.p("t.txt")) - disk;
    assert!(off_by.abs() <= 60, "with list_tz=+03:00: {off_by}");
}

on_every_server!(
    listing_and_attributes,
    names_looked_up_in_unlisted_directories,
    paths_longer_than_a_command_line,
    copy_in_and_out,
    writes_in_every_mode,
    directories_and_renames,
    tar_cp_rsync,
    cp_p_keeps_mtime,
    times_are_exact,
    unicode_and_spaces,
    error_messages,
    changes_on_server_seen_after_ttl,
    stale_listing_never_clobbers,
    parallel_writers,
    big_files_mmap_exec_and_busy_pool,
    active_mode_and_ipv6,
    wrong_password_and_bad_mountpoint,
    mount_table_hides_password_and_unmount_ends_process,
);

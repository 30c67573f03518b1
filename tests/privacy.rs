//! What the mount keeps on local disk is private, and nothing another local user plants there
//! is trusted, through real mounts as root with `-o writeback` (the fake server): the modes of
//! everything in the default cache directory under umask 000, a cache_dir another user owns or
//! may write refused before anything is written, a shared sticky one used through a private
//! directory, and a planted journal (symlinked lock, foreign directory, `..` and absolute paths,
//! symlinked and hard-linked data) that uploads nothing and follows nothing.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ftpfs::ftp::Connection;
use support::FakeServer;
use support::mount::{MountGuard, fuse_available, pin_work_ahead};

/// An unprivileged user (nobody) to own what "another user" planted.
const OTHER_UID: u32 = 65534;

fn require_root_and_fuse() {
    assert!(fuse_available(), "these tests need FUSE (/dev/fuse and fusermount3)");
    // SAFETY: geteuid cannot fail.
    assert_eq!(unsafe { libc::geteuid() }, 0, "these tests run as root, to act as two users");
}

fn chown(p: &Path, uid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(uid)).expect("chown");
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Runs ftpfs on `url` with `opts` through `sh -c 'umask 000; exec …'` (the loosest umask),
/// with `HOME` set to `home` and no XDG_CACHE_HOME: (mount point, guard, exit success, stderr).
fn mount(url: &str, opts: &str, home: &Path) -> (tempfile::TempDir, MountGuard, bool, String) {
    let dir = tempfile::Builder::new().prefix("ftpfs-mnt-").tempdir().unwrap();
    let opts = pin_work_ahead(&[opts]).join(",");
    let bin = env!("CARGO_BIN_EXE_ftpfs");
    let out = Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec \"$@\"")
        .arg("sh")
        .arg(bin)
        .args([url, dir.path().to_str().unwrap(), "-o", &opts])
        .env("FTPFS_PASSWORD", "p")
        .env("HOME", home)
        .env_remove("XDG_CACHE_HOME")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let guard = MountGuard::new(dir.path());
    (dir, guard, out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Every directory and file under `top` (not following symlinks), with its mode.
fn walk(top: &Path, out: &mut Vec<(PathBuf, u32, bool)>) {
    for e in std::fs::read_dir(top).unwrap().flatten() {
        let meta = std::fs::symlink_metadata(e.path()).unwrap();
        out.push((e.path(), meta.mode() & 0o7777, meta.is_dir()));
        if meta.is_dir() {
            walk(&e.path(), out);
        }
    }
}

/// The fake server's file `path`, read over a fresh connection (None: it has none).
fn server_file(srv: &FakeServer, path: &str) -> Option<Vec<u8>> {
    let mut c = Connection::connect(&srv.options(5)).expect("connect to the fake server");
    c.size(path).ok()?;
    Some(support::fetch(&mut c, path, 0))
}

fn unmount(dir: &Path) {
    let ok = Command::new("fusermount3").arg("-u").arg(dir).status().map(|s| s.success()).unwrap_or(false);
    assert!(ok, "fusermount3 -u {}", dir.display());
}

/// As root with no XDG_CACHE_HOME and umask 000: the cache directory is `$HOME/.cache/ftpfs`,
/// and while a write-back upload is pending, every directory in it is 0700 and every file
/// (spool, journal data and path, lock) 0600.
#[test]
fn what_the_mount_keeps_locally_is_private_whatever_the_umask() {
    require_root_and_fuse();
    // Each upload lands only after 4 s: the journal holds the data meanwhile.
    let srv = FakeServer::start(&["--slow-stor", "1", "--slow-secs", "4"]);
    let home = tempfile::tempdir().unwrap();
    let (mnt, _guard, ok, err) = mount(&srv.url(), "writeback", home.path());
    assert!(ok, "mount: {err}");
    let data: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
    std::fs::write(mnt.path().join("big.bin"), &data).expect("write through the mount");
    // A second file held open, changed in the middle: its spool lives in the cache directory.
    let open =
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(mnt.path().join("open.bin")).unwrap();
    std::os::unix::fs::FileExt::write_at(&open, b"middle", 1000).unwrap();
    let cache = home.path().join(".cache/ftpfs");
    let mut seen = Vec::new();
    walk(&cache, &mut seen);
    let cache_mode = std::fs::metadata(&cache).unwrap().mode() & 0o7777;
    let journal_data = seen.iter().filter(|(p, _, _)| p.extension().is_some_and(|x| x == "data")).count();
    assert!(journal_data >= 1, "the pending upload's data is in the journal: {seen:?}");
    assert_eq!(cache_mode, 0o700, "the cache directory");
    let loose: Vec<_> = seen.iter().filter(|(_, mode, dir)| *mode != if *dir { 0o700 } else { 0o600 }).collect();
    assert!(loose.is_empty(), "readable or writable by others: {loose:?}");
    drop(open);
    let deadline = Instant::now() + Duration::from_secs(60);
    while server_file(&srv, "/big.bin").as_deref() != Some(&data[..]) {
        assert!(Instant::now() < deadline, "big.bin never reached the server");
        std::thread::sleep(Duration::from_millis(200));
    }
    unmount(mnt.path());
}

/// A cache_dir another user owns, or that others may write without it being sticky (or that
/// lies below such a directory), is refused with its name before anything is written in it;
/// a sticky shared one is used through a private `ftpfs-0` directory.
#[test]
fn a_cache_dir_other_users_could_change_is_refused() {
    require_root_and_fuse();
    let srv = FakeServer::start(&[]);
    let top = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let refused = |dir: &Path, why: &str| {
        let (_mnt, _guard, ok, err) = mount(&srv.url(), &format!("writeback,cache_dir={}", dir.display()), home.path());
        assert!(!ok, "mounted with cache_dir {}", dir.display());
        assert!(err.contains(&dir.display().to_string()), "names the directory: {err}");
        assert!(err.contains(why), "says why ({why}): {err}");
    };
    // Another user's, open to all, with a `writeback` of theirs inside.
    let foreign = top.path().join("foreign");
    std::fs::create_dir_all(foreign.join("writeback")).unwrap();
    for d in [&foreign, &foreign.join("writeback")] {
        chmod(d, 0o777);
        chown(d, OTHER_UID);
    }
    refused(&foreign, "belongs to uid 65534");
    assert_eq!(std::fs::read_dir(foreign.join("writeback")).unwrap().count(), 0, "nothing written there");
    // Ours, but group-writable.
    let group = top.path().join("group");
    std::fs::create_dir(&group).unwrap();
    chmod(&group, 0o775);
    refused(&group, "writable by other users");
    // Ours and private, but below a directory anyone may write (and rename things in).
    let open = top.path().join("open");
    std::fs::create_dir_all(open.join("mine")).unwrap();
    chmod(&open, 0o777);
    chmod(&open.join("mine"), 0o700);
    refused(&open.join("mine"), "not sticky");
    // In a sticky shared directory, another user made `ftpfs-0` first (theirs, or a symlink).
    let squatted = top.path().join("squatted");
    std::fs::create_dir_all(squatted.join("ftpfs-0")).unwrap();
    chmod(&squatted, 0o1777);
    chown(&squatted.join("ftpfs-0"), OTHER_UID);
    refused(&squatted, "belongs to uid 65534");
    let linked = top.path().join("linked");
    std::fs::create_dir(&linked).unwrap();
    chmod(&linked, 0o1777);
    std::os::unix::fs::symlink(top.path().join("group"), linked.join("ftpfs-0")).unwrap();
    refused(&linked, "never followed");
    // A sticky shared directory, such as /var/tmp: used through a private directory.
    let shared = top.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    chmod(&shared, 0o1777);
    let (mnt, _guard, ok, err) = mount(&srv.url(), &format!("writeback,cache_dir={}", shared.display()), home.path());
    assert!(ok, "mount with a sticky shared cache_dir: {err}");
    std::fs::write(mnt.path().join("x.txt"), b"x").unwrap();
    let private = shared.join("ftpfs-0");
    assert_eq!(std::fs::metadata(&private).unwrap().mode() & 0o7777, 0o700);
    assert!(private.join("writeback").is_dir(), "the journal lives in the private directory");
    let names: Vec<_> = std::fs::read_dir(&shared).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("ftpfs-0")], "nothing else in the shared directory");
    unmount(mnt.path());
}

/// What another user could plant in a journal directory: one earlier mount's journal with a
/// lock that is a symlink (to a file that must not be created), one owned by another user, and
/// one of ours holding entries whose path leaves the root or is absolute, whose data is a
/// symlink to a file only root may read, or whose path file is a symlink.
fn plant(base: &Path, tag: &str, secret: &Path, victim: &Path) {
    std::fs::create_dir_all(base).unwrap();
    chmod(base, 0o700);
    let journal = |name: &str| {
        let d = base.join(name);
        std::fs::create_dir(&d).unwrap();
        chmod(&d, 0o700);
        d
    };
    let entry = |dir: &Path, n: u32, path: &str, data: &[u8]| {
        std::fs::write(dir.join(format!("{n:020}.path")), path).unwrap();
        std::fs::write(dir.join(format!("{n:020}.data")), data).unwrap();
    };
    let a = journal("100-100");
    std::os::unix::fs::symlink(victim, a.join("lock")).unwrap();
    entry(&a, 1, &format!("{tag}_lock_symlink"), b"a");
    let b = journal("200-200");
    std::fs::write(b.join("lock"), b"").unwrap();
    entry(&b, 1, &format!("{tag}_foreign"), b"b");
    for p in [b.join("lock"), b.join(format!("{:020}.path", 1)), b.join(format!("{:020}.data", 1)), b.clone()] {
        chown(&p, OTHER_UID);
    }
    let c = journal("300-300");
    entry(&c, 1, &format!("../{tag}_escaped"), b"c");
    entry(&c, 2, &format!("/{tag}_absolute"), b"c");
    std::fs::write(c.join(format!("{:020}.path", 3)), format!("{tag}_stolen")).unwrap();
    std::os::unix::fs::symlink(secret, c.join(format!("{:020}.data", 3))).unwrap();
    std::os::unix::fs::symlink(secret, c.join(format!("{:020}.path", 5))).unwrap();
    std::fs::write(c.join(format!("{:020}.data", 5)), b"c").unwrap();
    // And one good entry, which a crash would leave: it still lands.
    entry(&c, 6, &format!("{tag}_recovered"), b"good");
}

#[test]
fn a_planted_journal_uploads_nothing_and_follows_nothing() {
    require_root_and_fuse();
    let log = tempfile::NamedTempFile::new().unwrap();
    let srv = FakeServer::start(&["--log-commands", log.path().to_str().unwrap()]);
    let top = tempfile::tempdir().unwrap();
    let cache = top.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    chmod(&cache, 0o700);
    let secret = top.path().join("secret");
    std::fs::write(&secret, b"only root may read this").unwrap();
    chmod(&secret, 0o600);
    let victim = top.path().join("victim");
    let target = ftpfs::cli::parse_url(&srv.url()).unwrap();
    let writeback = cache.join("writeback");
    plant(&writeback.join(ftpfs::journal_dirs::journal_key(&target)), "new", &secret, &victim);
    // Where earlier versions kept the journal (percent-encoded URL): recovered too, checked alike.
    let legacy: String =
        percent_encoding::utf8_percent_encode(&target.display_url(), percent_encoding::NON_ALPHANUMERIC).collect();
    plant(&writeback.join(legacy), "old", &secret, &victim);
    let home = tempfile::tempdir().unwrap();
    let (mnt, _guard, ok, err) = mount(&srv.url(), &format!("writeback,cache_dir={}", cache.display()), home.path());
    assert!(ok, "mount: {err}");
    let stored: Vec<String> = std::fs::read_to_string(log.path())
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("STOR") || l.starts_with("APPE"))
        .map(str::to_string)
        .collect();
    let mut expected = vec!["STOR new_recovered".to_string(), "STOR old_recovered".to_string()];
    let mut got: Vec<String> = stored.iter().map(|l| l.replace("STOR /", "STOR ")).collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "only the good entries are uploaded");
    assert_eq!(server_file(&srv, "/new_recovered").as_deref(), Some(&b"good"[..]));
    assert!(!victim.exists(), "a lock symlink was followed: {} was created", victim.display());
    assert_eq!(std::fs::read(&secret).unwrap(), b"only root may read this");
    unmount(mnt.path());
}

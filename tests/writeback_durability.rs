//! Durability of write-back (`-o writeback`) through the kernel, on vsftpd and pyftpdlib, over a
//! slow link (examples/wan_proxy with a rate limit), checked on the server's own disk:
//! - `fusermount3 -u` while a big upload is still running: the process finishes the upload
//!   before it exits, the server's file is whole, the journal empty;
//! - the FTP server killed while uploads are pending and started again (same port and root) a
//!   few seconds later: the mount's own retries land every file, the journal empties;
//! - `kill -9` of ftpfs at random points of a `cp -r`: the next mount (same `cache_dir`) replays
//!   the journal, and no file is left truncated on the server: each is whole, or (only a file
//!   `cp` had not finished) absent or empty.
//!
//! The mounts log to a file of their own (debug), shown when an assertion fails.
//! `FTPFS_DURABILITY_SEED=N` repeats the kill points of an earlier run of the third test.

#[macro_use]
mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::mount::{
    MountGuard, daemon_pid_of, ftpfs_command, fuse_available, pin_work_ahead, process_gone, wait_process_gone,
};
use support::wan::Wan;
use support::{DataGen, FtpServer, ServerKind, journal_files};

fn setup(kind: ServerKind, rtt_ms: u32, rate_mbit: u32) -> Option<(FtpServer, Wan)> {
    if !fuse_available() {
        return None;
    }
    let srv = FtpServer::start(kind);
    let wan = Wan::start(&srv, rtt_ms, Some(rate_mbit));
    Some((srv, wan))
}

/// A write-back mount through the link, with its own debug log file. Dropping it unmounts
/// (lazily) and ends its ftpfs process if that still runs (the test is over: its server and
/// link go away).
struct WbMount {
    // Dropped first: unmounted before the mount point is removed.
    _guard: MountGuard,
    dir: tempfile::TempDir,
    pid: i32,
    log: PathBuf,
}

impl WbMount {
    /// Mounts with `-o writeback,cache_dir=CACHE`; the log goes to `logs/NAME.log`. Returns once
    /// the mount serves (a replay of an earlier journal runs before that).
    fn new(srv: &FtpServer, cache: &Path, logs: &Path, name: &str) -> WbMount {
        let dir = tempfile::Builder::new().prefix("ftpfs-mnt-").tempdir().expect("mount point");
        let log = logs.join(format!("{name}.log"));
        let opts = pin_work_ahead(&[&format!("writeback,cache_dir={}", cache.display())]).join(",");
        let url = Wan::url(srv);
        let mountpoint = dir.path().to_str().expect("utf-8 mount point");
        let out = ftpfs_command(&[&url, mountpoint, "-o", &opts])
            .env("FTPFS_LOG_FILE", &log)
            .env("RUST_LOG", "ftpfs=debug")
            .output()
            .expect("run ftpfs");
        let guard = MountGuard::new(dir.path());
        let log_text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            out.status.success(),
            "mount {name} failed ({:?}): {}\nits log:\n{}\nserver log:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr),
            tail(&log_text, 40),
            srv.log()
        );
        let pid = daemon_pid_of(dir.path()).unwrap_or_else(|| panic!("mount {name}: no ftpfs process serves it"));
        WbMount { _guard: guard, dir, pid, log }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn is_mounted(&self) -> bool {
        std::fs::read_to_string("/proc/mounts")
            .unwrap_or_default()
            .lines()
            .any(|l| l.split(' ').nth(1) == self.path().to_str())
    }

    /// Runs a shell command in the mount that must succeed.
    fn sh_ok(&self, script: &str) {
        let out = Command::new("bash").arg("-c").arg(script).current_dir(self.path()).output().expect("run bash");
        assert!(
            out.status.success(),
            "`{script}` failed ({:?}): {}\nmount log:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr),
            self.log_tail(40)
        );
    }

    /// `fusermount3 -u`: whether it succeeded and the mount is gone.
    fn unmount(&self) -> bool {
        let ok = Command::new("fusermount3").arg("-u").arg(self.path()).status().is_ok_and(|s| s.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.is_mounted() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        ok && !self.is_mounted()
    }

    /// `kill -9` of the ftpfs process, then the dead mount cleaned up (`fusermount3 -u -z`).
    fn kill_9(&self) {
        // SAFETY: kill(2) has no memory-safety preconditions; pid is this mount's ftpfs.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        // Gone for real before anything goes on: until then it holds its journal's lock, and
        // the next mount would take the journal for a live mount's.
        assert!(wait_process_gone(self.pid, Duration::from_secs(30)), "ftpfs {} survived SIGKILL for 30 s", self.pid);
        let st = Command::new("fusermount3").arg("-u").arg("-z").arg(self.path()).status();
        assert!(st.is_ok_and(|s| s.success()) && !self.is_mounted(), "the dead mount could not be unmounted");
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_tail(&self, n: usize) -> String {
        tail(&self.log_text(), n)
    }

    /// The log's lines about write-back, retries and the journal (at most `n`, the last ones).
    fn log_about_writeback(&self, n: usize) -> String {
        let text = self.log_text();
        let keep = |l: &&str| {
            ["write-back", "written back", "journal", "trying again", "recover", "replay", "conflict", "unsaved"]
                .iter()
                .any(|k| l.contains(k))
                || l.contains("ERROR")
                || l.contains("WARN")
        };
        let lines: Vec<&str> = text.lines().filter(keep).collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for WbMount {
    fn drop(&mut self) {
        if !process_gone(self.pid) && daemon_pid_of(self.path()) == Some(self.pid) {
            // SAFETY: kill(2) has no memory-safety preconditions; pid still serves this mount point.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            wait_process_gone(self.pid, Duration::from_secs(10));
        }
        // `_guard` unmounts lazily next, then the mount point goes.
    }
}

/// A child process killed when dropped (a `cp` left running by a failing test).
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The journal entries (`.data` files) waiting under `cache`.
fn journal_entries(cache: &Path) -> usize {
    journal_files(cache).iter().filter(|p| p.extension().is_some_and(|e| e == "data")).count()
}

/// What the mount set aside in `cache_dir` instead of uploading it (`ftpfs-unsaved-…`,
/// `ftpfs-conflict-…`, `…-recovered`).
fn set_aside(cache: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(cache)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ftpfs-"))
        .collect();
    out.sort();
    out
}

fn size_on(srv: &FtpServer, rel: &str) -> Option<u64> {
    std::fs::metadata(srv.disk(rel)).ok().map(|m| m.len())
}

fn sha256_of(path: &Path) -> Option<String> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Some(ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

/// How `got` (a file on the server's disk, `None`: absent) stands against `want`, in words.
fn describe(got: Option<&[u8]>, want: &[u8]) -> String {
    match got {
        None => "absent".into(),
        Some(g) if g == want => "complete".into(),
        Some([]) => format!("empty (of {} bytes)", want.len()),
        Some(g) if want.starts_with(g) => format!("truncated: {} of {} bytes", g.len(), want.len()),
        Some(g) => {
            let at = g.iter().zip(want).position(|(a, b)| a != b).unwrap_or(g.len().min(want.len()));
            format!("different content: {} bytes against {}, first difference at byte {at}", g.len(), want.len())
        }
    }
}

/// Writes `len` bytes of the DataGen stream of `seed` to `path`.
fn write_generated(path: &Path, seed: u64, len: usize) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create local file"));
    let mut generator = DataGen::new(seed);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len());
        generator.fill(&mut buf[..n]);
        f.write_all(&buf[..n]).expect("write local file");
        left -= n;
    }
    f.flush().expect("flush local file");
}

/// A small random number generator (xorshift64*) for sizes and kill points.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Unmount during a long write-back upload.

/// The big file. The case is 200 MiB; at [`BIG_RATE_MBIT`] it takes about 17 s on the
/// link, so `cp` returns (the spool is local) long before the upload ends.
const BIG: usize = 200 << 20;
/// Fast enough that the whole test stays near 20 s, slow enough that the upload runs for many
/// seconds after `cp` and `fusermount3 -u` returned, whatever the machine's load.
const BIG_RATE_MBIT: u32 = 100;

fn unmount_during_a_long_upload_lands_it_whole(kind: ServerKind) {
    let Some((srv, _wan)) = setup(kind, 20, BIG_RATE_MBIT) else { return };
    let cache = tempfile::tempdir().expect("cache dir");
    let logs = tempfile::tempdir().expect("log dir");
    let local = tempfile::tempdir().expect("local dir");
    let src = local.path().join("big");
    write_generated(&src, 200, BIG);
    let want = sha256_of(&src).expect("hash of the source");

    let m = WbMount::new(&srv, cache.path(), logs.path(), "mount");
    // As a script does it: the unmount right after cp returned, in the same shell (outside the
    // mount, or the unmount would find it busy). bash's clock costs no process in between.
    let script = format!(
        "s=$EPOCHREALTIME; cp {} {mnt}/big && e=$EPOCHREALTIME && fusermount3 -u {mnt}; rc=$?; echo \"$s $e\"; exit $rc",
        src.display(),
        mnt = m.path().display()
    );
    let started = Instant::now();
    let out = Command::new("bash").arg("-c").arg(&script).current_dir("/").output().expect("run bash");
    // The server's size the moment fusermount3 returned: sizes only grow during a STOR, so a
    // shorter file now means the upload was in flight when the unmount was asked for.
    let at_unmount = size_on(&srv, "big").unwrap_or(0);
    let unmount_returned = started.elapsed();
    assert!(
        out.status.success(),
        "cp or fusermount3 -u failed ({:?}): {}\nmount log:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr),
        m.log_tail(40)
    );
    let stamps: Vec<f64> =
        String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|t| t.parse().ok()).collect();
    let cp_took = Duration::from_secs_f64(stamps.get(1).zip(stamps.first()).map_or(0.0, |(e, s)| e - s));
    assert!(!m.is_mounted(), "fusermount3 -u returned but the mount is still there");
    assert!(
        (at_unmount as usize) < BIG,
        "the upload had already ended when fusermount3 -u returned ({at_unmount} of {BIG} bytes on the server, \
         cp took {cp_took:?}): nothing was in flight, the test proves nothing; slow the link down"
    );
    eprintln!(
        "cp returned after {cp_took:?}; fusermount3 -u returned {:?} after cp started, with {:.1} of {} MiB on the server",
        unmount_returned,
        at_unmount as f64 / (1 << 20) as f64,
        BIG >> 20
    );

    // The process lives on until the upload landed, then exits by itself.
    let exited = wait_process_gone(m.pid, Duration::from_secs(60));
    let exit_took = started.elapsed();
    let on_server = size_on(&srv, "big");
    assert!(
        exited,
        "ftpfs {} still runs 60 s after the unmount ({on_server:?} of {BIG} bytes on the server)\nmount log:\n{}",
        m.pid,
        m.log_about_writeback(40)
    );
    eprintln!("ftpfs exited {exit_took:?} after cp started");
    assert_eq!(
        on_server,
        Some(BIG as u64),
        "after the unmount and the exit of ftpfs, the server's file has {on_server:?} bytes of {BIG} \
         (fusermount3 -u returned with {at_unmount})\nmount log:\n{}",
        m.log_about_writeback(40)
    );
    let got = sha256_of(&srv.disk("big"));
    assert_eq!(
        got.as_deref(),
        Some(want.as_str()),
        "the server's file has the full length but not the source's content (SHA-256 differs)"
    );
    let left = journal_files(cache.path());
    assert!(
        left.is_empty(),
        "the journal still holds {left:?} after the upload landed and ftpfs exited: the next mount would replay \
         that version again (or set it aside as a conflict)\nmount log:\n{}",
        m.log_tail(60)
    );
    assert!(set_aside(cache.path()).is_empty(), "data set aside in cache_dir: {:?}", set_aside(cache.path()));
}

// ---------------------------------------------------------------------------------------------
// 2. The server killed during write-back uploads, then started again.

/// How long the server stays down: the mount's retries (1, 2, 4, 8 s apart) outlast it.
const SERVER_DOWN: Duration = Duration::from_secs(2);

fn server_killed_and_restarted_during_uploads(kind: ServerKind) {
    // 20 files of 256–768 KiB (about 10 MiB) at 16 Mbit/s: about 5 s of uploads after cp.
    let Some((mut srv, _wan)) = setup(kind, 40, 16) else { return };
    let cache = tempfile::tempdir().expect("cache dir");
    let logs = tempfile::tempdir().expect("log dir");
    let local = tempfile::tempdir().expect("local dir");
    let n = 20;
    let mut rng = Rng::new(20);
    let files: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            let len = rng.range(256 << 10, 768 << 10) as usize;
            (format!("f{i:02}"), DataGen::bytes(1000 + i as u64, len))
        })
        .collect();
    for (name, data) in &files {
        std::fs::write(local.path().join(name), data).expect("local file");
    }
    let state = |srv: &FtpServer| -> BTreeMap<&str, String> {
        files
            .iter()
            .map(|(name, data)| {
                (name.as_str(), describe(std::fs::read(srv.disk(&format!("in/{name}"))).ok().as_deref(), data))
            })
            .collect()
    };
    let complete = |st: &BTreeMap<&str, String>| st.values().filter(|s| *s == "complete").count();

    let m = WbMount::new(&srv, cache.path(), logs.path(), "mount");
    m.sh_ok(&format!("mkdir in && cp {}/f* in/", local.path().display()));
    // Let the first uploads get under way, then kill the server in the middle of them.
    std::thread::sleep(Duration::from_millis(700));
    srv.kill();
    let killed = Instant::now();
    let at_kill = state(&srv);
    let pending = journal_entries(cache.path());
    assert!(
        complete(&at_kill) < n && pending > 0,
        "nothing was pending when the server was killed ({} of {n} files complete, {pending} journal entries): \
         the test proves nothing; slow the link down\n{at_kill:#?}",
        complete(&at_kill)
    );
    eprintln!(
        "server killed with {} of {n} files complete on its disk and {pending} journal entries",
        complete(&at_kill)
    );
    std::thread::sleep(SERVER_DOWN.saturating_sub(killed.elapsed()));
    srv.restart();
    let restarted = Instant::now();
    eprintln!("server up again {:?} after the kill", restarted - killed);

    // Everything lands within the mount's own retries (1 + 2 + 4 + 8 s), with time for the
    // uploads themselves.
    let deadline = restarted + Duration::from_secs(30);
    loop {
        let now = state(&srv);
        let left = journal_files(cache.path());
        if complete(&now) == n && left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "30 s after the server came back, {} of {n} files are complete on its disk and the journal holds \
             {left:?}\nfiles: {now:#?}\nset aside in cache_dir: {:?}\nmount log:\n{}",
            complete(&now),
            set_aside(cache.path()),
            m.log_about_writeback(60)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "all {n} files landed {:?} after the restart; {} retries logged",
        restarted.elapsed(),
        m.log_text().matches("trying again").count()
    );
    assert!(set_aside(cache.path()).is_empty(), "data set aside in cache_dir: {:?}", set_aside(cache.path()));
    assert!(m.unmount(), "fusermount3 -u failed after the uploads landed\nmount log:\n{}", m.log_tail(40));
    assert!(
        wait_process_gone(m.pid, Duration::from_secs(20)),
        "ftpfs still runs 20 s after a clean unmount with nothing pending\nmount log:\n{}",
        m.log_tail(40)
    );
    assert!(journal_files(cache.path()).is_empty(), "the journal is not empty after the unmount");
}

// ---------------------------------------------------------------------------------------------
// 3. kill -9 of ftpfs at random points of a `cp -r`, then the next mount's replay.

/// The tree `cp -r` copies: 3 directories of 10 files; a third of them 1–2 MiB, the others up
/// to 64 KiB (one empty). About 12 MiB, some 3 s of uploads at 32 Mbit/s.
fn make_tree(root: &Path, rng: &mut Rng) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for d in 0..3 {
        std::fs::create_dir_all(root.join(format!("d{d}"))).expect("local dir");
        for f in 0..10 {
            let len = match (d, f) {
                (1, 4) => 0,
                (_, f) if f % 3 == 0 => rng.range(1 << 20, 2 << 20),
                _ => rng.range(1, 64 << 10),
            } as usize;
            let rel = format!("d{d}/f{f:02}");
            let data = DataGen::bytes(rng.next(), len);
            std::fs::write(root.join(&rel), &data).expect("local file");
            files.insert(rel, data);
        }
    }
    files
}

/// Every regular file under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else if let Ok(rel) = p.strip_prefix(base) {
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The kill point: at most this long after the first close reached the journal (or when `cp`
/// ends, if sooner). `cp -r` of the tree takes 1–2 s on the link: most kills land inside it,
/// some as it ends (with the whole tree still to upload).
const MAX_KILL_DELAY_MS: u64 = 1500;
const ITERATIONS: usize = 3;

fn kill_9_during_cp_r_leaves_no_truncated_file(kind: ServerKind) {
    let Some((srv, _wan)) = setup(kind, 20, 32) else { return };
    let seed = std::env::var("FTPFS_DURABILITY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1));
    eprintln!("seed {seed} (FTPFS_DURABILITY_SEED={seed} repeats these sizes and kill points)");
    let mut rng = Rng::new(seed);
    let local = tempfile::tempdir().expect("local dir");
    let tree = local.path().join("tree");
    let files = make_tree(&tree, &mut rng);
    let logs = tempfile::tempdir().expect("log dir");

    for iteration in 0..ITERATIONS {
        let cache = tempfile::tempdir().expect("cache dir");
        let dest = format!("run{iteration}");
        let m = WbMount::new(&srv, cache.path(), logs.path(), &format!("run{iteration}-killed"));
        let out_path = logs.path().join(format!("cp{iteration}.out"));
        let err_path = logs.path().join(format!("cp{iteration}.err"));
        let cp_started = Instant::now();
        let mut cp = ChildGuard(
            Command::new("cp")
                .arg("-rv")
                .arg(&tree)
                .arg(&dest)
                .current_dir(m.path())
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&out_path).expect("cp stdout"))
                .stderr(std::fs::File::create(&err_path).expect("cp stderr"))
                .spawn()
                .expect("start cp"),
        );
        // The kill point counts from the first close in the journal, so that something was
        // closed to lose.
        let deadline = Instant::now() + Duration::from_secs(30);
        while journal_entries(cache.path()) == 0 {
            let ended = cp.0.try_wait().expect("cp status");
            assert!(
                ended.is_none() && Instant::now() < deadline,
                "run {iteration}: no close reached the journal ({ended:?}, {:?} after cp started)\ncp: {}\nmount log:\n{}",
                cp_started.elapsed(),
                std::fs::read_to_string(&err_path).unwrap_or_default(),
                m.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let first_close = cp_started.elapsed();
        let delay = Duration::from_millis(rng.range(0, MAX_KILL_DELAY_MS));
        let kill_at = Instant::now() + delay;
        let mut cp_ended_first = false;
        while Instant::now() < kill_at {
            if cp.0.try_wait().expect("cp status").is_some() {
                cp_ended_first = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        m.kill_9();
        let killed_after = cp_started.elapsed();
        let pending = journal_entries(cache.path());
        // Uploads the kill cut short: what the replay has to put right.
        let cut_short = files
            .iter()
            .filter(|(rel, data)| {
                std::fs::read(srv.disk(&format!("{dest}/{rel}")))
                    .is_ok_and(|g| !g.is_empty() && g.len() < data.len() && data.starts_with(&g))
            })
            .count();
        // cp fails at once on the dead mount (ENOTCONN).
        let deadline = Instant::now() + Duration::from_secs(30);
        while cp.0.try_wait().expect("cp status").is_none() {
            assert!(Instant::now() < deadline, "run {iteration}: cp still runs 30 s after ftpfs was killed");
            std::thread::sleep(Duration::from_millis(10));
        }
        let cp_out = std::fs::read_to_string(&out_path).unwrap_or_default();
        let cp_err = std::fs::read_to_string(&err_path).unwrap_or_default();
        // A file cp finished: `cp -v` named it and no error of cp names it.
        let finished: Vec<&String> = files
            .keys()
            .filter(|rel| {
                let quoted = format!("'{dest}/{rel}'");
                cp_out.lines().any(|l| l.ends_with(&format!("-> {quoted}"))) && !cp_err.contains(&quoted)
            })
            .collect();
        eprintln!(
            "run {iteration}: first close {first_close:?} after cp started; kill -9 {delay:?} later{} \
             ({killed_after:?} after cp started): cp had finished {} of {} files, {pending} journal entries pending, \
             {cut_short} files cut short on the server",
            if cp_ended_first { " (cp ended first: killed as it ended)" } else { "" },
            finished.len(),
            files.len()
        );
        assert!(
            pending > 0,
            "run {iteration}: nothing was pending in the journal when ftpfs was killed (cp finished {} files): \
             the kill proves nothing; slow the link down",
            finished.len()
        );

        let m2 = WbMount::new(&srv, cache.path(), logs.path(), &format!("run{iteration}-replay"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !journal_files(cache.path()).is_empty() {
            assert!(
                Instant::now() < deadline,
                "run {iteration}: the journal still holds {:?} 30 s after the next mount\nreplay log:\n{}",
                journal_files(cache.path()),
                m2.log_about_writeback(40)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut wrong = Vec::new();
        for (rel, data) in &files {
            let got = std::fs::read(srv.disk(&format!("{dest}/{rel}"))).ok();
            let state = describe(got.as_deref(), data);
            let cp_finished = finished.contains(&rel);
            let ok = match got.as_deref() {
                Some(g) if g == data.as_slice() => true,
                None | Some([]) => !cp_finished,
                Some(_) => false,
            };
            if !ok {
                let closed = if cp_finished { "cp had closed it" } else { "cp had not finished it" };
                wrong.push(format!("{dest}/{rel}: {state} on the server ({closed})"));
            }
        }
        let extra: Vec<String> = files_under(&srv.disk(&dest)).into_iter().filter(|r| !files.contains_key(r)).collect();
        assert!(
            wrong.is_empty() && extra.is_empty(),
            "run {iteration} (seed {seed}, kill -9 {killed_after:?} after cp started): after the replay\n{}\n\
             files on the server that cp never wrote: {extra:?}\nset aside in cache_dir: {:?}\n\
             killed mount's log:\n{}\nreplay log:\n{}\ncp stderr:\n{}",
            wrong.join("\n"),
            set_aside(cache.path()),
            m.log_about_writeback(30),
            m2.log_about_writeback(30),
            tail(&cp_err, 10)
        );
        let complete = files
            .iter()
            .filter(|(rel, d)| std::fs::read(srv.disk(&format!("{dest}/{rel}"))).ok().as_ref() == Some(*d))
            .count();
        eprintln!("run {iteration}: after the replay {complete} of {} files complete on the server", files.len());
        assert!(m2.unmount(), "run {iteration}: fusermount3 -u of the replaying mount failed");
        assert!(wait_process_gone(m2.pid, Duration::from_secs(20)), "run {iteration}: ftpfs still runs after unmount");
    }
}

on_servers!(
    [vsftpd: Vsftpd, pyftpdlib: Pyftpdlib],
    unmount_during_a_long_upload_lands_it_whole,
    server_killed_and_restarted_during_uploads,
    kill_9_during_cp_r_leaves_no_truncated_file,
);

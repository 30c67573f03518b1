//! Data safety through the kernel mount, on every real server, checked on the server's own disk:
//! readers and writers sharing a file, renames meeting open handles, more open writers than
//! connections, modes given at creation, and failures (the server killed mid-write, a full cache
//! directory) that must reach the caller instead of losing data silently.
//!
//! Every step on the mount is bounded in time ([`LIMIT`]): a step that hangs kills the mount's
//! ftpfs process (which ends every call stuck on it), unmounts, and fails the test.

#[macro_use]
mod support;

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::IntoRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::mount::{Mount, fuse_available};
use support::{DataGen, FtpServer, ServerKind};

/// How long one step on the mount may take before it counts as a hang.
const LIMIT: Duration = Duration::from_secs(60);

const MIB: usize = 1 << 20;

/// What a bash script run in the mount did.
#[derive(Default)]
struct Run {
    script: String,
    /// Exit code; `None` when killed by a signal or hung.
    code: Option<i32>,
    hung: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = if self.hung {
            format!("HUNG (killed after {LIMIT:?}, mount aborted)")
        } else {
            format!("exit {:?}", self.code)
        };
        // Short scripts in full, on one line; long ones (embedded programs) by their first line.
        let shown = if self.script.len() <= 200 {
            self.script.replace('\n', "; ")
        } else {
            format!("{} ...", self.script.lines().next().unwrap_or_default())
        };
        write!(f, "`{shown}`: {status}")?;
        for (name, text) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            if !text.trim().is_empty() {
                write!(f, "\n    {name}: {}", text.trim().replace('\n', "\n            "))?;
            }
        }
        Ok(())
    }
}

/// A bash script running in the mount (`cd`'d into it, also `$MNT`), in its own process group.
struct Script {
    child: Option<std::process::Child>,
    started: Instant,
    out: File,
    err: File,
    run: Run,
}

impl Script {
    fn start(m: &Mount, script: &str) -> Script {
        let run = Run { script: script.to_string(), ..Run::default() };
        let out = tempfile::tempfile().expect("temp file");
        let err = tempfile::tempfile().expect("temp file");
        let child = m.is_mounted().then(|| {
            Command::new("bash")
                .arg("-c")
                .arg(format!("cd \"$MNT\" || exit 99\n{script}"))
                .env("MNT", m.path())
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("dup"))
                .stderr(err.try_clone().expect("dup"))
                .process_group(0)
                .spawn()
                .expect("run bash")
        });
        Script { child, started: Instant::now(), out, err, run }
    }

    fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().expect("wait for bash").is_none())
    }

    /// Waits for the end, at most [`LIMIT`] after the start. A script still running then is
    /// reported as hung: the mount is aborted first (a process waiting on a FUSE request the
    /// daemon has received cannot be killed otherwise), then the script's process group is killed.
    fn finish(mut self, m: &Mount) -> Run {
        let Some(mut child) = self.child.take() else {
            self.run.stderr = "not run: the mount is gone (aborted after an earlier hang)".to_string();
            return std::mem::take(&mut self.run);
        };
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for bash") {
                break Some(status);
            }
            if self.started.elapsed() >= LIMIT {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        match status {
            Some(status) => self.run.code = status.code().or(status.signal().map(|s| 128 + s)),
            None => {
                self.run.hung = true;
                m.abort();
                // SAFETY: kill(2) has no memory-safety preconditions; the group is the script's.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                let _ = child.wait();
            }
        }
        for (file, text) in [(&mut self.out, &mut self.run.stdout), (&mut self.err, &mut self.run.stderr)] {
            let mut bytes = Vec::new();
            let _ = file.rewind().and_then(|()| file.read_to_end(&mut bytes));
            *text = String::from_utf8_lossy(&bytes).into_owned();
        }
        std::mem::take(&mut self.run)
    }
}

impl Drop for Script {
    /// A script left running (the test failed while it ran) is killed with its process group.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) has no memory-safety preconditions; the group is the script's.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
        }
    }
}

/// Runs a bash script in the mount to its end (see [`Script::finish`] for hangs).
fn sh(m: &Mount, script: &str) -> Run {
    Script::start(m, script).finish(m)
}

/// [`sh`] for a step that must succeed; returns its stdout.
fn sh_ok(m: &Mount, script: &str) -> String {
    let run = sh(m, script);
    assert!(run.ok(), "{run}");
    run.stdout
}

/// Runs `f` (calls on the mount) on its own thread. If it has not returned within [`LIMIT`], the
/// mount is aborted, which fails the stuck call, and the test fails as hung.
fn bounded<T: Send + 'static>(m: &Mount, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(LIMIT) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            m.abort();
            panic!("HUNG: {what} did not return within {LIMIT:?}; the mount was aborted");
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => std::panic::resume_unwind(thread.join().unwrap_err()),
    }
}

/// Writes all of `data` through `f`, bounded; hands the file back with the result.
fn write_all(m: &Mount, what: &str, mut f: File, data: Vec<u8>) -> (File, io::Result<()>) {
    bounded(m, what, move || {
        let res = f.write_all(&data);
        (f, res)
    })
}

/// Closes `f`, bounded, and returns what close(2) returned (dropping a File ignores it).
fn close(m: &Mount, what: &str, f: File) -> io::Result<()> {
    bounded(m, what, move || {
        // SAFETY: the descriptor was just taken out of the File, so it is open and owned here.
        if unsafe { libc::close(f.into_raw_fd()) } == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
    })
}

/// Opens `path` with `opts`, bounded.
fn open(m: &Mount, opts: &OpenOptions, path: PathBuf) -> File {
    let opts = opts.clone();
    let shown = path.display().to_string();
    bounded(m, &format!("open {shown}"), move || opts.open(path)).unwrap_or_else(|e| panic!("open {shown}: {e}"))
}

/// Failed checks, collected so that one run reports every case of a test (each is also printed
/// at once, so a later hang does not hide it).
#[derive(Default)]
struct Checks(Vec<String>);

impl Checks {
    fn check(&mut self, ok: bool, msg: impl FnOnce() -> String) {
        if !ok {
            let msg = msg();
            eprintln!("FAILED CHECK: {msg}");
            self.0.push(msg);
        }
    }

    fn run_ok(&mut self, run: &Run) {
        self.check(run.ok(), || run.to_string());
    }

    /// The server's own copy of `rel` holds exactly `want`.
    fn disk(&mut self, srv: &FtpServer, rel: &str, want: &[u8]) {
        let diff = match std::fs::read(srv.disk(rel)) {
            Err(e) => Some(format!("{e}")),
            Ok(got) => describe_diff(&got, want),
        };
        self.check(diff.is_none(), || format!("{rel} on the server: {}", diff.unwrap_or_default()));
    }

    fn disk_absent(&mut self, srv: &FtpServer, rel: &str) {
        self.check(!srv.disk(rel).exists(), || format!("{rel} still exists on the server"));
    }

    /// The permission bits of `rel` on the server's disk are `want`.
    fn disk_mode(&mut self, srv: &FtpServer, rel: &str, want: u32) {
        let got = std::fs::metadata(srv.disk(rel)).map(|m| m.permissions().mode() & 0o777);
        self.check(matches!(got, Ok(mode) if mode == want), || match got {
            Ok(mode) => format!("{rel} on the server: mode {mode:04o}, expected {want:04o}"),
            Err(e) => format!("{rel} on the server: {e}"),
        });
    }

    fn done(self) {
        assert!(self.0.is_empty(), "{} check(s) failed:\n- {}", self.0.len(), self.0.join("\n- "));
    }
}

/// None when `got == want`; otherwise how they differ, readable for short text.
fn describe_diff(got: &[u8], want: &[u8]) -> Option<String> {
    if got == want {
        return None;
    }
    if got.len() <= 64 && want.len() <= 64 {
        return Some(format!("{:?}, expected {:?}", String::from_utf8_lossy(got), String::from_utf8_lossy(want)));
    }
    let at = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
    Some(format!("{} bytes, expected {}; first difference at byte {at}", got.len(), want.len()))
}

/// A local file with `data`, in `dir`.
fn local_file(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).expect("write local file");
    p
}

/// Closing the reader of a file another descriptor is writing never uploads anything of its own:
/// the file ends with what the writer wrote, whichever order they open and close in.
fn reader_close_never_uploads(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(kind);
    let m = Mount::new(&srv, &[]);
    let mut c = Checks::default();
    for (name, steps) in [
        // The reader opens the new, still empty file before anything is written.
        ("x", "exec 3>x; exec 4<x; echo data >&3; exec 3>&-; exec 4<&-"),
        // The reader opens after the writer has written.
        ("y", "exec 3>y; echo data >&3; exec 4<y; exec 3>&-; exec 4<&-"),
        // The reader closes first.
        ("z", "exec 3>z; exec 4<z; echo data >&3; exec 4<&-; exec 3>&-"),
    ] {
        c.run_ok(&sh(&m, &format!("set -e; {steps}")));
        c.disk(&srv, name, b"data\n");
    }
    c.done();
}

/// A reader running while a writer creates or rewrites the file does not disturb the upload.
fn reader_during_writer(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(kind);
    let old = DataGen::bytes(22, MIB);
    srv.put_file("doc", &old);
    let m = Mount::new(&srv, &[]);
    let local = tempfile::tempdir().expect("temp dir");
    let mut c = Checks::default();

    // `cat` starts once `cp` has made the file and written into it.
    let big = DataGen::bytes(21, 32 * MIB);
    let src = local_file(local.path(), "src", &big);
    let run = sh(
        &m,
        &format!(
            "cp '{}' big & cp_pid=$!\n\
             for _ in $(seq 1000); do [ -s big ] && break; sleep 0.01; done\n\
             cat big > /dev/null & cat_pid=$!\n\
             wait $cp_pid; cp_rc=$?\n\
             wait $cat_pid; cat_rc=$?\n\
             echo \"cp: $cp_rc, cat: $cat_rc\"\n\
             exit $cp_rc",
            src.display()
        ),
    );
    c.run_ok(&run);
    c.disk(&srv, "big", &big);

    // A reader that has started on the old content while a writer truncates and rewrites it. What
    // the reader then gets is not checked; the writer's `cat` must succeed.
    let new = DataGen::bytes(23, 2 * MIB);
    let new_src = local_file(local.path(), "new", &new);
    let run = sh(
        &m,
        &format!(
            "exec 4<doc || exit 10\n\
             head -c 4096 <&4 > /dev/null\n\
             cat '{}' > doc || exit 11\n\
             cat <&4 > /dev/null\n\
             exec 4<&-",
            new_src.display()
        ),
    );
    c.run_ok(&run);
    c.disk(&srv, "doc", &new);
    c.done();
}

/// A rename that fails (the source was deleted on the server behind the mount's back) leaves the
/// target alone.
fn failed_rename_keeps_target(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(kind);
    srv.put_file("src", b"source\n");
    srv.put_file("target", b"target\n");
    let m = Mount::new(&srv, &[]);
    let mut c = Checks::default();
    let listing = sh_ok(&m, "ls -l");
    assert!(listing.contains("src") && listing.contains("target"), "{listing}");
    std::fs::remove_file(srv.disk("src")).expect("remove src on the server");

    let (from, to) = (m.p("src"), m.p("target"));
    let res = bounded(&m, "rename src over target", move || std::fs::rename(from, to));
    c.check(matches!(&res, Err(e) if e.kind() == io::ErrorKind::NotFound), || {
        format!("rename of a source gone from the server returned {res:?}, expected ENOENT")
    });
    c.disk(&srv, "target", b"target\n");
    let target = m.p("target");
    let read = bounded(&m, "read target", move || std::fs::read(target));
    c.check(matches!(&read, Ok(d) if d == b"target\n"), || format!("target through the mount: {read:?}"));
    c.done();
}

/// An open handle follows its file through a rename; a handle open on the target of a rename
/// never uploads over the file that replaced it.
fn handles_follow_rename(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(kind);
    for i in 1..=3 {
        srv.put_file(&format!("a{i}"), format!("content of a{i}\n").as_bytes());
        srv.put_file(&format!("b{i}"), format!("old content of b{i}\n").as_bytes());
    }
    let m = Mount::new(&srv, &[]);
    let mut c = Checks::default();

    // Written before and after a rename through the same handle.
    let (part1, part2) = (DataGen::bytes(41, 300_000), DataGen::bytes(42, 200_000));
    let f = open(&m, OpenOptions::new().write(true).create(true).truncate(true), m.p("old"));
    let (f, res) = write_all(&m, "write part 1", f, part1.clone());
    c.check(res.is_ok(), || format!("write part 1: {res:?}"));
    let (from, to) = (m.p("old"), m.p("new"));
    let res = bounded(&m, "rename old -> new", move || std::fs::rename(from, to));
    c.check(res.is_ok(), || format!("rename old -> new with a writer open: {res:?}"));
    let (f, res) = write_all(&m, "write part 2", f, part2.clone());
    c.check(res.is_ok(), || format!("write part 2 after the rename: {res:?}"));
    let res = close(&m, "close the renamed writer", f);
    c.check(res.is_ok(), || format!("close after the rename: {res:?}"));
    c.disk(&srv, "new", &[part1, part2].concat());
    c.disk_absent(&srv, "old");

    // `mv a b` while b is open: for reading (some of it read), for writing with a truncating open
    // (streamed) and for an edit in place (a temp copy). Whatever the old handle's close says,
    // b is a's content afterwards.
    for (i, how) in [(1, "read"), (2, "truncate"), (3, "edit")] {
        let run = sh(&m, &format!("python3 - {how} a{i} b{i} <<'EOF'\n{HOLD_TARGET_PY}\nEOF"));
        c.check(run.ok(), || format!("{how}: {run}"));
        eprintln!("{how}: {}", run.stdout.trim());
        c.disk(&srv, &format!("b{i}"), format!("content of a{i}\n").as_bytes());
        c.disk_absent(&srv, &format!("a{i}"));
    }
    c.done();
}

/// Holds TARGET open (HOW: read, truncate or edit), renames SOURCE over it, then closes it, in
/// one process that starts no other: a child inheriting the descriptor would flush it on exit
/// (a FUSE flush comes with every close of a copy), which would save the data before the rename.
const HOLD_TARGET_PY: &str = r#"
import os, sys
how, source, target = sys.argv[1:]
if how == "read":
    f = open(target, "rb", buffering=0)
    f.read(3)
elif how == "truncate":
    f = open(target, "wb", buffering=0)
    f.write(b"unsaved\n")
else:
    f = open(target, "r+b", buffering=0)
    f.seek(2)
    f.write(b"XX")
os.rename(source, target)
try:
    f.close()
    print("close of the replaced target: ok")
except OSError as e:
    print("close of the replaced target:", e.strerror)
"#;

/// Three times as many files open for writing at once as there are connections (`tee` opens them
/// all, then writes to each in turn) all get written.
fn more_writers_than_connections(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(kind);
    let mut c = Checks::default();
    for (options, names) in [(&["connections=2"][..], "f1 f2 f3 f4 f5 f6"), (&[][..], "a b c d e f g h i j k l")] {
        let m = Mount::new(&srv, options);
        c.run_ok(&sh(&m, &format!("echo hi | tee {names} > /dev/null")));
        for name in names.split(' ') {
            c.disk(&srv, name, b"hi\n");
        }
    }
    c.done();
}

/// Eight times as many files read at once as there are connections, while another handle
/// holds a file open half read: the readers take turns on the connections (the idle handle
/// gives its connection up and resumes later), and every reader gets every byte right.
fn more_readers_than_connections(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(kind);
    let files: Vec<Vec<u8>> = (0..16).map(|i| DataGen::bytes(70 + i, 5 * MIB + i as usize * 4099)).collect();
    for (i, data) in files.iter().enumerate() {
        srv.put_file(&format!("r{i}"), data);
    }
    let m = Mount::new(&srv, &["connections=2"]);
    let mut c = Checks::default();
    let disk = srv.disk("");
    let script = format!(
        "t=$(mktemp -d)\nexec 5<r0 || exit 10\nhead -c 65536 <&5 > /dev/null\n\
         for i in $(seq 1 15); do cmp r$i \"{0}/r$i\" > $t/out.$i 2>&1 & done\nwait\n\
         cat <&5 | cmp - '{0}/r0' -i 0:65536 || exit 11\n\
         for i in $(seq 1 15); do [ -s $t/out.$i ] && {{ cat $t/out.$i; exit 12; }}; done\nrm -rf $t",
        disk.display()
    );
    c.run_ok(&sh(&m, &script));
    c.done();
}

/// Reading one file while writing another needs two transfers; with one connection, they share it.
fn copy_inside_with_one_connection(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(kind);
    let a = DataGen::bytes(61, 3 * MIB);
    srv.put_file("a", &a);
    let m = Mount::new(&srv, &["connections=1"]);
    let mut c = Checks::default();
    c.run_ok(&sh(&m, "cp a b"));
    c.disk(&srv, "b", &a);
    // Another descriptor keeps a open, part read, while it is copied again.
    c.run_ok(&sh(&m, "exec 5<a || exit 10\nhead -c 4096 <&5 > /dev/null\ncat a > c || exit 11\nexec 5<&-"));
    c.disk(&srv, "c", &a);
    c.done();
}

/// Files and directories get the mode they were created with (after the umask) on the server.
fn modes_at_create(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(kind);
    let m = Mount::new(&srv, &[]);
    let mut c = Checks::default();
    c.run_ok(&sh(&m, "set -e; (umask 077; echo k > key; mkdir d)"));
    c.run_ok(&sh(&m, "set -e; (umask 022; echo s > script; chmod 755 script)"));
    c.run_ok(&sh(&m, "set -e; (umask 022; echo p > plain)"));
    // Looser than the default: set after the first upload (cp keeps an executable's bits).
    c.run_ok(&sh(&m, "set -e; (umask 002; echo g > group; cp /bin/true tool)"));
    c.disk(&srv, "key", b"k\n");
    c.disk_mode(&srv, "key", 0o600);
    c.disk_mode(&srv, "d", 0o700);
    c.disk_mode(&srv, "script", 0o755);
    c.disk_mode(&srv, "plain", 0o644);
    c.disk_mode(&srv, "group", 0o664);
    c.disk_mode(&srv, "tool", 0o755);
    c.done();
}

/// Copies SOURCE into DEST through 1 MiB write() calls 20 ms apart, stopping at the first error,
/// then closes DEST; prints how many bytes write() accepted, the write error and close's result.
/// AT is `new` (DEST created or truncated) or an offset to write at in the existing DEST. A
/// separate process, so that nothing else holds (and flushes) the descriptor.
const PACED_WRITER_PY: &str = r#"
import os, sys, time
source, dest, at = sys.argv[1:]
if at == "new":
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
else:
    fd = os.open(dest, os.O_WRONLY)
    os.lseek(fd, int(at), os.SEEK_SET)
accepted, error = 0, "none"
with open(source, "rb") as src:
    while error == "none":
        chunk = memoryview(src.read(1 << 20))
        if not chunk:
            break
        while chunk and error == "none":
            try:
                n = os.write(fd, chunk)
                accepted, chunk = accepted + n, chunk[n:]
            except OSError as e:
                error = e.strerror
        time.sleep(0.02)
try:
    os.close(fd)
    closed = "ok"
except OSError as e:
    closed = e.strerror
print(f"accepted={accepted}\nwrite_error={error}\nclose={closed}")
"#;

/// The value of `key=` in a script's `key=value` lines.
fn field<'a>(run: &'a Run, key: &str) -> Option<&'a str> {
    run.stdout.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

/// Kills `srv` (sessions included) and checks that nothing answers on its port afterwards.
fn kill_server(srv: &mut FtpServer) {
    srv.kill();
    assert!(
        std::net::TcpStream::connect((srv.host.as_str(), srv.port)).is_err(),
        "{:?} still answers after it was killed",
        srv.kind
    );
}

/// The server dies in the middle of a file: the error reaches a write or close, nothing that was
/// reported saved is lost, and the mount works again once the server is back.
fn write_error_is_reported(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    let mut srv = FtpServer::start(kind);
    let m = Mount::new(&srv, &[]);
    let local = tempfile::tempdir().expect("temp dir");
    let data = DataGen::bytes(81, 128 * MIB);
    let src = local_file(local.path(), "src", &data);
    let mut c = Checks::default();
    let mut writer = Script::start(&m, &format!("python3 - '{}' f new <<'EOF'\n{PACED_WRITER_PY}\nEOF", src.display()));
    // Kill the server once the upload is under way (the writer needs > 2.5 s for all of it).
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::metadata(srv.disk("f")).map_or(0, |md| md.len()) < 4 * MIB as u64
        && writer.is_running()
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(writer.is_running(), "the writer ended before the server was killed: {}", writer.finish(&m));
    kill_server(&mut srv);
    let run = writer.finish(&m);
    eprintln!("writer: {run}");
    let accepted: Option<usize> = field(&run, "accepted").and_then(|n| n.parse().ok());
    let (write_error, closed) = (field(&run, "write_error"), field(&run, "close"));
    c.check(accepted.is_some() && closed.is_some(), || format!("the writer did not finish: {run}"));
    c.check(write_error != Some("none") || closed != Some("ok"), || {
        format!("the server was killed mid-file, yet every write and close succeeded: {run}")
    });
    if closed == Some("ok") {
        c.disk(&srv, "f", &data[..accepted.unwrap_or(0).min(data.len())]);
    }

    srv.restart();
    let run = sh(&m, "echo new > g && cat g");
    c.check(run.ok() && run.stdout == "new\n", || format!("after the server came back: {run}"));
    c.disk(&srv, "g", b"new\n");
    c.done();
}

/// A tmpfs mounted for the test, unmounted (lazily) on drop, also when the test panics.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::Builder::new().prefix("ftpfs-cache-").tempdir().expect("temp dir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "mount -t tmpfs failed");
        Tmpfs(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

/// A temp copy that does not fit in `cache_dir` fails with ENOSPC, and the mount and the
/// server's file survive it: unchanged when close failed, or holding exactly the writes that
/// succeeded when close returned 0.
fn enospc_in_cache_dir(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    let cache = Tmpfs::mount("2m");
    let srv = FtpServer::start(kind);
    let orig = DataGen::bytes(91, MIB);
    srv.put_file("f", &orig);
    let m = Mount::new(&srv, &[&format!("cache_dir={}", cache.path().display())]);
    let local = tempfile::tempdir().expect("temp dir");
    let data = DataGen::bytes(92, 4 * MIB);
    let src = local_file(local.path(), "src", &data);
    let mut c = Checks::default();
    // 4 MiB written from the middle: the temp copy needs 4.5 MiB.
    const AT: usize = MIB / 2;
    let run = sh(&m, &format!("python3 - '{}' f {AT} <<'EOF'\n{PACED_WRITER_PY}\nEOF", src.display()));
    eprintln!("writer: {run}");
    let accepted: Option<usize> = field(&run, "accepted").and_then(|n| n.parse().ok());
    let (write_error, closed) = (field(&run, "write_error"), field(&run, "close"));
    c.check(accepted.is_some() && closed.is_some(), || format!("the writer did not finish: {run}"));
    const ENOSPC: &str = "No space left on device";
    c.check(write_error == Some(ENOSPC) || closed == Some(ENOSPC), || {
        format!("a temp copy bigger than cache_dir: expected ENOSPC from a write or close: {run}")
    });
    let ls = sh(&m, "ls -l");
    c.check(ls.ok() && ls.stdout.contains(" f\n"), || format!("the mount after ENOSPC: {ls}"));
    if closed == Some("ok") {
        let written = &data[..accepted.unwrap_or(0).min(data.len())];
        let mut want = orig.clone();
        want.resize(want.len().max(AT + written.len()), 0);
        want[AT..AT + written.len()].copy_from_slice(written);
        c.disk(&srv, "f", &want);
    } else {
        c.disk(&srv, "f", &orig);
    }
    c.done();
}

/// Writes `data` to PATH, waits until the file NEXT exists, writes `more`, and closes, in one
/// process that starts no other (a child inheriting the descriptor would flush it).
const HOLD_WRITER_PY: &str = r#"
import os, sys, time
path, nxt = sys.argv[1:]
f = open(path, "wb", buffering=0)
f.write(b"first part\n")
open(nxt + ".ready", "w").close()
for _ in range(4500):
    if os.path.exists(nxt):
        break
    time.sleep(0.01)
try:
    f.write(b"second part\n")
    f.close()
    print("close: ok")
except OSError as e:
    print("close:", e.strerror)
"#;

/// A file deleted while another process streams into it: a new file of the same name is
/// written at once and whole, and the old writer's later data never lands over it.
fn unlink_during_stream_then_recreate(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(kind);
    let m = Mount::new(&srv, &[]);
    let mut c = Checks::default();
    let holder = Script::start(&m, &format!("python3 - log go <<'EOF'\n{HOLD_WRITER_PY}\nEOF"));
    let ready = Instant::now();
    while !m.p("go.ready").exists() && ready.elapsed() < LIMIT {
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    c.run_ok(&sh(&m, "rm log && echo new > log && touch go"));
    let took = started.elapsed();
    // At once (well under a second); waiting for the old writer would take its 45 s.
    c.check(took < Duration::from_secs(20), || format!("rm + a new file of the same name took {took:?}"));
    let run = holder.finish(&m);
    c.run_ok(&run);
    c.disk(&srv, "log", b"new\n");
    c.done();
}

/// Our listing says a file is empty, but another client has filled it since: writing at its
/// start through the mount must not replace (STOR) what the other client put there: the byte
/// lands at 0 of the real content (through a temp copy), or is appended and the close fails on
/// the size check; the other client's data survives either way.
fn stale_size_never_destroys(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(kind);
    srv.put_file("shared", b"");
    let m = Mount::new(&srv, &["cache_timeout=600"]);
    let mut c = Checks::default();
    c.run_ok(&sh(&m, "ls -l shared"));
    let theirs = DataGen::bytes(71, MIB);
    std::fs::write(srv.disk("shared"), &theirs).expect("write behind the mount");
    let run = sh(&m, "printf X | dd of=shared conv=notrunc status=none");
    let on_disk = std::fs::read(srv.disk("shared")).unwrap_or_default();
    // Either the write landed where it was meant to (a temp copy of the real content, when the
    // server refuses APPE) and dd succeeded, or it was appended and the size check failed dd.
    let mut placed = theirs.clone();
    placed[0] = b'X';
    let appended = [&theirs[..], b"X"].concat();
    c.check((run.ok() && on_disk == placed) || (!run.ok() && on_disk == appended), || {
        let kept = on_disk.len() >= theirs.len() && on_disk[1..theirs.len()] == theirs[1..];
        format!("after a write at 0 over a stale size 0: {} bytes on the server, other client's data kept: {kept}; dd: {run}", on_disk.len())
    });
    c.done();
}

/// With allow_other the kernel checks each local user against the mode bits shown (the mount
/// runs as root here, so files show as root's): another user can read a 644 file but not
/// change it, nor create files in a 755 directory. `no_default_permissions` turns that off.
fn allow_other_checks_permissions(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(kind);
    srv.put_file("f", b"root's\n");
    let mut c = Checks::default();
    let as_nobody = |m: &Mount, what: &str| {
        let script =
            format!("runuser -u nobody -- bash -c {}", shell_quote(&format!("cd '{}' && {what}", m.path().display())));
        sh(m, &script)
    };
    let m = Mount::new(&srv, &["allow_other"]);
    let line = m.mount_line().unwrap_or_default();
    c.check(line.contains("default_permissions"), || format!("allow_other without default_permissions: {line}"));
    let read = as_nobody(&m, "cat f");
    c.check(read.ok() && read.stdout == "root's\n", || format!("another user reading a 644 file: {read}"));
    let write = as_nobody(&m, "echo theirs >> f");
    c.check(!write.ok() && write.stderr.contains("Permission denied"), || {
        format!("another user writing a 644 file: {write}")
    });
    let create = as_nobody(&m, "echo x > new");
    c.check(!create.ok() && create.stderr.contains("Permission denied"), || {
        format!("another user creating a file: {create}")
    });
    c.disk(&srv, "f", b"root's\n");
    c.disk_absent(&srv, "new");
    drop(m);
    let m = Mount::new(&srv, &["allow_other", "no_default_permissions"]);
    let line = m.mount_line().unwrap_or_default();
    c.check(!line.contains("default_permissions"), || format!("no_default_permissions ignored: {line}"));
    c.done();
}

/// Two handles write one file at once (the second truncating it), closing in ORDER: each
/// handle's close uploads its own whole version, so the file is the last closer's.
const TWO_WRITERS_PY: &str = r#"
import sys
path, order = sys.argv[1:]
w1 = open(path, "wb", buffering=0)
w1.write(b"one-a\n")
w2 = open(path, "wb", buffering=0)
w2.write(b"two\n")
w1.write(b"one-b\n")
first, last = (w2, w1) if order == "first-last" else (w1, w2)
first.close()
last.close()
"#;

/// With several writers on one file, the last close wins, whole: never a mix of both, never
/// one writer's stream interleaved with another's.
fn last_close_wins_whole(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(kind);
    let m = Mount::new(&srv, &[]);
    let mut c = Checks::default();
    for (name, order, want) in [("p", "first-last", &b"one-a\none-b\n"[..]), ("q", "second-last", b"two\n")] {
        c.run_ok(&sh(&m, &format!("python3 - {name} {order} <<'EOF'\n{TWO_WRITERS_PY}\nEOF")));
        c.disk(&srv, name, want);
    }
    c.done();
}

/// Two handles append to one file at once, interleaved, closing in either order.
const TWO_APPENDERS_PY: &str = r#"
import sys
path, order = sys.argv[1:]
a = open(path, "ab", buffering=0)
a.write(b"a1\n")
b = open(path, "ab", buffering=0)
b.write(b"b1\n")
a.write(b"a2\n")
b.write(b"b2\n")
first, last = (a, b) if order == "a-first" else (b, a)
first.close()
last.close()
"#;

/// Several processes appending to one file (two `>>` loggers): every appended line lands once,
/// after the old content, and each appender's lines stay in order.
fn appenders_all_land(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(kind);
    for name in ["l1", "l2"] {
        srv.put_file(name, b"old\n");
    }
    let m = Mount::new(&srv, &[]);
    let mut c = Checks::default();
    for (name, order) in [("l1", "a-first"), ("l2", "b-first")] {
        c.run_ok(&sh(&m, &format!("python3 - {name} {order} <<'EOF'\n{TWO_APPENDERS_PY}\nEOF")));
        let got = String::from_utf8_lossy(&std::fs::read(srv.disk(name)).unwrap_or_default()).into_owned();
        let lines: Vec<&str> = got.lines().collect();
        let mut sorted = lines.clone();
        sorted.sort_unstable();
        let in_order = |x: &str, y: &str| lines.iter().position(|l| *l == x) < lines.iter().position(|l| *l == y);
        c.check(
            lines.first() == Some(&"old")
                && sorted == ["a1", "a2", "b1", "b2", "old"]
                && in_order("a1", "a2")
                && in_order("b1", "b2"),
            || format!("{name} ({order}) on the server: {got:?}"),
        );
    }
    c.done();
}

/// `text` quoted for bash.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

on_every_server!(
    reader_close_never_uploads,
    reader_during_writer,
    failed_rename_keeps_target,
    handles_follow_rename,
    more_writers_than_connections,
    more_readers_than_connections,
    copy_inside_with_one_connection,
    modes_at_create,
    write_error_is_reported,
    enospc_in_cache_dir,
    unlink_during_stream_then_recreate,
    stale_size_never_destroys,
    allow_other_checks_permissions,
    last_close_wins_whole,
    appenders_all_land,
);

//! Mounting the real `ftpfs` binary through the kernel for tests, with a guard that always
//! unmounts (`fusermount3 -u -z`), even when the test panics.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{FtpServer, PASSWORD, USER};

/// Fails (under CI=true) or reports a skip when FUSE is not usable here.
pub fn fuse_available() -> bool {
    let ok = Path::new("/dev/fuse").exists()
        && Command::new("fusermount3").arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if !ok {
        super::skip("FUSE is not available on this machine (/dev/fuse and fusermount3, package fuse3)");
    }
    ok
}

/// The pid of the ftpfs process serving the mount at `path`.
pub fn daemon_pid_of(path: &Path) -> Option<i32> {
    let me = path.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let mut args = cmdline.split(|&b| b == 0);
        let is_ftpfs = args.next().is_some_and(|a0| a0.ends_with(b"ftpfs"));
        (is_ftpfs && args.any(|a| a == me)).then_some(pid)
    })
}

/// `options`, with work ahead pinned off unless they choose: left to itself, a mount of a server
/// on loopback turns it on when its first EPSV and data connection took 3 ms or more, so the
/// machine's load would choose the code under test. Tests of work ahead set `ahead_mib`.
pub fn pin_work_ahead<'a>(options: &[&'a str]) -> Vec<&'a str> {
    let mut pinned = options.to_vec();
    if !options.iter().any(|o| o.split(',').any(|o| o.starts_with("ahead_mib="))) {
        pinned.push("ahead_mib=0");
    }
    pinned
}

/// Whether process `pid` has ended (gone, or a zombie nobody reaped yet).
pub fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses, which may itself hold spaces.
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}

/// Waits until process `pid` has ended, at most `bound`; whether it did.
pub fn wait_process_gone(pid: i32, bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    while !process_gone(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    process_gone(pid)
}

/// A mounted ftpfs; unmounted on drop.
pub struct Mount {
    dir: tempfile::TempDir,
    pub stderr: String,
}

/// Runs the ftpfs binary with `args`, password in the environment.
pub fn ftpfs_command(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ftpfs"));
    c.args(args).env("FTPFS_PASSWORD", PASSWORD).stdin(Stdio::null());
    if let Ok(v) = std::env::var("FTPFS_TEST_LOG") {
        c.env("FTPFS_LOG_FILE", v).env("RUST_LOG", "ftpfs=debug");
    }
    c
}

impl Mount {
    /// Mounts `srv`'s root with extra `-o` options (background mode, as users run it).
    pub fn new(srv: &FtpServer, options: &[&str]) -> Mount {
        Mount::try_new(srv, options, None).unwrap_or_else(|e| panic!("mount failed: {e}\nserver log:\n{}", srv.log()))
    }

    /// Mounts with a custom URL (or the server's, without password, when `None`).
    pub fn try_new(srv: &FtpServer, options: &[&str], url: Option<&str>) -> Result<Mount, String> {
        let default_url = server_url(srv, "");
        Mount::of_url(url.unwrap_or(&default_url), options, PASSWORD)
    }

    /// Mounts `url` with `password` (a scripted server's, for instance).
    pub fn of_url(url: &str, options: &[&str], password: &str) -> Result<Mount, String> {
        let dir = tempfile::Builder::new().prefix("ftpfs-mnt-").tempdir().map_err(|e| e.to_string())?;
        let mut args = vec![url, dir.path().to_str().unwrap_or("")];
        let opts = pin_work_ahead(options).join(",");
        if !opts.is_empty() {
            args.push("-o");
            args.push(&opts);
        }
        let out = ftpfs_command(&args).env("FTPFS_PASSWORD", password).output().map_err(|e| e.to_string())?;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let m = Mount { dir, stderr: stderr.clone() };
        if !out.status.success() {
            return Err(format!("exit {:?}: {stderr}", out.status.code()));
        }
        if !m.is_mounted() {
            return Err(format!("ftpfs exited 0 but nothing is mounted: {stderr}"));
        }
        Ok(m)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the mount.
    pub fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn is_mounted(&self) -> bool {
        mount_line(self.path()).is_some()
    }

    /// The /proc/mounts line of this mount.
    pub fn mount_line(&self) -> Option<String> {
        mount_line(self.path())
    }

    /// Runs a shell command with the mount as working directory.
    pub fn sh(&self, script: &str) -> Output {
        Command::new("bash")
            .arg("-c")
            .arg(script)
            .current_dir(self.path())
            .stdin(Stdio::null())
            .output()
            .expect("run bash")
    }

    /// Runs a shell command that must succeed; returns its stdout.
    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "`{script}` failed ({:?}):\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Unmounts with `fusermount3 -u` and waits for the mount to disappear.
    pub fn unmount(&self) -> bool {
        let ok = Command::new("fusermount3").arg("-u").arg(self.path()).status().map(|s| s.success()).unwrap_or(false);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.is_mounted() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        ok && !self.is_mounted()
    }

    /// The pid of the ftpfs process serving this mount: the one whose arguments include this
    /// (unique, temporary) mountpoint.
    pub fn daemon_pid(&self) -> Option<i32> {
        daemon_pid_of(self.path())
    }

    /// Ends a hung mount: kills its ftpfs process, so that every call still waiting on it fails
    /// (ENOTCONN) instead of hanging, then unmounts lazily. For tests that detect a hang.
    pub fn abort(&self) {
        if let Some(pid) = self.daemon_pid() {
            // SAFETY: kill(2) has no memory-safety preconditions; pid is the ftpfs of this mount.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            // Gone for real before anything goes on: until then it still holds its locks (a
            // write-back journal's), which a next mount would take for a live mount's.
            assert!(wait_process_gone(pid, Duration::from_secs(30)), "ftpfs {pid} survived SIGKILL for 30 s");
        }
        if self.is_mounted() {
            let _ = Command::new("fusermount3").arg("-u").arg("-z").arg(self.path()).status();
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.is_mounted() {
            let _ = Command::new("fusermount3").arg("-u").arg("-z").arg(self.path()).status();
        }
    }
}

fn mount_line(p: &Path) -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    let target = p.to_str()?;
    mounts.lines().find(|l| l.split(' ').nth(1) == Some(target)).map(str::to_string)
}

/// `ftp://user@host:port/dir` without password.
pub fn server_url(srv: &FtpServer, dir: &str) -> String {
    let host = if srv.host.contains(':') { format!("[{}]", srv.host) } else { srv.host.clone() };
    format!("ftp://{USER}@{host}:{}/{}", srv.port, dir.trim_start_matches('/'))
}

/// Unmounts a directory (lazily) when dropped, for mounts made by hand in a test.
pub struct MountGuard {
    path: PathBuf,
}

impl MountGuard {
    pub fn new(path: &Path) -> MountGuard {
        MountGuard { path: path.to_path_buf() }
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if mount_line(&self.path).is_some() {
            let _ = Command::new("fusermount3").arg("-u").arg("-z").arg(&self.path).status();
        }
    }
}

//! What surrounds the mount: the man page and shell completions (generated, then read by
//! groff, bash, zsh and fish), `ftpfs stats` on a busy mount, and where a background mount logs
//! (syslog unless FTPFS_LOG_FILE).

mod support;

use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ftpfs::control_channel::{Handler, Request};
use support::mount::{Mount, ftpfs_command, fuse_available};
use support::{FtpServer, PASSWORD, ServerKind};

fn generated(what: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let out = ftpfs_command(&["--generate", what]).output().unwrap();
    assert!(out.status.success(), "--generate {what}: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!out.stdout.is_empty());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("ftpfs.{what}"));
    std::fs::write(&path, &out.stdout).unwrap();
    (dir, path)
}

/// Runs a tool the suite's setup installs; fails (never skips) when it is missing.
fn run(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (scripts/setup.sh installs it)"))
}

#[test]
fn man_page_renders_without_warnings() {
    let (_dir, page) = generated("man");
    let out = run("groff", &["-man", "-Tutf8", "-P-cbou", "-ww", page.to_str().unwrap()]);
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && warnings.trim().is_empty(), "groff: {warnings}");
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in
        ["NAME", "SYNOPSIS", "MOUNT OPTIONS", "fingerprint=SHA256:HEX", "proxy=URL", "ftpfs stats", "ENVIRONMENT"]
    {
        // groff may hyphenate or embolden: compare without its formatting.
        let plain: String = text.chars().filter(|c| !c.is_control()).collect();
        assert!(plain.contains(needle) || plain.replace('‐', "").contains(needle), "{needle} missing from the page");
    }
}

#[test]
fn bash_completion_completes_options_and_the_stats_command() {
    let (_dir, script) = generated("bash");
    let check = run("bash", &["-n", script.to_str().unwrap()]);
    assert!(check.status.success(), "bash -n: {}", String::from_utf8_lossy(&check.stderr));
    let complete = |words: &str, cword: usize| {
        let code = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE='{words}'; COMP_POINT=${{#COMP_LINE}}; \
             _ftpfs ftpfs \"${{COMP_WORDS[$COMP_CWORD]}}\" \"${{COMP_WORDS[$COMP_CWORD-1]}}\"; echo \"${{COMPREPLY[@]}}\"",
            script.display()
        );
        String::from_utf8_lossy(&run("bash", &["-c", &code]).stdout).into_owned()
    };
    assert!(complete("ftpfs --gen", 1).contains("--generate"));
    let kinds = complete("ftpfs --generate ''", 2);
    assert!(["man", "bash", "zsh", "fish"].iter().all(|k| kinds.contains(k)), "{kinds}");
    assert!(complete("ftpfs st", 1).contains("stats"), "{}", complete("ftpfs st", 1));
}

#[test]
fn zsh_and_fish_completions_load() {
    let (_dir, zsh) = generated("zsh");
    let check = run("zsh", &["-n", zsh.to_str().unwrap()]);
    assert!(check.status.success(), "zsh -n: {}", String::from_utf8_lossy(&check.stderr));
    let (_dir2, fish) = generated("fish");
    let check = run("fish", &["--no-execute", fish.to_str().unwrap()]);
    assert!(check.status.success(), "fish -n: {}", String::from_utf8_lossy(&check.stderr));
    let code = format!("source {}; complete -C 'ftpfs --gen'", fish.display());
    let out = run("fish", &["--no-config", "-c", &code]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("--generate"), "{}", String::from_utf8_lossy(&out.stdout));
}

fn stats(path: &std::path::Path) -> (bool, String) {
    let out = ftpfs_command(&["stats", path.to_str().unwrap()]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn stats_show_connections_transfers_caches_and_errors() {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(ServerKind::Vsftpd);
    let big: Vec<u8> = (0..64u32 << 20).map(|i| (i % 251) as u8).collect();
    srv.put_file("big.bin", &big);
    srv.put_file("full/inside.txt", b"x");
    srv.put_file("gone.txt", b"soon gone");
    let m = Mount::new(&srv, &[]);
    m.sh_ok("ls -l && ls -l full && ls -l");
    // Deleted behind the mount's back: the download is refused (550), a not-found error.
    m.sh_ok("ls -l gone.txt");
    let not_found_before = error_count(&stats(m.path()).1, "not-found");
    std::fs::remove_file(srv.disk("gone.txt")).unwrap();
    assert!(!m.sh("cat gone.txt").status.success(), "reading a file deleted on the server");
    // A reader that stops after its first MiB keeps its download in flight.
    let mut reader = std::fs::File::open(m.p("big.bin")).unwrap();
    let mut first = vec![0u8; 1 << 20];
    reader.read_exact(&mut first).unwrap();
    let (ok, text) = stats(m.path());
    assert!(ok, "{text}");
    assert!(text.starts_with(&format!("ftp://{}@", support::USER)) && text.contains(" on "), "{text}");
    assert!(text.contains("connections   ") && text.contains("(1 transfers)"), "{text}");
    assert!(text.contains("transfers     1 in flight") && text.contains("download /big.bin"), "{text}");
    let hits: u64 = text
        .split("cache hits ")
        .nth(1)
        .and_then(|t| t.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(hits >= 1, "the second ls -l is served from the cache: {text}");
    assert!(error_count(&text, "not-found") > not_found_before, "the refused download is counted: {text}");
    for gauge in ["read-ahead", "write-back", "moved"] {
        assert!(text.contains(gauge), "{gauge}: {text}");
    }
    drop(reader);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !stats(m.path()).1.contains("transfers     0 in flight") {
        assert!(Instant::now() < deadline, "the download stays in flight after close: {}", stats(m.path()).1);
        std::thread::sleep(Duration::from_millis(100));
    }
    // Through the socket itself: our user (root) gets the report, another user a refusal.
    let entry = ftpfs::mount_table::mount_entry(m.path()).expect("the mount in mountinfo");
    assert_eq!((entry.kind.as_str(), entry.user_id), ("fuse.ftpfs", Some(0)), "{entry:?}");
    let device = entry.device;
    let ask = |uid: u32| {
        let code = format!(
            "import socket; s = socket.socket(socket.AF_UNIX); s.connect('\\0ftpfs-stats-{device}'); \
             print(s.recv(65536).decode())"
        );
        let out = std::process::Command::new("python3").args(["-c", &code]).uid(uid).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    assert!(ask(0).contains("transfers"), "{}", ask(0));
    let other = support::uid_of(support::USER);
    assert!(ask(other).contains("not allowed"), "{}", ask(other));
    // Not a mount, or not ours: a clear error.
    let (ok, text) = stats(&m.p("full"));
    assert!(!ok && text.contains("not a mount point"), "{text}");
    let (ok, text) = stats(std::path::Path::new("/proc"));
    assert!(!ok && text.contains("not an ftpfs one"), "{text}");
}

fn refresh(args: &[&str]) -> (bool, String) {
    let mut all = vec!["refresh"];
    all.extend_from_slice(args);
    let out = ftpfs_command(&all).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// `ftpfs refresh` makes the next access see the server as it is now, where the listings are
/// cached for an hour: a directory, a subtree with -r, a path given relative to the current
/// directory; what is not a path inside an ftpfs mount is an error.
#[test]
fn refresh_shows_the_server_as_it_is_now() {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(ServerKind::Vsftpd);
    srv.put_file("d/a", b"old");
    srv.put_file("d/sub/deep", b"1");
    let m = Mount::new(&srv, &["cache_timeout=3600"]);
    let mnt = m.path().to_str().unwrap().to_string();
    assert_eq!(m.sh_ok("ls d"), "a\nsub\n");
    assert_eq!(m.sh_ok("cat d/a"), "old");
    assert_eq!(m.sh_ok("ls d/sub"), "deep\n");
    // Another client changes the directory and a file's content (its size too).
    srv.put_file("d/b", b"new file");
    srv.put_file("d/a", b"newer content");
    srv.put_file("d/sub/deeper", b"2");
    assert_eq!(m.sh_ok("ls d"), "a\nsub\n", "cached: the change is not seen yet");
    assert_eq!(m.sh_ok("stat -c %s d/a"), "3\n", "cached");
    let (ok, text) = refresh(&[&mnt, &format!("{mnt}/d")]);
    assert!(ok, "{text}");
    // Before any listing: the kernel itself must have let go of the size it held.
    assert_eq!(m.sh_ok("stat -c %s d/a"), "13\n");
    assert_eq!(m.sh_ok("cat d/a"), "newer content");
    assert_eq!(m.sh_ok("ls d"), "a\nb\nsub\n");
    assert_eq!(m.sh_ok("ls d/sub"), "deep\n", "not below d without -r");
    // Relative to the current directory, the whole subtree.
    let out = ftpfs_command(&["refresh", "-r", &mnt, "d"]).current_dir(m.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(m.sh_ok("ls d/sub"), "deep\ndeeper\n");
    // The whole mount.
    srv.put_file("top", b"t");
    let (ok, text) = refresh(&[&mnt]);
    assert!(ok, "{text}");
    assert_eq!(m.sh_ok("ls"), "d\ntop\n");
    let (ok, text) = refresh(&[&mnt, "/etc"]);
    assert!(!ok && text.contains("not inside"), "{text}");
    let (ok, text) = refresh(&["/proc"]);
    assert!(!ok && text.contains("not an ftpfs one"), "{text}");
}

/// Another local user who takes a mount's statistics socket name first neither silences the
/// mount (it takes the next name) nor feeds `ftpfs stats` a report (its socket is skipped).
#[test]
fn a_squatted_stats_name_is_skipped() {
    // The squatter runs as the servers' test user, made here when no server made it yet.
    support::ensure_test_user();
    let device = format!("test-{}:1", std::process::id());
    let code = format!(
        "import socket, time; s = socket.socket(socket.AF_UNIX); s.bind('\\0ftpfs-stats-{device}'); s.listen(); \
         print('bound', flush=True); c, _ = s.accept(); c.sendall(b'forged report'); time.sleep(30)"
    );
    let mut squatter = Command::new("python3")
        .args(["-c", &code])
        .uid(support::uid_of(support::USER))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(squatter.stdout.take().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "bound");
    let real: std::sync::Arc<dyn Handler> = std::sync::Arc::new(RealMount);
    ftpfs::control_channel::serve(&device, real, false).expect("serve on the next name");
    let report = ftpfs::control_channel::ask_device(&device, Some(0), "test", &Request::Stats);
    let _ = squatter.kill();
    let _ = squatter.wait();
    let report = report.unwrap();
    assert!(report.starts_with("the real mount"), "{report}");
    // The squatter gone, its name answers nobody: the mount's later name is still found.
    let report = ftpfs::control_channel::ask_device(&device, Some(0), "test", &Request::Stats).unwrap();
    assert!(report.starts_with("the real mount"), "{report}");
    let refresh = Request::Refresh { path: "a b/c".into(), recursive: true };
    let answer = ftpfs::control_channel::ask_device(&device, Some(0), "test", &refresh).unwrap();
    assert_eq!(answer, "refreshed \"a b/c\" true\n");
}

/// A stand-in for a mount's answers.
struct RealMount;

impl Handler for RealMount {
    fn stats(&self) -> String {
        "the real mount\n".into()
    }

    fn refresh(&self, path: &str, recursive: bool) -> Result<String, String> {
        Ok(format!("refreshed {path:?} {recursive}\n"))
    }

    fn cache_clear(&self) -> Result<String, String> {
        Err("no disk cache".into())
    }
}

/// How many errors of `kind` a report counts.
fn error_count(report: &str, kind: &str) -> u64 {
    let errors = report.lines().find(|l| l.starts_with("errors")).unwrap_or("");
    errors
        .split(", ")
        .find_map(|e| e.trim_start_matches("errors").trim().strip_prefix(kind))
        .map_or(0, |n| n.trim().parse().unwrap_or(0))
}

/// Everything sent to `sock` until a line satisfies `want`, or at most 30 s: the background
/// process sends from its own thread, whenever the machine lets it.
fn received_until(sock: &UnixDatagram, want: impl Fn(&str) -> bool) -> Vec<String> {
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got: Vec<String> = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    while !got.iter().any(|l| want(l)) && Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    got
}

/// Everything sent to `sock` until it has been quiet for a while.
fn received(sock: &UnixDatagram) -> Vec<String> {
    sock.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    while let Ok(n) = sock.recv(&mut buf) {
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    got
}

#[test]
fn a_background_mount_logs_to_syslog_unless_given_a_file() {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(ServerKind::Pyftpdlib);
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("log.sock");
    let sock = UnixDatagram::bind(&socket).unwrap();
    let mnt = tempfile::tempdir().unwrap();
    let guard = support::mount::MountGuard::new(mnt.path());
    let url = format!("ftp://{}:{PASSWORD}@127.0.0.1:{}/", support::USER, srv.port);
    let out = ftpfs_command(&["-vv", &url, mnt.path().to_str().unwrap()])
        .env_remove("FTPFS_LOG_FILE")
        .env("FTPFS_SYSLOG_SOCKET", &socket)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::metadata(mnt.path().join("missing"));
    let pid = support::mount::daemon_pid_of(mnt.path()).expect("the mount's process");
    let mounted = format!("ftpfs[{pid}]: ftpfs::mount: mounted");
    let mut lines = received_until(&sock, |l| l.contains(&mounted));
    // And whatever followed it, for the password check below.
    lines.extend(received(&sock));
    assert!(lines.iter().any(|l| l.contains(&mounted)), "syslog lines of the background process: {lines:?}");
    assert!(lines.iter().all(|l| l.starts_with('<') && !l.contains(PASSWORD)), "{lines:?}");
    // syslog restarts (its socket made anew): the mount's messages reach the new one.
    drop(sock);
    std::fs::remove_file(&socket).unwrap();
    let sock = UnixDatagram::bind(&socket).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    let mut again = Vec::new();
    while again.is_empty() {
        assert!(Instant::now() < deadline, "nothing reached the restarted syslog");
        // Each look into a new directory is logged at -vv (a listing); the first is lost.
        srv.put_file(&format!("d{n}/f"), b"x");
        let _ = std::fs::metadata(mnt.path().join(format!("d{n}/f")));
        n += 1;
        again = received(&sock);
    }
    assert!(again.iter().any(|l| l.contains(&format!("ftpfs[{pid}]"))), "{again:?}");
    drop(guard);
    // The first mount's last words (its unmount) are not the second one's.
    assert!(support::mount::wait_process_gone(pid, Duration::from_secs(30)), "the first mount's process stays");
    // Its last words reached syslog before it exited (and what it logged while ending, all
    // there by now: the process is gone).
    let mut last = received_until(&sock, |l| l.contains("is unmounted: ending here"));
    assert!(last.iter().any(|l| l.contains("is unmounted: ending here")), "{last:?}");
    last.extend(received(&sock));
    assert!(last.iter().all(|l| l.contains(&format!("ftpfs[{pid}]"))), "{last:?}");

    // With FTPFS_LOG_FILE, the file gets the log and syslog nothing.
    let log = dir.path().join("ftpfs.log");
    let guard = support::mount::MountGuard::new(mnt.path());
    let out = ftpfs_command(&["-v", &url, mnt.path().to_str().unwrap()])
        .env("FTPFS_LOG_FILE", &log)
        .env("FTPFS_SYSLOG_SOCKET", &socket)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::metadata(mnt.path().join("missing"));
    let stray = received(&sock);
    assert!(stray.is_empty(), "syslog got lines although FTPFS_LOG_FILE was set: {stray:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("mounted") && !text.contains(PASSWORD), "{text}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&log).unwrap().permissions()) & 0o777;
    assert_eq!(mode, 0o600, "the log file it created is private");
    drop(guard);
}

//! Suites written by others, on the mount: pjdfstest (POSIX semantics; what FTP cannot do is
//! listed in `tests/conformance/pjdfstest-<server>.toml`, each with its reason) on vsftpd and
//! pyftpdlib, and fsx (random reads, writes, mmap, truncation, checked byte by byte) on all four
//! servers. `scripts/conformance.sh` installs both tools at pinned versions and runs these with
//! their paths in `PJDFSTEST` and `FSX`; a plain `cargo test` leaves them out (ignored).

#[macro_use]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use support::mount::{Mount, fuse_available};
use support::{FtpServer, ServerKind};

fn tool(var: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| panic!("{var} is not set: run scripts/conformance.sh"))
}

fn name(kind: ServerKind) -> &'static str {
    match kind {
        ServerKind::Vsftpd => "vsftpd",
        ServerKind::Pyftpdlib => "pyftpdlib",
        ServerKind::PureFtpd => "pureftpd",
        ServerKind::Proftpd => "proftpd",
    }
}

fn repo_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Keeps a tool's output under target/conformance for a look after the run.
fn keep_log(file: &str, text: &str) {
    let dir = repo_file("target/conformance");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(file), text);
}

/// Cases that need hard links, device nodes, fifos, sockets, chown or fallocate: no FTP server
/// can do these, so they are left out of the count of applicable cases (they are still run, and
/// listed as expected failures).
fn applicable(case: &str) -> bool {
    let never = ["fifo", "block", "char", "socket", "mknod", "chown", "posix_fallocate"];
    !case.starts_with("link::") && !never.iter().any(|w| case.contains(w))
}

fn pjdfstest(kind: ServerKind) {
    assert!(fuse_available(), "pjdfstest needs FUSE");
    let srv = FtpServer::start(kind);
    let m = Mount::new(&srv, &["allow_other"]);
    let dir = m.p("pjdfstest");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let config = repo_file(&format!("tests/conformance/pjdfstest-{}.toml", name(kind)));
    let out = Command::new(tool("PJDFSTEST")).arg("-c").arg(&config).arg("-p").arg(&dir).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    keep_log(&format!("pjdfstest-{}.log", name(kind)), &text);
    // Each case ends its line with "ok", "FAILED" (not expected), "failed as expected" or
    // "PASSED UNEXPECTEDLY" (listed as expected to fail: the list must be corrected).
    let (mut ran, mut passed) = (0, 0);
    let mut surprises = Vec::new();
    for line in text.lines() {
        let Some(case) = line.split_whitespace().next().filter(|c| c.contains("::")) else { continue };
        let line = line.trim_end();
        let unexpected_pass = line.ends_with("PASSED UNEXPECTEDLY");
        let ok = line.ends_with(" ok") || unexpected_pass;
        let expected = line.ends_with("failed as expected");
        let failed = line.ends_with("FAILED") || unexpected_pass;
        if !(ok || expected || failed) {
            continue;
        }
        if applicable(case) {
            ran += 1;
            passed += usize::from(ok);
        }
        if failed {
            surprises.push(case.to_string());
        }
    }
    let summary = text.lines().find(|l| l.starts_with("Summary:")).unwrap_or("no summary");
    println!("pjdfstest on {}: {passed} of {ran} applicable cases pass; {summary}", name(kind));
    assert!(ran > 100, "too few cases ran:\n{text}");
    assert!(out.status.success(), "pjdfstest on {}: unexpected results {surprises:?}\n{summary}", name(kind));
}

fn fsx(kind: ServerKind) {
    assert!(fuse_available(), "fsx needs FUSE");
    let srv = FtpServer::start(kind);
    let m = Mount::new(&srv, &[]);
    let ops = std::env::var("FSX_OPS").unwrap_or_else(|_| "10000".into());
    let artifacts = tempfile::tempdir().unwrap();
    let out = Command::new(tool("FSX"))
        .args(["-N", &ops, "-S", "1234", "-f"])
        .arg(repo_file("tests/conformance/fsx.toml"))
        .arg("-P")
        .arg(artifacts.path())
        .arg(m.p("fsx.data"))
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    keep_log(&format!("fsx-{}.log", name(kind)), &text);
    println!("fsx on {}: {ops} operations: {}", name(kind), text.lines().last().unwrap_or(""));
    assert!(out.status.success() && text.contains("All operations completed A-OK"), "fsx on {}:\n{text}", name(kind));
    // What fsx last saw through the mount is what the server holds.
    assert_eq!(std::fs::read(m.p("fsx.data")).unwrap(), std::fs::read(srv.disk("fsx.data")).unwrap());
}

#[test]
#[ignore = "run by scripts/conformance.sh"]
fn pjdfstest_vsftpd() {
    pjdfstest(ServerKind::Vsftpd);
}

#[test]
#[ignore = "run by scripts/conformance.sh"]
fn pjdfstest_pyftpdlib() {
    pjdfstest(ServerKind::Pyftpdlib);
}

#[test]
#[ignore = "run by scripts/conformance.sh"]
fn fsx_vsftpd() {
    fsx(ServerKind::Vsftpd);
}

#[test]
#[ignore = "run by scripts/conformance.sh"]
fn fsx_pyftpdlib() {
    fsx(ServerKind::Pyftpdlib);
}

#[test]
#[ignore = "run by scripts/conformance.sh"]
fn fsx_pureftpd() {
    fsx(ServerKind::PureFtpd);
}

#[test]
#[ignore = "run by scripts/conformance.sh"]
fn fsx_proftpd() {
    fsx(ServerKind::Proftpd);
}

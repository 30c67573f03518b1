//! Symbolic links through the kernel: `ln -s` on proftpd (mod_site_misc's `SITE SYMLINK`, which
//! stores every target absolute inside its root) reads back as made and leads to the file;
//! EPERM on a server without it (vsftpd); absolute targets inside the mounted directory shown
//! relative (the default) or as the server has them (`no_transform_symlinks`), on links made on
//! the server's disk.

mod support;

use std::path::Path;

use support::mount::{Mount, fuse_available};
use support::{FtpServer, ServerKind};

fn link_of(p: &Path) -> String {
    std::fs::read_link(p).unwrap().to_string_lossy().into_owned()
}

#[test]
fn ln_s_on_proftpd() {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(ServerKind::Proftpd);
    srv.put_file("a.txt", b"alpha\n");
    srv.put_file("d/b.txt", b"beta\n");
    let m = Mount::new(&srv, &[]);
    m.sh_ok("ln -s a.txt l1 && ln -s ../a.txt d/l2 && ln -s b.txt d/l3 && ln -s d dirlink");
    // On the server's disk: absolute inside its root, as proftpd keeps every target.
    assert_eq!(link_of(&srv.disk("l1")), "/a.txt");
    assert_eq!(link_of(&srv.disk("d/l2")), "/a.txt");
    assert_eq!(link_of(&srv.disk("d/l3")), "/d/b.txt");
    // Through the mount: as made, and they lead where they should.
    assert_eq!(link_of(&m.p("l1")), "a.txt");
    assert_eq!(link_of(&m.p("d/l2")), "../a.txt");
    assert_eq!(link_of(&m.p("d/l3")), "b.txt");
    assert_eq!(m.sh_ok("cat l1 d/l2 d/l3"), "alpha\nalpha\nbeta\n");
    assert_eq!(m.sh_ok("ls dirlink/"), "b.txt\nl2\nl3\n");
    let out = m.sh("ln -s a.txt l1");
    assert!(String::from_utf8_lossy(&out.stderr).contains("File exists"), "{out:?}");
    let out = m.sh("ln -s '../../x' d/up");
    assert!(!out.status.success(), "a target above the mount's root: {out:?}");
    let out = m.sh("ln -s 'a b' spaced");
    assert!(!out.status.success(), "a target with a space cannot be sent: {out:?}");
    // An absolute target names a path of this machine: not one the server can link to.
    let out = m.sh("ln -s /etc/hostname abs");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"), "{out:?}");
    // Moved: the target as the kernel sees it follows (the server keeps `/d/b.txt`).
    m.sh_ok("mv d/l3 l3");
    assert_eq!(link_of(&m.p("l3")), "d/b.txt");
    assert_eq!(m.sh_ok("cat l3"), "beta\n");
    // Removed like any file.
    m.sh_ok("rm l1");
    assert!(std::fs::symlink_metadata(srv.disk("l1")).is_err());
}

#[test]
fn no_ln_s_on_vsftpd_and_targets_shown_relative_or_raw() {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(ServerKind::Vsftpd);
    srv.put_file("d/x", b"x\n");
    // vsftpd chroots to its root: "/d/x" is this file to the server.
    std::os::unix::fs::symlink("/d/x", srv.disk("abs")).unwrap();
    std::os::unix::fs::symlink("/d/x", srv.disk("d/abs2")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", srv.disk("d/other")).unwrap();
    std::os::unix::fs::symlink("../..", srv.disk("d/up")).unwrap();
    // Climbing out through links on the way: each `s` is the root itself.
    std::os::unix::fs::symlink(".", srv.disk("s")).unwrap();
    std::os::unix::fs::symlink("s/s/s/../../../../../../etc/hostname", srv.disk("x")).unwrap();
    let m = Mount::new(&srv, &[]);
    let out = m.sh("ln -s d/x mine");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"), "{out:?}");
    assert_eq!(link_of(&m.p("abs")), "d/x");
    assert_eq!(link_of(&m.p("d/abs2")), "x");
    assert_eq!(m.sh_ok("cat abs d/abs2"), "x\nx\n");
    let raw = Mount::new(&srv, &["no_transform_symlinks"]);
    assert_eq!(link_of(&raw.p("abs")), "/d/x");
    assert_eq!(link_of(&raw.p("d/other")), "/etc/hostname");
    assert_eq!(link_of(&raw.p("d/up")), "../..");
    // By default a target that would climb out of the mount is not shown: the kernel cannot
    // follow it to a file of this machine.
    for link in ["d/up", "x"] {
        let out = m.sh(&format!("readlink {link}; cat {link}"));
        assert!(!out.status.success() && out.stdout.is_empty(), "{link}: {out:?}");
    }
    assert_eq!(link_of(&m.p("s")), ".");
}

/// `follow_symlinks` (vsftpd, links made on its disk): links to a file and to a directory are
/// shown as them, resolved by the server; a dangling link and a loop stay links; a link to a
/// directory above it is not followed (a walk would never end), and one whose target would
/// lead out of the mount on this machine shows no target, so the kernel cannot follow it here.
#[test]
fn follow_symlinks_resolves_on_the_server() {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(ServerKind::Vsftpd);
    srv.put_file("d/x", b"x content\n");
    for (target, link) in [
        ("/d/x", "f"),
        ("/d", "dl"),
        ("/nope", "dangling"),
        ("loop", "loop"),
        ("/etc/hostname", "out"),
        ("../..", "d/up"),
    ] {
        std::os::unix::fs::symlink(target, srv.disk(link)).unwrap();
    }
    let m = Mount::new(&srv, &["follow_symlinks"]);
    let f = std::fs::symlink_metadata(m.p("f")).unwrap();
    assert!(f.is_file() && f.len() == 10, "{f:?}");
    assert_eq!(m.sh_ok("cat f"), "x content\n");
    assert!(std::fs::symlink_metadata(m.p("dl")).unwrap().is_dir());
    assert_eq!(m.sh_ok("ls dl"), "up\nx\n");
    for link in ["dangling", "loop"] {
        assert!(std::fs::symlink_metadata(m.p(link)).unwrap().file_type().is_symlink(), "{link}");
    }
    assert_eq!(link_of(&m.p("dangling")), "nope", "inside the mount: shown (relative)");
    // An absolute target is a path on the server: inside the mount here, never this machine's.
    assert_eq!(link_of(&m.p("out")), "etc/hostname");
    let out = m.sh("cat out");
    assert!(!out.status.success() && out.stdout.is_empty(), "{out:?}");
    // Out of the mount on this machine (and to a directory holding it): no target to follow
    // here, only what the server makes of the name.
    let out = m.sh("readlink d/up; cat d/up");
    assert!(!out.status.success() && out.stdout.is_empty(), "d/up leads out of the mount: {out:?}");
}

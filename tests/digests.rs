//! Server-side digests: `getfattr -n user.ftpfs.sha256` (and md5, sha1, crc32, sha512) on
//! proftpd with mod_digest, compared with the digests of the server's own file; no extended
//! attributes at all on a server without digests; `-o verify_upload` catching an upload whose
//! bytes changed on the way (the scripted server flips one, keeping the size), by XSHA256 and by
//! HASH, where the same upload without the option goes unseen; with `atomic_upload` too, the
//! changed upload never replaces the file, and the spooled version is sent again whole.

mod support;

use std::ffi::CString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

use support::mount::{Mount, fuse_available};
use support::{DataGen, FakeServer, FtpServer, ServerKind};

/// getxattr(2) of `name` on `path`: the value, or the errno.
fn getxattr(path: &Path, name: &str) -> Result<String, i32> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: p and n are NUL-terminated; buf is writable for its length.
    let got = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if got < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    buf.truncate(got as usize);
    Ok(String::from_utf8(buf).unwrap())
}

/// listxattr(2) of `path`: the bytes of the names list.
fn listxattr(path: &Path) -> Vec<u8> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: p is NUL-terminated; buf is writable for its length.
    let got = unsafe { libc::listxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(got >= 0, "listxattr: {}", std::io::Error::last_os_error());
    buf.truncate(got as usize);
    buf
}

/// `TOOL FILE` (sha256sum, md5sum, …): the digest it prints.
fn digest_of(tool: &str, file: &Path) -> String {
    let out = Command::new(tool).arg(file).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string()
}

#[test]
fn proftpd_digests_as_extended_attributes() {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(ServerKind::Proftpd);
    let data = DataGen::bytes(11, 3 << 20);
    srv.put_file("d/file.bin", &data);
    let m = Mount::new(&srv, &[]);
    let file = m.p("d/file.bin");
    let disk = srv.disk("d/file.bin");
    for (name, tool) in [("sha256", "sha256sum"), ("sha1", "sha1sum"), ("md5", "md5sum"), ("sha512", "sha512sum")] {
        assert_eq!(getxattr(&file, &format!("user.ftpfs.{name}")), Ok(digest_of(tool, &disk)), "{name}");
    }
    let crc = Command::new("python3")
        .args(["-c", &format!("import zlib;print('%08x' % zlib.crc32(open({:?},'rb').read()))", disk.display())])
        .output()
        .unwrap();
    assert_eq!(getxattr(&file, "user.ftpfs.crc32"), Ok(String::from_utf8_lossy(&crc.stdout).trim().to_string()));
    assert_eq!(getxattr(&file, "user.ftpfs.sha3"), Err(libc::ENODATA), "no such digest");
    assert_eq!(getxattr(&file, "user.other"), Err(libc::ENODATA));
    assert_eq!(getxattr(&m.p("d"), "user.ftpfs.sha256"), Err(libc::ENODATA), "a directory");
    assert!(listxattr(&file).is_empty(), "not listed (cp -a would hash every file)");
    // What we write is what the server's digest then describes.
    m.sh_ok("printf 'new content\\n' > d/file.bin");
    assert_eq!(getxattr(&file, "user.ftpfs.sha256"), Ok(digest_of("sha256sum", &disk)));
    assert_eq!(getxattr(&m.p("d/none"), "user.ftpfs.sha256"), Err(libc::ENOENT));
}

#[test]
fn no_extended_attributes_where_the_server_computes_no_digest() {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(ServerKind::Vsftpd);
    srv.put_file("f", b"x");
    let m = Mount::new(&srv, &["verify_upload"]);
    assert_eq!(getxattr(&m.p("f"), "user.ftpfs.sha256"), Err(libc::EOPNOTSUPP));
    // verify_upload without digests: uploads as usual (checked by size), with a warning logged.
    m.sh_ok("echo y > g");
    assert_eq!(std::fs::read(srv.disk("g")).unwrap(), b"y\n");
}

/// The file at `path` as the fake server holds it.
fn fake_file(srv: &FakeServer, path: &str) -> Vec<u8> {
    let mut c = ftpfs::ftp::Connection::connect(&srv.options(10)).unwrap();
    let mut dl = c.retr(path, 0).unwrap();
    let mut got = Vec::new();
    dl.read_to_end(&mut got).unwrap();
    dl.finish().unwrap();
    got
}

fn a_flipped_upload_is_caught(digests: &str) {
    if !fuse_available() {
        return;
    }
    let data = DataGen::bytes(5, 100_000);
    let other = DataGen::bytes(6, 100_000);
    let local = tempfile::tempdir().unwrap();
    let (src, src2) = (local.path().join("src.bin"), local.path().join("other.bin"));
    std::fs::write(&src, &data).unwrap();
    std::fs::write(&src2, &other).unwrap();

    // Without verify_upload the changed byte goes unseen: the copy "succeeds".
    let srv = FakeServer::start(&["--digests", digests, "--flip-stor", "1"]);
    let m = Mount::of_url(&srv.url(), &[], "p").unwrap();
    m.sh_ok(&format!("cp {} plain.bin", src.display()));
    assert!(fake_file(&srv, "/plain.bin") != data, "the scripted server did not change the upload");
    drop(m);

    // With it the close fails (EIO); the next upload is whole and its close succeeds.
    let srv = FakeServer::start(&["--digests", digests, "--flip-stor", "1"]);
    let m = Mount::of_url(&srv.url(), &["verify_upload"], "p").unwrap();
    let out = m.sh(&format!("cp {} checked.bin", src.display()));
    assert!(!out.status.success(), "the close of a changed upload succeeded");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Input/output error"), "{out:?}");
    m.sh_ok(&format!("cp {} second.bin", src.display()));
    assert!(fake_file(&srv, "/second.bin") == data);
    drop(m);

    // With atomic_upload too, a changed upload never replaces the file; the new version, kept
    // in its spool (it replaces a file), is uploaded again at release and lands whole.
    let srv = FakeServer::start(&["--digests", digests, "--flip-stor", "2"]);
    let m = Mount::of_url(&srv.url(), &["verify_upload", "atomic_upload"], "p").unwrap();
    m.sh_ok(&format!("cp {} kept.bin", src.display()));
    let out = m.sh(&format!("cp {} kept.bin", src2.display()));
    assert!(!out.status.success(), "the close of a changed upload succeeded");
    // The release (after the close returned) sends it again: until then the old version stays.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let kept = fake_file(&srv, "/kept.bin");
        assert!(kept == data || kept == other, "the server holds a changed version ({} bytes)", kept.len());
        if kept == other {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the new version was not sent again");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn verify_upload_by_xsha256() {
    a_flipped_upload_is_caught("x");
}

#[test]
fn verify_upload_by_hash() {
    a_flipped_upload_is_caught("hash");
}

//! `-o atomic_upload` on every server, through the kernel, checked on the server's own disk:
//! while a 100 MiB file replaces an existing one, a reader of the server's disk sees the old
//! file or the whole new one, never a part; the temporary file is gone at the end; the replaced
//! file keeps its mode; and nothing of the temporary name shows through the mount.

#[macro_use]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use support::mount::{Mount, fuse_available};
use support::{DataGen, FtpServer, ServerKind};

const PREFIX: &str = ".ftpfs-part-";

fn parts_on_disk(srv: &FtpServer) -> Vec<String> {
    std::fs::read_dir(srv.root())
        .expect("server root")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(PREFIX))
        .collect()
}

fn a_replaced_file_is_never_seen_half_written(kind: ServerKind) {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(kind);
    let old = b"the old version, whole\n".repeat(1000);
    srv.put_file("f", &old);
    std::fs::set_permissions(srv.disk("f"), std::fs::Permissions::from_mode(0o640)).expect("chmod on disk");
    let len: u64 = 100 << 20;
    let local = tempfile::tempdir().expect("local dir");
    let src = local.path().join("new");
    std::fs::write(&src, DataGen::bytes(7, len as usize)).expect("local file");
    let m = Mount::new(&srv, &["atomic_upload"]);
    // The mount learns the old file's mode from its listing.
    assert!(m.sh_ok("ls -l f").starts_with("-rw-r-----"), "the old file's mode is not shown");

    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (disk, root, done, old_len) = (srv.disk("f"), srv.root().to_path_buf(), done.clone(), old.len() as u64);
        std::thread::spawn(move || {
            let (mut looks, mut in_flight) = (0u32, 0u32);
            while !done.load(Ordering::Relaxed) {
                let size = std::fs::metadata(&disk).map(|m| m.len()).ok();
                assert!(
                    size == Some(old_len) || size == Some(len),
                    "a reader of the server's disk saw the file at {size:?} bytes: neither the old ({old_len}) nor the new ({len})"
                );
                let part = std::fs::read_dir(&root)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with(PREFIX));
                in_flight += u32::from(part && size == Some(old_len));
                looks += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            (looks, in_flight)
        })
    };
    m.sh_ok(&format!("cp {} f", src.display()));
    done.store(true, Ordering::Relaxed);
    let (looks, in_flight) = watcher.join().expect("a reader of the server saw a half-written file");
    assert!(in_flight > 0, "the upload was never seen in flight in {looks} looks: the test proves nothing");
    let on_disk = std::fs::read(srv.disk("f")).expect("the file on the server");
    assert!(
        on_disk.len() as u64 == len && on_disk == std::fs::read(&src).expect("source"),
        "the new version did not land whole"
    );
    assert!(parts_on_disk(&srv).is_empty(), "temporary files left on the server: {:?}", parts_on_disk(&srv));
    let mode = std::fs::metadata(srv.disk("f")).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "the replaced file's mode was not kept: {mode:o}");
    // A second upload of a new file, and the directory as the mount shows it: no part there.
    m.sh_ok("printf 'new file\\n' > g");
    assert_eq!(std::fs::read(srv.disk("g")).expect("g on the server"), b"new file\n");
    let listed = m.sh_ok("ls -a");
    assert!(!listed.contains(PREFIX), "the mount shows a temporary name: {listed}");
    assert!(m.unmount());
}

on_every_server!(a_replaced_file_is_never_seen_half_written);

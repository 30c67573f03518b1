//! Extended attributes: the server's digest of a file, computed by the server without a
//! download (`getfattr -n user.ftpfs.sha256 FILE`; md5, sha1, crc32 and sha512 likewise, where the
//! server offers them: see `ftp::digest`). FTP has no other extended attributes.
//!
//! The names are not listed (listxattr is empty): `cp -a`, `rsync -X` and `getfattr -d` would
//! otherwise have the server hash every file they copy. Any other name is "no such attribute"
//! (ENODATA), answered here without the server.
//!
//! Answering getxattr at all has a price: the kernel then asks for `security.capability` at
//! every write() and `ls -l` for two attributes per file, each a request to this process (not
//! to the server). Where the server computes no digest, the first getxattr is answered ENOSYS
//! instead, which makes the kernel stop asking for the rest of the mount.

use std::time::{Duration, SystemTime};

use super::FsResult;
use super::fs::{LastDigest, Model};
use crate::checksum::Algorithm;

impl Model {
    /// The value of the extended attribute `name` of inode `ino`: a digest of the file as the
    /// server holds it, in lower-case hex. A write-back of the file still on its way lands
    /// first, so the digest is of what was written.
    /// ENOSYS (to be passed to the kernel as it is) when the server computes no digest at all.
    pub fn getxattr(&self, ino: u64, name: &str) -> FsResult<Vec<u8>> {
        let core = &self.core;
        let offered = core.backend.checksums();
        if offered.is_empty() {
            return Err(libc::ENOSYS);
        }
        let Some(a) = Algorithm::of_xattr(name) else { return Err(libc::ENODATA) };
        let path = self.path_of(ino)?;
        if path.is_empty() || core.entry(&path)?.is_dir() || !offered.contains(&a) {
            return Err(libc::ENODATA);
        }
        core.writeback.wait_for(|p| p == path)?;
        let now = SystemTime::now();
        if let Some(d) = self.last_digest.lock().as_ref()
            && d.path == path
            && d.algorithm == a
            && now.duration_since(d.at).is_ok_and(|age| age < DIGEST_REUSE)
            && core.changed_at(&path).is_none_or(|changed| changed < d.at)
        {
            return Ok(d.hex.clone().into_bytes());
        }
        match core.backend.checksum(&path, a) {
            Ok(hex) => {
                *self.last_digest.lock() = Some(LastDigest { path, algorithm: a, hex: hex.clone(), at: now });
                Ok(hex.into_bytes())
            }
            Err(e) => Err(core.refused_errno(&path, e, false)),
        }
    }
}

/// How long a digest is given again without asking the server: `getfattr` asks for the size
/// first and then the value, which would have the server read the file twice.
const DIGEST_REUSE: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::backend::memory::MemoryBackend;
    use crate::model::Model;
    use crate::model::core::ModelConfig;

    #[test]
    fn digests_by_name_and_no_other_attribute() {
        let server = Arc::new(MemoryBackend::new(2));
        server.put_file("d/f", b"hello world\n");
        let dir = tempfile::tempdir().unwrap();
        let cfg = ModelConfig::for_tests(dir.path(), std::time::Duration::from_secs(60));
        let m = Model::new(cfg, server);
        let d = m.lookup(crate::model::ROOT_INO, "d").unwrap().ino;
        let f = m.lookup(d, "f").unwrap().ino;
        let sha256 = m.getxattr(f, "user.ftpfs.sha256").unwrap();
        assert_eq!(
            String::from_utf8(sha256).unwrap(),
            "a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447"
        );
        assert_eq!(m.getxattr(f, "user.ftpfs.sha1").unwrap(), b"22596363b3de40b06f981fb85d82312e8c0ed511");
        assert_eq!(m.getxattr(f, "user.ftpfs.md5"), Err(libc::ENODATA), "not offered by this server");
        assert_eq!(m.getxattr(f, "security.capability"), Err(libc::ENODATA));
        assert_eq!(m.getxattr(d, "user.ftpfs.sha256"), Err(libc::ENODATA), "a directory");
    }

    #[test]
    fn a_server_without_digests_switches_extended_attributes_off() {
        let server = Arc::new(MemoryBackend::new(1));
        server.set_digests_supported(false);
        server.put_file("f", b"x");
        let dir = tempfile::tempdir().unwrap();
        let cfg = ModelConfig::for_tests(dir.path(), std::time::Duration::from_secs(60));
        let m = Model::new(cfg, server);
        let f = m.lookup(crate::model::ROOT_INO, "f").unwrap().ino;
        assert_eq!(m.getxattr(f, "security.capability"), Err(libc::ENOSYS));
        assert_eq!(m.getxattr(f, "user.ftpfs.sha256"), Err(libc::ENOSYS));
    }
}

//! `-o verify_upload`: after each whole-file upload, the server's digest of what it stored
//! (XSHA256, HASH…: see `ftp::digest`) is compared with the digest of the bytes we sent, so a
//! byte changed on the way (a broken middlebox, a bad disk, a server bug) fails the close (EIO)
//! instead of going unseen (the server keeps what it stored; with `atomic_upload` it is never
//! renamed over the file, and a version spooled here is sent again at the next flush): TCP's checksum lets about one corrupted segment in millions
//! through, and FTP has no check of its own. The size check stays as it was; this is on top.
//!
//! Only SHA-256, SHA-512 and SHA-1 are used (the ones computed here too), the strongest the
//! server offers. Appends are not checked: the server's digest covers the whole file, ours only
//! the bytes added.

use std::io::{self, Write};
use std::sync::Arc;

use super::pool::Pool;
use crate::backend::{BackendResult, WriteStream};
use crate::checksum::{Algorithm, hex};
use crate::error::FsError;

/// The algorithm to check uploads with among those the server offers (`None`: none usable).
pub fn algorithm_for(offered: &[Algorithm]) -> Option<Algorithm> {
    [Algorithm::Sha256, Algorithm::Sha512, Algorithm::Sha1].into_iter().find(|a| offered.contains(a))
}

/// An upload whose bytes are hashed on their way, checked against the server's digest at the end.
pub struct Verified {
    inner: Box<dyn WriteStream>,
    digest: ring::digest::Context,
    algorithm: Algorithm,
    pool: Arc<Pool>,
    /// The server path uploaded to.
    remote: String,
}

impl Verified {
    pub fn new(inner: Box<dyn WriteStream>, algorithm: Algorithm, pool: Arc<Pool>, remote: String) -> Verified {
        let local = algorithm.local().unwrap_or(&ring::digest::SHA256);
        Verified { inner, digest: ring::digest::Context::new(local), algorithm, pool, remote }
    }
}

impl Write for Verified {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digest.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl WriteStream for Verified {
    fn finish(self: Box<Self>) -> BackendResult<Option<u64>> {
        let Verified { inner, digest, algorithm, pool, remote } = *self;
        let size = inner.finish()?;
        let ours = hex(digest.finish().as_ref());
        // A digest the server could not give (it took longer than the timeout to read a big
        // file, the connection broke) proves nothing either way: the upload stands as checked
        // by its size, with a warning. Only a digest that differs fails it.
        let theirs = match pool.run_retrying(|c| c.checksum(&remote, algorithm)).0 {
            Ok(theirs) => theirs,
            Err(e) => {
                log::warn!(
                    "verify_upload: {remote} not verified: no {} digest from the server ({e})",
                    algorithm.short_name()
                );
                return Ok(size);
            }
        };
        if theirs != ours {
            log::error!(
                "verify_upload: {remote} differs on the server from what was sent ({} {theirs} there, {ours} sent)",
                algorithm.short_name()
            );
            return Err(FsError::Broken);
        }
        log::debug!("verify_upload: {remote}: {} {ours} on both sides", algorithm.short_name());
        Ok(size)
    }
}

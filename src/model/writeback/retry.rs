//! Retries of a write-back upload within the mount: which failures are worth trying again
//! (the connection or the server failed, not the request), how often, and the pauses between
//! attempts, cut short by the unmount.

use std::time::{Duration, Instant};

use super::{Job, Shared};
use crate::model::FsResult;

/// Failures worth trying again (in this mount, then at the next) rather than giving up on:
/// the connection or the server failed, not the request.
pub(super) const TRANSIENT: [i32; 15] = [
    libc::EIO,
    // The server is away (offline): the journal keeps the version until it is back.
    libc::EHOSTDOWN,
    libc::ETIMEDOUT,
    libc::EBUSY,
    libc::ENOTCONN,
    libc::ECONNRESET,
    libc::ECONNABORTED,
    libc::ECONNREFUSED,
    libc::EPIPE,
    libc::ENETDOWN,
    libc::ENETUNREACH,
    libc::EHOSTUNREACH,
    libc::ESHUTDOWN,
    libc::EAGAIN,
    libc::EINTR,
];

/// Attempts of one deferred upload in this mount, and the pause before the first retry
/// (doubled each time: 1, 2, 4, 8 s); after the last, the journal keeps it for the next mount.
const ATTEMPTS: u32 = 5;
const FIRST_PAUSE: Duration = if cfg!(test) { Duration::from_millis(20) } else { Duration::from_secs(1) };

/// Uploads a deferred version, trying again after a failure the server may not repeat
/// ([`TRANSIENT`]) up to [`ATTEMPTS`] times with a doubling pause, while the mount is not
/// stopping. Other uploads of the path wait meanwhile (it is marked running), so versions stay
/// in order.
pub(super) fn upload_with_retries(shared: &Shared, job: &Job) -> FsResult<()> {
    let mut pause = FIRST_PAUSE;
    for attempt in 1.. {
        let res = job.version.upload();
        let Err(e) = res else { return res };
        if !TRANSIENT.contains(&e) || attempt >= ATTEMPTS {
            return res;
        }
        log::warn!(
            "{}: write-back upload failed (errno {e}); trying again in {} s (attempt {} of {ATTEMPTS})",
            job.path,
            pause.as_secs(),
            attempt + 1
        );
        let until = Instant::now() + pause;
        let mut p = shared.pending.lock();
        while !p.stopping && Instant::now() < until {
            let _ = shared.changed.wait_until(&mut p, until);
        }
        if p.stopping {
            return res;
        }
        drop(p);
        pause *= 2;
    }
    Ok(())
}

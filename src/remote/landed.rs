//! Whether an upload whose final reply never came landed anyway.
//!
//! Behind a NAT or firewall that dropped the idle control connection during a long upload, the
//! server stores the whole file but its 226 never arrives. When the wire layer saw the server
//! take every byte ([`crate::ftp::Upload::delivered`]: it ended the data connection in order
//! after ours) and only the reply is missing (the connection closed, was reset or timed out; a
//! reply of any kind, even a refusal, is never second-guessed), another connection asks what
//! the server holds: the upload counts as landed only when SIZE shows exactly the bytes sent,
//! and, where the server offers MDTM, the file's time is not before the upload began (by our
//! clock, with [`CLOCK_SLACK`] for the server's). A server that does not offer SIZE cannot show
//! it, and the upload fails as before. Only whole-file uploads (STOR): what an append should
//! leave depends on a size before it that nobody here knows.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::pool::Pool;
use crate::ftp::FtpError;

/// Slack for the server's clock behind ours when its MDTM is compared with the start of the
/// upload (a clock further behind makes the check fail: the upload is then reported failed).
pub const CLOCK_SLACK: Duration = Duration::from_secs(2);

/// Pauses before each SIZE while the server shows fewer bytes than were sent (it may still be
/// writing the last of them to its disk): bounded, about 1.3 s in all.
const SIZE_PAUSES: [Duration; 3] = [Duration::ZERO, Duration::from_millis(250), Duration::from_millis(1000)];

/// What is needed to check one upload.
pub struct LandedCheck {
    pub pool: Arc<Pool>,
    /// The server path uploaded to.
    pub remote: String,
    /// When the upload was started, by our clock.
    pub began: SystemTime,
    /// The server offers MDTM.
    pub mdtm: bool,
}

/// True when the error says that no reply came (rather than a reply saying no).
pub fn reply_never_came(e: &FtpError) -> bool {
    matches!(e, FtpError::Io(_) | FtpError::Closed)
}

impl LandedCheck {
    /// Whether the server holds the `sent` bytes of this upload, asked on other connections.
    pub fn holds(&self, sent: u64, lost: &FtpError) -> bool {
        let mut size = None;
        for pause in SIZE_PAUSES {
            std::thread::sleep(pause);
            match self.pool.run_retrying(|c| c.size(&self.remote)).0 {
                Ok(n) => {
                    size = Some(n);
                    if n >= sent {
                        break;
                    }
                }
                Err(e) => {
                    log::debug!("{}: SIZE after a lost reply: {e}", self.remote);
                    return false;
                }
            }
        }
        if size != Some(sent) {
            log::warn!(
                "{}: the reply to the upload never came ({lost}) and the server holds {size:?} bytes, not the {sent} sent",
                self.remote
            );
            return false;
        }
        if self.mdtm {
            let began = self.began.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
            let earliest = began - CLOCK_SLACK.as_secs() as i64;
            match self.pool.run_retrying(|c| c.mdtm(&self.remote)).0 {
                Ok((t, _)) if t >= earliest => {}
                Ok((t, _)) => {
                    log::warn!(
                        "{}: the reply to the upload never came ({lost}); the server's file has the size sent but \
                         its time {t} is before the upload began ({began})",
                        self.remote
                    );
                    return false;
                }
                Err(e) => {
                    log::debug!("{}: MDTM after a lost reply: {e}", self.remote);
                    return false;
                }
            }
        }
        log::warn!(
            "{}: the reply to the upload never came ({lost}); the server holds all {sent} bytes{}: counted as landed",
            self.remote,
            if self.mdtm { " with a time after the upload began" } else { "" }
        );
        true
    }
}

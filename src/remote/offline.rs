//! Whether the server can be reached now. When a new connection cannot be made because the
//! server is away (connection refused, no route, a name that does not resolve, a connect or
//! greeting that times out), the mount goes *offline*: requests that need the server fail at
//! once (no timeout per call) while what is cached keeps being served (listings and content
//! kept by `-o disk_cache`), and a connection is tried every [`PROBE_EVERY`] in the background
//! until one logs in, when the mount is *online* again by itself. The log and `ftpfs stats`
//! say since when.

use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

use crate::ftp::FtpError;

/// How often a connection is tried while the server is away.
pub const PROBE_EVERY: Duration = Duration::from_secs(2);

/// Whether `e`, met while making a new connection, means the server is away: no TCP
/// connection at all (refused, no route, no such host, the connect timed out). Not a slow
/// greeting or login, a login refused, too many connections or a reply we do not understand:
/// the server is there.
pub fn means_unreachable(e: &FtpError) -> bool {
    use std::io::ErrorKind::*;
    match e {
        FtpError::Io(io) => match io.kind() {
            ConnectionRefused | HostUnreachable | NetworkUnreachable | NetworkDown | AddrNotAvailable => true,
            // Only the TCP connect's own timeout (see `ftp::control`), not a later step's.
            TimedOut => io.to_string().starts_with("no TCP connection"),
            _ => io.to_string().contains("lookup address"),
        },
        _ => false,
    }
}

/// The mount's view of the server's reachability.
#[derive(Default)]
pub struct Reachability {
    /// Since when the server is away, and why (`None`: online).
    away: Mutex<Option<(SystemTime, String)>>,
}

impl Reachability {
    /// The error for a request that needs the server while it is away (`None`: online).
    pub fn refusal(&self) -> Option<FtpError> {
        self.away.lock().as_ref().map(|(since, why)| FtpError::Offline(format!("{} ({why})", since_text(*since))))
    }

    /// A connection failed because the server is away (`e`): `true` when this starts an
    /// offline period. (A step whose connection broke already tried a fresh one: a server
    /// that restarts refuses connections for seconds, and the prober finds it back.)
    pub fn went_away(&self, e: &FtpError) -> bool {
        let mut away = self.away.lock();
        if away.is_some() {
            return false;
        }
        *away = Some((SystemTime::now(), e.to_string()));
        log::warn!(
            "the server is unreachable ({e}): offline; serving what is cached, trying again every {} s",
            PROBE_EVERY.as_secs()
        );
        true
    }

    /// A connection logged in again after an offline period.
    pub fn came_back(&self) {
        if let Some((since, _)) = self.away.lock().take() {
            log::warn!("the server is reachable again after {}: online", elapsed_text(since));
        }
    }

    pub fn is_away(&self) -> bool {
        self.away.lock().is_some()
    }

    /// One line for `ftpfs stats`.
    pub fn describe(&self) -> String {
        match self.away.lock().as_ref() {
            None => "online".to_string(),
            Some((since, why)) => format!("offline {}: {why}", since_text(*since)),
        }
    }
}

fn elapsed_text(since: SystemTime) -> String {
    format!("{} s", since.elapsed().unwrap_or_default().as_secs())
}

fn since_text(since: SystemTime) -> String {
    let at = since.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
    let t = time::OffsetDateTime::from_unix_timestamp(at as i64).ok();
    let shown =
        t.map_or_else(|| at.to_string(), |t| format!("{:02}:{:02}:{:02} UTC", t.hour(), t.minute(), t.second()));
    format!("since {shown}, {} ago", elapsed_text(since))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn away_and_back() {
        let r = Reachability::default();
        assert!(r.refusal().is_none() && r.describe() == "online");
        let e = FtpError::Io(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused"));
        assert!(means_unreachable(&e));
        assert!(r.went_away(&e));
        assert!(!r.went_away(&e), "one offline period");
        assert!(matches!(r.refusal(), Some(FtpError::Offline(_))));
        assert!(r.describe().starts_with("offline since"), "{}", r.describe());
        r.came_back();
        assert!(!r.is_away());
        let login = FtpError::Reply { code: 530, text: "Login incorrect.".into() };
        assert!(!means_unreachable(&login), "a server that refuses us is there");
        let slow = |what: &str| FtpError::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, what.to_string()));
        assert!(means_unreachable(&slow("no TCP connection to h:21 within 30 s")));
        assert!(!means_unreachable(&slow("no greeting from the server within 30 s")), "a slow server is there");
    }
}

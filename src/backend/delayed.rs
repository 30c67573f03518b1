//! A backend that comes later (`-o delay_connect`): the mount is up before the server answers,
//! and the real backend is made by the first connection that logs in.
//!
//! Until then every request fails fast: it wakes the connector and waits at most
//! [`FIRST_USE_WAIT`] for it (so the first use after the server came up is served), then fails
//! as an offline mount's requests do ([`FsError::Offline`]: EIO for a read, EHOSTDOWN for a
//! change), or with the login's own error when the server refused it. A connector thread tries
//! at once, then every [`TRY_EVERY`] after the last try ended (a request wakes it, but no
//! sooner: a request in between fails at once with the last try's outcome), until a
//! connection logs in or the mount ends. After a refused login only every
//! [`AFTER_REFUSED_LOGIN`], and requests do not wake it: a wrong password does not get right by
//! itself, and servers lock accounts (or ban addresses) that fail logins often. Knows nothing
//! of FTP: `connect` is the mount's.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Condvar, Mutex};

use super::{Backend, BackendResult, Entry, ReadStream, WriteMode, WriteStream};
use crate::error::FsError;

/// How long a request waits for a connection being made for it.
pub const FIRST_USE_WAIT: Duration = Duration::from_secs(1);

/// How often the connector tries while the server does not answer.
pub const TRY_EVERY: Duration = Duration::from_secs(2);

/// How often it tries after the server refused the login.
pub const AFTER_REFUSED_LOGIN: Duration = Duration::from_secs(60);

/// Makes the real backend: `Err` with why not (and the error requests meanwhile get).
pub type Connect = Box<dyn Fn() -> Result<Arc<dyn Backend>, (FsError, String)> + Send + Sync>;

#[derive(Default)]
struct Tries {
    /// A request asked for a try now.
    wanted: bool,
    /// Tries made so far (a request waits for the next one to end).
    done: u64,
    /// The last failure: the error requests get, why, since when the server does not answer.
    failed: Option<(FsError, String, SystemTime)>,
    /// When the last try ended.
    ended: Option<Instant>,
    stopped: bool,
}

impl Tries {
    /// The server refused the login on the last try.
    fn login_refused(&self) -> bool {
        matches!(self.failed, Some((FsError::Denied, _, _)))
    }

    /// Whether a request may have a try made for it now.
    fn may_try(&self) -> bool {
        !self.login_refused() && self.ended.is_none_or(|t| t.elapsed() >= TRY_EVERY)
    }
}

struct Shared {
    real: OnceLock<Arc<dyn Backend>>,
    tries: Mutex<Tries>,
    changed: Condvar,
    /// `wait_limit` until the real backend is there.
    wait: Duration,
}

pub struct Delayed {
    shared: Arc<Shared>,
}

impl Delayed {
    /// Starts the connector thread; `wait` is what [`Backend::wait_limit`] says meanwhile.
    pub fn start(connect: Connect, wait: Duration) -> std::io::Result<Delayed> {
        let shared = Arc::new(Shared {
            real: OnceLock::new(),
            tries: Mutex::new(Tries::default()),
            changed: Condvar::new(),
            wait,
        });
        let weak = Arc::downgrade(&shared);
        crate::stats::gauge("server", move || weak.upgrade().map(|s| s.describe()));
        let worker = shared.clone();
        std::thread::Builder::new().name("delay-connect".into()).spawn(move || worker.connect_loop(connect))?;
        Ok(Delayed { shared })
    }

    /// The real backend, or the error a request gets while there is none (after asking for a
    /// try and waiting for it, [`FIRST_USE_WAIT`] at most).
    fn real(&self) -> BackendResult<&Arc<dyn Backend>> {
        if let Some(real) = self.shared.real.get() {
            return Ok(real);
        }
        let deadline = Instant::now() + FIRST_USE_WAIT;
        let mut tries = self.shared.tries.lock();
        let asked_at = tries.done;
        // The first try is under way from the start; later ones no sooner than TRY_EVERY apart.
        let waits = tries.done == 0 || tries.may_try();
        if waits && tries.done > 0 {
            tries.wanted = true;
            self.shared.changed.notify_all();
        }
        while waits && self.shared.real.get().is_none() && tries.done <= asked_at && !tries.stopped {
            if self.shared.changed.wait_until(&mut tries, deadline).timed_out() {
                break;
            }
        }
        match self.shared.real.get() {
            Some(real) => Ok(real),
            None if tries.stopped => Err(FsError::Unmounting),
            None => Err(tries.failed.as_ref().map_or(FsError::Offline, |(e, _, _)| *e)),
        }
    }
}

impl Shared {
    fn connect_loop(&self, connect: Connect) {
        loop {
            let res = connect();
            let mut tries = self.tries.lock();
            tries.done += 1;
            tries.wanted = false;
            tries.ended = Some(Instant::now());
            match res {
                Ok(real) => {
                    if tries.stopped {
                        real.shut_down();
                    } else if self.real.set(real).is_ok() {
                        log::warn!("connected to the server: the mount is online");
                    }
                    self.changed.notify_all();
                    return;
                }
                Err((e, why)) => {
                    if tries.failed.as_ref().is_none_or(|(_, before, _)| *before != why) {
                        let every = if e == FsError::Denied { AFTER_REFUSED_LOGIN } else { TRY_EVERY };
                        log::warn!("no connection to the server yet ({why}); trying every {} s", every.as_secs());
                    }
                    let since = tries.failed.as_ref().map_or_else(SystemTime::now, |f| f.2);
                    tries.failed = Some((e, why, since));
                }
            }
            self.changed.notify_all();
            let refused = tries.login_refused();
            let next = Instant::now() + if refused { AFTER_REFUSED_LOGIN } else { TRY_EVERY };
            while (!tries.wanted || refused) && !tries.stopped && !self.changed.wait_until(&mut tries, next).timed_out()
            {
            }
            if tries.stopped {
                return;
            }
        }
    }

    fn describe(&self) -> String {
        if let Some(real) = self.real.get() {
            return if real.is_offline() { "offline".into() } else { "online".into() };
        }
        match &self.tries.lock().failed {
            None => "connecting (delay_connect)".into(),
            Some((_, why, since)) => {
                let ago = since.elapsed().map_or(0, |d| d.as_secs());
                format!("not connected yet (delay_connect), trying for {ago} s: {why}")
            }
        }
    }
}

impl Backend for Delayed {
    fn list(&self, dir: &str) -> BackendResult<Vec<Entry>> {
        self.real()?.list(dir)
    }

    fn stat_one(&self, path: &str) -> BackendResult<Option<Entry>> {
        self.real()?.stat_one(path)
    }

    fn size(&self, path: &str) -> BackendResult<Option<u64>> {
        self.real()?.size(path)
    }

    fn modified(&self, path: &str) -> BackendResult<Option<i64>> {
        self.real()?.modified(path)
    }

    fn read(&self, path: &str, offset: u64, wait: Duration) -> BackendResult<Option<Box<dyn ReadStream>>> {
        self.real()?.read(path, offset, wait)
    }

    fn write(&self, path: &str, mode: WriteMode, wait: Duration) -> BackendResult<Option<Box<dyn WriteStream>>> {
        self.real()?.write(path, mode, wait)
    }

    fn mkdir(&self, path: &str) -> BackendResult<()> {
        self.real()?.mkdir(path)
    }

    fn rmdir(&self, path: &str) -> BackendResult<()> {
        self.real()?.rmdir(path)
    }

    fn delete(&self, path: &str) -> BackendResult<()> {
        self.real()?.delete(path)
    }

    fn rename(&self, from: &str, to: &str) -> BackendResult<()> {
        self.real()?.rename(from, to)
    }

    fn can_set_mtime(&self) -> bool {
        self.real().is_ok_and(|r| r.can_set_mtime())
    }

    fn set_mtime(&self, path: &str, secs: i64) -> BackendResult<()> {
        self.real()?.set_mtime(path, secs)
    }

    fn chmod(&self, path: &str, mode: u32) -> BackendResult<()> {
        self.real()?.chmod(path, mode)
    }

    fn can_append(&self) -> bool {
        self.real().is_ok_and(|r| r.can_append())
    }

    fn can_chmod(&self) -> bool {
        self.real().is_ok_and(|r| r.can_chmod())
    }

    fn can_name(&self, name: &str) -> bool {
        // Before the server is known any name may do: the request then fails as offline.
        self.shared.real.get().is_none_or(|r| r.can_name(name))
    }

    fn symlink(&self, target: super::LinkTarget<'_>, link: &str) -> BackendResult<()> {
        self.real()?.symlink(target, link)
    }

    fn checksums(&self) -> Vec<super::Algorithm> {
        // Not known before the server answers: any may be (none would switch extended
        // attributes off for the mount), and asking for one then fails as any request does.
        self.shared.real.get().map_or_else(|| super::Algorithm::ALL.to_vec(), |r| r.checksums())
    }

    fn checksum(&self, path: &str, a: super::Algorithm) -> BackendResult<String> {
        self.real()?.checksum(path, a)
    }

    fn wait_limit(&self) -> Duration {
        self.shared.real.get().map_or(self.shared.wait, |r| r.wait_limit())
    }

    fn spare_connections(&self) -> usize {
        self.shared.real.get().map_or(0, |r| r.spare_connections())
    }

    fn lists_at_once(&self) -> usize {
        self.shared.real.get().map_or(1, |r| r.lists_at_once())
    }

    fn list_several(&self, dirs: &[String]) -> Vec<BackendResult<Vec<Entry>>> {
        match self.real() {
            Ok(r) => r.list_several(dirs),
            Err(e) => dirs.iter().map(|_| Err(e)).collect(),
        }
    }

    fn is_offline(&self) -> bool {
        // A change asks this first: as the first use, it is worth a try too.
        self.real().map_or(true, |r| r.is_offline())
    }

    fn forget(&self, path: &str) {
        if let Some(r) = self.shared.real.get() {
            r.forget(path)
        }
    }

    fn opened_dir(&self, dir: &str) {
        if let Some(r) = self.shared.real.get() {
            r.opened_dir(dir)
        }
    }

    fn close_idle(&self) {
        if let Some(r) = self.shared.real.get() {
            r.close_idle()
        }
    }

    fn shut_down(&self) {
        let mut tries = self.shared.tries.lock();
        tries.stopped = true;
        self.shared.changed.notify_all();
        drop(tries);
        if let Some(r) = self.shared.real.get() {
            r.shut_down()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;
    use crate::backend::memory::MemoryBackend;

    /// A connect that fails as `refusal` until `up` is set, counting its tries.
    fn connect_when(
        up: Arc<AtomicBool>,
        tries: Arc<AtomicUsize>,
        refusal: FsError,
        server: Arc<MemoryBackend>,
    ) -> Connect {
        Box::new(move || {
            tries.fetch_add(1, Ordering::SeqCst);
            match up.load(Ordering::SeqCst) {
                true => Ok(server.clone() as Arc<dyn Backend>),
                false => Err((refusal, "connection refused".into())),
            }
        })
    }

    #[test]
    fn requests_fail_fast_until_a_try_connects_then_reach_the_server() {
        let server = Arc::new(MemoryBackend::new(2));
        server.put_file("f", b"x");
        let (up, tries) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let d =
            Delayed::start(connect_when(up.clone(), tries.clone(), FsError::Offline, server), Duration::from_secs(30))
                .unwrap();
        let t0 = Instant::now();
        assert_eq!(d.list("").unwrap_err(), FsError::Offline);
        assert!(d.is_offline());
        // Fast: no timeout of the server's (slack for a loaded machine).
        assert!(t0.elapsed() <= FIRST_USE_WAIT + Duration::from_secs(4), "{:?}", t0.elapsed());
        // Within TRY_EVERY of that try, a request fails without waiting for another.
        assert_eq!(d.list("").unwrap_err(), FsError::Offline);
        // The server comes up: found by the next try (a request's or the periodic one).
        up.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + TRY_EVERY * 3;
        let names = loop {
            match d.list("") {
                Ok(entries) => break entries.into_iter().map(|e| e.name).collect::<Vec<_>>(),
                Err(e) => assert!(Instant::now() < deadline, "not connected: {e:?}"),
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(names, ["f"]);
        assert!(!d.is_offline());
        d.shut_down();
    }

    #[test]
    fn a_refused_login_is_what_requests_get_and_shut_down_ends_the_tries() {
        let server = Arc::new(MemoryBackend::new(1));
        let (up, tries) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let d =
            Delayed::start(connect_when(up, tries.clone(), FsError::Denied, server), Duration::from_secs(30)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while d.mkdir("d").unwrap_err() != FsError::Denied {
            assert!(Instant::now() < deadline, "the refusal never reached the requests");
        }
        // A refused login is not tried again for requests, nor every TRY_EVERY.
        let after = tries.load(Ordering::SeqCst);
        for _ in 0..20 {
            assert_eq!(d.list("").unwrap_err(), FsError::Denied);
        }
        std::thread::sleep(TRY_EVERY + Duration::from_millis(500));
        assert_eq!(d.list("").unwrap_err(), FsError::Denied);
        assert_eq!(tries.load(Ordering::SeqCst), after, "a refused login tried again within a minute");
        d.shut_down();
        assert_eq!(d.list("").unwrap_err(), FsError::Unmounting);
    }
}

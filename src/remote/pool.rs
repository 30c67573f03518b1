//! A small pool of logged-in control connections shared by the filesystem's worker threads.
//!
//! Connections are created lazily: up to `transfers` for long transfers plus one more that only
//! listings and other short commands may take, so `ls` and `stat` never wait behind a copy. A
//! [`Lease`] hands one out and returns it when dropped, unless it died (then the slot is freed and
//! a fresh one is made on demand). Idempotent operations are retried on a fresh connection when the old one
//! turned out to be broken (server restart, 421 idle timeout, reset): once, or with pauses
//! ([`RETRY_PAUSES`]) while the server keeps ending sessions.
//!
//! No wait here is unbounded: a request that gets no connection within the `timeout` option
//! fails with [`FtpError::Busy`], and [`Pool::shut_down`] (unmount, SIGTERM) wakes every waiter
//! with [`FtpError::Unmounting`]. When the server refused more connections (421), the ceiling
//! shrinks, and grows back by one every [`REGROW_AFTER`].
//!
//! A connection given back opens its next data connection ahead on a short-lived thread before
//! it counts as idle ([`Connection::open_data_ahead`]), so the next transfer or listing on it
//! costs one round trip instead of three. A request that finds no idle connection makes a new
//! one where the limit allows; at the limit, one being prepared is waited for (it is back
//! within a round trip or two).

use std::borrow::{Borrow, BorrowMut};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::ftp::{ConnectOptions, Connection, FtpError, Result};
use crate::stats::{self, Counter};

/// What a connection is wanted for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// A short command or a listing.
    Metadata,
    /// A transfer that may hold the connection for a long time.
    Transfer,
}

struct Idle {
    conn: Connection,
    since: Instant,
}

struct State {
    idle: Vec<Idle>,
    /// Connections in existence or being created (idle + leased + connecting).
    total: usize,
    /// Leased for transfers.
    transfers: usize,
    /// Current ceiling: starts at `max`, shrinks when the server refuses more connections.
    limit: usize,
    /// The configured ceiling.
    max: usize,
    /// When the ceiling was last lowered or raised again (while below `max`).
    limit_changed: Instant,
    /// Set at unmount: no new leases.
    closing: bool,
    /// Given back and opening their next data connection, or being made in the background
    /// (counted in `total`).
    preparing: usize,
    /// EPSV worked on some connection: new ones may open a data connection ahead at once.
    epsv_ok: bool,
}

/// The pool. Cheap to share through `Arc`.
pub struct Pool {
    opts: ConnectOptions,
    /// Whether the server is away ([`super::offline`]).
    reach: super::offline::Reachability,
    /// The greeting of the first connection: which server this is.
    welcome: String,
    state: Mutex<State>,
    freed: Condvar,
    /// Idle connections open their next data connection ahead ([`Pool::open_data_ahead`]).
    data_ahead: AtomicBool,
    /// When a step last used up all of [`RETRY_PAUSES`] and still failed: for a while after,
    /// steps are tried again once only, so that one call that makes many steps (a rename
    /// with its checks) does not sleep the whole schedule at each of them.
    retries_exhausted: Mutex<Option<Instant>>,
}

/// How long after a step used up its retries the others fail fast (one retry, no pause).
const FAIL_FAST_FOR: Duration = Duration::from_secs(10);

/// Idle connections older than this are checked with NOOP before use: servers restart and
/// drop idle sessions (421), and a command that is not idempotent should not be the one to find
/// out.
const STALE_AFTER: Duration = Duration::from_secs(2);
/// How long that check may take before the connection counts as dead.
const PROBE_WAIT: Duration = Duration::from_secs(5);
/// Idle connections older than this are closed unused: a NAT may have dropped them silently,
/// and a NOOP would then wait for the full timeout.
const DISCARD_AFTER: Duration = Duration::from_secs(120);
/// Takes the idle connection given back last, or for a transfer the one given back last
/// among those still fresh (no probe needed) whose data connection opened ahead has settled
/// (see [`Connection::data_ahead_settled`]): in a run of small transfers one after another,
/// each then finds a data connection ready, not one whose handshake is still on its way.
fn take_settled(idle: &mut Vec<Idle>, purpose: Purpose) -> Option<Idle> {
    let last = idle.len().checked_sub(1)?;
    let settled = |i: &Idle| i.since.elapsed() < STALE_AFTER && i.conn.data_ahead_settled();
    let at = match purpose {
        Purpose::Transfer => idle.iter().rposition(settled).unwrap_or(last),
        Purpose::Metadata => last,
    };
    Some(idle.remove(at))
}

/// Idle connections and ones not made yet, less one kept for requests.
fn spare_in(st: &State) -> usize {
    if st.closing {
        return 0;
    }
    (st.idle.len() + st.limit.saturating_sub(st.total)).saturating_sub(1)
}

/// After the server refused a connection, the ceiling is raised by one again this long after
/// it was last changed (servers' limits are often per moment: other clients leave).
pub const REGROW_AFTER: Duration = Duration::from_secs(30);

impl Pool {
    /// Creates a pool for `transfers` simultaneous transfers (plus one connection for short
    /// commands); `first` is an already logged-in connection (the one that proved the login).
    pub fn new(opts: ConnectOptions, transfers: usize, first: Option<Connection>) -> Arc<Pool> {
        let max = transfers.max(1) + 1;
        let welcome = first.as_ref().map(|c| c.welcome().to_string()).unwrap_or_default();
        let mut idle = Vec::new();
        if let Some(c) = first {
            stats::count(Counter::ConnectionOpened);
            idle.push(Idle { conn: c, since: Instant::now() });
        }
        let total = idle.len();
        let epsv_ok = idle.iter().any(|i| i.conn.epsv_proven());
        let state = State {
            idle,
            total,
            transfers: 0,
            limit: max,
            max,
            limit_changed: Instant::now(),
            closing: false,
            preparing: 0,
            epsv_ok,
        };
        let pool = Arc::new(Pool {
            opts,
            reach: Default::default(),
            welcome,
            state: Mutex::new(state),
            freed: Condvar::new(),
            data_ahead: AtomicBool::new(false),
            retries_exhausted: Mutex::new(None),
        });
        let weak = Arc::downgrade(&pool);
        stats::gauge("connections", move || weak.upgrade().map(|p| p.describe()));
        let weak = Arc::downgrade(&pool);
        stats::gauge("server", move || weak.upgrade().map(|p| p.reach.describe()));
        pool
    }

    /// The pool in one line, for `ftpfs stats`.
    fn describe(&self) -> String {
        let st = self.state.lock();
        let busy = st.total.saturating_sub(st.idle.len() + st.preparing);
        format!(
            "{} open of at most {}: {busy} busy ({} transfers), {} idle, {} connecting or opening data ahead",
            st.total,
            st.limit,
            st.transfers,
            st.idle.len(),
            st.preparing
        )
    }

    /// Lets idle connections open the data connection of their next transfer ahead: a round
    /// trip or two less per transfer for a far server, a thread and a hand-over more for a near
    /// one (where it is slower: off by default).
    pub fn open_data_ahead(&self, on: bool) {
        self.data_ahead.store(on, Ordering::Relaxed);
    }

    /// The server is away ([`super::offline`]).
    pub fn is_offline(&self) -> bool {
        self.reach.is_away()
    }

    /// The server's greeting, as the first connection received it (empty without one).
    pub fn welcome(&self) -> &str {
        &self.welcome
    }

    pub fn options(&self) -> &ConnectOptions {
        &self.opts
    }

    /// How many connections background work could take now without making a request wait:
    /// idle ones and ones not made yet, less one kept for requests.
    pub fn spare(&self) -> usize {
        spare_in(&self.state.lock())
    }

    /// As [`Pool::spare`], waiting up to `wait` for one to become spare (a connection coming
    /// back, or one being made or prepared ahead becoming idle).
    pub fn wait_spare(&self, wait: Duration) -> usize {
        let deadline = Instant::now() + wait;
        let mut st = self.state.lock();
        loop {
            let spare = spare_in(&st);
            if spare > 0 || st.closing || self.freed.wait_until(&mut st, deadline).timed_out() {
                return spare_in(&st);
            }
        }
    }

    /// How long a request may wait for a connection (the `timeout` option).
    pub fn wait_limit(&self) -> Duration {
        self.opts.timeout
    }

    /// Borrows a connection, creating one when allowed, or waiting (at most the `timeout`
    /// option) for one to come back.
    pub fn get(self: &Arc<Self>, purpose: Purpose) -> Result<Lease> {
        let wait = self.wait_limit();
        self.get_timeout(purpose, wait)?.ok_or_else(|| busy(wait))
    }

    /// Like [`Pool::get`], but gives up with `Ok(None)` after `wait` without a free slot.
    ///
    /// A connection being given back (opening its next data connection ahead) is waited for
    /// even past `wait`, up to the `timeout` option: it is free within a round trip or two, not
    /// held by a transfer.
    pub fn get_timeout(self: &Arc<Self>, purpose: Purpose, wait: Duration) -> Result<Option<Lease>> {
        let deadline = Instant::now() + wait;
        let preparing_deadline = Instant::now() + wait.max(self.wait_limit());
        let mut st = self.state.lock();
        loop {
            if st.closing {
                return Err(FtpError::Unmounting);
            }
            if let Some(away) = self.reach.refusal() {
                return Err(away);
            }
            if st.limit < st.max && st.limit_changed.elapsed() >= REGROW_AFTER {
                st.limit += 1;
                st.limit_changed = Instant::now();
                log::info!("trying {} connections again", st.limit);
            }
            let transfer_cap = st.limit.saturating_sub(1).max(1);
            let may_use = purpose == Purpose::Metadata || st.transfers < transfer_cap;
            if may_use {
                if let Some(idle) = take_settled(&mut st.idle, purpose) {
                    if purpose == Purpose::Transfer {
                        st.transfers += 1;
                    }
                    drop(st);
                    match self.checked(idle, purpose)? {
                        Some(lease) => return Ok(Some(lease)),
                        None => {
                            st = self.state.lock();
                            continue;
                        }
                    }
                }
                // One being prepared is back within a round trip or two, sooner than a new
                // login: wait for it, and let the pool grow in the background meanwhile.
                if st.total < st.limit && st.preparing > 0 {
                    st.total += 1;
                    st.preparing += 1;
                    drop(st);
                    self.spawn_grow();
                    st = self.state.lock();
                } else if st.total < st.limit {
                    st.total += 1;
                    if purpose == Purpose::Transfer {
                        st.transfers += 1;
                    }
                    drop(st);
                    match self.connect_new(purpose)? {
                        Some(lease) => return Ok(Some(lease)),
                        // Refused for now (the limit was lowered): wait under the same deadline.
                        None => {
                            st = self.state.lock();
                            continue;
                        }
                    }
                }
            }
            let until = if st.preparing > 0 { preparing_deadline } else { deadline };
            if Instant::now() >= until || (self.freed.wait_until(&mut st, until).timed_out() && st.preparing == 0) {
                return Ok(None);
            }
        }
    }

    /// Returns an idle connection after making sure it is still alive if it sat for a while
    /// (`None` as from [`Pool::connect_new`]).
    fn checked(self: &Arc<Self>, idle: Idle, purpose: Purpose) -> Result<Option<Lease>> {
        let mut conn = idle.conn;
        let age = idle.since.elapsed();
        if age >= DISCARD_AFTER {
            log::debug!("closing a connection idle for {}s", age.as_secs());
            conn.abandon();
            return self.connect_new(purpose);
        }
        if age >= STALE_AFTER && !conn.probe(PROBE_WAIT) {
            log::debug!("idle connection went stale; replacing it");
            conn.abandon();
            return self.connect_new(purpose);
        }
        Ok(Some(self.lease(conn, purpose)))
    }

    /// Lends `conn`, telling it whether to open its next data connection ahead.
    fn lease(self: &Arc<Self>, mut conn: Connection, purpose: Purpose) -> Lease {
        conn.set_open_ahead(self.data_ahead.load(Ordering::Relaxed));
        Lease { pool: self.clone(), conn: Some(conn), purpose }
    }

    /// Makes a new connection for a slot already counted in `total`. `None`: the server refused
    /// another connection and the limit was lowered; the caller waits for one to come back.
    fn connect_new(self: &Arc<Self>, purpose: Purpose) -> Result<Option<Lease>> {
        match Connection::connect(&self.opts) {
            Ok(conn) => {
                stats::count(Counter::ConnectionOpened);
                Ok(Some(self.lease(conn, purpose)))
            }
            Err(e) => {
                let mut st = self.state.lock();
                st.total -= 1;
                if purpose == Purpose::Transfer {
                    st.transfers -= 1;
                }
                if e.is_too_many_connections() && st.total > 0 {
                    // The server caps connections: use fewer instead of failing, and wait.
                    st.limit = st.total.max(1);
                    st.limit_changed = Instant::now();
                    log::warn!("server refused another connection ({e}); pool limited to {}", st.limit);
                    self.freed.notify_all();
                    return Ok(None);
                }
                self.freed.notify_all();
                // Away only while no connection of ours is alive (one that works says otherwise).
                let alone = st.total == 0;
                drop(st);
                if alone && super::offline::means_unreachable(&e) {
                    self.went_offline(&e);
                    // Offline now: the caller serves what is cached rather than fail.
                    if let Some(away) = self.reach.refusal() {
                        return Err(away);
                    }
                }
                Err(e)
            }
        }
    }

    /// The server is away (`e`): idle connections go (they died with it, or will not be
    /// needed before it is back), and a connection is tried in the background every
    /// [`super::offline::PROBE_EVERY`] until one logs in.
    fn went_offline(self: &Arc<Self>, e: &FtpError) {
        if !self.reach.went_away(e) {
            return;
        }
        self.discard_idle();
        let pool = self.clone();
        let spawned = std::thread::Builder::new().name("ftp-probe".into()).spawn(move || pool.probe_until_back());
        if let Err(e) = spawned {
            // Without a prober the mount would stay offline: online it tries for itself.
            log::warn!("cannot start a thread to watch for the server ({e}); staying online");
            self.reach.came_back();
        }
    }

    fn probe_until_back(self: Arc<Self>) {
        loop {
            std::thread::sleep(super::offline::PROBE_EVERY);
            if self.state.lock().closing {
                return;
            }
            match Connection::connect(&self.opts) {
                Ok(conn) => {
                    stats::count(Counter::ConnectionOpened);
                    let mut st = self.state.lock();
                    if st.total < st.limit && !st.closing {
                        st.total += 1;
                        st.idle.push(Idle { conn, since: Instant::now() });
                    } else {
                        drop(st);
                        conn.quit();
                    }
                    self.reach.came_back();
                    self.freed.notify_all();
                    return;
                }
                Err(e) if super::offline::means_unreachable(&e) => log::debug!("the server is still away: {e}"),
                Err(e) => {
                    // There, though it refuses us: the requests will say why.
                    log::info!("the server answers again, refusing a connection: {e}");
                    self.reach.came_back();
                    return;
                }
            }
        }
    }

    fn give_back(self: &Arc<Self>, conn: Option<Connection>, purpose: Purpose) {
        let mut st = self.state.lock();
        if purpose == Purpose::Transfer {
            st.transfers -= 1;
        }
        if conn.as_ref().is_some_and(Connection::epsv_proven) {
            st.epsv_ok = true;
        }
        match conn {
            Some(c)
                if !c.is_dead() && !st.closing && self.data_ahead.load(Ordering::Relaxed) && c.wants_data_ahead() =>
            {
                st.preparing += 1;
                drop(st);
                let pool = self.clone();
                let thread = std::thread::Builder::new().name("ftp-data-ahead".into());
                if let Err(e) = thread.spawn(move || pool.prepare(c)) {
                    // The connection went down with the closure.
                    log::warn!("cannot start a thread to open a data connection ahead: {e}");
                    let mut st = self.state.lock();
                    st.preparing -= 1;
                    st.total -= 1;
                }
            }
            Some(c) if !c.is_dead() => st.idle.push(Idle { conn: c, since: Instant::now() }),
            _ => {
                st.total -= 1;
                stats::count(Counter::ConnectionLost);
            }
        }
        // Every waiter re-checks: one woken alone may be a transfer over its cap while a
        // listing that could use this connection sleeps on.
        self.freed.notify_all();
    }

    /// Logs `n` more connections in (and opens their data connections ahead) in the
    /// background, within the limit: a walk or a parallel copy then finds them ready.
    pub fn warm(self: &Arc<Self>, n: usize) {
        for _ in 0..n {
            let mut st = self.state.lock();
            if st.closing || st.total >= st.limit {
                return;
            }
            st.total += 1;
            st.preparing += 1;
            drop(st);
            self.spawn_grow();
        }
    }

    /// Makes one new connection on a short-lived thread, for a slot already counted in `total`
    /// and `preparing`.
    fn spawn_grow(self: &Arc<Self>) {
        let pool = self.clone();
        let thread = std::thread::Builder::new().name("ftp-connect".into());
        if let Err(e) = thread.spawn(move || pool.grow()) {
            log::warn!("cannot start a thread to connect: {e}");
            let mut st = self.state.lock();
            st.preparing -= 1;
            st.total -= 1;
        }
    }

    fn grow(self: &Arc<Self>) {
        match Connection::connect(&self.opts) {
            Ok(mut conn) => {
                stats::count(Counter::ConnectionOpened);
                if self.state.lock().epsv_ok {
                    conn.trust_epsv();
                }
                self.prepare(conn);
            }
            Err(e) => {
                let mut st = self.state.lock();
                st.preparing -= 1;
                st.total -= 1;
                if e.is_too_many_connections() && st.total > 0 {
                    st.limit = st.total.max(1);
                    st.limit_changed = Instant::now();
                    log::warn!("server refused another connection ({e}); pool limited to {}", st.limit);
                } else {
                    log::debug!("connecting in the background failed: {e}");
                }
                let alone = st.total == 0;
                drop(st);
                self.freed.notify_all();
                if alone && super::offline::means_unreachable(&e) {
                    self.went_offline(&e);
                }
            }
        }
    }

    /// Opens the next data connection of `conn` ahead, then makes it idle.
    fn prepare(&self, mut conn: Connection) {
        if self.data_ahead.load(Ordering::Relaxed)
            && let Err(e) = conn.open_data_ahead()
        {
            log::debug!("no data connection opened ahead: {e}");
        }
        let mut st = self.state.lock();
        st.preparing -= 1;
        if conn.is_dead() || st.closing {
            st.total -= 1;
            drop(st);
            conn.quit();
        } else {
            st.idle.push(Idle { conn, since: Instant::now() });
            drop(st);
        }
        self.freed.notify_all();
    }

    /// Runs `op`, and again on a fresh connection (after each of [`RETRY_PAUSES`]) while the
    /// connection broke under it. The flag tells whether it was retried: a command that is not
    /// idempotent (DELE, MKD, RNTO) may have taken effect the first time, so the caller checks
    /// the result when a retry fails.
    pub fn run_retrying<T>(self: &Arc<Self>, mut op: impl FnMut(&mut Connection) -> Result<T>) -> (Result<T>, bool) {
        let mut lease = match self.get(Purpose::Metadata) {
            Ok(l) => l,
            Err(e) => return (Err(e), false),
        };
        let mut res = op(&mut lease);
        let mut retried = false;
        for (attempt, pause) in RETRY_PAUSES.into_iter().enumerate() {
            match &res {
                Err(e) if self.worth_retrying(e, attempt) => {
                    // The broken connection's slot is freed before the pause.
                    lease.discard();
                    drop(lease);
                    self.before_retry(e, pause);
                }
                _ => break,
            }
            retried = true;
            lease = match self.get(Purpose::Metadata) {
                Ok(l) => l,
                Err(e) => return (Err(e), true),
            };
            res = op(&mut lease);
        }
        self.note_outcome(&res);
        (res, retried)
    }

    /// Whether a step that failed with `e` after `attempt` retries is tried again: once
    /// whenever its connection broke, and more often while the server keeps ending sessions
    /// (a busy server), unless a step used up all its retries lately; a timeout or a garbled
    /// reply gets one more chance only (each try of a silent server costs another timeout,
    /// and a hostile one answers the same again).
    pub fn worth_retrying(&self, e: &FtpError, attempt: usize) -> bool {
        if !e.is_reconnectable() {
            return false;
        }
        if attempt == 0 {
            return true;
        }
        let failing = self.retries_exhausted.lock().is_some_and(|t| t.elapsed() < FAIL_FAST_FOR);
        e.is_session_ended() && !failing
    }

    /// Notes how a step ended after its retries: still broken, the steps that follow fail
    /// fast for a while.
    pub fn note_outcome<T>(&self, res: &Result<T>) {
        if matches!(res, Err(e) if e.is_reconnectable()) {
            *self.retries_exhausted.lock() = Some(Instant::now());
        }
    }

    /// What comes before a step is tried again after `e` broke its connection: idle
    /// connections are dropped unless the server ended only that one session (a restart ends
    /// them all; vsftpd's `500 OOPS` under load ends one), then a pause of `pause`.
    pub fn before_retry(&self, e: &FtpError, pause: Duration) {
        log::info!("trying again on a fresh connection after: {e}");
        stats::count(Counter::Retry);
        if !e.ended_only_this_session() {
            self.discard_idle();
        }
        std::thread::sleep(pause);
    }

    /// Stops handing out connections: every waiting and later request fails with
    /// [`FtpError::Unmounting`]. Idle connections are closed.
    pub fn shut_down(&self) {
        self.state.lock().closing = true;
        self.freed.notify_all();
        self.close_idle();
    }

    /// Drops every idle connection without a word to the server: one broke, so the server
    /// probably dropped them all (a restart), and a retry must not find another dead one.
    pub fn discard_idle(&self) {
        for i in self.take_idle() {
            stats::count(Counter::ConnectionLost);
            i.conn.abandon();
        }
        self.freed.notify_all();
    }

    /// Closes every idle connection (at unmount).
    pub fn close_idle(&self) {
        for i in self.take_idle() {
            i.conn.quit();
        }
    }

    /// Takes every idle connection out of the pool (and out of its count).
    fn take_idle(&self) -> Vec<Idle> {
        let mut st = self.state.lock();
        let idle = std::mem::take(&mut st.idle);
        st.total -= idle.len();
        idle
    }
}

/// The pauses before each new try of a step whose connection broke: the first at once (idle
/// connections that died with a server restart are replaced), the others for a server that
/// ends sessions while it is busy. Bounded: 3.25 s of pauses and five tries in all, then the
/// error stands (and the next steps fail fast for a while: [`Pool::worth_retrying`]).
pub const RETRY_PAUSES: [Duration; 4] =
    [Duration::ZERO, Duration::from_millis(250), Duration::from_millis(1000), Duration::from_millis(2000)];

fn busy(wait: Duration) -> FtpError {
    FtpError::Busy(format!("no free connection to the server within {} s", wait.as_secs_f32()))
}

/// A connection borrowed from the pool; goes back on drop (or is discarded if dead).
pub struct Lease {
    pool: Arc<Pool>,
    conn: Option<Connection>,
    purpose: Purpose,
}

impl Lease {
    /// Drops the connection instead of returning it to the pool.
    pub fn discard(&mut self) {
        if let Some(c) = self.conn.take() {
            c.quit();
        }
    }

    fn conn_mut(&mut self) -> &mut Connection {
        match self.conn.as_mut() {
            Some(c) => c,
            None => unreachable!("a lease is only used while it holds its connection"),
        }
    }
}

impl Deref for Lease {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        match self.conn.as_ref() {
            Some(c) => c,
            None => unreachable!("a lease is only used while it holds its connection"),
        }
    }
}

impl DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn_mut()
    }
}

impl Borrow<Connection> for Lease {
    fn borrow(&self) -> &Connection {
        self
    }
}

impl BorrowMut<Connection> for Lease {
    fn borrow_mut(&mut self) -> &mut Connection {
        self.conn_mut()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.pool.give_back(self.conn.take(), self.purpose);
    }
}

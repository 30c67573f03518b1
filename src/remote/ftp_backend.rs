//! [`FtpBackend`]: the [`Backend`] trait served by the FTP connection pool.
//!
//! It owns the choices that depend on the server rather than on filesystem semantics: MLSD or
//! LIST (and falling back when MLSD is advertised but refused), link targets MLSD leaves out,
//! whether SIZE, MFMT, SITE CHMOD and APPE are available, the mapping of mount-relative paths
//! to the server's, and the one retry after a broken connection. A command that is not
//! idempotent (MKD, RMD, DELE, RNFR/RNTO) whose connection broke is sent once more; when that
//! second attempt finds its effect already in place (the directory exists, the file is gone),
//! the first attempt is taken as having succeeded before its reply was lost. An upload whose
//! final reply was lost after the server took all its data counts as landed when the server
//! shows it whole ([`super::landed`]).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::exact_times::ExactTimes;
use super::landed::{LandedCheck, reply_never_came};
use super::pool::{Lease, Pool, Purpose, RETRY_PAUSES};
use crate::backend::paths::split_path;
use crate::backend::{
    AfterUpload, Backend, BackendResult, Entry, EntryKind, ReadStream, Settled, WriteMode, WriteStream,
};
use crate::error::FsError;
use crate::ftp::upload::Settle;
use crate::ftp::{self, Connection, Download, Features, FtpError, ListContext, Op, Upload};
use crate::stats::{self, TransferMeter};

/// Settings of the FTP backend.
#[derive(Clone, Debug)]
pub struct FtpBackendConfig {
    /// The remote directory mounted at the root, absolute (`/` or `/some/dir`).
    pub remote_root: String,
    /// Use MLSD when the server offers it.
    pub use_mlsd: bool,
    /// Offset of the server's LIST times from UTC, seconds.
    pub list_tz_offset: i64,
    /// Check each whole-file upload against the server's digest (`-o verify_upload`).
    pub verify_upload: bool,
    /// Show absolute link targets inside the mounted directory relative (see `symlinks`).
    pub transform_symlinks: bool,
    /// Show links as what the server resolves them to (see `symlinks`).
    pub follow_symlinks: bool,
}

impl FtpBackendConfig {
    /// The server's directory `remote_root` mounted with the default options.
    pub fn new(remote_root: &str) -> FtpBackendConfig {
        FtpBackendConfig {
            remote_root: remote_root.to_string(),
            use_mlsd: true,
            list_tz_offset: 0,
            verify_upload: false,
            transform_symlinks: true,
            follow_symlinks: false,
        }
    }
}

/// The pool as a [`Backend`].
pub struct FtpBackend {
    /// The digest each whole-file upload is checked with (`-o verify_upload`, where offered).
    verify_with: Option<crate::checksum::Algorithm>,
    cfg: FtpBackendConfig,
    pool: Arc<Pool>,
    features: Features,
    /// MLSD is advertised but not understood: LIST is used instead.
    mlsd_broken: AtomicBool,
    /// The server refused MLST although it advertised it: names are looked up in listings.
    mlst_broken: AtomicBool,
    chmod_unsupported: AtomicBool,
    appe_refused: AtomicBool,
    /// Directories where the server took an APPE (the last few): later appends there may send
    /// their data before its first reply (a server may refuse APPE in one directory and take
    /// it in another: there the first APPE finds out, before any data). A refusal that comes
    /// only after early data (a file of the directory the user may not write) fails the close,
    /// as any refused upload does.
    appe_taken: AppeDirs,
    /// Setting times with the two-argument MDTM (servers without MFMT): not tried yet,
    /// confirmed by a time read back, or found not to work.
    mdtm_write: std::sync::atomic::AtomicU8,
    /// Exact times for the files of coarse (LIST) listings, with MDTM.
    exact_times: ExactTimes,
    /// Batches of listings by STAT are possible (vsftpd) and did not go wrong yet.
    stat_batches: AtomicBool,
}

/// [`FtpBackend::mdtm_write`]'s states.
const MDTM_WRITE_UNKNOWN: u8 = 0;
const MDTM_WRITE_WORKS: u8 = 1;
/// The directories where the server took an APPE.
type AppeDirs = Arc<parking_lot::Mutex<lru::LruCache<String, ()>>>;

/// Directories remembered as taking APPE.
const APPE_DIRS: std::num::NonZeroUsize = std::num::NonZeroUsize::new(64).expect("not zero");
const MDTM_WRITE_NO: u8 = 2;

/// Turns a wire error into its kind for `op`, logging the details (which the kind drops).
fn kind(e: FtpError, op: Op) -> FsError {
    let k = e.kind(op);
    log::debug!("{op:?} failed: {e} → {k:?}");
    crate::stats::error(k.name());
    k
}

fn convert(e: ftp::Entry) -> Entry {
    let kind = match e.kind {
        ftp::EntryKind::File => EntryKind::File,
        ftp::EntryKind::Dir => EntryKind::Dir,
        ftp::EntryKind::Symlink(t) => EntryKind::Symlink(t),
    };
    let mtime_exact = e.mtime.is_some() && e.mtime_step <= 1;
    Entry { name: e.name, kind, size: e.size, mtime: e.mtime, mtime_nanos: e.mtime_nanos, mode: e.mode, mtime_exact }
}

struct FtpRead(Download<Lease>, TransferMeter);

impl Read for FtpRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.0.read(buf)?;
        self.1.moved(n);
        Ok(n)
    }
}

impl ReadStream for FtpRead {
    fn finish(self: Box<Self>) -> BackendResult<()> {
        self.0.finish().map_err(|e| kind(e, Op::Read))
    }
}

struct FtpWrite {
    /// `None` only while [`FtpWrite::start_again`] replaces it.
    up: Option<Upload<Lease>>,
    op: Op,
    /// The server path to ask SIZE of in the upload's last round trip (where SIZE exists).
    size_of: Option<String>,
    /// Where to start the upload once more if it broke before the server's first reply (see
    /// `ftp::upload`): the pool and the server path (a STOR: an APPE never goes early). Taken
    /// by the one retry.
    again: Option<(Arc<Pool>, String)>,
    /// The server's refusal a write reported, reported again by the finish.
    refused: Option<FsError>,
    meter: TransferMeter,
    /// For a STOR on a server with SIZE: how to tell, when its final reply is lost, whether it
    /// landed anyway.
    landed: Option<LandedCheck>,
    /// How a time goes behind the data ([`WriteStream::finish_then`]); `None`: not known to work.
    time_verb: Option<TimeVerb>,
    /// The server takes SITE CHMOD (as far as known).
    chmod: bool,
    /// For an APPE: where to note that the server took one in its directory.
    appe_taken: Option<(AppeDirs, String)>,
}

impl FtpWrite {
    fn up(&mut self) -> ftp::Result<&mut Upload<Lease>> {
        self.up.as_mut().ok_or(FtpError::Closed)
    }

    /// Starts the upload again on a fresh connection when it broke before the server's first
    /// reply in a way that proves the server did nothing with it, sending again what it had
    /// sent. `false`: it cannot be (a refusal, a failure later on, or the retry was used).
    fn start_again(&mut self) -> ftp::Result<bool> {
        let Some(sent) = self.up()?.replay_after_failure() else { return Ok(false) };
        let Some((pool, remote)) = self.again.take() else { return Ok(false) };
        log::info!("upload of {remote} broke before the server's first reply; once more on a fresh connection");
        // The broken connection goes back first: it holds one of the pool's transfer slots.
        self.up = None;
        pool.discard_idle();
        let mut up = Upload::start(pool.get(Purpose::Transfer)?, &remote, false)?;
        up.write_all(&sent).map_err(FtpError::Io)?;
        self.up = Some(up);
        Ok(true)
    }

    /// The error a failed write returns: the errno of the server's refusal where there was one
    /// (kept for the finish too).
    fn write_error(&mut self, e: io::Error) -> io::Error {
        match self.up.as_mut().and_then(Upload::take_failure) {
            Some(f) => {
                let k = kind(f, self.op);
                self.refused = Some(k);
                io::Error::from_raw_os_error(k.errno())
            }
            None => e,
        }
    }

    /// After the final reply of the upload was lost (`e`): `Ok` with the size when the server
    /// took all the data and shows it whole ([`LandedCheck`]), else `e`.
    fn landed_anyway(&mut self, e: FtpError) -> ftp::Result<Option<u64>> {
        let Some(sent) = self.up.as_ref().and_then(Upload::delivered) else { return Err(e) };
        let Some(check) = self.landed.take() else { return Err(e) };
        // The broken connection goes back first: it holds one of the pool's slots.
        self.up = None;
        if check.holds(sent, &e) { Ok(Some(sent)) } else { Err(e) }
    }

    fn finish_once(&mut self, then: &[Settle]) -> ftp::Result<(Option<u64>, Vec<bool>)> {
        let size_of = self.size_of.clone();
        let up = self.up()?;
        match size_of {
            Some(path) => up.end_with_size_then(&path, then),
            None => up.end().map(|()| (None, vec![false; then.len()])),
        }
    }

    /// Ends the upload, with `then` in its last round trip where the server allows.
    fn finish_with(mut self: Box<Self>, then: &[Settle]) -> BackendResult<(Option<u64>, Vec<bool>)> {
        if let Some(k) = self.refused {
            return Err(k);
        }
        let res = match self.finish_once(then) {
            Err(e) => match self.start_again() {
                Ok(true) => self.finish_once(then),
                Ok(false) => Err(e),
                Err(again) => Err(again),
            },
            done => done,
        };
        let res = match res {
            Err(e) if reply_never_came(&e) => self.landed_anyway(e).map(|size| (size, vec![false; then.len()])),
            other => other,
        };
        if res.is_ok()
            && let Some((taken, dir)) = &self.appe_taken
        {
            taken.lock().put(dir.clone(), ());
        }
        res.map_err(|e| kind(e, self.op))
    }
}

impl Write for FtpWrite {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let res = match self.up.as_mut() {
            Some(up) => up.write(buf),
            None => Err(io::Error::new(io::ErrorKind::NotConnected, "upload ended")),
        };
        let res = match res {
            Ok(n) => Ok(n),
            Err(e) => match self.start_again() {
                Ok(true) => self.up().map_err(|e| io::Error::other(e.to_string()))?.write(buf),
                Ok(false) => Err(self.write_error(e)),
                Err(again) => Err(io::Error::from_raw_os_error(kind(again, self.op).errno())),
            },
        };
        if let Ok(n) = res {
            self.meter.moved(n);
        }
        res
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.up.as_mut() {
            Some(up) => up.flush(),
            None => Ok(()),
        }
    }
}

impl WriteStream for FtpWrite {
    fn finish(self: Box<Self>) -> BackendResult<Option<u64>> {
        self.finish_with(&[]).map(|(size, _)| size)
    }

    fn finish_then(self: Box<Self>, after: AfterUpload) -> BackendResult<(Option<u64>, Settled)> {
        let time = match self.time_verb {
            Some(TimeVerb::Mfmt) => after.mtime.map(Settle::Mfmt),
            Some(TimeVerb::MdtmSet) => after.mtime.map(Settle::MdtmSet),
            None => None,
        };
        let mode = after.mode.filter(|_| self.chmod).map(Settle::Chmod);
        let then: Vec<Settle> = time.into_iter().chain(mode).collect();
        let (size, taken) = self.finish_with(&then)?;
        let took = |wanted: Settle| then.iter().zip(&taken).any(|(s, t)| *t && *s == wanted);
        let settled = Settled { mtime: time.is_some_and(took), mode: mode.is_some_and(took) };
        Ok((size, settled))
    }
}

/// How this server is known to set a file's time (folded into an upload's last round trip).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TimeVerb {
    Mfmt,
    MdtmSet,
}

impl FtpBackend {
    pub fn new(cfg: FtpBackendConfig, pool: Arc<Pool>, features: Features) -> FtpBackend {
        let exact_times = ExactTimes::new(features.mdtm);
        let stat_batches = AtomicBool::new(ftp::stat_list::stat_lists_like_list(pool.welcome()));
        let verify_with = if cfg.verify_upload { super::verify::algorithm_for(&features.checksums()) } else { None };
        match verify_with {
            Some(a) => {
                log::info!("verify_upload: each upload is checked against the server's {} digest", a.short_name())
            }
            None if cfg.verify_upload => log::warn!(
                "verify_upload: the server computes no SHA digest (HASH, XSHA256, XSHA1): uploads are checked by size only"
            ),
            None => {}
        }
        FtpBackend {
            verify_with,
            exact_times,
            cfg,
            pool,
            features,
            mlsd_broken: AtomicBool::new(false),
            mlst_broken: AtomicBool::new(false),
            chmod_unsupported: AtomicBool::new(false),
            mdtm_write: std::sync::atomic::AtomicU8::new(MDTM_WRITE_UNKNOWN),
            appe_refused: AtomicBool::new(false),
            appe_taken: Arc::new(parking_lot::Mutex::new(lru::LruCache::new(APPE_DIRS))),
            stat_batches,
        }
    }

    /// Whether listings come from MLSD (exact, one data connection each) rather than LIST.
    fn uses_mlsd(&self) -> bool {
        self.cfg.use_mlsd && self.features.mlst.is_some() && !self.mlsd_broken.load(Ordering::Relaxed)
    }

    /// LIST listings of several directories by one batch of STATs and one of MDTMs, on one
    /// connection, tried once: what goes wrong is an error for each (work ahead drops them).
    fn stat_batch(&self, dirs: &[String]) -> Vec<BackendResult<Vec<Entry>>> {
        let remotes: Vec<String> = dirs.iter().map(|d| self.remote(d)).collect();
        let ctx = ListContext { tz_offset: self.cfg.list_tz_offset, ..ListContext::now_utc() };
        let listed = self.pool.get(Purpose::Metadata).and_then(|mut c| {
            if !c.can_list_by_stat() {
                return Ok(None);
            }
            let mut listings = c.stat_listings(&remotes, &ctx)?;
            let mut refs: Vec<(&str, &mut [ftp::Entry])> =
                remotes.iter().map(String::as_str).zip(listings.iter_mut().map(Vec::as_mut_slice)).collect();
            self.exact_times.refine_many(&mut c, &mut refs, ctx.tz_offset)?;
            Ok(Some(listings))
        });
        match listed {
            Ok(Some(listings)) => listings.into_iter().zip(&remotes).map(|(l, dir)| Ok(self.shown(dir, l))).collect(),
            Ok(None) => {
                self.stat_batches.store(false, Ordering::Relaxed);
                dirs.iter().map(|d| self.list(d)).collect()
            }
            Err(e) => {
                if matches!(e, FtpError::Protocol(_)) {
                    log::info!("listing several directories by STAT failed ({e}); one LIST each from now on");
                    self.stat_batches.store(false, Ordering::Relaxed);
                } else {
                    log::debug!("listing several directories by STAT: {e}");
                }
                let err = kind(e, Op::Lookup);
                dirs.iter().map(|_| Err(err)).collect()
            }
        }
    }

    /// The server path of a mount-relative path.
    fn remote(&self, rel: &str) -> String {
        let root = self.cfg.remote_root.trim_end_matches('/');
        if rel.is_empty() {
            if root.is_empty() { "/".to_string() } else { root.to_string() }
        } else {
            format!("{root}/{rel}")
        }
    }

    /// The entries of the server directory `dir` as the mount shows them (link targets made
    /// relative with `transform_symlinks`). Same layout on both sides: converted in place,
    /// without a second vector.
    fn shown(&self, dir: &str, entries: Vec<ftp::Entry>) -> Vec<Entry> {
        let root = &self.cfg.remote_root;
        let transform = self.cfg.transform_symlinks;
        entries
            .into_iter()
            .map(convert)
            .map(|mut e| {
                if matches!(e.kind, EntryKind::Symlink(_)) && self.cfg.follow_symlinks {
                    let path = format!("{}/{}", dir.trim_end_matches('/'), e.name);
                    match self.pool.run_retrying(|c| super::symlinks::follow_on_server(c, dir, &path)).0 {
                        Ok(Some(target)) => return Entry { name: e.name, ..target },
                        Ok(None) => {
                            log::debug!("{path}: not followed (leads nowhere, loops, or to a directory holding it)")
                        }
                        Err(err) => log::info!("{path}: cannot follow the link ({err}); shown as a link"),
                    }
                }
                if let EntryKind::Symlink(Some(t)) = &mut e.kind
                    && transform
                {
                    *t = super::symlinks::shown_target(root, dir, t);
                }
                e
            })
            .collect()
    }

    /// LIST of `remote`, with exact times for its files where the listing's are coarse.
    fn list_exactly(&self, c: &mut Connection, remote: &str, ctx: &ListContext) -> ftp::Result<Vec<ftp::Entry>> {
        let mut entries = c.list(remote, ctx)?;
        self.exact_times.refine(c, remote, &mut entries, ctx.tz_offset)?;
        Ok(entries)
    }

    /// An idempotent command, retried on a fresh connection if the connection broke.
    fn idempotent<T>(&self, op: Op, f: impl FnMut(&mut Connection) -> ftp::Result<T>) -> BackendResult<T> {
        self.pool.run_retrying(f).0.map_err(|e| kind(e, op))
    }

    /// A command that is not idempotent, sent once more if the connection broke. When that
    /// second attempt fails with `done` (the directory exists, the file is gone) and the
    /// server's listing shows the effect in place (`took_effect`), the first attempt is taken
    /// as having succeeded before its reply was lost.
    fn once_more(
        &self,
        op: Op,
        done: FsError,
        took_effect: impl FnOnce() -> bool,
        f: impl FnMut(&mut Connection) -> ftp::Result<()>,
    ) -> BackendResult<()> {
        match self.pool.run_retrying(f) {
            (Ok(()), _) => Ok(()),
            (Err(e), true) if e.kind(op) == done && took_effect() => {
                log::debug!("{op:?}: the attempt whose reply was lost took effect ({e})");
                Ok(())
            }
            (Err(e), _) => Err(kind(e, op)),
        }
    }

    /// The entry `path` has in its directory's listing on the server now (`Err` when the
    /// listing cannot be had).
    fn listed(&self, path: &str) -> BackendResult<Option<Entry>> {
        let (dir, name) = split_path(path);
        Ok(self.list(dir)?.into_iter().find(|e| e.name == name))
    }

    /// MLSD may name a link without its target (pure-ftpd); LIST shows `name -> target`.
    fn add_link_targets(&self, remote: &str, ctx: &ListContext, entries: &mut [ftp::Entry]) {
        if !entries.iter().any(|e| e.kind == ftp::EntryKind::Symlink(None)) {
            return;
        }
        let Ok(listed) = self.pool.run_retrying(|c| c.list(remote, ctx)).0 else { return };
        let targets: HashMap<String, String> = listed
            .into_iter()
            .filter_map(|e| match e.kind {
                ftp::EntryKind::Symlink(Some(t)) => Some((e.name, t)),
                _ => None,
            })
            .collect();
        for e in entries.iter_mut().filter(|e| e.kind == ftp::EntryKind::Symlink(None)) {
            if let Some(t) = targets.get(&e.name) {
                e.kind = ftp::EntryKind::Symlink(Some(t.clone()));
            }
        }
    }

    /// A transfer connection within `wait`; `None` when none became free.
    /// A transfer connection within `wait`; `None` when none became free. Asked for one at once
    /// (`wait` zero: the caller spools instead), a server refusing another connection counts as
    /// none free; a caller that waits gets the refusal.
    fn transfer_lease(&self, wait: Duration) -> BackendResult<Option<Lease>> {
        match self.pool.get_timeout(Purpose::Transfer, wait) {
            Err(e) if wait.is_zero() && e.is_too_many_connections() => {
                log::debug!("no transfer connection: {e}");
                Ok(None)
            }
            other => other.map_err(|e| kind(e, Op::Session)),
        }
    }

    /// Starts a transfer on a transfer connection (waiting at most `wait` for one; `None` when
    /// none became free), again on fresh connections while they turn out broken
    /// ([`RETRY_PAUSES`]) in a way `repeatable` allows. The server's refusal of the transfer
    /// itself is turned into a kind by `refused`.
    ///
    /// An upload is started again only when its failure proves the old session did nothing with
    /// it ([`ftp::upload::session_took_no_action`]): one whose preliminary reply timed out may
    /// still be carried out by that session later, and a STOR then stores what its data
    /// connection (closed by us) held, nothing, over the copy sent again.
    fn start_transfer<T>(
        &self,
        wait: Duration,
        start: impl Fn(Lease) -> ftp::Result<T>,
        repeatable: impl Fn(&FtpError) -> bool,
        refused: impl FnOnce(FtpError) -> FsError,
    ) -> BackendResult<Option<T>> {
        let Some(lease) = self.transfer_lease(wait)? else { return Ok(None) };
        let mut res = start(lease);
        for (attempt, pause) in RETRY_PAUSES.into_iter().enumerate() {
            match &res {
                // A caller that waits for nothing (it spools instead) gets one retry at once.
                Err(e)
                    if repeatable(e) && self.pool.worth_retrying(e, attempt) && (attempt == 0 || !wait.is_zero()) =>
                {
                    self.pool.before_retry(e, pause)
                }
                _ => break,
            }
            match self.transfer_lease(wait)? {
                Some(lease) => res = start(lease),
                // No connection free now: the last failure stands.
                None => break,
            }
        }
        self.pool.note_outcome(&res);
        res.map(Some).map_err(refused)
    }
}

impl Backend for FtpBackend {
    fn list(&self, dir: &str) -> BackendResult<Vec<Entry>> {
        let remote = self.remote(dir);
        let ctx = ListContext { tz_offset: self.cfg.list_tz_offset, ..ListContext::now_utc() };
        let entries = if self.uses_mlsd() {
            match self.pool.run_retrying(|c| c.mlsd(&remote)).0 {
                Ok(mut entries) => {
                    self.add_link_targets(&remote, &ctx, &mut entries);
                    entries
                }
                Err(e) if e.kind(Op::Mlsd) == FsError::Unsupported => {
                    log::warn!("server advertises MLSD but refuses it ({e}); using LIST");
                    self.mlsd_broken.store(true, Ordering::Relaxed);
                    self.idempotent(Op::Lookup, |c| self.list_exactly(c, &remote, &ctx))?
                }
                Err(e) => return Err(kind(e, Op::Lookup)),
            }
        } else {
            self.idempotent(Op::Lookup, |c| self.list_exactly(c, &remote, &ctx))?
        };
        Ok(self.shown(&remote, entries))
    }

    fn stat_one(&self, path: &str) -> BackendResult<Option<Entry>> {
        if self.features.mlst.is_none() || self.mlst_broken.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let remote = self.remote(path);
        match self.idempotent(Op::Lookup, |c| c.mlst(&remote)) {
            Ok(e) => {
                let mut e = self.shown(&self.remote(split_path(path).0), vec![e]).remove(0);
                e.name = split_path(path).1.to_string();
                Ok(Some(e))
            }
            Err(FsError::Unsupported) => {
                log::info!("server advertises MLST but refuses it; looking names up in listings");
                self.mlst_broken.store(true, Ordering::Relaxed);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn size(&self, path: &str) -> BackendResult<Option<u64>> {
        if !self.features.size {
            return Ok(None);
        }
        let remote = self.remote(path);
        self.idempotent(Op::Lookup, |c| c.size(&remote)).map(Some)
    }

    fn checksums(&self) -> Vec<crate::checksum::Algorithm> {
        self.features.checksums()
    }

    fn checksum(&self, path: &str, a: crate::checksum::Algorithm) -> BackendResult<String> {
        let remote = self.remote(path);
        self.idempotent(Op::Lookup, |c| c.checksum(&remote, a))
    }

    fn modified(&self, path: &str) -> BackendResult<Option<i64>> {
        if !self.features.mdtm {
            return Ok(None);
        }
        let remote = self.remote(path);
        self.idempotent(Op::Lookup, |c| c.mdtm(&remote)).map(|(secs, _)| Some(secs))
    }

    fn read(&self, path: &str, offset: u64, wait: Duration) -> BackendResult<Option<Box<dyn ReadStream>>> {
        let remote = self.remote(path);
        let start = |lease| Download::start(lease, &remote, offset);
        let dl = self.start_transfer(wait, start, |_| true, |e| kind(e, Op::Read))?;
        Ok(dl.map(|dl| Box::new(FtpRead(dl, stats::transfer(&format!("/{path}"), false))) as Box<dyn ReadStream>))
    }

    fn write(&self, path: &str, mode: WriteMode, wait: Duration) -> BackendResult<Option<Box<dyn WriteStream>>> {
        let append = mode.appends();
        if append && !self.can_append() {
            return Err(FsError::Unsupported);
        }
        let op = if append { Op::Append } else { Op::Write };
        let remote = self.remote(path);
        let refused = |e| {
            let k = kind(e, op);
            if append && k == FsError::Unsupported {
                log::info!("server refused APPE; appending through a temp copy from now on");
                self.appe_refused.store(true, Ordering::Relaxed);
            }
            k
        };
        let parent = split_path(path).0.to_string();
        let appe_known = append && self.appe_taken.lock().get(&parent).is_some();
        let start = |lease| match append {
            true if appe_known => Upload::start_early_append(lease, &remote),
            true => Upload::start(lease, &remote, true),
            false => Upload::start_early(lease, &remote),
        };
        let began = std::time::SystemTime::now();
        let up = self.start_transfer(wait, start, ftp::upload::session_took_no_action, refused)?;
        let size_of = self.features.size.then(|| remote.clone());
        let landed = (!append && self.features.size).then(|| LandedCheck {
            pool: self.pool.clone(),
            remote: remote.clone(),
            began,
            mdtm: self.features.mdtm,
        });
        let again = (!append).then(|| (self.pool.clone(), remote.clone()));
        let verify_with = self.verify_with.filter(|_| !append);
        let time_verb = if self.features.mfmt {
            Some(TimeVerb::Mfmt)
        } else if self.features.mdtm && self.mdtm_write.load(Ordering::Relaxed) == MDTM_WRITE_WORKS {
            Some(TimeVerb::MdtmSet)
        } else {
            None
        };
        Ok(up.map(|up| {
            let meter = stats::transfer(&format!("/{path}"), true);
            let w = Box::new(FtpWrite {
                up: Some(up),
                op,
                size_of,
                again,
                refused: None,
                meter,
                landed,
                time_verb,
                chmod: self.can_chmod(),
                appe_taken: append.then(|| (self.appe_taken.clone(), parent)),
            });
            match verify_with {
                Some(a) => {
                    Box::new(super::verify::Verified::new(w, a, self.pool.clone(), remote)) as Box<dyn WriteStream>
                }
                None => w as Box<dyn WriteStream>,
            }
        }))
    }

    fn mkdir(&self, path: &str) -> BackendResult<()> {
        let remote = self.remote(path);
        let is_dir = || self.listed(path).is_ok_and(|e| e.is_some_and(|e| e.is_dir()));
        self.once_more(Op::Mkdir, FsError::Exists, is_dir, |c| c.mkd(&remote).map(drop))
    }

    fn symlink(&self, target: crate::backend::LinkTarget<'_>, link: &str) -> BackendResult<()> {
        // Servers that list their SITE commands in FEAT say whether SYMLINK is one; the others
        // are asked, and a refusal of the command is EPERM as where it is not listed.
        let site = &self.features.site;
        if !site.is_empty() && !site.iter().any(|s| s == "SYMLINK") {
            return Err(FsError::NotPermitted);
        }
        let target = match target {
            crate::backend::LinkTarget::InMount(p) => self.remote(p),
            crate::backend::LinkTarget::Verbatim(t) => t.to_string(),
        };
        let remote = self.remote(link);
        let made = || self.listed(link).is_ok_and(|e| e.is_some_and(|e| matches!(e.kind, EntryKind::Symlink(_))));
        self.once_more(Op::Mkdir, FsError::Exists, made, |c| c.site_symlink(&target, &remote))
    }

    fn rmdir(&self, path: &str) -> BackendResult<()> {
        let remote = self.remote(path);
        let gone = || matches!(self.listed(path), Ok(None));
        self.once_more(Op::Rmdir, FsError::NotFound, gone, |c| c.rmd(&remote))
    }

    fn delete(&self, path: &str) -> BackendResult<()> {
        let remote = self.remote(path);
        let gone = || matches!(self.listed(path), Ok(None));
        self.once_more(Op::Delete, FsError::NotFound, gone, |c| c.dele(&remote))
    }

    fn rename(&self, from: &str, to: &str) -> BackendResult<()> {
        let (rfrom, rto) = (self.remote(from), self.remote(to));
        let moved = || matches!(self.listed(from), Ok(None)) && matches!(self.listed(to), Ok(Some(_)));
        self.once_more(Op::Rename, FsError::NotFound, moved, |c| c.rename(&rfrom, &rto))
    }

    fn can_set_mtime(&self) -> bool {
        self.features.mfmt || (self.features.mdtm && self.mdtm_write.load(Ordering::Relaxed) != MDTM_WRITE_NO)
    }

    fn set_mtime(&self, path: &str, secs: i64) -> BackendResult<()> {
        let remote = self.remote(path);
        if self.features.mfmt {
            return self.idempotent(Op::SetAttr, |c| c.mfmt(&remote, secs));
        }
        if !self.can_set_mtime() {
            return Err(FsError::Unsupported);
        }
        let set = self.idempotent(Op::SetAttr, |c| c.mdtm_set(&remote, secs));
        if self.mdtm_write.load(Ordering::Relaxed) == MDTM_WRITE_WORKS {
            return set;
        }
        // Not known yet: the time read back says whether the server set it (a server that
        // takes the time for part of a name answers 550, or 213 with the file's old time).
        let read_back = self.idempotent(Op::Lookup, |c| c.mdtm(&remote)).map(|(t, _)| t);
        match (set, read_back) {
            (Ok(()), Ok(t)) if t == secs => {
                log::info!("server sets times with the two-argument MDTM");
                self.mdtm_write.store(MDTM_WRITE_WORKS, Ordering::Relaxed);
                Ok(())
            }
            // The file is there and its time did not become `secs` although the server took
            // the command, or it said it does not know it: the form is not understood. (Any
            // other refusal, such as a file the user may not change, proves nothing.)
            (Ok(()) | Err(FsError::Unsupported), Ok(t)) => {
                log::info!("server does not set times with MDTM (asked {secs}, has {t}); times are not set");
                self.mdtm_write.store(MDTM_WRITE_NO, Ordering::Relaxed);
                Err(FsError::Unsupported)
            }
            (Err(e), Ok(_)) => Err(e),
            (set, Err(e)) => set.and(Err(e)),
        }
    }

    fn chmod(&self, path: &str, mode: u32) -> BackendResult<()> {
        if !self.can_chmod() {
            return Err(FsError::Unsupported);
        }
        let remote = self.remote(path);
        let res = self.idempotent(Op::SetAttr, |c| c.site_chmod(&remote, mode));
        if res == Err(FsError::Unsupported) {
            log::info!("server has no SITE CHMOD; chmod requests are ignored");
            self.chmod_unsupported.store(true, Ordering::Relaxed);
        }
        res
    }

    fn can_append(&self) -> bool {
        !self.appe_refused.load(Ordering::Relaxed)
    }

    fn can_chmod(&self) -> bool {
        !self.chmod_unsupported.load(Ordering::Relaxed)
    }

    fn is_offline(&self) -> bool {
        self.pool.is_offline()
    }

    fn lists_at_once(&self) -> usize {
        if !self.uses_mlsd() && self.stat_batches.load(Ordering::Relaxed) { ftp::stat_list::MAX_BATCH } else { 1 }
    }

    fn list_several(&self, dirs: &[String]) -> Vec<BackendResult<Vec<Entry>>> {
        if dirs.len() < 2 || self.lists_at_once() < 2 {
            return dirs.iter().map(|d| self.list(d)).collect();
        }
        dirs.chunks(ftp::stat_list::MAX_BATCH).flat_map(|chunk| self.stat_batch(chunk)).collect()
    }

    fn can_name(&self, name: &str) -> bool {
        if ftp::command::check_arg(name).is_err() {
            return false;
        }
        match self.pool.options().encoding {
            Some(enc) => !enc.encode(name).2,
            None => true,
        }
    }

    fn wait_limit(&self) -> Duration {
        self.pool.wait_limit()
    }

    fn spare_connections(&self) -> usize {
        self.pool.spare()
    }

    fn wait_for_spare(&self, wait: Duration) -> usize {
        self.pool.wait_spare(wait)
    }

    fn close_idle(&self) {
        self.pool.close_idle();
    }

    fn shut_down(&self) {
        self.pool.shut_down();
    }
}

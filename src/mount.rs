//! Start-up and lifetime of a mount: checks that fail fast (mountpoint, server, login, remote
//! directory), going to the background once the mount is ready (the parent exits 0 only then),
//! signal handling (SIGINT/SIGTERM/SIGHUP unmount cleanly) and the end when `fusermount -u` runs.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fuser::{Config, MountOption, Session, SessionACL};

use crate::adapter::FtpFs;
use crate::backend::Backend;
use crate::backend::ahead::{Ahead, AheadConfig};
use crate::backend::atomic::AtomicUploads;
use crate::backend::delayed::Delayed;
use crate::cli::{MountOpts, Target};
use crate::disk_cache::DiskCache;
use crate::error::FsError;
use crate::ftp::{ConnectOptions, Connection, FtpError};
use crate::journal_dirs::{remove_if_only_lock, writeback_journal};
use crate::model::{Model, ModelConfig};
use crate::mount_table::mount_device;
use crate::remote::{FtpBackend, FtpBackendConfig, Pool};

/// Why a mount could not start; printed as `ftpfs: <message>`.
pub type StartError = String;

/// Refuses a mountpoint that is missing, not a directory, or already a mount point.
pub fn check_mountpoint(p: &Path) -> Result<PathBuf, StartError> {
    let canon = p.canonicalize().map_err(|e| format!("mountpoint {}: {e}", p.display()))?;
    if !canon.is_dir() {
        return Err(format!("mountpoint {} is not a directory", p.display()));
    }
    if mount_device(&canon).is_some() {
        return Err(format!("mountpoint {} is already mounted", p.display()));
    }
    Ok(canon)
}

/// The option that makes the type `fuse.ftpfs` in /proc/mounts and `df -T`. fuser 0.18 hands
/// `Subtype` to fusermount only; as root it calls mount(2) with plain "fuse" and drops it. The
/// kernel takes `subtype=` as a mount option since Linux 5.4 (older ones refuse the mount), and
/// fusermount takes it always.
fn subtype_option() -> MountOption {
    if !kernel_at_least(5, 4) {
        return MountOption::Subtype("ftpfs".into());
    }
    MountOption::CUSTOM("subtype=ftpfs".into())
}

/// Whether the running kernel is `major.minor` or newer (true when it cannot be told).
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split(['.', '-']).map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => true,
    }
}

/// Connects, logs in and finds the remote directory, to fail fast with the server's own message.
/// The whole of it (TCP connect, greeting, login, PWD/CWD) is bounded by the `timeout` option:
/// one deadline, and a second or third try only gets what is left of it. Only a connection that
/// broke (reset, closed, 421) is tried again, up to twice; not a timeout (the error names the step
/// that ran out of time), a refused connection, or an answer such as a refused login.
pub fn first_connection(opts: &ConnectOptions, target: &Target) -> Result<(Connection, String), StartError> {
    connect_to_root(opts, target).map_err(|e| start_error(&e, target))
}

/// [`first_connection`], with the error as the server or the network gave it.
fn connect_to_root(opts: &ConnectOptions, target: &Target) -> crate::ftp::Result<(Connection, String)> {
    let deadline = std::time::Instant::now() + opts.timeout;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let res = Connection::connect_until(opts, deadline).and_then(|mut c| {
            let root = c.timed_step("no answer to PWD/CWD (the remote directory)", |c| remote_root(c, target))?;
            c.clear_deadline()?;
            Ok((c, root))
        });
        match res {
            Err(e) if attempt < 3 && start_up_broke(&e) && std::time::Instant::now() < deadline => {
                log::info!("start-up connection broke ({e}); trying again");
            }
            res => return res,
        }
    }
}

/// The message for a connection that could not be made at start.
fn start_error(e: &FtpError, target: &Target) -> StartError {
    match e {
        // A step ran out of time: the message is the step's ("no greeting from …").
        FtpError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            format!("cannot connect to {}: {io}", target.display_url())
        }
        e => match e.code() {
            Some(530) => format!("login to {} failed: {e}", target.display_url()),
            Some(_) => format!("{}: {e}", target.display_url()),
            None => format!("cannot connect to {}: {e}", target.display_url()),
        },
    }
}

/// True when a start-up connection broke under us (reset, closed, 421 closing, the login dropped), so a fresh one
/// may work. A timeout, a refused connection or any other answer is final.
fn start_up_broke(e: &FtpError) -> bool {
    use std::io::ErrorKind::*;
    match e {
        FtpError::Io(io) => {
            matches!(io.kind(), ConnectionReset | ConnectionAborted | UnexpectedEof | BrokenPipe | NotConnected)
        }
        FtpError::Closed | FtpError::LoggedOut(_) => true,
        FtpError::Reply { code, .. } => *code == 421,
        _ => false,
    }
}

/// The remote directory to mount: the URL's, or the login directory. Checked to exist.
fn remote_root(conn: &mut Connection, target: &Target) -> crate::ftp::Result<String> {
    let dir = match &target.dir {
        Some(d) => d.clone(),
        None => match conn.pwd() {
            Ok(d) => d,
            Err(e) if e.is_fatal_for_connection() => return Err(e),
            Err(_) => "/".to_string(),
        },
    };
    conn.cwd(&dir).map_err(|e| match e {
        FtpError::Reply { code, text } => FtpError::Reply { code, text: format!("remote directory {dir}: {text}") },
        other => other,
    })?;
    Ok(if dir.is_empty() { "/".into() } else { dir })
}

/// The parent's end of the start-up report: the child writes "ok" or an error message.
pub struct Report {
    write: Option<File>,
}

impl Report {
    fn foreground() -> Report {
        Report { write: None }
    }

    pub fn ready(&mut self) {
        if let Some(mut w) = self.write.take() {
            let _ = w.write_all(b"ok");
        }
    }

    pub fn failed(&mut self, msg: &str) {
        if let Some(mut w) = self.write.take() {
            let _ = w.write_all(msg.as_bytes());
        }
    }
}

/// Threads serving kernel requests (more when there are many connections).
const REQUEST_THREADS: usize = 32;

/// Forks: the parent waits for the child's report and exits with it; the child continues with a
/// [`Report`] to send when the mount is ready. Must run before any thread is started.
pub fn daemonize() -> Result<Report, StartError> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe() fills the two descriptors we pass it.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: the descriptors were just created and are owned by nothing else.
    let (read_end, write_end) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: no other thread exists yet (checked by the caller's order of work).
    match unsafe { libc::fork() } {
        -1 => Err(format!("fork: {}", std::io::Error::last_os_error())),
        0 => {
            drop(read_end);
            // SAFETY: plain syscall, no memory involved.
            unsafe { libc::setsid() };
            crate::logging::after_fork();
            Ok(Report { write: Some(File::from(write_end)) })
        }
        _child => {
            drop(write_end);
            let mut msg = String::new();
            let _ = File::from(read_end).read_to_string(&mut msg);
            if msg == "ok" {
                crate::logging::flush();
                std::process::exit(0);
            }
            if msg.is_empty() {
                msg = "the mount process ended before the mount was ready".into();
            }
            eprintln!("ftpfs: {msg}");
            crate::logging::flush();
            std::process::exit(1);
        }
    }
}

/// Points stdin/stdout/stderr at /dev/null (the background process has no terminal).
fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}

/// A server whose EPSV and data connection take longer than this at mount is far away: the
/// pool logs its other connections in ahead of need (on a LAN or loopback they would only
/// compete with the first requests for the server's and our CPU).
const FAR_AWAY: Duration = Duration::from_millis(3);

/// The kernel caps a FUSE mount's readahead at 128 KiB; where we may (root), raise it to 1 MiB
/// so sequential reads arrive in large requests. Found through mountinfo: a stat() of our own
/// mountpoint would wait for the session we have not started serving yet.
fn raise_readahead(mountpoint: &Path) {
    if let Some(dev) = mount_device(mountpoint) {
        let knob = format!("/sys/class/bdi/{dev}/read_ahead_kb");
        match std::fs::write(&knob, "1024") {
            Ok(()) => log::debug!("readahead raised to 1 MiB ({knob})"),
            Err(e) => log::debug!("cannot raise readahead ({knob}): {e}"),
        }
    }
}

/// How long after SIGTERM/SIGINT the process leaves even if requests are still running.
const EXIT_GRACE: Duration = Duration::from_secs(3);
/// How long after SIGTERM/SIGINT/SIGHUP uploads may still run before the process leaves
/// (systemd kills a service 90 s after its SIGTERM): what is still on its way then stays in
/// the write-back journal for the next mount.
const SIGNAL_STOP_BOUND: Duration = Duration::from_secs(60);

/// Notices an unmount made from outside (`fusermount -u`, `umount`; and meanwhile, once a
/// minute, gives freed memory back to the system): requests still waiting
/// for a connection then fail at once, and the process leaves after [`EXIT_GRACE`] even if some
/// request is still stuck on the network. After a lazy unmount (`-z`) with files still open, it
/// goes on serving them until they are closed.
fn watch_unmount(mountpoint: PathBuf, model: Arc<Model>) -> Result<(), StartError> {
    let Some(device) = mount_device(&mountpoint) else { return Ok(()) };
    std::thread::Builder::new()
        .name("unmount-watch".into())
        .spawn(move || {
            let mut ticks = 0u32;
            while mount_device(&mountpoint).as_deref() == Some(device.as_str()) {
                std::thread::sleep(Duration::from_secs(1));
                ticks += 1;
                if ticks.is_multiple_of(60) {
                    // Memory freed by the last minute's work goes back to the system.
                    crate::allocator::release_free_memory();
                }
            }
            log::info!("{} was unmounted", mountpoint.display());
            while model.open_handles() > 0 {
                std::thread::sleep(Duration::from_secs(1));
            }
            model.stop();
            std::thread::sleep(EXIT_GRACE);
            log::warn!("requests still pending {}s after the unmount; exiting", EXIT_GRACE.as_secs());
            crate::logging::flush();
            std::process::exit(0);
        })
        .map(drop)
        .map_err(|e| format!("thread: {e}"))
}

/// Everything needed to run one mount.
pub struct MountPlan {
    pub target: Target,
    pub opts: MountOpts,
    pub connect: ConnectOptions,
    pub mountpoint: PathBuf,
    pub foreground: bool,
}

/// Runs the mount until it is unmounted. Returns the process exit code.
pub fn run(mut plan: MountPlan) -> Result<(), StartError> {
    let mountpoint = check_mountpoint(&plan.mountpoint)?;
    let default = plan.opts.cache_dir.is_none();
    let cache_dir = plan.opts.cache_dir.clone().unwrap_or_else(crate::cli::default_cache_dir);
    plan.opts.cache_dir = Some(crate::private_files::prepare_cache_dir(&cache_dir, default)?);
    // With delay_connect the mount comes up before the server answers (see `backend::delayed`).
    let first = match plan.opts.delay_connect {
        false => Some(first_connection(&plan.connect, &plan.target)?),
        true => None,
    };
    let mut report = if plan.foreground { Report::foreground() } else { daemonize()? };
    match mount_and_serve(plan, mountpoint, first, &mut report) {
        Ok(()) => Ok(()),
        Err(e) => {
            report.failed(&e);
            Err(e)
        }
    }
}

fn mount_and_serve(
    plan: MountPlan,
    mountpoint: PathBuf,
    first: Option<(Connection, String)>,
    report: &mut Report,
) -> Result<(), StartError> {
    let o = &plan.opts;
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let cache_dir = o.cache_dir.clone().unwrap_or_else(crate::cli::default_cache_dir);
    let (journal, mut orphans) = match o.writeback {
        true => {
            let (own, orphans) = writeback_journal(&cache_dir, &plan.target)?;
            (Some(own), orphans)
        }
        // Without write-back, what an earlier write-back mount left is replayed all the same.
        false => (None, crate::journal_dirs::orphan_journals(&cache_dir, &plan.target)),
    };
    let cfg = ModelConfig {
        cache_timeout: o.cache_timeout,
        uid: o.uid.unwrap_or(uid),
        gid: o.gid.unwrap_or(gid),
        umask: o.umask,
        read_only: o.read_only,
        cache_dir: cache_dir.clone(),
        writeback: journal.clone(),
        writeback_uploads: o.connections.saturating_sub(1).max(1),
        atomic_upload: o.atomic_upload,
        ignore_time_errors: o.ignore_time_errors,
        // Links followed on the server are never shown raw: the kernel follows none here.
        raw_link_targets: !o.transform_symlinks && !o.follow_symlinks,
    };
    let disk_cache = o.disk_cache.and_then(|size| match open_disk_cache(&cache_dir, &plan.target, size) {
        Ok(c) => Some(c),
        Err(e) => {
            log::warn!("no disk cache: {e}");
            None
        }
    });
    let model_cell = Arc::new(std::sync::OnceLock::new());
    let backend: Arc<dyn Backend> = match first {
        Some((first, root)) => server_backend(o, &plan.connect, first, root),
        None => {
            let later =
                Later { plan: &plan, cache_dir: &cache_dir, disk_cache: disk_cache.clone(), model: model_cell.clone() };
            later.backend(std::mem::take(&mut orphans))?
        }
    };
    let model = Arc::new(Model::new(cfg, backend));
    if let Some(cache) = disk_cache {
        let shown = cache.clone();
        crate::stats::gauge("disk cache", move || Some(shown.describe()));
        model.use_disk_cache(cache);
    }
    // Told to the connector (delay_connect) once it can forget through the disk cache too.
    let _ = model_cell.set(Arc::downgrade(&model));
    for (dir, lock) in orphans {
        recover_orphan(|dir| model.recover_journal(dir), &dir, lock);
    }
    // fuser 0.18.0 unmounts the mount point when its session ends even when the kernel already
    // unmounted it (its liveness check is inverted; fixed upstream after 0.18.0): after a quick
    // remount at the same path, the old process would unmount the new mount. The session ends
    // when the kernel unmounted us (a signal unmounts before): the process finishes here,
    // before fuser can. (Whether the mount point is still ours cannot be told by its device
    // number: a new mount may get the same one.)
    crate::stats::start();
    crate::allocator::arm_leak_for_tests();
    // Set once `ftpfs stats` can reach the mount; let go first when it ends.
    let serving = Arc::new(std::sync::OnceLock::<crate::control_channel::Serving>::new());
    let fs = FtpFs::new(model.clone()).with_end({
        let (model, mountpoint, journal, serving) =
            (model.clone(), mountpoint.clone(), journal.clone(), serving.clone());
        move || {
            log::debug!("{} is unmounted: ending here", mountpoint.display());
            // The device number may be a new mount's already: its requests are not ours.
            if let Some(serving) = serving.get() {
                serving.end();
            }
            finish(&model, journal.as_deref());
            crate::logging::flush();
            std::process::exit(0);
        }
    });

    let mut config = Config::default();
    config.mount_options =
        vec![MountOption::FSName(plan.target.display_url()), subtype_option(), MountOption::NoDev, MountOption::NoSuid];
    if o.read_only {
        config.mount_options.push(MountOption::RO);
    }
    if o.kernel_checks_permissions() {
        config.mount_options.push(MountOption::DefaultPermissions);
    }
    config.acl = if o.allow_other {
        SessionACL::All
    } else if o.allow_root {
        SessionACL::RootAndOwner
    } else {
        SessionACL::Owner
    };
    // Requests waiting for a connection each hold a thread: enough of them that the requests of
    // the transfers running are still served when many more files are read than there are
    // connections (a handle not served looks idle, and its connection would be taken).
    config.n_threads = Some(REQUEST_THREADS.max(o.connections * 2 + 2));
    config.clone_fd = true;

    let mut session =
        Session::new(fs, &mountpoint, &config).map_err(|e| format!("cannot mount on {}: {e}", mountpoint.display()))?;
    log::info!("mounted {} on {}", plan.target.display_url(), mountpoint.display());
    raise_readahead(&mountpoint);
    match mount_device(&mountpoint) {
        Some(device) => {
            let header =
                format!("{} on {} (pid {})", plan.target.display_url(), mountpoint.display(), std::process::id());
            let control = Arc::new(MountControl { header, model: model.clone(), kernel: session.notifier() });
            match crate::control_channel::serve(&device, control, o.allow_other) {
                Ok(s) => {
                    let _ = serving.set(s);
                }
                Err(e) => log::warn!("ftpfs stats will not reach this mount: {e}"),
            }
        }
        None => log::warn!("ftpfs stats will not reach this mount: it is not in /proc/self/mountinfo"),
    }
    let mut unmounter = session.unmount_callable();
    let mut signals = signal_hook::iterator::Signals::new([libc::SIGINT, libc::SIGTERM, libc::SIGHUP])
        .map_err(|e| format!("signals: {e}"))?;
    let on_signal = model.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut received = signals.forever();
            if let Some(sig) = received.next() {
                log::info!("signal {sig}: saving open files and unmounting");
                let stopping = std::thread::Builder::new().name("stopping".into()).spawn(move || {
                    // Bounded as a whole: the system may kill us soon after its signal.
                    on_signal.stop_within(Some(SIGNAL_STOP_BOUND));
                    if let Err(e) = unmounter.unmount() {
                        log::error!("unmount failed: {e}");
                    }
                    // Open files keep a lazily unmounted filesystem alive; requests still running
                    // fail now that the pool is closed. Leave at the latest after a grace period:
                    // the kernel then ends what is left with ENOTCONN.
                    std::thread::sleep(EXIT_GRACE);
                    log::warn!("requests still pending {}s after the signal; exiting", EXIT_GRACE.as_secs());
                    crate::logging::flush();
                    std::process::exit(0);
                });
                if let Err(e) = stopping {
                    log::error!("cannot stop cleanly ({e}); exiting");
                    crate::logging::flush();
                    std::process::exit(1);
                }
                if let Some(again) = received.next() {
                    log::warn!("second signal {again}: exiting now");
                    crate::logging::flush();
                    std::process::exit(1);
                }
            }
        })
        .map_err(|e| format!("thread: {e}"))?;
    watch_unmount(mountpoint.clone(), model.clone())?;
    report.ready();
    if !plan.foreground {
        detach_stdio();
    }
    let res = session.run();
    // Unmounted: the device number may be a new mount's already; its requests are not ours.
    if let Some(serving) = serving.get() {
        serving.end();
    }
    finish(&model, journal.as_deref());
    res.map_err(|e| format!("session ended: {e}"))
}

/// The backend of a server whose first connection (`first`, in `root`) logged in: the pool,
/// the FTP backend, atomic uploads and work ahead as the options ask.
fn server_backend(o: &MountOpts, connect: &ConnectOptions, mut first: Connection, root: String) -> Arc<dyn Backend> {
    let features = first.features().clone();
    let ahead_mib = o.ahead_mib.unwrap_or(crate::cli::DEFAULT_AHEAD_MIB);
    // Work ahead only where listings are cached at all: with cache_timeout=0 every open asks
    // the server, and so it stays.
    let may_work_ahead = ahead_mib > 0 && !o.cache_timeout.is_zero();
    let mut far_away = false;
    if may_work_ahead {
        // Proves EPSV once (two round trips now), so that every connection of the pool may
        // open its data connections ahead from its first request on.
        let started = std::time::Instant::now();
        if let Err(e) = first.try_data_ahead() {
            log::debug!("no data connection opened ahead at start: {e}");
        }
        far_away = started.elapsed() >= FAR_AWAY;
        log::debug!("EPSV and data connection at start: {:?}", started.elapsed());
    }
    // Unless asked for, work ahead only for a far server: near one, a request costs less than
    // the work ahead competing with it for the server's and our CPU.
    let work_ahead = may_work_ahead && (far_away || o.ahead_mib.is_some());
    log::info!("work ahead {}", if work_ahead { "on" } else { "off" });
    // Later connections skip FEAT: the first one's answer stands for the server.
    let connect = ConnectOptions { known_features: Some(first.features().clone()), ..connect.clone() };
    let pool = Pool::new(connect, o.connections, Some(first));
    pool.open_data_ahead(work_ahead);
    if work_ahead && far_away {
        // More logged-in connections, made while the mount starts and the user has not asked
        // for anything yet: the first directory walk or parallel copy does not wait for logins.
        // Only for a far server: near one, a login costs less than the logins competing with
        // the first requests.
        pool.warm(o.connections.saturating_sub(1));
    }
    let server = FtpBackendConfig {
        remote_root: root,
        use_mlsd: !o.no_mlsd,
        list_tz_offset: o.list_tz_offset,
        verify_upload: o.verify_upload,
        transform_symlinks: o.transform_symlinks,
        follow_symlinks: o.follow_symlinks,
    };
    let ftp: Arc<dyn Backend> = Arc::new(FtpBackend::new(server, pool.clone(), features));
    let ftp: Arc<dyn Backend> = if o.atomic_upload { Arc::new(AtomicUploads::new(ftp, o.read_only)) } else { ftp };
    let backend: Arc<dyn Backend> = if work_ahead {
        let ahead = AheadConfig {
            bytes: ahead_mib << 20,
            max_age: o.cache_timeout.min(AheadConfig::default().max_age),
            // Each uses a connection while one is spare; one is always kept for requests.
            workers: o.connections,
            ..AheadConfig::default()
        };
        Arc::new(Ahead::new(ftp, ahead))
    } else {
        ftp
    };
    backend
}

/// What `-o delay_connect` needs to make the backend once the server answers.
struct Later<'a> {
    plan: &'a MountPlan,
    cache_dir: &'a Path,
    disk_cache: Option<Arc<DiskCache>>,
    /// The mount's model, once made.
    model: Arc<std::sync::OnceLock<std::sync::Weak<Model>>>,
}

impl Later<'_> {
    /// A backend made by the first connection that logs in (see `backend::delayed`). What an
    /// earlier mount left in its journal (`orphans`) lands before any request of this one reaches
    /// the server (a newer write of ours must land after it), and what the mount kept of the
    /// files it landed (listings, content: shown before the connection) is forgotten.
    fn backend(self, orphans: Vec<(PathBuf, File)>) -> Result<Arc<dyn Backend>, StartError> {
        let Later { plan, cache_dir, disk_cache, model } = self;
        let (opts, connect, target) = (plan.opts.clone(), plan.connect.clone(), plan.target.clone());
        let orphans = parking_lot::Mutex::new(orphans);
        let cache_dir = cache_dir.to_path_buf();
        let later = move || {
            let (first, root) = connect_to_root(&connect, &target).map_err(|e| {
                let kind = match &e {
                    FtpError::Reply { .. } => e.kind(crate::ftp::error::Op::Lookup),
                    _ => FsError::Offline,
                };
                (kind, start_error(&e, &target))
            })?;
            let backend = server_backend(&opts, &connect, first, root);
            for (dir, lock) in orphans.lock().drain(..) {
                let mut landed = Vec::new();
                let recover = |dir: &Path| {
                    landed = Model::recover_journal_alone(backend.as_ref(), &cache_dir, dir);
                    landed.len()
                };
                recover_orphan(recover, &dir, lock);
                for path in &landed {
                    match model.get().and_then(std::sync::Weak::upgrade) {
                        Some(m) => m.forget_landed(path),
                        None => {
                            if let Some(c) = &disk_cache {
                                c.forget_file(path);
                                c.forget_listing(crate::backend::paths::split_path(path).0, false);
                            }
                        }
                    }
                }
            }
            Ok(backend)
        };
        let delayed = Delayed::start(Box::new(later), plan.opts.timeout).map_err(|e| format!("thread: {e}"))?;
        Ok(Arc::new(delayed))
    }
}

/// Uploads what an earlier mount left in its write-back journal `dir` (`recover`), holding its
/// `lock` meanwhile, and removes the journal once empty.
fn recover_orphan<L>(recover: impl FnOnce(&Path) -> usize, dir: &Path, lock: L) {
    let recovered = recover(dir);
    if recovered > 0 {
        log::warn!("uploaded {recovered} files that an earlier mount had not written back");
    }
    remove_if_only_lock(dir);
    drop(lock);
}

/// The disk cache of this server and root (`-o disk_cache`): `cache_dir/content/KEY`, KEY as
/// the write-back journal's, bounded by `size` or the default.
fn open_disk_cache(cache_dir: &Path, target: &Target, size: Option<u64>) -> Result<Arc<DiskCache>, String> {
    use crate::private_files::private_dir;
    let top = private_dir(cache_dir, "content")?;
    let dir = private_dir(&top, &crate::journal_dirs::journal_key(target))?;
    let capacity = size.unwrap_or_else(|| DiskCache::default_capacity(&dir));
    let cache = Arc::new(DiskCache::open(&dir, capacity)?);
    DiskCache::keep_saving(&cache);
    log::info!("disk cache in {}: {}", dir.display(), cache.describe());
    Ok(cache)
}

/// What `ftpfs stats` and `ftpfs refresh` get from this mount (see [`crate::control_channel`]).
struct MountControl {
    /// The first line of every report: the server, the mount point and the process.
    header: String,
    model: Arc<Model>,
    kernel: fuser::Notifier,
}

impl crate::control_channel::Handler for MountControl {
    fn stats(&self) -> String {
        crate::stats::report(&self.header)
    }

    fn refresh(&self, path: &str, recursive: bool) -> Result<String, String> {
        crate::adapter::refresh(&self.model, &self.kernel, path, recursive)
    }

    fn cache_clear(&self) -> Result<String, String> {
        let freed = self.model.clear_disk_cache().ok_or("this mount has no disk cache (-o disk_cache)")?;
        // And what the kernel holds: the next read of any file comes from the server.
        crate::adapter::refresh(&self.model, &self.kernel, "", true)?;
        Ok(format!("cleared the disk cache ({:.1} MiB) and the kernel's copies\n", freed as f64 / 1048576.0))
    }
}

/// The end of a mount: write-backs still on their way land, connections close, and an empty
/// journal of ours goes.
fn finish(model: &Model, journal: Option<&Path>) {
    model.stop();
    model.shutdown();
    if let Some(own) = journal {
        remove_if_only_lock(own);
    }
}

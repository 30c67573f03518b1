//! Where the log goes: standard error in the foreground (`-f`, `--probe`); for a background
//! mount, syslog (which the journal reads on Linux) and standard error until the mount is
//! ready, or only the file `FTPFS_LOG_FILE` names when it is set. `-v` and `RUST_LOG` choose what
//! is logged, everywhere alike. Nothing logged may block the mount: in the background a thread
//! of its own sends to syslog from a bounded queue (a message is lost rather than a file
//! operation held), and each send gives up after [`SEND_WAIT`].

use std::time::Duration;

use log::{Level, Log, Metadata, Record};
use parking_lot::Mutex;
use syslog::{Facility, Formatter3164, LoggerBackend};

/// How long one send to the syslog socket may wait.
const SEND_WAIT: Duration = Duration::from_millis(100);

/// The syslog socket to use instead of /dev/log (tests).
const SOCKET_ENV: &str = "FTPFS_SYSLOG_SOCKET";

type SyslogLogger = syslog::Logger<LoggerBackend, Formatter3164>;

/// Messages waiting for the syslog writer; past this many, new ones are dropped.
const QUEUE: usize = 1024;

/// How often a lost syslog connection is tried again, at most.
const RECONNECT_EVERY: Duration = Duration::from_secs(5);

/// How long a flush (before the process exits) waits for the queue to be sent.
const FLUSH_WAIT: Duration = Duration::from_secs(1);

/// Hands every record on with control characters escaped in its message
/// ([`crate::printable::printable`]): log lines carry what servers send (replies, file
/// names), and a hostile server must not drive the terminal (or fake lines) of whoever reads
/// the log. One place for every destination: standard error, syslog, `FTPFS_LOG_FILE`.
struct Escaping<L>(L);

impl<L: Log> Log for Escaping<L> {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if !self.0.enabled(record.metadata()) {
            return;
        }
        let text = match record.args().as_str() {
            Some(literal) => std::borrow::Cow::Borrowed(literal),
            None => std::borrow::Cow::Owned(record.args().to_string()),
        };
        match crate::printable::printable(&text) {
            std::borrow::Cow::Borrowed(_) => self.0.log(record),
            std::borrow::Cow::Owned(clean) => self.0.log(
                &Record::builder()
                    .args(format_args!("{clean}"))
                    .metadata(record.metadata().clone())
                    .module_path(record.module_path())
                    .file(record.file())
                    .line(record.line())
                    .build(),
            ),
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

/// Makes `logger`, escaped, the logger of the process, up to `max`; false when there was one.
fn install(logger: impl Log + 'static, max: log::LevelFilter) -> bool {
    let installed = log::set_boxed_logger(Box::new(Escaping(logger))).is_ok();
    if installed {
        log::set_max_level(max);
    }
    installed
}

/// What the writer thread is given.
enum Msg {
    Line(Level, String),
    /// Answer once everything before it is sent.
    Flush(crossbeam_channel::Sender<()>),
}

/// The background logger, for [`after_fork`] and [`flush`].
static BOTH: std::sync::OnceLock<&'static Both> = std::sync::OnceLock::new();

/// Standard error (as configured by `RUST_LOG`/`-v`) plus syslog.
///
/// Until the mount forks into the background, messages (a few, at start-up) go to syslog in
/// place, each send bounded by [`SEND_WAIT`]. In the background process a thread of its own
/// sends them, fed through a bounded queue that never makes a file operation wait: a message
/// that finds it full is dropped. That thread reconnects when syslog went away (restarted).
struct Both {
    stderr: env_logger::Logger,
    /// The process that set logging up (before the fork).
    parent: u32,
    /// The connection, until the writer thread takes it.
    direct: Mutex<Option<SyslogLogger>>,
    /// The writer thread's queue, once it runs.
    queue: Mutex<Option<crossbeam_channel::Sender<Msg>>>,
}

impl Log for Both {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.stderr.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if !self.stderr.matches(record) {
            return;
        }
        self.stderr.log(record);
        let message = format!("{}: {}", record.target(), record.args());
        if std::process::id() == self.parent {
            if let Some(syslog) = self.direct.lock().as_mut() {
                send(syslog, record.level(), message);
            }
            return;
        }
        if let Some(q) = self.writer() {
            // Full: dropped, rather than a request waiting for syslog.
            let _ = q.try_send(Msg::Line(record.level(), message));
        }
    }

    /// Also waits (at most [`FLUSH_WAIT`]) until what was logged is sent: the process may be
    /// about to exit, and its last words (unsaved data at unmount) matter most.
    fn flush(&self) {
        self.stderr.flush();
        if std::process::id() == self.parent {
            return;
        }
        if let Some(q) = self.writer() {
            let (done, sent) = crossbeam_channel::bounded(1);
            if q.send_timeout(Msg::Flush(done), FLUSH_WAIT).is_ok() {
                let _ = sent.recv_timeout(FLUSH_WAIT);
            }
        }
    }
}

impl Both {
    /// The writer thread's queue, started on first use in this process.
    fn writer(&self) -> Option<crossbeam_channel::Sender<Msg>> {
        let mut queue = self.queue.lock();
        if queue.is_none() {
            *queue = self.start_writer();
        }
        queue.clone()
    }

    /// Starts the thread that sends to syslog, with the connection made before the fork.
    fn start_writer(&self) -> Option<crossbeam_channel::Sender<Msg>> {
        let (tx, rx) = crossbeam_channel::bounded::<Msg>(QUEUE);
        let mut syslog = self.direct.lock().take();
        let spawned = std::thread::Builder::new().name("syslog".into()).spawn(move || {
            let mut next_try = std::time::Instant::now();
            for msg in rx {
                let (level, message) = match msg {
                    Msg::Line(level, message) => (level, message),
                    Msg::Flush(done) => {
                        let _ = done.try_send(());
                        continue;
                    }
                };
                if syslog.is_none() && std::time::Instant::now() >= next_try {
                    syslog = connect_syslog().ok();
                    next_try = std::time::Instant::now() + RECONNECT_EVERY;
                }
                if let Some(s) = syslog.as_mut()
                    && !send(s, level, message)
                {
                    // Gone (restarted), or a frame half sent: a fresh connection for the next one.
                    syslog = None;
                    next_try = std::time::Instant::now();
                }
            }
        });
        spawned.ok().map(|_| tx)
    }
}

/// Sends one message; false when the connection failed.
fn send(syslog: &mut SyslogLogger, level: Level, message: String) -> bool {
    // The mount forks into the background after logging started: show the pid it runs as.
    syslog.formatter.pid = std::process::id();
    let sent = match level {
        Level::Error => syslog.err(message),
        Level::Warn => syslog.warning(message),
        Level::Info => syslog.info(message),
        Level::Debug | Level::Trace => syslog.debug(message),
    };
    sent.is_ok()
}

/// Connects to syslog (`FTPFS_SYSLOG_SOCKET`, else /dev/log and the usual other places).
fn connect_syslog() -> Result<SyslogLogger, String> {
    let formatter = Formatter3164 {
        facility: Facility::LOG_DAEMON,
        hostname: None,
        process: "ftpfs".into(),
        pid: std::process::id(),
    };
    let logger = match std::env::var_os(SOCKET_ENV) {
        Some(path) => syslog::unix_custom(formatter, path),
        None => syslog::unix(formatter),
    }
    .map_err(|e| e.to_string())?;
    let bounded = match &logger.backend {
        LoggerBackend::Unix(sock) => sock.set_write_timeout(Some(SEND_WAIT)),
        LoggerBackend::UnixStream(sock) => sock.get_ref().set_write_timeout(Some(SEND_WAIT)),
        _ => Ok(()),
    };
    bounded.map_err(|e| e.to_string())?;
    Ok(logger)
}

/// Sets up logging. `background`: the mount will go to the background (the syslog socket,
/// connected now, goes along).
pub fn init(verbose: u8, background: bool) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let env = env_logger::Env::default().default_filter_or(format!("ftpfs={level},fuser=error"));
    let mut builder = env_logger::Builder::from_env(env);
    builder.format_timestamp_millis();
    if let Some(path) = std::env::var_os("FTPFS_LOG_FILE") {
        // Created 0600: the log names the user's files.
        let opened =
            std::os::unix::fs::OpenOptionsExt::mode(std::fs::OpenOptions::new().create(true).append(true), 0o600)
                .open(&path);
        match opened {
            Ok(f) => {
                // One that existed already is used as it is, but not without a word.
                if let Ok(m) = f.metadata() {
                    use std::os::unix::fs::MetadataExt;
                    // SAFETY: geteuid cannot fail.
                    let me = unsafe { libc::geteuid() };
                    if m.uid() != me || m.mode() & 0o077 != 0 {
                        eprintln!(
                            "ftpfs: warning: log file {} belongs to uid {} with mode {:o}: other users may read it",
                            path.to_string_lossy(),
                            m.uid(),
                            m.mode() & 0o7777
                        );
                    }
                }
                builder.target(env_logger::Target::Pipe(Box::new(f)));
            }
            Err(e) => eprintln!("ftpfs: cannot open log file {}: {e}", path.to_string_lossy()),
        }
        let logger = builder.build();
        let max = logger.filter();
        install(logger, max);
        return;
    }
    if !background {
        let logger = builder.build();
        let max = logger.filter();
        install(logger, max);
        return;
    }
    let stderr = builder.build();
    let max = stderr.filter();
    match connect_syslog() {
        Ok(syslog) => {
            let both: &'static Both = Box::leak(Box::new(Both {
                stderr,
                parent: std::process::id(),
                direct: Mutex::new(Some(syslog)),
                queue: Mutex::new(None),
            }));
            if install(both, max) {
                let _ = BOTH.set(both);
            }
        }
        Err(e) => {
            if verbose > 0 {
                eprintln!("ftpfs: no syslog ({e}): a background mount's log is lost; set FTPFS_LOG_FILE to keep it");
            }
            install(stderr, max);
        }
    }
}

/// In the background process, right after the fork: starts the syslog writer thread there and
/// then, not on whichever request thread logs first.
pub fn after_fork() {
    if let Some(both) = BOTH.get() {
        let _ = both.writer();
    }
}

/// Sends what was logged before the process exits (bounded by [`FLUSH_WAIT`]).
pub fn flush() {
    log::logger().flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps the messages it is given.
    #[derive(Default)]
    struct Kept(Mutex<Vec<String>>);

    impl Log for Kept {
        fn enabled(&self, _: &Metadata) -> bool {
            true
        }
        fn log(&self, record: &Record) {
            self.0.lock().push(record.args().to_string());
        }
        fn flush(&self) {}
    }

    #[test]
    fn log_lines_are_escaped() {
        let kept = Escaping(Kept::default());
        let reply = "220 hi \x1b]0;owned\x07\x1b[2J\r\u{9b}31m";
        kept.log(&Record::builder().args(format_args!("<- {reply}")).level(Level::Trace).build());
        kept.log(&Record::builder().args(format_args!("plain")).level(Level::Info).build());
        kept.log(&Record::builder().args(format_args!("line\nbreak {}", 1)).level(Level::Info).build());
        let lines = kept.0.0.lock().clone();
        assert_eq!(lines, ["<- 220 hi \\x1b]0;owned\\x07\\x1b[2J\\r\\u{9b}31m", "plain", "line\\nbreak 1"]);
    }
}

//! Where the log goes: standard error in the foreground (`-f`, `--probe`); for a background
//! mount, syslog (which the journal reads on Linux) and standard error until the mount is
//! ready, or only the file `FTPFS_LOG_FILE` names when it is set. `-v` and `RUST_LOG` choose what
//! is logged, everywhere alike. Nothing logged may block the mount: the syslog socket's sends
//! give up after [`SEND_WAIT`] (a message is lost rather than a file operation held).

use std::time::Duration;

use log::{Level, Log, Metadata, Record};
use parking_lot::Mutex;
use syslog::{Facility, Formatter3164, LoggerBackend};

/// How long one send to the syslog socket may wait.
const SEND_WAIT: Duration = Duration::from_millis(100);

/// The syslog socket to use instead of /dev/log (tests).
const SOCKET_ENV: &str = "FTPFS_SYSLOG_SOCKET";

type SyslogLogger = syslog::Logger<LoggerBackend, Formatter3164>;

/// Standard error (as configured by `RUST_LOG`/`-v`) plus syslog.
struct Both {
    stderr: env_logger::Logger,
    syslog: Mutex<SyslogLogger>,
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
        let mut syslog = self.syslog.lock();
        // The mount forks into the background after logging started: show the pid it runs as.
        syslog.formatter.pid = std::process::id();
        // A message syslog could not take is dropped: there is nowhere better to report it.
        let _ = match record.level() {
            Level::Error => syslog.err(message),
            Level::Warn => syslog.warning(message),
            Level::Info => syslog.info(message),
            Level::Debug | Level::Trace => syslog.debug(message),
        };
    }

    fn flush(&self) {
        self.stderr.flush();
    }
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
        match std::fs::OpenOptions::new().create(true).append(true).open(&path) {
            Ok(f) => {
                builder.target(env_logger::Target::Pipe(Box::new(f)));
            }
            Err(e) => eprintln!("ftpfs: cannot open log file {}: {e}", path.to_string_lossy()),
        }
        builder.init();
        return;
    }
    if !background {
        builder.init();
        return;
    }
    let stderr = builder.build();
    match connect_syslog() {
        Ok(syslog) => {
            let max = stderr.filter();
            if log::set_boxed_logger(Box::new(Both { stderr, syslog: Mutex::new(syslog) })).is_ok() {
                log::set_max_level(max);
            }
        }
        Err(e) => {
            if verbose > 0 {
                eprintln!("ftpfs: no syslog ({e}): a background mount's log is lost; set FTPFS_LOG_FILE to keep it");
            }
            let max = stderr.filter();
            if log::set_boxed_logger(Box::new(stderr)).is_ok() {
                log::set_max_level(max);
            }
        }
    }
}

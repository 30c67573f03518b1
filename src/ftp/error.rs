//! The wire layer's one error type and the one table that turns FTP reply codes into errno values.
//!
//! Everything in `ftp/` fails with [`FtpError`]. Nothing above the wire looks at reply codes:
//! [`FtpError::kind`] turns an error into a [`FsError`] given the kind of operation attempted
//! ([`Op`]), so the mapping lives in exactly one place. The errno a user sees is the one
//! `man 2` gives for the situation: the server's own where its text names it (the strerror(3)
//! text of the call that failed on its disk), else the one the code means for the command.
//! A server's passing or internal failure (4xx, 421, vsftpd's `500 OOPS`, a dropped login)
//! is EIO, never EINVAL; a command it does not know is EOPNOTSUPP, never ENOSYS.

use std::io;

use crate::error::FsError;
use crate::printable::printable;

/// What the caller was doing when a reply came back negative. Some codes (550 above all) mean
/// different things for different commands, so the errno table needs this context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Reading metadata (MLST, SIZE, MDTM, CWD).
    Lookup,
    /// MLSD: 500, 502, 503, 504, and a 501 that calls the command unknown, mean the server
    /// lacks it (LIST is then used; its errors and MLSD's others are [`Op::Lookup`]'s). A 501
    /// that names a reason is that reason (pyftpdlib's "501 No such directory.": ENOENT).
    Mlsd,
    /// Downloading (RETR).
    Read,
    /// Uploading (STOR).
    Write,
    /// Appending (APPE).
    Append,
    /// Creating a directory (MKD).
    Mkdir,
    /// Removing a directory (RMD).
    Rmdir,
    /// Deleting a file (DELE).
    Delete,
    /// Renaming (RNFR/RNTO).
    Rename,
    /// Changing attributes (MFMT, SITE CHMOD).
    SetAttr,
    /// Login and session set-up.
    Session,
}

/// An error from the FTP wire layer.
///
/// What it shows ([`std::fmt::Display`]) has every control character escaped
/// ([`printable`]): reply texts and protocol errors carry what the server sent, and a hostile
/// server must not drive the terminal that shows the message. The texts inside stay as they
/// came (the errno table reads them).
#[derive(Debug, thiserror::Error)]
pub enum FtpError {
    /// The server answered with a transient (4xx) or permanent (5xx) negative reply.
    #[error("server replied {code} {}", printable(text))]
    Reply { code: u16, text: String },
    /// The network failed (including timeouts). The connection is no longer usable.
    #[error("network error: {}", printable(&.0.to_string()))]
    Io(#[from] io::Error),
    /// The server sent something that breaks the protocol. The connection is no longer usable.
    #[error("protocol error: {}", printable(.0))]
    Protocol(String),
    /// A caller-supplied argument cannot be sent safely (CR, LF or NUL). Nothing was sent.
    #[error("invalid argument: {}", printable(.0))]
    InvalidArgument(String),
    /// A listing went past one of the bounds that keep a hostile server from exhausting our
    /// memory (bytes on the wire, entries, their memory once parsed). The connection is brought
    /// back in sync or dropped like after any early end of a transfer.
    #[error("{}", printable(.0))]
    TooLarge(String),
    /// The command line would be longer than the server reads as one line (it would take the
    /// rest for another command and answer twice). Nothing was sent.
    #[error("command line of {0} bytes is longer than the server accepts")]
    LineTooLong(usize),
    /// The connection was marked dead earlier (out of sync or broken) and must be replaced.
    #[error("connection is closed")]
    Closed,
    /// A 530 ("not logged in") to a command after the login succeeded: the server dropped the
    /// session's login ([`is_logged_out`]). The connection is dead; a fresh one logs in again.
    #[error("the server dropped the login of this session: 530 {}", printable(.0))]
    LoggedOut(String),
    /// Every connection stayed busy for the whole wait (the `timeout` option).
    #[error("{}", printable(.0))]
    Busy(String),
    /// The filesystem is being unmounted: no more requests to the server.
    #[error("unmounting")]
    Unmounting,
    /// The server cannot be reached now (see `remote::offline`): the request was not sent.
    #[error("the server is unreachable: offline {}", printable(.0))]
    Offline(String),
}

pub type Result<T> = std::result::Result<T, FtpError>;

impl FtpError {
    /// Builds a protocol error from anything printable.
    pub fn protocol(msg: impl Into<String>) -> Self {
        FtpError::Protocol(msg.into())
    }

    /// The reply code, when the error is a server reply.
    pub fn code(&self) -> Option<u16> {
        match self {
            FtpError::Reply { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// True when the connection that produced this error cannot be used again.
    pub fn is_fatal_for_connection(&self) -> bool {
        match self {
            FtpError::Io(_) | FtpError::Protocol(_) | FtpError::Closed | FtpError::LoggedOut(_) => true,
            FtpError::Reply { code, text } => ends_session(*code, text),
            FtpError::InvalidArgument(_)
            | FtpError::LineTooLong(_)
            | FtpError::TooLarge(_)
            | FtpError::Busy(_)
            | FtpError::Unmounting
            | FtpError::Offline(_) => false,
        }
    }

    /// True when the same operation may succeed on a fresh connection (421 closing, network loss).
    pub fn is_reconnectable(&self) -> bool {
        self.is_fatal_for_connection()
    }

    /// True when the session ended under the command: the server said so (421, `500 OOPS`, a
    /// 530 after the login) or closed or reset the connection. Not for a timeout or a garbled
    /// reply.
    pub fn is_session_ended(&self) -> bool {
        use io::ErrorKind::*;
        match self {
            FtpError::Reply { code, text } => ends_session(*code, text),
            FtpError::Io(e) => matches!(e.kind(), UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe),
            FtpError::Closed | FtpError::LoggedOut(_) => true,
            _ => false,
        }
    }

    /// True when the server ended this one session on purpose while others stay fine
    /// (vsftpd's `500 OOPS`, a login dropped): the other idle connections need not be dropped.
    pub fn ended_only_this_session(&self) -> bool {
        match self {
            FtpError::Reply { code: 500, text } => is_oops(text),
            FtpError::LoggedOut(_) => true,
            _ => false,
        }
    }

    /// True when retrying the same command on the same connection may help (425/426: the data
    /// connection failed, the control connection is fine).
    pub fn is_retryable(&self) -> bool {
        matches!(self.code(), Some(425) | Some(426)) || self.is_reconnectable()
    }

    /// True when the server refused another connection (421 at connect, or 530 "too many").
    pub fn is_too_many_connections(&self) -> bool {
        match self {
            FtpError::Reply { code: 421, .. } => true,
            FtpError::Reply { code: 530, text } => text_says(text, &["too many", "maximum", "limit"]),
            _ => false,
        }
    }

    /// What this failure means for a filesystem, given the operation attempted. This is the
    /// project's one table from reply codes (and their texts) to failure kinds.
    pub fn kind(&self, op: Op) -> FsError {
        match self {
            FtpError::Reply { code, text } => reply_kind(*code, text, op),
            FtpError::Io(e) if e.kind() == io::ErrorKind::TimedOut => FsError::Timeout,
            FtpError::Io(e) if e.kind() == io::ErrorKind::WouldBlock => FsError::Timeout,
            FtpError::Io(_) | FtpError::Protocol(_) | FtpError::Closed | FtpError::LoggedOut(_) => FsError::Broken,
            FtpError::InvalidArgument(_) => FsError::Invalid,
            FtpError::LineTooLong(_) => FsError::NameTooLong,
            FtpError::TooLarge(_) => FsError::TooLarge,
            FtpError::Busy(_) => FsError::Busy,
            FtpError::Unmounting => FsError::Unmounting,
            FtpError::Offline(_) => FsError::Offline,
        }
    }

    /// The errno for this failure (see [`FtpError::kind`]).
    pub fn errno(&self, op: Op) -> i32 {
        self.kind(op).errno()
    }
}

/// True for a reply after which the server closes the session: 421 (RFC 959), and vsftpd's
/// `500 OOPS: …`, which it sends before its session process exits on an internal failure
/// (`vsf_sysutil_bind` when no passive port is free, `priv_sock_get_int` after that). Such a 500
/// says nothing about the command: it is a broken connection, never "invalid argument".
pub fn ends_session(code: u16, text: &str) -> bool {
    code == 421 || (code == 500 && is_oops(text))
}

fn is_oops(text: &str) -> bool {
    text.trim_start().starts_with("OOPS:")
}

fn text_says(text: &str, words: &[&str]) -> bool {
    let lower = text.to_ascii_lowercase();
    words.iter().any(|w| lower.contains(w))
}

/// True for a 530 ("not logged in") after the login succeeded: the server dropped the
/// session's login (pyftpdlib after a `REIN`, servers that log idle sessions out, a restarted
/// authentication back end). A fresh connection logs in again; it is not the "permission
/// denied" of EACCES. A 530 whose text names a permission stays a refusal.
pub fn is_logged_out(code: u16, text: &str) -> bool {
    code == 530 && !text_says(text, DENIED)
}

/// Words of a refusal for lack of permission (strerror(EACCES), vsftpd, pyftpdlib, IIS).
const DENIED: &[&str] =
    &["permission denied", "access denied", "access is denied", "not enough privileges", "not allowed", "permission"];

/// The reason a server gives in words, where the words say it. proftpd, pure-ftpd and
/// pyftpdlib put the strerror(3) text of the system call that failed on their disk into the
/// reply ("550 /d: Directory not empty", "451 Rename/move failure: Not a directory",
/// "426 No space left on device; transfer aborted."): that errno is the one man 2 gives for
/// the same situation on a local disk, so it is passed on whatever the code. vsftpd's texts
/// name no reason ("Failed to open file."); those fall to the code and the operation. The
/// first row that matches decides.
fn said(text: &str) -> Option<FsError> {
    let table: &[(&[&str], FsError)] = &[
        // Before "exists": "doesn't exist".
        (
            &[
                "no such file",
                "no such directory",
                "not found",
                "does not exist",
                "doesn't exist",
                "not exist",
                "cannot find",
                "can't find",
                "is not retrievable",
            ],
            FsError::NotFound,
        ),
        (&["operation not permitted"], FsError::NotPermitted),
        // RFC 959's text for 553.
        (&["name not allowed"], FsError::Invalid),
        (DENIED, FsError::Denied),
        (&["directory not empty", "not empty"], FsError::NotEmpty),
        // "File exists", "already exists", "Cannot rename: target exists".
        (&["exists"], FsError::Exists),
        // Before "is a directory": "is not a directory".
        (&["not a directory"], FsError::NotDir),
        // proftpd, pure-ftpd and vsftpd-like RETR/STOR of a directory.
        (&["is a directory", "not a regular file", "not a plain file", "only retrieve regular files"], FsError::IsDir),
        (&["name too long", "too long"], FsError::NameTooLong),
        (&["quota"], FsError::Quota),
        (&["no space", "disk full", "not enough space", "insufficient storage", "insufficient disk"], FsError::NoSpace),
        (&["read-only file system"], FsError::ReadOnly),
        (
            &["device or resource busy", "text file busy", "being used by another process", "file busy", "in use"],
            FsError::InUse,
        ),
        (&["cross-device link"], FsError::CrossDevice),
        // strerror(EINVAL), "invalid mode", "Invalid time format", "Invalid file name".
        (&["invalid"], FsError::Invalid),
    ];
    let find = |t: &str| table.iter().find(|(words, _)| words.iter().any(|w| t.contains(w))).map(|&(_, kind)| kind);
    // "path: reason": the reason comes last, so a name that reads like one ("/not found/x:
    // Permission denied") does not decide.
    let lower = text.to_ascii_lowercase();
    lower.rsplit_once(": ").and_then(|(_, reason)| find(reason)).or_else(|| find(&lower))
}

/// The reply-code → failure table. The server's words decide where they name a reason
/// ([`said`]); otherwise the code does, read for the command that got it ([`Op`]).
fn reply_kind(code: u16, text: &str, op: Op) -> FsError {
    if ends_session(code, text) {
        // 421, vsftpd's 500 OOPS: the session is gone; never "invalid argument".
        return FsError::Broken;
    }
    let said = said(text).map(|k| for_op(k, op));
    match code {
        // An append refused (proftpd's "451 Append/Restart not permitted" without
        // AllowStoreRestart, servers without APPE, a server that forbids APPE but not STOR):
        // the caller appends by a copy instead, whose STOR meets any real refusal.
        450 | 451 | 550 | 500..=504 if op == Op::Append && said.is_none_or(|k| k == FsError::Denied) => {
            FsError::Unsupported
        }
        _ if said.is_some_and(|k| k == FsError::InUse) && !matches!(op, Op::Delete | Op::Rmdir | Op::Rename) => {
            // EBUSY is documented for unlink, rmdir and rename only; a busy file elsewhere is a
            // passing failure.
            FsError::TryLater
        }
        // RFC 959 452: "insufficient storage space in system" (the disk is full); 552:
        // "exceeded storage allocation (for current directory or dataset)", an allocation of
        // this user's: a quota. The text overrides either (pure-ftpd: "552 Quota exceeded",
        // "452 Disk full - please upload later").
        452 => said.filter(|&k| k == FsError::Quota).unwrap_or(FsError::NoSpace),
        552 => said.filter(|&k| k == FsError::NoSpace).unwrap_or(FsError::Quota),
        // A login refused (wrong password, "too many", also a fresh connection's for any
        // operation), or an account needed to store files (532): permission. A 530 to a
        // command after the login is [`FtpError::LoggedOut`] instead, unless it names a
        // permission.
        530 | 532 => FsError::Denied,
        // "Command not recognized" and "not implemented": never our argument. Inside a fallback
        // (LIST for MLSD, no chmod, no times); what reaches a user is EOPNOTSUPP.
        500 | 502 | 504 => FsError::Unsupported,
        501 if matches!(op, Op::Mlsd | Op::SetAttr)
            && text_says(text, &["unknown", "not understood", "not implemented", "not supported"]) =>
        {
            FsError::Unsupported
        }
        // Syntax error in an argument: the server's reason where it gives one (pyftpdlib's
        // "501 No such directory." to MLSD of a missing or plain file; proftpd's "501 /f:
        // Operation not permitted" to MFMT), else a name or value it will not take: EINVAL,
        // which open(2) and mkdir(2) give for a name the filesystem does not allow. A lookup
        // stays EINVAL too: taken for ENOENT, a name the server will not look up (MLST of an
        // awkward name) would count as absent without a listing, and be created over.
        501 => said.unwrap_or(match op {
            Op::Mlsd => FsError::NotFound,
            _ => FsError::Invalid,
        }),
        // Bad sequence: a server that wants something before MLSD does not have it for us.
        503 if op == Op::Mlsd => FsError::Unsupported,
        553 => said.unwrap_or(match op {
            // vsftpd answers a STOR it may not do with "553 Could not create file."
            Op::Write | Op::Append => FsError::Denied,
            // RFC 959: "file name not allowed". open(2), mkdir(2): EINVAL for a name the
            // filesystem does not allow.
            _ => FsError::Invalid,
        }),
        521 => FsError::Exists,
        550 => said.unwrap_or(match op {
            Op::Lookup | Op::Mlsd | Op::Read | Op::Delete | Op::Rename | Op::Rmdir => FsError::NotFound,
            // vsftpd's "550 Create directory operation failed." (the model looks what is there).
            Op::Mkdir => FsError::Exists,
            // vsftpd's "550 SITE CHMOD command failed.", "550 Could not set file modification
            // time.": the file is there (just looked up); chmod(2) and utimensat(2) give EPERM
            // to whoever is not its owner.
            Op::SetAttr => FsError::NotPermitted,
            Op::Write | Op::Append | Op::Session => FsError::Denied,
        }),
        // 450 "file unavailable (busy)", 451 "local error", 425/426 data connection failed
        // or aborted: passing failures, unless the text names a definite reason (pure-ftpd's
        // "451 Rename/move failure: Directory not empty", proftpd's "450 /d: No such file or
        // directory" to LIST, pyftpdlib's "426 No space left on device; transfer aborted.").
        // Around a transfer only a reason about the disk or the path counts: a 425/426/450/451
        // whose text says "invalid" or "not permitted" (proftpd's "425 Unable to build data
        // connection: <strerror>") is still a passing failure of the server's, tried again.
        // (pure-ftpd's "451 Rename/move failure: <strerror>" is its rename's own answer.)
        400..=499
            if matches!(code, 425 | 426) || matches!(op, Op::Read | Op::Write | Op::Append | Op::Mlsd | Op::Lookup) =>
        {
            said.filter(|k| {
                matches!(
                    k,
                    FsError::NoSpace
                        | FsError::Quota
                        | FsError::NotFound
                        | FsError::NotEmpty
                        | FsError::NotDir
                        | FsError::IsDir
                        | FsError::InUse
                )
            })
            .unwrap_or(FsError::TryLater)
        }
        400..=499 => said.unwrap_or(FsError::TryLater),
        // 551 "page type unknown", 554 "invalid REST parameter", anything else: the server
        // failed the command.
        _ => FsError::Failed,
    }
}

/// A reason read for the command it answers.
fn for_op(kind: FsError, op: Op) -> FsError {
    match (kind, op) {
        // pure-ftpd's DELE of a directory: "550 Could not delete /d: Invalid argument".
        // unlink(2) gives EISDIR.
        (FsError::Invalid, Op::Delete) => FsError::IsDir,
        // "not a regular file" to SIZE or MDTM of a directory is not a failure of the lookup.
        (FsError::IsDir, Op::Lookup | Op::Mlsd) => FsError::NotFound,
        _ => kind,
    }
}

#[cfg(test)]
#[path = "error_tests.rs"]
mod tests;

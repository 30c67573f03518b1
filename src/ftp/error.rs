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
            | FtpError::Unmounting => false,
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
    text.trim_start().get(..4).is_some_and(|w| w.eq_ignore_ascii_case("OOPS"))
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
        // which open(2) and mkdir(2) give for a name the filesystem does not allow. A lookup of
        // such a name finds nothing (ENOENT), so creating it is what fails, with EINVAL.
        501 => said.unwrap_or(match op {
            Op::Lookup | Op::Mlsd => FsError::NotFound,
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
mod tests {
    use super::*;
    use libc::*;

    fn reply(code: u16, text: &str) -> FtpError {
        FtpError::Reply { code, text: text.into() }
    }

    /// One row per situation: (code, text as the server sends it, command, errno). The
    /// texts were read off the four servers of the suite (tests/wire.rs
    /// `replies_map_to_documented_errnos` checks the live ones), or from their programs'
    /// message strings where the situation cannot be staged (disk full, quota); "RFC" rows use
    /// RFC 959's own texts, "IIS" rows Microsoft's.
    const ROWS: &[(u16, &str, Op, i32)] = &[
        // vsftpd 3.0.3: its texts name no reason; the code and the command decide (and the
        // model looks at the listing where one text covers several situations).
        (550, "Failed to open file.", Op::Read, ENOENT),
        (550, "Could not get file size.", Op::Lookup, ENOENT),
        (550, "Could not get file modification time.", Op::Lookup, ENOENT),
        (550, "Failed to change directory.", Op::Lookup, ENOENT),
        (500, "Unknown command.", Op::Mlsd, EOPNOTSUPP),
        (500, "Unknown command.", Op::Lookup, EOPNOTSUPP),
        (500, "Unknown command.", Op::SetAttr, EOPNOTSUPP),
        (553, "Could not create file.", Op::Write, EACCES),
        (553, "Could not create file.", Op::Append, EACCES),
        (550, "Permission denied.", Op::Write, EACCES),
        (550, "Create directory operation failed.", Op::Mkdir, EEXIST),
        (550, "Remove directory operation failed.", Op::Rmdir, ENOENT),
        (550, "Delete operation failed.", Op::Delete, ENOENT),
        (550, "RNFR command failed.", Op::Rename, ENOENT),
        (550, "Rename failed.", Op::Rename, ENOENT),
        (550, "SITE CHMOD command failed.", Op::SetAttr, EPERM),
        (500, "Unknown SITE command.", Op::SetAttr, EOPNOTSUPP),
        (550, "Could not set file modification time.", Op::SetAttr, EPERM),
        (451, "Failure writing to local file.", Op::Write, EIO),
        (426, "Failure writing network stream.", Op::Read, EIO),
        (425, "Failed to establish connection.", Op::Read, EIO),
        (500, "OOPS: vsf_sysutil_bind", Op::Write, EIO),
        (500, "OOPS: priv_sock_get_int", Op::Lookup, EIO),
        (421, "Timeout.", Op::Read, EIO),
        (530, "Login incorrect.", Op::Session, EACCES),
        // proftpd 1.3.8: "path: strerror".
        (550, "/missing: No such file or directory", Op::Read, ENOENT),
        (550, "/d: Not a regular file", Op::Read, EISDIR),
        // A name that reads like a reason: the reason after the last ": " decides.
        (550, "/not found/quota in use: Permission denied", Op::Read, EACCES),
        (550, "/d: Not a regular file", Op::Write, EISDIR),
        (550, "/locked: Permission denied", Op::Read, EACCES),
        (550, "/f/x: Not a directory", Op::Read, ENOTDIR),
        (550, "/f: Not a directory", Op::Lookup, ENOTDIR),
        (550, "/nnn: File name too long", Op::Write, ENAMETOOLONG),
        (550, "/d: not a regular file", Op::Lookup, ENOENT),
        (550, "'/missing' cannot be listed", Op::Lookup, ENOENT),
        (550, "'/f' is not a directory", Op::Mlsd, ENOTDIR),
        (550, "/closed: Permission denied", Op::Mlsd, EACCES),
        (450, "/missing: No such file or directory", Op::Lookup, ENOENT),
        (451, "/f: Append/Restart not permitted, try again", Op::Append, EOPNOTSUPP),
        (550, "/nodir/x: No such file or directory", Op::Append, ENOENT),
        (550, "/d: File exists", Op::Mkdir, EEXIST),
        (550, "/ro/new: Permission denied", Op::Mkdir, EACCES),
        (550, "/nodir/x: No such file or directory", Op::Mkdir, ENOENT),
        (550, "/full: Directory not empty", Op::Rmdir, ENOTEMPTY),
        (550, "/f: Not a directory", Op::Rmdir, ENOTDIR),
        (550, "/d: Is a directory", Op::Delete, EISDIR),
        (550, "/ro/inner: Permission denied", Op::Delete, EACCES),
        (550, "/full: Directory not empty", Op::Rename, ENOTEMPTY),
        (550, "/d: Operation not permitted", Op::Rename, EPERM),
        (550, "/d/sub: Invalid argument", Op::Rename, EINVAL),
        (550, "CHMOD 600 /rootfile: Operation not permitted", Op::SetAttr, EPERM),
        (550, "/closed/x: Permission denied", Op::SetAttr, EACCES),
        (550, "'9999': invalid mode", Op::SetAttr, EINVAL),
        (500, "'SITE FOO' not understood", Op::SetAttr, EOPNOTSUPP),
        (501, "/rootfile: Operation not permitted", Op::SetAttr, EPERM),
        (501, "2020x: Invalid argument", Op::SetAttr, EINVAL),
        (500, "XYZZY not understood", Op::Lookup, EOPNOTSUPP),
        (503, "Bad sequence of commands", Op::Rename, EIO),
        // pure-ftpd 1.0.50.
        (550, "Can't open /missing: No such file or directory", Op::Read, ENOENT),
        (550, "I can only retrieve regular files", Op::Read, EISDIR),
        (550, "Can't open /locked: Permission denied", Op::Read, EACCES),
        (550, "Can't check for file existence", Op::Lookup, ENOENT),
        (550, "Can't check for file existence", Op::Mlsd, ENOENT),
        (550, "Can't change directory to /f: Not a directory", Op::Lookup, ENOTDIR),
        (553, "Can't open that file: No such file or directory", Op::Write, ENOENT),
        (553, "Can't open that file: Permission denied", Op::Write, EACCES),
        (553, "Can't open that file: Permission denied", Op::Append, EACCES),
        (553, "Can't open that file: Is a directory", Op::Write, EISDIR),
        (553, "Can't open that file: File name too long", Op::Write, ENAMETOOLONG),
        (550, "Can't create directory: File exists", Op::Mkdir, EEXIST),
        (550, "Can't create directory: Permission denied", Op::Mkdir, EACCES),
        (550, "Can't remove directory: Directory not empty", Op::Rmdir, ENOTEMPTY),
        (550, "Can't remove directory: Not a directory", Op::Rmdir, ENOTDIR),
        (550, "Could not delete /missing: No such file or directory", Op::Delete, ENOENT),
        (550, "Could not delete /d: Invalid argument", Op::Delete, EISDIR),
        (550, "Sorry, but that file doesn't exist", Op::Rename, ENOENT),
        (451, "Rename/move failure: No such file or directory", Op::Rename, ENOENT),
        (451, "Rename/move failure: Directory not empty", Op::Rename, ENOTEMPTY),
        (451, "Rename/move failure: Not a directory", Op::Rename, ENOTDIR),
        (451, "Rename/move failure: Is a directory", Op::Rename, EISDIR),
        (451, "Rename/move failure: Permission denied", Op::Rename, EACCES),
        (451, "Rename/move failure: Invalid argument", Op::Rename, EINVAL),
        (451, "Rename/move failure: File name too long", Op::Rename, ENAMETOOLONG),
        (451, "Rename/move failure: Invalid cross-device link", Op::Rename, EXDEV),
        (550, "Could not change perms on /rootfile: Operation not permitted", Op::SetAttr, EPERM),
        (550, "utime(/rootfile): Operation not permitted", Op::SetAttr, EPERM),
        (550, "utime(/missing): No such file or directory", Op::SetAttr, ENOENT),
        (500, "SITE FOO is an unknown extension", Op::SetAttr, EOPNOTSUPP),
        (500, "Unknown command", Op::Lookup, EOPNOTSUPP),
        // pure-ftpd's messages for a full disk and a quota (not staged).
        (552, "Quota exceeded: [big] won't be saved", Op::Write, EDQUOT),
        (452, "Disk full - please upload later", Op::Write, ENOSPC),
        (451, "Error during write to file", Op::Write, EIO),
        // pyftpdlib 2.2.0: "strerror." (it runs as root in the suite: no permission rows).
        (550, "No such file or directory.", Op::Read, ENOENT),
        (550, "Is a directory.", Op::Read, EISDIR),
        (550, "Is a directory.", Op::Write, EISDIR),
        (550, "Not a directory.", Op::Lookup, ENOTDIR),
        (550, "File name too long.", Op::Lookup, ENAMETOOLONG),
        (550, "/missing is not retrievable.", Op::Lookup, ENOENT),
        (550, "/missing is not retrievable", Op::SetAttr, ENOENT),
        (501, "No such directory.", Op::Mlsd, ENOENT),
        (550, "File exists.", Op::Mkdir, EEXIST),
        (550, "Directory not empty.", Op::Rmdir, ENOTEMPTY),
        (550, "Not a directory.", Op::Rmdir, ENOTDIR),
        (550, "Is a directory.", Op::Delete, EISDIR),
        (550, "No such file or directory.", Op::Rename, ENOENT),
        (550, "Invalid argument.", Op::Rename, EINVAL),
        (501, "Invalid SITE CHMOD format.", Op::SetAttr, EINVAL),
        (550, "Invalid time format; expected: YYYYMMDDHHMMSS.", Op::SetAttr, EINVAL),
        (500, "Command \"XYZZY\" not understood.", Op::Lookup, EOPNOTSUPP),
        (501, "Syntax error: command needs an argument.", Op::Lookup, ENOENT),
        (550, "Not enough privileges.", Op::Write, EACCES),
        // Its data connection's errors: "426 strerror; transfer aborted." (not staged).
        (426, "No space left on device; transfer aborted.", Op::Write, ENOSPC),
        (426, "Disk quota exceeded; transfer aborted.", Op::Write, EDQUOT),
        (426, "Internal error; transfer aborted.", Op::Write, EIO),
        (426, "Transfer aborted via ABOR.", Op::Read, EIO),
        // RFC 959's texts.
        (452, "Requested action not taken. Insufficient storage space in system.", Op::Write, ENOSPC),
        (552, "Requested file action aborted. Exceeded storage allocation.", Op::Write, EDQUOT),
        (552, "Exceeded storage allocation", Op::Append, EDQUOT),
        (552, "No space left on device", Op::Write, ENOSPC),
        (532, "Need account for storing files.", Op::Write, EACCES),
        (553, "Requested action not taken. File name not allowed.", Op::Write, EINVAL),
        (553, "Requested action not taken. File name not allowed.", Op::Rename, EINVAL),
        (553, "Requested action not taken. File name not allowed.", Op::Mkdir, EINVAL),
        (553, "File exists", Op::Rename, EEXIST),
        // IIS and some embedded servers refusing a rename over an existing file.
        (550, "Cannot rename: target exists", Op::Rename, EEXIST),
        (521, "\"/d\" directory already exists", Op::Mkdir, EEXIST),
        (502, "Command not implemented.", Op::SetAttr, EOPNOTSUPP),
        (502, "Command not implemented.", Op::Lookup, EOPNOTSUPP),
        (504, "Command not implemented for that parameter.", Op::SetAttr, EOPNOTSUPP),
        (501, "Syntax error in parameters or arguments.", Op::Lookup, ENOENT),
        (501, "Syntax error in parameters or arguments.", Op::Write, EINVAL),
        (501, "Syntax error in parameters or arguments.", Op::Mkdir, EINVAL),
        (501, "Unknown SITE command", Op::SetAttr, EOPNOTSUPP),
        (501, "Unknown MLSD", Op::Mlsd, EOPNOTSUPP),
        (503, "Bad sequence of commands.", Op::Mlsd, EOPNOTSUPP),
        (450, "Requested file action not taken. File unavailable (e.g., file busy).", Op::Read, EIO),
        (450, "Requested file action not taken. File unavailable (e.g., file busy).", Op::Delete, EBUSY),
        (451, "Requested action aborted: local error in processing.", Op::Write, EIO),
        (451, "Requested action aborted: local error in processing.", Op::Rename, EIO),
        (425, "Can't open data connection.", Op::Read, EIO),
        (426, "Connection closed; transfer aborted.", Op::Write, EIO),
        (421, "Service not available, closing control connection.", Op::Session, EIO),
        (551, "Requested action aborted: page type unknown.", Op::Write, EIO),
        (554, "Requested action not taken: invalid REST parameter.", Op::Read, EIO),
        (550, "Read-only file system", Op::Write, EROFS),
        (530, "Not logged in.", Op::Session, EACCES),
        // Microsoft IIS.
        (550, "The process cannot access the file because it is being used by another process.", Op::Delete, EBUSY),
        (550, "The process cannot access the file because it is being used by another process.", Op::Rename, EBUSY),
        (550, "The process cannot access the file because it is being used by another process.", Op::Read, EIO),
        (550, "Access is denied.", Op::Write, EACCES),
        (550, "The system cannot find the file specified.", Op::Read, ENOENT),
    ];

    #[test]
    fn every_row_of_the_table() {
        let mut wrong = Vec::new();
        for &(code, text, op, errno) in ROWS {
            let got = reply(code, text).errno(op);
            if got != errno {
                wrong.push(format!("{code} {text:?} for {op:?}: errno {got}, expected {errno}"));
            }
            assert_ne!(got, ENOSYS, "the kernel would stop calling the operation");
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn fallbacks_see_unsupported() {
        // The backend falls back on these (LIST for MLSD, a copy for APPE, no chmod).
        assert_eq!(reply(500, "Unknown command.").kind(Op::Mlsd), FsError::Unsupported);
        assert_eq!(reply(451, "Append/Restart not permitted").kind(Op::Append), FsError::Unsupported);
        assert_eq!(reply(550, "/f: Permission denied").kind(Op::Append), FsError::Unsupported);
        assert_eq!(reply(502, "Command not implemented").kind(Op::Append), FsError::Unsupported);
        assert_eq!(reply(452, "No space").kind(Op::Append), FsError::NoSpace);
        assert_eq!(reply(500, "Unknown SITE command.").kind(Op::SetAttr), FsError::Unsupported);
        // pyftpdlib's MLSD of a missing directory is no reason to give MLSD up.
        assert_eq!(reply(501, "No such directory.").kind(Op::Mlsd), FsError::NotFound);
    }

    #[test]
    fn logins_dropped_and_refused() {
        // After the login, these texts (vsftpd, proftpd, pyftpdlib) mean the login is gone.
        for text in ["Please login with USER and PASS.", "Log in with USER and PASS first.", "Not logged in."] {
            assert!(is_logged_out(530, text), "{text}");
        }
        assert!(!is_logged_out(530, "Permission denied."));
        assert!(!is_logged_out(550, "Not logged in."));
        let out = FtpError::LoggedOut("Log in with USER and PASS first.".into());
        assert!(out.is_fatal_for_connection() && out.is_session_ended() && out.is_reconnectable());
        assert!(out.ended_only_this_session());
        assert_eq!(out.errno(Op::Read), EIO);
        assert!(!out.to_string().is_empty());
        assert_eq!(reply(530, "Login incorrect.").errno(Op::Session), EACCES);
        assert!(!reply(530, "Login incorrect.").is_reconnectable(), "a wrong password is not tried again");
        assert!(reply(421, "bye").is_too_many_connections());
        assert!(reply(530, "Sorry, the maximum number of clients is reached").is_too_many_connections());
        assert!(!reply(530, "Login incorrect.").is_too_many_connections());
    }

    #[test]
    fn errors_of_our_own() {
        assert_eq!(FtpError::InvalidArgument("x".into()).errno(Op::Lookup), EINVAL);
        assert_eq!(FtpError::LineTooLong(5000).errno(Op::Read), ENAMETOOLONG);
        let timeout = FtpError::Io(io::Error::new(io::ErrorKind::TimedOut, "t"));
        assert_eq!(timeout.errno(Op::Read), ETIMEDOUT);
        let reset = FtpError::Io(io::Error::new(io::ErrorKind::ConnectionReset, "r"));
        assert_eq!(reset.errno(Op::Write), EIO);
        assert_eq!(FtpError::Protocol("garbage".into()).errno(Op::Lookup), EIO);
        assert_eq!(FtpError::Closed.errno(Op::Lookup), EIO);
        assert_eq!(FtpError::Busy("no connection".into()).errno(Op::Read), ETIMEDOUT);
        assert_eq!(FtpError::Unmounting.errno(Op::Read), EIO);
    }

    #[test]
    fn classification() {
        assert!(reply(421, "bye").is_reconnectable());
        assert!(!reply(550, "no").is_reconnectable());
        assert!(reply(425, "no data").is_retryable());
        assert!(reply(426, "aborted").is_retryable());
        assert!(!reply(550, "no").is_retryable());
        assert!(FtpError::Closed.is_fatal_for_connection());
        let big = FtpError::TooLarge("listing of /d refused: more than 250000 entries".into());
        assert!(!big.is_reconnectable(), "the same listing would be as large on another connection");
        assert_eq!(big.errno(Op::Lookup), ENOMEM);
    }

    #[test]
    fn shown_escaped() {
        let nasty = "x\x1b]0;owned\x07\r\n\u{9b}y";
        for e in [
            reply(550, nasty),
            FtpError::Protocol(nasty.into()),
            FtpError::InvalidArgument(nasty.into()),
            FtpError::TooLarge(nasty.into()),
            FtpError::Busy(nasty.into()),
            FtpError::Io(io::Error::other(nasty)),
        ] {
            let shown = e.to_string();
            assert!(!shown.chars().any(char::is_control), "{shown:?}");
            assert!(shown.contains("x\\x1b]0;owned\\x07\\r\\n\\u{9b}y"), "{shown:?}");
        }
        // The errno table still reads the text as sent.
        assert_eq!(reply(550, "No such file\x1b[2J").errno(Op::Read), ENOENT);
    }
}

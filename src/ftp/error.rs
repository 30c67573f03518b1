//! The wire layer's one error type and the one table that turns FTP reply codes into errno values.
//!
//! Everything in `ftp/` fails with [`FtpError`]. Nothing above the wire looks at reply codes:
//! [`FtpError::kind`] turns an error into a [`FsError`] given the kind of operation attempted
//! ([`Op`]), so the mapping lives in exactly one place.

use std::io;

use crate::error::FsError;
use crate::printable::printable;

/// What the caller was doing when a reply came back negative. Some codes (550 above all) mean
/// different things for different commands, so the errno table needs this context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Reading metadata (MLST, SIZE, MDTM, CWD).
    Lookup,
    /// MLSD: any of 500–504 means the server lacks it (LIST is then used; its errors and
    /// MLSD's others are [`Op::Lookup`]'s).
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
            FtpError::Io(_) | FtpError::Protocol(_) | FtpError::Closed => true,
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

    /// True when the session ended under the command: the server said so (421, `500 OOPS`)
    /// or closed or reset the connection. Not for a timeout or a garbled reply.
    pub fn is_session_ended(&self) -> bool {
        use io::ErrorKind::*;
        match self {
            FtpError::Reply { code, text } => ends_session(*code, text),
            FtpError::Io(e) => matches!(e.kind(), UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe),
            FtpError::Closed => true,
            _ => false,
        }
    }

    /// True when the server ended this one session on purpose while others stay fine
    /// (vsftpd's `500 OOPS`): the other idle connections need not be dropped.
    pub fn ended_only_this_session(&self) -> bool {
        matches!(self, FtpError::Reply { code: 500, text } if is_oops(text))
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
            FtpError::Io(_) | FtpError::Protocol(_) | FtpError::Closed => FsError::Broken,
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

/// The reply-code → failure table.
fn reply_kind(code: u16, text: &str, op: Op) -> FsError {
    match code {
        _ if ends_session(code, text) => FsError::Broken,
        452 | 552 => FsError::NoSpace,
        // An append refused (proftpd without AllowStoreRestart, servers without APPE).
        450 | 451 | 550 if op == Op::Append && !text_says(text, &["no space", "disk full", "quota"]) => {
            FsError::Unsupported
        }
        530 | 532 => FsError::Denied,
        500..=504 if matches!(op, Op::Mlsd | Op::Append) => FsError::Unsupported,
        500 if op == Op::SetAttr => FsError::Unsupported,
        // A 501 is the server's word on this one argument (a mode or time it will not take),
        // unless it says it does not know the command at all.
        501 if op == Op::SetAttr
            && text_says(text, &["unknown", "not understood", "not implemented", "not supported"]) =>
        {
            FsError::Unsupported
        }
        500 | 501 => FsError::Invalid,
        502 | 504 => FsError::Unsupported,
        553 => {
            if text_says(text, &["exist"]) {
                FsError::Exists
            } else if matches!(op, Op::Write | Op::Append) || text_says(text, &["permission", "denied", "not allowed"])
            {
                // vsftpd answers a STOR it may not do with "553 Could not create file."
                FsError::Denied
            } else {
                FsError::Invalid
            }
        }
        521 => FsError::Exists,
        550 => kind_of_550(text, op),
        c if (400..500).contains(&c) => FsError::TryLater,
        _ => FsError::Failed,
    }
}

/// 550 is "requested action not taken": its meaning depends on the command and on the text.
fn kind_of_550(text: &str, op: Op) -> FsError {
    if text_says(text, &["not empty"]) {
        return FsError::NotEmpty;
    }
    if text_says(text, &["permission", "denied", "not allowed", "access is denied"]) {
        return FsError::Denied;
    }
    if text_says(text, &["already exists", "file exists"]) {
        return FsError::Exists;
    }
    if text_says(text, &["is a directory"]) {
        return FsError::IsDir;
    }
    if text_says(text, &["not a directory"]) {
        return FsError::NotDir;
    }
    if text_says(text, &["too long"]) {
        return FsError::NameTooLong;
    }
    if text_says(text, &["no such", "not found", "does not exist", "can't open", "cannot open"]) {
        return FsError::NotFound;
    }
    match op {
        Op::Lookup | Op::Mlsd | Op::Read | Op::Delete | Op::Rename | Op::Rmdir | Op::SetAttr => FsError::NotFound,
        Op::Mkdir => FsError::Exists,
        Op::Write | Op::Append | Op::Session => FsError::Denied,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libc::*;

    fn reply(code: u16, text: &str) -> FtpError {
        FtpError::Reply { code, text: text.into() }
    }

    #[test]
    fn table_maps_codes_by_context() {
        assert_eq!(reply(550, "No such file or directory.").errno(Op::Read), ENOENT);
        assert_eq!(reply(550, "Permission denied.").errno(Op::Read), EACCES);
        assert_eq!(reply(550, "Failed to open file.").errno(Op::Write), EACCES);
        assert_eq!(reply(550, "Failed to open file.").errno(Op::Read), ENOENT);
        assert_eq!(reply(550, "Create directory operation failed.").errno(Op::Mkdir), EEXIST);
        assert_eq!(reply(550, "Directory not empty.").errno(Op::Rmdir), ENOTEMPTY);
        assert_eq!(reply(553, "File exists").errno(Op::Rename), EEXIST);
        assert_eq!(reply(553, "Could not create file.").errno(Op::Write), EACCES);
        assert_eq!(reply(553, "Invalid file name").errno(Op::Rename), EINVAL);
        assert_eq!(reply(452, "Disk full").errno(Op::Write), ENOSPC);
        assert_eq!(reply(552, "Exceeded storage allocation").errno(Op::Write), ENOSPC);
        assert_eq!(reply(530, "Login incorrect.").errno(Op::Session), EACCES);
        assert_eq!(reply(502, "Command not implemented").errno(Op::SetAttr), ENOSYS);
        assert_eq!(reply(500, "Unknown command").errno(Op::SetAttr), ENOSYS);
        assert_eq!(reply(501, "Unknown SITE command").errno(Op::SetAttr), ENOSYS);
        assert_eq!(reply(501, "Invalid SITE CHMOD format.").kind(Op::SetAttr), FsError::Invalid);
        assert_eq!(reply(521, "exists").errno(Op::Mkdir), EEXIST);
        assert_eq!(reply(426, "aborted").errno(Op::Read), EIO);
        assert_eq!(FtpError::InvalidArgument("x".into()).errno(Op::Lookup), EINVAL);
        assert_eq!(reply(451, "Append/Restart not permitted").kind(Op::Append), FsError::Unsupported);
        assert_eq!(reply(452, "No space").kind(Op::Append), FsError::NoSpace);
        assert_eq!(reply(451, "Local error").kind(Op::Write), FsError::TryLater);
        assert_eq!(reply(501, "Unknown MLSD").kind(Op::Mlsd), FsError::Unsupported);
        assert_eq!(reply(503, "Bad sequence").kind(Op::Mlsd), FsError::Unsupported);
        assert_eq!(reply(501, "Syntax error").kind(Op::Lookup), FsError::Invalid);
        assert_eq!(reply(550, "No such directory").kind(Op::Mlsd), FsError::NotFound);
        assert_eq!(reply(553, "Could not create file.").kind(Op::Append), FsError::Denied);
        assert!(reply(421, "bye").is_too_many_connections());
        assert!(reply(530, "Sorry, the maximum number of clients is reached").is_too_many_connections());
        assert!(!reply(530, "Login incorrect.").is_too_many_connections());
        let timeout = FtpError::Io(io::Error::new(io::ErrorKind::TimedOut, "t"));
        assert_eq!(timeout.errno(Op::Read), ETIMEDOUT);
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
        assert_eq!(big.errno(Op::Lookup), EFBIG);
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

//! The kinds of failure the filesystem model understands, and their errno values.
//!
//! The wire layer turns FTP replies into these once (in `ftp::error`); the in-memory backend
//! produces them directly. Above the backend trait nothing looks at reply codes or reply text.

/// Why a backend operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("already exists")]
    Exists,
    #[error("directory not empty")]
    NotEmpty,
    #[error("is a directory")]
    IsDir,
    #[error("not a directory")]
    NotDir,
    #[error("permission denied")]
    Denied,
    #[error("no space left on the server")]
    NoSpace,
    #[error("name too long")]
    NameTooLong,
    #[error("invalid name or argument")]
    Invalid,
    /// The server does not offer this operation (or refused it as unknown).
    #[error("not supported by the server")]
    Unsupported,
    /// A transient refusal (4xx): the same request may succeed later.
    #[error("refused for now, try later")]
    TryLater,
    /// The connection broke (network, protocol, 421) and a retry did not help.
    #[error("connection to the server broken")]
    Broken,
    /// The server did not answer in time.
    #[error("timed out")]
    Timeout,
    /// No connection became free in time.
    #[error("no free connection in time")]
    Busy,
    /// The filesystem is being unmounted.
    #[error("unmounting")]
    Unmounting,
    /// Any other permanent refusal.
    #[error("refused by the server")]
    Failed,
    /// What the server sent is past a bound against hostile servers (a listing of too many
    /// entries or bytes): refused rather than held in memory.
    #[error("too large (past a bound against hostile servers)")]
    TooLarge,
}

impl FsError {
    /// The errno reported to the kernel.
    pub fn errno(self) -> i32 {
        use libc::*;
        match self {
            FsError::NotFound => ENOENT,
            FsError::Exists => EEXIST,
            FsError::NotEmpty => ENOTEMPTY,
            FsError::IsDir => EISDIR,
            FsError::NotDir => ENOTDIR,
            FsError::Denied => EACCES,
            FsError::NoSpace => ENOSPC,
            FsError::NameTooLong => ENAMETOOLONG,
            FsError::Invalid => EINVAL,
            FsError::Unsupported => ENOSYS,
            FsError::TryLater | FsError::Broken | FsError::Unmounting | FsError::Failed => EIO,
            FsError::Timeout | FsError::Busy => ETIMEDOUT,
            FsError::TooLarge => EFBIG,
        }
    }

    /// A short name of the kind, for statistics.
    pub fn name(self) -> &'static str {
        match self {
            FsError::NotFound => "not-found",
            FsError::Exists => "exists",
            FsError::NotEmpty => "not-empty",
            FsError::IsDir => "is-dir",
            FsError::NotDir => "not-dir",
            FsError::Denied => "denied",
            FsError::NoSpace => "no-space",
            FsError::NameTooLong => "name-too-long",
            FsError::Invalid => "invalid",
            FsError::Unsupported => "unsupported",
            FsError::TryLater => "try-later",
            FsError::Broken => "connection-broken",
            FsError::Timeout => "timeout",
            FsError::Busy => "no-free-connection",
            FsError::Unmounting => "unmounting",
            FsError::Failed => "refused",
            FsError::TooLarge => "too-large",
        }
    }

    /// True for a definite answer from the server about this request (not a transient or
    /// connection-level failure): repeating the same request now would get the same answer.
    pub fn is_definite(self) -> bool {
        !matches!(self, FsError::TryLater | FsError::Broken | FsError::Timeout | FsError::Busy | FsError::Unmounting)
    }
}

impl From<FsError> for i32 {
    fn from(e: FsError) -> i32 {
        e.errno()
    }
}

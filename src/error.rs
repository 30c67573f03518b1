//! The kinds of failure the filesystem model understands, and their errno values.
//!
//! The wire layer turns FTP replies into these once (in `ftp::error`); the in-memory backend
//! produces them directly. Above the backend trait nothing looks at reply codes or reply text.
//!
//! Each kind's errno is the one `man 2` documents for that situation (README, "Errors you
//! see"). No kind is `ENOSYS`: the kernel takes `ENOSYS` from open, create, flush, fsync,
//! access and others as "this filesystem never implements the call" and stops sending it for
//! the rest of the mount, so one refused command would, for instance, silently turn every
//! later `close()` into a success that reports no failed upload.

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
    /// Not allowed for this user (EACCES: the server's "Permission denied").
    #[error("permission denied")]
    Denied,
    /// Not allowed for anyone but the owner, or not at all (EPERM: the server's "Operation not
    /// permitted"; a chmod or time change the server refuses on a file it holds).
    #[error("operation not permitted")]
    NotPermitted,
    /// The disk is full (452, "No space left on device").
    #[error("no space left on the server")]
    NoSpace,
    /// The user's quota is used up (552 "exceeded storage allocation", or any refusal that
    /// names a quota).
    #[error("quota exceeded on the server")]
    Quota,
    /// The server's file system is read-only (EROFS).
    #[error("read-only file system on the server")]
    ReadOnly,
    /// The server says the file is in use (EBUSY), for a delete, rename or rmdir.
    #[error("file in use on the server")]
    InUse,
    /// The server cannot rename across its own file systems (EXDEV: `mv` then copies).
    #[error("rename across file systems on the server")]
    CrossDevice,
    #[error("name too long")]
    NameTooLong,
    #[error("invalid name or argument")]
    Invalid,
    /// The server does not offer this operation (or refused it as unknown). Inside, a signal to
    /// fall back (LIST for MLSD, a copy for APPE, no chmod); what reaches a user is EOPNOTSUPP.
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
    /// entries or bytes): refused rather than held in memory (ENOMEM, as open(2), stat(2) and
    /// opendir(3) document for "not enough memory for this").
    #[error("too large (past a bound against hostile servers)")]
    TooLarge,
    /// The server cannot be reached now; only what is cached is served (EHOSTDOWN, "Host is
    /// down"; a read of what is not cached gets EIO).
    #[error("the server is unreachable (offline)")]
    Offline,
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
            FsError::NotPermitted => EPERM,
            FsError::NoSpace => ENOSPC,
            FsError::Quota => EDQUOT,
            FsError::ReadOnly => EROFS,
            FsError::InUse => EBUSY,
            FsError::CrossDevice => EXDEV,
            FsError::NameTooLong => ENAMETOOLONG,
            FsError::Invalid => EINVAL,
            FsError::Unsupported => EOPNOTSUPP,
            FsError::TryLater | FsError::Broken | FsError::Unmounting | FsError::Failed => EIO,
            FsError::Timeout | FsError::Busy => ETIMEDOUT,
            FsError::TooLarge => ENOMEM,
            FsError::Offline => EHOSTDOWN,
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
            FsError::NotPermitted => "not-permitted",
            FsError::NoSpace => "no-space",
            FsError::Quota => "quota",
            FsError::ReadOnly => "read-only",
            FsError::InUse => "in-use",
            FsError::CrossDevice => "cross-device",
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
            FsError::Offline => "offline",
        }
    }

    /// True for a definite answer from the server about this request (not a transient or
    /// connection-level failure): repeating the same request now would get the same answer.
    pub fn is_definite(self) -> bool {
        !matches!(
            self,
            FsError::TryLater
                | FsError::Broken
                | FsError::Timeout
                | FsError::Busy
                | FsError::Unmounting
                | FsError::Offline
        )
    }
}

impl From<FsError> for i32 {
    fn from(e: FsError) -> i32 {
        e.errno()
    }
}

#[cfg(test)]
mod tests {
    use super::FsError::{self, *};
    use libc::*;

    /// Every kind, its errno, and the man 2 line that makes it the right one.
    const TABLE: &[(FsError, i32, &str)] = &[
        (NotFound, ENOENT, "open(2): a directory component in pathname does not exist"),
        (Exists, EEXIST, "mkdir(2), open(2) O_EXCL: pathname already exists"),
        (NotEmpty, ENOTEMPTY, "rmdir(2), rename(2): directory not empty"),
        (IsDir, EISDIR, "open(2): pathname refers to a directory and writing was requested; unlink(2)"),
        (NotDir, ENOTDIR, "rmdir(2): pathname is not a directory"),
        (Denied, EACCES, "open(2): the requested access to the file is not allowed"),
        (NotPermitted, EPERM, "chmod(2), utimensat(2): the caller is not the owner"),
        (NoSpace, ENOSPC, "write(2): no room for the data"),
        (Quota, EDQUOT, "write(2): the user's quota of disk blocks has been exhausted"),
        (ReadOnly, EROFS, "open(2), mkdir(2): read-only filesystem"),
        (InUse, EBUSY, "unlink(2), rename(2), rmdir(2): in use by the system or another process"),
        (CrossDevice, EXDEV, "rename(2): not on the same mounted filesystem (mv copies)"),
        (NameTooLong, ENAMETOOLONG, "open(2): pathname was too long"),
        (Invalid, EINVAL, "open(2), mkdir(2): the final component is invalid for the filesystem"),
        (Unsupported, EOPNOTSUPP, "not ENOSYS: the kernel would stop calling flush/fsync/open/create"),
        (TryLater, EIO, "write(2), close(2): a low-level I/O error"),
        (Broken, EIO, "the connection to the server broke"),
        (Unmounting, EIO, "the mount is going away"),
        (Failed, EIO, "any other refusal"),
        (Timeout, ETIMEDOUT, "the server did not answer in time"),
        (Busy, ETIMEDOUT, "no connection became free in time"),
        (TooLarge, ENOMEM, "open(2), stat(2), opendir(3): not enough memory for this"),
        (Offline, EHOSTDOWN, "errno(3): host is down (a change while the server is away; a read gets EIO)"),
    ];

    /// Does not compile when a kind is added without its row above.
    fn listed(k: FsError) -> bool {
        match k {
            NotFound | Exists | NotEmpty | IsDir | NotDir | Denied | NotPermitted | NoSpace | Quota | ReadOnly
            | InUse | CrossDevice | NameTooLong | Invalid | Unsupported | TryLater | Broken | Timeout | Busy
            | Unmounting | Failed | TooLarge | Offline => TABLE.iter().any(|(row, _, _)| *row == k),
        }
    }

    #[test]
    fn every_kind_has_its_documented_errno() {
        assert!(TABLE.iter().all(|(k, _, _)| listed(*k)));
        assert_eq!(TABLE.len(), 23, "one row per kind");
        for &(kind, errno, why) in TABLE {
            assert_eq!(kind.errno(), errno, "{kind:?}: {why}");
            assert_eq!(i32::from(kind), errno);
            assert_ne!(kind.errno(), ENOSYS, "{kind:?}");
        }
        let mut names: Vec<_> = TABLE.iter().map(|(k, _, _)| k.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), TABLE.len(), "each kind has its own name");
    }

    #[test]
    fn only_transient_kinds_are_indefinite() {
        for &(kind, _, _) in TABLE {
            let transient = matches!(kind, TryLater | Broken | Timeout | Busy | Unmounting | Offline);
            assert_eq!(kind.is_definite(), !transient, "{kind:?}");
        }
    }
}

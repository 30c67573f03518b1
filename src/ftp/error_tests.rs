//! The errno table, row by row: each reply as a named server sends it, for each kind of
//! operation, and the errno `man 2` documents for that situation.

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
    // Only vsftpd's "OOPS:" ends a session; another server's "Oops" is a plain refusal.
    (500, "Oops, unknown command", Op::Lookup, EOPNOTSUPP),
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
    (501, "Syntax error: command needs an argument.", Op::Lookup, EINVAL),
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
    (501, "Syntax error in parameters or arguments.", Op::Lookup, EINVAL),
    (501, "Syntax error in parameters or arguments.", Op::Write, EINVAL),
    // proftpd's 425 with the system's text: still a passing failure, not EPERM or EINVAL.
    (425, "Unable to build data connection: Operation not permitted", Op::Read, EIO),
    (425, "Unable to build data connection: Invalid argument", Op::Write, EIO),
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

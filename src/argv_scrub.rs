//! Keeps the password out of `ps`: the process's original argument memory (what
//! `/proc/PID/cmdline` shows) is rewritten with the URL minus its password once it is parsed, and
//! the value of `FTPFS_PASSWORD` in the original environment block (`/proc/PID/environ`, `ps e`)
//! is blanked once it has been read.
//!
//! glibc passes `argc, argv, envp` to `.init_array` functions; we keep the pointers from there,
//! as Rust's standard library itself does on Linux.

use std::ffi::{CStr, c_char, c_int};
use std::sync::atomic::{AtomicIsize, AtomicPtr, Ordering};

static ARGC: AtomicIsize = AtomicIsize::new(0);
static ARGV: AtomicPtr<*mut c_char> = AtomicPtr::new(std::ptr::null_mut());
static ENVP: AtomicPtr<*mut c_char> = AtomicPtr::new(std::ptr::null_mut());

extern "C" fn capture(argc: c_int, argv: *mut *mut c_char, envp: *mut *mut c_char) {
    ARGC.store(argc as isize, Ordering::Relaxed);
    ARGV.store(argv, Ordering::Relaxed);
    ENVP.store(envp, Ordering::Relaxed);
}

#[used]
#[unsafe(link_section = ".init_array")]
static CAPTURE: extern "C" fn(c_int, *mut *mut c_char, *mut *mut c_char) = capture;

/// Blanks the value of `FTPFS_PASSWORD` in the original environment block. Call once the
/// password has been read.
pub fn scrub_env() {
    let envp = ENVP.load(Ordering::Relaxed);
    if envp.is_null() {
        return;
    }
    const KEY: &[u8] = b"FTPFS_PASSWORD=";
    let mut i = 0;
    // SAFETY: envp is the NULL-terminated array the C runtime passed at start-up; its strings
    // live for the whole process and are only overwritten in place, never lengthened.
    unsafe {
        loop {
            let p = *envp.add(i);
            if p.is_null() {
                break;
            }
            let bytes = CStr::from_ptr(p).to_bytes();
            if bytes.starts_with(KEY) {
                let value_len = bytes.len() - KEY.len();
                std::ptr::write_bytes(p.cast::<u8>().add(KEY.len()), b'*', value_len.min(4));
                if value_len > 4 {
                    std::ptr::write_bytes(p.cast::<u8>().add(KEY.len() + 4), 0, value_len - 4);
                }
            }
            i += 1;
        }
    }
}

/// The URL without the `:password` part of its user info, or `None` if it has no password:
/// in every form the URL parser takes (`ftp:u:pw@h`, `ftp:/u:pw@h` too, see
/// [`ftpfs::cli::password_span`]).
pub fn without_password(arg: &str) -> Option<String> {
    let span = ftpfs::cli::password_span(arg)?;
    Some(format!("{}{}", &arg[..span.start], &arg[span.end..]))
}

/// Rewrites, in place, every argument that is a URL with a password.
pub fn scrub() {
    let argc = ARGC.load(Ordering::Relaxed);
    let argv = ARGV.load(Ordering::Relaxed);
    if argv.is_null() {
        return;
    }
    for i in 0..argc {
        // SAFETY: argv has argc valid, NUL-terminated entries for the life of the process
        // (captured from the C runtime before main), and we only shorten them in place.
        unsafe {
            let p = *argv.offset(i);
            if p.is_null() {
                continue;
            }
            let bytes = CStr::from_ptr(p).to_bytes();
            let Ok(text) = std::str::from_utf8(bytes) else { continue };
            let Some(clean) = without_password(text) else { continue };
            let len = bytes.len();
            let new = clean.as_bytes();
            std::ptr::copy_nonoverlapping(new.as_ptr(), p.cast::<u8>(), new.len());
            std::ptr::write_bytes(p.cast::<u8>().add(new.len()), 0, len - new.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_only_the_password() {
        assert_eq!(without_password("ftp://u:secret@host:21/dir").as_deref(), Some("ftp://u@host:21/dir"));
        assert_eq!(without_password("ftp://u:p@ss@host/").as_deref(), Some("ftp://u@host/"));
        assert_eq!(without_password("ftp://u@host/"), None);
        assert_eq!(without_password("ftp://host/a:b@c"), None);
        assert_eq!(without_password("/mnt/x"), None);
        // The other forms the URL parser takes with a password.
        assert_eq!(without_password("ftp:u:secret@host").as_deref(), Some("ftp:u@host"));
        assert_eq!(without_password("ftp:/u:secret@host/d").as_deref(), Some("ftp:/u@host/d"));
        assert_eq!(without_password("FTP:\\\\u:secret@host").as_deref(), Some("FTP:\\\\u@host"));
        assert_eq!(without_password("ro,proxy=http:u:pw@h:8080").as_deref(), Some("ro,proxy=http:u@h:8080"));
        // -o proxy=… with a password, among other options.
        assert_eq!(
            without_password("tls,proxy=socks5://u:pw@h:1080,ro").as_deref(),
            Some("tls,proxy=socks5://u@h:1080,ro")
        );
    }
}

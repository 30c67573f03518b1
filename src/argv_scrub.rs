//! Keeps a password given in the URL out of `ps`: the process's original argument memory (what
//! `/proc/PID/cmdline` shows) is rewritten with the URL minus its password once it is parsed.
//!
//! glibc passes `argc, argv, envp` to `.init_array` functions; we keep the pointer from there,
//! as Rust's standard library itself does on Linux.

use std::ffi::{CStr, c_char, c_int};
use std::sync::atomic::{AtomicIsize, AtomicPtr, Ordering};

static ARGC: AtomicIsize = AtomicIsize::new(0);
static ARGV: AtomicPtr<*mut c_char> = AtomicPtr::new(std::ptr::null_mut());

extern "C" fn capture(argc: c_int, argv: *mut *mut c_char, _envp: *const *const c_char) {
    ARGC.store(argc as isize, Ordering::Relaxed);
    ARGV.store(argv, Ordering::Relaxed);
}

#[used]
#[unsafe(link_section = ".init_array")]
static CAPTURE: extern "C" fn(c_int, *mut *mut c_char, *const *const c_char) = capture;

/// The URL without the `:password` part of its user info, or `None` if it has no password.
pub fn without_password(arg: &str) -> Option<String> {
    let scheme_end = arg.find("://")? + 3;
    let rest = &arg[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let at = rest[..authority_end].rfind('@')?;
    let colon = rest[..at].find(':')?;
    Some(format!("{}{}{}", &arg[..scheme_end], &rest[..colon], &rest[at..]))
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
    }
}

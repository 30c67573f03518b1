//! Building command lines for the control connection safely.
//!
//! Every argument passes through [`check_arg`]: CR, LF and NUL are refused before anything is
//! sent, because a raw CR/LF in a file name would inject a second command (rclone
//! GHSA-8c48-q9wj-3w37, CVE-2017-3533). On the wire, a 0xFF byte is doubled (Telnet IAC, RFC 854).

use super::error::{FtpError, Result};

/// The first of CR, LF or NUL in `arg`, by name.
fn forbidden(arg: &str) -> Option<&'static str> {
    arg.bytes().find(|b| matches!(b, b'\r' | b'\n' | 0)).map(|bad| match bad {
        b'\r' => "CR",
        b'\n' => "LF",
        _ => "NUL",
    })
}

/// Refuses an argument that contains CR, LF or NUL.
pub fn check_arg(arg: &str) -> Result<()> {
    match forbidden(arg) {
        Some(what) => Err(FtpError::InvalidArgument(format!("{what} in {arg:?}"))),
        None => Ok(()),
    }
}

/// True for the commands whose argument is a secret (PASS, ACCT): it is never shown, in a
/// log line or in an error.
pub fn is_secret(verb: &str) -> bool {
    verb.eq_ignore_ascii_case("PASS") || verb.eq_ignore_ascii_case("ACCT")
}

/// [`check_arg`] for the argument of `verb`; the error never shows a secret one.
pub fn check_arg_of(verb: &str, arg: &str) -> Result<()> {
    match forbidden(arg) {
        Some(what) if is_secret(verb) => {
            Err(FtpError::InvalidArgument(format!("{what} in the argument of {verb} (the password; not shown)")))
        }
        _ => check_arg(arg),
    }
}

/// Encodes `VERB` or `VERB arg` as the bytes to send, CRLF-terminated, with 0xFF doubled.
/// The argument is given as bytes already in the server's encoding.
pub fn encode_line(verb: &str, arg: Option<&[u8]>) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(verb.len() + arg.map_or(0, |a| a.len() + 1) + 2);
    out.extend_from_slice(verb.as_bytes());
    if let Some(arg) = arg {
        if arg.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            return Err(FtpError::InvalidArgument(format!("CR, LF or NUL in argument of {verb}")));
        }
        out.push(b' ');
        for &b in arg {
            out.push(b);
            if b == 0xFF {
                out.push(0xFF);
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    Ok(out)
}

/// How a command line is shown in logs: the argument of PASS (and ACCT) is never shown.
pub fn loggable(verb: &str, arg: Option<&str>) -> String {
    match (verb, arg) {
        (v, Some(_)) if is_secret(v) => format!("{v} ****"),
        (v, Some(a)) => format!("{v} {a}"),
        (v, None) => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn refuses_injection() {
        assert!(check_arg("a\r\nDELE x").is_err());
        assert!(check_arg("a\nb").is_err());
        assert!(check_arg("a\0b").is_err());
        assert!(check_arg("normal name with spaces ünï").is_ok());
        assert!(encode_line("RETR", Some(b"x\r\nDELE y")).is_err());
    }

    #[test]
    fn doubles_iac() {
        assert_eq!(encode_line("RETR", Some(&[b'a', 0xFF, b'b'])).unwrap(), b"RETR a\xFF\xFFb\r\n");
        assert_eq!(encode_line("NOOP", None).unwrap(), b"NOOP\r\n");
    }

    #[test]
    fn password_not_logged() {
        assert_eq!(loggable("PASS", Some("secret")), "PASS ****");
        assert_eq!(loggable("ACCT", Some("secret")), "ACCT ****");
        assert_eq!(loggable("USER", Some("bob")), "USER bob");
    }

    #[test]
    fn password_not_in_errors() {
        for pw in ["hunter2\r\nDELE x", "hunter2\n", "hunter2\0"] {
            let e = check_arg_of("PASS", pw).expect_err(pw);
            assert!(!e.to_string().contains("hunter2") && !format!("{e:?}").contains("hunter2"), "{e}");
            assert!(e.to_string().contains("PASS"), "{e}");
        }
        assert!(check_arg_of("PASS", "fine pässword").is_ok());
        // Other arguments are shown (a file name helps the user).
        assert_eq!(check_arg_of("RETR", "a\nb").unwrap_err().to_string(), "invalid argument: LF in \"a\\nb\"");
    }

    proptest! {
        #[test]
        fn encoded_line_has_exactly_one_crlf(arg in proptest::collection::vec(any::<u8>(), 0..100)) {
            if let Ok(line) = encode_line("STOR", Some(&arg)) {
                let crs = line.iter().filter(|&&b| b == b'\r').count();
                let lfs = line.iter().filter(|&&b| b == b'\n').count();
                prop_assert_eq!(crs, 1);
                prop_assert_eq!(lfs, 1);
                prop_assert!(line.ends_with(b"\r\n"));
            } else {
                prop_assert!(arg.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)));
            }
        }
    }
}

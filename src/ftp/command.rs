//! Building command lines for the control connection safely.
//!
//! Every argument passes through [`check_arg`]: CR, LF and NUL are refused before anything is
//! sent, because a raw CR/LF in a file name would inject a second command (rclone
//! GHSA-8c48-q9wj-3w37, CVE-2017-3533). On the wire, a 0xFF byte is doubled (Telnet IAC, RFC 854).

use super::error::{FtpError, Result};

/// Refuses an argument that contains CR, LF or NUL.
pub fn check_arg(arg: &str) -> Result<()> {
    if let Some(bad) = arg.bytes().find(|b| matches!(b, b'\r' | b'\n' | 0)) {
        let what = match bad {
            b'\r' => "CR",
            b'\n' => "LF",
            _ => "NUL",
        };
        return Err(FtpError::InvalidArgument(format!("{what} in {:?}", arg.escape_debug().to_string())));
    }
    Ok(())
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

/// How a command line is shown in logs: the argument of PASS is never shown.
pub fn loggable(verb: &str, arg: Option<&str>) -> String {
    match (verb, arg) {
        ("PASS", Some(_)) => "PASS ****".to_string(),
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
        assert_eq!(loggable("USER", Some("bob")), "USER bob");
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

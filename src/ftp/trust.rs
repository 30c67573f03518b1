//! Which server certificates a mount trusts, and what it says about one it refuses.
//!
//! Three ways, chosen by the options:
//! - `fingerprint=SHA256:…` pins the server's certificate: its SHA-256 must match, whatever
//!   signed it and whatever name it carries (ssh-style trust, for self-signed servers);
//! - the default: a chain to the system roots or to `cafile=`, valid for the host name. A
//!   certificate that is itself in `cafile=` is trusted as it is, like a pinned one (its name
//!   and dates are not checked), so the self-signed certificate of the usual vsftpd tutorial
//!   (which says CA:TRUE and so fails chain checks as a server certificate, and often names
//!   another host) works;
//! - `no_verify`: anything.
//!
//! In every case the handshake's signatures are checked, so only the holder of the
//! certificate's key gets in. A refused certificate fails with its fingerprint and the option
//! that would trust it ([`explain_refusal`]).

use std::fmt;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};

/// The SHA-256 of a certificate (its DER bytes), shown as `SHA256:AB:CD:…` like OpenSSL's
/// `x509 -fingerprint -sha256`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    pub fn of(der: &[u8]) -> Fingerprint {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(digest.as_ref());
        Fingerprint(bytes)
    }

    /// Reads `SHA256:AB:CD:…`, with or without the prefix and the colons, in either case (also
    /// OpenSSL's `sha256 Fingerprint=AB:…`).
    pub fn parse(s: &str) -> Result<Fingerprint, String> {
        let bad = || {
            format!(
                "invalid fingerprint {s:?}: expected SHA256: followed by 32 hex bytes, as `ftpfs --probe` \
                 or `openssl x509 -noout -fingerprint -sha256` print it"
            )
        };
        let t = s.trim();
        let t = match t.split_once(['=', ':']) {
            Some((algo, rest)) if algo.to_ascii_lowercase().replace(' ', "").starts_with("sha256") => rest,
            _ => t,
        };
        let hex: String = t.chars().filter(|c| *c != ':').collect();
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Fingerprint(bytes))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SHA256:")?;
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What makes a certificate trusted.
pub enum Trust {
    /// Exactly this certificate.
    Pinned(Fingerprint),
    /// A chain to these roots, valid for the name; or one of the certificates of `cafile=`
    /// itself (`given`).
    Chain { roots: RootCertStore, given: Vec<CertificateDer<'static>> },
    /// Anything (`no_verify`).
    Anything,
}

/// A certificate refused, with the reason in words and what would trust it.
#[derive(Debug)]
struct Refused {
    reason: String,
    fingerprint: Fingerprint,
    /// It failed a `fingerprint=` pin: the one case where changing the option is the wrong advice.
    pinned: bool,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.reason)
    }
}

impl std::error::Error for Refused {}

/// The checker behind every TLS connection of a mount.
pub struct Verifier {
    trust: Trust,
    /// The chain check, when there are roots to check against.
    webpki: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.trust {
            Trust::Pinned(fp) => format!("pinned {fp}"),
            Trust::Chain { roots, .. } => format!("chain to {} roots", roots.len()),
            Trust::Anything => "anything".into(),
        };
        f.debug_struct("Verifier").field("trust", &kind).finish()
    }
}

impl Verifier {
    pub fn new(trust: Trust, provider: Arc<CryptoProvider>) -> Verifier {
        let webpki = match &trust {
            Trust::Chain { roots, .. } if !roots.is_empty() => {
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots.clone()), provider.clone()).build().ok()
            }
            _ => None,
        };
        Verifier { trust, webpki, provider }
    }

    fn refuse(&self, reason: String, end_entity: &CertificateDer<'_>) -> rustls::Error {
        let pinned = matches!(self.trust, Trust::Pinned(_));
        let refused = Refused { reason, fingerprint: Fingerprint::of(end_entity), pinned };
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(refused))))
    }
}

/// A chain check's error in words.
fn in_words(e: &rustls::Error) -> String {
    let cert = match e {
        rustls::Error::InvalidCertificate(c) => c,
        other => return other.to_string(),
    };
    match cert {
        CertificateError::UnknownIssuer => "it is not signed by a trusted authority".into(),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            "it is not issued for this host name".into()
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => "it has expired".into(),
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => "it is not valid yet".into(),
        CertificateError::Revoked => "it is revoked".into(),
        CertificateError::Other(o) if format!("{o:?}").contains("CaUsedAsEndEntity") => {
            "it is a CA certificate (a self-signed one, most likely) not in cafile=".into()
        }
        other => format!("{other:?}"),
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.trust {
            Trust::Anything => Ok(ServerCertVerified::assertion()),
            Trust::Pinned(pin) => {
                if Fingerprint::of(end_entity) == *pin {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(self.refuse(format!("it does not match the fingerprint= option ({pin})"), end_entity))
                }
            }
            Trust::Chain { given, .. } => {
                let Some(webpki) = &self.webpki else {
                    return Err(self.refuse(
                        "there are no trusted root certificates (install ca-certificates, or use cafile=)".into(),
                        end_entity,
                    ));
                };
                match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
                    Ok(v) => Ok(v),
                    Err(e) if given.iter().any(|c| c.as_ref() == end_entity.as_ref()) => {
                        log::debug!("server certificate trusted as given in cafile= ({})", in_words(&e));
                        Ok(ServerCertVerified::assertion())
                    }
                    Err(e) => Err(self.refuse(in_words(&e), end_entity)),
                }
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The message for a handshake that failed because we refused the certificate: the reason,
/// the fingerprint and the option that would trust it. `None` for any other failure.
pub fn explain_refusal(e: &std::io::Error) -> Option<String> {
    let inner = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    let rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(other))) = inner else {
        return None;
    };
    let refused = other.downcast_ref::<Refused>()?;
    let fp = refused.fingerprint;
    if refused.pinned {
        return Some(format!(
            "the server's certificate is not trusted: {}. It is {fp}: either the server's certificate \
             changed or someone is between you and the server. Check with the server's owner before \
             changing the option",
            refused.reason
        ));
    }
    Some(format!(
        "the server's certificate is not trusted: {}. Its fingerprint is {fp}; if you trust it (ask the \
         server's owner), mount with -o fingerprint={fp}, or give the certificate with -o cafile=FILE",
        refused.reason
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fingerprints_read_in_every_usual_form() {
        let fp = Fingerprint::of(b"certificate bytes");
        let shown = fp.to_string();
        assert!(shown.starts_with("SHA256:") && shown.len() == 7 + 32 * 3 - 1, "{shown}");
        assert_eq!(Fingerprint::parse(&shown), Ok(fp));
        assert_eq!(Fingerprint::parse(&shown.to_lowercase()), Ok(fp));
        let bare: String = shown[7..].chars().filter(|c| *c != ':').collect();
        assert_eq!(Fingerprint::parse(&bare), Ok(fp));
        assert_eq!(Fingerprint::parse(&format!("sha256 Fingerprint={}", &shown[7..])), Ok(fp));
        assert!(Fingerprint::parse("SHA256:AB:CD").is_err());
        assert!(Fingerprint::parse(&shown.replace('A', "G")).is_err() || !shown.contains('A'));
        assert!(Fingerprint::parse("").is_err());
        assert!(Fingerprint::parse(&format!("+F{}", &bare[2..])).is_err(), "a sign is not a hex digit");
    }

    proptest! {
        #[test]
        fn fingerprint_parser_never_panics(s in "\\PC{0,100}") {
            let _ = Fingerprint::parse(&s);
        }
    }
}

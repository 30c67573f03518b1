//! FTPS (RFC 4217) with rustls: implicit TLS (`ftps://`, port 990) or explicit `AUTH TLS`, and
//! protected data connections (`PBSZ 0`, `PROT P`).
//!
//! Servers such as vsftpd (`require_ssl_reuse=YES`) and FileZilla accept a data connection only
//! if it resumes the TLS session of its control connection. Each control connection therefore
//! gets its own client configuration with its own session store, shared with its data
//! connections and no one else, so the data handshakes resume exactly its session (TLS 1.2
//! session IDs and TLS 1.3 tickets alike).

use std::fmt;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::error::{FtpError, Result};
use super::stream::NetStream;
use super::trust::{Fingerprint, Trust, Verifier, explain_refusal};

/// When TLS is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain FTP.
    Off,
    /// `AUTH TLS` after the greeting.
    Explicit,
    /// TLS from the first byte (`ftps://`).
    Implicit,
}

/// How certificates are checked.
#[derive(Clone, Debug, Default)]
pub struct TlsSettings {
    /// Trust this CA bundle (PEM) instead of the system roots.
    pub cafile: Option<PathBuf>,
    /// Accept any certificate (logged as a warning at mount time).
    pub no_verify: bool,
    /// Trust exactly the certificate with this SHA-256, instead of a chain.
    pub fingerprint: Option<Fingerprint>,
    /// Our own certificate chain (PEM), for servers that require one (`-o cert=`).
    pub cert: Option<PathBuf>,
    /// Its private key (PEM); `None`: in the certificate's file (`-o key=`).
    pub key: Option<PathBuf>,
}

/// The TLS client configuration of a mount, from which every control connection derives its own.
pub struct TlsContext {
    base: ClientConfig,
    server_name: ServerName<'static>,
}

impl fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsContext").field("server_name", &self.server_name).finish()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(msg: impl fmt::Display) -> FtpError {
    FtpError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("TLS: {msg}")))
}

/// The certificates of a PEM file (other sections, such as a private key kept in the same file
/// as vsftpd's tutorial does, are skipped) and the root store made of them.
fn load_cafile(path: &Path) -> Result<(RootCertStore, Vec<CertificateDer<'static>>)> {
    let mut roots = RootCertStore::empty();
    let mut given = Vec::new();
    let certs =
        CertificateDer::pem_file_iter(path).map_err(|e| tls_error(format!("cannot read {}: {e}", path.display())))?;
    for cert in certs {
        let cert = cert.map_err(|e| tls_error(format!("bad certificate in {}: {e}", path.display())))?;
        roots.add(cert.clone()).map_err(|e| tls_error(format!("bad certificate in {}: {e}", path.display())))?;
        given.push(cert);
    }
    if given.is_empty() {
        return Err(tls_error(format!("no certificate in {}", path.display())));
    }
    Ok((roots, given))
}

/// Our certificate chain from `cert` and its private key from `key` (PEM; the same file may
/// hold both).
fn load_client_cert(cert: &Path, key: &Path) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| tls_error(format!("cannot read {}: {e}", cert.display())))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| tls_error(format!("bad certificate in {}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(tls_error(format!("no certificate in {}", cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| tls_error(format!("no private key read from {}: {e}", key.display())))?;
    Ok((chain, key))
}

fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        log::debug!("system certificates: {e}");
    }
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    log::debug!("system certificates: {added} loaded, {ignored} ignored");
    roots
}

impl TlsContext {
    /// Builds the configuration for `host` (a name or an IP address).
    pub fn new(host: &str, settings: &TlsSettings) -> Result<TlsContext> {
        let server_name =
            ServerName::try_from(host.to_string()).map_err(|e| tls_error(format!("server name {host:?}: {e}")))?;
        let builder =
            ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().map_err(tls_error)?;
        let trust = match (settings.no_verify, settings.fingerprint) {
            (true, _) => Trust::Anything,
            (false, Some(fp)) => Trust::Pinned(fp),
            (false, None) => match &settings.cafile {
                Some(path) => {
                    let (roots, given) = load_cafile(path)?;
                    Trust::Chain { roots, given }
                }
                None => Trust::Chain { roots: system_roots(), given: Vec::new() },
            },
        };
        let verifier = Arc::new(Verifier::new(trust, provider()));
        let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
        let base = match &settings.cert {
            Some(cert) => {
                let (chain, key) = load_client_cert(cert, settings.key.as_deref().unwrap_or(cert))?;
                builder.with_client_auth_cert(chain, key).map_err(|e| tls_error(format!("{}: {e}", cert.display())))?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(TlsContext { base, server_name })
    }

    /// A configuration for one control connection and its data connections.
    pub fn for_connection(&self) -> Arc<ClientConfig> {
        let mut cfg = self.base.clone();
        cfg.resumption = Resumption::in_memory_sessions(8);
        Arc::new(cfg)
    }

    pub fn server_name(&self) -> ServerName<'static> {
        self.server_name.clone()
    }
}

/// Runs a client handshake over `tcp` and returns the encrypted stream.
pub fn handshake(tcp: TcpStream, config: Arc<ClientConfig>, name: ServerName<'static>) -> Result<NetStream> {
    let conn = ClientConnection::new(config, name).map_err(tls_error)?;
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock).map_err(|e| match explain_refusal(&e) {
            Some(why) => tls_error(why),
            None if e.kind() == std::io::ErrorKind::InvalidData => tls_error(e),
            None => FtpError::Io(e),
        })?;
    }
    if let Some(v) = stream.conn.protocol_version() {
        log::debug!("TLS established: {v:?}");
    }
    Ok(NetStream::Tls(Box::new(stream)))
}

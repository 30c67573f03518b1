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
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme, StreamOwned};

use super::error::{FtpError, Result};
use super::stream::NetStream;

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

fn load_cafile(path: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(path).map_err(|e| tls_error(format!("cannot read {}: {e}", path.display())))?;
    for cert in certs {
        let cert = cert.map_err(|e| tls_error(format!("bad certificate in {}: {e}", path.display())))?;
        roots.add(cert).map_err(|e| tls_error(format!("bad certificate in {}: {e}", path.display())))?;
    }
    if roots.is_empty() {
        return Err(tls_error(format!("no certificate in {}", path.display())));
    }
    Ok(roots)
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
        let base = if settings.no_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider())))
                .with_no_client_auth()
        } else {
            let roots = match &settings.cafile {
                Some(path) => load_cafile(path)?,
                None => system_roots(),
            };
            builder.with_root_certificates(roots).with_no_client_auth()
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
        stream.conn.complete_io(&mut stream.sock).map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => tls_error(e),
            _ => FtpError::Io(e),
        })?;
    }
    if let Some(v) = stream.conn.protocol_version() {
        log::debug!("TLS established: {v:?}");
    }
    Ok(NetStream::Tls(Box::new(stream)))
}

/// `-o no_verify`: any certificate is accepted, but the handshake signatures are still checked.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

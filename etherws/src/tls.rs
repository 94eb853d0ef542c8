//! TLS for `wss://` and the HTTPS control API: rustls with the *ring* provider, TLS 1.2 and 1.3
//! only.
//!
//! Servers load a PEM certificate chain and a PEM private key in any of the forms OpenSSL
//! writes (PKCS#8, PKCS#1 RSA, SEC1 EC). Clients verify the server against the system's roots,
//! or against a CA file the user names; `insecure` keeps the encryption and the handshake
//! signature checks but accepts any certificate — for tests and for people who know.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

/// The TLS versions we speak: no SSL, no TLS 1.0/1.1.
static VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate of a PEM file.
pub fn load_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let (pem, _) = crate::files::read_limited(path).context("cannot read certificates")?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("invalid PEM in {}", path.display()))?;
    if certs.is_empty() {
        bail!("no certificate in {}", path.display());
    }
    Ok(certs)
}

/// Reads the first private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let (pem, _) = crate::files::read_limited(path).context("cannot read the private key")?;
    PrivateKeyDer::from_pem_slice(&pem)
        .with_context(|| format!("no usable private key in {}", path.display()))
}

/// The configuration of a TLS server with the given key and certificate chain.
pub fn server_config(key: &Path, cert: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let certs = load_certs(cert)?;
    let key = load_key(key)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| {
            format!(
                "private key and certificate {} do not go together",
                cert.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// How a client checks the server it talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verify {
    /// Against the system's trusted roots.
    System,
    /// Against the CA certificates in this PEM file only.
    CaFile(PathBuf),
    /// Not at all (the connection is still encrypted).
    Insecure,
}

/// The system's trusted roots (the OpenSSL directory, `SSL_CERT_FILE`/`SSL_CERT_DIR`).
pub fn system_roots() -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::debug!("skipping a system root certificate: {e}");
    }
    if found.certs.is_empty() {
        bail!("no trusted root certificates found on this system (use --cacerts)");
    }
    Ok(found.certs)
}

/// The configuration of a TLS client.
pub fn client_config(verify: &Verify) -> anyhow::Result<Arc<ClientConfig>> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .context("TLS versions")?;
    let roots = |certs: Vec<CertificateDer<'static>>| {
        let mut store = RootCertStore::empty();
        let (added, _ignored) = store.add_parsable_certificates(certs);
        if added == 0 {
            bail!("none of the CA certificates is usable");
        }
        Ok(store)
    };
    let config = match verify {
        Verify::System => builder
            .with_root_certificates(roots(system_roots()?)?)
            .with_no_client_auth(),
        Verify::CaFile(path) => builder
            .with_root_certificates(roots(load_certs(path)?)?)
            .with_no_client_auth(),
        Verify::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(
                provider().signature_verification_algorithms,
            )))
            .with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The name a server's certificate must carry: a DNS name or an IP address (brackets of an
/// IPv6 URL host removed).
pub fn server_name(host: &str) -> anyhow::Result<ServerName<'static>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).with_context(|| format!("invalid server name {host:?}"))
}

/// Accepts any certificate, but still checks that the server owns the key it presented, so
/// the session is at least bound to that key.
#[derive(Debug)]
struct AcceptAnyCert(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

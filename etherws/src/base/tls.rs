//! TLS for `wss://` and the HTTPS control API: rustls with the *ring* provider, TLS 1.2 and 1.3
//! only.
//!
//! Servers load a PEM certificate chain and a PEM private key in any of the forms OpenSSL
//! writes (PKCS#8, PKCS#1 RSA, SEC1 EC), and may require client certificates issued by a CA of
//! their choosing ([`ClientAuth`]: mutual TLS, with CRLs). Clients verify the server against
//! the system's roots, or against a certificate file the user names; `insecure` keeps the
//! encryption and the handshake signature checks but accepts any certificate — for tests and
//! for people who know. Clients can present a certificate of their own ([`Identity`]).
//!
//! A certificate file a client names (`--cacerts`, `--ctlsslcert`) holds trust anchors, and
//! also *pinned* certificates: a server certificate byte-identical to one of them is trusted as
//! it is, as OpenSSL trusts a directly trusted certificate — whatever its CA flag, as long as it
//! is within its validity period, names the host of the URL, and the server proves it holds
//! its key. That is what lets the one-line `openssl req -x509` self-signed certificate (CA:TRUE,
//! which webpki refuses as a server certificate) serve `wss://` as it did with etherws 1.3.
//! Every other certificate is verified by webpki against the file's certificates, as before.
//!
//! Every file is read through [`crate::base::files::read_limited`]; callers on the async runtime
//! build configurations on the blocking pool.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore,
    ServerConfig, SignatureScheme,
};

/// The TLS versions we speak: no SSL, no TLS 1.0/1.1.
static VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate of a PEM file.
pub(crate) fn load_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let (pem, _) = crate::base::files::read_limited(path).context("cannot read certificates")?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("invalid PEM in {}", path.display()))?;
    if certs.is_empty() {
        bail!("no certificate in {}", path.display());
    }
    Ok(certs)
}

/// Reads the first private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn load_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let (pem, _) = crate::base::files::read_limited(path).context("cannot read the private key")?;
    PrivateKeyDer::from_pem_slice(&pem)
        .with_context(|| format!("no usable private key in {}", path.display()))
}

/// How a server checks its clients' certificates (mutual TLS): a client must present a
/// certificate issued by a CA of `ca`, not revoked by a CRL of `crl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientAuth {
    /// PEM file of the CA certificates client certificates must chain to.
    pub(crate) ca: PathBuf,
    /// PEM file of certificate revocation lists. With it, the file must hold a CRL of every CA
    /// of a client's chain (as nginx's `ssl_crl`): a certificate whose revocation status is
    /// unknown is refused.
    pub(crate) crl: Option<PathBuf>,
}

/// Reads every CRL of a PEM file.
pub(crate) fn load_crls(path: &Path) -> anyhow::Result<Vec<CertificateRevocationListDer<'static>>> {
    let (pem, _) = crate::base::files::read_limited(path)
        .context("cannot read certificate revocation lists")?;
    let crls = CertificateRevocationListDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("invalid PEM in {}", path.display()))?;
    if crls.is_empty() {
        bail!(
            "no certificate revocation list (X509 CRL) in {}",
            path.display()
        );
    }
    Ok(crls)
}

/// A store of the usable certificates of `certs` (a file of CAs).
fn root_store(certs: Vec<CertificateDer<'static>>, path: &Path) -> anyhow::Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(certs);
    if added == 0 {
        bail!(
            "none of the CA certificates in {} is usable",
            path.display()
        );
    }
    Ok(store)
}

/// The configuration of a TLS server with the given key and certificate chain, requiring
/// client certificates when `client_auth` is given.
pub(crate) fn server_config(
    key: &Path,
    cert: &Path,
    client_auth: Option<&ClientAuth>,
) -> anyhow::Result<Arc<ServerConfig>> {
    let certs = load_certs(cert)?;
    let key = load_key(key)?;
    let mut config = server_builder(client_auth)?
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

/// The configuration of a TLS server with the given key and certificate chain, made in memory
/// (`base::selfsigned`), requiring client certificates when `client_auth` is given.
pub(crate) fn server_config_with(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_auth: Option<&ClientAuth>,
) -> anyhow::Result<Arc<ServerConfig>> {
    let mut config = server_builder(client_auth)?
        .with_single_cert(certs, key)
        .context("private key and certificate do not go together")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A TLS server's configuration up to its certificate: our versions, and client certificates
/// required when `client_auth` is given.
fn server_builder(
    client_auth: Option<&ClientAuth>,
) -> anyhow::Result<rustls::ConfigBuilder<ServerConfig, rustls::server::WantsServerCert>> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .context("TLS versions")?;
    Ok(match client_auth {
        None => builder.with_no_client_auth(),
        Some(auth) => builder.with_client_cert_verifier(client_verifier(auth)?),
    })
}

/// Why a client's certificate chain, accepted when it connected, is refused now by `verifier`
/// (CAs or CRLs read again): revoked, or no longer issued by a trusted CA. `None` while it
/// still passes, or fails for another reason (expired since: the session was admitted).
pub(crate) fn refused_now(
    verifier: &dyn rustls::server::danger::ClientCertVerifier,
    chain: &[CertificateDer<'static>],
) -> Option<&'static str> {
    use rustls::{CertificateError, Error};
    let (end, intermediates) = chain.split_first()?;
    let now = rustls::pki_types::UnixTime::now();
    match verifier.verify_client_cert(end, intermediates, now) {
        Err(Error::InvalidCertificate(CertificateError::Revoked)) => Some("certificate revoked"),
        Err(Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {
            Some("certificate no longer issued by a trusted CA")
        }
        _ => None,
    }
}

/// The verifier of client certificates: webpki, against the CAs and CRLs of `auth`.
pub(crate) fn client_verifier(
    auth: &ClientAuth,
) -> anyhow::Result<Arc<dyn rustls::server::danger::ClientCertVerifier>> {
    let roots = root_store(load_certs(&auth.ca)?, &auth.ca)?;
    let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
    if let Some(crl) = &auth.crl {
        builder = builder.with_crls(load_crls(crl)?);
    }
    builder.build().map_err(|e| {
        // webpki reads only version 2 CRLs with a CRL number; `openssl ca -gencrl` without a
        // `crlnumber` file writes version 1.
        let hint = match e {
            rustls::server::VerifierBuilderError::InvalidCrl(
                rustls::CertRevocationListError::ParseError,
            ) => {
                " (a CRL must be version 2, with a CRL number: give `openssl ca` a crlnumber file)"
            }
            _ => "",
        };
        anyhow::anyhow!(
            "cannot check client certificates with {}{}: {e}{hint}",
            auth.ca.display(),
            auth.crl
                .as_ref()
                .map(|c| format!(" and {}", c.display()))
                .unwrap_or_default()
        )
    })
}

/// How a client checks the server it talks to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Verify {
    /// Against the system's trusted roots.
    #[default]
    System,
    /// Against the CA certificates in this PEM file only.
    CaFile(PathBuf),
    /// Not at all (the connection is still encrypted).
    Insecure,
}

/// The system's trusted roots (the OpenSSL directory, `SSL_CERT_FILE`/`SSL_CERT_DIR`).
pub(crate) fn system_roots() -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::debug!("skipping a system root certificate: {e}");
    }
    if found.certs.is_empty() {
        bail!("no trusted root certificates found on this system (use --cacerts)");
    }
    Ok(found.certs)
}

/// The certificate and key a client presents to a server that asks for one (mutual TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    /// PEM certificate (chain) of the client.
    pub(crate) cert: PathBuf,
    /// PEM private key of that certificate.
    pub(crate) key: PathBuf,
}

/// A client's TLS: how it checks the server, and the certificate it presents if asked (by
/// default the system's roots, and no certificate).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ClientTls {
    pub(crate) verify: Verify,
    pub(crate) identity: Option<Identity>,
}

/// A client certificate without its key, or a key without its certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Both cert and key are required")]
pub(crate) struct HalfIdentity;

impl ClientTls {
    /// A client's TLS from its options, wherever they come from (`etherws ctl`'s
    /// `--ctlinsecure`, `--ctlsslcert`, `--ctlcert` and `--ctlkey`; a client port's `insecure`,
    /// `cacerts`, `cert` and `key` in the configuration file or the control API): `insecure`
    /// verifies nothing; else a certificate file `ca` holds the trust anchors and pinned
    /// certificates; else the system's roots do. A certificate goes with its key.
    ///
    /// # Errors
    ///
    /// [`HalfIdentity`] if only one of `cert` and `key` is given.
    pub(crate) fn new(
        insecure: bool,
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<ClientTls, HalfIdentity> {
        let verify = match (insecure, ca) {
            (true, _) => Verify::Insecure,
            (false, Some(ca)) => Verify::CaFile(ca.to_path_buf()),
            (false, None) => Verify::System,
        };
        let identity = match (cert, key) {
            (Some(cert), Some(key)) => Some(Identity {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            }),
            (None, None) => None,
            _ => return Err(HalfIdentity),
        };
        Ok(ClientTls { verify, identity })
    }

    /// The client configuration of these settings ([`client_config`]).
    pub(crate) fn config(&self) -> anyhow::Result<Arc<ClientConfig>> {
        client_config(&self.verify, self.identity.as_ref())
    }
}

/// The configuration of a TLS client: how it verifies the server, and the certificate it
/// presents if the server asks for one.
pub(crate) fn client_config(
    verify: &Verify,
    identity: Option<&Identity>,
) -> anyhow::Result<Arc<ClientConfig>> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .context("TLS versions")?;
    let builder = match verify {
        Verify::System => builder.with_root_certificates(root_store(
            system_roots()?,
            Path::new("the system's trusted roots"),
        )?),
        Verify::CaFile(path) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedOrCa::new(load_certs(path)?, path)?)),
        Verify::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedOrCa::any())),
    };
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(id) => {
            let chain = load_certs(&id.cert)?;
            let key = load_key(&id.key)?;
            builder.with_client_auth_cert(chain, key).with_context(|| {
                format!(
                    "client key {} and certificate {} do not go together",
                    id.key.display(),
                    id.cert.display()
                )
            })?
        }
    };
    Ok(Arc::new(config))
}

/// The name a server's certificate must carry: a DNS name or an IP address (brackets of an
/// IPv6 URL host removed).
pub(crate) fn server_name(host: &str) -> anyhow::Result<ServerName<'static>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).with_context(|| format!("invalid server name {host:?}"))
}

/// Verifies a server against a certificate file: a certificate of the file presented as it is
/// (pinned) is trusted directly; any other must chain to one of the file's certificates. Made
/// by [`PinnedOrCa::any`] (`insecure`), it accepts any certificate. Either way the server must
/// prove it owns the key it presented, so the session is at least bound to that key.
#[derive(Debug)]
struct PinnedOrCa {
    /// The file's certificates, and webpki over them; none: any certificate.
    file: Option<(Vec<CertificateDer<'static>>, Arc<WebPkiServerVerifier>)>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedOrCa {
    fn new(certs: Vec<CertificateDer<'static>>, path: &Path) -> anyhow::Result<Self> {
        let provider = provider();
        let roots = root_store(certs.clone(), path)?;
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .with_context(|| format!("cannot verify servers with {}", path.display()))?;
        Ok(PinnedOrCa {
            file: Some((certs, webpki)),
            algorithms: provider.signature_verification_algorithms,
        })
    }

    /// Accepts any certificate (its key still has to sign the handshake).
    fn any() -> Self {
        PinnedOrCa {
            file: None,
            algorithms: provider().signature_verification_algorithms,
        }
    }
}

/// Checks that `now` is within the validity period of `cert`, as OpenSSL checks a directly
/// trusted certificate.
fn check_validity(cert: &CertificateDer<'_>, now: UnixTime) -> Result<(), rustls::Error> {
    let bad = || rustls::Error::InvalidCertificate(CertificateError::BadEncoding);
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|_| bad())?;
    let at = |t: x509_parser::time::ASN1Time| {
        UnixTime::since_unix_epoch(Duration::from_secs(t.timestamp().max(0) as u64))
    };
    let validity = parsed.validity();
    let (not_before, not_after) = (at(validity.not_before), at(validity.not_after));
    if now.as_secs() < not_before.as_secs() {
        return Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidYetContext {
                time: now,
                not_before,
            },
        ));
    }
    if now.as_secs() > not_after.as_secs() {
        return Err(rustls::Error::InvalidCertificate(
            CertificateError::ExpiredContext {
                time: now,
                not_after,
            },
        ));
    }
    Ok(())
}

/// The handshake signature checks of a [`ServerCertVerifier`], for TLS 1.2 and 1.3 alike:
/// rustls's function of the method's name, with the verifier's `algorithms`.
macro_rules! signature_checks {
    ($($method:ident),*) => {$(
        fn $method(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::$method(message, cert, dss, &self.algorithms)
        }
    )*};
}

impl ServerCertVerifier for PinnedOrCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some((pinned, webpki)) = &self.file else {
            return Ok(ServerCertVerified::assertion());
        };
        if pinned.iter().any(|p| p.as_ref() == end_entity.as_ref()) {
            // The operator named this very certificate: no chain to build, and its CA flag
            // does not matter. Its dates and the name still do.
            check_validity(end_entity, now)?;
            let parsed = ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_name(&parsed, server_name)?;
            return Ok(ServerCertVerified::assertion());
        }
        webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    // The handshake signatures are checked in every mode.
    signature_checks!(verify_tls12_signature, verify_tls13_signature);

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Longest identity [`peer_identity`] returns, in characters (a CN is at most 64 by RFC 5280).
const MAX_IDENTITY: usize = 256;

/// The identity of a client that presented a certificate: the subject CN (commonName) of its
/// end-entity certificate, the first of `certs`. None without a certificate, a CN, or a CN in
/// a string type that is not text. Not escaped (the caller escapes it for logs and output);
/// cut at [`MAX_IDENTITY`] characters.
///
/// The certificates are those rustls verified (`ServerConnection::peer_certificates`), so with
/// client authentication required this names a client the CA vouched for.
pub(crate) fn peer_identity(certs: &[CertificateDer<'_>]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(certs.first()?.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    (!cn.is_empty()).then(|| cn.chars().take(MAX_IDENTITY).collect())
}

/// The rustls error `err` is or was caused by, if any: tokio-rustls reports one as an
/// `io::Error` wrapping it, and hyper and tungstenite wrap that `io::Error` in turn.
fn rustls_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        let tls = e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if tls.is_some() {
            return tls;
        }
        cur = e.source();
    }
    None
}

/// The TLS alert a peer ended the session with, if that is what `err` (or one of its causes)
/// is.
pub(crate) fn alert_received(err: &(dyn std::error::Error + 'static)) -> Option<AlertDescription> {
    match rustls_error(err) {
        Some(rustls::Error::AlertReceived(alert)) => Some(*alert),
        _ => None,
    }
}

/// Whether `err` is webpki refusing a CA certificate (CA:TRUE) as a server's certificate —
/// what a self-signed `openssl req -x509` certificate is, unless it is pinned.
fn ca_as_server_cert(err: &(dyn std::error::Error + 'static)) -> bool {
    matches!(
        rustls_error(err),
        Some(rustls::Error::InvalidCertificate(CertificateError::Other(other)))
            if format!("{:?}", other.0) == "CaUsedAsEndEntity"
    )
}

/// What a server's TLS alert means to a client, in words: why a server refused our client
/// certificate (or our lack of one), or just the alert.
pub(crate) fn describe_alert(alert: AlertDescription) -> String {
    use AlertDescription as A;
    let (meaning, name) = match alert {
        A::CertificateRequired => (
            "the server requires a client certificate",
            "certificate required",
        ),
        A::UnknownCA => (
            "the server does not trust the issuer of the client certificate",
            "unknown CA",
        ),
        A::CertificateRevoked => (
            "the server says the client certificate is revoked",
            "certificate revoked",
        ),
        A::CertificateExpired => (
            "the server says the client certificate is expired or not yet valid",
            "certificate expired",
        ),
        A::BadCertificate => (
            "the server refused the client certificate",
            "bad certificate",
        ),
        A::UnsupportedCertificate => (
            "the server does not support the client certificate",
            "unsupported certificate",
        ),
        A::CertificateUnknown => (
            "the server refused the client certificate",
            "certificate unknown",
        ),
        A::AccessDenied => ("the server denied access", "access denied"),
        other => return format!("the server ended the TLS session (TLS alert {other:?})"),
    };
    format!("{meaning} (TLS alert: {name})")
}

/// `err` in one line, with a server's TLS alert put in words (see [`describe_alert`]), and a
/// hint when the server presented a self-signed CA certificate the client does not trust:
/// one not in its certificate file (`ca_file`: it was given one), or, without one, not in the
/// system's trust store.
pub(crate) fn explain(err: &anyhow::Error, ca_file: bool) -> String {
    if let Some(alert) = alert_received(err.as_ref()) {
        let outer = if err.chain().count() > 1 {
            format!("{err}: ")
        } else {
            String::new()
        };
        return format!("{outer}TLS session refused: {}", describe_alert(alert));
    }
    if ca_as_server_cert(err.as_ref()) {
        return if ca_file {
            format!(
                "{err:#} (the server's certificate is a CA certificate, as `openssl req -x509` \
                 makes, and is not in the certificate file given: such a certificate is trusted \
                 only as itself)"
            )
        } else {
            format!(
                "{err:#} (the server's certificate is a CA certificate, as `openssl req -x509` \
                 makes, that the system's trust store does not hold: give that very certificate \
                 as the certificate file to trust, and it is trusted as itself)"
            )
        };
    }
    format!("{err:#}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed server certificate, CA:TRUE, `CN=unit server`, `subjectAltName=IP:192.0.2.1`,
    /// valid from 2020-01-01 to 2120-01-01 (made with `openssl ca -selfsign -startdate`).
    const PINNED: &str = "\
-----BEGIN CERTIFICATE-----
MIIBYDCCAQegAwIBAgICEAEwCgYIKoZIzj0EAwIwFjEUMBIGA1UEAwwLdW5pdCBz
ZXJ2ZXIwIBcNMjAwMTAxMDAwMDAwWhgPMjEyMDAxMDEwMDAwMDBaMBYxFDASBgNV
BAMMC3VuaXQgc2VydmVyMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEyw0jdgZ4
jlkrhW9Q+t5T/U397AP3HANpbhg2ckrmBN2D4QPraJB2nTUbicuBEvogbpHaUZuv
4434io//gBbUyKNDMEEwDwYDVR0TAQH/BAUwAwEB/zAPBgNVHREECDAGhwTAAAIB
MB0GA1UdDgQWBBSoxla5Dv10+3kr1zdLZ/R6DPVUwzAKBggqhkjOPQQDAgNHADBE
AiAegWAuWXbImdsQHqq8IxNqUUPhEcgh/zB6RjY7HZP9WAIgKFi50bIlU2nSzGHl
BO4a/GP0mVIUAedH0i5Q1fYrGk0=
-----END CERTIFICATE-----
";

    /// The key of [`PINNED`].
    const PINNED_KEY: &str = "\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg/54D1Nx9EcNQ7Htt
8frYhWV3RiuYWAAPf67IoS3STfGhRANCAATLDSN2BniOWSuFb1D63lP9Tf3sA/cc
A2luGDZySuYE3YPhA+tokHadNRuJy4ES+iBukdpRm6/jjfiKj/+AFtTI
-----END PRIVATE KEY-----
";

    /// A CA for client certificates (`CN=unit client CA`), valid 2020–2120.
    const CLIENT_CA: &str = "\
-----BEGIN CERTIFICATE-----
MIIBZTCCAQygAwIBAgICEAAwCgYIKoZIzj0EAwIwGTEXMBUGA1UEAwwOdW5pdCBj
bGllbnQgQ0EwIBcNMjAwMTAxMDAwMDAwWhgPMjEyMDAxMDEwMDAwMDBaMBkxFzAV
BgNVBAMMDnVuaXQgY2xpZW50IENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE
fspIFRi9TRm8qv9995BmRJppvVmxbVGKJ8lJ+XHnvLqDAPnrJlJxC1Aot3OFz4uy
u0u8d5bleGGEyd4MdVmNYqNCMEAwDwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8BAf8E
BAMCAQYwHQYDVR0OBBYEFIJcQl0R3/Q9+uTaUG3CqRUGFz0dMAoGCCqGSM49BAMC
A0cAMEQCIBs2MSc5BUyUQG05pfQnm2qorIeV4YVKCQm6nqCzbEO5AiBH7qNdLTBO
xMwzg7TQqFuvGxKD4UqInxW6XPx+3kAyjA==
-----END CERTIFICATE-----
";

    /// A client certificate `CN=nodeb` issued by [`CLIENT_CA`] (clientAuth), valid 2020–2120.
    const CLIENT: &str = "\
-----BEGIN CERTIFICATE-----
MIIBfTCCASOgAwIBAgICEAIwCgYIKoZIzj0EAwIwGTEXMBUGA1UEAwwOdW5pdCBj
bGllbnQgQ0EwIBcNMjAwMTAxMDAwMDAwWhgPMjEyMDAxMDEwMDAwMDBaMBAxDjAM
BgNVBAMMBW5vZGViMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE3SwHs0bNSiKe
PbbZ4Tmh24OlhfV0b1muid58qV57ixUZ17YWqcMQxnWjq0mqgCcUkJTVnu20LvC7
Pec7sNEQmKNiMGAwCQYDVR0TBAIwADATBgNVHSUEDDAKBggrBgEFBQcDAjAdBgNV
HQ4EFgQUea5VqkLYsTmX2DZLMvLhDe84zuIwHwYDVR0jBBgwFoAUglxCXRHf9D36
5NpQbcKpFQYXPR0wCgYIKoZIzj0EAwIDSAAwRQIhAMsjEf4OQ9YrbR1hzFphaTEe
9/z2TKecJQfKfoNRvIA+AiA4/ERhsZ9PQartlkZcWEKVgsRAZWxE5WqFgvA55q8q
jw==
-----END CERTIFICATE-----
";

    /// The key of [`CLIENT`].
    const CLIENT_KEY: &str = "\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgl883p2pzqtq27LdU
/Ps+huthu06QCt4vQTkAUDH2wyahRANCAATdLAezRs1KIp49ttnhOaHbg6WF9XRv
Wa6J3nypXnuLFRnXthapwxDGdaOrSaqAJxSQlNWe7bQu8Ls95zuw0RCY
-----END PRIVATE KEY-----
";

    /// The same recipe with another key (`CN=pinned test b`).
    const OTHER: &str = "\
-----BEGIN CERTIFICATE-----
MIIBmDCCAT6gAwIBAgIUBNW8LjmddFa1nkn8oOOyByk+9cEwCgYIKoZIzj0EAwIw
GDEWMBQGA1UEAwwNcGlubmVkIHRlc3QgYjAgFw0yNjExMjkxNjEwMzBaGA8yMTI2
MTEwNTE2MTAzMFowGDEWMBQGA1UEAwwNcGlubmVkIHRlc3QgYjBZMBMGByqGSM49
AgEGCCqGSM49AwEHA0IABDnNQaKoQYl9d6EAJKgl6RDBDPp+zxssqGy2mNu2saSq
oMxdxk3AQWskDP7plTa/X+ZBn02a72d5XKU3zGdil0+jZDBiMB0GA1UdDgQWBBS2
ZbUburIXbHi42AZ75lYJq8Ir+DAfBgNVHSMEGDAWgBS2ZbUburIXbHi42AZ75lYJ
q8Ir+DAPBgNVHRMBAf8EBTADAQH/MA8GA1UdEQQIMAaHBMAAAgEwCgYIKoZIzj0E
AwIDSAAwRQIhAKcsU5FO5WuviYBlpjUoH51/RFZnxJsQV0PnFO5tvil/AiA5K4Dp
ZhBdBQ7iX+T+bYeTx5yLgkk4gBvGap3Ve72MUw==
-----END CERTIFICATE-----
";

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    fn at(secs: u64) -> UnixTime {
        UnixTime::since_unix_epoch(Duration::from_secs(secs))
    }

    /// 2030-01-01, within the test certificates' validity.
    const NOW: u64 = 1_893_456_000;

    fn verify(pinned: &[&str], cert: &str, host: &str, now: u64) -> Result<(), rustls::Error> {
        let verifier =
            PinnedOrCa::new(pinned.iter().map(|p| der(p)).collect(), Path::new("t")).unwrap();
        let name = server_name(host).unwrap();
        verifier
            .verify_server_cert(&der(cert), &[], &name, &[], at(now))
            .map(drop)
    }

    #[test]
    fn a_pinned_certificate_is_trusted_as_itself() {
        verify(&[PINNED], PINNED, "192.0.2.1", NOW).unwrap();
        verify(&[OTHER, PINNED], PINNED, "192.0.2.1", NOW).unwrap();
        // Its name, and its dates, still count.
        let err = verify(&[PINNED], PINNED, "192.0.2.2", NOW).unwrap_err();
        assert!(err.to_string().contains("not valid for name"), "{err}");
        let err = verify(&[PINNED], PINNED, "192.0.2.1", 1_546_300_800).unwrap_err();
        assert!(err.to_string().contains("not valid yet"), "{err}");
        let err = verify(&[PINNED], PINNED, "192.0.2.1", 7_258_118_400).unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
    }

    #[test]
    fn another_self_signed_certificate_is_refused() {
        let err = verify(&[PINNED], OTHER, "192.0.2.1", NOW).unwrap_err();
        let text = explain(&anyhow::Error::from(err), true);
        assert!(
            text.contains("invalid peer certificate") && text.contains("trusted only as itself"),
            "{text}"
        );
    }

    #[test]
    fn a_self_signed_certificate_without_a_certificate_file_speaks_of_the_trust_store() {
        let err = anyhow::Error::from(verify(&[PINNED], OTHER, "192.0.2.1", NOW).unwrap_err());
        let text = explain(&err, false);
        assert!(
            text.contains("system's trust store") && !text.contains("certificate file given"),
            "{text}"
        );
    }

    #[test]
    fn identity_is_the_subject_cn() {
        assert_eq!(
            peer_identity(&[der(PINNED), der(OTHER)]).as_deref(),
            Some("unit server")
        );
        assert_eq!(peer_identity(&[]), None);
        assert_eq!(
            peer_identity(&[CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])]),
            None
        );
        // Truncated or corrupted DER never panics.
        let good = der(PINNED).to_vec();
        for cut in 0..good.len() {
            let _ = peer_identity(&[CertificateDer::from(good[..cut].to_vec())]);
            let mut bad = good.clone();
            bad[cut] ^= 0xff;
            let _ = peer_identity(&[CertificateDer::from(bad)]);
        }
    }

    /// Writes `files` (name, PEM) into a fresh directory.
    fn pem_files(tag: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("etherws-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, pem) in files {
            std::fs::write(dir.join(name), pem).unwrap();
        }
        dir
    }

    /// A TLS handshake over an in-memory pipe; returns the server's view of the client's
    /// identity, or the client's error.
    async fn handshake(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
    ) -> Result<Option<String>, String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (c, s) = tokio::io::duplex(64 * 1024);
        let accept = async {
            let mut tls = tokio_rustls::TlsAcceptor::from(server).accept(s).await?;
            // How server.rs names the client of an accepted connection.
            let identity = tls.get_ref().1.peer_certificates().and_then(peer_identity);
            tls.write_all(b"ok").await?;
            tls.flush().await?;
            Ok::<_, std::io::Error>(identity)
        };
        let connect = async {
            let name = server_name("192.0.2.1").unwrap();
            let mut tls = tokio_rustls::TlsConnector::from(client)
                .connect(name, c)
                .await?;
            let mut answer = [0u8; 2];
            tls.read_exact(&mut answer).await?;
            Ok::<_, std::io::Error>(())
        };
        let (accepted, connected) = tokio::join!(accept, connect);
        connected.map_err(|e| explain(&anyhow::Error::from(e), true))?;
        accepted.map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn mutual_tls_names_the_client() {
        let dir = pem_files(
            "mtls",
            &[
                ("server.pem", PINNED),
                ("server.key", PINNED_KEY),
                ("clientca.pem", CLIENT_CA),
                ("client.pem", CLIENT),
                ("client.key", CLIENT_KEY),
                ("other.pem", OTHER),
            ],
        );
        let auth = ClientAuth {
            ca: dir.join("clientca.pem"),
            crl: None,
        };
        let server = server_config(
            &dir.join("server.key"),
            &dir.join("server.pem"),
            Some(&auth),
        )
        .unwrap();
        let pinned = Verify::CaFile(dir.join("server.pem"));
        let identity = Identity {
            cert: dir.join("client.pem"),
            key: dir.join("client.key"),
        };
        let client = client_config(&pinned, Some(&identity)).unwrap();
        assert_eq!(
            handshake(server.clone(), client).await,
            Ok(Some("nodeb".to_string()))
        );
        // Without a certificate the server refuses, and the client says why.
        let client = client_config(&pinned, None).unwrap();
        let err = handshake(server.clone(), client).await.unwrap_err();
        assert!(err.contains("certificate required"), "{err}");
        // A server without client authentication sees no identity.
        let open = server_config(&dir.join("server.key"), &dir.join("server.pem"), None).unwrap();
        let client = client_config(&pinned, Some(&identity)).unwrap();
        assert_eq!(handshake(open.clone(), client).await, Ok(None));
        // A client pinning another certificate refuses the server.
        let client = client_config(&Verify::CaFile(dir.join("other.pem")), None).unwrap();
        let err = handshake(open, client).await.unwrap_err();
        assert!(err.contains("trusted only as itself"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn client_tls_from_options() {
        let (ca, cert, key) = (Path::new("ca.pem"), Path::new("c.pem"), Path::new("k.pem"));
        let tls = |insecure, ca, cert, key| ClientTls::new(insecure, ca, cert, key);
        assert_eq!(tls(false, None, None, None), Ok(ClientTls::default()));
        assert_eq!(ClientTls::default().verify, Verify::System);
        // `insecure` wins over a certificate file.
        assert_eq!(
            tls(true, Some(ca), None, None).unwrap().verify,
            Verify::Insecure
        );
        let pinned = tls(false, Some(ca), Some(cert), Some(key)).unwrap();
        assert_eq!(pinned.verify, Verify::CaFile(ca.into()));
        let identity = Identity {
            cert: cert.into(),
            key: key.into(),
        };
        assert_eq!(pinned.identity, Some(identity));
        for (cert, key) in [(Some(cert), None), (None, Some(key))] {
            let half = tls(false, None, cert, key).unwrap_err();
            assert_eq!(half.to_string(), "Both cert and key are required");
        }
    }

    #[test]
    fn alerts_are_put_in_words() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(AlertDescription::UnknownCA),
        );
        let err = anyhow::Error::from(io).context("cannot reach https://192.0.2.1/ctl");
        assert_eq!(
            alert_received(err.as_ref()),
            Some(AlertDescription::UnknownCA)
        );
        assert_eq!(
            explain(&err, true),
            "cannot reach https://192.0.2.1/ctl: TLS session refused: the server does not \
             trust the issuer of the client certificate (TLS alert: unknown CA)"
        );
        for (alert, words) in [
            (
                AlertDescription::CertificateRequired,
                "certificate required",
            ),
            (AlertDescription::CertificateRevoked, "certificate revoked"),
            (AlertDescription::DecodeError, "DecodeError"),
        ] {
            assert!(describe_alert(alert).contains(words), "{alert:?}");
        }
        let plain = anyhow::anyhow!("cannot connect");
        assert_eq!(alert_received(plain.as_ref()), None);
        assert_eq!(explain(&plain, false), "cannot connect");
    }
}

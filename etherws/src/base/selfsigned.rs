//! Self-signed certificates for WebTransport pages (`--webtransport-selfsigned`).
//!
//! A page may open a WebTransport session to a server whose certificate no CA signed, if it
//! names the certificate's SHA-256 in `serverCertificateHashes`. Chromium accepts that only for
//! an X.509v3 certificate with an ECDSA key (P-256 here), valid for **at most 14 days** in total,
//! backdating included, and "now" within it; it checks no host name. So the switch makes its own
//! short-lived certificate in memory, renews it before it expires, and publishes the hashes.

use std::time::{Duration, SystemTime};

use anyhow::Context;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// How far back a new certificate is valid: clocks a little behind the switch's still accept it.
pub(crate) const BACKDATE: Duration = Duration::from_secs(3600);

/// How long after its making a certificate stays valid: with [`BACKDATE`], 12 days and an hour,
/// under the 14 days browsers allow.
pub(crate) const LIFETIME: Duration = Duration::from_secs(12 * 24 * 3600);

/// A self-signed certificate, its key, and what a page pins.
pub(crate) struct SelfSigned {
    pub(crate) cert: CertificateDer<'static>,
    pub(crate) key: PrivatePkcs8KeyDer<'static>,
    /// SHA-256 of the certificate (DER): the value of `serverCertificateHashes`.
    pub(crate) sha256: [u8; 32],
    /// When it stops being valid.
    pub(crate) not_after: SystemTime,
}

impl SelfSigned {
    /// A new certificate and key, valid from `now` − [`BACKDATE`] to `now` + [`LIFETIME`].
    pub(crate) fn generate(now: SystemTime) -> anyhow::Result<SelfSigned> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("ECDSA key")?;
        let mut params =
            CertificateParams::new(vec!["etherws".to_owned()]).context("certificate parameters")?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "etherws WebTransport");
        params.distinguished_name = name;
        params.not_before = (now - BACKDATE).into();
        params.not_after = (now + LIFETIME).into();
        let cert = params.self_signed(&key).context("self-signing")?;
        let cert = cert.der().clone();
        let sha256 = ring::digest::digest(&ring::digest::SHA256, &cert);
        let mut hash = [0u8; 32];
        hash.copy_from_slice(sha256.as_ref());
        Ok(SelfSigned {
            cert,
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
            sha256: hash,
            not_after: now + LIFETIME,
        })
    }

    /// The key as rustls takes it.
    pub(crate) fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }

    /// Whether it is still valid at `now`.
    pub(crate) fn valid_at(&self, now: SystemTime) -> bool {
        now < self.not_after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_p256_certificate_valid_at_most_14_days() {
        let now = SystemTime::now();
        let c = SelfSigned::generate(now).unwrap();
        let (_, x) = x509_parser::parse_x509_certificate(&c.cert).unwrap();
        let v = x.validity();
        let total = v.not_after.timestamp() - v.not_before.timestamp();
        assert!(total <= 14 * 24 * 3600, "{total} s");
        assert!(v.is_valid(), "now is inside the validity");
        // id-ecPublicKey on prime256v1.
        let spki = &x.tbs_certificate.subject_pki;
        assert_eq!(spki.algorithm.algorithm.to_id_string(), "1.2.840.10045.2.1");
        assert_eq!(x.version(), x509_parser::x509::X509Version::V3);
        let want = ring::digest::digest(&ring::digest::SHA256, &c.cert);
        assert_eq!(&c.sha256[..], want.as_ref());
        assert!(c.valid_at(now + LIFETIME - Duration::from_secs(1)));
        assert!(!c.valid_at(now + LIFETIME));
        // Two certificates, two keys, two hashes.
        assert_ne!(SelfSigned::generate(now).unwrap().sha256, c.sha256);
        // rustls takes the pair.
        crate::base::tls::server_config_with(vec![c.cert.clone()], c.private_key(), None).unwrap();
    }
}

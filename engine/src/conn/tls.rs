//! The rustls client configuration that matches libpq's `sslmode` and `sslrootcert`.
//!
//! | sslmode | root certificate configured | what is checked |
//! |---|---|---|
//! | `allow`, `prefer`, `require` | no | nothing: encryption only (the [`AcceptAnyCert`] verifier) |
//! | `allow`, `prefer`, `require` | yes | the chain, as `verify-ca` (libpq: "if a root CA file exists, `require` behaves like `verify-ca`") |
//! | `verify-ca` | required | the chain, not the host name ([`ChainOnly`]) |
//! | `verify-full` | required | the chain and the host name (rustls' WebPKI verifier) |
//!
//! Handshake signatures are always checked with the provider's algorithms, so even the
//! unverified mode talks to whoever holds the certificate's key. The ring provider is used
//! explicitly so nothing depends on a process-wide default provider being installed.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::{ConnConfig, ConnError, SslMode, SslRootCert};

/// How the server certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Encryption only.
    None,
    /// The chain up to a trusted root, but not the host name.
    Chain,
    /// The chain and the host name.
    Full,
}

/// The check `sslmode` and `sslrootcert` call for.
pub fn verification(cfg: &ConnConfig) -> Verification {
    match (cfg.sslmode, &cfg.sslrootcert) {
        (SslMode::VerifyFull, _) => Verification::Full,
        (SslMode::VerifyCa, _) => Verification::Chain,
        (_, Some(_)) => Verification::Chain,
        (_, None) => Verification::None,
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the rustls configuration for `cfg`, or `None` for `sslmode=disable`.
pub fn client_config(cfg: &ConnConfig) -> Result<Option<Arc<ClientConfig>>, ConnError> {
    if cfg.sslmode == SslMode::Disable {
        return Ok(None);
    }
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnError::TlsConfig(e.to_string()))?;
    let verification = verification(cfg);
    let mut config = match verification {
        Verification::None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert {
                algorithms: provider.signature_verification_algorithms,
            }))
            .with_no_client_auth(),
        Verification::Chain | Verification::Full => {
            let roots = Arc::new(root_store(cfg)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| ConnError::TlsConfig(e.to_string()))?;
            let verifier: Arc<dyn ServerCertVerifier> = if verification == Verification::Full {
                webpki
            } else {
                Arc::new(ChainOnly { inner: webpki })
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth()
        }
    };
    config.enable_sni = cfg.sslsni;
    Ok(Some(Arc::new(config)))
}

fn root_store(cfg: &ConnConfig) -> Result<RootCertStore, ConnError> {
    let mut store = RootCertStore::empty();
    match &cfg.sslrootcert {
        None => {
            return Err(ConnError::TlsConfig(format!(
                "sslmode \"{}\" needs a root certificate: set sslrootcert to a CA file, \
                 use sslrootcert=system, or change sslmode to disable server certificate \
                 verification",
                cfg.sslmode.as_str()
            )));
        }
        Some(SslRootCert::File(path)) => {
            let pem = std::fs::read(path).map_err(|e| {
                ConnError::TlsConfig(format!(
                    "could not read root certificate file \"{}\": {e}",
                    path.display()
                ))
            })?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| {
                    ConnError::TlsConfig(format!(
                        "could not parse root certificate file \"{}\": {e}",
                        path.display()
                    ))
                })?;
                store.add(cert).map_err(|e| {
                    ConnError::TlsConfig(format!(
                        "invalid certificate in root certificate file \"{}\": {e}",
                        path.display()
                    ))
                })?;
            }
            if store.is_empty() {
                return Err(ConnError::TlsConfig(format!(
                    "root certificate file \"{}\" contains no certificates",
                    path.display()
                )));
            }
        }
        Some(SslRootCert::System) => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(ConnError::TlsConfig(
                    "sslrootcert=system: no trusted root certificates found on this system"
                        .to_owned(),
                ));
            }
        }
    }
    Ok(store)
}

/// The TLS server name for a host: an IP address or a DNS name.
pub fn server_name(host: &str) -> Result<ServerName<'static>, ConnError> {
    ServerName::try_from(host.to_owned())
        .map_err(|_| ConnError::TlsConfig(format!("invalid host name for TLS: \"{host}\"")))
}

/// Accepts any certificate (sslmode `require` / `prefer` / `allow` without a root
/// certificate) while still checking handshake signatures.
#[derive(Debug)]
pub struct AcceptAnyCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `verify-ca`: the WebPKI chain check, with a host-name mismatch forgiven. WebPKI checks the
/// chain before the name, so a name error means the chain was already accepted.
#[derive(Debug)]
pub struct ChainOnly {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

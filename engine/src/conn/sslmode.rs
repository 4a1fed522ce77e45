//! The `sslmode` and `sslrootcert` settings, as libpq spells them.

use std::path::PathBuf;

use super::ConnError;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// Plain first; TLS only if the server refuses the plain connection.
    Allow,
    /// TLS if the server supports it, else plain (the default).
    Prefer,
    /// TLS always; the certificate is not verified unless a root certificate is configured.
    Require,
    /// TLS, with the chain verified against the root certificate (host name not checked).
    VerifyCa,
    /// TLS, with the chain and the host name verified.
    VerifyFull,
}

impl SslMode {
    pub(super) fn parse(s: &str) -> Result<SslMode, ConnError> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(ConnError::InvalidConnInfo(format!(
                    "invalid sslmode value: \"{other}\""
                )));
            }
        })
    }

    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Trusted roots for verifying the server certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SslRootCert {
    /// A PEM file of CA certificates.
    File(PathBuf),
    /// The operating system's trusted roots (`sslrootcert=system`).
    System,
}

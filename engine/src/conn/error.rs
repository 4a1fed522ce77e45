//! Errors of connection settings and connection setup, shared by every connection pgwarp opens.
//!
//! Opening a connection fails in a few ways an operator must tell apart: the settings are
//! wrong (a typo in the connection string, an unreadable root certificate), the server cannot
//! be reached (say which `host:port`), TLS cannot be negotiated, or the server refuses the
//! login (wrong password, no `pg_hba.conf` entry, database missing). [`ConnError`] names each,
//! and [`ServerError`] carries the fields of a server's `ErrorResponse` in one shape whether it
//! came through `tokio_postgres` or through pgwarp's own replication client.

use std::fmt;
use std::io;
use std::time::Duration;

use crate::error::{Classify, ErrorClass, classify_io, classify_sqlstate};

/// The fields of a PostgreSQL `ErrorResponse` that pgwarp uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    /// `ERROR`, `FATAL` or `PANIC` (non-localized when the server sends the `V` field).
    pub severity: String,
    /// The five-character SQLSTATE.
    pub code: String,
    /// The primary message.
    pub message: String,
    /// The optional `DETAIL` line.
    pub detail: Option<String>,
    /// The optional `HINT` line.
    pub hint: Option<String>,
}

impl ServerError {
    /// Reads the fields of an `ErrorResponse` or `NoticeResponse` body.
    pub fn from_fields(mut fields: postgres_protocol::message::backend::ErrorFields<'_>) -> Self {
        use fallible_iterator::FallibleIterator;
        let mut err = ServerError {
            severity: String::new(),
            code: String::new(),
            message: String::new(),
            detail: None,
            hint: None,
        };
        let mut localized_severity = String::new();
        while let Ok(Some(field)) = fields.next() {
            let value = String::from_utf8_lossy(field.value_bytes()).into_owned();
            match field.type_() {
                b'S' => localized_severity = value,
                b'V' => err.severity = value,
                b'C' => err.code = value,
                b'M' => err.message = value,
                b'D' => err.detail = Some(value),
                b'H' => err.hint = Some(value),
                _ => {}
            }
        }
        if err.severity.is_empty() {
            err.severity = localized_severity;
        }
        err
    }

    /// Copies the fields of a `tokio_postgres` server error.
    pub fn from_db_error(db: &tokio_postgres::error::DbError) -> Self {
        ServerError {
            severity: db.severity().to_owned(),
            code: db.code().code().to_owned(),
            message: db.message().to_owned(),
            detail: db.detail().map(str::to_owned),
            hint: db.hint().map(str::to_owned),
        }
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (SQLSTATE {})", self.message, self.code)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ServerError {}

/// Why a connection could not be configured or opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The connection string, URI or an environment variable is malformed.
    #[error("invalid connection string: {0}")]
    InvalidConnInfo(String),

    /// The TLS settings cannot be used (unreadable root certificate, bad combination).
    #[error("invalid TLS settings: {0}")]
    TlsConfig(String),

    /// No route to the server: refused, unreachable, unknown host, missing socket file.
    #[error("could not connect to server at {target}: {source}")]
    Unreachable {
        /// `host:port` or the Unix socket path.
        target: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// `connect_timeout` elapsed before the connection was established.
    #[error("timeout connecting to server at {target} after {}s", after.as_secs())]
    Timeout {
        /// `host:port` or the Unix socket path.
        target: String,
        /// The configured timeout.
        after: Duration,
    },

    /// TLS could not be negotiated (server without TLS, certificate verification failure).
    #[error("TLS error with server at {target}: {reason}")]
    Tls {
        /// `host:port`.
        target: String,
        /// What went wrong, including certificate verification failures.
        reason: String,
    },

    /// The server rejected the password (SQLSTATE 28P01).
    #[error(
        "password authentication failed for user \"{user}\" at {target}: check the password \
         (connection string, PGPASSWORD or the password file)"
    )]
    AuthFailed {
        /// The role name used.
        user: String,
        /// `host:port` or the Unix socket path.
        target: String,
    },

    /// The server asked for a password and none was configured.
    #[error(
        "server at {target} requires a password for user \"{user}\" and none was given: set it \
         in the connection string, PGPASSWORD or the password file"
    )]
    PasswordRequired {
        /// The role name used.
        user: String,
        /// `host:port` or the Unix socket path.
        target: String,
    },

    /// The server refused the connection with an error (no `pg_hba.conf` entry, database does
    /// not exist, too many connections, server starting up, ...).
    #[error("server at {target} refused the connection: {error}")]
    Refused {
        /// `host:port` or the Unix socket path.
        target: String,
        /// The server's error.
        error: Box<ServerError>,
    },

    /// The server sent something the client does not understand, or asked for an
    /// authentication method pgwarp does not support.
    #[error("protocol error with server at {target}: {reason}")]
    Protocol {
        /// `host:port` or the Unix socket path.
        target: String,
        /// What was unexpected.
        reason: String,
    },

    /// Every host of a multi-host connection string failed; one error per host, in order.
    #[error("could not connect to any host: {}", join_errors(.0))]
    AllHostsFailed(Vec<ConnError>),
}

fn join_errors(errors: &[ConnError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl Classify for ConnError {
    fn class(&self) -> ErrorClass {
        match self {
            ConnError::Unreachable { source, .. } => classify_io(source),
            ConnError::Timeout { .. } => ErrorClass::Transient,
            ConnError::Refused { error, .. } => classify_sqlstate(&error.code),
            ConnError::AllHostsFailed(errors) => {
                if errors.iter().any(Classify::is_transient) {
                    ErrorClass::Transient
                } else {
                    ErrorClass::Definite
                }
            }
            ConnError::InvalidConnInfo(_)
            | ConnError::TlsConfig(_)
            | ConnError::Tls { .. }
            | ConnError::AuthFailed { .. }
            | ConnError::PasswordRequired { .. }
            | ConnError::Protocol { .. } => ErrorClass::Definite,
        }
    }
}

impl ConnError {
    /// Maps a server error received during startup to the matching variant.
    pub(crate) fn from_startup(target: &str, user: &str, error: ServerError) -> ConnError {
        if error.code == "28P01" {
            ConnError::AuthFailed {
                user: user.to_owned(),
                target: target.to_owned(),
            }
        } else {
            ConnError::Refused {
                target: target.to_owned(),
                error: Box::new(error),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_the_cause() {
        let refused = ConnError::Unreachable {
            target: "127.0.0.1:1".into(),
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        assert!(refused.is_transient());
        assert_eq!(
            refused.to_string(),
            "could not connect to server at 127.0.0.1:1: connection refused"
        );
        let auth = ConnError::from_startup(
            "h:1",
            "bob",
            ServerError {
                severity: "FATAL".into(),
                code: "28P01".into(),
                message: "password authentication failed for user \"bob\"".into(),
                detail: None,
                hint: None,
            },
        );
        assert!(matches!(auth, ConnError::AuthFailed { .. }));
        assert!(!auth.is_transient());
        let starting = ConnError::from_startup(
            "h:1",
            "bob",
            ServerError {
                severity: "FATAL".into(),
                code: "57P03".into(),
                message: "the database system is starting up".into(),
                detail: None,
                hint: None,
            },
        );
        assert!(starting.is_transient());
        assert_eq!(
            starting.to_string(),
            "server at h:1 refused the connection: the database system is starting up \
             (SQLSTATE 57P03)"
        );
    }
}

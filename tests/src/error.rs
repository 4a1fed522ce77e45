//! The harness's one error type.
//!
//! Harness failures are setup failures (a binary is missing, a server did not start, a SQL
//! statement of a fixture failed), so a single enum is enough; every variant says what the
//! harness was doing and, for commands, carries the program's stderr so a failing test shows
//! the server's own explanation.

use std::io;
use std::process::ExitStatus;

/// Anything that can go wrong while starting, driving or tearing down test servers.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A file system or process-spawning operation failed.
    #[error("could not {action}: {source}")]
    Io {
        /// What the harness was doing, e.g. `create temporary directory`.
        action: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// An external program (initdb, pg_ctl, psql) exited unsuccessfully.
    #[error("{program} failed ({status}) while trying to {action}: {output}")]
    Command {
        /// The program's file name.
        program: String,
        /// What the harness was doing.
        action: String,
        /// The exit status.
        status: ExitStatus,
        /// Its stderr and stdout, trimmed.
        output: String,
    },
    /// A SQL statement or connection failed.
    #[error("could not {action} (server port {port}): {detail}")]
    Sql {
        /// What the harness was doing.
        action: String,
        /// The server's TCP port, to tell servers apart in multi-node tests.
        port: u16,
        /// The server's message with severity and SQLSTATE, or the client error's text.
        detail: String,
        /// The client error; its display includes the server's message.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The environment cannot run test servers (no binaries, no `postgres` user, ...).
    #[error("test environment: {0}")]
    Environment(String),
    /// A cluster spec (or a request against a fixture) does not make sense.
    #[error("invalid cluster spec: {0}")]
    InvalidSpec(String),
    /// A query returned something other than what the helper expected.
    #[error("unexpected result: {0}")]
    UnexpectedResult(String),
}

impl HarnessError {
    /// Wraps a client error with what the harness was doing, keeping the server's message
    /// (tokio-postgres displays a server error only as "db error").
    pub(crate) fn sql(action: impl Into<String>, port: u16, source: tokio_postgres::Error) -> Self {
        let detail = match source.as_db_error() {
            Some(db) => format!(
                "{}: {} (SQLSTATE {})",
                db.severity(),
                db.message(),
                db.code().code()
            ),
            None => {
                let mut text = source.to_string();
                if let Some(cause) = std::error::Error::source(&source) {
                    text.push_str(&format!(": {cause}"));
                }
                text
            }
        };
        HarnessError::Sql {
            action: action.into(),
            port,
            detail,
            source,
        }
    }

    /// Wraps an I/O error with what the harness was doing.
    pub(crate) fn io(action: impl Into<String>, source: io::Error) -> Self {
        HarnessError::Io {
            action: action.into(),
            source,
        }
    }
}

/// Result alias used throughout the harness.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;

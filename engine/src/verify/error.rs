//! [`VerifyError`]: why a verification could not be carried out.
//!
//! A *difference* between source and target is not an error: it is the report's content. An
//! error means verify could not say whether the data is equal (a server is unreachable, a table
//! is missing, a query failed), and the command exits with status 2 instead of 1.

use crate::citus::CitusError;
use crate::config::ConfigError;
use crate::conn::ConnError;
use crate::error::{Classify, ErrorClass, classify_pg};
use crate::pipeline::PipelineError;

/// An error that stops a verification.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Configuration (missing or malformed option).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A connection could not be opened.
    #[error("{side}: {source}")]
    Connect {
        /// `source`, `target` or `node host:port`.
        side: String,
        /// Why.
        #[source]
        source: ConnError,
    },
    /// The target's topology could not be read.
    #[error(transparent)]
    Citus(#[from] CitusError),
    /// Reading a table's description failed.
    #[error(transparent)]
    Catalog(#[from] PipelineError),
    /// A query failed.
    #[error("{what} on {side}: {}", pg_message(.source))]
    Query {
        /// What was being done.
        what: String,
        /// `source` or the node.
        side: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A table cannot be verified as asked (missing, missing columns, unsupported type).
    #[error("{0}")]
    Table(String),
    /// No tables were given and none could be found.
    #[error("{0}")]
    NoTables(String),
}

impl VerifyError {
    /// Wraps a driver error with what was being done and where.
    pub(crate) fn query(
        what: impl Into<String>,
        side: impl Into<String>,
    ) -> impl FnOnce(tokio_postgres::Error) -> VerifyError {
        let (what, side) = (what.into(), side.into());
        move |source| VerifyError::Query { what, side, source }
    }
}

impl Classify for VerifyError {
    fn class(&self) -> ErrorClass {
        match self {
            VerifyError::Connect { source, .. } => source.class(),
            VerifyError::Query { source, .. } => classify_pg(source),
            VerifyError::Citus(e) => e.class(),
            VerifyError::Catalog(e) => e.class(),
            _ => ErrorClass::Definite,
        }
    }
}

/// A server error as the operator should read it: the server's message, its SQLSTATE, and the
/// detail and hint when there are any; other driver errors as the driver describes them.
pub fn pg_message(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => {
            let mut out = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                out.push_str(": ");
                out.push_str(detail);
            }
            if let Some(hint) = db.hint() {
                out.push_str("; hint: ");
                out.push_str(hint);
            }
            out
        }
        None => err.to_string(),
    }
}

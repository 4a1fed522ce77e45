//! [`CutoverError`]: why a cutover stopped.
//!
//! The orchestrator ([`super::cutover`]) adds what it did about it: every error after the
//! fence was put up is reported together with whether the fence was lifted again.

use crate::citus::CitusError;
use crate::conn::ConnError;
use crate::error::{Classify, ErrorClass, classify_pg};
use crate::pipeline::PipelineError;
use crate::source::SourceError;
use crate::verify::{VerifyError, pg_message};

/// An error of `cutover` (and of `cleanup`, which shares its parts).
#[derive(Debug, thiserror::Error)]
pub enum CutoverError {
    /// A connection could not be opened.
    #[error("could not connect to the {side}: {source}")]
    Connect {
        /// `source`, `target` or `node host:port`.
        side: String,
        /// Why.
        #[source]
        source: ConnError,
    },
    /// A query failed.
    #[error("{what} on the {side}: {}", pg_message(.source))]
    Query {
        /// What was being done.
        what: String,
        /// `source`, `target` or `node host:port`.
        side: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// Reading the target's topology.
    #[error(transparent)]
    Citus(#[from] CitusError),
    /// Slot or publication management on the source.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Reading the sync's state on the target.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The verification could not run.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// Something that must hold before the fence goes up does not.
    #[error("{0}")]
    Precondition(String),
    /// The target did not apply everything up to the fence in time.
    #[error("{0}")]
    CatchUp(String),
    /// Verify found differences.
    #[error("{0}")]
    Differences(String),
    /// Ctrl-C or SIGTERM.
    #[error("interrupted")]
    Interrupted,
}

impl CutoverError {
    /// Wraps a driver error with what was being done and where.
    pub(crate) fn query(
        what: impl Into<String>,
        side: impl Into<String>,
    ) -> impl FnOnce(tokio_postgres::Error) -> CutoverError {
        let (what, side) = (what.into(), side.into());
        move |source| CutoverError::Query { what, side, source }
    }
}

impl Classify for CutoverError {
    fn class(&self) -> ErrorClass {
        match self {
            CutoverError::Connect { source, .. } => source.class(),
            CutoverError::Query { source, .. } => classify_pg(source),
            CutoverError::Source(e) => e.class(),
            CutoverError::Citus(e) => e.class(),
            CutoverError::Pipeline(e) => e.class(),
            CutoverError::Verify(e) => e.class(),
            _ => ErrorClass::Definite,
        }
    }
}

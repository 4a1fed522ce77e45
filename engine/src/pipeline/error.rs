//! [`PipelineError`]: every way a sync can stop, classified for the retry loop.
//!
//! The parts' errors are wrapped as they are (their messages already say what and where);
//! the variants added here are the engine's own definite stops: a schema change on the
//! source, a row the engine cannot apply faithfully, a state table that disagrees with the
//! slot. Transient errors (a lost connection anywhere) make `sync` restart the stream from the
//! slot after a pause; definite ones stop it.

use pgwarp_decoder::{DecodeError, Lsn};
use pgwarp_sink::SinkError;

use crate::citus::CitusError;
use crate::config::ConfigError;
use crate::conn::ConnError;
use crate::error::{Classify, ErrorClass, classify_pg};
use crate::source::SourceError;

/// An error of the running engine.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Opening a connection.
    #[error(transparent)]
    Connect(#[from] ConnError),
    /// The source: replication connection, slot, publication.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Reading the target's topology or routing a value.
    #[error(transparent)]
    Citus(#[from] CitusError),
    /// Writing to a node.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// A replication message could not be decoded.
    #[error("could not decode the replication stream: {0}")]
    Decode(#[from] DecodeError),
    /// A query failed.
    #[error("{what}: {source}")]
    Query {
        /// What was being done.
        what: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The preflight check found problems.
    #[error("preflight check found {count} problem(s); run pgwarp check for the list")]
    CheckFailed {
        /// How many.
        count: usize,
    },
    /// A table's columns on the source changed while syncing. Everything committed before
    /// the change was applied on every node and confirmed; nothing after it.
    #[error("table \"{table}\" changed on the source at {lsn}: {detail}")]
    SchemaChanged {
        /// `schema.name`.
        table: String,
        /// Where in the WAL the new definition appeared (the commit LSN of the first
        /// transaction written under it).
        lsn: Lsn,
        /// What differs, and what to do about it.
        detail: String,
        /// The columns added at the end of the table when that is the whole change (pgwarp can
        /// follow it if the target has them); empty otherwise.
        added: Vec<String>,
    },
    /// A change for a table that is not part of this sync.
    #[error(
        "the stream carries changes of table \"{table}\", which is not part of this sync \
         (publication \"{publication}\" publishes it): add it with --tables or drop it from \
         the publication"
    )]
    UnexpectedTable {
        /// `schema.name`.
        table: String,
        /// The publication.
        publication: String,
    },
    /// Something the engine cannot apply faithfully.
    #[error("{0}")]
    Unsupported(String),
    /// The stored sync state disagrees with the source or the options.
    #[error("{0}")]
    State(String),
    /// A spill file could not be written or read.
    #[error("spill file \"{path}\": {source}")]
    Spill {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A task of the engine ended unexpectedly (a panic or a closed channel).
    #[error("internal error: {0}")]
    Internal(String),
    /// The source ended the replication stream (it shuts down, or closed the walsender).
    #[error("the replication stream from {0} ended (is the source shutting down?)")]
    StreamEnded(String),
    /// A shard of a synced table moved or was split since the sync started.
    #[error(
        "the shard placements changed during the sync: {detail}. A shard move, split or \
         rebalance ran while pgwarp was syncing; rows written to a moved shard's old placement \
         may be lost and the per-node progress no longer matches the shards, so this sync \
         cannot continue. Keep the rebalancer and shard moves off until the cutover \
         (SELECT citus_rebalance_stop()), then start over: pgwarp cleanup, empty the target \
         tables, pgwarp sync"
    )]
    PlacementChanged {
        /// Which shards changed, and how.
        detail: String,
    },
    /// The work stopped because the sync is stopping (not an error of its own).
    #[error("stopped")]
    Stopped,
}

impl PipelineError {
    /// Wraps a driver error with what was being done.
    pub fn query(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> PipelineError {
        let what = what.into();
        move |source| PipelineError::Query { what, source }
    }

    /// A short name of the error's kind, for the `errors_total` metric.
    pub fn kind(&self) -> &'static str {
        match self {
            PipelineError::Config(_) => "config",
            PipelineError::Connect(_) => "connect",
            PipelineError::Source(_) => "source",
            PipelineError::Citus(_) => "citus",
            PipelineError::Sink(_) => "sink",
            PipelineError::Decode(_) => "decode",
            PipelineError::Query { .. } => "query",
            PipelineError::CheckFailed { .. } => "check",
            PipelineError::SchemaChanged { .. } => "schema_changed",
            PipelineError::UnexpectedTable { .. } => "unexpected_table",
            PipelineError::Unsupported(_) => "unsupported",
            PipelineError::State(_) => "state",
            PipelineError::Spill { .. } => "spill",
            PipelineError::Internal(_) => "internal",
            PipelineError::StreamEnded(_) => "stream_ended",
            PipelineError::PlacementChanged { .. } => "placement_changed",
            PipelineError::Stopped => "stopped",
        }
    }
}

impl Classify for PipelineError {
    fn class(&self) -> ErrorClass {
        match self {
            PipelineError::Connect(e) => e.class(),
            PipelineError::Source(e) => e.class(),
            PipelineError::Citus(e) => e.class(),
            PipelineError::Sink(e) if e.is_transient() => ErrorClass::Transient,
            PipelineError::Query { source, .. } => classify_pg(source),
            PipelineError::StreamEnded(_) => ErrorClass::Transient,
            _ => ErrorClass::Definite,
        }
    }
}

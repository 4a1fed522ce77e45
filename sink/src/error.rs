//! The sink's one error type and its transient / definite split.
//!
//! A node writer retries a *transient* failure on its own (reconnect, back off, replay the batch
//! whole in a new transaction; the progress row makes the replay exactly-once) and reports a
//! *definite* one at once, with everything an operator needs to find the row's home: node, shard,
//! table and the commit LSN of the batch.
//!
//! Which failures are transient is decided by the one SQLSTATE table in [`crate::class`],
//! shared with the engine.
//!
//! Messages never carry row values: a server error is shown as its primary message and SQLSTATE
//! only, because its DETAIL line (`Key (id)=(42) already exists`) holds the row's data.

use std::error::Error as StdError;
use std::fmt;

use pgwarp_decoder::Lsn;

/// A boxed error from a [`crate::Connector`].
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Every failure of the sink.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The connector could not open a connection to the node.
    #[error("could not connect to node {node}: {source}")]
    Connect {
        /// Node label.
        node: String,
        /// Whether retrying may help (connection refused, server starting up, ...).
        transient: bool,
        /// What the connector reported.
        #[source]
        source: BoxError,
    },
    /// A statement for one shard failed on the node.
    #[error(
        "could not {what} shard {shard} of table {table} on node {node} \
         (batch commit lsn {lsn}): {}",
        describe_pg(source)
    )]
    Shard {
        /// Node label.
        node: String,
        /// Quoted shard table name.
        shard: String,
        /// Logical table name.
        table: String,
        /// Commit LSN of the batch's last source transaction.
        lsn: Lsn,
        /// What was being done, ending in a preposition (`copy rows into`, `truncate`, ...).
        what: &'static str,
        /// The server or connection error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A statement not tied to one shard (transaction control, progress row, session setup).
    #[error(
        "could not {what} on node {node} (batch commit lsn {lsn}): {}",
        describe_pg(source)
    )]
    Node {
        /// Node label.
        node: String,
        /// Commit LSN of the batch, `0/0` outside a batch.
        lsn: Lsn,
        /// What was being done.
        what: &'static str,
        /// The server or connection error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A set-based statement matched fewer rows than it should have: the shard does not hold a
    /// row the source says it holds (only checked outside idempotent mode).
    #[error(
        "target diverged from source on node {node}, shard {shard} of table {table} \
         (batch commit lsn {lsn}): {what} matched {affected} of {expected} rows"
    )]
    Diverged {
        /// Node label.
        node: String,
        /// Quoted shard table name.
        shard: String,
        /// Logical table name.
        table: String,
        /// Commit LSN of the batch.
        lsn: Lsn,
        /// The operation (`delete`, `update`, `move`).
        what: &'static str,
        /// Rows the batch staged for the operation.
        expected: u64,
        /// Rows the statement affected.
        affected: u64,
    },
    /// A row the engine handed over cannot be written as it is.
    #[error("invalid row for table {table}: {reason}")]
    InvalidRow {
        /// Logical table name.
        table: String,
        /// What is wrong.
        reason: String,
    },
    /// A table or shard description the engine handed over is inconsistent.
    #[error("invalid target table {table}: {reason}")]
    InvalidTable {
        /// Logical table name.
        table: String,
        /// What is wrong.
        reason: String,
    },
    /// A binary value does not have the shape of its column's type on the node (embedded type
    /// OIDs could not be rewritten).
    #[error(
        "value of column {column} of table {table} does not match its type on node {node}: {reason}"
    )]
    TypeMismatch {
        /// Node label.
        node: String,
        /// Logical table name.
        table: String,
        /// Column name.
        column: String,
        /// What does not match.
        reason: String,
    },
    /// Binary COPY data (a snapshot stream or one tuple of it) is malformed.
    #[error("invalid binary copy data at byte {offset}: {reason}")]
    InvalidCopyData {
        /// Byte offset in the input.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The node's progress row could not be read.
    #[error("invalid progress row for slot {slot} on node {node}: {reason}")]
    Progress {
        /// Node label.
        node: String,
        /// Slot name.
        slot: String,
        /// What is wrong.
        reason: String,
    },
    /// The writer configuration is unusable.
    #[error("invalid writer configuration: {0}")]
    Config(String),
    /// The node did not finish a try within the writer's `io_timeout`.
    #[error(
        "node {node} did not answer within {}s while trying to {what}: connection treated as lost",
        after.as_secs_f64()
    )]
    Timeout {
        /// Node label.
        node: String,
        /// What was being done (`connect`, `apply a batch`).
        what: &'static str,
        /// The limit.
        after: std::time::Duration,
    },
}

impl SinkError {
    /// Whether reconnecting and retrying the batch may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            SinkError::Connect { transient, .. } => *transient,
            SinkError::Timeout { .. } => true,
            SinkError::Shard { source, .. } | SinkError::Node { source, .. } => {
                is_transient_pg(source)
            }
            SinkError::Diverged { .. }
            | SinkError::InvalidRow { .. }
            | SinkError::InvalidTable { .. }
            | SinkError::TypeMismatch { .. }
            | SinkError::InvalidCopyData { .. }
            | SinkError::Progress { .. }
            | SinkError::Config(_) => false,
        }
    }

    /// The SQLSTATE of the server error behind this error, if there is one.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            SinkError::Shard { source, .. } | SinkError::Node { source, .. } => {
                source.as_db_error().map(|db| db.code().code())
            }
            _ => None,
        }
    }
}

/// Whether a `tokio_postgres` error is transient: a transient SQLSTATE, a closed connection or
/// an I/O failure on the socket (see [`crate::class`]).
pub fn is_transient_pg(err: &tokio_postgres::Error) -> bool {
    crate::class::classify_pg(err) == crate::class::ErrorClass::Transient
}

/// A server error as `message (SQLSTATE code)`, leaving out DETAIL and HINT, which may quote
/// row values; other errors as their display.
fn describe_pg(err: &tokio_postgres::Error) -> DescribePg<'_> {
    DescribePg(err)
}

struct DescribePg<'a>(&'a tokio_postgres::Error);

impl fmt::Display for DescribePg<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_db_error() {
            Some(db) => write!(f, "{} (SQLSTATE {})", db.message(), db.code().code()),
            None => write!(f, "{}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_errors_are_definite() {
        let err = SinkError::InvalidRow {
            table: "public.t".into(),
            reason: "3 columns, table has 2".into(),
        };
        assert!(!err.is_transient());
        assert_eq!(
            err.to_string(),
            "invalid row for table public.t: 3 columns, table has 2"
        );
        let err = SinkError::Connect {
            node: "w1".into(),
            transient: true,
            source: "refused".into(),
        };
        assert!(err.is_transient());
        assert_eq!(err.to_string(), "could not connect to node w1: refused");
    }
}

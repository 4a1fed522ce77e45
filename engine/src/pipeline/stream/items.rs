//! What flows between the stream's stages.
//!
//! ```text
//!  replication task ──Input──► router thread ──NodeItem──► node task (one per node)
//! ```
//!
//! Both hand-offs move work in batches: an [`Input`] holds every message the socket delivered
//! at once, and a [`NodeItem::Txns`] holds the changes of as many whole transactions as the
//! router gathered for the node (cut on size, on a short timer, or when the router runs out of
//! input), so a busy stream costs a few wake-ups per socket read rather than several per source
//! transaction.
//!
//! Positions follow one convention: a *closing position* `P` (a commit's end LSN, or the
//! server's WAL end from a keepalive received between transactions) means "every transaction
//! whose commit record starts before `P` is accounted for". That is exactly what the source
//! expects as a flush position (on restart it resends transactions whose commit LSN is at or
//! after the confirmed position), so the flush LSN is the minimum over nodes of their closing
//! positions. The progress rows on the nodes hold commit LSNs instead ("everything at or
//! before"), which is what the skip test on restart compares against.

use pgwarp_decoder::{Lsn, PgTimestamp, ReplicationMessage};
use pgwarp_sink::Change;

/// From the replication task to the router: the messages one read of the socket delivered, in
/// order (XLogData and keepalives).
pub type Input = Vec<ReplicationMessage>;

/// The transaction a piece of changes belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnMark {
    /// Its commit LSN (known at Begin, or at Stream Commit for streamed ones).
    pub commit_lsn: Lsn,
    /// Apply with idempotent statements (it commits before `idempotent_until`).
    pub idempotent: bool,
}

/// How a transaction ended, on its last piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnEnd {
    /// End of the commit record: the closing position.
    pub end_lsn: Lsn,
    /// Source commit time.
    pub commit_time: PgTimestamp,
}

/// The changes of one transaction within a [`TxnPieces`]: the next `len` changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnSpan {
    /// How many changes.
    pub len: usize,
    /// The transaction.
    pub txn: TxnMark,
    /// Set when the transaction ends here; only the last span may lack it (a transaction
    /// continued in the next item).
    pub end: Option<TxnEnd>,
}

/// Changes of consecutive transactions for one node, in commit order.
#[derive(Debug, Default)]
pub struct TxnPieces {
    /// The changes, in order.
    pub changes: Vec<Change>,
    /// Which transaction each run of changes belongs to, in order; lengths sum to
    /// `changes.len()`.
    pub spans: Vec<TxnSpan>,
}

/// What happens to the transaction a node applies as it streams (see `live`).
#[derive(Debug)]
pub enum StreamOp {
    /// Changes to apply inside the open transaction (opened by the first of them).
    Changes(Vec<Change>),
    /// Set a savepoint before the first change of subtransaction `subxid` on this node.
    Savepoint(u32),
    /// Subtransaction `subxid` aborted: roll back to its savepoint.
    RollbackTo(u32),
    /// The transaction committed at `commit_lsn`.
    Commit {
        /// Its commit LSN, recorded in the node's progress row.
        commit_lsn: Lsn,
        /// Its end.
        end: TxnEnd,
    },
    /// The transaction aborted.
    Abort,
}

/// From the router to one node's task, in source order.
#[derive(Debug)]
pub enum NodeItem {
    /// Changes of transactions applied through the node's first lane.
    Txns(TxnPieces),
    /// Every transaction committing before this position that touches this node has been
    /// queued before this item.
    Watermark(Lsn),
    /// A step of the source transaction applied as it streams, on the node's stream lane.
    Stream(StreamOp),
}

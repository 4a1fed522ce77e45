//! What flows between the stream's stages.
//!
//! ```text
//!  replication task ──Input──► router thread ──NodeItem──► node task (one per node)
//! ```
//!
//! Positions follow one convention: a *closing position* `P` (a commit's end LSN, or the
//! server's WAL end from a keepalive received between transactions) means "every transaction
//! whose commit record starts before `P` is accounted for". That is exactly what the source
//! expects as a flush position (on restart it resends transactions whose commit LSN is at or
//! after the confirmed position), so the flush LSN is the minimum over nodes of their closing
//! positions. The progress rows on the nodes hold commit LSNs instead ("everything at or
//! before"), which is what the skip test on restart compares against.

use bytes::Bytes;
use pgwarp_decoder::{Lsn, PgTimestamp};
use pgwarp_sink::Change;

/// From the replication task to the router.
#[derive(Debug)]
pub enum Input {
    /// An XLogData payload (one pgoutput message).
    Data {
        /// Start of the message in the WAL.
        wal_start: Lsn,
        /// The server's WAL end.
        wal_end: Lsn,
        /// The pgoutput frame.
        frame: Bytes,
    },
    /// A keepalive: the server has sent everything before `wal_end`.
    Keepalive {
        /// The server's WAL end.
        wal_end: Lsn,
    },
}

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

/// From the router to one node's task, in source commit order.
#[derive(Debug)]
pub enum NodeItem {
    /// Changes of one transaction for this node; `end` is set on its last piece.
    Changes {
        /// The changes, in order.
        changes: Vec<Change>,
        /// Bytes of row data in them (for metrics).
        row_bytes: u64,
        /// The transaction.
        txn: TxnMark,
        /// Set on the transaction's last piece for this node.
        end: Option<TxnEnd>,
    },
    /// Every transaction committing before this position that touches this node has been
    /// queued before this item.
    Watermark(Lsn),
}

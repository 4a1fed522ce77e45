//! What the engine hands a node writer: ordered changes for one node, and how to commit them.
//!
//! A [`NodeBatch`] holds changes in source commit order, already routed: each names the
//! [`Shard`] it belongs to on this node. An update that moves a row to another shard (its
//! distribution value changed) arrives as a [`Change::Delete`] on the old shard plus a
//! [`Change::Insert`] on the new one, which may be on another node's batch; when both shards
//! are on this node and the new image has unchanged TOAST columns, send one
//! [`Change::Update`] with `moved_from` set instead, so the writer can take those values from the
//! old row.

use bytes::Bytes;
use pgwarp_decoder::Lsn;

use crate::row::Row;
use crate::target::Shard;

/// One routed change.
#[derive(Debug, Clone)]
pub enum Change {
    /// A new row. Its image must be complete (no unchanged TOAST columns).
    Insert {
        /// Where the row goes.
        shard: Shard,
        /// The row, one value per table column.
        row: Row,
    },
    /// New rows for one shard in bulk: binary COPY tuples back to back, as a snapshot reader
    /// cuts them out of `COPY ... TO STDOUT (FORMAT binary)` (no header, no trailer), in the
    /// table's column order. Outside idempotent mode they are forwarded to the shard's COPY as
    /// they are, with no per-row work; otherwise (or when the segment also updates or deletes
    /// rows of the table) they are split into rows first.
    InsertRows {
        /// Where the rows go.
        shard: Shard,
        /// The tuples.
        data: Bytes,
        /// How many tuples `data` holds (for reports; checked whenever the data is split).
        rows: u64,
    },
    /// A changed row.
    Update {
        /// Where the row is after the update.
        shard: Shard,
        /// The old key (pgoutput `K`) or old row (`O`), when the source sent one: when the key
        /// changed, with `REPLICA IDENTITY FULL`, or when a key column is TOASTed. Without it
        /// the key is read from `new`.
        old_key: Option<Row>,
        /// The new row; unchanged TOAST columns keep the value the target has.
        new: Row,
        /// The shard the row was on before, when it moved between two shards of this node.
        moved_from: Option<Shard>,
    },
    /// A removed row.
    Delete {
        /// Where the row is.
        shard: Shard,
        /// The old key (`K`: key columns set, others NULL) or old row (`O`).
        key: Row,
    },
    /// `TRUNCATE` of every listed shard at once: a barrier in the batch. The engine sends it to
    /// every node, listing all shards of the truncated tables on that node.
    Truncate {
        /// The shards to truncate.
        shards: Vec<Shard>,
        /// `TRUNCATE ... CASCADE`.
        cascade: bool,
        /// `TRUNCATE ... RESTART IDENTITY`.
        restart_identity: bool,
    },
}

/// Ordered changes for one node, applied in one transaction together with the node's progress
/// row.
#[derive(Debug, Clone, Default)]
pub struct NodeBatch {
    /// The changes, in source commit order.
    pub changes: Vec<Change>,
    /// Commit LSN of the last source transaction that ends in this batch, recorded in
    /// `pgwarp.progress` in the same transaction; [`Lsn::INVALID`] records nothing (snapshot
    /// chunks).
    pub last_commit_lsn: Lsn,
    /// Apply with idempotent statements (upsert, delete-if-present, update-by-key) and without
    /// checking that every staged row matched, so that a replay over a partly applied state
    /// converges.
    pub idempotent: bool,
    /// Commit LSN of a source transaction this batch holds only the first part of (a large
    /// transaction split over several batches). The batch is skipped only once the node has
    /// recorded this LSN, since `last_commit_lsn` is then an earlier transaction's.
    pub open_commit_lsn: Option<Lsn>,
}

impl NodeBatch {
    /// A batch of whole source transactions, the last of which commits at `last_commit_lsn`.
    pub fn complete(changes: Vec<Change>, last_commit_lsn: Lsn) -> NodeBatch {
        NodeBatch {
            changes,
            last_commit_lsn,
            idempotent: false,
            open_commit_lsn: None,
        }
    }

    /// A batch ending inside the source transaction that commits at `open_commit_lsn`; the last
    /// whole transaction before it committed at `last_commit_lsn`. Applied idempotently.
    pub fn partial(changes: Vec<Change>, last_commit_lsn: Lsn, open_commit_lsn: Lsn) -> NodeBatch {
        NodeBatch {
            changes,
            last_commit_lsn,
            idempotent: true,
            open_commit_lsn: Some(open_commit_lsn),
        }
    }

    /// A (possibly resumed) snapshot chunk: idempotent, records no progress, never skipped.
    pub fn snapshot_chunk(changes: Vec<Change>) -> NodeBatch {
        NodeBatch {
            changes,
            last_commit_lsn: Lsn::INVALID,
            idempotent: true,
            open_commit_lsn: None,
        }
    }

    /// What the batch nets out to (rows inserted, updated, deleted, moved; truncates), planned
    /// without touching a node; fails as [`crate::NodeWriter::apply`] would on an invalid row.
    pub fn net_counts(&self) -> Result<crate::Counts, crate::SinkError> {
        crate::plan::build(self).map(|p| p.counts)
    }

    /// The LSN at or after which the node already holds this whole batch, if there is one.
    pub fn skip_at(&self) -> Option<Lsn> {
        let lsn = self.open_commit_lsn.unwrap_or(self.last_commit_lsn);
        lsn.is_valid().then_some(lsn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_positions() {
        assert_eq!(
            NodeBatch::complete(vec![], Lsn(10)).skip_at(),
            Some(Lsn(10))
        );
        let p = NodeBatch::partial(vec![], Lsn(10), Lsn(20));
        assert_eq!(p.skip_at(), Some(Lsn(20)));
        assert!(p.idempotent);
        assert_eq!(NodeBatch::snapshot_chunk(vec![]).skip_at(), None);
    }
}

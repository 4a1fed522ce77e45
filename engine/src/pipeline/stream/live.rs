//! A streamed transaction applied as it arrives ("live"), on the router's side.
//!
//! With `streaming 'on'` the server sends a transaction larger than `logical_decoding_work_mem`
//! in segments while it runs. Spilling it and applying it at Stream Commit puts receiving and
//! applying one after the other, and a transaction larger than a batch must then be applied in
//! idempotent parts. Instead, one streamed transaction at a time is routed as its segments
//! arrive and applied on each node inside one open transaction, on the node's *stream lane* (a
//! second connection), committed together with the node's progress row at Stream Commit and
//! rolled back at Stream Abort. Rows go in by plain COPY.
//!
//! # Why this is exact
//!
//! * **Commit order per row.** Transactions that commit while it streams arrive whole between
//!   its segments and are applied (and committed) on the node's first lane in between, in
//!   stream order. A change of the streamed transaction that conflicts with one of them (same
//!   row, same unique key, a `TRUNCATE` of the table) is ordered by the source's locks: either
//!   it came first and the other transaction waited for the streamed one to end, so it cannot
//!   have committed before it, or it came after that transaction's commit, and then it is in a
//!   later segment, applied after that transaction on the node. So the node's two lanes never
//!   wait for each other, and every row ends as on the source.
//! * **Exactly once.** The open transaction does not touch the progress row until its commit,
//!   which locks the row, checks it and records the commit LSN in the same node transaction;
//!   the first lane is idle then, and every transaction it committed before committed earlier
//!   on the source, so the row only moves forward. A crash rolls the open transaction back on
//!   every node; its commit was never confirmed, so the source sends it again from its start.
//! * **When it is allowed.** Its commit LSN is unknown until Stream Commit, so a transaction
//!   is applied live only when a lower bound of it already settles every per-transaction
//!   decision: the bound (the stream's start position, or the end of the last whole
//!   transaction received; its commit record ends after both) must be at or past every node's
//!   recorded progress (a node holds exactly the transactions ending at or before its
//!   progress, so none can hold this one; a resumed stream starts where the nodes are) and at
//!   or past `idempotent_until` (strict mode applies). Otherwise, and for a second streamed transaction while one is live, the
//!   transaction is spilled and applied at its commit as before. Routing a change through an
//!   older definition of its table (see the router) compares the change's own position with
//!   the moment the tables were described instead of the commit LSN: a change made under the
//!   definition from before an `ADD COLUMN` precedes that `ALTER` (which waited for the
//!   transaction to end, so the transaction committed before the tables were described),
//!   while one made after a column was dropped follows the description.
//! * **Subtransactions.** A subtransaction's first change on a node is preceded by a savepoint
//!   there; a subtransaction abort rolls each node back to the earliest savepoint of the
//!   subtransaction or anything after it (the spill store's rule: everything from its first
//!   change on belongs to it, since its parent makes no change while it runs).
//! * **Flush position.** Nothing changes: a node's closing position only passes the streamed
//!   transaction once its Stream Commit is applied there, and positions of transactions that
//!   commit before it may be confirmed meanwhile (the source resends a transaction that
//!   commits after the confirmed position whole).

use pgwarp_decoder::Lsn;
use pgwarp_sink::Change;

use super::items::{StreamOp, TxnMark};
use super::outbox::{CHANGE_OVERHEAD, Push};

/// One node's share of the live transaction not yet sent.
#[derive(Debug, Default)]
struct LiveNode {
    ops: Vec<StreamOp>,
    bytes: usize,
    /// It got something of the transaction (it has an open transaction to end).
    touched: bool,
    /// Subtransactions with a savepoint on this node, in order.
    savepoints: Vec<u32>,
}

/// The streamed transaction applied live.
#[derive(Debug)]
pub(super) struct LiveTxn {
    /// Its top-level xid.
    pub(super) xid: u32,
    /// Routing mark: the commit LSN is a lower bound of the real one.
    pub(super) mark: TxnMark,
    nodes: Vec<LiveNode>,
    /// Subtransactions in the order of their first change.
    subxacts: Vec<u32>,
    /// The subtransaction of the change being routed (`None`: the top level).
    current_sub: Option<u32>,
    piece_bytes: usize,
}

impl LiveTxn {
    /// Starts `xid` for `nodes` nodes; `lower` is at or before its commit.
    pub(super) fn new(xid: u32, lower: Lsn, nodes: usize, piece_bytes: usize) -> LiveTxn {
        LiveTxn {
            xid,
            mark: TxnMark {
                commit_lsn: lower,
                idempotent: false,
            },
            nodes: (0..nodes).map(|_| LiveNode::default()).collect(),
            subxacts: Vec::new(),
            current_sub: None,
            piece_bytes,
        }
    }

    /// The next change routed was made by (sub)transaction `change_xid`.
    pub(super) fn made_by(&mut self, change_xid: u32) {
        if change_xid == self.xid {
            self.current_sub = None;
            return;
        }
        if !self.subxacts.contains(&change_xid) {
            self.subxacts.push(change_xid);
        }
        self.current_sub = Some(change_xid);
    }

    /// Whether `node`'s unsent share reached a piece.
    pub(super) fn full(&self, node: usize) -> bool {
        self.nodes
            .get(node)
            .is_some_and(|n| n.bytes >= self.piece_bytes)
    }

    /// Takes `node`'s unsent steps, each with its accounted bytes.
    pub(super) fn take(&mut self, node: usize) -> Vec<(StreamOp, usize)> {
        let Some(n) = self.nodes.get_mut(node) else {
            return Vec::new();
        };
        let bytes = std::mem::take(&mut n.bytes);
        let ops = std::mem::take(&mut n.ops);
        let changes = ops
            .iter()
            .filter(|o| matches!(o, StreamOp::Changes(_)))
            .count()
            .max(1);
        // the bytes are spread over the pieces of changes (usually one)
        ops.into_iter()
            .map(|o| {
                let b = match o {
                    StreamOp::Changes(_) => bytes / changes,
                    _ => 1,
                };
                (o, b)
            })
            .collect()
    }

    /// The nodes that got something of the transaction.
    pub(super) fn touched(&self) -> impl Iterator<Item = usize> + '_ {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.touched)
            .map(|(i, _)| i)
    }

    /// Subtransaction `subxid` aborted: per node, the savepoint to roll back to (the earliest
    /// of `subxid` or a subtransaction that started after it). Call after sending every
    /// node's unsent steps.
    pub(super) fn abort_subxact(&mut self, subxid: u32) -> Vec<(usize, u32)> {
        let Some(at) = self.subxacts.iter().position(|s| *s == subxid) else {
            return Vec::new(); // it made no changes
        };
        let aborted = self.subxacts.split_off(at);
        if self.current_sub.is_some_and(|s| aborted.contains(&s)) {
            self.current_sub = None;
        }
        let mut out = Vec::new();
        for (i, n) in self.nodes.iter_mut().enumerate() {
            if let Some(k) = n.savepoints.iter().position(|s| aborted.contains(s)) {
                out.push((i, n.savepoints[k]));
                n.savepoints.truncate(k);
            }
        }
        out
    }
}

impl Push for LiveTxn {
    fn push(&mut self, node: usize, change: Change, row_bytes: usize) {
        let sub = self.current_sub;
        let Some(n) = self.nodes.get_mut(node) else {
            return;
        };
        n.touched = true;
        if let Some(s) = sub
            && !n.savepoints.contains(&s)
        {
            n.savepoints.push(s);
            n.ops.push(StreamOp::Savepoint(s));
        }
        match n.ops.last_mut() {
            Some(StreamOp::Changes(c)) => c.push(change),
            _ => n.ops.push(StreamOp::Changes(vec![change])),
        }
        n.bytes += row_bytes + CHANGE_OVERHEAD;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change() -> Change {
        Change::Truncate {
            shards: Vec::new(),
            cascade: false,
            restart_identity: false,
        }
    }

    fn shape(ops: &[(StreamOp, usize)]) -> Vec<String> {
        ops.iter()
            .map(|(o, _)| match o {
                StreamOp::Changes(c) => format!("changes {}", c.len()),
                StreamOp::Savepoint(s) => format!("savepoint {s}"),
                StreamOp::RollbackTo(s) => format!("rollback to {s}"),
                StreamOp::Commit { .. } => "commit".into(),
                StreamOp::Abort => "abort".into(),
            })
            .collect()
    }

    #[test]
    fn savepoints_precede_a_subtransactions_first_change_on_each_node() {
        let mut t = LiveTxn::new(100, Lsn(1), 2, 1 << 20);
        t.made_by(100);
        t.push(0, change(), 1);
        t.made_by(101); // a subtransaction
        t.push(0, change(), 1);
        t.push(0, change(), 1);
        t.made_by(102); // nested in 101
        t.push(1, change(), 1);
        t.made_by(101);
        t.push(1, change(), 1);
        assert_eq!(
            shape(&t.take(0)),
            ["changes 1", "savepoint 101", "changes 2"]
        );
        assert_eq!(
            shape(&t.take(1)),
            ["savepoint 102", "changes 1", "savepoint 101", "changes 1"]
        );
        assert_eq!(t.touched().collect::<Vec<_>>(), [0, 1]);
        // 102 aborts: node 1 rolls back to 102 (also undoing 101's later change there, which
        // PostgreSQL's rule assigns to 102's subtree); node 0 never saw 102 or anything after
        assert_eq!(t.abort_subxact(102), [(1, 102)]);
        // 101 aborts: node 0 to 101; node 1 lost its later savepoints with 102's
        assert_eq!(t.abort_subxact(101), [(0, 101)]);
        // a subtransaction without changes
        assert!(t.abort_subxact(999).is_empty());
    }

    #[test]
    fn a_full_share_is_reported() {
        let mut t = LiveTxn::new(1, Lsn(1), 1, 2 * (10 + CHANGE_OVERHEAD));
        t.made_by(1);
        t.push(0, change(), 10);
        assert!(!t.full(0));
        t.push(0, change(), 10);
        assert!(t.full(0));
        let ops = t.take(0);
        assert_eq!(ops[0].1, 2 * (10 + CHANGE_OVERHEAD));
        assert!(!t.full(0));
    }
}

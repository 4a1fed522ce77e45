//! The router's per-node buffers of routed changes, and when they go out.
//!
//! Changes of ordinary transactions collect per node across transactions, marked with the
//! transaction each run belongs to ([`TxnPieces`]). A node's buffer goes out
//!
//! * when it reaches `piece_bytes`: its whole transactions, or everything (ending inside the
//!   current transaction, which the node then applies in parts, idempotently) when the
//!   current transaction alone fills a piece;
//! * otherwise with its whole transactions, at most once per [`FLUSH_AFTER`]: at once when the
//!   previous hand-over is older than that (a quiet stream adds no latency), else when it
//!   becomes so; also before a watermark, and at the end.
//!
//! So a busy stream hands each node one item per [`FLUSH_AFTER`] rather than one per source
//! transaction: fewer wake-ups in pgwarp, and fewer, larger transactions on the node, whose
//! fixed cost (statements per shard touched, the progress row, the commit) is paid per batch.
//! Nothing is allocated per transaction.

use std::time::{Duration, Instant};

use pgwarp_sink::Change;

use super::items::{TxnEnd, TxnMark, TxnPieces, TxnSpan};

/// Overhead counted per change on top of its row bytes.
pub(super) const CHANGE_OVERHEAD: usize = 48;
/// Least time between two hand-overs of whole transactions: the longest a whole transaction
/// waits in a buffer for more to go with it.
pub(super) const FLUSH_AFTER: Duration = Duration::from_millis(40);

/// Where routing puts a change for a node.
pub(super) trait Push {
    /// Adds a change for `node`, `row_bytes` of row data.
    fn push(&mut self, node: usize, change: Change, row_bytes: usize);
}

/// One node's buffer.
#[derive(Debug, Default)]
struct NodeOut {
    pieces: TxnPieces,
    /// Accounted bytes in `pieces`.
    bytes: usize,
    /// The current transaction has a span (the last one) in `pieces`.
    open_span: bool,
    /// Of `bytes`, those of the current transaction's span.
    open_bytes: usize,
}

/// The transaction being routed.
#[derive(Debug)]
struct Current {
    mark: TxnMark,
    /// Per node: it already holds the transaction (nothing goes to it).
    skip: Vec<bool>,
    /// Per node: it got changes of the transaction.
    touched: Vec<bool>,
}

/// Every node's buffer.
#[derive(Debug)]
pub(super) struct Outbox {
    nodes: Vec<NodeOut>,
    current: Option<Current>,
    /// Spare per-node flags, reused by the next transaction.
    spare: Option<(Vec<bool>, Vec<bool>)>,
    piece_bytes: usize,
    /// Whether a whole transaction is buffered.
    whole: bool,
    /// When whole transactions were last handed over.
    last_sent: Option<Instant>,
}

impl Outbox {
    /// Buffers for `nodes` nodes, cut at `piece_bytes`.
    pub(super) fn new(nodes: usize, piece_bytes: usize) -> Outbox {
        Outbox {
            nodes: (0..nodes).map(|_| NodeOut::default()).collect(),
            current: None,
            spare: None,
            piece_bytes,
            whole: false,
            last_sent: None,
        }
    }

    /// The transaction being routed, if any.
    pub(super) fn current(&self) -> Option<TxnMark> {
        self.current.as_ref().map(|c| c.mark)
    }

    /// Starts routing a transaction; `skip(node)` says the node already holds it.
    pub(super) fn begin(&mut self, mark: TxnMark, skip: impl Fn(usize) -> bool) {
        let n = self.nodes.len();
        let (mut skips, mut touched) = self.spare.take().unwrap_or_default();
        skips.clear();
        skips.extend((0..n).map(skip));
        touched.clear();
        touched.resize(n, false);
        self.current = Some(Current {
            mark,
            skip: skips,
            touched,
        });
    }

    /// Ends the transaction being routed (no-op without one).
    pub(super) fn end(&mut self, end: TxnEnd) {
        let Some(cur) = self.current.take() else {
            return;
        };
        for (node, out) in self.nodes.iter_mut().enumerate() {
            if !cur.touched.get(node).copied().unwrap_or(false) {
                continue;
            }
            if !out.open_span {
                out.pieces.spans.push(TxnSpan {
                    len: 0,
                    txn: cur.mark,
                    end: None,
                });
            }
            if let Some(span) = out.pieces.spans.last_mut() {
                span.end = Some(end);
            }
            out.open_span = false;
            out.open_bytes = 0;
        }
        if cur.touched.iter().any(|t| *t) {
            self.whole = true;
        }
        self.spare = Some((cur.skip, cur.touched));
    }

    /// When buffered whole transactions are due (`None`: there are none).
    fn due(&self) -> Option<Instant> {
        if !self.whole {
            return None;
        }
        let now = Instant::now();
        Some(self.last_sent.map_or(now, |t| t + FLUSH_AFTER))
    }

    /// Whether the buffered whole transactions are due.
    pub(super) fn overdue(&self) -> bool {
        self.due().is_some_and(|d| d <= Instant::now())
    }

    /// How long until the buffered whole transactions are due (`None`: there are none).
    pub(super) fn wait_left(&self) -> Option<Duration> {
        self.due()
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// What `node` must send now that its buffer reached a piece: its whole transactions, or
    /// everything when the current transaction alone fills a piece.
    pub(super) fn take_full(&mut self, node: usize) -> Option<(TxnPieces, usize)> {
        let out = self.nodes.get(node)?;
        if out.bytes < self.piece_bytes {
            return None;
        }
        if out.open_bytes < self.piece_bytes
            && let Some(whole) = self.take_whole(node)
        {
            return Some(whole);
        }
        self.take_all(node)
    }

    /// Takes everything buffered for `node` (ending inside the current transaction if it has
    /// changes there), with its accounted bytes.
    fn take_all(&mut self, node: usize) -> Option<(TxnPieces, usize)> {
        let out = self.nodes.get_mut(node)?;
        if out.pieces.spans.is_empty() {
            return None;
        }
        let capacity = out.pieces.changes.len();
        let pieces = std::mem::replace(
            &mut out.pieces,
            TxnPieces {
                changes: Vec::with_capacity(capacity),
                spans: Vec::new(),
            },
        );
        let bytes = std::mem::take(&mut out.bytes);
        out.open_span = false;
        out.open_bytes = 0;
        Some((pieces, bytes))
    }

    /// Takes the whole transactions buffered for `node`, leaving the current one's changes.
    pub(super) fn take_whole(&mut self, node: usize) -> Option<(TxnPieces, usize)> {
        let out = self.nodes.get_mut(node)?;
        let whole = out.pieces.spans.len() - usize::from(out.open_span);
        if whole == 0 {
            return None;
        }
        if !out.open_span {
            return self.take_all(node);
        }
        let open = out.pieces.spans.pop()?;
        let tail = out
            .pieces
            .changes
            .split_off(out.pieces.changes.len().saturating_sub(open.len));
        let rest = TxnPieces {
            changes: tail,
            spans: vec![open],
        };
        let pieces = std::mem::replace(&mut out.pieces, rest);
        let bytes = out.bytes - out.open_bytes;
        out.bytes = out.open_bytes;
        Some((pieces, bytes))
    }

    /// Marks every whole transaction as sent (after `take_whole` on every node).
    pub(super) fn sent_whole(&mut self) {
        if self.whole {
            self.whole = false;
            self.last_sent = Some(Instant::now());
        }
    }
}

impl Push for Outbox {
    fn push(&mut self, node: usize, change: Change, row_bytes: usize) {
        let Some(cur) = &mut self.current else {
            return;
        };
        if cur.skip.get(node).copied().unwrap_or(true) {
            return;
        }
        let Some(out) = self.nodes.get_mut(node) else {
            return;
        };
        if !out.open_span {
            out.pieces.spans.push(TxnSpan {
                len: 0,
                txn: cur.mark,
                end: None,
            });
            out.open_span = true;
        }
        if let Some(span) = out.pieces.spans.last_mut() {
            span.len += 1;
        }
        out.pieces.changes.push(change);
        out.bytes += row_bytes + CHANGE_OVERHEAD;
        out.open_bytes += row_bytes + CHANGE_OVERHEAD;
        if let Some(t) = cur.touched.get_mut(node) {
            *t = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgwarp_decoder::{Lsn, PgTimestamp};

    fn mark(lsn: u64) -> TxnMark {
        TxnMark {
            commit_lsn: Lsn(lsn),
            idempotent: false,
        }
    }

    fn end(lsn: u64) -> TxnEnd {
        TxnEnd {
            end_lsn: Lsn(lsn),
            commit_time: PgTimestamp(0),
        }
    }

    fn truncate() -> Change {
        Change::Truncate {
            shards: Vec::new(),
            cascade: false,
            restart_identity: false,
        }
    }

    fn shape(p: &TxnPieces) -> Vec<(usize, u64, Option<u64>)> {
        p.spans
            .iter()
            .map(|s| (s.len, s.txn.commit_lsn.0, s.end.map(|e| e.end_lsn.0)))
            .collect()
    }

    #[test]
    fn whole_transactions_collect_and_the_open_one_stays() {
        let mut o = Outbox::new(2, 1 << 20);
        o.begin(mark(10), |_| false);
        o.push(0, truncate(), 5);
        o.push(0, truncate(), 5);
        o.end(end(11));
        o.begin(mark(20), |n| n == 1); // node 1 already holds it
        o.push(0, truncate(), 5);
        o.push(1, truncate(), 5);
        o.end(end(21));
        o.begin(mark(30), |_| false);
        o.push(0, truncate(), 7);
        assert!(o.take_whole(1).is_none());
        let (p, bytes) = o.take_whole(0).unwrap();
        assert_eq!(shape(&p), [(2, 10, Some(11)), (1, 20, Some(21))]);
        assert_eq!(p.changes.len(), 3);
        assert_eq!(bytes, 3 * (5 + CHANGE_OVERHEAD));
        // the open transaction goes on and ends in the next item
        o.push(0, truncate(), 7);
        o.end(end(31));
        let (p, bytes) = o.take_whole(0).unwrap();
        assert_eq!(shape(&p), [(2, 30, Some(31))]);
        assert_eq!(bytes, 2 * (7 + CHANGE_OVERHEAD));
        assert!(o.take_all(0).is_none());
    }

    #[test]
    fn a_full_buffer_sends_its_whole_transactions_unless_one_fills_a_piece() {
        let piece = 3 * (1 + CHANGE_OVERHEAD);
        let mut o = Outbox::new(1, piece);
        o.begin(mark(10), |_| false);
        o.push(0, truncate(), 1);
        o.push(0, truncate(), 1);
        o.end(end(11));
        o.begin(mark(20), |_| false);
        assert!(o.take_full(0).is_none());
        o.push(0, truncate(), 1);
        // full: only the whole transaction goes, the current one stays
        let (p, bytes) = o.take_full(0).unwrap();
        assert_eq!(shape(&p), [(2, 10, Some(11))]);
        assert_eq!(bytes, 2 * (1 + CHANGE_OVERHEAD));
        o.push(0, truncate(), 1);
        o.push(0, truncate(), 1);
        // the current transaction alone fills a piece: it is cut
        let (p, _) = o.take_full(0).unwrap();
        assert_eq!(shape(&p), [(3, 20, None)]);
        // nothing more for the node: its last piece is empty and carries the end
        o.end(end(21));
        let (p, bytes) = o.take_whole(0).unwrap();
        assert_eq!(shape(&p), [(0, 20, Some(21))]);
        assert!(p.changes.is_empty());
        assert_eq!(bytes, 0);
    }

    #[test]
    fn hand_overs_are_due_at_once_then_at_most_once_per_interval() {
        let mut o = Outbox::new(1, 1 << 20);
        assert_eq!(o.wait_left(), None);
        o.begin(mark(10), |_| false);
        o.push(0, truncate(), 1);
        o.end(end(11));
        // nothing sent before: due now
        assert!(o.overdue());
        assert!(o.take_whole(0).is_some());
        o.sent_whole();
        o.begin(mark(20), |_| false);
        o.push(0, truncate(), 1);
        o.end(end(21));
        // sent a moment ago: due when the interval has passed since
        assert!(!o.overdue());
        assert!(
            o.wait_left()
                .is_some_and(|d| d > Duration::ZERO && d <= FLUSH_AFTER)
        );
    }
}

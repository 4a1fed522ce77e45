//! The flush position reported to the source: the minimum over nodes of what each has applied.
//!
//! Each node task raises its own closing position after a batch commits (or when a watermark
//! shows it has nothing left before a position). The position sent to the source is the
//! minimum over all nodes, so the slot never lets go of WAL that some node still needs, and
//! never runs ahead of a commit (STYLE rule 8). Positions only move forward.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use pgwarp_decoder::Lsn;

use crate::source::FeedbackHandle;

use super::super::stats::Stats;

/// Per-node closing positions and the feedback they drive.
#[derive(Debug)]
pub struct FlushTracker {
    nodes: Vec<AtomicU64>,
    feedback: FeedbackHandle,
    stats: Arc<Stats>,
}

impl FlushTracker {
    /// Every node starts at `start` (the position streaming starts from: all before it is
    /// already on the target).
    pub fn new(nodes: usize, start: Lsn, feedback: FeedbackHandle, stats: Arc<Stats>) -> Self {
        for n in &stats.nodes {
            n.done_before.fetch_max(start.0, Ordering::Relaxed);
        }
        stats.durable.fetch_max(start.0, Ordering::Relaxed);
        FlushTracker {
            nodes: (0..nodes).map(|_| AtomicU64::new(start.0)).collect(),
            feedback,
            stats,
        }
    }

    /// Node `node` has applied every transaction committing before `pos`.
    pub fn advance(&self, node: usize, pos: Lsn) {
        if let Some(n) = self.nodes.get(node) {
            n.fetch_max(pos.0, Ordering::AcqRel);
        }
        if let Some(n) = self.stats.nodes.get(node) {
            n.done_before.fetch_max(pos.0, Ordering::Relaxed);
        }
        let min = self.durable();
        self.feedback.set_durable(min);
        self.feedback.set_applied(min);
        self.stats.durable.fetch_max(min.0, Ordering::Relaxed);
    }

    /// The minimum over nodes.
    pub fn durable(&self) -> Lsn {
        Lsn(self
            .nodes
            .iter()
            .map(|n| n.load(Ordering::Acquire))
            .min()
            .unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durable_is_the_minimum_over_nodes() {
        let stats = Arc::new(Stats::new(&[], &["a".into(), "b".into()]));
        let feedback = FeedbackHandle::new();
        let t = FlushTracker::new(2, Lsn(100), feedback.clone(), stats.clone());
        assert_eq!(t.durable(), Lsn(100));
        t.advance(0, Lsn(300));
        assert_eq!(t.durable(), Lsn(100));
        assert_eq!(feedback.durable(), Lsn(100));
        t.advance(1, Lsn(200));
        assert_eq!(t.durable(), Lsn(200));
        assert_eq!(feedback.durable(), Lsn(200));
        // never backwards
        t.advance(1, Lsn(150));
        assert_eq!(t.durable(), Lsn(200));
        assert_eq!(stats.durable_lsn(), Lsn(200));
    }
}

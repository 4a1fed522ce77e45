//! The positions a replication client reports to the server, shared between the task that
//! owns the stream and the tasks that make changes durable.
//!
//! The flush position is what the server treats as confirmed: it becomes the slot's
//! `confirmed_flush_lsn`, and WAL before it may be recycled. It must therefore never pass what
//! every target has durably committed (STYLE rule 8). The stream reports exactly what
//! [`FeedbackHandle::set_durable`] was given, never a position it saw in a keepalive or in
//! XLogData. Positions only move forward: a lower value than the current one is ignored.
//!
//! Until a durable position is declared, the stream reports `0/0` (invalid), which the server
//! ignores, leaving the slot where it was.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use pgwarp_decoder::Lsn;

#[derive(Debug, Default)]
struct Positions {
    written: AtomicU64,
    durable: AtomicU64,
    applied: AtomicU64,
}

/// A cloneable handle to the positions the stream reports; cheap to update from any thread.
#[derive(Debug, Clone, Default)]
pub struct FeedbackHandle {
    inner: Arc<Positions>,
}

/// The three positions of one standby status update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportedPositions {
    /// Received and written (at least the flush position).
    pub write: Lsn,
    /// Durably applied on every target: the slot's new `confirmed_flush_lsn`.
    pub flush: Lsn,
    /// Applied on the targets (at least the flush position).
    pub apply: Lsn,
}

impl FeedbackHandle {
    /// A handle with nothing declared.
    pub fn new() -> Self {
        FeedbackHandle::default()
    }

    /// Declares everything before `lsn` durable on every target. The next status update
    /// confirms it to the server.
    pub fn set_durable(&self, lsn: Lsn) {
        self.inner.durable.fetch_max(lsn.as_u64(), Ordering::AcqRel);
    }

    /// Declares everything before `lsn` received (reported as the write position).
    pub fn set_written(&self, lsn: Lsn) {
        self.inner.written.fetch_max(lsn.as_u64(), Ordering::AcqRel);
    }

    /// Declares everything before `lsn` applied (visible on the targets).
    pub fn set_applied(&self, lsn: Lsn) {
        self.inner.applied.fetch_max(lsn.as_u64(), Ordering::AcqRel);
    }

    /// The durable position declared so far.
    pub fn durable(&self) -> Lsn {
        Lsn(self.inner.durable.load(Ordering::Acquire))
    }

    /// The positions to report now: flush is exactly the durable position; write and apply
    /// are at least that.
    pub fn snapshot(&self) -> ReportedPositions {
        let flush = self.inner.durable.load(Ordering::Acquire);
        let written = self.inner.written.load(Ordering::Acquire);
        let applied = self.inner.applied.load(Ordering::Acquire);
        ReportedPositions {
            write: Lsn(written.max(flush)),
            flush: Lsn(flush),
            apply: Lsn(applied.max(flush)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_only_move_forward_and_flush_is_exactly_durable() {
        let h = FeedbackHandle::new();
        assert_eq!(
            h.snapshot(),
            ReportedPositions {
                write: Lsn(0),
                flush: Lsn(0),
                apply: Lsn(0)
            }
        );
        h.set_written(Lsn(500));
        h.set_durable(Lsn(300));
        h.set_durable(Lsn(200));
        let clone = h.clone();
        clone.set_applied(Lsn(250));
        assert_eq!(
            h.snapshot(),
            ReportedPositions {
                write: Lsn(500),
                flush: Lsn(300),
                apply: Lsn(300)
            }
        );
        clone.set_applied(Lsn(400));
        assert_eq!(h.snapshot().apply, Lsn(400));
        assert_eq!(h.durable(), Lsn(300));
    }
}

//! A node's share of the streamed transaction applied as it arrives (see `live`), on the
//! node's stream lane: a second connection holding one open transaction, beside the first
//! lane that commits the transactions ending meanwhile.
//!
//! Steps are taken in queue order with the batches (the applier cuts a batch before a step),
//! so every transaction queued before a piece is committed on the node before the piece is
//! written, as on the source. Consecutive pieces waiting in the queue are applied together, up
//! to `batch_bytes`. The commit records the transaction's commit LSN in the progress row (the
//! first lane is idle then) and moves the node's closing position past it; an abort rolls the
//! open transaction back. Any failure ends the task: the open transaction is lost with its
//! connection, and the stream restarts from the slot, which sends the transaction again.

use pgwarp_decoder::Lsn;
use pgwarp_sink::NodeBatch;

use super::super::error::PipelineError;
use super::applier::{NodeState, NodeTask, add_count};
use super::items::{NodeItem, StreamOp};
use super::queue::Queued;

impl NodeTask {
    /// Applies one step of the open streamed transaction (`first` holds a stream item).
    pub(super) async fn stream_step(
        &mut self,
        first: Queued<NodeItem>,
        st: &mut NodeState,
    ) -> Result<(), PipelineError> {
        let mut held = vec![first];
        let op = match held.last_mut().map(|q| &mut q.item) {
            Some(NodeItem::Stream(op)) => std::mem::replace(op, StreamOp::Abort),
            _ => return Err(PipelineError::Internal("not a stream step".into())),
        };
        match op {
            StreamOp::Changes(mut changes) => {
                // take the pieces waiting behind this one
                let mut bytes = held.iter().map(|q| q.bytes).sum::<usize>();
                while bytes < self.batch_bytes {
                    match self.rx.try_recv() {
                        Some(mut q) => match &mut q.item {
                            NodeItem::Stream(StreamOp::Changes(more)) => {
                                changes.append(more);
                                bytes += q.bytes;
                                held.push(q);
                            }
                            _ => {
                                st.ahead = Some(q);
                                break;
                            }
                        },
                        None => break,
                    }
                }
                let counted = self.count(&changes);
                let lane = self.writer.stream_lane().await?;
                if !lane.is_open() {
                    lane.begin_open().await?;
                }
                lane.apply_open(&NodeBatch::complete(changes, Lsn::INVALID))
                    .await?;
                for count in counted {
                    add_count(&mut st.open_counts, count);
                }
            }
            StreamOp::Savepoint(id) => {
                let lane = self.writer.stream_lane().await?;
                if !lane.is_open() {
                    lane.begin_open().await?;
                }
                lane.savepoint(id).await?;
            }
            StreamOp::RollbackTo(id) => {
                let lane = self.writer.stream_lane().await?;
                lane.rollback_to_savepoint(id).await?;
            }
            StreamOp::Commit { commit_lsn, end } => {
                let lane = self.writer.stream_lane().await?;
                if !lane.is_open() {
                    return Err(PipelineError::Internal(format!(
                        "commit of a streamed transaction at {commit_lsn} without an open \
                         transaction on the node"
                    )));
                }
                let report = lane.commit_open(commit_lsn).await?;
                if report.skipped {
                    tracing::warn!(node = self.index, lsn = %commit_lsn,
                        "the node already held a streamed transaction applied as it arrived; rolled back");
                }
                st.recorded = st.recorded.max(report.committed_lsn);
                st.last_write = std::time::Instant::now();
                let counted = std::mem::take(&mut st.open_counts);
                if !report.skipped {
                    for (table, rows, bytes) in counted {
                        self.stats.add_applied(table, self.index, rows, bytes);
                    }
                }
                self.committed(Some(end));
                if end.end_lsn > st.done_before {
                    st.done_before = end.end_lsn;
                    self.flush.advance(self.index, st.done_before);
                }
            }
            StreamOp::Abort => {
                st.open_counts.clear();
                let lane = self.writer.stream_lane().await?;
                if lane.is_open() {
                    lane.rollback_open().await?;
                }
            }
        }
        drop(held);
        Ok(())
    }
}

//! One node's task: drains its queue into batches and applies them through the sink.
//!
//! Batching adapts to load: while a batch is being applied, items pile up in the queue, and
//! the next batch takes everything waiting, up to `batch_bytes`. At low load each transaction
//! is applied as soon as it arrives; at high load batches grow and the per-transaction cost on
//! the node shrinks. A batch ends on a transaction boundary unless one transaction alone
//! exceeds `batch_bytes`; then it is applied in parts, idempotently (`NodeBatch::partial`), so
//! a crash between parts converges on replay.
//!
//! Shutdown: when the stop token fires, the batch being applied finishes (the sink's
//! transaction commits or fails as a whole), and anything not yet applied is abandoned; it is
//! streamed again on the next start.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pgwarp_decoder::Lsn;
use pgwarp_sink::{Change, NodeBatch, NodeWriter, Row};
use tokio_util::sync::CancellationToken;

use super::super::error::PipelineError;
use super::super::stats::Stats;
use super::flush::FlushTracker;
use super::items::{NodeItem, TxnEnd};
use super::queue::{QueueReceiver, Queued};

/// How often an idle node's progress row is brought up to its watermark.
const IDLE_PROGRESS_INTERVAL: Duration = Duration::from_secs(5);

/// A node's writer task.
pub struct NodeTask {
    /// Node index.
    pub index: usize,
    /// The writer (one lane).
    pub writer: NodeWriter,
    /// Its queue.
    pub rx: QueueReceiver<NodeItem>,
    /// Flush position tracking.
    pub flush: Arc<FlushTracker>,
    /// Counters.
    pub stats: Arc<Stats>,
    /// Stop signal.
    pub stop: CancellationToken,
    /// Largest batch.
    pub batch_bytes: usize,
    /// Closing position at start.
    pub start: Lsn,
}

#[derive(Default)]
struct Batch {
    held: Vec<Queued<NodeItem>>,
    changes: Vec<Change>,
    bytes: usize,
    last_end: Option<TxnEnd>,
    closing: Lsn,
    open: Option<Lsn>,
    idempotent: bool,
}

impl Batch {
    fn add(&mut self, mut q: Queued<NodeItem>) {
        self.bytes += q.bytes;
        match &mut q.item {
            NodeItem::Changes {
                changes, txn, end, ..
            } => {
                self.changes.append(changes);
                self.idempotent |= txn.idempotent;
                match end {
                    Some(e) => {
                        self.last_end = Some(*e);
                        self.closing = self.closing.max(e.end_lsn);
                        self.open = None;
                    }
                    None => self.open = Some(txn.commit_lsn),
                }
            }
            NodeItem::Watermark(w) => self.closing = self.closing.max(*w),
        }
        self.held.push(q);
    }
}

/// The progress LSN recorded for a closing position: commit LSNs are "at or before", closing
/// positions "before".
fn recorded_for(closing: Lsn) -> Lsn {
    closing.checked_sub(1).unwrap_or(Lsn::INVALID)
}

impl NodeTask {
    async fn next(&mut self) -> Option<Queued<NodeItem>> {
        tokio::select! {
            biased;
            () = self.stop.cancelled() => None,
            item = self.rx.recv() => item,
        }
    }

    /// Runs until stopped, the queue ends, or an error.
    pub async fn run(mut self) -> Result<(), PipelineError> {
        let mut done_before = self.start;
        let mut recorded = self.writer.committed_lsn();
        let mut last_write = Instant::now();
        // the previous batch ended inside a transaction: its rest is a replay over a partly
        // applied state after a crash, so it is applied idempotently too
        let mut continues_partial = false;
        loop {
            let Some(first) = self.next().await else {
                return Ok(());
            };
            let mut batch = Batch::default();
            batch.add(first);
            loop {
                while batch.bytes < self.batch_bytes {
                    match self.rx.try_recv() {
                        Some(item) => batch.add(item),
                        None => break,
                    }
                }
                if batch.open.is_none() || batch.bytes >= self.batch_bytes {
                    break;
                }
                // the trailing transaction goes on: wait for more of it
                let Some(item) = self.next().await else {
                    return Ok(());
                };
                batch.add(item);
            }
            if batch.changes.is_empty() && batch.open.is_none() {
                // only watermarks: advance in memory; now and then record it on the node
                if batch.closing > done_before {
                    done_before = batch.closing;
                    self.flush.advance(self.index, done_before);
                }
                let target = recorded_for(done_before);
                if target > recorded && last_write.elapsed() >= IDLE_PROGRESS_INTERVAL {
                    let report = self
                        .writer
                        .apply(&NodeBatch::complete(Vec::new(), target))
                        .await?;
                    recorded = report.committed_lsn;
                    last_write = Instant::now();
                }
                continue;
            }
            let node_batch = if let Some(open) = batch.open {
                let last = if batch.closing.is_valid() {
                    recorded_for(batch.closing)
                } else {
                    recorded
                };
                continues_partial = true;
                NodeBatch::partial(std::mem::take(&mut batch.changes), last, open)
            } else {
                let mut b = NodeBatch::complete(
                    std::mem::take(&mut batch.changes),
                    recorded_for(batch.closing),
                );
                b.idempotent = batch.idempotent || continues_partial;
                continues_partial = false;
                b
            };
            let counted = self.count(&node_batch.changes);
            let started = Instant::now();
            let report = self.writer.apply(&node_batch).await?;
            self.stats.batch_latency.observe(started.elapsed());
            recorded = report.committed_lsn;
            last_write = Instant::now();
            if !report.skipped {
                for (table, rows, bytes) in counted {
                    self.stats.add_applied(table, self.index, rows, bytes);
                }
            }
            if let Some(node) = self.stats.nodes.get(self.index) {
                node.batches.fetch_add(1, Ordering::Relaxed);
                if let Some(end) = batch.last_end {
                    node.last_commit_time
                        .store(end.commit_time.as_micros(), Ordering::Relaxed);
                }
            }
            if batch.closing > done_before {
                done_before = batch.closing;
                self.flush.advance(self.index, done_before);
            }
            drop(batch);
        }
    }

    /// Rows and bytes per table in a batch, for the metrics.
    fn count(&self, changes: &[Change]) -> Vec<(usize, u64, u64)> {
        let mut out: Vec<(usize, u64, u64)> = Vec::new();
        for c in changes {
            let (shard, rows, bytes) = match c {
                Change::Insert { shard, row } => (shard, 1, row_bytes(row)),
                Change::InsertRows { shard, data, rows } => (shard, *rows, data.len() as u64),
                Change::Update { shard, new, .. } => (shard, 1, row_bytes(new)),
                Change::Delete { shard, key } => (shard, 1, row_bytes(key)),
                Change::Truncate { .. } => continue,
            };
            let Some(t) = self.stats.table_index(shard.table().name()) else {
                continue;
            };
            match out.iter_mut().find(|(i, _, _)| *i == t) {
                Some(e) => {
                    e.1 += rows;
                    e.2 += bytes;
                }
                None => out.push((t, rows, bytes)),
            }
        }
        out
    }
}

/// Bytes of a row image.
pub fn row_bytes(row: &Row) -> u64 {
    match row {
        Row::Tuple(t) => t.wire_bytes().len() as u64,
        Row::Copy(c) => c.as_bytes().len() as u64,
    }
}

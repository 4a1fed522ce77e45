//! One node's task: drains its queue into batches and applies them through the sink.
//!
//! Batching adapts to load: while a batch is being applied, items pile up in the queue, and
//! the next batch takes everything waiting, up to `batch_bytes`. At low load each transaction
//! is applied as soon as it arrives; at high load batches grow and the per-transaction cost on
//! the node shrinks. A batch ends on a transaction boundary unless one transaction alone
//! exceeds `batch_bytes`; then it is applied in parts, idempotently (`NodeBatch::partial`), so
//! a crash between parts converges on replay. The part that completes such a transaction is a
//! replay over a partly applied state after a crash too, so it is applied idempotently as well.
//!
//! Steps of the streamed transaction applied as it arrives ([`NodeItem::Stream`], see `live`)
//! go to the node's stream lane, in queue order with the batches (`open_txn`): a batch in
//! progress is cut before such a step, so everything queued before it is committed first.
//!
//! Shutdown: when the stop token fires, the batch being applied finishes (the sink's
//! transaction commits or fails as a whole), and anything not yet applied is abandoned; it is
//! streamed again on the next start. An open streamed transaction is rolled back with its
//! connection.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pgwarp_decoder::Lsn;
use pgwarp_sink::{Change, NodeBatch, NodeWriter, Row, TargetTable};
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
    /// The writer (one lane, and the stream lane when needed).
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

/// What the task knows of its node's progress.
pub(super) struct NodeState {
    /// Every transaction committing before this is applied on the node.
    pub(super) done_before: Lsn,
    /// What the node's progress row holds.
    pub(super) recorded: Lsn,
    /// When the progress row was last written.
    pub(super) last_write: Instant,
    /// The previous batch ended inside a transaction.
    continues_partial: bool,
    /// An item read ahead: the first of the next step.
    pub(super) ahead: Option<Queued<NodeItem>>,
    /// Rows and bytes per table applied in the open streamed transaction, counted at commit.
    pub(super) open_counts: Vec<(usize, u64, u64)>,
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
            NodeItem::Txns(pieces) => {
                self.changes.append(&mut pieces.changes);
                for span in &pieces.spans {
                    self.idempotent |= span.txn.idempotent;
                    match span.end {
                        Some(e) => {
                            self.last_end = Some(e);
                            self.closing = self.closing.max(e.end_lsn);
                            self.open = None;
                        }
                        None => self.open = Some(span.txn.commit_lsn),
                    }
                }
            }
            NodeItem::Watermark(w) => self.closing = self.closing.max(*w),
            // never added: a batch stops before a stream step
            NodeItem::Stream(_) => {}
        }
        self.held.push(q);
    }
}

/// The progress LSN recorded for a closing position: commit LSNs are "at or before", closing
/// positions "before".
fn recorded_for(closing: Lsn) -> Lsn {
    closing.checked_sub(1).unwrap_or(Lsn::INVALID)
}

fn is_stream(q: &Queued<NodeItem>) -> bool {
    matches!(q.item, NodeItem::Stream(_))
}

impl NodeTask {
    pub(super) async fn next(&mut self) -> Option<Queued<NodeItem>> {
        tokio::select! {
            biased;
            () = self.stop.cancelled() => None,
            item = self.rx.recv() => item,
        }
    }

    /// Runs until stopped, the queue ends, or an error.
    pub async fn run(mut self) -> Result<(), PipelineError> {
        let mut st = NodeState {
            done_before: self.start,
            recorded: self.writer.committed_lsn(),
            last_write: Instant::now(),
            continues_partial: false,
            ahead: None,
            open_counts: Vec::new(),
        };
        loop {
            let first = match st.ahead.take() {
                Some(q) => q,
                None => match self.next().await {
                    Some(q) => q,
                    None => return Ok(()),
                },
            };
            if is_stream(&first) {
                self.stream_step(first, &mut st).await?;
                continue;
            }
            let Some(batch) = self.gather(first, &mut st).await else {
                return Ok(());
            };
            self.apply(batch, &mut st).await?;
        }
    }

    /// Gathers a batch starting with `first`: everything waiting up to `batch_bytes`, and more
    /// while it ends inside a transaction; stops before a stream step. `None` when stopped.
    async fn gather(&mut self, first: Queued<NodeItem>, st: &mut NodeState) -> Option<Batch> {
        let mut batch = Batch::default();
        batch.add(first);
        loop {
            while batch.bytes < self.batch_bytes {
                match self.rx.try_recv() {
                    Some(q) if is_stream(&q) => {
                        st.ahead = Some(q);
                        return Some(batch);
                    }
                    Some(q) => batch.add(q),
                    None => break,
                }
            }
            if batch.open.is_none() || batch.bytes >= self.batch_bytes {
                return Some(batch);
            }
            // the trailing transaction goes on: wait for more of it
            let q = self.next().await?;
            if is_stream(&q) {
                st.ahead = Some(q);
                return Some(batch);
            }
            batch.add(q);
        }
    }

    /// Applies a gathered batch on the first lane.
    async fn apply(&mut self, mut batch: Batch, st: &mut NodeState) -> Result<(), PipelineError> {
        if batch.changes.is_empty() && batch.open.is_none() {
            // only watermarks: advance in memory; now and then record it on the node
            if batch.closing > st.done_before {
                st.done_before = batch.closing;
                self.flush.advance(self.index, st.done_before);
            }
            let target = recorded_for(st.done_before);
            if target > st.recorded && st.last_write.elapsed() >= IDLE_PROGRESS_INTERVAL {
                let report = self
                    .writer
                    .apply(&NodeBatch::complete(Vec::new(), target))
                    .await?;
                st.recorded = st.recorded.max(report.committed_lsn);
                st.last_write = Instant::now();
            }
            return Ok(());
        }
        let node_batch = if let Some(open) = batch.open {
            let last = if batch.closing.is_valid() {
                recorded_for(batch.closing)
            } else {
                st.recorded
            };
            st.continues_partial = true;
            NodeBatch::partial(std::mem::take(&mut batch.changes), last, open)
        } else {
            let mut b = NodeBatch::complete(
                std::mem::take(&mut batch.changes),
                recorded_for(batch.closing),
            );
            // the previous batch ended inside a transaction: its rest is a replay over a
            // partly applied state after a crash, so it is applied idempotently too
            b.idempotent = batch.idempotent || st.continues_partial;
            st.continues_partial = false;
            b
        };
        let counted = self.count(&node_batch.changes);
        let started = Instant::now();
        let report = self.writer.apply(&node_batch).await?;
        self.stats.batch_latency.observe(started.elapsed());
        st.recorded = st.recorded.max(report.committed_lsn);
        st.last_write = Instant::now();
        if !report.skipped {
            for (table, rows, bytes) in counted {
                self.stats.add_applied(table, self.index, rows, bytes);
            }
        }
        self.committed(batch.last_end);
        if batch.closing > st.done_before {
            st.done_before = batch.closing;
            self.flush.advance(self.index, st.done_before);
        }
        Ok(())
    }

    /// Counts a committed node transaction.
    pub(super) fn committed(&self, end: Option<TxnEnd>) {
        if let Some(node) = self.stats.nodes.get(self.index) {
            node.batches.fetch_add(1, Ordering::Relaxed);
            if let Some(end) = end {
                node.last_commit_time
                    .store(end.commit_time.as_micros(), Ordering::Relaxed);
            }
        }
    }

    /// Rows and bytes per table in a batch, for the metrics.
    pub(super) fn count(&self, changes: &[Change]) -> Vec<(usize, u64, u64)> {
        let mut out: Vec<(usize, u64, u64)> = Vec::new();
        // consecutive changes mostly share a table: look its name up once per run
        let mut last: Option<(*const TargetTable, Option<usize>)> = None;
        for c in changes {
            let (shard, rows, bytes) = match c {
                Change::Insert { shard, row } => (shard, 1, row_bytes(row)),
                Change::InsertRows { shard, data, rows } => (shard, *rows, data.len() as u64),
                Change::Update { shard, new, .. } => (shard, 1, row_bytes(new)),
                Change::Delete { shard, key } => (shard, 1, row_bytes(key)),
                Change::Truncate { .. } => continue,
            };
            let table = Arc::as_ptr(shard.table());
            let index = match last {
                Some((t, i)) if t == table => i,
                _ => {
                    let i = self.stats.table_index(shard.table().name());
                    last = Some((table, i));
                    i
                }
            };
            let Some(t) = index else {
                continue;
            };
            add_count(&mut out, (t, rows, bytes));
        }
        out
    }
}

/// Adds one table's (index, rows, bytes) to per-table counts.
pub(super) fn add_count(
    counts: &mut Vec<(usize, u64, u64)>,
    (table, rows, bytes): (usize, u64, u64),
) {
    match counts.iter_mut().find(|(t, _, _)| *t == table) {
        Some(e) => {
            e.1 += rows;
            e.2 += bytes;
        }
        None => counts.push((table, rows, bytes)),
    }
}

/// Bytes of a row image.
pub fn row_bytes(row: &Row) -> u64 {
    match row {
        Row::Tuple(t) => t.wire_bytes().len() as u64,
        Row::Copy(c) => c.as_bytes().len() as u64,
    }
}

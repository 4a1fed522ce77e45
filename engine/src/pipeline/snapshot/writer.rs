//! A snapshot reader's writer for one node: a task that applies the reader's batches in order,
//! so reading the next rows overlaps writing the previous ones.
//!
//! The channel holds one batch: with the batch being built by the reader and the one being
//! written, memory per reader and node is about three times `snapshot_batch_bytes`. A flush
//! request is answered once every batch sent before it is committed: that is when a chunk
//! counts as done.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgwarp_sink::{Change, NodeBatch, NodeWriter, WriterConfig};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::super::error::PipelineError;
use super::super::nodes::{NodeConnector, NodeTarget};
use super::super::stats::Stats;
use super::super::stream::applier::row_bytes;

/// A message to a node writer.
pub enum WriterMsg {
    /// Apply this batch.
    Batch(NodeBatch),
    /// Answer when everything before is committed.
    Flush(oneshot::Sender<()>),
}

/// The reader's handle on one node writer.
pub struct SnapshotWriter {
    tx: mpsc::Sender<WriterMsg>,
    /// Taken by the first wait for the task's end (a `JoinHandle` may be awaited only once).
    task: Option<JoinHandle<Result<(), PipelineError>>>,
}

/// The progress-row key of snapshot writers: kept apart from the stream's own rows.
pub fn snapshot_slot_key(slot: &str) -> String {
    format!("{slot}.snapshot")
}

impl SnapshotWriter {
    /// Connects to the node and starts the task. `timeout` bounds every try on the node
    /// (see `Settings::node_timeout`).
    pub async fn start(
        slot: &str,
        reader: usize,
        node_index: usize,
        node: &NodeTarget,
        stats: Arc<Stats>,
        timeout: Duration,
    ) -> Result<SnapshotWriter, PipelineError> {
        let mut config = WriterConfig::new(
            snapshot_slot_key(slot),
            format!("{} reader {reader}", node.label),
        );
        config.io_timeout = Some(timeout);
        config.frame_bytes = 256 * 1024;
        let connector = Arc::new(NodeConnector::new(node.config.clone()));
        let mut writer = NodeWriter::connect(connector, config).await?;
        let (tx, mut rx) = mpsc::channel::<WriterMsg>(1);
        let task = tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                match msg {
                    WriterMsg::Batch(batch) => {
                        let started = Instant::now();
                        writer.apply(&batch).await?;
                        stats.batch_latency.observe(started.elapsed());
                        count(&stats, node_index, &batch);
                    }
                    WriterMsg::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
            Ok(())
        });
        Ok(SnapshotWriter {
            tx,
            task: Some(task),
        })
    }

    /// Queues a batch (waits while the previous one is still queued).
    pub async fn send(&mut self, batch: NodeBatch) -> Result<(), PipelineError> {
        if self.tx.send(WriterMsg::Batch(batch)).await.is_err() {
            return Err(self.failure().await);
        }
        Ok(())
    }

    /// Waits until every batch sent so far is committed.
    pub async fn flush(&mut self) -> Result<(), PipelineError> {
        let (done_tx, done_rx) = oneshot::channel();
        if self.tx.send(WriterMsg::Flush(done_tx)).await.is_err() || done_rx.await.is_err() {
            return Err(self.failure().await);
        }
        Ok(())
    }

    /// The writer task's error, once it has stopped (reported once; `close` then has nothing
    /// more to say).
    async fn failure(&mut self) -> PipelineError {
        match self.task.take() {
            Some(task) => match task.await {
                Ok(Err(e)) => e,
                Ok(Ok(())) => PipelineError::Internal("a snapshot writer stopped".into()),
                Err(e) => PipelineError::Internal(format!("a snapshot writer failed: {e}")),
            },
            None => PipelineError::Internal("a snapshot writer stopped".into()),
        }
    }

    /// Stops the task after what was sent.
    pub async fn close(self) -> Result<(), PipelineError> {
        drop(self.tx);
        match self.task {
            None => Ok(()),
            Some(task) => match task.await {
                Ok(r) => r,
                Err(e) => Err(PipelineError::Internal(format!(
                    "a snapshot writer failed: {e}"
                ))),
            },
        }
    }
}

fn count(stats: &Stats, node: usize, batch: &NodeBatch) {
    for change in &batch.changes {
        let (shard, rows, bytes) = match change {
            Change::InsertRows { shard, data, rows } => (shard, *rows, data.len() as u64),
            Change::Insert { shard, row } => (shard, 1, row_bytes(row)),
            _ => continue,
        };
        if let Some(t) = stats.table_index(shard.table().name()) {
            stats.add_applied(t, node, rows, bytes);
        }
    }
}

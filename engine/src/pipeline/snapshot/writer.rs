//! A snapshot reader's writer for one node: a task that applies the reader's batches in order,
//! each in its own transaction, so reading the next rows overlaps writing the previous ones.
//!
//! Batches are numbered as they are sent (1, 2, ...); the task publishes the number of the
//! last one committed, and since it applies them in order, that number says every earlier
//! batch is committed too: a chunk counts as done once each node's number reaches the batch
//! holding that chunk's last rows there. How much a reader may have queued or in flight over
//! all its writers is bounded in bytes by a [`Budget`]: a batch takes its share before it is
//! queued and gives it back once committed, so a slow node holds the reader back instead of
//! growing memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgwarp_sink::{Change, NodeBatch, NodeWriter, WriterConfig};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use super::super::error::PipelineError;
use super::super::nodes::{NodeConnector, NodeTarget};
use super::super::stats::Stats;
use super::super::stream::applier::row_bytes;

/// Batches a writer's channel holds at most (the byte budget is the real bound).
const QUEUE_BATCHES: usize = 64;

/// The bytes a reader may have queued for or being written by its node writers.
#[derive(Clone)]
pub struct Budget {
    permits: Arc<Semaphore>,
    total_kib: u32,
}

/// A share of a [`Budget`], given back when dropped.
pub struct Share {
    _permit: OwnedSemaphorePermit,
}

impl Budget {
    /// A budget of `bytes` (counted in KiB; at least 1 KiB).
    pub fn new(bytes: u64) -> Budget {
        let total_kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .max(1);
        Budget {
            permits: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
        }
    }

    /// Waits for a share of `bytes` (a batch larger than the whole budget takes all of it).
    pub async fn reserve(&self, bytes: usize) -> Result<Share, PipelineError> {
        let kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.total_kib);
        self.permits
            .clone()
            .acquire_many_owned(kib)
            .await
            .map(|permit| Share { _permit: permit })
            .map_err(|_| PipelineError::Internal("the snapshot write budget was closed".into()))
    }
}

/// A batch on its way to the node.
struct Queued {
    batch: NodeBatch,
    seq: u64,
    _share: Share,
}

/// A place in a writer's queue, reserved before the batch is cut (so a stop while waiting
/// loses nothing).
pub struct Slot(mpsc::OwnedPermit<Queued>);

/// The reader's handle on one node writer.
pub struct SnapshotWriter {
    tx: mpsc::Sender<Queued>,
    sent: u64,
    committed: watch::Receiver<u64>,
    /// Taken by the first wait for the task's end (a `JoinHandle` may be awaited only once).
    task: Option<JoinHandle<Result<(), PipelineError>>>,
}

/// The progress-row key of snapshot writers: kept apart from the stream's own rows.
pub fn snapshot_slot_key(slot: &str) -> String {
    format!("{slot}.snapshot")
}

impl SnapshotWriter {
    /// Connects to the node and starts the task, which signals `progress` after each batch
    /// and when it ends. `timeout` bounds every try on the node (see `Settings::node_timeout`).
    pub async fn start(
        slot: &str,
        reader: usize,
        node_index: usize,
        node: &NodeTarget,
        stats: Arc<Stats>,
        timeout: Duration,
        progress: Arc<Notify>,
    ) -> Result<SnapshotWriter, PipelineError> {
        let mut config = WriterConfig::new(
            snapshot_slot_key(slot),
            format!("{} reader {reader}", node.label),
        );
        config.io_timeout = Some(timeout);
        config.frame_bytes = 256 * 1024;
        let connector = Arc::new(NodeConnector::new(node.config.clone()));
        let mut writer = NodeWriter::connect(connector, config).await?;
        let (tx, mut rx) = mpsc::channel::<Queued>(QUEUE_BATCHES);
        let (done_tx, committed) = watch::channel(0u64);
        let task = tokio::spawn(async move {
            let result = async {
                while let Some(queued) = rx.recv().await {
                    let started = Instant::now();
                    writer.apply(&queued.batch).await?;
                    stats.batch_latency.observe(started.elapsed());
                    count(&stats, node_index, &queued.batch);
                    let seq = queued.seq;
                    // the batch's memory and budget share go back before it counts as committed
                    drop(queued);
                    done_tx.send_replace(seq);
                    progress.notify_one();
                }
                Ok(())
            }
            .await;
            // the commit watch closes first, so whoever wakes sees this writer has ended
            drop(done_tx);
            progress.notify_one();
            result
        });
        Ok(SnapshotWriter {
            tx,
            sent: 0,
            committed,
            task: Some(task),
        })
    }

    /// The number of the last batch sent (0 before the first).
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// The number of the last batch committed, updated as batches commit; it stops changing
    /// (the sender is gone) when the task ends, after success or failure.
    pub fn committed(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }

    /// Reserves a place in the queue (waits while it holds `QUEUE_BATCHES` batches).
    pub async fn reserve(&mut self) -> Result<Slot, PipelineError> {
        match self.tx.clone().reserve_owned().await {
            Ok(permit) => Ok(Slot(permit)),
            Err(_) => Err(self.failure().await),
        }
    }

    /// Queues `batch` in `slot`, holding `share` until it is committed; returns its number.
    pub fn send(&mut self, slot: Slot, batch: NodeBatch, share: Share) -> u64 {
        self.sent += 1;
        slot.0.send(Queued {
            batch,
            seq: self.sent,
            _share: share,
        });
        self.sent
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

/// Waits until `committed` reaches `seq`; false when the writer stopped short of it.
pub async fn committed_through(committed: &mut watch::Receiver<u64>, seq: u64) -> bool {
    committed.wait_for(|&c| c >= seq).await.is_ok() || *committed.borrow() >= seq
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn budget_bounds_what_is_outstanding() {
        let budget = Budget::new(4 * 1024);
        let a = budget.reserve(3 * 1024).await.unwrap();
        // 2 KiB more does not fit until the first share is back
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.reserve(2 * 1024).await.map(|_| ()) }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(a);
        waiting.await.unwrap().unwrap();
        // a batch larger than the budget takes all of it rather than waiting forever
        let all = budget.reserve(1 << 20).await.unwrap();
        assert_eq!(budget.permits.available_permits(), 0);
        drop(all);
        assert_eq!(budget.permits.available_permits(), 4);
    }

    #[tokio::test]
    async fn committed_through_sees_the_last_value_after_the_writer_ends() {
        let (tx, mut rx) = watch::channel(0u64);
        tx.send_replace(3);
        drop(tx);
        assert!(committed_through(&mut rx, 3).await);
        assert!(!committed_through(&mut rx, 4).await);
    }
}

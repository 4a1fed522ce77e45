//! Recording a reader's chunks as done, off the reader's path.
//!
//! When a chunk has been read to its end, the reader hands it over here with, for every
//! node, the number of the batch that holds its last rows there, and goes on with the next
//! chunk. This task waits until every node's writer has committed up to that batch, then
//! records the chunk in `pgwarp.snapshot_chunks` with the reader's snapshot xmin. Chunks come
//! in the order they were read and each node commits its batches in order, so they are
//! recorded in that order too. A chunk that was not read to its end never comes here; one
//! whose batches were not all committed (a writer failed or the reader stopped) is not
//! recorded, nor is any after it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use super::super::error::PipelineError;
use super::super::state;
use super::writer::committed_through;
use super::{ChunkJob, SnapshotContext};

/// A chunk read to its end.
pub struct Finished {
    /// The chunk.
    pub job: ChunkJob,
    /// Rows read.
    pub rows: u64,
    /// COPY bytes read.
    pub bytes: u64,
    /// By node: the batch holding the chunk's last rows there (0: none).
    pub marks: Vec<u64>,
}

/// The handle of a recorder task.
pub struct Recorder {
    /// One entry per chunk of the plan at most, so unbounded is bounded.
    tx: mpsc::UnboundedSender<Finished>,
    task: JoinHandle<Result<bool, PipelineError>>,
}

impl Recorder {
    /// Starts recording on `target` the chunks of a reader whose snapshot has `xmin`, with
    /// its writers' commit watches by node.
    pub fn start(
        cx: Arc<SnapshotContext>,
        target: Client,
        xmin: u64,
        mut committed: Vec<watch::Receiver<u64>>,
    ) -> Recorder {
        let (tx, mut rx) = mpsc::unbounded_channel::<Finished>();
        let task = tokio::spawn(async move {
            while let Some(f) = rx.recv().await {
                for (watch, &mark) in committed.iter_mut().zip(&f.marks) {
                    if !committed_through(watch, mark).await {
                        return Ok(false);
                    }
                }
                record(&cx, &target, xmin, &f).await?;
            }
            Ok(true)
        });
        Recorder { tx, task }
    }

    /// Hands over a chunk read to its end; false when the recorder has ended early (its
    /// error, or a writer's, is reported at `close`).
    pub fn finished(&self, f: Finished) -> bool {
        self.tx.send(f).is_ok()
    }

    /// Waits until every chunk handed over is recorded; false when some could not be
    /// (their batches were not all committed).
    pub async fn close(self) -> Result<bool, PipelineError> {
        drop(self.tx);
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(PipelineError::Internal(format!(
                "a snapshot chunk recorder failed: {e}"
            ))),
        }
    }
}

async fn record(
    cx: &SnapshotContext,
    target: &Client,
    xmin: u64,
    f: &Finished,
) -> Result<(), PipelineError> {
    let rt = &cx.routes.tables[f.job.table];
    let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    state::chunk_done(
        target,
        &cx.settings.slot,
        &rt.name,
        f.job.chunk,
        xmin,
        as_i64(f.rows),
        as_i64(f.bytes),
    )
    .await?;
    if let Some(t) = cx.stats.tables.get(f.job.table) {
        t.chunks_done.fetch_add(1, Ordering::Relaxed);
    }
    tracing::debug!(table = %rt.name, chunk = f.job.chunk, mode = ?f.job.mode, "chunk done");
    Ok(())
}

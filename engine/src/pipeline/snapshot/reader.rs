//! One snapshot reader: a source connection inside the shared snapshot, taking chunks from a
//! common queue, with a writer per node and a recorder of finished chunks.
//!
//! For each chunk: `COPY (SELECT cols FROM t WHERE <ctid range> [AND <newer than>]) TO STDOUT
//! (FORMAT binary)`; each tuple is routed by its distribution field (a slice of the COPY data,
//! hashed in place) and appended unchanged to its shard's rows in the node's batch; full
//! batches go to the node writers while reading goes on. At a chunk's end the reader hands the
//! chunk to the recorder, which records it once its last batch is committed on every node, and
//! starts the next chunk at once: reading, routing, writing and recording all overlap.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use futures_util::future::try_join_all;
use pgwarp_decoder::ColumnRef;
use tokio::sync::{Notify, mpsc};
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use crate::citus::names::quote_ident;
use crate::conn::connect;

use super::super::error::PipelineError;
use super::super::routes::RouteTable;
use super::batcher::{BatchKind, Batcher, ShardSlots};
use super::copy_out::CopySplitter;
use super::recorder::{Finished, Recorder};
use super::writer::{Budget, SnapshotWriter};
use super::{ChunkJob, CopyMode, SnapshotContext};

/// How a reader's loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Every job read and its rows sent.
    Done,
    /// `stop` fired.
    Stopped,
    /// The recorder ended before the reader (after a failure, reported when it is closed).
    RecorderEnded,
}

/// Rows between updates of the copy counters.
const STATS_EVERY_ROWS: u64 = 4096;

/// Runs one reader until the queue is empty or `stop` fires.
pub async fn run_reader(
    id: usize,
    cx: Arc<SnapshotContext>,
    snapshot_name: String,
    jobs: Arc<Mutex<VecDeque<ChunkJob>>>,
    imported: mpsc::Sender<()>,
    stop: CancellationToken,
) -> Result<(), PipelineError> {
    // the node and target connections open while the snapshot is imported
    let progress = Arc::new(Notify::new());
    let import = async {
        let r = import_snapshot(&cx, &snapshot_name).await;
        let _ = imported.send(()).await;
        drop(imported);
        r
    };
    let writers = try_join_all(cx.nodes.iter().enumerate().map(|(i, node)| {
        SnapshotWriter::start(
            &cx.settings.slot,
            id,
            i,
            node,
            cx.stats.clone(),
            cx.settings.node_timeout,
            progress.clone(),
        )
    }));
    let (((source, _stask), xmin), writers, (target, _ttask)) =
        tokio::try_join!(import, writers, async {
            connect(&cx.settings.target)
                .await
                .map_err(PipelineError::from)
        })?;
    // rows gathered, and as much again queued or being written: a reader's memory
    let cap = cx.settings.limits.snapshot_batch_bytes;
    let budget = Budget::new(cap);
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    let mut batcher = Batcher::new(writers, progress, cap, budget);
    let recorder = Recorder::start(cx.clone(), target, xmin, batcher.committed());
    let result = async {
        loop {
            if stop.is_cancelled() {
                return Ok(End::Stopped);
            }
            let job = jobs
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .pop_front();
            let Some(job) = job else {
                let flushed = batcher.flush(Some(&stop)).await?;
                return Ok(if flushed { End::Done } else { End::Stopped });
            };
            let Some((rows, bytes)) = copy_chunk(&cx, &source, &mut batcher, &job, &stop).await?
            else {
                // the chunk may be incomplete: it is not recorded, and resumes later
                return Ok(End::Stopped);
            };
            let marks = batcher.marks();
            let handed = recorder.finished(Finished {
                job,
                rows,
                bytes,
                marks,
            });
            if !handed {
                return Ok(End::RecorderEnded);
            }
        }
    }
    .await;
    let end = result.as_ref().ok().copied();
    if end == Some(End::Stopped) {
        batcher.flush_tails().await;
    }
    let mut first_err = result.err();
    if let Err(e) = batcher.close().await {
        first_err.get_or_insert(e);
    }
    match recorder.close().await {
        Ok(true) => {}
        Ok(false) if end == Some(End::Stopped) => {}
        Ok(false) => {
            first_err.get_or_insert(PipelineError::Internal(
                "a snapshot writer stopped before its batches were committed".into(),
            ));
        }
        Err(e) => {
            first_err.get_or_insert(e);
        }
    }
    if end == Some(End::RecorderEnded) {
        first_err.get_or_insert(PipelineError::Internal(
            "the snapshot chunk recorder ended early".into(),
        ));
    }
    let _ = source.batch_execute("COMMIT").await;
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A source connection inside the snapshot, with its connection task.
type SourceConn = (Client, tokio::task::JoinHandle<()>);

/// Connects to the source, imports the snapshot and reads its xmin.
async fn import_snapshot(
    cx: &SnapshotContext,
    snapshot_name: &str,
) -> Result<(SourceConn, u64), PipelineError> {
    let (source, task) = connect(&cx.settings.source).await?;
    source
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET TRANSACTION SNAPSHOT '{}'",
            snapshot_name.replace('\'', "''")
        ))
        .await
        .map_err(PipelineError::query(format!(
            "could not import snapshot \"{snapshot_name}\""
        )))?;
    let xmin: String = source
        .query_one(
            "SELECT pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())::text",
            &[],
        )
        .await
        .and_then(|r| r.try_get(0))
        .map_err(PipelineError::query("could not read the snapshot's xmin"))?;
    let xmin: u64 = xmin
        .parse()
        .map_err(|_| PipelineError::Internal(format!("invalid snapshot xmin \"{xmin}\"")))?;
    Ok(((source, task), xmin))
}

/// The `COPY ... TO STDOUT` statement for a chunk.
pub fn copy_statement(cx: &SnapshotContext, job: &ChunkJob) -> String {
    let rt = &cx.routes.tables[job.table];
    let cols: Vec<String> = rt.source.columns().map(|c| quote_ident(&c.name)).collect();
    let table = format!(
        "{}.{}",
        quote_ident(&rt.source.schema),
        quote_ident(&rt.source.name)
    );
    let newer = match job.mode {
        CopyMode::Refresh { done_xmin } => format!(
            " AND pg_catalog.age(xmin) <= pg_catalog.age('{}'::xid)",
            done_xmin & 0xFFFF_FFFF
        ),
        _ => String::new(),
    };
    format!(
        "COPY (SELECT {} FROM ONLY {table} WHERE {}{newer}) TO STDOUT (FORMAT binary)",
        cols.join(", "),
        job.range.predicate()
    )
}

/// The shard index of a row of `rt` whose distribution field is `value`.
#[inline]
fn shard_index(rt: &RouteTable, value: Option<ColumnRef<'_>>) -> Result<usize, PipelineError> {
    let routed = match (rt.dist_index, value) {
        (None, _) => return Ok(0),
        (Some(_), None) => {
            return Err(PipelineError::Internal(format!(
                "row of \"{}\" has no distribution column",
                rt.name
            )));
        }
        (Some(_), Some(ColumnRef::Binary(b))) => rt.citus.route_binary(Some(b)),
        (Some(_), Some(_)) => rt.citus.route_binary(None),
    };
    routed.map_err(|e| rt.citus.route_error(e).into())
}

/// Reads one chunk into the batcher; its rows and COPY bytes, or `None` when stopped first.
async fn copy_chunk(
    cx: &SnapshotContext,
    source: &Client,
    batcher: &mut Batcher,
    job: &ChunkJob,
    stop: &CancellationToken,
) -> Result<Option<(u64, u64)>, PipelineError> {
    let kind = match job.mode {
        CopyMode::Fresh => BatchKind::Fresh,
        CopyMode::Idempotent | CopyMode::Refresh { .. } => BatchKind::Idempotent,
    };
    if !batcher.set_kind(kind, stop).await? {
        return Ok(None);
    }
    let rt = &cx.routes.tables[job.table];
    let failed = || PipelineError::query(format!("could not copy table \"{}\"", rt.name));
    let sql = copy_statement(cx, job);
    let stream = source.copy_out(sql.as_str()).await.map_err(failed())?;
    futures_util::pin_mut!(stream);
    let mut splitter = CopySplitter::new();
    let mut spans = Vec::new();
    let mut slots = ShardSlots::new(rt);
    let table_stats = cx.stats.tables.get(job.table);
    let (mut rows, mut bytes) = (0u64, 0u64);
    let (mut total_rows, mut total_bytes) = (0u64, 0u64);
    while let Some(data) = stream.next().await {
        let data = data.map_err(failed())?;
        bytes += data.len() as u64;
        let buf = splitter.feed(data, rt.dist_index, &mut spans)?;
        for span in spans.drain(..) {
            rows += 1;
            let index = shard_index(rt, span.key(&buf))?;
            let tuple = &buf[span.start..span.end];
            if batcher.push(rt, &mut slots, index, tuple)? && !batcher.send_due(stop).await? {
                return Ok(None);
            }
        }
        if rows >= STATS_EVERY_ROWS {
            if let Some(t) = table_stats {
                t.rows_copied.fetch_add(rows, Ordering::Relaxed);
                t.bytes_copied.fetch_add(bytes, Ordering::Relaxed);
            }
            (total_rows, total_bytes) = (total_rows + rows, total_bytes + bytes);
            (rows, bytes) = (0, 0);
        }
    }
    splitter.finish()?;
    if let Some(t) = table_stats {
        t.rows_copied.fetch_add(rows, Ordering::Relaxed);
        t.bytes_copied.fetch_add(bytes, Ordering::Relaxed);
    }
    Ok(Some((total_rows + rows, total_bytes + bytes)))
}

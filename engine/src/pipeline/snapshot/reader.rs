//! One snapshot reader: a source connection inside the shared snapshot, taking chunks from a
//! common queue, and a writer per node.
//!
//! For each chunk: `COPY (SELECT cols FROM t WHERE <ctid range> [AND <newer than>]) TO STDOUT
//! (FORMAT binary)`; each tuple is routed by its distribution field (a slice of the COPY data,
//! hashed in place) and appended unchanged to its node's batch; full batches go to the node
//! writers while reading goes on. When the chunk's last batch is committed on every node, the
//! chunk is recorded as done.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use futures_util::StreamExt;
use pgwarp_decoder::Lsn;
use pgwarp_sink::{Change, CopyTuple, NodeBatch, Shard};
use tokio::sync::mpsc;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use crate::citus::names::quote_ident;
use crate::conn::connect;

use super::super::error::PipelineError;
use super::super::state;
use super::copy_out::CopySplitter;
use super::writer::SnapshotWriter;
use super::{ChunkJob, CopyMode, SnapshotContext};

/// Runs one reader until the queue is empty or `stop` fires.
pub async fn run_reader(
    id: usize,
    cx: Arc<SnapshotContext>,
    snapshot_name: String,
    jobs: Arc<Mutex<VecDeque<ChunkJob>>>,
    imported: mpsc::Sender<()>,
    stop: CancellationToken,
) -> Result<(), PipelineError> {
    let (source, _task) = connect(&cx.settings.source).await?;
    source
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .map_err(PipelineError::query(
            "could not begin the snapshot transaction",
        ))?;
    source
        .batch_execute(&format!(
            "SET TRANSACTION SNAPSHOT '{}'",
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
    let _ = imported.send(()).await;
    drop(imported);

    let mut writers = Vec::with_capacity(cx.nodes.len());
    for (i, node) in cx.nodes.iter().enumerate() {
        writers.push(
            SnapshotWriter::start(
                &cx.settings.slot,
                id,
                i,
                node,
                cx.stats.clone(),
                cx.settings.node_timeout,
            )
            .await?,
        );
    }
    let (target, _ttask) = connect(&cx.settings.target).await?;
    let result = async {
        loop {
            if stop.is_cancelled() {
                return Ok(());
            }
            let job = jobs
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .pop_front();
            let Some(job) = job else { return Ok(()) };
            let copied = copy_chunk(&cx, &source, &mut writers, &job, &stop).await?;
            if stop.is_cancelled() {
                // the chunk may be incomplete: it is not recorded, and resumes later
                return Ok(());
            }
            finish_chunk(&cx, &target, &mut writers, &job, xmin, copied).await?;
        }
    }
    .await;
    let mut first_err = result.err();
    for w in writers {
        if let Err(e) = w.close().await {
            first_err.get_or_insert(e);
        }
    }
    let _ = source.batch_execute("COMMIT").await;
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
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

/// Rows for one node, grouped by shard: tuples back to back, as the COPY stream had them.
#[derive(Default)]
struct NodeBuf {
    shards: Vec<(Shard, BytesMut, u64)>,
    index: HashMap<usize, usize>,
    bytes: usize,
}

impl NodeBuf {
    fn push(&mut self, shard: &Shard, tuple: &[u8]) {
        let key = Arc::as_ptr(shard) as usize;
        let i = match self.index.get(&key) {
            Some(i) => *i,
            None => {
                self.shards.push((shard.clone(), BytesMut::new(), 0));
                self.index.insert(key, self.shards.len() - 1);
                self.shards.len() - 1
            }
        };
        let (_, data, rows) = &mut self.shards[i];
        data.extend_from_slice(tuple);
        *rows += 1;
        self.bytes += tuple.len();
    }

    fn take(&mut self) -> Vec<Change> {
        self.index.clear();
        self.bytes = 0;
        self.shards
            .drain(..)
            .map(|(shard, data, rows)| Change::InsertRows {
                shard,
                data: data.freeze(),
                rows,
            })
            .collect()
    }
}

async fn copy_chunk(
    cx: &SnapshotContext,
    source: &Client,
    writers: &mut [SnapshotWriter],
    job: &ChunkJob,
    stop: &CancellationToken,
) -> Result<(u64, u64), PipelineError> {
    let rt = &cx.routes.tables[job.table];
    let sql = copy_statement(cx, job);
    let stream = source
        .copy_out(sql.as_str())
        .await
        .map_err(PipelineError::query(format!(
            "could not copy table \"{}\"",
            rt.name
        )))?;
    futures_util::pin_mut!(stream);
    let mut splitter = CopySplitter::new();
    let mut tuples: Vec<CopyTuple> = Vec::new();
    let mut bufs: Vec<NodeBuf> = (0..writers.len()).map(|_| NodeBuf::default()).collect();
    let limit = cx.settings.limits.snapshot_batch_bytes as usize;
    let table_stats = cx.stats.tables.get(job.table);
    let (mut rows, mut bytes) = (0u64, 0u64);
    let (mut total_rows, mut total_bytes) = (0u64, 0u64);
    while let Some(data) = stream.next().await {
        let data = data.map_err(PipelineError::query(format!(
            "could not copy table \"{}\"",
            rt.name
        )))?;
        bytes += data.len() as u64;
        total_bytes += data.len() as u64;
        splitter.feed(data, &mut tuples)?;
        for tuple in tuples.drain(..) {
            rows += 1;
            total_rows += 1;
            let value = rt.dist_index.and_then(|i| tuple.fields().nth(i));
            for (node, shard) in rt.route(value)? {
                let buf = &mut bufs[*node];
                buf.push(shard, tuple.as_bytes());
                if buf.bytes >= limit {
                    if stop.is_cancelled() {
                        // stop between batches; the chunk stays unfinished
                        return Ok((total_rows, total_bytes));
                    }
                    let changes = buf.take();
                    writers[*node].send(batch(job, changes)).await?;
                }
            }
        }
        if rows % 4096 == 0 {
            if let Some(t) = table_stats {
                t.rows_copied.fetch_add(rows, Ordering::Relaxed);
                t.bytes_copied.fetch_add(bytes, Ordering::Relaxed);
            }
            (rows, bytes) = (0, 0);
        }
    }
    splitter.finish()?;
    if let Some(t) = table_stats {
        t.rows_copied.fetch_add(rows, Ordering::Relaxed);
        t.bytes_copied.fetch_add(bytes, Ordering::Relaxed);
    }
    for (node, mut buf) in bufs.into_iter().enumerate() {
        if !buf.shards.is_empty() {
            writers[node].send(batch(job, buf.take())).await?;
        }
    }
    Ok((total_rows, total_bytes))
}

fn batch(job: &ChunkJob, changes: Vec<Change>) -> NodeBatch {
    match job.mode {
        CopyMode::Fresh => NodeBatch::complete(changes, Lsn::INVALID),
        CopyMode::Idempotent | CopyMode::Refresh { .. } => NodeBatch::snapshot_chunk(changes),
    }
}

async fn finish_chunk(
    cx: &SnapshotContext,
    target: &Client,
    writers: &mut [SnapshotWriter],
    job: &ChunkJob,
    xmin: u64,
    (rows, bytes): (u64, u64),
) -> Result<(), PipelineError> {
    for w in writers.iter_mut() {
        w.flush().await?;
    }
    let rt = &cx.routes.tables[job.table];
    let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    state::chunk_done(
        target,
        &cx.settings.slot,
        &rt.name,
        job.chunk,
        xmin,
        as_i64(rows),
        as_i64(bytes),
    )
    .await?;
    if let Some(t) = cx.stats.tables.get(job.table) {
        t.chunks_done.fetch_add(1, Ordering::Relaxed);
    }
    tracing::debug!(table = %rt.name, chunk = job.chunk, mode = ?job.mode, "chunk done");
    Ok(())
}

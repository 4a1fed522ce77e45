//! The snapshot: copying every table as of one consistent snapshot, in parallel chunks.
//!
//! ```text
//!  exporter (slot creation, or a fresh pg_export_snapshot on resume)
//!     │ snapshot name                          held idle until every reader has imported it
//!     ▼
//!  reader 1..N ── COPY chunk TO STDOUT (binary) ── route each tuple ──► per-node batches
//!     │                                                                  │ (byte-bounded)
//!     │ chunk read to its end: hand it over, read the next one           ▼
//!     └──► recorder ◄── batch numbers committed ──── writer per node: COPY into shards,
//!            │                                       one transaction per batch, in order
//!            ▼
//!          pgwarp.snapshot_chunks: chunk done (with the snapshot's xmin) once its last
//!          batch is committed on every node
//! ```
//!
//! Each reader keeps its source, its writers and its recorder busy at once: batches are cut
//! by size, not at chunk ends (a chunk's tail rides with the next chunk's head), and a chunk
//! is recorded by the recorder once the batches holding its last rows are committed on every
//! node, while the reader already reads the next chunk. A reader's memory is bounded by
//! `snapshot_batch_bytes` of rows being gathered plus as much queued or being written, however
//! large the table or the cluster (see `batcher`).
//!
//! # First run
//!
//! Readers import the slot's exported snapshot S1, taken exactly at the slot's consistent point
//! C: the snapshot holds every transaction committed before C, the slot streams every one after.
//! Chunks are written with plain COPY (the target tables are empty and chunks are disjoint), and
//! streaming starts at C in strict (non-idempotent) mode.
//!
//! # Resuming an interrupted snapshot
//!
//! S1 cannot be imported again once its exporting connection is gone, so the remaining work is
//! done from a fresh snapshot S2 (`pg_export_snapshot()` on an ordinary connection), and the
//! stream, which still starts at C because nothing was confirmed during the snapshot, replays
//! every change since C *idempotently* until it passes E2 = the WAL insert position read right
//! after S2 was taken (every transaction visible in S2 committed before E2). The argument:
//!
//! 1. **Invariant after the copy**: for every row key k, each shard of the target holds the
//!    state of k as of *some* point in the history of k at or after C (not necessarily the same
//!    point for every key).
//! 2. **Replay converges**: applying every change since C in order, idempotently (insert =
//!    upsert, delete = delete-if-present, update = update-by-key, a no-op when absent), to any
//!    state satisfying (1) yields the state at the end of the replay. Per key: an insert or a
//!    delete sets the key's state outright; an update applies to a present row, and a row is
//!    present before the update in the replay exactly when it is in the source's history (the
//!    last insert or delete before it was replayed, or there was none since C and the key has
//!    been present throughout, so also in whatever state (1) left). Unchanged TOAST values are
//!    kept from the target, which holds the value last set before or during the replay.
//!    The node batches net each row's changes into one operation; in idempotent mode that net
//!    effect deletes every key the row *left* during the batch too (a key it moved away from,
//!    or died at), since (1) lets the target hold the row at any point of its history, also
//!    at an intermediate key (`pgwarp_sink`'s compactor; `sink_apply` tests it).
//! 3. **Why the copy establishes (1)**: the chunk plan is stored, so page ranges mean the same
//!    thing in S2. A chunk not yet done is copied whole from S2 (upserted over whatever part of
//!    it reached the target). A chunk done at a snapshot Sd (its `done_xmin` is Sd's xmin) holds
//!    every row version visible in Sd in its pages; a version visible in S2 in those pages is
//!    either the same physical tuple (created by a transaction older than Sd's xmin, hence
//!    visible in Sd, hence copied) or was created later; those newer versions, `age(xmin) <=
//!    age(done_xmin)`, are copied from S2 too. A row that *left* an unfinished chunk for a done
//!    one (an update writes the new version elsewhere) is therefore always found. Keys whose
//!    old versions the target still holds are at an earlier point of their history, which (1)
//!    allows. Subtransactions are covered because a subtransaction's xid is newer than its
//!    parent's, which was running at Sd and so is not older than Sd's xmin.
//! 4. **Strict mode after E**: once every transaction before `idempotent_until` = max E over all
//!    resumes is applied, the target equals the source at that point and strict mode is exact.
//!    `idempotent_until` is stored before the first resumed write, so a crash while streaming
//!    keeps the guarantee.
//!
//! A table whose file was rewritten since the plan (`TRUNCATE`, `VACUUM FULL`, `CLUSTER`: new
//! `relfilenode`) gets a new plan and is copied whole, idempotently. Tables without a unique key
//! on the target cannot be upserted; `check` refuses them (no primary key or replica identity
//! index). Limit: `age()` compares 32-bit xids, so a resume must happen within two billion
//! transactions of the interrupted run.

mod batcher;
mod copy_out;
mod reader;
mod recorder;
mod writer;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;

use super::chunks::{PageRange, plan_chunks};
use super::error::PipelineError;
use super::nodes::NodeTarget;
use super::routes::{RouteMap, RouteTable};
use super::state::{ChunkRow, PlannedChunk};
use super::stats::Stats;

pub use copy_out::CopySplitter;
pub use reader::copy_statement;
pub use writer::snapshot_slot_key;

/// Page size assumed when turning `chunk_bytes` into pages.
const BLOCK_SIZE: u64 = 8192;

/// What a snapshot run needs.
pub struct SnapshotContext {
    /// Settings.
    pub settings: Settings,
    /// The tables.
    pub routes: Arc<RouteMap>,
    /// The nodes.
    pub nodes: Vec<NodeTarget>,
    /// Counters.
    pub stats: Arc<Stats>,
}

/// How a chunk is copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyMode {
    /// First run: plain COPY into empty tables.
    Fresh,
    /// Not done yet, resumed from a new snapshot: upsert everything.
    Idempotent,
    /// Done at the snapshot with this (64-bit) xmin: upsert rows created since.
    Refresh {
        /// xmin of the snapshot the chunk was complete at.
        done_xmin: u64,
    },
}

/// One chunk to copy.
#[derive(Debug, Clone)]
pub struct ChunkJob {
    /// Index into the route map.
    pub table: usize,
    /// Chunk number.
    pub chunk: i32,
    /// Pages.
    pub range: PageRange,
    /// How.
    pub mode: CopyMode,
}

/// The chunk plan of a first run.
pub fn plan(routes: &RouteMap, parallel: usize, chunk_bytes: u64) -> Vec<PlannedChunk> {
    routes
        .tables
        .iter()
        .flat_map(|rt| plan_table(rt, parallel, chunk_bytes))
        .collect()
}

/// The chunk plan of one table.
pub fn plan_table(rt: &RouteTable, parallel: usize, chunk_bytes: u64) -> Vec<PlannedChunk> {
    let chunk_pages = (chunk_bytes / BLOCK_SIZE).max(1);
    plan_chunks(rt.source.pages, parallel, chunk_pages)
        .into_iter()
        .enumerate()
        .map(|(i, range)| PlannedChunk {
            table: rt.name.clone(),
            chunk: i32::try_from(i).unwrap_or(i32::MAX),
            range,
            filenode: rt.source.filenode,
            pages: rt.source.pages,
        })
        .collect()
}

/// Jobs for a stored plan: `Fresh` for a first run, else by each chunk's completion; in
/// [`biggest_first`] order.
pub fn jobs(
    routes: &RouteMap,
    rows: &[ChunkRow],
    first_run: bool,
) -> Result<Vec<ChunkJob>, PipelineError> {
    let mut out = Vec::with_capacity(rows.len());
    for row in biggest_first(rows).into_iter().filter_map(|i| rows.get(i)) {
        let table = routes.find_stored(&row.table).ok_or_else(|| {
            PipelineError::State(format!(
                "pgwarp.snapshot_chunks names table \"{}\", which is not part of this sync",
                row.table
            ))
        })?;
        let mode = match (first_run, row.done_xmin) {
            (true, _) => CopyMode::Fresh,
            (false, None) => CopyMode::Idempotent,
            (false, Some(done_xmin)) => CopyMode::Refresh { done_xmin },
        };
        out.push(ChunkJob {
            table,
            chunk: row.chunk,
            range: row.range,
            mode,
        });
    }
    Ok(out)
}

/// The order chunks are copied in, as indices of `rows`: the biggest tables' chunks first,
/// each table's in plan order. A table's chunks are of even size and large tables have at
/// least `CHUNKS_PER_READER` per reader, so this is, but for rounding, biggest chunk first:
/// readers take the next chunk when they finish one and end within a small chunk of each
/// other. (Plan order within a table also keeps the order of the ctid ranges, which a
/// reader's batches, running across chunk boundaries, then follow.)
fn biggest_first(rows: &[ChunkRow]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| {
        rows.get(i)
            .map(|r| (std::cmp::Reverse(r.pages), r.table.as_str(), r.chunk))
    });
    order
}

/// Copies `jobs` inside the snapshot `snapshot_name`. `release` runs once every reader has
/// imported the snapshot (or failed trying), so the exporter can let it go. Returns whether
/// every job completed (false when stopped).
pub async fn copy(
    cx: Arc<SnapshotContext>,
    snapshot_name: &str,
    jobs: Vec<ChunkJob>,
    release: impl FnOnce(),
    stop: &CancellationToken,
) -> Result<bool, PipelineError> {
    let readers = cx.settings.parallel.min(jobs.len()).max(1);
    let queue = Arc::new(Mutex::new(VecDeque::from(jobs)));
    let inner = stop.child_token();
    let (imported_tx, mut imported_rx) = mpsc::channel::<()>(readers);
    let mut handles = Vec::with_capacity(readers);
    for id in 0..readers {
        let fut = reader::run_reader(
            id,
            cx.clone(),
            snapshot_name.to_owned(),
            queue.clone(),
            imported_tx.clone(),
            inner.clone(),
        );
        let token = inner.clone();
        handles.push(tokio::spawn(async move {
            let r = fut.await;
            if r.is_err() {
                token.cancel();
            }
            r
        }));
    }
    drop(imported_tx);
    let mut count = 0;
    while count < readers && imported_rx.recv().await.is_some() {
        count += 1;
    }
    release();
    tracing::info!(
        readers,
        imported = count,
        "snapshot imported by the readers"
    );
    let mut first_err = None;
    for h in handles {
        match h.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(PipelineError::Internal(format!(
                    "a snapshot reader failed: {e}"
                )));
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let left = queue
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .len();
    Ok(left == 0 && !stop.is_cancelled())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(table: &str, chunk: i32, start: u64, end: Option<u64>, pages: u64) -> ChunkRow {
        ChunkRow {
            table: table.into(),
            chunk,
            range: PageRange { start, end },
            filenode: 1,
            pages,
            done_xmin: None,
            rows: 0,
            bytes: 0,
        }
    }

    #[test]
    fn biggest_tables_go_first_with_their_chunks_in_plan_order() {
        let rows = [
            row("public.small", 0, 0, None, 10),
            row("public.big", 2, 800, None, 1000),
            row("public.big", 0, 0, Some(400), 1000),
            row("public.mid", 0, 0, None, 500),
            row("public.big", 1, 400, Some(800), 1000),
            row("public.empty", 0, 0, None, 0),
        ];
        assert_eq!(biggest_first(&rows), vec![2, 4, 1, 3, 0, 5]);
    }
}

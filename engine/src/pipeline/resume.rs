//! Resuming an interrupted snapshot (the argument is in [`super::snapshot`]), and small
//! bookkeeping around the snapshot's end.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::future::join_all;
use pgwarp_decoder::Lsn;
use tokio_postgres::Client;

use crate::conn::connect;

use super::state;
use super::{CancellationToken, PipelineError, Prepared, snapshot};

/// Removes the snapshot writers' progress rows (they record nothing, but are created with
/// every writer); best effort, on every node at once.
pub(super) async fn forget_snapshot_writers(prepared: &Prepared) {
    let key = snapshot::snapshot_slot_key(&prepared.settings.slot);
    let key = key.as_str();
    join_all(prepared.nodes.iter().map(|node| async move {
        let result = async {
            let (c, _t) = connect(&node.config).await?;
            c.execute("DELETE FROM pgwarp.progress WHERE slot = $1", &[&key])
                .await
                .map_err(PipelineError::query(
                    "could not remove snapshot progress rows",
                ))?;
            Ok::<(), PipelineError>(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(node = %node.label, error = %e, "could not remove the snapshot writers' progress rows");
        }
    }))
    .await;
}

pub(super) fn count_chunks(prepared: &Prepared, rows: &[state::ChunkRow]) {
    for t in &prepared.stats.tables {
        t.chunks_total.store(0, Ordering::Relaxed);
        t.chunks_done.store(0, Ordering::Relaxed);
    }
    for r in rows {
        if let Some(t) = prepared
            .stats
            .table_index(&r.table)
            .and_then(|i| prepared.stats.tables.get(i))
        {
            t.chunks_total.fetch_add(1, Ordering::Relaxed);
        }
    }
}
/// Resumes an interrupted snapshot from a fresh snapshot; returns the position before which
/// the stream must replay idempotently, or `None` when stopped.
pub(super) async fn resume_snapshot(
    prepared: &Prepared,
    source: &Client,
    target: &mut Client,
    cancel: &CancellationToken,
    cx: Arc<snapshot::SnapshotContext>,
) -> Result<Option<Lsn>, PipelineError> {
    let settings = &prepared.settings;
    let slot = settings.slot.as_str();
    let rows = state::chunks(target, slot).await?;
    for rt in &prepared.routes.tables {
        let mine: Vec<&state::ChunkRow> = rows.iter().filter(|r| r.table == rt.name).collect();
        if mine.is_empty() || mine.iter().any(|r| r.filenode != rt.source.filenode) {
            tracing::warn!(table = %rt.name, "table was rewritten (or never planned) since the snapshot started: copying it again");
            let plan = snapshot::plan_table(rt, settings.parallel, settings.limits.chunk_bytes);
            state::replan_table(target, slot, &rt.name, &plan).await?;
        }
    }
    let rows = state::chunks(target, slot).await?;
    count_chunks(prepared, &rows);
    for r in &rows {
        if r.done_xmin.is_some()
            && let Some(t) = prepared
                .stats
                .table_index(&r.table)
                .and_then(|i| prepared.stats.tables.get(i))
        {
            t.chunks_done.fetch_add(1, Ordering::Relaxed);
        }
    }
    let jobs = snapshot::jobs(&prepared.routes, &rows, false)?;
    let _ = source;
    let (exporter, _e) = connect(&settings.source).await?;
    exporter
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .map_err(PipelineError::query(
            "could not begin the exporting transaction",
        ))?;
    let row = exporter
        .query_one(
            "SELECT pg_catalog.pg_export_snapshot(), pg_catalog.pg_current_wal_insert_lsn()::text",
            &[],
        )
        .await
        .map_err(PipelineError::query("could not export a snapshot"))?;
    let name: String = row
        .try_get(0)
        .map_err(PipelineError::query("could not read the snapshot name"))?;
    let at: String = row
        .try_get(1)
        .map_err(PipelineError::query("could not read the WAL position"))?;
    let until: Lsn = at
        .parse()
        .map_err(|_| PipelineError::Internal(format!("invalid WAL position \"{at}\"")))?;
    // before any resumed write: a crash from here on still replays idempotently
    state::raise_idempotent_until(target, slot, until).await?;
    tracing::info!(chunks = jobs.len(), idempotent_until = %until, "resuming the snapshot from a new snapshot");
    let done = snapshot::copy(cx, &name, jobs, || {}, cancel).await?;
    let _ = exporter.batch_execute("COMMIT").await;
    Ok(done.then_some(until))
}

//! The phases of one run: setup or resume, the snapshot, then the stream with its retry loop.

use std::sync::Arc;
use std::time::Duration;

use pgwarp_decoder::Lsn;
use tokio_postgres::Client;

use crate::conn::connect;
use crate::error::Classify;
use crate::source::admin::{self, PublicationScope, QualifiedName};
use crate::source::{ReplicationClient, SourceError};

use super::placement::{self, Placements};
use super::resume::{count_chunks, forget_snapshot_writers, resume_snapshot};
use super::state::{self, Phase};
use super::stats::LivePhase;
use super::stream::{self, StreamContext, StreamEnd, StreamParams};
use super::{CancellationToken, PipelineError, Prepared, SyncOptions, SyncOutcome, snapshot};

/// Transient failures in a row (without the flush position moving) before the sync gives up.
const MAX_CONSECUTIVE_FAILURES: u32 = 20;

pub(super) async fn run_phases(
    prepared: &Prepared,
    options: SyncOptions,
    cancel: &CancellationToken,
) -> Result<SyncOutcome, PipelineError> {
    let settings = &prepared.settings;
    let slot = settings.slot.as_str();
    let (source, mut target) = match prepared.take_connections() {
        Some(open) => open,
        None => {
            let (source, target) =
                tokio::join!(connect(&settings.source), connect(&settings.target));
            (source?.0, target?.0)
        }
    };
    tracing::debug!("run: connected");
    state::ensure(&target).await?;
    tracing::debug!("run: state tables ensured");
    let table_list: Vec<String> = prepared
        .routes
        .tables
        .iter()
        .map(|t| t.name.clone())
        .collect();
    let existing = state::load(&target, slot).await?;
    if let Some(st) = &existing
        && st.phase != Phase::Setup
    {
        let mut stored = st.tables.clone();
        stored.sort();
        let mut now = table_list.clone();
        now.sort();
        if stored != now {
            return Err(PipelineError::State(format!(
                "the sync of slot \"{slot}\" was started for tables ({}), not ({}): use the same \
                 table list to resume, or another --slot for a new sync",
                st.tables.join(", "),
                table_list.join(", ")
            )));
        }
    }
    tracing::debug!("run: state loaded");
    let phase = existing.as_ref().map(|s| s.phase);
    if matches!(phase, Some(Phase::Snapshot | Phase::Streaming)) {
        placement::verify_on_resume(&mut target, slot, &Placements::of_prepared(prepared)).await?;
    }
    tracing::debug!("run: placements verified");
    let snapshot_cx = || {
        Arc::new(snapshot::SnapshotContext {
            settings: settings.clone(),
            routes: prepared.routes.clone(),
            nodes: prepared.nodes.clone(),
            stats: prepared.stats.clone(),
        })
    };
    let mut idempotent_until = existing
        .as_ref()
        .map_or(Lsn::INVALID, |s| s.idempotent_until);
    let mut start = existing
        .as_ref()
        .and_then(|s| s.consistent_point)
        .unwrap_or(Lsn::INVALID);

    match phase {
        None | Some(Phase::Setup) => {
            prepared.stats.set_phase(LivePhase::Setup);
            state::begin_setup(&mut target, slot, &settings.publication, &table_list).await?;
            placement::record(&mut target, slot, &Placements::of_prepared(prepared)).await?;
            let scope = PublicationScope::Tables(
                prepared
                    .routes
                    .tables
                    .iter()
                    .map(|t| QualifiedName::new(&t.source.schema, &t.source.name))
                    .collect(),
            );
            admin::ensure_publication(&source, &settings.publication, &scope).await?;
            if phase == Some(Phase::Setup) && admin::drop_slot_if_exists(&source, slot).await? {
                tracing::info!(%slot, "dropped the slot left by an interrupted setup");
            }
            let replication = ReplicationClient::connect(&settings.source).await?;
            let exported = replication.create_slot_exporting(slot, false).await?;
            start = exported.consistent_point();
            tracing::info!(%slot, consistent_point = %start, "replication slot created");
            let plan = snapshot::plan(
                &prepared.routes,
                settings.parallel,
                settings.limits.chunk_bytes,
            );
            state::begin_snapshot(&mut target, slot, start, &plan).await?;
            prepared.stats.set_phase(LivePhase::Snapshot);
            let rows = state::chunks(&target, slot).await?;
            count_chunks(prepared, &rows);
            let jobs = snapshot::jobs(&prepared.routes, &rows, true)?;
            let name = exported.snapshot_name().to_owned();
            let mut holder = Some(exported);
            let done =
                snapshot::copy(snapshot_cx(), &name, jobs, || drop(holder.take()), cancel).await?;
            drop(holder);
            if !done {
                return Ok(SyncOutcome::Stopped);
            }
            state::snapshot_done(&target, slot).await?;
            forget_snapshot_writers(prepared).await;
            tracing::info!(
                elapsed_ms = prepared.stats.started.elapsed().as_millis() as u64,
                "snapshot done"
            );
        }
        Some(Phase::Snapshot) => {
            prepared.stats.set_phase(LivePhase::Snapshot);
            let info = wait_for_slot(&source, slot, cancel).await?;
            start = info.confirmed_flush_lsn.unwrap_or(start);
            let until =
                resume_snapshot(prepared, &source, &mut target, cancel, snapshot_cx()).await?;
            let Some(until) = until else {
                return Ok(SyncOutcome::Stopped);
            };
            idempotent_until = idempotent_until.max(until);
            state::snapshot_done(&target, slot).await?;
            forget_snapshot_writers(prepared).await;
            tracing::info!(idempotent_until = %idempotent_until, "resumed snapshot done");
        }
        Some(Phase::Streaming) => {}
    }

    prepared.stats.set_phase(LivePhase::Streaming);
    let until = if options.until_caught_up {
        let at = wal_insert_lsn(&source).await?;
        tracing::info!(target_lsn = %at, "following the slot until every node has applied this position");
        Some(at)
    } else {
        None
    };
    let scx = StreamContext {
        settings: settings.clone(),
        routes: prepared.routes.clone(),
        nodes: prepared.nodes.clone(),
        stats: prepared.stats.clone(),
    };
    // a resumed stream checks the slot on the connection opened just now; after a snapshot
    // (which may have taken hours) and on every retry, on a new one
    let mut fresh_source = (phase == Some(Phase::Streaming)).then_some(source);
    let mut failures = 0u32;
    let outcome = loop {
        let durable_before = prepared.stats.durable_lsn();
        let reused = fresh_source.take();
        let attempt = async {
            let (admin_client, _a) = match reused {
                Some(client) => (client, None),
                None => {
                    let (client, task) = connect(&settings.source).await?;
                    (client, Some(task))
                }
            };
            tracing::debug!("stream: connected");
            let info = wait_for_slot(&admin_client, slot, cancel).await?;
            tracing::debug!("stream: slot checked");
            let params = StreamParams {
                start: info.confirmed_flush_lsn.unwrap_or(start).max(start),
                idempotent_until,
                until,
            };
            let end = stream::run(&scx, params, cancel).await?;
            if let StreamEnd::CaughtUp(at) = end {
                let (t, _c) = connect(&settings.target).await?;
                state::caught_up(&t, slot, at).await?;
            }
            Ok::<StreamEnd, PipelineError>(end)
        };
        match attempt.await {
            Ok(StreamEnd::Stopped) => break SyncOutcome::Stopped,
            Ok(StreamEnd::CaughtUp(at)) => {
                tracing::info!(lsn = %at, "caught up: every node has applied the source up to this position");
                break SyncOutcome::CaughtUp(at);
            }
            Err(PipelineError::Stopped) => break SyncOutcome::Stopped,
            Err(e) if e.is_transient() && !cancel.is_cancelled() => {
                // a run that moved the flush position forward starts the count again
                if prepared.stats.durable_lsn() > durable_before {
                    failures = 0;
                }
                failures += 1;
                prepared.stats.count_error(e.kind());
                if failures > MAX_CONSECUTIVE_FAILURES {
                    tracing::error!(error = %e, "giving up after repeated failures");
                    return Err(e);
                }
                let pause = Duration::from_millis(250 * u64::from(failures.min(40)));
                tracing::warn!(error = %e, attempt = failures, pause_ms = pause.as_millis() as u64, "stream interrupted; restarting from the slot");
                tokio::select! {
                    () = cancel.cancelled() => break SyncOutcome::Stopped,
                    () = tokio::time::sleep(pause) => {}
                }
            }
            Err(e) => {
                prepared.stats.count_error(e.kind());
                return Err(e);
            }
        }
    };
    Ok(outcome)
}
/// The source's WAL insert position: past every commit record written so far, even one not
/// yet written out (`pg_current_wal_lsn()` is the *write* position, which lags behind commits
/// made with `synchronous_commit = off`).
pub(super) async fn wal_insert_lsn(source: &Client) -> Result<Lsn, PipelineError> {
    let text: String = source
        .query_one("SELECT pg_catalog.pg_current_wal_insert_lsn()::text", &[])
        .await
        .and_then(|r| r.try_get(0))
        .map_err(PipelineError::query(
            "could not read the source's WAL position",
        ))?;
    text.parse()
        .map_err(|_| PipelineError::Internal(format!("invalid WAL position \"{text}\"")))
}
/// Waits (up to a minute) for an earlier consumer of the slot to go away: after a crash the
/// server may take a moment to notice the old connection is gone.
pub(super) async fn wait_for_slot(
    source: &Client,
    slot: &str,
    cancel: &CancellationToken,
) -> Result<admin::SlotInfo, PipelineError> {
    let mut waited = Duration::ZERO;
    loop {
        match admin::check_slot(source, slot).await {
            Ok(info) => return Ok(info),
            Err(SourceError::SlotActive { .. }) if waited < Duration::from_secs(60) => {
                let step = Duration::from_millis(200);
                tokio::select! {
                    () = cancel.cancelled() => return Err(PipelineError::Stopped),
                    () = tokio::time::sleep(step) => {}
                }
                waited += step;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

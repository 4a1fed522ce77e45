//! The running engine: `pgwarp sync` from setup to streaming, resumable at every step.
//!
//! ```text
//!  source PG                                pgwarp                                    target
//!  ─────────                                ──────                                    ──────
//!  publication + slot ◄── setup ───────────────────────────────────────► pgwarp.sync_state
//!        │ exported snapshot (held until imported)                        pgwarp.snapshot_chunks
//!        ▼                                                                      ▲ chunk done
//!  COPY chunk TO STDOUT ──► reader ×parallel ── route tuple ──► writer per node ┴─► shards (COPY)
//!        │
//!  slot (pgoutput, binary, streaming)
//!        │
//!        ▼                   bytes-bounded          bytes-bounded
//!  replication task ──Input──► router thread ──NodeItem──► node task ×nodes ──► shards
//!        ▲                   (decode, spill,       (per node)  (batch, apply,   + pgwarp.progress
//!        │                    route)                            progress row)    in the same txn
//!        └──── flush LSN = min over nodes of what each committed (never more) ◄──┘
//! ```
//!
//! Phases, recorded in `pgwarp.sync_state` on the target ([`state`]):
//!
//! * **setup**: the check passed; publication and slot are created. A slot found in this phase
//!   was left by a crash right after its creation and is replaced.
//! * **snapshot**: the chunk plan is stored with the slot's consistent point; readers copy the
//!   chunks. After an interruption the remaining work resumes from a fresh snapshot, with the
//!   stream replaying idempotently for a while: the argument is in [`snapshot`].
//! * **streaming**: from the slot's confirmed position; every node skips what its
//!   `pgwarp.progress` row already holds ([`stream`]).
//!
//! Errors classed transient (a lost connection, a restarting server) restart the stream from
//! the slot after a pause; definite ones stop the sync with a message saying what to fix.
//! Cancellation (Ctrl-C, SIGTERM) is one token: readers stop between batches, node writers
//! finish the batch in flight, and the last status update to the source says exactly what
//! every node committed.

pub mod catalog;
pub mod chunks;
mod error;
pub mod nodes;
mod phases;
pub mod placement;
mod resume;
pub mod routes;
pub mod snapshot;
pub mod state;
pub mod stats;
pub mod stream;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgwarp_decoder::Lsn;
use tokio_postgres::Client;

use crate::citus::names::quote_ident;
use crate::citus::{Topology, TopologyWatch};
use crate::config::{Settings, TableScope};
use crate::conn::connect;
use crate::error::Classify;
use crate::source::SourceError;

pub use error::PipelineError;
use nodes::NodeTarget;
use phases::run_phases;
use routes::RouteMap;
use stats::{LivePhase, Stats};
/// The cancellation token `run` takes (re-exported for callers and tests).
pub use tokio_util::sync::CancellationToken;

/// What to do about a schema change pgwarp can follow once the target has it.
const APPLY_ON_TARGET: &str =
    "apply the same change to the target, then start pgwarp again with the new table definition";

/// Options of one `sync` run.
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncOptions {
    /// Stop once the snapshot is done and every node has applied everything up to the
    /// source's WAL position at that moment.
    pub until_caught_up: bool,
}

/// How a run ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncOutcome {
    /// Stopped by the cancellation token (the next run resumes).
    Stopped,
    /// `--until-caught-up`: every node applied everything before this position.
    CaughtUp(Lsn),
    /// `pgwarp cutover` finished and dropped the slot: the migration is complete.
    CutoverDone,
}

/// Everything resolved before a run: tables, routes, nodes, counters.
pub struct Prepared {
    /// Settings.
    pub settings: Settings,
    /// The tables and how to route them.
    pub routes: Arc<RouteMap>,
    /// The target's nodes.
    pub nodes: Vec<NodeTarget>,
    /// Live counters (for progress display and metrics).
    pub stats: Arc<Stats>,
    /// Detects changes of the catalog rows the routes were built from (placement guard).
    pub watch: TopologyWatch,
    /// The source and target connections the preparation used, for the first run to go on
    /// with (it saves two connection set-ups at start; see [`Prepared::take_connections`]).
    connections: Mutex<Option<(Client, Client)>>,
}

impl Prepared {
    /// The source and target connections opened by [`prepare`], once, if both are still
    /// open; later callers (and a run after a lost connection) connect anew.
    fn take_connections(&self) -> Option<(Client, Client)> {
        let taken = match self.connections.lock() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        taken.filter(|(source, target)| !source.is_closed() && !target.is_closed())
    }
}

/// The tables of the scope, as `"schema"."name"` resolved on the source.
async fn table_names(source: &Client, scope: &TableScope) -> Result<Vec<String>, PipelineError> {
    match scope {
        TableScope::Tables(t) => Ok(t.clone()),
        TableScope::Schemas(s) => catalog::tables_in_schemas(source, s).await,
    }
}

/// Resolves the tables on both sides and the target's topology.
pub async fn prepare(settings: &Settings) -> Result<Prepared, PipelineError> {
    let (source, target) = tokio::join!(connect(&settings.source), connect(&settings.target));
    let ((source, _s), (target, _t)) = (source?, target?);
    tracing::debug!("prepare: connected");
    let names = table_names(&source, settings.require_scope()?).await?;
    // before describing: see RouteMap::described_at
    let described_at = phases::wal_insert_lsn(&source).await?;
    let mut sources = Vec::with_capacity(names.len());
    for (name, t) in names.iter().zip(catalog::describe(&source, &names).await?) {
        sources.push(t.ok_or_else(|| {
            PipelineError::State(format!("table \"{name}\" does not exist on the source"))
        })?);
    }
    if sources.is_empty() {
        return Err(PipelineError::State("no tables to sync".into()));
    }
    let qualified: Vec<String> = sources
        .iter()
        .map(|t| format!("{}.{}", quote_ident(&t.schema), quote_ident(&t.name)))
        .collect();
    let mut targets = Vec::with_capacity(qualified.len());
    for (name, t) in qualified
        .iter()
        .zip(catalog::describe(&target, &qualified).await?)
    {
        targets.push(t.ok_or_else(|| {
            PipelineError::State(format!("table {name} does not exist on the target"))
        })?);
    }
    tracing::debug!("prepare: tables described");
    let refs: Vec<&str> = qualified.iter().map(String::as_str).collect();
    let topology = Topology::load(&target, &nodes::target_addr(settings), &refs).await?;
    tracing::debug!("prepare: topology loaded");
    let mut routes = RouteMap::build(sources, &targets, &topology)?;
    routes.described_at = described_at;
    let nodes = nodes::node_targets(&topology, &settings.target, &settings.nodes);
    let table_list: Vec<String> = routes.tables.iter().map(|t| t.name.clone()).collect();
    let labels: Vec<String> = nodes.iter().map(|n| n.label.clone()).collect();
    let stats = Arc::new(Stats::new(&table_list, &labels));
    for rt in &routes.tables {
        if let Some(t) = stats
            .table_index(&rt.name)
            .and_then(|i| stats.tables.get(i))
        {
            t.bytes_expected
                .store(rt.source.pages * 8192, std::sync::atomic::Ordering::Relaxed);
        }
    }
    Ok(Prepared {
        settings: settings.clone(),
        routes: Arc::new(routes),
        nodes,
        stats,
        watch: TopologyWatch::new(&topology),
        connections: Mutex::new(Some((source, target))),
    })
}

/// Whether `pgwarp cutover` completed for this sync's slot (it drops the slot at the end, which
/// is how a running sync learns that its work is done). Any failure to tell reads as "no", so
/// the missing slot is reported as the error it otherwise is.
async fn cutover_completed(settings: &Settings) -> bool {
    let Ok((client, _connection)) = connect(&settings.target).await else {
        return false;
    };
    matches!(
        crate::cutover::record::load(&client, &settings.slot).await,
        Ok(Some(record)) if record.state == crate::cutover::record::State::Done
    )
}

/// After the stream stopped at columns added at the end of `table` on the source: the tables
/// described anew, if the target has every added column (then the stream goes on from the
/// slot, which stopped exactly before the change); else the error to stop with.
async fn follow_added_columns(
    now: &Prepared,
    table: &str,
    lsn: Lsn,
    added: &[String],
) -> Result<Prepared, PipelineError> {
    let mut fresh = prepare(&now.settings).await?;
    fresh.stats = now.stats.clone();
    let index = fresh.routes.find_stored(table).ok_or_else(|| {
        PipelineError::State(format!("table \"{table}\" is no longer part of the sync"))
    })?;
    let rt = &fresh.routes.tables[index];
    let (target, _t) = connect(&now.settings.target).await?;
    let quoted = format!(
        "{}.{}",
        quote_ident(&rt.source.schema),
        quote_ident(&rt.source.name)
    );
    let on_target = catalog::describe(&target, &[quoted])
        .await?
        .into_iter()
        .next()
        .flatten();
    let missing: Vec<&String> = added
        .iter()
        .filter(|c| {
            !on_target
                .as_ref()
                .is_some_and(|t| t.all_columns.iter().any(|tc| &tc.name == *c))
        })
        .collect();
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|c| format!("\"{c}\"")).collect();
        return Err(PipelineError::SchemaChanged {
            table: table.to_owned(),
            lsn,
            detail: format!(
                "column {} was added, and the target has no such column (pgwarp follows a \
                 column added on the source once the target has it); {APPLY_ON_TARGET}",
                list.join(", ")
            ),
            added: Vec::new(),
        });
    }
    Ok(fresh)
}

/// Runs the sync: setup or resume, snapshot, stream.
pub async fn run(
    prepared: &Prepared,
    options: SyncOptions,
    cancel: &CancellationToken,
) -> Result<SyncOutcome, PipelineError> {
    // shard moves and splits stop the run (see the placement module)
    let guarded = cancel.child_token();
    let guard = placement::Guard::spawn(prepared, guarded.clone());
    let result = run_until_done(prepared, options, &guarded).await;
    let failed = matches!(&result, Err(e) if !matches!(e, PipelineError::Stopped));
    match guard {
        Some(g) => match g.finish(failed).await {
            Some(moved) => Err(moved),
            None => result,
        },
        None => result,
    }
}

/// [`run`] without the placement guard.
async fn run_until_done(
    prepared: &Prepared,
    options: SyncOptions,
    cancel: &CancellationToken,
) -> Result<SyncOutcome, PipelineError> {
    // a transient failure during setup or the snapshot starts over from the stored state
    // (which resumes the snapshot); the stream has its own retry loop
    let mut failures = 0u32;
    // after following columns added on the source: the tables as described now
    let mut current: Option<Prepared> = None;
    let mut followed: Option<(String, Lsn)> = None;
    let result = loop {
        let now = current.as_ref().unwrap_or(prepared);
        match run_phases(now, options, cancel).await {
            Err(PipelineError::Stopped) => break Ok(SyncOutcome::Stopped),
            Err(PipelineError::SchemaChanged {
                table,
                lsn,
                detail,
                added,
            }) if !added.is_empty() && followed != Some((table.clone(), lsn)) => {
                match follow_added_columns(now, &table, lsn, &added).await {
                    Ok(next) => {
                        tracing::info!(%table, columns = %added.join(", "), at = %lsn,
                            "following the columns added on the source (the target has them)");
                        followed = Some((table, lsn));
                        current = Some(next);
                    }
                    Err(PipelineError::Stopped) => break Ok(SyncOutcome::Stopped),
                    Err(e) => {
                        tracing::debug!(%detail, "schema change not followed");
                        break Err(e);
                    }
                }
            }
            Err(PipelineError::Source(SourceError::SlotMissing { .. }))
                if cutover_completed(&prepared.settings).await =>
            {
                break Ok(SyncOutcome::CutoverDone);
            }
            Err(e) if e.is_transient() && !cancel.is_cancelled() && failures < 5 => {
                failures += 1;
                prepared.stats.count_error(e.kind());
                let pause = Duration::from_secs(u64::from(failures));
                tracing::warn!(error = %e, attempt = failures, "interrupted; resuming from the stored state");
                tokio::select! {
                    () = cancel.cancelled() => break Ok(SyncOutcome::Stopped),
                    () = tokio::time::sleep(pause) => {}
                }
            }
            other => break other,
        }
    };
    prepared.stats.set_phase(LivePhase::Done);
    result
}

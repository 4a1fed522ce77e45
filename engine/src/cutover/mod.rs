//! `pgwarp cutover`: the last minute of a migration, with nothing left half-done.
//!
//! ```text
//!  checks (nothing changed yet): slot exists, sync is streaming, roles and sequences exist
//!    │
//!  record "fencing" on the target ─► fence up (ALTER ROLE/DATABASE ... read-only) ─► "fenced"
//!    │                                   ▲ any failure or Ctrl-C from here: fence lifted
//!  end older sessions ─► fence position F ─► wait: every node has applied up to F
//!    │                                                     (the running sync keeps streaming)
//!  copy sequences ─► verify ─► end the slot's consumer, drop the slot  ◄─ point of no return
//!    │
//!  record "done" ─► drop publication ─► print the write downtime
//! ```
//!
//! **Who stops the sync.** The sync keeps streaming through the cutover: it is what brings the
//! target up to the fence. Once everything is verified, cutover ends the WAL sender streaming
//! the slot and drops the slot; the sync then finds its slot gone and, seeing the cutover
//! recorded as `done` in `pgwarp.cutover`, ends with "cutover complete". Stopping the sync first
//! would not work: nothing would apply the last transactions before the fence.
//!
//! **Failure.** Until the slot is dropped, every failure (a timeout, a difference found by
//! verify, an error, Ctrl-C) lifts the fence again, restoring the settings recorded before it
//! went up, and the sync goes on as if nothing happened. After the slot is dropped the target is
//! the system of record and the fence stays up; a failure to drop the publication is only
//! reported (`pgwarp cleanup` removes it). `pgwarp cutover --unfence` lifts a fence recorded by
//! an earlier run, for instance one that was killed.

mod error;
pub mod fence;
pub mod record;
pub mod retire;
pub mod sequences;
pub mod wait;

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use pgwarp_decoder::Lsn;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use crate::citus::Topology;
use crate::conn::{ConnConfig, connect};
use crate::pipeline::nodes::{NodeTarget, node_targets};
use crate::pipeline::state::{self, Phase};
use crate::source::admin::slot_info;
use crate::verify::{self, VerifyReport, VerifyRequest};

pub use error::CutoverError;
use fence::{Fence, FenceKind};
use record::State;
use sequences::{SequenceCopy, SequenceRef};
use wait::CatchUp;

/// Default `--max-wait`.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(300);

/// What to cut over and how.
#[derive(Debug, Clone)]
pub struct CutoverRequest {
    /// The source database.
    pub source: ConnConfig,
    /// The target.
    pub target: ConnConfig,
    /// Per-node connection overrides.
    pub nodes: BTreeMap<(String, u16), ConnConfig>,
    /// The sync's slot.
    pub slot: String,
    /// The sync's publication.
    pub publication: String,
    /// Tables to verify and take sequences from; `None`: the sync's tables.
    pub tables: Option<Vec<String>>,
    /// Application roles to fence; empty: the whole database.
    pub fence_roles: Vec<String>,
    /// `false`: no fence (the operator stopped the writers).
    pub fence: bool,
    /// Longest wait for the target to catch up.
    pub max_wait: Duration,
    /// Run verify before dropping the slot.
    pub verify: bool,
    /// Verify's concurrent scans.
    pub parallel: usize,
}

/// What a finished cutover did.
#[derive(Debug, Clone)]
pub struct CutoverReport {
    /// What was fenced.
    pub fence: String,
    /// Sessions ended by the fence.
    pub sessions_ended: usize,
    /// The source's WAL position at the fence.
    pub fence_lsn: Lsn,
    /// The wait for the target.
    pub catch_up: CatchUp,
    /// Sequences copied.
    pub sequences: Vec<SequenceCopy>,
    /// Verify's report, when run.
    pub verify: Option<VerifyReport>,
    /// Whether the slot existed and was dropped.
    pub slot_dropped: bool,
    /// The publication drop: `Ok(existed)` or the error (the cutover is done regardless).
    pub publication: Result<bool, String>,
    /// Seconds from the fence to the end.
    pub downtime_seconds: f64,
    /// The statements that would lift the fence.
    pub lift_sql: Vec<String>,
}

/// How `cutover` ended without error.
#[derive(Debug, Clone)]
pub enum CutoverOutcome {
    /// Cut over now.
    Done(Box<CutoverReport>),
    /// An earlier run already finished this cutover.
    AlreadyDone {
        /// When, as the target's clock said.
        finished_at: Option<String>,
        /// Its write downtime.
        downtime_seconds: Option<f64>,
    },
}

/// A cutover that stopped, and what became of the fence.
#[derive(Debug)]
pub struct CutoverFailure {
    /// Why it stopped.
    pub error: CutoverError,
    /// What was done about the fence.
    pub fence: FenceOutcome,
}

/// The fence after a failed cutover.
#[derive(Debug)]
pub enum FenceOutcome {
    /// The failure came before anything was changed.
    NeverUp,
    /// The fence was lifted: the source accepts writes again.
    Lifted,
    /// Lifting failed: the source is still read-only.
    StillUp(String),
    /// The slot is already dropped: the fence stays, the target is the system of record.
    Kept,
}

impl fmt::Display for CutoverFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cutover failed: {}", self.error)?;
        match &self.fence {
            FenceOutcome::NeverUp => write!(f, "; nothing was changed"),
            FenceOutcome::Lifted => write!(
                f,
                "; the fence was lifted: the source accepts writes again and the sync goes on"
            ),
            FenceOutcome::StillUp(e) => write!(
                f,
                "; lifting the fence FAILED ({e}): the source is still read-only; run pgwarp \
                 cutover --unfence"
            ),
            FenceOutcome::Kept => write!(
                f,
                "; the slot was already dropped, so the fence stays up: the target is the system \
                 of record"
            ),
        }
    }
}

/// The message already includes the cause, so no `source` is reported (`{:#}` would repeat
/// it).
impl std::error::Error for CutoverFailure {}

fn before(error: CutoverError) -> CutoverFailure {
    CutoverFailure {
        error,
        fence: FenceOutcome::NeverUp,
    }
}

/// Connections and everything checked before the fence goes up.
struct Prepared {
    source: Client,
    target: Client,
    fence: Fence,
    tables: Vec<String>,
    nodes: Vec<NodeTarget>,
    sequences: Vec<SequenceRef>,
}

/// Opens the source session cutover changes things through: writable whatever the fence says.
async fn admin_session(cfg: &ConnConfig, side: &str) -> Result<Client, CutoverError> {
    let (client, _task) = connect(cfg).await.map_err(|source| CutoverError::Connect {
        side: side.to_owned(),
        source,
    })?;
    client
        .batch_execute("SET default_transaction_read_only = off; SET statement_timeout = 0")
        .await
        .map_err(CutoverError::query("could not set up the session", side))?;
    Ok(client)
}

/// Runs the cutover. `log` receives one line per step as it happens.
pub async fn cutover(
    req: &CutoverRequest,
    cancel: &CancellationToken,
    log: &mut dyn FnMut(String),
) -> Result<CutoverOutcome, CutoverFailure> {
    let source = admin_session(&req.source, "source").await.map_err(before)?;
    let target = admin_session(&req.target, "target").await.map_err(before)?;
    let existing = record::load(&target, &req.slot).await.map_err(before)?;
    if let Some(r) = &existing
        && r.state == State::Done
    {
        return Ok(CutoverOutcome::AlreadyDone {
            finished_at: r.finished_at.clone(),
            downtime_seconds: r.downtime_seconds,
        });
    }
    let resumed = existing.filter(|r| matches!(r.state, State::Fencing | State::Fenced));
    let prep = prepare(req, source, target, resumed.as_ref().map(|r| &r.fence), log)
        .await
        .map_err(before)?;

    record::ensure(&prep.target).await.map_err(before)?;
    if resumed.is_none() {
        record::begin(&prep.target, &req.slot, &prep.fence)
            .await
            .map_err(before)?;
    }
    let fenced_clock = Instant::now();
    let fenced_at = match fence::apply(&prep.source, &prep.fence).await {
        Ok(at) => at,
        Err((Some(part), e)) => return Err(lift_part(&prep, &part, &req.slot, e).await),
        Err((None, e)) => {
            let msg = e.to_string();
            if let Err(r) =
                record::set_state(&prep.target, &req.slot, State::Failed, Some(&msg)).await
            {
                tracing::warn!(error = %r, "could not record the failed cutover");
            }
            return Err(before(e));
        }
    };
    if let Err(e) = record::set_state(&prep.target, &req.slot, State::Fenced, None).await {
        return Err(lift_after(&prep, &req.slot, e).await);
    }
    log(format!(
        "fenced writes on the source: {}",
        prep.fence.describe()
    ));

    let checked = tokio::select! {
        r = until_verified(req, &prep, &fenced_at, log) => r,
        () = cancel.cancelled() => Err(CutoverError::Interrupted),
    };
    let (sessions_ended, fence_lsn, catch_up, sequences, verified) = match checked {
        Ok(v) => v,
        Err(e) => return Err(lift_after(&prep, &req.slot, e).await),
    };

    // the point of no return: once the slot is gone, the target is the system of record.
    // "done" is recorded first, so the sync, finding its slot gone, knows why.
    if let Err(e) = record::set_state(&prep.target, &req.slot, State::Done, None).await {
        return Err(lift_after(&prep, &req.slot, e).await);
    }
    let slot_dropped = match retire::drop_slot(&prep.source, &req.slot, true).await {
        Ok(existed) => existed,
        Err(e) => return Err(lift_after(&prep, &req.slot, e).await),
    };
    log(format!(
        "replication slot \"{}\" dropped; the sync stops as it finds its slot gone",
        req.slot
    ));
    let publication = retire::drop_pub(&prep.source, &req.publication)
        .await
        .map_err(|e| e.to_string());
    let downtime = fenced_clock.elapsed().as_secs_f64();
    if let Err(e) = record::finish(&prep.target, &req.slot, downtime).await {
        log(format!(
            "warning: could not record the finished cutover: {e}"
        ));
    }
    Ok(CutoverOutcome::Done(Box::new(CutoverReport {
        fence: prep.fence.describe(),
        sessions_ended,
        fence_lsn,
        catch_up,
        sequences,
        verify: verified,
        slot_dropped,
        publication,
        downtime_seconds: downtime,
        lift_sql: prep.fence.lift_sql(),
    })))
}

type Verified = (usize, Lsn, CatchUp, Vec<SequenceCopy>, Option<VerifyReport>);

/// Everything between the fence and the slot drop; any error here lifts the fence.
async fn until_verified(
    req: &CutoverRequest,
    prep: &Prepared,
    fenced_at: &str,
    log: &mut dyn FnMut(String),
) -> Result<Verified, CutoverError> {
    let ended = fence::end_sessions(&prep.source, &prep.fence, fenced_at).await?;
    if ended > 0 {
        log(format!("ended {ended} session(s) open before the fence"));
    }
    let fence_lsn = wait::fence_position(&prep.source).await?;
    record::set_fence_lsn(&prep.target, &req.slot, &fence_lsn.to_string()).await?;
    log(format!(
        "source WAL position at the fence: {fence_lsn}; waiting for the target (at most {} s)",
        req.max_wait.as_secs()
    ));
    let catch_up = wait::wait(
        &prep.source,
        &req.slot,
        fence_lsn,
        &prep.nodes,
        req.max_wait,
    )
    .await?;
    log(format!(
        "the target has applied everything up to the fence ({:.1} s)",
        catch_up.waited.as_secs_f64()
    ));
    let copies = sequences::copy(&prep.source, &prep.target, &prep.sequences).await?;
    let moved = copies.iter().filter(|c| c.moved).count();
    log(format!(
        "sequences: {} found, {moved} moved forward on the target",
        copies.len()
    ));
    let verified = if req.verify {
        let report = verify::verify(&VerifyRequest {
            source: req.source.clone(),
            target: req.target.clone(),
            nodes: req.nodes.clone(),
            tables: prep.tables.clone(),
            parallel: req.parallel,
            sample: 5,
        })
        .await?;
        if !report.equal {
            let bad: Vec<String> = report
                .tables
                .iter()
                .filter(|t| t.status != verify::TableStatus::Equal)
                .map(|t| t.table.clone())
                .collect();
            let mut text = Vec::new();
            let _ = report.write_text(&mut text);
            log(String::from_utf8_lossy(&text).trim_end().to_owned());
            return Err(CutoverError::Differences(format!(
                "verify found the target different from the source in {}",
                bad.join(", ")
            )));
        }
        log(format!(
            "verify: {} table(s) equal ({:.1} s)",
            report.tables.len(),
            report.elapsed_ms as f64 / 1000.0
        ));
        Some(report)
    } else {
        None
    };
    Ok((ended, fence_lsn, catch_up, copies, verified))
}

/// Lifts the fence after `error` and records the outcome.
async fn lift_after(prep: &Prepared, slot: &str, error: CutoverError) -> CutoverFailure {
    lift_part(prep, &prep.fence, slot, error).await
}

/// Lifts `part` of the fence after `error` and records the outcome.
async fn lift_part(
    prep: &Prepared,
    part: &Fence,
    slot: &str,
    error: CutoverError,
) -> CutoverFailure {
    let fence = match fence::lift(&prep.source, part).await {
        Ok(()) => FenceOutcome::Lifted,
        Err(e) => FenceOutcome::StillUp(e.to_string()),
    };
    let state = match fence {
        FenceOutcome::Lifted => State::Failed,
        _ => State::Fenced,
    };
    let message = error.to_string();
    if let Err(e) = record::set_state(&prep.target, slot, state, Some(&message)).await {
        tracing::warn!(error = %e, "could not record the failed cutover");
    }
    CutoverFailure { error, fence }
}

/// The checks before anything changes.
async fn prepare(
    req: &CutoverRequest,
    source: Client,
    target: Client,
    resumed: Option<&Fence>,
    log: &mut dyn FnMut(String),
) -> Result<Prepared, CutoverError> {
    let slot = &req.slot;
    let Some(info) = slot_info(&source, slot).await? else {
        return Err(CutoverError::Precondition(format!(
            "replication slot \"{slot}\" does not exist on the source: nothing to cut over \
             (give the sync's --slot)"
        )));
    };
    if info.is_invalidated() {
        return Err(CutoverError::Precondition(format!(
            "replication slot \"{slot}\" was invalidated by the source (WAL removed): the target \
             cannot catch up; start a new sync"
        )));
    }
    if !state::exists(&target).await? {
        return Err(CutoverError::Precondition(
            "no pgwarp sync is recorded on the target (no pgwarp.sync_state): run pgwarp sync first"
                .to_owned(),
        ));
    }
    match state::load(&target, slot).await? {
        None => {
            return Err(CutoverError::Precondition(format!(
                "no pgwarp sync with slot \"{slot}\" is recorded on the target"
            )));
        }
        Some(s) if s.phase != Phase::Streaming => {
            return Err(CutoverError::Precondition(format!(
                "the sync of slot \"{slot}\" is in phase {}: cut over once its snapshot is done \
                 and it is streaming (see pgwarp status)",
                s.phase.as_str()
            )));
        }
        Some(_) => {}
    }
    if !info.active {
        log(format!(
            "warning: no process is streaming slot \"{slot}\" right now: the target can only \
             catch up while pgwarp sync runs"
        ));
    }
    if let Some(lag) = info.lag_bytes {
        log(format!("slot lag before the fence: {lag} bytes"));
    }
    let tables = match &req.tables {
        Some(t) => t.clone(),
        None => verify::tables_of_sync(&target, slot)
            .await?
            .unwrap_or_default(),
    };
    if tables.is_empty() {
        return Err(CutoverError::Precondition(format!(
            "the sync of slot \"{slot}\" has no tables"
        )));
    }
    let refs: Vec<&str> = tables.iter().map(String::as_str).collect();
    let topology = Topology::load(&target, &verify::target_addr(&req.target), &refs).await?;
    let nodes = node_targets(&topology, &req.target, &req.nodes);
    let seqs = sequences::of_tables(&source, &tables).await?;
    sequences::check_target(&target, &seqs).await?;
    let fence = match resumed {
        Some(f) => {
            let wanted = match (req.fence, req.fence_roles.is_empty()) {
                (false, _) => FenceKind::None,
                (true, true) => FenceKind::Database,
                (true, false) => FenceKind::Roles,
            };
            if f.kind != wanted || (wanted == FenceKind::Roles && f.roles != req.fence_roles) {
                return Err(CutoverError::Precondition(format!(
                    "an earlier cutover of slot \"{slot}\" left a fence on {}: run cutover with \
                     the same fence options to finish it, or lift it with --unfence",
                    f.describe()
                )));
            }
            log(format!(
                "continuing the cutover an earlier run started (fence on {})",
                f.describe()
            ));
            f.clone()
        }
        None => fence::plan(&source, &req.fence_roles, req.fence).await?,
    };
    Ok(Prepared {
        source,
        target,
        fence,
        tables,
        nodes,
        sequences: seqs,
    })
}

/// `--unfence`: lifts the fence an earlier cutover recorded; returns what was lifted (`None`:
/// nothing was fenced).
pub async fn unfence(req: &CutoverRequest) -> Result<Option<Fence>, CutoverError> {
    let source = admin_session(&req.source, "source").await?;
    let target = admin_session(&req.target, "target").await?;
    let Some(rec) = record::load(&target, &req.slot).await? else {
        return Err(CutoverError::Precondition(format!(
            "no cutover of slot \"{}\" is recorded on the target: nothing to lift",
            req.slot
        )));
    };
    if !rec.state.may_be_fenced() {
        return Ok(None);
    }
    fence::lift(&source, &rec.fence).await?;
    record::set_state(
        &target,
        &req.slot,
        State::Lifted,
        Some("fence lifted by --unfence"),
    )
    .await?;
    Ok(Some(rec.fence))
}

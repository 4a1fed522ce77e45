//! `pgwarp.cutover` on the target: what the cutover did to the source, so that it can be
//! undone by a later run even if this one is killed halfway.
//!
//! The row is written *before* the fence goes up (state `fencing`, with the settings it is
//! about to replace), then moved to `fenced`, and finally to `done` (the slot is gone, the
//! target is the system of record), `lifted` (the fence was taken down again) or `failed`. A
//! run that finds `fencing` or `fenced` left by a killed run continues from it and restores the
//! settings recorded then, never the ones it sees now (which are its own).
//!
//! The table lives on the coordinator (or the plain target), next to the sync's own state, and
//! is created with Citus DDL propagation off: it is a local table.

use tokio_postgres::Client;

use super::error::CutoverError;
use super::fence::{Fence, FenceKind};

/// Serialises creators with the sync's state tables (same key as `pipeline::state`).
const CREATE: &str = "BEGIN; \
    SET LOCAL citus.enable_ddl_propagation TO off; \
    SELECT pg_advisory_xact_lock(7460125830412108); \
    CREATE SCHEMA IF NOT EXISTS pgwarp; \
    CREATE TABLE IF NOT EXISTS pgwarp.cutover ( \
        slot text PRIMARY KEY, \
        database text NOT NULL, \
        fence_kind text NOT NULL, \
        roles text[] NOT NULL DEFAULT '{}', \
        previous text[] NOT NULL DEFAULT '{}', \
        state text NOT NULL, \
        fenced_at timestamptz, \
        fence_lsn pg_lsn, \
        finished_at timestamptz, \
        downtime_seconds float8, \
        message text, \
        updated_at timestamptz NOT NULL DEFAULT now()); \
    COMMIT";

/// Where a cutover stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// About to put up the fence (the previous settings are recorded).
    Fencing,
    /// The fence is up.
    Fenced,
    /// Cut over: the slot is dropped; the fence stays.
    Done,
    /// The fence was taken down.
    Lifted,
    /// Stopped with an error after the fence was taken down.
    Failed,
}

impl State {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Fencing => "fencing",
            State::Fenced => "fenced",
            State::Done => "done",
            State::Lifted => "lifted",
            State::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<State> {
        Some(match s {
            "fencing" => State::Fencing,
            "fenced" => State::Fenced,
            "done" => State::Done,
            "lifted" => State::Lifted,
            "failed" => State::Failed,
            _ => return None,
        })
    }

    /// Whether the source may still be fenced by this record.
    pub fn may_be_fenced(self) -> bool {
        matches!(self, State::Fencing | State::Fenced | State::Done)
    }
}

/// One row of `pgwarp.cutover`.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The sync's slot (the key).
    pub slot: String,
    /// The fence and the settings it replaced.
    pub fence: Fence,
    /// Where the cutover stands.
    pub state: State,
    /// The source's WAL position at the fence, as text.
    pub fence_lsn: Option<String>,
    /// When it finished, as text.
    pub finished_at: Option<String>,
    /// Write downtime of a finished cutover.
    pub downtime_seconds: Option<f64>,
}

fn q(what: &str) -> impl FnOnce(tokio_postgres::Error) -> CutoverError + '_ {
    move |e| CutoverError::query(format!("could not {what} (pgwarp.cutover)"), "target")(e)
}

/// Creates the table if needed.
pub async fn ensure(target: &Client) -> Result<(), CutoverError> {
    for attempt in 0..3 {
        match target.batch_execute(CREATE).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                let _ = target.batch_execute("ROLLBACK").await;
                let raced = e
                    .as_db_error()
                    .is_some_and(|db| matches!(db.code().code(), "23505" | "42P06" | "42P07"));
                if !raced || attempt == 2 {
                    return Err(q("create the table")(e));
                }
            }
        }
    }
    Ok(())
}

/// Whether the table exists (without creating it).
pub async fn exists(target: &Client) -> Result<bool, CutoverError> {
    target
        .query_one("SELECT to_regclass('pgwarp.cutover') IS NOT NULL", &[])
        .await
        .and_then(|r| r.try_get(0))
        .map_err(q("look for the table"))
}

/// The record of `slot`, if any.
pub async fn load(target: &Client, slot: &str) -> Result<Option<Record>, CutoverError> {
    if !exists(target).await? {
        return Ok(None);
    }
    let row = target
        .query_opt(
            "SELECT database, fence_kind, roles, previous, state, fence_lsn::text, \
                    finished_at::text, downtime_seconds \
               FROM pgwarp.cutover WHERE slot = $1",
            &[&slot],
        )
        .await
        .map_err(q("read the record"))?;
    let Some(row) = row else { return Ok(None) };
    let read = || -> Result<_, tokio_postgres::Error> {
        Ok((
            row.try_get::<_, String>(0)?,
            row.try_get::<_, String>(1)?,
            row.try_get::<_, Vec<String>>(2)?,
            row.try_get::<_, Vec<Option<String>>>(3)?,
            row.try_get::<_, String>(4)?,
            row.try_get::<_, Option<String>>(5)?,
            row.try_get::<_, Option<String>>(6)?,
            row.try_get::<_, Option<f64>>(7)?,
        ))
    };
    let (database, kind, roles, previous, state, fence_lsn, finished_at, downtime) =
        read().map_err(q("read the record"))?;
    let kind = FenceKind::parse(&kind).ok_or_else(|| {
        CutoverError::Precondition(format!(
            "unknown fence kind \"{kind}\" in pgwarp.cutover for slot \"{slot}\""
        ))
    })?;
    let state = State::parse(&state).ok_or_else(|| {
        CutoverError::Precondition(format!(
            "unknown state \"{state}\" in pgwarp.cutover for slot \"{slot}\""
        ))
    })?;
    Ok(Some(Record {
        slot: slot.to_owned(),
        fence: Fence {
            kind,
            database,
            roles,
            previous,
        },
        state,
        fence_lsn,
        finished_at,
        downtime_seconds: downtime,
    }))
}

/// Writes the record of a fence about to go up (state `fencing`), replacing an old one.
pub async fn begin(target: &Client, slot: &str, fence: &Fence) -> Result<(), CutoverError> {
    target
        .execute(
            "INSERT INTO pgwarp.cutover (slot, database, fence_kind, roles, previous, state) \
             VALUES ($1, $2, $3, $4, $5, 'fencing') \
             ON CONFLICT (slot) DO UPDATE SET database = EXCLUDED.database, \
               fence_kind = EXCLUDED.fence_kind, roles = EXCLUDED.roles, \
               previous = EXCLUDED.previous, state = 'fencing', fenced_at = NULL, \
               fence_lsn = NULL, finished_at = NULL, downtime_seconds = NULL, message = NULL, \
               updated_at = now()",
            &[
                &slot,
                &fence.database,
                &fence.kind.as_str(),
                &fence.roles,
                &fence.previous,
            ],
        )
        .await
        .map_err(q("write the record"))?;
    Ok(())
}

/// Moves the record to `state`, with an optional message; `fenced` also stamps the time.
pub async fn set_state(
    target: &Client,
    slot: &str,
    state: State,
    message: Option<&str>,
) -> Result<(), CutoverError> {
    target
        .execute(
            "UPDATE pgwarp.cutover SET state = $2, message = coalesce($3, message), \
                    fenced_at = CASE WHEN $2 = 'fenced' THEN coalesce(fenced_at, now()) \
                                     ELSE fenced_at END, \
                    updated_at = now() \
              WHERE slot = $1",
            &[&slot, &state.as_str(), &message],
        )
        .await
        .map_err(q("update the record"))?;
    Ok(())
}

/// Records the fence position.
pub async fn set_fence_lsn(target: &Client, slot: &str, lsn: &str) -> Result<(), CutoverError> {
    target
        .execute(
            "UPDATE pgwarp.cutover SET fence_lsn = $2::text::pg_lsn, updated_at = now() \
              WHERE slot = $1",
            &[&slot, &lsn],
        )
        .await
        .map_err(q("update the record"))?;
    Ok(())
}

/// Records a finished cutover.
pub async fn finish(target: &Client, slot: &str, downtime: f64) -> Result<(), CutoverError> {
    target
        .execute(
            "UPDATE pgwarp.cutover SET state = 'done', finished_at = now(), \
                    downtime_seconds = $2, updated_at = now() WHERE slot = $1",
            &[&slot, &downtime],
        )
        .await
        .map_err(q("update the record"))?;
    Ok(())
}

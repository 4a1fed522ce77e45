//! The sync's own state, kept on the target (the Citus coordinator or the plain PostgreSQL) in
//! schema `pgwarp`, so that a restarted `sync` (on any machine) knows where it stands.
//!
//! * `pgwarp.sync_state (slot)`: phase (`setup` → `snapshot` → `streaming`), the slot's
//!   consistent point, and `idempotent_until`, the WAL position before which streamed
//!   transactions must be applied idempotently (see the snapshot module's resume argument).
//! * `pgwarp.snapshot_chunks (slot, table_name, chunk)`: the chunk plan and each chunk's
//!   completion: `done_xmin`, the xmin of the snapshot at which the chunk's rows are all on the
//!   target (NULL while not done), with rows and bytes copied.
//! * `pgwarp.placements (slot, table_name, shard_id)`: the shard placements the sync started
//!   with (see [`super::placement`]).
//!
//! Rows per node of `pgwarp.progress` are the sink's; this module never touches them. DDL runs
//! with Citus DDL propagation off: these are local tables of the coordinator.

use std::str::FromStr;

use pgwarp_decoder::Lsn;
use tokio_postgres::Client;

use super::chunks::PageRange;
use super::error::PipelineError;

const CREATE: &str = "BEGIN; \
    SET LOCAL citus.enable_ddl_propagation TO off; \
    SELECT pg_advisory_xact_lock(7460125830412108); \
    CREATE SCHEMA IF NOT EXISTS pgwarp; \
    CREATE TABLE IF NOT EXISTS pgwarp.sync_state ( \
        slot text PRIMARY KEY, \
        publication text NOT NULL, \
        phase text NOT NULL, \
        tables text[] NOT NULL, \
        consistent_point pg_lsn, \
        idempotent_until pg_lsn NOT NULL DEFAULT '0/0', \
        snapshot_started_at timestamptz, \
        snapshot_done_at timestamptz, \
        caught_up_lsn pg_lsn, \
        updated_at timestamptz NOT NULL DEFAULT now()); \
    CREATE TABLE IF NOT EXISTS pgwarp.snapshot_chunks ( \
        slot text NOT NULL, \
        table_name text NOT NULL, \
        chunk int NOT NULL, \
        start_page int8 NOT NULL, \
        end_page int8, \
        filenode oid NOT NULL, \
        pages int8 NOT NULL, \
        done_xmin xid8, \
        rows int8 NOT NULL DEFAULT 0, \
        bytes int8 NOT NULL DEFAULT 0, \
        done_at timestamptz, \
        PRIMARY KEY (slot, table_name, chunk)); \
    CREATE TABLE IF NOT EXISTS pgwarp.placements ( \
        slot text NOT NULL, \
        table_name text NOT NULL, \
        shard_id int8 NOT NULL, \
        shard_range text NOT NULL, \
        nodes text NOT NULL, \
        PRIMARY KEY (slot, table_name, shard_id)); \
    COMMIT";

/// Where a sync stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Publication and slot being created (a slot left by a crash here is ours to replace).
    Setup,
    /// Copying the snapshot.
    Snapshot,
    /// Snapshot done; following the slot.
    Streaming,
}

impl Phase {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Setup => "setup",
            Phase::Snapshot => "snapshot",
            Phase::Streaming => "streaming",
        }
    }
}

impl FromStr for Phase {
    type Err = PipelineError;
    fn from_str(s: &str) -> Result<Phase, PipelineError> {
        match s {
            "setup" => Ok(Phase::Setup),
            "snapshot" => Ok(Phase::Snapshot),
            "streaming" => Ok(Phase::Streaming),
            other => Err(PipelineError::State(format!(
                "unknown phase \"{other}\" in pgwarp.sync_state"
            ))),
        }
    }
}

/// One row of `pgwarp.sync_state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncState {
    /// Slot name (the key).
    pub slot: String,
    /// Publication name.
    pub publication: String,
    /// Phase.
    pub phase: Phase,
    /// The tables (`schema.name`).
    pub tables: Vec<String>,
    /// The slot's consistent point (set from phase `snapshot` on).
    pub consistent_point: Option<Lsn>,
    /// Transactions committing before this position are applied idempotently.
    pub idempotent_until: Lsn,
    /// When the snapshot finished, as text.
    pub snapshot_done_at: Option<String>,
    /// The position `--until-caught-up` last reached.
    pub caught_up_lsn: Option<Lsn>,
}

/// One row of `pgwarp.snapshot_chunks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRow {
    /// `schema.name`.
    pub table: String,
    /// Chunk number within the table.
    pub chunk: i32,
    /// Pages.
    pub range: PageRange,
    /// `relfilenode` when planned.
    pub filenode: u32,
    /// Table pages when planned.
    pub pages: u64,
    /// 64-bit xmin of the snapshot the chunk is complete at; `None` while not done.
    pub done_xmin: Option<u64>,
    /// Rows copied.
    pub rows: i64,
    /// Bytes copied.
    pub bytes: i64,
}

fn lsn(text: Option<String>) -> Result<Option<Lsn>, PipelineError> {
    text.map(|t| {
        t.parse::<Lsn>()
            .map_err(|_| PipelineError::State(format!("invalid LSN \"{t}\" in pgwarp state")))
    })
    .transpose()
}

/// Wraps a driver error on the state tables with what was being done.
pub(super) fn q(what: &str) -> impl FnOnce(tokio_postgres::Error) -> PipelineError + '_ {
    move |source| PipelineError::Query {
        what: format!("could not {what} (pgwarp state on the target)"),
        source,
    }
}

/// Creates the schema and tables if needed.
pub async fn ensure(client: &Client) -> Result<(), PipelineError> {
    match client.batch_execute(CREATE).await {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(q("create the pgwarp schema")(e))
        }
    }
}

/// Whether the state tables exist (without creating them).
pub async fn exists(client: &Client) -> Result<bool, PipelineError> {
    let row = client
        .query_one(
            "SELECT to_regclass('pgwarp.sync_state') IS NOT NULL \
                AND to_regclass('pgwarp.snapshot_chunks') IS NOT NULL",
            &[],
        )
        .await
        .map_err(q("look for the state tables"))?;
    row.try_get(0).map_err(q("read the state tables"))
}

/// The state of `slot`, if a sync with it was started.
pub async fn load(client: &Client, slot: &str) -> Result<Option<SyncState>, PipelineError> {
    let row = client
        .query_opt(
            "SELECT publication, phase, tables, consistent_point::text, idempotent_until::text, \
                    snapshot_done_at::text, caught_up_lsn::text \
               FROM pgwarp.sync_state WHERE slot = $1",
            &[&slot],
        )
        .await
        .map_err(q("read the sync state"))?;
    let Some(row) = row else { return Ok(None) };
    let get = |i: usize| {
        row.try_get::<_, Option<String>>(i)
            .map_err(q("read the sync state"))
    };
    Ok(Some(SyncState {
        slot: slot.to_owned(),
        publication: get(0)?.unwrap_or_default(),
        phase: get(1)?.unwrap_or_default().parse()?,
        tables: row.try_get(2).map_err(q("read the sync state"))?,
        consistent_point: lsn(get(3)?)?,
        idempotent_until: lsn(get(4)?)?.unwrap_or(Lsn::INVALID),
        snapshot_done_at: get(5)?,
        caught_up_lsn: lsn(get(6)?)?,
    }))
}

/// Records the start of a new sync (phase `setup`), replacing any earlier row and chunks.
pub async fn begin_setup(
    client: &mut Client,
    slot: &str,
    publication: &str,
    tables: &[String],
) -> Result<(), PipelineError> {
    let tx = client.transaction().await.map_err(q("begin"))?;
    tx.execute(
        "DELETE FROM pgwarp.snapshot_chunks WHERE slot = $1",
        &[&slot],
    )
    .await
    .map_err(q("clear old chunks"))?;
    tx.execute(
        "INSERT INTO pgwarp.sync_state (slot, publication, phase, tables) \
             VALUES ($1, $2, 'setup', $3) \
             ON CONFLICT (slot) DO UPDATE SET publication = EXCLUDED.publication, \
                 phase = 'setup', tables = EXCLUDED.tables, consistent_point = NULL, \
                 idempotent_until = '0/0', snapshot_started_at = NULL, \
                 snapshot_done_at = NULL, caught_up_lsn = NULL, updated_at = now()",
        &[&slot, &publication, &tables],
    )
    .await
    .map_err(q("record the new sync"))?;
    tx.commit().await.map_err(q("commit the new sync"))
}

/// A planned chunk, for [`begin_snapshot`].
#[derive(Debug, Clone)]
pub struct PlannedChunk {
    /// `schema.name`.
    pub table: String,
    /// Chunk number.
    pub chunk: i32,
    /// Pages.
    pub range: PageRange,
    /// `relfilenode`.
    pub filenode: u32,
    /// Table pages.
    pub pages: u64,
}

/// Moves to phase `snapshot` with the slot's consistent point and the chunk plan, atomically.
pub async fn begin_snapshot(
    client: &mut Client,
    slot: &str,
    consistent_point: Lsn,
    chunks: &[PlannedChunk],
) -> Result<(), PipelineError> {
    let tx = client.transaction().await.map_err(q("begin"))?;
    tx.execute(
        "UPDATE pgwarp.sync_state SET phase = 'snapshot', consistent_point = $2::text::pg_lsn, \
                snapshot_started_at = now(), updated_at = now() WHERE slot = $1",
        &[&slot, &consistent_point.to_string()],
    )
    .await
    .map_err(q("record the snapshot start"))?;
    insert_chunks(&tx, slot, chunks).await?;
    tx.commit().await.map_err(q("commit the snapshot start"))
}

async fn insert_chunks(
    tx: &tokio_postgres::Transaction<'_>,
    slot: &str,
    chunks: &[PlannedChunk],
) -> Result<(), PipelineError> {
    let stmt = tx
        .prepare(
            "INSERT INTO pgwarp.snapshot_chunks \
                 (slot, table_name, chunk, start_page, end_page, filenode, pages) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .await
        .map_err(q("prepare the chunk plan"))?;
    for c in chunks {
        let start = i64::try_from(c.range.start).unwrap_or(i64::MAX);
        let end = c.range.end.map(|e| i64::try_from(e).unwrap_or(i64::MAX));
        let pages = i64::try_from(c.pages).unwrap_or(i64::MAX);
        tx.execute(
            &stmt,
            &[&slot, &c.table, &c.chunk, &start, &end, &c.filenode, &pages],
        )
        .await
        .map_err(q("record the chunk plan"))?;
    }
    Ok(())
}

/// Replaces the chunk plan of one table (its file was rewritten: the old plan means nothing).
pub async fn replan_table(
    client: &mut Client,
    slot: &str,
    table: &str,
    chunks: &[PlannedChunk],
) -> Result<(), PipelineError> {
    let tx = client.transaction().await.map_err(q("begin"))?;
    tx.execute(
        "DELETE FROM pgwarp.snapshot_chunks WHERE slot = $1 AND table_name = $2",
        &[&slot, &table],
    )
    .await
    .map_err(q("clear a table's chunks"))?;
    insert_chunks(&tx, slot, chunks).await?;
    tx.commit()
        .await
        .map_err(q("commit a table's new chunk plan"))
}

/// The chunk plan and progress of `slot`.
pub async fn chunks(client: &Client, slot: &str) -> Result<Vec<ChunkRow>, PipelineError> {
    let rows = client
        .query(
            "SELECT table_name, chunk, start_page, end_page, filenode, pages, \
                    done_xmin::text, rows, bytes \
               FROM pgwarp.snapshot_chunks WHERE slot = $1 ORDER BY table_name, chunk",
            &[&slot],
        )
        .await
        .map_err(q("read the chunk plan"))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let e = q("read the chunk plan");
        let start: i64 = r.try_get(2).map_err(e)?;
        let end: Option<i64> = r.try_get(3).map_err(q("read the chunk plan"))?;
        let pages: i64 = r.try_get(5).map_err(q("read the chunk plan"))?;
        let done: Option<String> = r.try_get(6).map_err(q("read the chunk plan"))?;
        let done_xmin = done
            .map(|d| {
                d.parse::<u64>()
                    .map_err(|_| PipelineError::State(format!("invalid done_xmin \"{d}\"")))
            })
            .transpose()?;
        out.push(ChunkRow {
            table: r.try_get(0).map_err(q("read the chunk plan"))?,
            chunk: r.try_get(1).map_err(q("read the chunk plan"))?,
            range: PageRange {
                start: u64::try_from(start).unwrap_or(0),
                end: end.map(|e| u64::try_from(e).unwrap_or(0)),
            },
            filenode: r.try_get(4).map_err(q("read the chunk plan"))?,
            pages: u64::try_from(pages).unwrap_or(0),
            done_xmin,
            rows: r.try_get(7).map_err(q("read the chunk plan"))?,
            bytes: r.try_get(8).map_err(q("read the chunk plan"))?,
        });
    }
    Ok(out)
}

/// Records a chunk as complete at the snapshot whose xmin is `done_xmin`.
pub async fn chunk_done(
    client: &Client,
    slot: &str,
    table: &str,
    chunk: i32,
    done_xmin: u64,
    rows: i64,
    bytes: i64,
) -> Result<(), PipelineError> {
    client
        .execute(
            "UPDATE pgwarp.snapshot_chunks SET done_xmin = $4::text::xid8, \
                    rows = CASE WHEN done_xmin IS NULL THEN $5 ELSE rows + $5 END, \
                    bytes = CASE WHEN done_xmin IS NULL THEN $6 ELSE bytes + $6 END, \
                    done_at = now() \
              WHERE slot = $1 AND table_name = $2 AND chunk = $3",
            &[&slot, &table, &chunk, &done_xmin.to_string(), &rows, &bytes],
        )
        .await
        .map_err(q("record a finished chunk"))?;
    Ok(())
}

/// Raises `idempotent_until` to at least `lsn`.
pub async fn raise_idempotent_until(
    client: &Client,
    slot: &str,
    lsn: Lsn,
) -> Result<(), PipelineError> {
    client
        .execute(
            "UPDATE pgwarp.sync_state \
                SET idempotent_until = GREATEST(idempotent_until, $2::text::pg_lsn), \
                    updated_at = now() WHERE slot = $1",
            &[&slot, &lsn.to_string()],
        )
        .await
        .map_err(q("record the idempotent replay position"))?;
    Ok(())
}

/// Moves to phase `streaming`.
pub async fn snapshot_done(client: &Client, slot: &str) -> Result<(), PipelineError> {
    client
        .execute(
            "UPDATE pgwarp.sync_state SET phase = 'streaming', snapshot_done_at = now(), \
                    updated_at = now() WHERE slot = $1",
            &[&slot],
        )
        .await
        .map_err(q("record the end of the snapshot"))?;
    Ok(())
}

/// Records the position `--until-caught-up` reached.
pub async fn caught_up(client: &Client, slot: &str, lsn: Lsn) -> Result<(), PipelineError> {
    client
        .execute(
            "UPDATE pgwarp.sync_state SET caught_up_lsn = $2::text::pg_lsn, updated_at = now() \
              WHERE slot = $1",
            &[&slot, &lsn.to_string()],
        )
        .await
        .map_err(q("record the caught-up position"))?;
    Ok(())
}

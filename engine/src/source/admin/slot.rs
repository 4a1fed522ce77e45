//! A replication slot's state as `pg_replication_slots` shows it, and the checks before
//! resuming from a slot.
//!
//! `confirmed_flush_lsn` is where a restart resumes; `restart_lsn` is the oldest WAL the slot
//! holds; `wal_status` (PG 13+) is `lost` once the server has removed WAL the slot needs, and
//! then the slot can never be read again. Lag is `pg_current_wal_insert_lsn() -
//! confirmed_flush_lsn` in bytes: how much WAL, committed or not yet written out, the slot
//! still has to deliver (the same position as [`current_wal_lsn`]).

use pgwarp_decoder::Lsn;
use tokio_postgres::Client;

use super::super::SourceError;
use super::super::quote::validate_slot_name;
use super::pg_err;

/// One row of `pg_replication_slots`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    /// Slot name.
    pub slot_name: String,
    /// Output plugin (`pgoutput`), `None` for physical slots.
    pub plugin: Option<String>,
    /// `logical` or `physical`.
    pub slot_type: String,
    /// Database of a logical slot.
    pub database: Option<String>,
    /// Dropped when its session ends.
    pub temporary: bool,
    /// A consumer is connected.
    pub active: bool,
    /// The consumer's PID.
    pub active_pid: Option<i32>,
    /// Oldest WAL the slot still needs.
    pub restart_lsn: Option<Lsn>,
    /// Position the consumer confirmed; streaming resumes here.
    pub confirmed_flush_lsn: Option<Lsn>,
    /// `reserved`, `extended`, `unreserved` or `lost` (PG 13+).
    pub wal_status: Option<String>,
    /// `pg_current_wal_insert_lsn() - confirmed_flush_lsn`, in bytes (`None` on a standby).
    pub lag_bytes: Option<i64>,
}

impl SlotInfo {
    /// Whether the server invalidated the slot.
    pub fn is_invalidated(&self) -> bool {
        self.wal_status.as_deref() == Some("lost")
    }
}

fn parse_lsn(text: Option<String>) -> Result<Option<Lsn>, SourceError> {
    text.map(|t| {
        t.parse().map_err(|_| SourceError::Protocol {
            target: "source".to_owned(),
            reason: format!("invalid LSN \"{t}\" in pg_replication_slots"),
        })
    })
    .transpose()
}

/// Reads the slot's row, `None` if it does not exist.
pub async fn slot_info(client: &Client, name: &str) -> Result<Option<SlotInfo>, SourceError> {
    validate_slot_name(name)?;
    let version: String = client
        .query_one("SELECT current_setting('server_version_num')", &[])
        .await
        .map_err(pg_err("could not read the server version"))?
        .get(0);
    let wal_status = if version.parse::<u32>().unwrap_or(0) >= 130_000 {
        "wal_status::text"
    } else {
        "NULL::text"
    };
    let sql = format!(
        "SELECT slot_name::text, plugin::text, slot_type::text, database::text, temporary,
                active, active_pid, restart_lsn::text, confirmed_flush_lsn::text, {wal_status},
                CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL
                     ELSE pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_insert_lsn(),
                                                      confirmed_flush_lsn)::int8 END
           FROM pg_catalog.pg_replication_slots WHERE slot_name = $1"
    );
    let what = format!("could not read replication slot \"{name}\"");
    let Some(row) = client
        .query_opt(&sql, &[&name])
        .await
        .map_err(pg_err(&what))?
    else {
        return Ok(None);
    };
    Ok(Some(SlotInfo {
        slot_name: row.get(0),
        plugin: row.get(1),
        slot_type: row.get(2),
        database: row.get(3),
        temporary: row.get(4),
        active: row.get(5),
        active_pid: row.get(6),
        restart_lsn: parse_lsn(row.get(7))?,
        confirmed_flush_lsn: parse_lsn(row.get(8))?,
        wal_status: row.get(9),
        lag_bytes: row.get(10),
    }))
}

/// Checks that the slot can be streamed from now: it exists, is not invalidated, and no
/// other process consumes it.
pub async fn check_slot(client: &Client, name: &str) -> Result<SlotInfo, SourceError> {
    let Some(info) = slot_info(client, name).await? else {
        return Err(SourceError::SlotMissing {
            slot: name.to_owned(),
        });
    };
    if info.is_invalidated() {
        return Err(SourceError::SlotInvalidated {
            slot: name.to_owned(),
        });
    }
    if info.active {
        return Err(SourceError::SlotActive {
            slot: name.to_owned(),
            pid: info.active_pid,
        });
    }
    Ok(info)
}

/// Drops the slot if it exists (waiting for nobody: fails with `SlotActive` if in use).
/// Returns whether it existed.
pub async fn drop_slot_if_exists(client: &Client, name: &str) -> Result<bool, SourceError> {
    validate_slot_name(name)?;
    let what = format!("could not drop replication slot \"{name}\"");
    let rows = client
        .query(
            "SELECT pg_catalog.pg_drop_replication_slot(slot_name)
               FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
            &[&name],
        )
        .await
        .map_err(|e| {
            SourceError::from_pg(
                e,
                &what,
                super::super::ErrorContext {
                    slot: Some(name),
                    ..Default::default()
                },
            )
        })?;
    Ok(!rows.is_empty())
}

/// The source's current WAL position: `pg_current_wal_insert_lsn()`.
///
/// The insert position, not `pg_current_wal_lsn()` (the write position): with
/// `synchronous_commit = off` a transaction can commit before its WAL is written, so a caller
/// waiting "until caught up to the current position" would otherwise stop short of
/// transactions that have already committed.
pub async fn current_wal_lsn(client: &Client) -> Result<Lsn, SourceError> {
    let text: String = client
        .query_one("SELECT pg_catalog.pg_current_wal_insert_lsn()::text", &[])
        .await
        .map_err(pg_err("could not read the current WAL position"))?
        .get(0);
    parse_lsn(Some(text))?.ok_or_else(|| SourceError::Protocol {
        target: "source".to_owned(),
        reason: "no current WAL position".to_owned(),
    })
}

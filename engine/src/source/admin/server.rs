//! What the source server can do for logical replication, checked before anything is created.
//!
//! Checking upfront turns the server's eventual errors (55000 at slot creation, 42501 at
//! connection, 53400 when slots run out) into one clear report before the operator has
//! started anything.

use tokio_postgres::Client;

use super::super::SourceError;
use super::pg_err;

/// The source server's replication-relevant settings and usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// `server_version_num`, e.g. 150004.
    pub version_num: u32,
    /// `server_version`, e.g. `15.4 (Debian 15.4-1)`.
    pub version: String,
    /// `wal_level`: `minimal`, `replica` or `logical`.
    pub wal_level: String,
    /// `max_replication_slots`.
    pub max_replication_slots: i64,
    /// Slots that exist now.
    pub used_replication_slots: i64,
    /// `max_wal_senders`.
    pub max_wal_senders: i64,
    /// WAL sender processes running now.
    pub active_wal_senders: i64,
    /// `current_user`.
    pub role: String,
    /// Whether the role has `REPLICATION` (or is a superuser).
    pub role_can_replicate: bool,
    /// Whether the role is a superuser.
    pub role_is_superuser: bool,
}

impl ServerInfo {
    /// Slots that can still be created.
    pub fn free_replication_slots(&self) -> i64 {
        (self.max_replication_slots - self.used_replication_slots).max(0)
    }

    /// WAL senders that can still start.
    pub fn free_wal_senders(&self) -> i64 {
        (self.max_wal_senders - self.active_wal_senders).max(0)
    }
}

/// Reads [`ServerInfo`].
pub async fn server_info(client: &Client) -> Result<ServerInfo, SourceError> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int4,
                    current_setting('server_version'),
                    current_setting('wal_level'),
                    current_setting('max_replication_slots')::int8,
                    (SELECT count(*) FROM pg_catalog.pg_replication_slots),
                    current_setting('max_wal_senders')::int8,
                    (SELECT count(*) FROM pg_catalog.pg_stat_activity
                      WHERE backend_type = 'walsender'),
                    current_user::text,
                    coalesce((SELECT rolreplication OR rolsuper FROM pg_catalog.pg_roles
                               WHERE rolname = current_user), false),
                    coalesce((SELECT rolsuper FROM pg_catalog.pg_roles
                               WHERE rolname = current_user), false)",
            &[],
        )
        .await
        .map_err(pg_err("could not read the source server's settings"))?;
    let version_num: i32 = row.get(0);
    Ok(ServerInfo {
        version_num: version_num.unsigned_abs(),
        version: row.get(1),
        wal_level: row.get(2),
        max_replication_slots: row.get(3),
        used_replication_slots: row.get(4),
        max_wal_senders: row.get(5),
        active_wal_senders: row.get(6),
        role: row.get(7),
        role_can_replicate: row.get(8),
        role_is_superuser: row.get(9),
    })
}

/// Reads [`ServerInfo`] and fails with the first problem that would stop replication:
/// `wal_level` below logical, a role without `REPLICATION`, no free slot or WAL sender.
///
/// `new_slots` is how many slots the caller is about to create (0 when resuming).
pub async fn check_ready_for_replication(
    client: &Client,
    new_slots: i64,
) -> Result<ServerInfo, SourceError> {
    let info = server_info(client).await?;
    if info.wal_level != "logical" {
        return Err(SourceError::WalLevelNotLogical {
            current: info.wal_level,
        });
    }
    if !info.role_can_replicate {
        return Err(SourceError::NoReplicationPrivilege { user: info.role });
    }
    if info.free_replication_slots() < new_slots {
        return Err(SourceError::OutOfSlots);
    }
    if info.free_wal_senders() < 1 {
        return Err(SourceError::OutOfWalSenders {
            max: info.max_wal_senders,
        });
    }
    Ok(info)
}

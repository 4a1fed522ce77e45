//! Citus's shard metadata lock, for writers that must not race shard moves and splits
//! (ROUTING.md §4.6).
//!
//! A move or split takes `ExclusiveLock` on the shard *metadata* of the shards it changes
//! (`BlockWritesToShardList`, on the coordinator and on every metadata worker) before it switches
//! placements. Citus's own writes take `ShareLock` on the same locks first. A direct writer does
//! the same in each node transaction, before writing:
//!
//! ```sql
//! BEGIN;
//! SELECT lock_shard_metadata(5, ARRAY[sorted shard ids]);   -- lock_shard_metadata_sql()
//! SELECT shardid FROM pg_dist_placement                     -- placements_on_local_group()
//!  WHERE shardid = ANY($1) AND groupid = (SELECT groupid FROM pg_dist_local_group);
//! -- a shard missing here: ROLLBACK, reload the topology, re-route its rows
//! COPY ...; COMMIT;
//! ```
//!
//! That works on MX workers (`hasmetadata AND metadatasynced`, the default since Citus 11),
//! which have the function and the catalog. Without MX, hold the lock in a coordinator session
//! around the worker commits instead. `lock_shard_metadata` requires table ownership.
//!
//! The function only exists with the Citus extension: [`has_lock_shard_metadata`] (and
//! [`crate::citus::CitusCatalog::has_lock_shard_metadata`] for the node the topology was loaded
//! from) lets the engine use it where it exists and fall back to the topology digest
//! ([`crate::citus::TopologyWatch`]) elsewhere, e.g. on the Citus-shaped test fixture.

use tokio_postgres::Client;

use crate::citus::error::CitusError;
use crate::citus::names::quote_ident;

/// PostgreSQL's `ShareLock` lock mode number, the mode Citus writers take.
pub const SHARE_LOCK: i32 = 5;

/// Whether the connected node has `lock_shard_metadata(integer, bigint[])`.
pub async fn has_lock_shard_metadata(client: &Client) -> Result<bool, CitusError> {
    let row = client
        .query_one(
            "SELECT to_regprocedure('lock_shard_metadata(integer,bigint[])') IS NOT NULL",
            &[],
        )
        .await
        .map_err(CitusError::query("looking up lock_shard_metadata"))?;
    row.try_get(0)
        .map_err(CitusError::query("looking up lock_shard_metadata"))
}

/// Shard ids sorted and deduplicated: every writer locks in the same order (no deadlocks).
pub fn lock_order(shard_ids: &[i64]) -> Vec<i64> {
    let mut ids = shard_ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The statement taking `ShareLock` on the shards' metadata; `$1` = [`lock_order`]ed ids.
pub fn lock_shard_metadata_sql() -> String {
    format!("SELECT lock_shard_metadata({SHARE_LOCK}, $1::bigint[])")
}

/// Takes `ShareLock` on the metadata of `shard_ids` in the client's current transaction.
pub async fn lock_shard_metadata(client: &Client, shard_ids: &[i64]) -> Result<(), CitusError> {
    let ids = lock_order(shard_ids);
    client
        .execute(&lock_shard_metadata_sql(), &[&ids])
        .await
        .map_err(CitusError::query("locking shard metadata"))?;
    Ok(())
}

/// Of `shard_ids`, those with a placement in the connected node's own group, read after the
/// lock (on an MX worker). Any shard missing from the result has moved or been split.
pub async fn placements_on_local_group(
    client: &Client,
    catalog_schema: &str,
    shard_ids: &[i64],
) -> Result<Vec<i64>, CitusError> {
    let q = quote_ident(catalog_schema);
    let sql = format!(
        "SELECT shardid FROM {q}.pg_dist_placement WHERE shardid = ANY($1::bigint[]) \
         AND groupid = (SELECT groupid FROM {q}.pg_dist_local_group) ORDER BY shardid"
    );
    let rows = client
        .query(&sql, &[&shard_ids])
        .await
        .map_err(CitusError::query("re-validating shard placements"))?;
    rows.iter()
        .map(|r| {
            r.try_get(0)
                .map_err(CitusError::query("re-validating shard placements"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_order_sorts_and_dedups() {
        assert_eq!(
            lock_order(&[102041, 102008, 102041, 5]),
            [5, 102008, 102041]
        );
        assert_eq!(
            lock_shard_metadata_sql(),
            "SELECT lock_shard_metadata(5, $1::bigint[])"
        );
    }
}

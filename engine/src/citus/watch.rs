//! Detecting topology changes cheaply, before each batch commits (ROUTING.md §4.6, §4.9).
//!
//! **The digest.** One query computes `md5` over the ordered `string_agg` of one text line per
//! catalog row the router depends on:
//!
//! * `pg_class` rows of the migrated tables (oid, schema, name): drop, rename, recreate;
//! * `pg_enum` rows of enum distribution types: a new label would be unroutable;
//! * on Citus: `pg_dist_partition` rows of the tables (an `alter_distributed_table` recreates
//!   the table under a new OID, so the old row disappears), their `pg_dist_shard` rows (splits
//!   create new shard ids and ranges), their `pg_dist_placement` rows (moves change the group),
//!   all of `pg_dist_node` (activation, failover, port changes) and `pg_dist_schema`.
//!
//! Why a digest rather than Citus's own signals: Citus invalidates its caches with relcache
//! callbacks, which a client cannot subscribe to; `max(shardid)`/`count(*)` misses moves, which
//! only update `groupid`. The digest is exact for what routing uses, costs one round trip and
//! O(shards + placements + nodes) server work (microseconds for hundreds of shards, a few
//! milliseconds for tens of thousands), and returns 32 bytes.
//!
//! **Safety.** The digest tells the engine that the topology it routes with is *still* current
//! at the moment of the check. A move can still commit between the check and the batch's
//! commit. On real Citus the batch's node transaction closes that window by taking
//! `lock_shard_metadata(5 /* ShareLock */, shard ids)` first — the lock a move or split must
//! take exclusively before it switches placements — and re-validating the placements after the
//! lock (see [`crate::citus::lock`]). The fixture without Citus has no such function; there the
//! digest check is the only guard and the window stays open, which the engine must document.
//!
//! **On `Changed`:** do not commit rows routed with the old topology. Roll back the batch's node
//! transactions, [`TopologyWatch::reload`], re-route the batch, retry. A table that no longer
//! exists under its name makes the reload fail with a clear error.

use tokio_postgres::Client;

use crate::citus::error::CitusError;
use crate::citus::names::quote_ident;
use crate::citus::topology::load::read_digest;
use crate::citus::topology::{CitusCatalog, TargetAddr, Topology};

/// Result of a [`TopologyWatch::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopologyStatus {
    /// The catalog rows routing depends on are as they were at load time.
    Unchanged,
    /// Something changed: reload before committing routed rows.
    Changed,
}

/// Watches the catalog rows one [`Topology`] was built from.
#[derive(Debug, Clone)]
pub struct TopologyWatch {
    catalog: Option<CitusCatalog>,
    tables: Vec<u32>,
    names: Vec<String>,
    enum_types: Vec<u32>,
    digest: String,
}

impl TopologyWatch {
    /// A watch for `topology`, starting from the digest taken in the load's own snapshot.
    pub fn new(topology: &Topology) -> TopologyWatch {
        TopologyWatch {
            catalog: topology.citus.clone(),
            tables: topology.tables.iter().map(|t| t.oid).collect(),
            names: topology.tables.iter().map(|t| t.qualified_name()).collect(),
            enum_types: topology
                .tables
                .iter()
                .flat_map(|t| t.enum_types.iter().copied())
                .collect(),
            digest: topology.digest.clone(),
        }
    }

    /// The digest the topology was loaded with (hex md5).
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// One round trip: has anything routing depends on changed since the load?
    pub async fn check(&self, client: &Client) -> Result<TopologyStatus, CitusError> {
        let now = read_digest(
            client,
            self.catalog.as_ref(),
            &self.tables,
            &self.enum_types,
        )
        .await?;
        Ok(if now == self.digest {
            TopologyStatus::Unchanged
        } else {
            TopologyStatus::Changed
        })
    }

    /// Loads a fresh topology for the same tables, by their qualified names.
    pub async fn reload(
        &self,
        client: &Client,
        target: &TargetAddr,
    ) -> Result<Topology, CitusError> {
        let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
        Topology::load(client, target, &names).await
    }
}

/// The digest query; `$1` = table OIDs, `$2` = enum type OIDs.
pub(crate) fn digest_sql(cat: Option<&CitusCatalog>) -> String {
    let mut parts = vec![
        "SELECT format('c|%s|%s|%s', c.oid, c.relnamespace, c.relname) AS r \
         FROM pg_class c WHERE c.oid = ANY($1::oid[])"
            .to_string(),
        "SELECT format('e|%s|%s|%s', e.enumtypid, e.oid, e.enumlabel) \
         FROM pg_enum e WHERE e.enumtypid = ANY($2::oid[])"
            .to_string(),
    ];
    if let Some(cat) = cat {
        let q = quote_ident(&cat.schema);
        parts.push(format!(
            "SELECT format('t|%s|%s|%s|%s|%s', p.logicalrelid::oid, p.partmethod, p.partkey, \
             p.colocationid, p.repmodel) FROM {q}.pg_dist_partition p \
             WHERE p.logicalrelid::oid = ANY($1::oid[])"
        ));
        parts.push(format!(
            "SELECT format('s|%s|%s|%s|%s', s.logicalrelid::oid, s.shardid, s.shardminvalue, \
             s.shardmaxvalue) FROM {q}.pg_dist_shard s WHERE s.logicalrelid::oid = ANY($1::oid[])"
        ));
        parts.push(format!(
            "SELECT format('p|%s|%s|%s', pl.placementid, pl.shardid, pl.groupid) \
             FROM {q}.pg_dist_placement pl JOIN {q}.pg_dist_shard s ON s.shardid = pl.shardid \
             WHERE s.logicalrelid::oid = ANY($1::oid[])"
        ));
        parts.push(format!(
            "SELECT format('n|%s|%s|%s|%s|%s|%s|%s', nd.nodeid, nd.groupid, nd.nodename, \
             nd.nodeport, nd.isactive, nd.noderole, nd.nodecluster) FROM {q}.pg_dist_node nd"
        ));
        if cat.has_dist_schema {
            parts.push(format!(
                "SELECT format('d|%s|%s', ds.schemaid, ds.colocationid) FROM {q}.pg_dist_schema ds"
            ));
        }
    }
    format!(
        "SELECT md5(coalesce(string_agg(r, E'\\n' ORDER BY r), '')) FROM ({}) d",
        parts.join(" UNION ALL ")
    )
}

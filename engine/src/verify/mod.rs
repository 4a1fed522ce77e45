//! `pgwarp verify`: is the target's data the source's data, shard by shard?
//!
//! Nothing but counts and checksums crosses the network: every row is digested where it is
//! stored ([`sql`] explains the digest and why it is a sum), the source's rows are grouped by
//! the shard their distribution value routes to, computed on the source server with the
//! coordinator's hash ranges, and each shard placement on each node is compared with its
//! bucket. A difference is therefore named by table, shard id, shard table and node, and
//! `--sample N` then lists the keys of up to N differing rows of such a shard ([`sample`]).
//!
//! ```text
//!  tables ──► describe on source and target ──► Topology::load ──► TableCheck per table
//!                                                                   │
//!           source pool ◄── scans (≤ parallel at a time) ──► node pools
//!                                                                   │
//!                                                   VerifyReport (exit 0 / 1 / 2)
//! ```
//!
//! Verify reads live data. It gives a meaningful answer when the source is not being written
//! and the sync has applied everything, which is what `pgwarp cutover` arranges before it runs
//! verify; run by hand during a sync, it shows the shards that are behind.

mod error;
pub mod report;
mod run;
pub mod sample;
pub mod session;
pub mod sql;
pub mod tables;

use std::collections::BTreeMap;
use std::time::Instant;

use tokio_postgres::Client;

use crate::citus::{TargetAddr, Topology};
use crate::config::TableScope;
use crate::conn::{ConnConfig, Host};
use crate::pipeline::catalog;
use crate::pipeline::nodes::node_targets;
use crate::pipeline::state;

pub use error::{VerifyError, pg_message};
pub use report::{Digest, Sample, ShardMismatch, TableReport, TableStatus, VerifyReport};
pub use run::MAX_SAMPLED_PLACEMENTS;

/// Default number of scans running at once.
pub const DEFAULT_PARALLEL: usize = 4;

/// What to verify and how.
#[derive(Debug, Clone)]
pub struct VerifyRequest {
    /// The source database.
    pub source: ConnConfig,
    /// The target: Citus coordinator or plain PostgreSQL.
    pub target: ConnConfig,
    /// Per-node connection overrides, keyed by `pg_dist_node` host and port.
    pub nodes: BTreeMap<(String, u16), ConnConfig>,
    /// Tables, as SQL names them on the source (`orders`, `sales.orders`).
    pub tables: Vec<String>,
    /// Scans running at once (at least 1).
    pub parallel: usize,
    /// Differing keys to list per mismatching shard placement (0: none).
    pub sample: usize,
}

/// The address a plain target's topology names its node by.
pub fn target_addr(target: &ConnConfig) -> TargetAddr {
    match target.hosts.first() {
        Some(h) => TargetAddr {
            host: match &h.host {
                Host::Tcp(name) => name.clone(),
                Host::Unix(dir) => dir.display().to_string(),
            },
            port: h.port,
        },
        None => TargetAddr {
            host: "localhost".into(),
            port: crate::conn::DEFAULT_PORT,
        },
    }
}

/// The tables a sync with `slot` was started for, from `pgwarp.sync_state` on the target, as
/// quoted qualified names; `None` when there is no such sync.
pub async fn tables_of_sync(
    target: &Client,
    slot: &str,
) -> Result<Option<Vec<String>>, VerifyError> {
    if !state::exists(target).await? {
        return Ok(None);
    }
    let Some(state) = state::load(target, slot).await? else {
        return Ok(None);
    };
    // Stored names are `schema.name` unquoted; a dot inside a schema name makes splitting
    // ambiguous, so resolve them against the target's catalog (the shells carry the same
    // names as the source tables).
    Ok(Some(
        catalog::quote_stored_names(target, &state.tables).await?,
    ))
}

/// Resolves a table scope to names on the source (schemas are listed there).
pub async fn scope_tables(source: &Client, scope: &TableScope) -> Result<Vec<String>, VerifyError> {
    match scope {
        TableScope::Tables(t) => Ok(t.clone()),
        TableScope::Schemas(s) => Ok(catalog::tables_in_schemas(source, s).await?),
    }
}

/// Verifies the tables of `req` and reports every difference.
pub async fn verify(req: &VerifyRequest) -> Result<VerifyReport, VerifyError> {
    let started = Instant::now();
    if req.tables.is_empty() {
        return Err(VerifyError::NoTables("no tables to verify".to_owned()));
    }
    let src = session::open("source", &req.source).await?;
    let tgt = session::open("target", &req.target).await?;

    let sources = describe_all(&src.client, &req.tables, "source").await?;
    let qualified: Vec<String> = sources
        .iter()
        .map(|t| sql::qualified(&t.schema, &t.name))
        .collect();
    let targets = describe_all(&tgt.client, &qualified, "target").await?;
    let refs: Vec<&str> = qualified.iter().map(String::as_str).collect();
    let topology = Topology::load(&tgt.client, &target_addr(&req.target), &refs).await?;
    let checks = tables::build(src.version, &tgt.client, &sources, &targets, &topology).await?;

    let source_pool = session::Pool::new("source", req.source.clone());
    source_pool.put(src);
    let node_pools: Vec<session::Pool> = node_targets(&topology, &req.target, &req.nodes)
        .into_iter()
        .map(|n| session::Pool::new(n.label, n.config))
        .collect();
    let reports = run::compare(
        &checks,
        &topology,
        &source_pool,
        &node_pools,
        req.parallel,
        req.sample,
    )
    .await;
    let equal = reports.iter().all(|r| r.status == TableStatus::Equal);
    Ok(VerifyReport {
        equal,
        tables: reports,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

async fn describe_all(
    client: &Client,
    names: &[String],
    side: &str,
) -> Result<Vec<catalog::TableInfo>, VerifyError> {
    let found = catalog::describe(client, names).await?;
    names
        .iter()
        .zip(found)
        .map(|(name, t)| {
            t.ok_or_else(|| {
                VerifyError::Table(format!("table {name} does not exist on the {side}"))
            })
        })
        .collect()
}

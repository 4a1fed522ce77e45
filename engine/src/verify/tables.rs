//! What to compare for each table: columns, key, how the source is bucketed, and which shard
//! tables on which nodes hold the target's rows.
//!
//! Built once from the source's catalog, the target's catalog and the target's topology, before
//! any data is read, so that a table that cannot be verified (missing on one side, a column
//! missing on the target, a distribution type the source cannot hash the way the coordinator
//! does) is reported before the scans start.

use std::collections::HashMap;

use tokio_postgres::Client;

use crate::citus::{CitusTable, HashKernel, NodeIndex, TableKind, Topology};
use crate::pipeline::catalog::TableInfo;

use super::error::VerifyError;
use super::sql::{SourceHash, contiguous_minimums, qualified};

/// One shard of a table, and the nodes holding a copy of it.
#[derive(Debug, Clone)]
pub struct ShardCheck {
    /// `pg_dist_shard.shardid` (0 for a plain table).
    pub shard_id: i64,
    /// The shard table, qualified and quoted.
    pub table: String,
    /// Hash range.
    pub range: Option<(i32, i32)>,
    /// Every placement (reference tables: every node).
    pub nodes: Vec<NodeIndex>,
}

/// Everything needed to verify one table.
#[derive(Debug, Clone)]
pub struct TableCheck {
    /// `schema.name`, for the report.
    pub display: String,
    /// Distribution kind on the target.
    pub kind: TableKind,
    /// The source table, qualified and quoted.
    pub source_table: String,
    /// Compared columns: the source's replicated columns, by name.
    pub columns: Vec<String>,
    /// Key columns for samples (replica identity); empty when none.
    pub key: Vec<String>,
    /// How source rows are bucketed, for hash tables.
    pub hash: Option<SourceHash>,
    /// Shard minimums (`$1` of the bucketed queries); empty without a hash.
    pub minimums: Vec<i32>,
    /// The shards, in bucket order.
    pub shards: Vec<ShardCheck>,
    /// Distribution column hashed on the nodes to count rows outside their shard's range
    /// (`None` for enums, whose OIDs differ between nodes, and non-hash tables).
    pub misplaced_column: Option<String>,
    /// Notes for the report that are not differences.
    pub warnings: Vec<String>,
}

/// Builds the checks for `sources` (source catalog) against `targets` (target catalog, same
/// order) and the target's topology (same order).
pub async fn build(
    source_version: u32,
    target: &Client,
    sources: &[TableInfo],
    targets: &[TableInfo],
    topology: &Topology,
) -> Result<Vec<TableCheck>, VerifyError> {
    let mut checks = Vec::with_capacity(sources.len());
    let stranded = stranded_shells(target, topology).await?;
    for ((src, tgt), ct) in sources.iter().zip(targets).zip(&topology.tables) {
        let display = src.display_name();
        let columns = src.column_names();
        let target_columns: Vec<&str> = tgt.columns().map(|c| c.name.as_str()).collect();
        let missing: Vec<&str> = columns
            .iter()
            .map(String::as_str)
            .filter(|c| !target_columns.contains(c))
            .collect();
        if !missing.is_empty() {
            return Err(VerifyError::Table(format!(
                "table \"{display}\": column(s) {} missing on the target",
                missing.join(", ")
            )));
        }
        let mut warnings = Vec::new();
        let extra: Vec<&str> = target_columns
            .iter()
            .copied()
            .filter(|c| !columns.iter().any(|s| s == c))
            .collect();
        if !extra.is_empty() {
            warnings.push(format!(
                "target column(s) {} are not on the source and were not compared",
                extra.join(", ")
            ));
        }
        if let Some(bytes) = stranded.get(&ct.oid) {
            warnings.push(format!(
                "the coordinator's shell table holds {bytes} bytes of local data that queries do \
                 not see (rows written through the shell, e.g. by CREATE SUBSCRIPTION, or left \
                 by create_distributed_table: see truncate_local_data_after_distributing_table)"
            ));
        }
        let (hash, minimums, misplaced_column) = bucketing(source_version, target, src, ct).await?;
        checks.push(TableCheck {
            display,
            kind: ct.kind,
            source_table: qualified(&src.schema, &src.name),
            columns,
            key: src.key.clone(),
            hash,
            minimums,
            shards: ct
                .shards
                .iter()
                .map(|s| ShardCheck {
                    shard_id: s.shard_id,
                    table: s.qualified_name.clone(),
                    range: s.range,
                    nodes: s.placements.clone(),
                })
                .collect(),
            misplaced_column,
            warnings,
        });
    }
    Ok(checks)
}

type Bucketing = (Option<SourceHash>, Vec<i32>, Option<String>);

/// How a hash table's source rows are bucketed; nothing for other kinds.
async fn bucketing(
    source_version: u32,
    target: &Client,
    src: &TableInfo,
    ct: &CitusTable,
) -> Result<Bucketing, VerifyError> {
    let (TableKind::Hash, Some(col)) = (ct.kind, &ct.dist_column) else {
        return Ok((None, Vec::new(), None));
    };
    let display = src.display_name();
    let ranges: Vec<(i32, i32)> = ct.shards.iter().filter_map(|s| s.range).collect();
    let minimums = match contiguous_minimums(&ranges) {
        Some(m) if ranges.len() == ct.shards.len() => m,
        _ => {
            return Err(VerifyError::Table(format!(
                "table \"{display}\": its shards' hash ranges do not cover the hash space \
                 without gaps; cannot bucket the source by shard"
            )));
        }
    };
    if source_version < 140_000 {
        return Err(VerifyError::Table(format!(
            "table \"{display}\" is hash-distributed: verifying it needs hash_record() on the \
             source, which PostgreSQL {} lacks (14 or later is needed)",
            source_version / 10_000
        )));
    }
    let Some(src_col) = src.all_columns.iter().find(|c| c.name == col.name) else {
        return Err(VerifyError::Table(format!(
            "table \"{display}\": distribution column \"{}\" does not exist on the source",
            col.name
        )));
    };
    let hash = match ct.router.kernel() {
        Some(HashKernel::Enum(_)) => SourceHash::Enum {
            column: col.name.clone(),
            labels: enum_labels(target, col.base_type_oid).await?,
        },
        Some(HashKernel::Array(inner)) if matches!(**inner, HashKernel::Enum(_)) => {
            return Err(VerifyError::Table(format!(
                "table \"{display}\" is distributed by an array of enums (\"{}\"): its enum OIDs \
                 differ between source and coordinator and verify cannot bucket it",
                col.name
            )));
        }
        _ => SourceHash::Builtin {
            column: col.name.clone(),
            cast: if src_col.type_oid == col.base_type_oid {
                None
            } else {
                Some(type_name(target, col.base_type_oid).await?)
            },
        },
    };
    let misplaced = match hash {
        SourceHash::Enum { .. } => None,
        SourceHash::Builtin { .. } => Some(col.name.clone()),
    };
    Ok((Some(hash), minimums, misplaced))
}

/// The coordinator's labels of an enum with their OIDs.
async fn enum_labels(target: &Client, type_oid: u32) -> Result<Vec<(String, u32)>, VerifyError> {
    const WHAT: &str = "could not read enum labels";
    let rows = target
        .query(
            "SELECT enumlabel::text, oid FROM pg_catalog.pg_enum WHERE enumtypid = $1 \
             ORDER BY enumsortorder",
            &[&type_oid],
        )
        .await
        .map_err(VerifyError::query(WHAT, "target"))?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(VerifyError::query(WHAT, "target"))
}

/// `format_type(oid, NULL)` on the target (a built-in type: the same name on the source).
async fn type_name(target: &Client, oid: u32) -> Result<String, VerifyError> {
    const WHAT: &str = "could not read a type name";
    target
        .query_one("SELECT pg_catalog.format_type($1, NULL)", &[&oid])
        .await
        .and_then(|r| r.try_get(0))
        .map_err(VerifyError::query(WHAT, "target"))
}

/// Citus shell tables on the coordinator whose storage is not empty: rows there are invisible
/// to every query (the trap of writing through the shell).
async fn stranded_shells(
    target: &Client,
    topology: &Topology,
) -> Result<HashMap<u32, i64>, VerifyError> {
    let oids: Vec<u32> = topology
        .tables
        .iter()
        .filter(|t| t.kind != TableKind::Plain)
        .map(|t| t.oid)
        .collect();
    if oids.is_empty() {
        return Ok(HashMap::new());
    }
    const WHAT: &str = "could not read the size of the shell tables";
    let rows = target
        .query(
            "SELECT c.oid, pg_catalog.pg_relation_size(c.oid) FROM pg_catalog.pg_class c \
             WHERE c.oid = ANY($1::oid[]) AND c.relkind = 'r' \
               AND pg_catalog.pg_relation_size(c.oid) > 0",
            &[&oids],
        )
        .await
        .map_err(VerifyError::query(WHAT, "target"))?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(VerifyError::query(WHAT, "target"))
}

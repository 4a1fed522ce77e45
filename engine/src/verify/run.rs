//! Running the scans in parallel and putting the report together.
//!
//! ```text
//!  source:  one scan per table ─────────────► (bucket, rows, sum) per shard index
//!  node k:  one UNION ALL per (table, node) ─► (shard id, rows, sum, misplaced) per shard table
//!                      │                            │
//!                      └──── compare per placement ─┘──► mismatches ──(--sample)──► keys
//! ```
//!
//! Units of work (one source scan per table, one query per table and node) run at most
//! `parallel` at a time, each on a session taken from its server's pool. A unit that fails
//! marks its table as not compared (exit status 2) without stopping the others.

use std::collections::HashMap;

use futures_util::StreamExt;
use tokio_postgres::types::ToSql;

use crate::citus::Topology;

use super::error::VerifyError;
use super::report::{Digest, ShardMismatch, TableReport, TableStatus};
use super::sample::sample;
use super::session::Pool;
use super::sql::{ShardScan, source_checksum, target_checksum};
use super::tables::TableCheck;

/// Most placements sampled in one run (each sample reads a whole shard on both sides).
pub const MAX_SAMPLED_PLACEMENTS: usize = 16;

/// Source rows per bucket of one table.
#[derive(Debug, Default)]
struct SourceBuckets {
    /// Indexed by shard index.
    buckets: HashMap<usize, Digest>,
    /// Rows without a bucket.
    unroutable: i64,
}

/// One placement's digest and misplaced count, by shard id.
type NodeDigests = HashMap<i64, (Digest, Option<i64>)>;

enum Unit {
    Source(usize),
    Node(usize, usize),
}

enum Outcome {
    Source(usize, Result<SourceBuckets, VerifyError>),
    Node(usize, usize, Result<NodeDigests, VerifyError>),
}

/// Scans everything and compares; `sample` > 0 adds differing keys.
pub async fn compare(
    checks: &[TableCheck],
    topology: &Topology,
    source: &Pool,
    nodes: &[Pool],
    parallel: usize,
    sample_size: usize,
) -> Vec<TableReport> {
    let mut units = Vec::new();
    for (t, check) in checks.iter().enumerate() {
        units.push(Unit::Source(t));
        let mut on: Vec<usize> = check.shards.iter().flat_map(|s| s.nodes.clone()).collect();
        on.sort_unstable();
        on.dedup();
        units.extend(on.into_iter().map(|n| Unit::Node(t, n)));
    }
    let outcomes: Vec<Outcome> = futures_util::stream::iter(units)
        .map(|unit| async move {
            match unit {
                Unit::Source(t) => Outcome::Source(t, scan_source(&checks[t], source).await),
                Unit::Node(t, n) => match nodes.get(n) {
                    Some(pool) => Outcome::Node(t, n, scan_node(&checks[t], n, pool).await),
                    None => Outcome::Node(
                        t,
                        n,
                        Err(VerifyError::Table(format!("placement on unknown node {n}"))),
                    ),
                },
            }
        })
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;

    let mut sources: HashMap<usize, Result<SourceBuckets, VerifyError>> = HashMap::new();
    let mut targets: HashMap<(usize, usize), Result<NodeDigests, VerifyError>> = HashMap::new();
    for o in outcomes {
        match o {
            Outcome::Source(t, r) => {
                sources.insert(t, r);
            }
            Outcome::Node(t, n, r) => {
                targets.insert((t, n), r);
            }
        }
    }

    let mut reports = Vec::with_capacity(checks.len());
    for (t, check) in checks.iter().enumerate() {
        let source_result = sources.remove(&t);
        let node_results: HashMap<usize, &Result<NodeDigests, VerifyError>> = targets
            .iter()
            .filter(|((tt, _), _)| *tt == t)
            .map(|((_, n), r)| (*n, r))
            .collect();
        reports.push(assemble(check, topology, source_result, &node_results));
    }

    if sample_size > 0 {
        add_samples(checks, &mut reports, source, nodes, topology, sample_size).await;
    }
    reports
}

async fn scan_source(check: &TableCheck, pool: &Pool) -> Result<SourceBuckets, VerifyError> {
    let sql = source_checksum(&check.source_table, &check.columns, check.hash.as_ref());
    let session = pool.get().await?;
    let what = format!("could not checksum table {}", check.display);
    let p: Vec<&(dyn ToSql + Sync)> = if check.hash.is_some() {
        vec![&check.minimums]
    } else {
        Vec::new()
    };
    let rows = session
        .client
        .query(&sql, &p)
        .await
        .map_err(VerifyError::query(what.clone(), &pool.label))?;
    pool.put(session);
    let mut out = SourceBuckets::default();
    for row in rows {
        let read = || -> Result<(Option<i32>, i64, String), tokio_postgres::Error> {
            Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
        };
        let (bucket, rows, sum) = read().map_err(VerifyError::query(what.clone(), &pool.label))?;
        match bucket
            .and_then(|b| usize::try_from(b).ok())
            .filter(|b| *b >= 1)
        {
            Some(b) => {
                out.buckets.insert(b - 1, Digest { rows, sum });
            }
            None => out.unroutable += rows,
        }
    }
    Ok(out)
}

async fn scan_node(
    check: &TableCheck,
    node: usize,
    pool: &Pool,
) -> Result<NodeDigests, VerifyError> {
    let session = pool.get().await?;
    let misplaced = check
        .misplaced_column
        .as_deref()
        .filter(|_| session.version >= 140_000);
    let shards: Vec<ShardScan> = check
        .shards
        .iter()
        .filter(|s| s.nodes.contains(&node))
        .map(|s| ShardScan {
            shard_id: s.shard_id,
            table: s.table.clone(),
            range: s.range,
        })
        .collect();
    let sql = target_checksum(&shards, &check.columns, misplaced);
    let what = format!("could not checksum the shards of {}", check.display);
    let rows = session
        .client
        .query(&sql, &[])
        .await
        .map_err(VerifyError::query(what.clone(), &pool.label))?;
    pool.put(session);
    let mut out = NodeDigests::new();
    for row in rows {
        let read = || -> Result<(i64, i64, String, Option<i64>), tokio_postgres::Error> {
            Ok((
                row.try_get(0)?,
                row.try_get(1)?,
                row.try_get(2)?,
                row.try_get(3)?,
            ))
        };
        let (id, rows, sum, misplaced) =
            read().map_err(VerifyError::query(what.clone(), &pool.label))?;
        out.insert(id, (Digest { rows, sum }, misplaced));
    }
    Ok(out)
}

fn error_report(check: &TableCheck, message: String) -> TableReport {
    TableReport {
        table: check.display.clone(),
        kind: check.kind,
        status: TableStatus::Error,
        source_rows: None,
        target_rows: None,
        shards: check.shards.len(),
        mismatches: Vec::new(),
        unroutable_source_rows: 0,
        error: Some(message),
        warnings: check.warnings.clone(),
    }
}

fn assemble(
    check: &TableCheck,
    topology: &Topology,
    source: Option<Result<SourceBuckets, VerifyError>>,
    nodes: &HashMap<usize, &Result<NodeDigests, VerifyError>>,
) -> TableReport {
    let source = match source {
        Some(Ok(s)) => s,
        Some(Err(e)) => return error_report(check, e.to_string()),
        None => return error_report(check, "the source was not scanned".to_owned()),
    };
    let mut node_ids: Vec<&usize> = nodes.keys().collect();
    node_ids.sort();
    for n in node_ids {
        if let Some(Err(e)) = nodes.get(n) {
            return error_report(check, e.to_string());
        }
    }
    let mut mismatches = Vec::new();
    let mut target_rows = 0i64;
    for (i, shard) in check.shards.iter().enumerate() {
        let expected = source
            .buckets
            .get(&i)
            .cloned()
            .unwrap_or_else(Digest::empty);
        for (p, &n) in shard.nodes.iter().enumerate() {
            let found = nodes
                .get(&n)
                .and_then(|r| r.as_ref().ok())
                .and_then(|d| d.get(&shard.shard_id));
            let (digest, misplaced) = match found {
                Some((d, m)) => (d.clone(), *m),
                None => {
                    return error_report(
                        check,
                        format!("shard {} was not scanned", shard.shard_id),
                    );
                }
            };
            if p == 0 {
                target_rows += digest.rows;
            }
            if digest != expected || misplaced.is_some_and(|m| m > 0) {
                mismatches.push(ShardMismatch {
                    shard_id: shard.shard_id,
                    shard_table: shard.table.clone(),
                    node: topology
                        .node(n)
                        .map_or_else(|| format!("node {n}"), ToString::to_string),
                    range: shard.range,
                    source: expected.clone(),
                    target: digest,
                    misplaced_rows: misplaced,
                    sample: None,
                });
            }
        }
    }
    let source_rows = source.buckets.values().map(|d| d.rows).sum::<i64>() + source.unroutable;
    let status = if mismatches.is_empty() && source.unroutable == 0 {
        TableStatus::Equal
    } else {
        TableStatus::Mismatch
    };
    TableReport {
        table: check.display.clone(),
        kind: check.kind,
        status,
        source_rows: Some(source_rows),
        target_rows: Some(target_rows),
        shards: check.shards.len(),
        mismatches,
        unroutable_source_rows: source.unroutable,
        error: None,
        warnings: check.warnings.clone(),
    }
}

async fn add_samples(
    checks: &[TableCheck],
    reports: &mut [TableReport],
    source: &Pool,
    nodes: &[Pool],
    topology: &Topology,
    limit: usize,
) {
    let mut budget = MAX_SAMPLED_PLACEMENTS;
    for (check, report) in checks.iter().zip(reports.iter_mut()) {
        for m in &mut report.mismatches {
            if budget == 0 {
                report
                    .warnings
                    .push("more mismatching shards than --sample lists keys for".to_owned());
                return;
            }
            let Some(index) = check.shards.iter().position(|s| s.shard_id == m.shard_id) else {
                continue;
            };
            let Some(pool) = topology
                .nodes
                .iter()
                .position(|node| node.to_string() == m.node)
                .and_then(|n| nodes.get(n))
            else {
                continue;
            };
            budget -= 1;
            match sample(check, index, &m.shard_table, source, pool, limit).await {
                Ok(s) => m.sample = Some(s),
                Err(e) => report
                    .warnings
                    .push(format!("could not sample shard {}: {e}", m.shard_id)),
            }
        }
    }
}

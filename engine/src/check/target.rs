//! Target checks that read the Citus metadata and the nodes: routability, unique keys that
//! contain the distribution column, shells without local rows, reachable nodes, and empty
//! shards before a first sync.

use std::collections::BTreeMap;

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use crate::citus::names::quote_ident;
use futures_util::future::try_join_all;

use crate::citus::{TableKind, TargetAddr, Topology};
use crate::config::Settings;
use crate::conn::connect;
use crate::pipeline::PipelineError;
use crate::pipeline::catalog::TableInfo;
use crate::pipeline::nodes::{NodeTarget, node_targets, target_addr};

use super::{ProblemKind, Report, privileges};

fn qualified(t: &TableInfo) -> String {
    format!("{}.{}", quote_ident(&t.schema), quote_ident(&t.name))
}

/// Adds the Citus and node problems of `pairs` (source, target) to `report`.
pub async fn check(
    settings: &Settings,
    target: &Client,
    pairs: &[(TableInfo, TableInfo)],
    resuming: bool,
    report: &mut Report,
) -> Result<(), PipelineError> {
    let addr = target_addr(settings);
    let (routable, loaded) = routable_pairs(target, &addr, pairs, report).await;
    if routable.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = routable.iter().map(|(_, t)| qualified(t)).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let topology = match loaded {
        Some(topology) => topology,
        None => Topology::load(target, &addr, &refs).await?,
    };
    tracing::debug!("check: topology loaded");

    let shell_sizes = if topology.is_citus() {
        let shells: Vec<u32> = topology
            .tables
            .iter()
            .filter(|t| !matches!(t.kind, TableKind::Plain | TableKind::CitusLocal))
            .map(|t| t.oid)
            .collect();
        shell_sizes(target, &shells).await?
    } else {
        BTreeMap::new()
    };
    for ((source, target_table), table) in routable.iter().zip(&topology.tables) {
        let name = source.display_name();
        if let (TableKind::Hash, Some(dist)) = (table.kind, &table.dist_column) {
            for key in &target_table.unique_keys {
                if !key.contains(&dist.name) {
                    report.add(
                        ProblemKind::UniqueKeyWithoutDistColumn,
                        format!(
                            "unique key ({}) of distributed table \"{name}\" does not include \
                             the distribution column \"{}\": Citus cannot enforce it across \
                             shards",
                            key.join(", "),
                            dist.name
                        ),
                    );
                }
            }
            if !source.key.is_empty() && !source.key.contains(&dist.name) {
                report.add(
                    ProblemKind::UniqueKeyWithoutDistColumn,
                    format!(
                        "the replica identity ({}) of table \"{name}\" on the source does not \
                         include the distribution column \"{}\": a deleted row could not be \
                         routed to its shard",
                        source.key.join(", "),
                        dist.name
                    ),
                );
            }
        }
        if let Some(&size) = shell_sizes.get(&table.oid)
            && size > 0
        {
            report.add(
                ProblemKind::ShellHasLocalRows,
                format!(
                    "the coordinator's shell table \"{name}\" holds local data ({size} bytes) \
                     that queries do not show: remove it with SELECT \
                     truncate_local_data_after_distributing_table('{}')",
                    qualified(target_table).replace('\'', "''")
                ),
            );
        }
    }

    tracing::debug!("check: shells checked");
    // every node must be reachable and writable; before a first sync every shard empty
    let nodes = node_targets(&topology, &settings.target, &settings.nodes);
    let target_label = format!("{}:{}", addr.host, addr.port);
    let mut placements: BTreeMap<usize, Vec<privileges::NodeShard>> = BTreeMap::new();
    for ((source, target_table), table) in routable.iter().zip(&topology.tables) {
        for shard in &table.shards {
            for &node in &shard.placements {
                placements.entry(node).or_default().push((
                    source.display_name(),
                    qualified(target_table),
                    shard.qualified_name.clone(),
                ));
            }
        }
    }
    let mut shards_by_node: BTreeMap<usize, Vec<(String, String)>> = BTreeMap::new();
    for ((source, _), table) in routable.iter().zip(&topology.tables) {
        for shard in &table.shards {
            if let Some(&node) = shard.placements.first() {
                shards_by_node
                    .entry(node)
                    .or_default()
                    .push((source.display_name(), shard.qualified_name.clone()));
            }
        }
    }
    // one connection per node, all at once; the findings are added in node order
    let findings = try_join_all(nodes.iter().enumerate().map(|(i, node)| {
        let list = placements.get(&i).map(Vec::as_slice);
        let shards = if resuming {
            None
        } else {
            shards_by_node.get(&i)
        };
        check_node(node, &target_label, list, shards, topology.is_citus())
    }))
    .await?;
    for (node, found) in nodes.iter().zip(findings) {
        report.problems.extend(found.problems);
        for table in found.not_empty {
            if report.problems.iter().any(|p| {
                p.kind == ProblemKind::TargetNotEmpty && p.message.contains(&format!("\"{table}\""))
            }) {
                continue;
            }
            report.add(
                ProblemKind::TargetNotEmpty,
                format!(
                    "table \"{table}\" already holds rows on the target (node {}): a new sync \
                     copies every row and needs empty tables; empty it, or resume the sync that \
                     wrote them with the same --slot",
                    node.label
                ),
            );
        }
    }
    Ok(())
}

/// The pairs whose target table can be routed (a problem for each other one), and their
/// topology when all of them can. One catalog load for all tables; only when that fails, one
/// per table to name the tables at fault (a load fails on the first unroutable table it meets,
/// and never because of another table).
async fn routable_pairs<'a>(
    target: &Client,
    addr: &TargetAddr,
    pairs: &'a [(TableInfo, TableInfo)],
    report: &mut Report,
) -> (Vec<(&'a TableInfo, &'a TableInfo)>, Option<Topology>) {
    let names: Vec<String> = pairs.iter().map(|(_, t)| qualified(t)).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    if let Ok(topology) = Topology::load(target, addr, &refs).await {
        return (pairs.iter().map(|(s, t)| (s, t)).collect(), Some(topology));
    }
    let mut routable = Vec::new();
    for ((source, target_table), name) in pairs.iter().zip(&names) {
        match Topology::load(target, addr, &[name.as_str()]).await {
            Err(e) => report.add(
                ProblemKind::UnroutableTable,
                format!("table \"{}\" cannot be routed: {e}", source.display_name()),
            ),
            Ok(_) => routable.push((source, target_table)),
        }
    }
    (routable, None)
}

/// What one node's check found.
#[derive(Default)]
struct NodeFindings {
    /// Problems, in the order found.
    problems: Vec<super::Problem>,
    /// Tables (display names) with rows in a shard on the node.
    not_empty: Vec<String>,
}

/// Checks one node: reachable, privileges on the server (unless it is the target itself) and
/// on its shards, and, with `shards` (a first sync), that those shards are empty.
async fn check_node(
    node: &NodeTarget,
    target_label: &str,
    placements: Option<&[privileges::NodeShard]>,
    shards: Option<&Vec<(String, String)>>,
    citus: bool,
) -> Result<NodeFindings, PipelineError> {
    let mut report = Report::default();
    let client = match connect(&node.config).await {
        Ok((c, _)) => c,
        Err(e) => {
            report.add(
                ProblemKind::Unreachable,
                format!("cannot connect to node {}: {e}", node.label),
            );
            return Ok(NodeFindings {
                problems: report.problems,
                not_empty: Vec::new(),
            });
        }
    };
    if node.label != target_label {
        privileges::server(&client, &format!("node {}", node.label), &mut report).await?;
    }
    if let Some(list) = placements {
        privileges::shards(&client, &node.label, list, citus, &mut report).await?;
    }
    let mut not_empty: Vec<String> = Vec::new();
    for chunk in shards.map(Vec::as_slice).unwrap_or_default().chunks(200) {
        let sql = chunk
            .iter()
            .enumerate()
            .map(|(n, (_, s))| format!("SELECT {n}, EXISTS (SELECT 1 FROM ONLY {s})"))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let rows = match client.query(&sql, &[]).await {
            Ok(rows) => rows,
            // reported as a missing SELECT above
            Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => break,
            Err(e) => {
                return Err(PipelineError::Query {
                    what: format!("could not look into the shards on node {}", node.label),
                    source: e,
                });
            }
        };
        for row in rows {
            let (n, has_rows): (i32, bool) = (
                row.try_get(0)
                    .map_err(PipelineError::query("unexpected shard check row"))?,
                row.try_get(1)
                    .map_err(PipelineError::query("unexpected shard check row"))?,
            );
            let Some((table, _)) = usize::try_from(n).ok().and_then(|n| chunk.get(n)) else {
                continue;
            };
            if has_rows && !not_empty.contains(table) {
                not_empty.push(table.clone());
            }
        }
    }
    Ok(NodeFindings {
        problems: report.problems,
        not_empty,
    })
}

/// The size of each coordinator shell table in `oids`, in one query.
async fn shell_sizes(target: &Client, oids: &[u32]) -> Result<BTreeMap<u32, i64>, PipelineError> {
    if oids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let what = "could not read the size of a shell table";
    let rows = target
        .query(
            "SELECT o, pg_catalog.pg_relation_size(o) FROM unnest($1::oid[]) AS o",
            &[&oids],
        )
        .await
        .map_err(PipelineError::query(what))?;
    let mut out = BTreeMap::new();
    for row in rows {
        let oid: u32 = row.try_get(0).map_err(PipelineError::query(what))?;
        let size: i64 = row.try_get(1).map_err(PipelineError::query(what))?;
        out.insert(oid, size);
    }
    Ok(out)
}

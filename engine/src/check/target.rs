//! Target checks that read the Citus metadata and the nodes: routability, unique keys that
//! contain the distribution column, shells without local rows, reachable nodes, and empty
//! shards before a first sync.

use std::collections::BTreeMap;

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use crate::citus::names::quote_ident;
use crate::citus::{TableKind, Topology};
use crate::config::Settings;
use crate::conn::connect;
use crate::pipeline::PipelineError;
use crate::pipeline::catalog::TableInfo;
use crate::pipeline::nodes::{node_targets, target_addr};

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
    let mut routable = Vec::new();
    for (source, target_table) in pairs {
        let name = qualified(target_table);
        match Topology::load(target, &addr, &[name.as_str()]).await {
            Err(e) => report.add(
                ProblemKind::UnroutableTable,
                format!("table \"{}\" cannot be routed: {e}", source.display_name()),
            ),
            Ok(_) => routable.push((source, target_table)),
        }
    }
    if routable.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = routable.iter().map(|(_, t)| qualified(t)).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let topology = Topology::load(target, &addr, &refs).await?;

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
        if topology.is_citus() && !matches!(table.kind, TableKind::Plain | TableKind::CitusLocal) {
            let size: i64 = target
                .query_one("SELECT pg_catalog.pg_relation_size($1::oid)", &[&table.oid])
                .await
                .and_then(|r| r.try_get(0))
                .map_err(PipelineError::query(
                    "could not read the size of a shell table",
                ))?;
            if size > 0 {
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
    }

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
    for (i, node) in nodes.iter().enumerate() {
        let client = match connect(&node.config).await {
            Ok((c, _)) => c,
            Err(e) => {
                report.add(
                    ProblemKind::Unreachable,
                    format!("cannot connect to node {}: {e}", node.label),
                );
                continue;
            }
        };
        if node.label != target_label {
            privileges::server(&client, &format!("node {}", node.label), report).await?;
        }
        if let Some(list) = placements.get(&i) {
            privileges::shards(&client, &node.label, list, topology.is_citus(), report).await?;
        }
        if resuming {
            continue;
        }
        let Some(shards) = shards_by_node.get(&i) else {
            continue;
        };
        let mut reported: Vec<&str> = Vec::new();
        for chunk in shards.chunks(200) {
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
                if has_rows && !reported.contains(&table.as_str()) {
                    reported.push(table);
                }
            }
        }
        for table in reported {
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

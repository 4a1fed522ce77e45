//! Turning catalog rows into a validated [`CitusTable`]: table classification (ROUTING.md
//! §1.2), shard ordering and range validation (§2.3), placement → node resolution (§1.6).
//!
//! Pure functions over plain row structs, so that every invariant is unit-tested without a
//! server; `load.rs` only fetches the rows.

use std::collections::HashMap;

use crate::citus::error::CitusError;
use crate::citus::hash::HashKernel;
use crate::citus::names::{quote_qualified, shard_rel_name};
use crate::citus::router::{ShardRanges, TableRouter};

use super::load::TargetAddr;
use super::{CitusTable, DistColumn, Node, NodeIndex, Shard, TableKind};

/// A relation of the requested table list.
#[derive(Debug, Clone)]
pub(super) struct RelRow {
    pub oid: u32,
    pub schema: String,
    pub name: String,
}

/// A `pg_dist_partition` row.
#[derive(Debug, Clone)]
pub(super) struct PartitionRow {
    pub partmethod: String,
    pub partkey: Option<String>,
    pub colocation_id: i32,
    pub repmodel: String,
    /// `colocationid IN (SELECT colocationid FROM pg_dist_schema)`.
    pub tenant: bool,
}

/// A `pg_dist_shard` row with the groups of its placements.
#[derive(Debug, Clone)]
pub(super) struct ShardRow {
    pub shard_id: i64,
    pub min: Option<String>,
    pub max: Option<String>,
    pub groups: Vec<i32>,
}

/// A `pg_dist_node` row.
#[derive(Debug, Clone)]
pub(super) struct NodeRow {
    pub node_id: i32,
    pub group_id: i32,
    pub host: String,
    pub port: i32,
    pub active: bool,
    pub role: String,
    pub cluster: String,
}

/// The primary nodes of cluster `'default'`, looked up by group.
#[derive(Debug, Default)]
pub(super) struct NodeSet {
    pub nodes: Vec<Node>,
    active: Vec<bool>,
    by_group: HashMap<i32, Vec<NodeIndex>>,
    target: Option<NodeIndex>,
}

/// Where a placement's group leads.
enum GroupNode {
    Active(NodeIndex),
    Inactive(NodeIndex),
    Missing,
}

impl NodeSet {
    pub fn new(rows: Vec<NodeRow>) -> Result<Self, CitusError> {
        let mut set = NodeSet::default();
        let mut rows = rows;
        rows.sort_by_key(|r| r.node_id);
        for r in rows {
            if r.role != "primary" || r.cluster != "default" {
                continue;
            }
            let port = u16::try_from(r.port).map_err(|_| {
                CitusError::Catalog(format!("node {} has port {}", r.node_id, r.port))
            })?;
            let idx = set.nodes.len();
            set.nodes.push(Node {
                node_id: r.node_id,
                group_id: r.group_id,
                host: r.host,
                port,
            });
            set.active.push(r.active);
            set.by_group.entry(r.group_id).or_default().push(idx);
        }
        Ok(set)
    }

    fn group(&self, group_id: i32) -> Result<GroupNode, String> {
        match self.by_group.get(&group_id).map(Vec::as_slice) {
            None | Some([]) => Ok(GroupNode::Missing),
            Some([idx]) if self.active[*idx] => Ok(GroupNode::Active(*idx)),
            Some([idx]) => Ok(GroupNode::Inactive(*idx)),
            Some(_) => Err(format!(
                "node group {group_id} has more than one primary node"
            )),
        }
    }

    /// The node plain tables are written to: the coordinator's `pg_dist_node` row if it has
    /// one, else the address the topology was loaded from.
    pub fn target(&mut self, addr: &TargetAddr) -> NodeIndex {
        if let Some(t) = self.target {
            return t;
        }
        let idx = match self.by_group.get(&0).map(Vec::as_slice) {
            Some([idx]) => *idx,
            _ => {
                self.nodes.push(Node {
                    node_id: 0,
                    group_id: 0,
                    host: addr.host.clone(),
                    port: addr.port,
                });
                self.active.push(true);
                self.nodes.len() - 1
            }
        };
        self.target = Some(idx);
        idx
    }
}

/// ROUTING.md §1.2.
pub(super) fn classify(table: &str, p: &PartitionRow) -> Result<TableKind, CitusError> {
    match p.partmethod.as_str() {
        "h" => Ok(TableKind::Hash),
        "n" if p.repmodel == "t" => Ok(TableKind::Reference),
        "n" if p.colocation_id == 0 => Ok(TableKind::CitusLocal),
        "n" if p.tenant => Ok(TableKind::Tenant),
        "n" => Ok(TableKind::SingleShard),
        other => Err(CitusError::UnsupportedMethod {
            table: table.to_string(),
            method: other.to_string(),
        }),
    }
}

/// What the loader resolved for a hash table's distribution column.
pub(super) struct HashColumn {
    pub column: DistColumn,
    pub kernel: HashKernel,
    pub enum_types: Vec<u32>,
}

/// A plain (non-Citus) table: its one "shard" is the table itself on the target node.
pub(super) fn plain_table(rel: RelRow, nodes: &mut NodeSet, addr: &TargetAddr) -> CitusTable {
    let node = nodes.target(addr);
    let shard = Shard {
        shard_id: 0,
        range: None,
        qualified_name: quote_qualified(&rel.schema, &rel.name),
        rel_name: rel.name.clone(),
        placements: vec![node],
    };
    CitusTable {
        oid: rel.oid,
        schema: rel.schema,
        name: rel.name,
        kind: TableKind::Plain,
        colocation_id: 0,
        dist_column: None,
        shards: vec![shard],
        router: TableRouter::Single,
        enum_types: Vec::new(),
    }
}

fn parse_bound(table: &str, shard_id: i64, v: Option<&str>) -> Result<i32, CitusError> {
    let bad = |reason: &str| CitusError::BadShards {
        table: table.to_string(),
        reason: format!("shard {shard_id} {reason}"),
    };
    let v = v.ok_or_else(|| {
        bad("has no hash range (hash partitioned table has uninitialized shards)")
    })?;
    v.trim()
        .parse::<i32>()
        .map_err(|_| bad("has a hash range bound that is not an int4"))
}

/// Builds a Citus table from its catalog rows and validates it.
pub(super) fn citus_table(
    rel: RelRow,
    part: &PartitionRow,
    hash: Option<HashColumn>,
    mut shards: Vec<ShardRow>,
    nodes: &NodeSet,
) -> Result<CitusTable, CitusError> {
    let display = format!("{}.{}", rel.schema, rel.name);
    let kind = classify(&display, part)?;
    let bad = |reason: String| CitusError::BadShards {
        table: display.clone(),
        reason,
    };

    let (router, dist_column, enum_types, ranges) = if kind == TableKind::Hash {
        let Some(h) = hash else {
            return Err(bad(
                "hash-distributed table has no distribution column".into()
            ));
        };
        let mut ranged = Vec::with_capacity(shards.len());
        for s in shards.drain(..) {
            let min = parse_bound(&display, s.shard_id, s.min.as_deref())?;
            let max = parse_bound(&display, s.shard_id, s.max.as_deref())?;
            ranged.push(((min, max), s));
        }
        // CompareShardIntervals: by min, ties by shard id.
        ranged.sort_by_key(|((min, _), s)| (*min, s.shard_id));
        let bounds: Vec<(i32, i32)> = ranged.iter().map(|(r, _)| *r).collect();
        let ranges = ShardRanges::from_sorted(&bounds).map_err(|source| CitusError::BadRanges {
            table: display.clone(),
            source,
        })?;
        let (bounds, rows): (Vec<_>, Vec<_>) = ranged.into_iter().unzip();
        shards = rows;
        let router = TableRouter::Hash {
            kernel: h.kernel,
            ranges,
        };
        (
            router,
            Some(h.column),
            h.enum_types,
            bounds.into_iter().map(Some).collect::<Vec<_>>(),
        )
    } else {
        if shards.len() != 1 {
            return Err(bad(format!(
                "{} table must have exactly one shard, found {}",
                kind.as_str(),
                shards.len()
            )));
        }
        (TableRouter::Single, None, Vec::new(), vec![None])
    };

    let mut out = Vec::with_capacity(shards.len());
    for (s, range) in shards.into_iter().zip(ranges) {
        let placements = placements(&display, kind, &s, nodes)?;
        let rel_name = shard_rel_name(&rel.name, s.shard_id)?;
        out.push(Shard {
            shard_id: s.shard_id,
            range,
            qualified_name: quote_qualified(&rel.schema, &rel_name),
            rel_name,
            placements,
        });
    }
    Ok(CitusTable {
        oid: rel.oid,
        schema: rel.schema,
        name: rel.name,
        kind,
        colocation_id: part.colocation_id,
        dist_column,
        shards: out,
        router,
        enum_types,
    })
}

/// ROUTING.md §1.6: every placement's group must have exactly one primary; inactive nodes are
/// skipped for reference tables and an error for everything else.
fn placements(
    table: &str,
    kind: TableKind,
    s: &ShardRow,
    nodes: &NodeSet,
) -> Result<Vec<NodeIndex>, CitusError> {
    let mut out = Vec::with_capacity(s.groups.len());
    for &g in &s.groups {
        let node = nodes.group(g).map_err(|reason| CitusError::BadShards {
            table: table.to_string(),
            reason,
        })?;
        match node {
            GroupNode::Active(i) => {
                if !out.contains(&i) {
                    out.push(i);
                }
            }
            GroupNode::Inactive(_) if kind == TableKind::Reference => {}
            GroupNode::Inactive(i) => {
                return Err(CitusError::InactiveNode {
                    table: table.to_string(),
                    shard_id: s.shard_id,
                    node: nodes.nodes[i].to_string(),
                });
            }
            GroupNode::Missing => {
                return Err(CitusError::NoPrimaryNode {
                    table: table.to_string(),
                    shard_id: s.shard_id,
                    group_id: g,
                });
            }
        }
    }
    if out.is_empty() {
        return Err(CitusError::BadShards {
            table: table.to_string(),
            reason: format!(
                "shard {} has no placement on an active primary node",
                s.shard_id
            ),
        });
    }
    if matches!(
        kind,
        TableKind::SingleShard | TableKind::Tenant | TableKind::CitusLocal
    ) && out.len() != 1
    {
        return Err(CitusError::BadShards {
            table: table.to_string(),
            reason: format!(
                "shard {} of a {} table has {} placements, expected one",
                s.shard_id,
                kind.as_str(),
                out.len()
            ),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::citus::router::uniform_ranges;

    fn node(id: i32, group: i32, port: i32, active: bool) -> NodeRow {
        NodeRow {
            node_id: id,
            group_id: group,
            host: "127.0.0.1".into(),
            port,
            active,
            role: "primary".into(),
            cluster: "default".into(),
        }
    }

    /// The nodes of catalog-sample.txt.
    fn sample_nodes() -> NodeSet {
        NodeSet::new(vec![
            node(1, 0, 55433, true),
            node(2, 1, 55434, true),
            node(3, 2, 55435, true),
        ])
        .unwrap()
    }

    fn rel(name: &str) -> RelRow {
        RelRow {
            oid: 16384,
            schema: "public".into(),
            name: name.into(),
        }
    }

    fn part(method: &str, repmodel: &str, colocation: i32) -> PartitionRow {
        PartitionRow {
            partmethod: method.into(),
            partkey: None,
            colocation_id: colocation,
            repmodel: repmodel.into(),
            tenant: false,
        }
    }

    fn int8_column() -> HashColumn {
        HashColumn {
            column: DistColumn {
                name: "user_id".into(),
                attnum: 1,
                type_oid: 20,
                type_name: "bigint".into(),
                base_type_oid: 20,
                typmod: -1,
                collation: 0,
            },
            kernel: HashKernel::Int8,
            enum_types: vec![],
        }
    }

    /// `orders` of catalog-sample.txt: 32 uniform shards 102040.., alternating groups 1 and 2.
    fn orders_shards() -> Vec<ShardRow> {
        uniform_ranges(32)
            .into_iter()
            .enumerate()
            .map(|(i, (min, max))| ShardRow {
                shard_id: 102040 + i as i64,
                min: Some(min.to_string()),
                max: Some(max.to_string()),
                groups: vec![1 + (i as i32 % 2)],
            })
            .rev() // catalog order must not matter
            .collect()
    }

    /// `products` of catalog-sample.txt: the reference table's one shard, placed on groups 0..2.
    fn products_shard() -> ShardRow {
        ShardRow {
            shard_id: 102072,
            min: None,
            max: None,
            groups: vec![0, 1, 2],
        }
    }

    #[test]
    fn catalog_sample_hash_table() {
        let t = citus_table(
            rel("orders"),
            &part("h", "s", 1),
            Some(int8_column()),
            orders_shards(),
            &sample_nodes(),
        )
        .unwrap();
        assert_eq!(t.kind, TableKind::Hash);
        assert_eq!(t.shards.len(), 32);
        assert_eq!(t.shards[0].shard_id, 102040);
        assert_eq!(t.shards[0].qualified_name, "\"public\".\"orders_102040\"");
        assert!(matches!(&t.router, TableRouter::Hash { ranges, .. } if ranges.is_uniform()));
        // citus_shards: 102040 on :55434, 102041 on :55435.
        let nodes = sample_nodes();
        assert_eq!(nodes.nodes[t.shards[0].placements[0]].port, 55434);
        assert_eq!(nodes.nodes[t.shards[1].placements[0]].port, 55435);
        // bigint 1..5 -> shard index 1, 24, 15, 8, 6.
        let idx: Vec<_> = (1..=5i64)
            .map(|v| t.route_binary(Some(&v.to_be_bytes())).unwrap())
            .collect();
        assert_eq!(idx, [1, 24, 15, 8, 6]);
    }

    #[test]
    fn catalog_sample_reference_table() {
        let t = citus_table(
            rel("products"),
            &part("n", "t", 2),
            None,
            vec![products_shard()],
            &sample_nodes(),
        )
        .unwrap();
        assert_eq!(t.kind, TableKind::Reference);
        assert_eq!(t.shards[0].placements, [0, 1, 2]);
        assert_eq!(t.route_text(None), Ok(0));
    }

    #[test]
    fn classification() {
        let c = |m: &str, r: &str, colo: i32, tenant: bool| {
            classify(
                "t",
                &PartitionRow {
                    tenant,
                    ..part(m, r, colo)
                },
            )
        };
        assert_eq!(c("h", "s", 1, false).unwrap(), TableKind::Hash);
        assert_eq!(c("h", "c", 1, false).unwrap(), TableKind::Hash);
        assert_eq!(c("n", "t", 2, false).unwrap(), TableKind::Reference);
        assert_eq!(c("n", "s", 3, false).unwrap(), TableKind::SingleShard);
        assert_eq!(c("n", "s", 4, true).unwrap(), TableKind::Tenant);
        assert_eq!(c("n", "s", 0, false).unwrap(), TableKind::CitusLocal);
        assert!(matches!(
            c("a", "c", 0, false),
            Err(CitusError::UnsupportedMethod { .. })
        ));
        assert!(matches!(
            c("r", "c", 0, false),
            Err(CitusError::UnsupportedMethod { .. })
        ));
    }

    #[test]
    fn invalid_hash_shards_are_refused() {
        let nodes = sample_nodes();
        let p = part("h", "s", 1);
        let mut gap = orders_shards();
        gap.retain(|s| s.shard_id != 102050);
        assert!(matches!(
            citus_table(rel("orders"), &p, Some(int8_column()), gap, &nodes),
            Err(CitusError::BadRanges { .. })
        ));
        let mut null = orders_shards();
        null[3].min = None;
        assert!(matches!(
            citus_table(rel("orders"), &p, Some(int8_column()), null, &nodes),
            Err(CitusError::BadShards { .. })
        ));
        let mut no_placement = orders_shards();
        no_placement[0].groups.clear();
        assert!(matches!(
            citus_table(rel("orders"), &p, Some(int8_column()), no_placement, &nodes),
            Err(CitusError::BadShards { .. })
        ));
        let mut no_node = orders_shards();
        no_node[0].groups = vec![9];
        assert!(matches!(
            citus_table(rel("orders"), &p, Some(int8_column()), no_node, &nodes),
            Err(CitusError::NoPrimaryNode { group_id: 9, .. })
        ));
    }

    #[test]
    fn inactive_nodes() {
        let nodes = NodeSet::new(vec![
            node(1, 0, 55433, true),
            node(2, 1, 55434, true),
            node(3, 2, 55435, false),
        ])
        .unwrap();
        let err = citus_table(
            rel("orders"),
            &part("h", "s", 1),
            Some(int8_column()),
            orders_shards(),
            &nodes,
        );
        assert!(
            matches!(
                err,
                Err(CitusError::InactiveNode {
                    shard_id: 102041,
                    ..
                })
            ),
            "{err:?}"
        );
        // A reference table skips the inactive node.
        let t = citus_table(
            rel("products"),
            &part("n", "t", 2),
            None,
            vec![products_shard()],
            &nodes,
        )
        .unwrap();
        assert_eq!(t.shards[0].placements, [0, 1]);
    }

    #[test]
    fn secondaries_and_other_clusters_are_ignored() {
        let mut sec = node(4, 1, 60000, true);
        sec.role = "secondary".into();
        let mut other = node(5, 2, 60001, true);
        other.cluster = "analytics".into();
        let nodes = NodeSet::new(vec![
            node(1, 0, 55433, true),
            node(2, 1, 55434, true),
            node(3, 2, 55435, true),
            sec,
            other,
        ])
        .unwrap();
        assert_eq!(nodes.nodes.len(), 3);
    }

    #[test]
    fn single_shard_kinds_need_one_shard_and_one_placement() {
        let nodes = sample_nodes();
        let one = ShardRow {
            shard_id: 7,
            min: None,
            max: None,
            groups: vec![1],
        };
        let t = citus_table(
            rel("settings"),
            &part("n", "s", 5),
            None,
            vec![one.clone()],
            &nodes,
        )
        .unwrap();
        assert_eq!(
            (t.kind, t.shards[0].placements.as_slice()),
            (TableKind::SingleShard, &[1][..])
        );
        assert!(
            citus_table(
                rel("settings"),
                &part("n", "s", 5),
                None,
                vec![one.clone(), one.clone()],
                &nodes
            )
            .is_err()
        );
        let two = ShardRow {
            groups: vec![1, 2],
            ..one
        };
        assert!(citus_table(rel("settings"), &part("n", "s", 5), None, vec![two], &nodes).is_err());
        let local = ShardRow {
            shard_id: 8,
            min: None,
            max: None,
            groups: vec![0],
        };
        let t = citus_table(rel("loc"), &part("n", "s", 0), None, vec![local], &nodes).unwrap();
        assert_eq!(
            (t.kind, nodes.nodes[t.shards[0].placements[0]].group_id),
            (TableKind::CitusLocal, 0)
        );
    }

    #[test]
    fn plain_tables_use_the_coordinator_or_the_target() {
        let addr = TargetAddr {
            host: "10.0.0.9".into(),
            port: 6000,
        };
        let mut plain = NodeSet::default();
        let t = plain_table(rel("t"), &mut plain, &addr);
        assert_eq!(t.shards[0].qualified_name, "\"public\".\"t\"");
        assert_eq!(
            plain.nodes[t.shards[0].placements[0]].to_string(),
            "10.0.0.9:6000"
        );
        let mut citus = sample_nodes();
        let t = plain_table(rel("t"), &mut citus, &addr);
        assert_eq!(citus.nodes[t.shards[0].placements[0]].port, 55433);
    }
}

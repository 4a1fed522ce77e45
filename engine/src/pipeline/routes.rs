//! The routing map: for every synced table, its sink description and, per shard, the shard
//! table on each node that holds a placement.
//!
//! Built once per run from the source's catalog (columns and key, in source order) and the
//! target's topology (shards and placements). Routing a row is then: take the distribution
//! field (a slice of the row, never decoded), hash it with the table's kernel, index the shard,
//! and read its placements: `row -> shard -> [(node, shard table)]`. Reference tables have one
//! shard with a placement on every node; plain tables one shard on the one node.

use std::collections::HashMap;
use std::sync::Arc;

use pgwarp_decoder::{ColumnRef, Lsn};
use pgwarp_sink::{Shard, ShardTarget, TargetTable};

use crate::citus::{CitusTable, NodeIndex, TableKind, Topology};

use super::catalog::TableInfo;
use super::error::PipelineError;

/// One placement of a shard: the node and the shard table there.
pub type Placement = (NodeIndex, Shard);

/// A synced table.
#[derive(Debug)]
pub struct RouteTable {
    /// Source description.
    pub source: TableInfo,
    /// `schema.name`.
    pub name: String,
    /// What the sink writes (columns in source order, key).
    pub target: Arc<TargetTable>,
    /// Citus kind.
    pub kind: TableKind,
    /// The router and shards.
    pub citus: CitusTable,
    /// Index of the distribution column among the replicated columns (hash tables).
    pub dist_index: Option<usize>,
    /// Placements of every shard, by shard index.
    pub shards: Vec<Vec<Placement>>,
    /// Every shard table on each node (for `TRUNCATE`), by node index.
    pub by_node: Vec<Vec<Shard>>,
}

impl RouteTable {
    /// The placements for a row whose distribution field is `value` (ignored for tables that
    /// are not hash-distributed).
    #[inline]
    pub fn route(&self, value: Option<ColumnRef<'_>>) -> Result<&[Placement], PipelineError> {
        let index = match (self.dist_index, value) {
            (None, _) => 0,
            (Some(_), None) => {
                return Err(PipelineError::Internal(format!(
                    "row of \"{}\" has no distribution column",
                    self.name
                )));
            }
            (Some(_), Some(v)) => {
                let r = match v {
                    ColumnRef::Binary(b) => self.citus.route_binary(Some(b)),
                    ColumnRef::Text(t) => self.citus.route_text(Some(t)),
                    ColumnRef::Null => self.citus.route_binary(None),
                    ColumnRef::UnchangedToast => {
                        return Err(PipelineError::Unsupported(format!(
                            "table \"{}\": a change carries no value for the distribution \
                             column (unchanged TOAST value) and no old key to take it from",
                            self.name
                        )));
                    }
                };
                r.map_err(|e| self.citus.route_error(e))?
            }
        };
        self.shards.get(index).map(Vec::as_slice).ok_or_else(|| {
            PipelineError::Internal(format!("no shard {index} for \"{}\"", self.name))
        })
    }
}

impl RouteTable {
    /// This table as it was before columns were added at its end: only its first `columns`
    /// replicated columns, the same shards and placements. Rows that changed under the older
    /// definition (replayed from before an `ADD COLUMN`) are written with that column list,
    /// and the target fills the rest as the source did: with the columns' defaults. `None`
    /// when the key or the distribution column is not among those columns.
    pub fn narrowed(&self, columns: usize) -> Option<RouteTable> {
        let names = self.source.column_names();
        if columns == 0 || columns >= names.len() {
            return None;
        }
        let kept = &names[..columns];
        if self.dist_index.is_some_and(|d| d >= columns)
            || self.source.key.iter().any(|k| !kept.contains(k))
        {
            return None;
        }
        let key: Vec<usize> = self
            .source
            .key
            .iter()
            .filter_map(|k| kept.iter().position(|c| c == k))
            .collect();
        let target = Arc::new(
            TargetTable::new(
                self.name.clone(),
                kept.to_vec(),
                key,
                self.target.key_unique(),
            )
            .ok()?,
        );
        let mut source = self.source.clone();
        source.all_columns = self.source.columns().take(columns).cloned().collect();
        let mut by_node: Vec<Vec<Shard>> = vec![Vec::new(); self.by_node.len()];
        let mut shards = Vec::with_capacity(self.shards.len());
        for (placements, shard) in self.shards.iter().zip(&self.citus.shards) {
            let narrowed: Shard = Arc::new(ShardTarget::new(
                target.clone(),
                &self.citus.schema,
                &shard.rel_name,
            ));
            let mut list = Vec::with_capacity(placements.len());
            for (node, _) in placements {
                list.push((*node, narrowed.clone()));
                if let Some(l) = by_node.get_mut(*node) {
                    l.push(narrowed.clone());
                }
            }
            shards.push(list);
        }
        Some(RouteTable {
            source,
            name: self.name.clone(),
            target,
            kind: self.kind,
            citus: self.citus.clone(),
            dist_index: self.dist_index,
            shards,
            by_node,
        })
    }
}

/// Every synced table, by source relation name.
#[derive(Debug)]
pub struct RouteMap {
    /// The tables, in the order given.
    pub tables: Vec<RouteTable>,
    /// The source's WAL insert position read before the tables were described: a transaction
    /// committed before it may carry an older definition of a table (from before columns were
    /// added); one committed after it cannot, since `ALTER TABLE` waits for every transaction
    /// that wrote the table. `INVALID` (no older definitions accepted) unless set.
    pub described_at: Lsn,
    /// Number of nodes.
    pub node_count: usize,
    by_name: HashMap<(String, String), usize>,
}

impl RouteMap {
    /// Builds the map. `sources[i]` and `targets[i]` describe the same table, and
    /// `topology.tables[i]` is its Citus view.
    pub fn build(
        sources: Vec<TableInfo>,
        targets: &[TableInfo],
        topology: &Topology,
    ) -> Result<RouteMap, PipelineError> {
        let mut tables = Vec::with_capacity(sources.len());
        let mut by_name = HashMap::new();
        for (i, source) in sources.into_iter().enumerate() {
            let citus = topology.tables.get(i).cloned().ok_or_else(|| {
                PipelineError::Internal("topology has fewer tables than asked".into())
            })?;
            let target_info = targets
                .get(i)
                .ok_or_else(|| PipelineError::Internal("target description missing".into()))?;
            let columns = source.column_names();
            let key: Vec<usize> = source
                .key
                .iter()
                .filter_map(|k| columns.iter().position(|c| c == k))
                .collect();
            let key_unique = !key.is_empty()
                && target_info
                    .unique_keys
                    .iter()
                    .any(|u| super::catalog::same_set(u, &source.key));
            let name = source.display_name();
            let target = Arc::new(TargetTable::new(
                name.clone(),
                columns.clone(),
                key,
                key_unique,
            )?);
            let dist_index = match &citus.dist_column {
                Some(d) if citus.kind == TableKind::Hash => {
                    Some(columns.iter().position(|c| *c == d.name).ok_or_else(|| {
                        PipelineError::State(format!(
                            "table \"{name}\": distribution column \"{}\" is not a replicated \
                             column of the source table",
                            d.name
                        ))
                    })?)
                }
                _ => None,
            };
            let mut shards = Vec::with_capacity(citus.shards.len());
            let mut by_node: Vec<Vec<Shard>> = vec![Vec::new(); topology.nodes.len()];
            for shard in &citus.shards {
                let target_shard: Shard = Arc::new(ShardTarget::new(
                    target.clone(),
                    &citus.schema,
                    &shard.rel_name,
                ));
                let mut placements = Vec::with_capacity(shard.placements.len());
                for &node in &shard.placements {
                    placements.push((node, target_shard.clone()));
                    if let Some(list) = by_node.get_mut(node) {
                        list.push(target_shard.clone());
                    }
                }
                if placements.is_empty() {
                    return Err(PipelineError::State(format!(
                        "table \"{name}\": shard {} has no active placement",
                        shard.shard_id
                    )));
                }
                shards.push(placements);
            }
            by_name.insert((source.schema.clone(), source.name.clone()), i);
            tables.push(RouteTable {
                name,
                target,
                kind: citus.kind,
                dist_index,
                shards,
                by_node,
                citus,
                source,
            });
        }
        Ok(RouteMap {
            described_at: Lsn::INVALID,
            tables,
            node_count: topology.nodes.len(),
            by_name,
        })
    }

    /// The table whose stored name ([`RouteTable::name`], `schema.name` unquoted) is exactly
    /// `stored` (never split at a `.`: schema and table names may contain one).
    pub fn find_stored(&self, stored: &str) -> Option<usize> {
        self.tables.iter().position(|t| t.name == stored)
    }

    /// The table named `schema.name` on the source.
    pub fn find(&self, schema: &str, name: &str) -> Option<usize> {
        self.by_name
            .get(&(schema.to_owned(), name.to_owned()))
            .copied()
    }
}

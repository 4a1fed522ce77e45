//! Where every shard of a spec goes: colocation groups, shard ids and hash ranges, placement
//! ids and node groups. A pure function of the spec and the workers, computed the way Citus
//! 13.2 computes them at creation time (ROUTING.md §1.2, §2.2, §5):
//!
//! * shard ids come from one sequence starting at 102008, placement ids from one starting at 1,
//!   colocation ids from one starting at 1, all in declaration order;
//! * hash ranges: `HASH_TOKEN_COUNT / shard_count` per shard, the last shard absorbing the
//!   remainder; shard `i` is placed on worker `i % n` (workers sorted by name, port);
//! * a colocated table copies the ranges and node groups of the table it is colocated with;
//! * reference tables share one colocation group (shard count 1, replication factor -1) and
//!   have a placement in every group, the coordinator's group 0 included;
//! * a single-shard table or tenant schema gets its own group, placed on worker
//!   `colocationid % n`; Citus local tables have colocation id 0 and live in group 0.

use crate::cluster::spec::{ClusterSpec, TableKind};
use crate::error::{HarnessError, Result};

/// `metadata_utility.h` HASH_TOKEN_COUNT.
pub const HASH_TOKEN_COUNT: i64 = 1 << 32;
/// First value of `pg_dist_shardid_seq`.
pub const FIRST_SHARD_ID: i64 = 102008;

/// The uniform hash ranges Citus gives `shard_count` new shards.
pub fn hash_ranges(shard_count: u32) -> Vec<(i32, i32)> {
    let n = i64::from(shard_count.max(1));
    let increment = HASH_TOKEN_COUNT / n;
    (0..n)
        .map(|i| {
            let min = i64::from(i32::MIN) + i * increment;
            let max = if i == n - 1 {
                i64::from(i32::MAX)
            } else {
                min + increment - 1
            };
            // Both stay within i32 by construction.
            (min as i32, max as i32)
        })
        .collect()
}

/// A shard's hash range, None for single-shard kinds.
type HashRange = Option<(i32, i32)>;

/// Which schema a table lives in, before fixture-specific names are chosen.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SchemaRef {
    /// The fixture's main schema.
    Main,
    /// A tenant schema, by logical name.
    Tenant(String),
}

/// One Citus table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePlan {
    /// Unqualified name.
    pub name: String,
    /// Its schema.
    pub schema: SchemaRef,
    /// `'h'` or `'n'`.
    pub partmethod: char,
    /// `'s'` or `'t'`.
    pub repmodel: char,
    /// 0 for Citus local tables.
    pub colocationid: i32,
    /// The distribution column of hash tables.
    pub dist_column: Option<String>,
}

/// One `pg_dist_colocation` row (type and collation are filled in from the coordinator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColocationPlan {
    /// Colocation id.
    pub colocationid: i32,
    /// Shard count.
    pub shardcount: i32,
    /// 1, or -1 for the reference group.
    pub replicationfactor: i32,
    /// For hash groups, the table whose distribution column defines the type and collation.
    pub hash_table: Option<usize>,
}

/// One shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardPlan {
    /// Index into [`Layout::tables`].
    pub table: usize,
    /// Shard id.
    pub shardid: i64,
    /// Hash range (None for single-shard kinds).
    pub range: Option<(i32, i32)>,
}

/// One `pg_dist_placement` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlacementPlan {
    /// Placement id.
    pub placementid: i64,
    /// Shard id.
    pub shardid: i64,
    /// Node group.
    pub groupid: i32,
}

/// Everything the catalog will hold for a spec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// In declaration order (same indexes as the spec's tables).
    pub tables: Vec<TablePlan>,
    /// In id order.
    pub colocations: Vec<ColocationPlan>,
    /// In shard id order.
    pub shards: Vec<ShardPlan>,
    /// In placement id order.
    pub placements: Vec<PlacementPlan>,
    /// `pg_dist_schema`: tenant schema (logical name) and colocation id.
    pub tenant_schemas: Vec<(String, i32)>,
}

impl Layout {
    /// The shards of table `t`, in shard-index order.
    pub fn shards_of(&self, t: usize) -> impl Iterator<Item = &ShardPlan> {
        self.shards.iter().filter(move |s| s.table == t)
    }

    /// Groups holding `shardid`.
    pub fn groups_of(&self, shardid: i64) -> Vec<i32> {
        self.placements
            .iter()
            .filter(|p| p.shardid == shardid)
            .map(|p| p.groupid)
            .collect()
    }

    /// Index of the table named `name`.
    pub fn table_index(&self, name: &str) -> Option<usize> {
        self.tables.iter().position(|t| t.name == name)
    }
}

/// Plans `spec` on workers whose group ids are `worker_groups`, in (nodename, nodeport) order;
/// the coordinator is group 0 and is in `pg_dist_node`.
pub fn plan(spec: &ClusterSpec, worker_groups: &[i32]) -> Result<Layout> {
    let mut planner = Planner {
        layout: Layout::default(),
        workers: worker_groups,
        next_shard: FIRST_SHARD_ID,
        next_placement: 1,
        next_colocation: 1,
        reference_group: None,
    };
    for table in spec.tables() {
        if planner.layout.table_index(&table.name).is_some() {
            return Err(invalid(format!(
                "table \"{}\" is declared twice",
                table.name
            )));
        }
        planner.add(&table.name, &table.kind)?;
    }
    Ok(planner.layout)
}

fn invalid(message: String) -> HarnessError {
    HarnessError::InvalidSpec(message)
}

struct Planner<'w> {
    layout: Layout,
    workers: &'w [i32],
    next_shard: i64,
    next_placement: i64,
    next_colocation: i32,
    reference_group: Option<i32>,
}

impl Planner<'_> {
    fn add(&mut self, name: &str, kind: &TableKind) -> Result<()> {
        let t = self.layout.tables.len();
        let mut table = TablePlan {
            name: name.to_owned(),
            schema: SchemaRef::Main,
            partmethod: 'n',
            repmodel: 's',
            colocationid: 0,
            dist_column: None,
        };
        match kind {
            TableKind::Hash {
                column,
                shard_count,
            } => {
                if *shard_count == 0 {
                    return Err(invalid(format!(
                        "table \"{name}\" needs at least one shard"
                    )));
                }
                let id = self.new_colocation(*shard_count as i32, 1, Some(t));
                table.partmethod = 'h';
                table.colocationid = id;
                table.dist_column = Some(column.clone());
                self.layout.tables.push(table);
                for (i, range) in hash_ranges(*shard_count).into_iter().enumerate() {
                    let group = self.worker(i)?;
                    self.add_shard(t, Some(range), &[group]);
                }
            }
            TableKind::HashColocated { column, with } => {
                let source =
                    self.source(name, with, |p| p.partmethod == 'h', "a hash-distributed")?;
                table.partmethod = 'h';
                table.colocationid = self.layout.tables[source].colocationid;
                table.dist_column = Some(column.clone());
                self.layout.tables.push(table);
                self.copy_shards(source, t);
            }
            TableKind::Reference => {
                let id = match self.reference_group {
                    Some(id) => id,
                    None => {
                        let id = self.new_colocation(1, -1, None);
                        self.reference_group = Some(id);
                        id
                    }
                };
                table.repmodel = 't';
                table.colocationid = id;
                self.layout.tables.push(table);
                let mut groups = vec![0];
                groups.extend(self.workers.iter().copied());
                groups.sort_unstable();
                self.add_shard(t, None, &groups);
            }
            TableKind::SingleShard { with: None } => {
                let id = self.new_colocation(1, 1, None);
                table.colocationid = id;
                self.layout.tables.push(table);
                let group = self.worker(id as usize)?;
                self.add_shard(t, None, &[group]);
            }
            TableKind::SingleShard { with: Some(with) } => {
                let is_single =
                    |p: &TablePlan| p.partmethod == 'n' && p.repmodel == 's' && p.colocationid != 0;
                let source = self.source(name, with, is_single, "a single-shard")?;
                table.colocationid = self.layout.tables[source].colocationid;
                self.layout.tables.push(table);
                self.copy_shards(source, t);
            }
            TableKind::Tenant { schema } => {
                table.schema = SchemaRef::Tenant(schema.clone());
                let existing = self.layout.tenant_schemas.iter().find(|(s, _)| s == schema);
                match existing.map(|(_, id)| *id) {
                    Some(id) => {
                        let source = self.layout.tables.iter().position(|p| p.colocationid == id);
                        table.colocationid = id;
                        self.layout.tables.push(table);
                        if let Some(source) = source {
                            self.copy_shards(source, t);
                        }
                    }
                    None => {
                        let id = self.new_colocation(1, 1, None);
                        self.layout.tenant_schemas.push((schema.clone(), id));
                        table.colocationid = id;
                        self.layout.tables.push(table);
                        let group = self.worker(id as usize)?;
                        self.add_shard(t, None, &[group]);
                    }
                }
            }
            TableKind::CitusLocal => {
                self.layout.tables.push(table);
                self.add_shard(t, None, &[0]);
            }
        }
        Ok(())
    }

    fn worker(&self, i: usize) -> Result<i32> {
        if self.workers.is_empty() {
            return Err(invalid(
                "distributed tables need at least one worker".to_owned(),
            ));
        }
        Ok(self.workers[i % self.workers.len()])
    }

    fn source(
        &self,
        name: &str,
        with: &str,
        accept: impl Fn(&TablePlan) -> bool,
        what: &str,
    ) -> Result<usize> {
        match self.layout.table_index(with) {
            Some(i) if accept(&self.layout.tables[i]) => Ok(i),
            Some(_) => Err(invalid(format!(
                "table \"{name}\" is colocated with \"{with}\", which is not {what} table"
            ))),
            None => Err(invalid(format!(
                "table \"{name}\" is colocated with \"{with}\", which is not declared before it"
            ))),
        }
    }

    fn new_colocation(&mut self, shardcount: i32, rf: i32, hash_table: Option<usize>) -> i32 {
        let id = self.next_colocation;
        self.next_colocation += 1;
        self.layout.colocations.push(ColocationPlan {
            colocationid: id,
            shardcount,
            replicationfactor: rf,
            hash_table,
        });
        id
    }

    fn copy_shards(&mut self, source: usize, target: usize) {
        let template: Vec<(HashRange, Vec<i32>)> = self
            .layout
            .shards_of(source)
            .map(|s| (s.range, self.layout.groups_of(s.shardid)))
            .collect();
        for (range, groups) in template {
            self.add_shard(target, range, &groups);
        }
    }

    fn add_shard(&mut self, table: usize, range: Option<(i32, i32)>, groups: &[i32]) {
        let shardid = self.next_shard;
        self.next_shard += 1;
        self.layout.shards.push(ShardPlan {
            table,
            shardid,
            range,
        });
        for &groupid in groups {
            let placementid = self.next_placement;
            self.next_placement += 1;
            self.layout.placements.push(PlacementPlan {
                placementid,
                shardid,
                groupid,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_match_routing_examples() {
        let r32 = hash_ranges(32);
        assert_eq!(r32[0], (-2147483648, -2013265921));
        assert_eq!(r32[1], (-2013265920, -1879048193));
        assert_eq!(r32[15], (-134217728, -1));
        assert_eq!(r32[16], (0, 134217727));
        assert_eq!(r32[31], (2013265920, 2147483647));
        assert_eq!(
            hash_ranges(3),
            vec![
                (-2147483648, -715827884),
                (-715827883, 715827881),
                (715827882, 2147483647)
            ]
        );
        assert_eq!(hash_ranges(1), vec![(i32::MIN, i32::MAX)]);
        for n in [1, 2, 3, 7, 32, 1000] {
            let r = hash_ranges(n);
            assert_eq!(r.len(), n as usize);
            for w in r.windows(2) {
                assert_eq!(i64::from(w[0].1) + 1, i64::from(w[1].0));
            }
        }
    }

    #[test]
    fn single_shard_and_tenant_groups_use_colocation_id_modulo_workers() {
        let spec = ClusterSpec::new()
            .single_shard("a", "")
            .single_shard_colocated("b", "", "a")
            .tenant("t1", "x", "")
            .tenant("t1", "y", "")
            .tenant("t2", "z", "")
            .citus_local("l", "");
        let layout = plan(&spec, &[1, 2]).unwrap();
        let coloc: Vec<i32> = layout.tables.iter().map(|t| t.colocationid).collect();
        assert_eq!(coloc, vec![1, 1, 2, 2, 3, 0]);
        let groups: Vec<Vec<i32>> = layout
            .shards
            .iter()
            .map(|s| layout.groups_of(s.shardid))
            .collect();
        // colocation 1 -> worker index 1 (group 2); 2 -> index 0 (group 1); 3 -> group 2.
        assert_eq!(
            groups,
            vec![vec![2], vec![2], vec![1], vec![1], vec![2], vec![0]]
        );
        assert_eq!(
            layout.tenant_schemas,
            vec![("t1".to_owned(), 2), ("t2".to_owned(), 3)]
        );
    }

    #[test]
    fn bad_colocation_is_refused() {
        let spec = ClusterSpec::new()
            .reference("r", "")
            .distributed_colocated("o", "", "id", "r");
        assert!(plan(&spec, &[1]).is_err());
        let spec = ClusterSpec::new().distributed_colocated("o", "", "id", "later");
        assert!(plan(&spec, &[1]).is_err());
    }
}

//! The decision: which tables to distribute by what, which to replicate, which to leave local.
//! A pure function of a [`Snapshot`], so every rule is unit-tested without a server.
//!
//! 1. **Tenant key.** Candidates are the keys single-column foreign keys point at (or, with
//!    `--tenant-column`, those whose referencing column has that name, else tables whose
//!    primary key is that column). A candidate scores the number of large tables that reach its
//!    table through foreign-key chains (a table reaches itself). The best score wins; among
//!    equals the one with the most rows (distinct values: a lookup table such as `countries`
//!    is reached by as many tables as `users`, but would spread rows over few shards), then
//!    the most directly referenced, then the largest. The tenant *column* is the name the
//!    referencing tables use most (`user_id` for `users.id`). Nothing is large: no tenant.
//! 2. **Distributed tables**: the large tables, the tenant root, and, until nothing changes,
//!    every table with a foreign key to a distributed one (Citus supports no foreign key from a
//!    reference or local table to a distributed one). Each is distributed by its tenant column:
//!    the root's key, the column of its foreign key to the root, or a column with the tenant
//!    column's name. A table that has none but reaches such a table through foreign keys needs
//!    the column **backfilled** on the source (from its parent, parents first). Tables that
//!    reach no tenant are distributed by their own single-column primary key, each in its own
//!    colocation group.
//! 3. **Reference tables**: the other tables referenced by distributed or reference tables.
//! 4. **Local tables**: the rest.
//! 5. **Keys**: every primary or unique key of a distributed table must contain the
//!    distribution column (Citus enforces uniqueness per shard); it is widened to
//!    `(dist column, old columns...)`. Foreign keys between tables of the tenant group are
//!    widened the same way on both sides. On the source, the replica identity must contain the
//!    distribution column too, so that a deleted row can be routed to its shard.

use std::collections::HashSet;

use serde::Serialize;

use super::catalog::{Snapshot, TableStat};
use super::keys::keys;
use super::tenant::{choose_tenant, path_to, reach, tenant_column_of};

/// What the operator asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    /// Tables at least this large (bytes) are distributed.
    pub min_size: i64,
    /// The tenant column to use instead of the detected one.
    pub tenant_column: Option<String>,
    /// `shard_count` for the tenant group (Citus's default when `None`).
    pub shard_count: Option<u32>,
}

/// The tenant key everything is colocated by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tenant {
    /// The root table (index), when there is one.
    pub table: Option<usize>,
    /// The root's key column.
    pub key: String,
    /// The column name the other tables use.
    pub column: String,
    /// Its type.
    pub type_name: String,
}

/// A column to add on the source and fill from the parent table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Backfill {
    /// The new column.
    pub column: String,
    /// Its type.
    pub type_name: String,
    /// The foreign key (index) to the parent the value is copied from.
    pub via: usize,
    /// How many foreign keys away the nearest table with the column is.
    pub depth: usize,
}

/// Where a table goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// Hash-distributed.
    Distributed {
        /// Distribution column.
        column: String,
        /// Colocation group (index into [`Plan::groups`]).
        group: usize,
        /// The column must first be added and filled on the source.
        backfill: Option<Backfill>,
    },
    /// Replicated to every node.
    Reference,
    /// Left on the coordinator.
    Local,
}

/// One table's placement and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TablePlan {
    /// Index into the snapshot's tables.
    pub table: usize,
    /// Where it goes.
    pub placement: Placement,
    /// Why, in a few words.
    pub reason: String,
}

/// A colocation group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    /// The table the others are colocated with (created first).
    pub leader: usize,
    /// Members, the leader first.
    pub tables: Vec<usize>,
}

/// A primary or unique key that must include the distribution column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyChange {
    /// Table index.
    pub table: usize,
    /// Constraint or index name.
    pub name: String,
    /// The primary key.
    pub primary: bool,
    /// A constraint (else a unique index).
    pub constraint: bool,
    /// Columns now.
    pub old: Vec<String>,
    /// Columns after.
    pub new: Vec<String>,
}

/// A foreign key that changes on the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FkChange {
    /// Foreign key index.
    pub fk: usize,
    /// New referencing and referenced columns; `None`: the key is dropped (unsupported).
    pub new: Option<(Vec<String>, Vec<String>)>,
}

/// A replica identity on the source that must include the distribution column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdentityChange {
    /// Table index.
    pub table: usize,
    /// The unique index's columns.
    pub columns: Vec<String>,
    /// Columns that must first become `NOT NULL`.
    pub not_null: Vec<String>,
}

/// The proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The tenant key, if one was found.
    pub tenant: Option<Tenant>,
    /// Every table, in snapshot order.
    pub tables: Vec<TablePlan>,
    /// Colocation groups (the tenant group first).
    pub groups: Vec<Group>,
    /// Key changes on the target.
    pub key_changes: Vec<KeyChange>,
    /// Foreign key changes on the target.
    pub fk_changes: Vec<FkChange>,
    /// Replica identity changes on the source.
    pub identity_changes: Vec<IdentityChange>,
    /// Things the operator must know.
    pub warnings: Vec<String>,
    /// `shard_count` for the tenant group.
    pub shard_count: Option<u32>,
}

impl Plan {
    /// The distribution column of table `t`, if distributed.
    pub fn dist_column(&self, t: usize) -> Option<&str> {
        match &self.tables.get(t)?.placement {
            Placement::Distributed { column, .. } => Some(column),
            _ => None,
        }
    }

    /// The group of table `t`, if distributed.
    pub fn group_of(&self, t: usize) -> Option<usize> {
        match &self.tables.get(t)?.placement {
            Placement::Distributed { group, .. } => Some(*group),
            _ => None,
        }
    }
}

/// Proposes a distribution for `snap`.
pub fn propose(snap: &Snapshot, opts: &PlanOptions) -> Plan {
    let n = snap.tables.len();
    let large: Vec<bool> = snap
        .tables
        .iter()
        .map(|t| t.bytes >= opts.min_size)
        .collect();
    let reaches = reach(snap);
    let mut warnings = Vec::new();
    let mut tenant = choose_tenant(snap, &large, &reaches, opts.tenant_column.as_deref());
    if tenant.is_none()
        && let Some(w) = &opts.tenant_column
    {
        // no key to root it: tables with the column, colocated with the largest of them
        let leader = (0..n)
            .filter(|&i| snap.tables.get(i).is_some_and(|t| t.column(w).is_some()))
            .max_by_key(|&i| snap.tables.get(i).map_or(0, |t| t.bytes));
        match leader {
            Some(_) => {
                let type_name = leader
                    .and_then(|i| snap.tables.get(i))
                    .and_then(|t| t.column(w))
                    .map_or_else(|| "bigint".to_owned(), |c| c.type_name.clone());
                tenant = Some(Tenant {
                    table: None,
                    key: w.clone(),
                    column: w.clone(),
                    type_name,
                });
            }
            None => warnings.push(format!("no table has the tenant column \"{w}\"")),
        }
    }

    // rule 2: the distributed set
    let mut distributed: Vec<bool> = large.clone();
    if let Some(root) = tenant.as_ref().and_then(|t| t.table)
        && let Some(d) = distributed.get_mut(root)
    {
        *d = true;
    }
    loop {
        let mut changed = false;
        for fk in &snap.foreign_keys {
            let to_dist = distributed.get(fk.ref_table).copied().unwrap_or(false);
            if to_dist
                && let Some(d) = distributed.get_mut(fk.table)
                && !*d
            {
                *d = true;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }

    let mut placements: Vec<Option<(Placement, String)>> = vec![None; n];
    let mut groups: Vec<Group> = Vec::new();
    if let Some(t) = &tenant {
        let leader = t.table.or_else(|| {
            (0..n)
                .filter(|&i| tenant_column_of(snap, t, i).is_some())
                .max_by_key(|&i| snap.tables.get(i).map_or(0, |x| x.bytes))
        });
        if let Some(l) = leader {
            groups.push(Group {
                leader: l,
                tables: Vec::new(),
            });
        }
    }
    // tables that have the tenant column
    for i in (0..n).filter(|&i| distributed[i]) {
        if let Some(t) = &tenant
            && !groups.is_empty()
            && let Some(col) = tenant_column_of(snap, t, i)
        {
            let why = if t.table == Some(i) {
                "tenant root".to_owned()
            } else {
                format!("has the tenant column {col}")
            };
            placements[i] = Some((
                Placement::Distributed {
                    column: col,
                    group: 0,
                    backfill: None,
                },
                why,
            ));
        }
    }
    // tables that reach one through foreign keys: backfill, nearest first
    if let Some(t) = tenant.as_ref().filter(|_| !groups.is_empty()) {
        let has: Vec<bool> = placements.iter().map(Option::is_some).collect();
        let mut pending: Vec<(usize, usize, usize)> = Vec::new(); // (depth, table, first fk)
        for i in (0..n).filter(|&i| distributed[i] && !has[i]) {
            if let Some((depth, via)) = path_to(snap, i, &has) {
                pending.push((depth, i, via));
            }
        }
        pending.sort();
        for (depth, i, via) in pending {
            let parent = snap.foreign_keys.get(via).map(|f| f.ref_table);
            placements[i] = Some((
                Placement::Distributed {
                    column: t.column.clone(),
                    group: 0,
                    backfill: Some(Backfill {
                        column: t.column.clone(),
                        type_name: t.type_name.clone(),
                        via,
                        depth,
                    }),
                },
                format!(
                    "reaches the tenant through {}: needs {} backfilled",
                    parent
                        .and_then(|p| snap.tables.get(p))
                        .map_or_else(String::new, TableStat::display),
                    t.column
                ),
            ));
        }
    }
    // the rest of the distributed set: their own key, their own group
    let rest: Vec<usize> = (0..n)
        .filter(|&i| distributed[i] && placements[i].is_none())
        .collect();
    for i in rest {
        let Some(table) = snap.tables.get(i) else {
            continue;
        };
        match table.primary_key().map(|k| k.columns.as_slice()) {
            Some([col, ..]) => {
                if table.primary_key().is_some_and(|k| k.columns.len() > 1) {
                    warnings.push(format!(
                        "{}: reaches no tenant key; distributed by the first column of its \
                         primary key ({col}): check that this spreads its rows",
                        table.display()
                    ));
                }
                groups.push(Group {
                    leader: i,
                    tables: Vec::new(),
                });
                placements[i] = Some((
                    Placement::Distributed {
                        column: col.clone(),
                        group: groups.len() - 1,
                        backfill: None,
                    },
                    "large, reaches no tenant key: distributed by its own key".to_owned(),
                ));
            }
            _ => {
                warnings.push(format!(
                    "{}: large, without a primary key and not linked to the tenant: left local; \
                     give it a primary key (pgwarp needs one to stream changes) and a \
                     distribution column",
                    table.display()
                ));
                placements[i] = Some((Placement::Local, "no primary key".to_owned()));
            }
        }
    }
    // rule 3: reference tables, the closure of what distributed and reference tables point at
    loop {
        let mut changed = false;
        for fk in &snap.foreign_keys {
            let from = placements.get(fk.table).and_then(|p| p.as_ref());
            let pulls = matches!(
                from,
                Some((Placement::Distributed { .. } | Placement::Reference, _))
            );
            if pulls && placements.get(fk.ref_table).is_some_and(Option::is_none) {
                let by = snap
                    .tables
                    .get(fk.table)
                    .map_or_else(String::new, TableStat::display);
                placements[fk.ref_table] =
                    Some((Placement::Reference, format!("small, referenced by {by}")));
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    // rule 4: the rest stays local
    let tables: Vec<TablePlan> = placements
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let (placement, reason) = p.unwrap_or((
                Placement::Local,
                "small, not referenced by distributed tables".to_owned(),
            ));
            TablePlan {
                table: i,
                placement,
                reason,
            }
        })
        .collect();
    for (i, t) in tables.iter().enumerate() {
        if let Placement::Distributed { group, .. } = t.placement
            && let Some(g) = groups.get_mut(group)
            && g.leader != i
        {
            g.tables.push(i);
        }
    }
    // the leader first, then every table after the tables it references
    for g in &mut groups {
        let mut ordered = vec![g.leader];
        ordered.extend(referenced_first(snap, &g.tables));
        g.tables = ordered;
    }
    let mut plan = Plan {
        tenant,
        tables,
        groups,
        key_changes: Vec::new(),
        fk_changes: Vec::new(),
        identity_changes: Vec::new(),
        warnings,
        shard_count: opts.shard_count,
    };
    keys(snap, &mut plan);
    plan
}

/// `tables` ordered so that a table comes after the tables it references (input order
/// otherwise, and for cycles).
pub(crate) fn referenced_first(snap: &Snapshot, tables: &[usize]) -> Vec<usize> {
    let set: HashSet<usize> = tables.iter().copied().collect();
    let mut done: Vec<usize> = Vec::with_capacity(tables.len());
    let mut placed: HashSet<usize> = HashSet::new();
    while done.len() < tables.len() {
        let next = tables.iter().copied().find(|&t| {
            !placed.contains(&t)
                && snap.foreign_keys.iter().all(|fk| {
                    fk.table != t
                        || fk.ref_table == t
                        || !set.contains(&fk.ref_table)
                        || placed.contains(&fk.ref_table)
                })
        });
        let t = match next {
            Some(t) => t,
            None => match tables.iter().copied().find(|t| !placed.contains(t)) {
                Some(t) => t,
                None => break,
            },
        };
        placed.insert(t);
        done.push(t);
    }
    done
}

//! Rule 5 of [`super::decide`]: keys and foreign keys that must include the distribution
//! column on the target, and replica identities that must include it on the source.

use std::collections::HashMap;

use super::catalog::{Snapshot, TableStat};
use super::decide::{FkChange, IdentityChange, KeyChange, Placement, Plan};

/// Rule 5: keys, foreign keys, replica identities.
pub(super) fn keys(snap: &Snapshot, plan: &mut Plan) {
    let mut widened: HashMap<(usize, Vec<String>), Vec<String>> = HashMap::new();
    for (i, table) in snap.tables.iter().enumerate() {
        let Some(col) = plan.dist_column(i).map(str::to_owned) else {
            continue;
        };
        let backfilled = matches!(
            plan.tables.get(i).map(|t| &t.placement),
            Some(Placement::Distributed {
                backfill: Some(_),
                ..
            })
        );
        if !backfilled && table.column(&col).is_some_and(|c| !c.not_null) {
            plan.warnings.push(format!(
                "{}: distribution column {col} allows NULL; Citus rejects rows without it: make \
                 it NOT NULL",
                table.display()
            ));
        }
        for key in &table.keys {
            if key.columns.contains(&col) {
                continue;
            }
            let mut new = vec![col.clone()];
            new.extend(key.columns.iter().cloned());
            plan.warnings.push(format!(
                "{}: {} {} ({}) must include the distribution column: becomes ({}); the old \
                 columns alone are no longer unique on the target",
                table.display(),
                if key.primary {
                    "primary key"
                } else {
                    "unique key"
                },
                key.name,
                key.columns.join(", "),
                new.join(", ")
            ));
            widened.insert((i, key.columns.clone()), new.clone());
            plan.key_changes.push(KeyChange {
                table: i,
                name: key.name.clone(),
                primary: key.primary,
                constraint: key.constraint,
                old: key.columns.clone(),
                new,
            });
        }
        if !table.replica_identity.contains(&col) {
            if table.replica_identity.is_empty() {
                plan.warnings.push(format!(
                    "{}: no primary key or replica identity: pgwarp cannot stream its updates \
                     and deletes",
                    table.display()
                ));
            } else {
                let mut columns = vec![col.clone()];
                columns.extend(table.replica_identity.iter().cloned());
                // a backfilled column is made NOT NULL by its backfill
                let not_null: Vec<String> = columns
                    .iter()
                    .filter(|c| !(backfilled && **c == col))
                    .filter(|c| table.column(c).is_none_or(|s| !s.not_null))
                    .cloned()
                    .collect();
                plan.identity_changes.push(IdentityChange {
                    table: i,
                    columns,
                    not_null,
                });
            }
        }
    }
    for (f, fk) in snap.foreign_keys.iter().enumerate() {
        let (from, to) = (plan.group_of(fk.table), plan.group_of(fk.ref_table));
        let name = |t: usize| {
            snap.tables
                .get(t)
                .map_or_else(String::new, TableStat::display)
        };
        match (from, to) {
            (Some(a), Some(b)) if a == b => {
                let (Some(ca), Some(cb)) =
                    (plan.dist_column(fk.table), plan.dist_column(fk.ref_table))
                else {
                    continue;
                };
                let aligned = fk
                    .columns
                    .iter()
                    .zip(&fk.ref_columns)
                    .any(|(x, y)| x == ca && y == cb);
                if aligned {
                    continue;
                }
                let target_key = widened.get(&(fk.ref_table, fk.ref_columns.clone()));
                match target_key {
                    Some(_) => {
                        let mut cols = vec![ca.to_owned()];
                        cols.extend(fk.columns.iter().cloned());
                        let mut refs = vec![cb.to_owned()];
                        refs.extend(fk.ref_columns.iter().cloned());
                        plan.warnings.push(format!(
                            "{}: foreign key {} ({}) -> {} ({}) must include the distribution \
                             column on both sides: becomes ({}) -> ({})",
                            name(fk.table),
                            fk.name,
                            fk.columns.join(", "),
                            name(fk.ref_table),
                            fk.ref_columns.join(", "),
                            cols.join(", "),
                            refs.join(", ")
                        ));
                        plan.fk_changes.push(FkChange {
                            fk: f,
                            new: Some((cols, refs)),
                        });
                    }
                    None => {
                        plan.warnings.push(format!(
                            "{}: foreign key {} cannot be kept: it does not include the \
                             distribution column and its referenced columns are not a key; \
                             it is dropped on the target",
                            name(fk.table),
                            fk.name
                        ));
                        plan.fk_changes.push(FkChange { fk: f, new: None });
                    }
                }
            }
            (Some(_), Some(_)) | (None, Some(_)) => {
                plan.warnings.push(format!(
                    "{}: foreign key {} to {} is not supported by Citus (across colocation \
                     groups, or from a reference or local table to a distributed one): it is \
                     dropped on the target",
                    name(fk.table),
                    fk.name,
                    name(fk.ref_table)
                ));
                plan.fk_changes.push(FkChange { fk: f, new: None });
            }
            _ => {
                // a foreign key to a key that is widened must follow it, or go
                if widened.contains_key(&(fk.ref_table, fk.ref_columns.clone())) {
                    plan.fk_changes.push(FkChange { fk: f, new: None });
                }
            }
        }
    }
}

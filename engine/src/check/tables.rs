//! Table checks that need no server round trip: the source's tables on their own, and each
//! source table against its target table.

use crate::pipeline::catalog::{TableInfo, same_set};

use super::{ProblemKind, Report};

/// Source tables: ordinary tables with a replica identity.
pub fn check_source(tables: &[TableInfo], report: &mut Report) {
    for t in tables {
        let name = t.display_name();
        if t.relkind != 'r' {
            let what = match t.relkind {
                'p' => "a partitioned table (sync its partitions instead)",
                'v' => "a view",
                'm' => "a materialized view",
                'f' => "a foreign table",
                _ => "not an ordinary table",
            };
            report.add(
                ProblemKind::NotATable,
                format!("\"{name}\" on the source is {what}"),
            );
            continue;
        }
        if t.key.is_empty() {
            let why = match t.replica_identity {
                'n' => "its replica identity is NOTHING".to_owned(),
                'i' => "its replica identity index is missing".to_owned(),
                _ => "it has no primary key".to_owned(),
            };
            report.add(
                ProblemKind::NoReplicaIdentity,
                format!(
                    "table \"{name}\" has no primary key or replica identity index ({why}): \
                     updates and deletes could not be applied; add a primary key, or ALTER \
                     TABLE ... REPLICA IDENTITY USING INDEX a unique index"
                ),
            );
        }
    }
}

/// A source table against its target table.
pub fn compare(source: &TableInfo, target: &TableInfo, report: &mut Report) {
    let name = source.display_name();
    for col in &source.all_columns {
        let Some(tcol) = target.all_columns.iter().find(|c| c.name == col.name) else {
            if !col.generated {
                report.add(
                    ProblemKind::ColumnMismatch,
                    format!(
                        "column \"{}\" of table \"{name}\" does not exist on the target",
                        col.name
                    ),
                );
            }
            continue;
        };
        if col.generated != tcol.generated {
            let (gen_side, plain_side) = if col.generated {
                ("source", "target")
            } else {
                ("target", "source")
            };
            report.add(
                ProblemKind::GeneratedColumn,
                format!(
                    "column \"{}\" of table \"{name}\" is generated on the {gen_side} but not on \
                     the {plain_side}: generated columns are not replicated, so both sides must \
                     compute it",
                    col.name
                ),
            );
            continue;
        }
        if !col.generated && col.type_name != tcol.type_name {
            report.add(
                ProblemKind::ColumnMismatch,
                format!(
                    "column \"{}\" of table \"{name}\" is {} on the source but {} on the target",
                    col.name, col.type_name, tcol.type_name
                ),
            );
        }
    }
    for tcol in &target.all_columns {
        if tcol.generated || source.all_columns.iter().any(|c| c.name == tcol.name) {
            continue;
        }
        report.add(
            ProblemKind::ExtraTargetColumn,
            format!(
                "column \"{}\" of table \"{name}\" exists only on the target: drop it, or add it \
                 to the source",
                tcol.name
            ),
        );
    }
    if !source.key.is_empty()
        && source.relkind == 'r'
        && !target.unique_keys.iter().any(|u| same_set(u, &source.key))
    {
        report.add(
            ProblemKind::NoUniqueKeyOnTarget,
            format!(
                "table \"{name}\" has no unique index on ({}) on the target, the source's replica \
                 identity: create the same primary key on the target",
                source.key.join(", ")
            ),
        );
    }
}

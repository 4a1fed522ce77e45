//! The plan as SQL (for the target, with the source's part as comments) and as a report.
//!
//! The SQL file runs on the target after the schema is copied and before any row is written
//! (`pgwarp schema --plan FILE` does exactly that): foreign keys that change are dropped, keys
//! widened, foreign keys re-created widened, then reference tables and distributed tables are
//! created, referenced tables first, each colocation group after its leader. The changes the
//! *source* needs (backfilled tenant columns, replica identities that include the distribution
//! column) are application changes the operator must make before `pgwarp sync`; they are in
//! the file as comments and in the report, never run by pgwarp.

use std::fmt::Write as _;

use crate::citus::names::{quote_ident, quote_qualified};
use crate::source::quote::quote_literal;

use super::catalog::{Snapshot, TableStat};
use super::decide::{Placement, Plan, referenced_first};

/// The line that separates the source's part from the target's in the SQL file.
pub const TARGET_MARKER: &str = "-- pgwarp:target";

fn q(t: &TableStat) -> String {
    quote_qualified(&t.schema, &t.name)
}

fn cols(c: &[String]) -> String {
    c.iter()
        .map(|x| quote_ident(x))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The statements the source needs before the sync (backfills, replica identities).
pub fn source_sql(snap: &Snapshot, plan: &Plan) -> Vec<String> {
    let mut out = Vec::new();
    let mut backfills: Vec<(usize, usize)> = plan
        .tables
        .iter()
        .filter_map(|t| match &t.placement {
            Placement::Distributed {
                backfill: Some(b), ..
            } => Some((b.depth, t.table)),
            _ => None,
        })
        .collect();
    backfills.sort();
    for (_, i) in backfills {
        let (
            Some(table),
            Some(Placement::Distributed {
                backfill: Some(b), ..
            }),
        ) = (snap.tables.get(i), plan.tables.get(i).map(|t| &t.placement))
        else {
            continue;
        };
        let Some(fk) = snap.foreign_keys.get(b.via) else {
            continue;
        };
        let Some(parent) = snap.tables.get(fk.ref_table) else {
            continue;
        };
        let parent_col = plan.dist_column(fk.ref_table).unwrap_or(&b.column);
        let join: Vec<String> = fk
            .columns
            .iter()
            .zip(&fk.ref_columns)
            .map(|(c, r)| format!("c.{} = p.{}", quote_ident(c), quote_ident(r)))
            .collect();
        out.push(format!(
            "ALTER TABLE {} ADD COLUMN {} {}",
            q(table),
            quote_ident(&b.column),
            b.type_name
        ));
        out.push(format!(
            "UPDATE {} c SET {} = p.{} FROM {} p WHERE {}",
            q(table),
            quote_ident(&b.column),
            quote_ident(parent_col),
            q(parent),
            join.join(" AND ")
        ));
        out.push(format!(
            "ALTER TABLE {} ALTER COLUMN {} SET NOT NULL",
            q(table),
            quote_ident(&b.column)
        ));
    }
    for change in &plan.identity_changes {
        let Some(table) = snap.tables.get(change.table) else {
            continue;
        };
        for c in &change.not_null {
            out.push(format!(
                "ALTER TABLE {} ALTER COLUMN {} SET NOT NULL",
                q(table),
                quote_ident(c)
            ));
        }
        let index = identity_index_name(&table.name);
        out.push(format!(
            "CREATE UNIQUE INDEX CONCURRENTLY {} ON {} ({})",
            quote_ident(&index),
            q(table),
            cols(&change.columns)
        ));
        out.push(format!(
            "ALTER TABLE {} REPLICA IDENTITY USING INDEX {}",
            q(table),
            quote_ident(&index)
        ));
    }
    out
}

/// `<table>_pgwarp_identity`, clipped to fit 63 bytes.
fn identity_index_name(table: &str) -> String {
    const SUFFIX: &str = "_pgwarp_identity";
    let mut end = table.len().min(63 - SUFFIX.len());
    while !table.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{SUFFIX}", &table[..end])
}

/// Key and foreign key changes for the target, in the order they must run.
pub fn key_sql(snap: &Snapshot, plan: &Plan) -> Vec<String> {
    let mut out = Vec::new();
    for change in &plan.fk_changes {
        let Some(fk) = snap.foreign_keys.get(change.fk) else {
            continue;
        };
        let Some(table) = snap.tables.get(fk.table) else {
            continue;
        };
        out.push(format!(
            "ALTER TABLE {} DROP CONSTRAINT {}",
            q(table),
            quote_ident(&fk.name)
        ));
    }
    for k in &plan.key_changes {
        let Some(table) = snap.tables.get(k.table) else {
            continue;
        };
        let kind = if k.primary { "PRIMARY KEY" } else { "UNIQUE" };
        if k.constraint {
            out.push(format!(
                "ALTER TABLE {t} DROP CONSTRAINT {n}, ADD CONSTRAINT {n} {kind} ({c})",
                t = q(table),
                n = quote_ident(&k.name),
                c = cols(&k.new)
            ));
        } else {
            out.push(format!(
                "DROP INDEX {}",
                quote_qualified(&table.schema, &k.name)
            ));
            out.push(format!(
                "CREATE UNIQUE INDEX {} ON {} ({})",
                quote_ident(&k.name),
                q(table),
                cols(&k.new)
            ));
        }
    }
    for change in &plan.fk_changes {
        let (Some(fk), Some((c, r))) = (snap.foreign_keys.get(change.fk), &change.new) else {
            continue;
        };
        let (Some(table), Some(parent)) =
            (snap.tables.get(fk.table), snap.tables.get(fk.ref_table))
        else {
            continue;
        };
        out.push(format!(
            "ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({})",
            q(table),
            quote_ident(&fk.name),
            cols(c),
            q(parent),
            cols(r)
        ));
    }
    out
}

/// The Citus calls, reference tables first, then each colocation group after its leader.
pub fn citus_sql(snap: &Snapshot, plan: &Plan) -> Vec<String> {
    let mut out = Vec::new();
    let reference: Vec<usize> = plan
        .tables
        .iter()
        .filter(|t| t.placement == Placement::Reference)
        .map(|t| t.table)
        .collect();
    for i in referenced_first(snap, &reference) {
        if let Some(t) = snap.tables.get(i) {
            out.push(format!(
                "SELECT create_reference_table({})",
                quote_literal(&q(t))
            ));
        }
    }
    for (g, group) in plan.groups.iter().enumerate() {
        let Some(leader) = snap.tables.get(group.leader) else {
            continue;
        };
        let members: Vec<usize> = group
            .tables
            .iter()
            .copied()
            .filter(|&t| t != group.leader)
            .collect();
        for (n, i) in std::iter::once(group.leader)
            .chain(referenced_first(snap, &members))
            .enumerate()
        {
            let (Some(t), Some(col)) = (snap.tables.get(i), plan.dist_column(i)) else {
                continue;
            };
            let extra = if n == 0 {
                match (g, plan.shard_count) {
                    (0, Some(count)) => format!(", shard_count => {count}"),
                    (0, None) => String::new(),
                    _ => ", colocate_with => 'none'".to_owned(),
                }
            } else {
                format!(", colocate_with => {}", quote_literal(&q(leader)))
            };
            out.push(format!(
                "SELECT create_distributed_table({}, {}{extra})",
                quote_literal(&q(t)),
                quote_literal(col)
            ));
        }
    }
    out
}

/// The SQL file: a header, the source's part as comments, then the target's statements.
pub fn sql_file(snap: &Snapshot, plan: &Plan) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "-- pgwarp plan for database \"{}\".\n-- Review it. `pgwarp schema --plan FILE` runs the \
         statements below the target marker on the target,\n-- after copying the schema and \
         before any row is written.",
        snap.database
    );
    let source = source_sql(snap, plan);
    if !source.is_empty() {
        let _ = writeln!(
            s,
            "--\n-- On the SOURCE, before pgwarp sync (application changes; not run by pgwarp):"
        );
        for stmt in &source {
            let _ = writeln!(s, "--   {stmt};");
        }
    }
    let _ = writeln!(s, "\n{TARGET_MARKER}");
    let keys = key_sql(snap, plan);
    if !keys.is_empty() {
        let _ = writeln!(s, "-- keys that must include the distribution column");
        for stmt in &keys {
            let _ = writeln!(s, "{stmt};");
        }
    }
    let citus = citus_sql(snap, plan);
    if !citus.is_empty() {
        let _ = writeln!(s, "-- distribution");
        for stmt in &citus {
            let _ = writeln!(s, "{stmt};");
        }
    }
    let local: Vec<String> = plan
        .tables
        .iter()
        .filter(|t| t.placement == Placement::Local)
        .filter_map(|t| snap.tables.get(t.table).map(TableStat::display))
        .collect();
    if !local.is_empty() {
        let _ = writeln!(s, "-- left local on the coordinator: {}", local.join(", "));
    }
    s
}

/// `1.2 GB`, `64 kB`.
pub fn human_bytes(n: i64) -> String {
    const UNITS: [&str; 5] = ["bytes", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} bytes")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The report for a person.
pub fn report(snap: &Snapshot, plan: &Plan) -> String {
    let mut s = String::new();
    let total: i64 = snap.tables.iter().map(|t| t.bytes).sum();
    let _ = writeln!(
        s,
        "pgwarp plan for database \"{}\": {} table(s), {}\n",
        snap.database,
        snap.tables.len(),
        human_bytes(total)
    );
    let name = |i: usize| {
        snap.tables
            .get(i)
            .map_or_else(String::new, TableStat::display)
    };
    match &plan.tenant {
        Some(t) => {
            let root = t.table.map_or_else(
                || "(no root table)".to_owned(),
                |r| format!("{}.{}", name(r), t.key),
            );
            let _ = writeln!(
                s,
                "tenant key: {root}, column \"{}\" ({})",
                t.column, t.type_name
            );
        }
        None => {
            let _ = writeln!(
                s,
                "tenant key: none found (no foreign keys lead to a common key)"
            );
        }
    }
    for (g, group) in plan.groups.iter().enumerate() {
        let members: Vec<String> = group.tables.iter().map(|&i| name(i)).collect();
        let shards = match (g, plan.shard_count) {
            (0, Some(c)) => format!(", {c} shards"),
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "colocation group {}{shards}: {}",
            g + 1,
            members.join(", ")
        );
    }
    let width = snap
        .tables
        .iter()
        .map(|t| t.display().len())
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = writeln!(
        s,
        "\n{:width$}  {:>10}  {:>10}  placement",
        "table", "size", "rows"
    );
    for t in &plan.tables {
        let Some(table) = snap.tables.get(t.table) else {
            continue;
        };
        let placement = match &t.placement {
            Placement::Distributed { column, group, .. } => {
                format!("distributed by {column} (group {})", group + 1)
            }
            Placement::Reference => "reference".to_owned(),
            Placement::Local => "local".to_owned(),
        };
        let _ = writeln!(
            s,
            "{:width$}  {:>10}  {:>10}  {placement}: {}",
            table.display(),
            human_bytes(table.bytes),
            table.rows.map_or_else(|| "?".to_owned(), |r| r.to_string()),
            t.reason
        );
    }
    if !plan.warnings.is_empty() {
        let _ = writeln!(s, "\nwarnings:");
        for w in &plan.warnings {
            let _ = writeln!(s, "  - {w}");
        }
    }
    let source = source_sql(snap, plan);
    if !source.is_empty() {
        let _ = writeln!(
            s,
            "\nbefore pgwarp sync, on the SOURCE (application changes):"
        );
        for stmt in &source {
            let _ = writeln!(s, "  {stmt};");
        }
    }
    s
}

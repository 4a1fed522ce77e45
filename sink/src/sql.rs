//! The SQL text of every statement the writer sends.
//!
//! Statements are built from quoted identifiers only; row data always travels as COPY data or
//! as the group-number parameter `$1`, so one text per (shard, operation, column set) is
//! prepared once per connection and reused.
//!
//! Staging tables are created per connection and table with `CREATE TEMP TABLE ... ON COMMIT
//! DELETE ROWS AS SELECT ... FROM shard WITH NO DATA` rather than `(LIKE shard)`: `LIKE` copies
//! `NOT NULL` constraints, and staged rows legitimately hold NULL in columns they do not carry
//! (key-only deletes, unchanged TOAST columns). The column types (with typmods) are the shard's.
//! Layout: `__pgwarp_g int4` (group), `__pgwarp_f bool` (filled by a move), the table's
//! columns, then `__pgwarp_o<j>` per key column (the old key).

use crate::plan::SqlOp;
use crate::quote::quote_ident;
use crate::row::RowFormat;
use crate::target::{ShardTarget, TargetTable};

/// Group column of staging tables.
const GROUP: &str = "\"__pgwarp_g\"";
/// Filled-flag column of staging tables.
const FILLED: &str = "\"__pgwarp_f\"";

fn old_col(j: usize) -> String {
    format!("\"__pgwarp_o{j}\"")
}

fn format_clause(format: RowFormat) -> &'static str {
    match format {
        RowFormat::Binary => "(FORMAT binary)",
        RowFormat::Text => "(FORMAT text)",
    }
}

fn column_list(table: &TargetTable, prefix: &str) -> String {
    let mut out = String::new();
    for (i, c) in table.columns().iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(prefix);
        out.push_str(&quote_ident(c));
    }
    out
}

/// `COPY shard (cols) FROM STDIN (FORMAT ...)`.
pub(crate) fn copy_into_shard(shard: &ShardTarget, format: RowFormat) -> String {
    format!(
        "COPY {} ({}) FROM STDIN {}",
        shard.quoted_name(),
        column_list(shard.table(), ""),
        format_clause(format)
    )
}

/// `COPY stage FROM STDIN (FORMAT ...)`.
pub(crate) fn copy_into_stage(stage: &str, format: RowFormat) -> String {
    format!("COPY {stage} FROM STDIN {}", format_clause(format))
}

/// Creates the staging table for `shard`'s table.
pub(crate) fn create_stage(stage: &str, shard: &ShardTarget) -> String {
    let table = shard.table();
    let mut olds = String::new();
    for (j, &k) in table.key().iter().enumerate() {
        olds.push_str(&format!(
            ", t.{} AS {}",
            quote_ident(&table.columns()[k]),
            old_col(j)
        ));
    }
    format!(
        "CREATE TEMP TABLE {stage} ON COMMIT DELETE ROWS AS \
         SELECT NULL::int4 AS {GROUP}, NULL::bool AS {FILLED}, {}{olds} FROM {} t WITH NO DATA",
        column_list(table, "t."),
        shard.quoted_name()
    )
}

/// `t.k = s.k AND ...` for the key, against the staged columns or the staged old key.
fn key_match(table: &TargetTable, by_old: bool) -> String {
    let op = if table.key_unique() {
        "="
    } else {
        "IS NOT DISTINCT FROM"
    };
    let mut out = String::new();
    for (j, &k) in table.key().iter().enumerate() {
        let col = quote_ident(&table.columns()[k]);
        let staged = if by_old { old_col(j) } else { col.clone() };
        out.push_str(&format!(" AND t.{col} {op} s.{staged}"));
    }
    out
}

/// The statement for a set-based step over staged group `$1`.
pub(crate) fn statement(op: &SqlOp, shard: &ShardTarget, stage: &str) -> String {
    let table = shard.table();
    let name = shard.quoted_name();
    match op {
        SqlOp::Delete { by_old } => format!(
            "DELETE FROM {name} t USING {stage} s WHERE s.{GROUP} = $1{}",
            key_match(table, *by_old)
        ),
        SqlOp::Update { set, by_old } => {
            let assignments: Vec<String> = set
                .iter()
                .map(|&i| {
                    let c = quote_ident(&table.columns()[i]);
                    format!("{c} = s.{c}")
                })
                .collect();
            format!(
                "UPDATE {name} t SET {} FROM {stage} s WHERE s.{GROUP} = $1{}",
                assignments.join(", "),
                key_match(table, *by_old)
            )
        }
        SqlOp::Capture { missing } => {
            let returning: Vec<String> = missing
                .iter()
                .enumerate()
                .map(|(j, &i)| {
                    format!(
                        "t.{} AS \"__pgwarp_v{j}\"",
                        quote_ident(&table.columns()[i])
                    )
                })
                .collect();
            let assignments: Vec<String> = missing
                .iter()
                .enumerate()
                .map(|(j, &i)| {
                    format!("{} = d.\"__pgwarp_v{j}\"", quote_ident(&table.columns()[i]))
                })
                .collect();
            format!(
                "WITH d AS (DELETE FROM {name} t USING {stage} s WHERE s.{GROUP} = $1{} \
                 RETURNING s.ctid AS \"__pgwarp_ctid\"{}{}) \
                 UPDATE {stage} s SET {}{FILLED} = true FROM d \
                 WHERE s.ctid = d.\"__pgwarp_ctid\"",
                key_match(table, true),
                if returning.is_empty() { "" } else { ", " },
                returning.join(", "),
                assignments
                    .iter()
                    .map(|a| format!("{a}, "))
                    .collect::<String>(),
            )
        }
        SqlOp::Insert { captured, upsert } => {
            let filled = if *captured {
                format!(" AND s.{FILLED}")
            } else {
                String::new()
            };
            let select = format!(
                "INSERT INTO {name} ({}) SELECT {} FROM {stage} s WHERE s.{GROUP} = $1{filled}",
                column_list(table, ""),
                column_list(table, "s."),
            );
            if !*upsert {
                return select;
            }
            if !table.key_unique() {
                return format!(
                    "{select} AND NOT EXISTS (SELECT 1 FROM {name} t WHERE true{})",
                    key_match(table, false)
                );
            }
            let keys: Vec<String> = table
                .key()
                .iter()
                .map(|&k| quote_ident(&table.columns()[k]))
                .collect();
            let sets: Vec<String> = (0..table.columns().len())
                .filter(|&i| !table.is_key(i))
                .map(|i| {
                    let c = quote_ident(&table.columns()[i]);
                    format!("{c} = EXCLUDED.{c}")
                })
                .collect();
            if sets.is_empty() {
                format!("{select} ON CONFLICT ({}) DO NOTHING", keys.join(", "))
            } else {
                format!(
                    "{select} ON CONFLICT ({}) DO UPDATE SET {}",
                    keys.join(", "),
                    sets.join(", ")
                )
            }
        }
    }
}

/// `TRUNCATE` of shards; Citus blocks `TRUNCATE` of a shard from a non-Citus backend unless
/// `citus.enable_manual_changes_to_shards` is on (a harmless placeholder on plain PostgreSQL).
pub(crate) fn truncate<'a>(
    shards: impl Iterator<Item = &'a ShardTarget>,
    cascade: bool,
    restart_identity: bool,
) -> String {
    let names: Vec<&str> = shards.map(ShardTarget::quoted_name).collect();
    format!(
        "SET LOCAL citus.enable_manual_changes_to_shards TO on; TRUNCATE {}{}{}",
        names.join(", "),
        if restart_identity {
            " RESTART IDENTITY"
        } else {
            ""
        },
        if cascade { " CASCADE" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn shard(unique: bool) -> ShardTarget {
        let t = TargetTable::new(
            "public.t",
            vec!["id".into(), "v".into(), "big".into()],
            vec![0],
            unique,
        )
        .unwrap();
        ShardTarget::new(Arc::new(t), "public", "t_1")
    }

    #[test]
    fn statements() {
        let s = shard(true);
        let st = "pg_temp.pgwarp_stage_1";
        assert_eq!(
            copy_into_shard(&s, RowFormat::Binary),
            r#"COPY "public"."t_1" ("id", "v", "big") FROM STDIN (FORMAT binary)"#
        );
        assert_eq!(
            create_stage(st, &s),
            r#"CREATE TEMP TABLE pg_temp.pgwarp_stage_1 ON COMMIT DELETE ROWS AS SELECT NULL::int4 AS "__pgwarp_g", NULL::bool AS "__pgwarp_f", t."id", t."v", t."big", t."id" AS "__pgwarp_o0" FROM "public"."t_1" t WITH NO DATA"#
        );
        assert_eq!(
            statement(&SqlOp::Delete { by_old: false }, &s, st),
            r#"DELETE FROM "public"."t_1" t USING pg_temp.pgwarp_stage_1 s WHERE s."__pgwarp_g" = $1 AND t."id" = s."id""#
        );
        assert_eq!(
            statement(
                &SqlOp::Update {
                    set: vec![1],
                    by_old: false
                },
                &s,
                st
            ),
            r#"UPDATE "public"."t_1" t SET "v" = s."v" FROM pg_temp.pgwarp_stage_1 s WHERE s."__pgwarp_g" = $1 AND t."id" = s."id""#
        );
        assert_eq!(
            statement(&SqlOp::Capture { missing: vec![2] }, &s, st),
            r#"WITH d AS (DELETE FROM "public"."t_1" t USING pg_temp.pgwarp_stage_1 s WHERE s."__pgwarp_g" = $1 AND t."id" = s."__pgwarp_o0" RETURNING s.ctid AS "__pgwarp_ctid", t."big" AS "__pgwarp_v0") UPDATE pg_temp.pgwarp_stage_1 s SET "big" = d."__pgwarp_v0", "__pgwarp_f" = true FROM d WHERE s.ctid = d."__pgwarp_ctid""#
        );
        assert_eq!(
            statement(
                &SqlOp::Insert {
                    captured: true,
                    upsert: true
                },
                &s,
                st
            ),
            r#"INSERT INTO "public"."t_1" ("id", "v", "big") SELECT s."id", s."v", s."big" FROM pg_temp.pgwarp_stage_1 s WHERE s."__pgwarp_g" = $1 AND s."__pgwarp_f" ON CONFLICT ("id") DO UPDATE SET "v" = EXCLUDED."v", "big" = EXCLUDED."big""#
        );
        let n = shard(false);
        assert_eq!(
            statement(
                &SqlOp::Insert {
                    captured: false,
                    upsert: true
                },
                &n,
                st
            ),
            r#"INSERT INTO "public"."t_1" ("id", "v", "big") SELECT s."id", s."v", s."big" FROM pg_temp.pgwarp_stage_1 s WHERE s."__pgwarp_g" = $1 AND NOT EXISTS (SELECT 1 FROM "public"."t_1" t WHERE true AND t."id" IS NOT DISTINCT FROM s."id")"#
        );
        assert_eq!(
            truncate([&s].into_iter(), true, true),
            r#"SET LOCAL citus.enable_manual_changes_to_shards TO on; TRUNCATE "public"."t_1" RESTART IDENTITY CASCADE"#
        );
    }
}

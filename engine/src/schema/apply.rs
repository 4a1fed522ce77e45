//! Applying a plan file (from `pgwarp plan --out`) on the target, on still-empty tables.
//!
//! Only the part after the `-- pgwarp:target` marker runs; the source's part is comments.
//! It runs in one transaction, after checking that the target is a Citus coordinator and that
//! none of the tables holds a row, so `create_distributed_table` has nothing to copy and no
//! row can be left in a coordinator shell table; afterwards the shells' storage is checked to
//! be empty.

use tokio_postgres::Client;

use crate::plan::render::TARGET_MARKER;
use crate::verify::pg_message;

use super::SchemaError;

/// The target part of a plan file.
pub fn target_part(text: &str) -> Result<&str, SchemaError> {
    let Some(pos) = text.find(TARGET_MARKER) else {
        return Err(SchemaError::Plan(format!(
            "the plan file has no \"{TARGET_MARKER}\" line: write it with pgwarp plan --out"
        )));
    };
    Ok(&text[pos + TARGET_MARKER.len()..])
}

/// Whether `create_distributed_table` exists on the target.
pub async fn is_citus(target: &Client) -> Result<bool, SchemaError> {
    target
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_proc \
                             WHERE proname = 'create_distributed_table')",
            &[],
        )
        .await
        .and_then(|r| r.try_get(0))
        .map_err(SchemaError::query("could not look for Citus", "target"))
}

/// The tables among `tables` (quoted names) that are already Citus tables.
pub async fn citus_tables(target: &Client, tables: &[String]) -> Result<Vec<String>, SchemaError> {
    const WHAT: &str = "could not read pg_dist_partition";
    let exists: bool = target
        .query_one(
            "SELECT coalesce(to_regclass('pg_catalog.pg_dist_partition'), \
                             to_regclass('pg_dist_partition')) IS NOT NULL",
            &[],
        )
        .await
        .and_then(|r| r.try_get(0))
        .map_err(SchemaError::query(WHAT, "target"))?;
    if !exists {
        return Ok(Vec::new());
    }
    names_where(
        target,
        tables,
        "to_regclass(n) IN (SELECT logicalrelid FROM pg_dist_partition)",
        WHAT,
    )
    .await
}

/// Runs the target part of `text` in one transaction.
pub async fn apply(target: &Client, text: &str) -> Result<usize, SchemaError> {
    let sql = target_part(text)?;
    let statements = sql
        .lines()
        .filter(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with("--")
        })
        .count();
    if let Err(e) = target
        .batch_execute(&format!("BEGIN;\n{sql}\n;COMMIT"))
        .await
    {
        let _ = target.batch_execute("ROLLBACK").await;
        let hint = if e.as_db_error().is_some_and(|d| d.code().code() == "42883") {
            ": is the Citus extension installed on the target?"
        } else {
            ""
        };
        return Err(SchemaError::Plan(format!(
            "the plan failed on the target and nothing of it was applied: {}{hint}",
            pg_message(&e)
        )));
    }
    Ok(statements)
}

/// Shell tables (quoted names) whose local storage is not empty.
pub async fn nonempty_shells(
    target: &Client,
    tables: &[String],
) -> Result<Vec<String>, SchemaError> {
    names_where(
        target,
        tables,
        "to_regclass(n) IS NOT NULL AND pg_catalog.pg_relation_size(to_regclass(n)) > 0",
        "could not read the size of the shell tables",
    )
    .await
}

/// The names `n` among `tables` for which the SQL condition `condition` holds on the target.
async fn names_where(
    target: &Client,
    tables: &[String],
    condition: &str,
    what: &'static str,
) -> Result<Vec<String>, SchemaError> {
    let rows = target
        .query(
            &format!("SELECT n FROM unnest($1::text[]) n WHERE {condition}"),
            &[&tables],
        )
        .await
        .map_err(SchemaError::query(what, "target"))?;
    rows.iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()
        .map_err(SchemaError::query(what, "target"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_target_part_runs() {
        let text = "-- header\n--   ALTER TABLE src ...;\n\n-- pgwarp:target\nSELECT 1;\n";
        assert_eq!(target_part(text).unwrap(), "\nSELECT 1;\n");
        assert!(target_part("SELECT 1;").is_err());
    }
}

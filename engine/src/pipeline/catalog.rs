//! What the engine needs to know about each table, read from a catalog (source or target).
//!
//! Columns are addressed by name everywhere (a target's attnums can differ from the source's
//! after dropped columns); their order is the source's `attnum` order, which is the field order
//! of pgoutput tuples and of the snapshot's `COPY (SELECT cols ...)`. Generated columns are
//! left out: pgoutput does not send them (PostgreSQL 15/16) and the target computes its own.
//! The key is the replica identity, the columns pgoutput identifies an old row by.

use std::collections::HashMap;
use std::fmt;

use tokio_postgres::Client;

use super::error::PipelineError;

/// One column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Name.
    pub name: String,
    /// Type OID.
    pub type_oid: u32,
    /// `format_type(type, typmod)`.
    pub type_name: String,
    /// Generated (`GENERATED ALWAYS AS ... STORED`).
    pub generated: bool,
}

/// A table as a catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    /// `pg_class.oid`.
    pub oid: u32,
    /// Schema.
    pub schema: String,
    /// Name.
    pub name: String,
    /// `relkind`.
    pub relkind: char,
    /// `relreplident`: `d` default (primary key), `i` index, `f` full, `n` nothing.
    pub replica_identity: char,
    /// Every live column, generated ones included, in `attnum` order.
    pub all_columns: Vec<Column>,
    /// Replica identity key columns (names); every column for `FULL`; empty when none.
    pub key: Vec<String>,
    /// Whether a primary key exists.
    pub has_primary_key: bool,
    /// Column lists of valid, non-partial unique indexes on plain columns.
    pub unique_keys: Vec<Vec<String>>,
    /// Size in pages (`pg_relation_size / block_size`).
    pub pages: u64,
    /// `pg_relation_filenode`: changes when the table is rewritten (`TRUNCATE`, `VACUUM FULL`).
    pub filenode: u32,
}

impl TableInfo {
    /// The replicated columns: every column but generated ones.
    pub fn columns(&self) -> impl Iterator<Item = &Column> {
        self.all_columns.iter().filter(|c| !c.generated)
    }

    /// Names of the replicated columns.
    pub fn column_names(&self) -> Vec<String> {
        self.columns().map(|c| c.name.clone()).collect()
    }

    /// `schema.name` (unquoted, for messages and state rows).
    pub fn display_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// Whether a unique index covers exactly the key columns (in any order).
    pub fn key_is_unique(&self) -> bool {
        !self.key.is_empty() && self.unique_keys.iter().any(|u| same_set(u, &self.key))
    }
}

impl fmt::Display for TableInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// Whether two column lists hold the same names.
pub fn same_set(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

/// Turns names as the sync stores them (`schema.name`, unquoted: [`TableInfo::display_name`])
/// back into quoted SQL names, by finding the table whose schema and name join to exactly that
/// text. Splitting at a `.` instead would break on schema names that contain one. A name that
/// matches no table is quoted as if split at its first `.`, so using it fails with "does not
/// exist".
pub async fn quote_stored_names(
    client: &Client,
    names: &[String],
) -> Result<Vec<String>, PipelineError> {
    let rows = client
        .query(
            "SELECT (SELECT pg_catalog.quote_ident(n.nspname) || '.' \
                            || pg_catalog.quote_ident(c.relname) \
                       FROM pg_catalog.pg_class c \
                       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                      WHERE n.nspname || '.' || c.relname = t.name \
                        AND c.relkind IN ('r', 'p') \
                      ORDER BY c.oid LIMIT 1) \
               FROM unnest($1::text[]) WITH ORDINALITY AS t(name, ord) \
              ORDER BY t.ord",
            &[&names],
        )
        .await
        .map_err(PipelineError::query("could not resolve stored table names"))?;
    names
        .iter()
        .zip(&rows)
        .map(|(name, row)| {
            let found: Option<String> = row.try_get(0).map_err(bad_row)?;
            Ok(found.unwrap_or_else(|| match name.split_once('.') {
                Some((schema, rel)) => format!(
                    "{}.{}",
                    crate::citus::names::quote_ident(schema),
                    crate::citus::names::quote_ident(rel)
                ),
                None => crate::citus::names::quote_ident(name),
            }))
        })
        .collect()
}

/// Resolves `names` (as SQL would) and describes each table; a name that resolves to nothing
/// is `None` at its position.
pub async fn describe(
    client: &Client,
    names: &[String],
) -> Result<Vec<Option<TableInfo>>, PipelineError> {
    let rows = client
        .query(
            "SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text, \
                    c.relreplident::text, \
                    (pg_catalog.pg_relation_size(c.oid) \
                      / current_setting('block_size')::int8)::int8, \
                    coalesce(pg_catalog.pg_relation_filenode(c.oid), 0::oid) \
               FROM unnest($1::text[]) WITH ORDINALITY AS t(name, ord) \
               LEFT JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(t.name) \
               LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
              ORDER BY t.ord",
            &[&names],
        )
        .await
        .map_err(PipelineError::query("could not resolve table names"))?;
    let mut tables: Vec<Option<TableInfo>> = Vec::with_capacity(rows.len());
    for row in &rows {
        let oid: Option<u32> = row.try_get(0).map_err(bad_row)?;
        let Some(oid) = oid else {
            tables.push(None);
            continue;
        };
        let relkind: String = row.try_get(3).map_err(bad_row)?;
        let ident: String = row.try_get(4).map_err(bad_row)?;
        let pages: i64 = row.try_get(5).map_err(bad_row)?;
        tables.push(Some(TableInfo {
            oid,
            schema: row.try_get(1).map_err(bad_row)?,
            name: row.try_get(2).map_err(bad_row)?,
            relkind: relkind.chars().next().unwrap_or('?'),
            replica_identity: ident.chars().next().unwrap_or('d'),
            all_columns: Vec::new(),
            key: Vec::new(),
            has_primary_key: false,
            unique_keys: Vec::new(),
            pages: u64::try_from(pages).unwrap_or(0),
            filenode: row.try_get(6).map_err(bad_row)?,
        }));
    }
    let oids: Vec<u32> = tables.iter().flatten().map(|t| t.oid).collect();
    let mut columns = columns(client, &oids).await?;
    let mut indexes = indexes(client, &oids).await?;
    for table in tables.iter_mut().flatten() {
        table.all_columns = columns.remove(&table.oid).unwrap_or_default();
        let idx = indexes.remove(&table.oid).unwrap_or_default();
        table.has_primary_key = idx.iter().any(|i| i.primary);
        table.unique_keys = idx.iter().map(|i| i.columns.clone()).collect();
        table.key = match table.replica_identity {
            'f' => table.column_names(),
            'd' => idx
                .iter()
                .find(|i| i.primary)
                .map(|i| i.columns.clone())
                .unwrap_or_default(),
            'i' => idx
                .iter()
                .find(|i| i.replident)
                .map(|i| i.columns.clone())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
    }
    Ok(tables)
}

/// The ordinary tables of `schemas`, as `schema.name` quoted for `to_regclass`.
pub async fn tables_in_schemas(
    client: &Client,
    schemas: &[String],
) -> Result<Vec<String>, PipelineError> {
    let rows = client
        .query(
            "SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) \
               FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
              WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'p') \
                AND NOT c.relispartition \
              ORDER BY n.nspname, c.relname",
            &[&schemas],
        )
        .await
        .map_err(PipelineError::query(
            "could not list the tables of the schemas",
        ))?;
    rows.iter()
        .map(|r| r.try_get::<_, String>(0).map_err(bad_row))
        .collect()
}

fn bad_row(e: tokio_postgres::Error) -> PipelineError {
    PipelineError::Query {
        what: "unexpected catalog row".to_owned(),
        source: e,
    }
}

async fn columns(
    client: &Client,
    oids: &[u32],
) -> Result<HashMap<u32, Vec<Column>>, PipelineError> {
    let rows = client
        .query(
            "SELECT a.attrelid, a.attname::text, a.atttypid, \
                    pg_catalog.format_type(a.atttypid, a.atttypmod), a.attgenerated <> '' \
               FROM pg_catalog.pg_attribute a \
              WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped \
              ORDER BY a.attrelid, a.attnum",
            &[&oids],
        )
        .await
        .map_err(PipelineError::query("could not read table columns"))?;
    let mut out: HashMap<u32, Vec<Column>> = HashMap::new();
    for r in rows {
        let oid: u32 = r.try_get(0).map_err(bad_row)?;
        out.entry(oid).or_default().push(Column {
            name: r.try_get(1).map_err(bad_row)?,
            type_oid: r.try_get(2).map_err(bad_row)?,
            type_name: r.try_get(3).map_err(bad_row)?,
            generated: r.try_get(4).map_err(bad_row)?,
        });
    }
    Ok(out)
}

struct IndexRow {
    primary: bool,
    replident: bool,
    columns: Vec<String>,
}

/// Valid unique indexes over plain columns (no expressions, no predicate).
async fn indexes(
    client: &Client,
    oids: &[u32],
) -> Result<HashMap<u32, Vec<IndexRow>>, PipelineError> {
    let rows = client
        .query(
            "SELECT i.indrelid, i.indisprimary, i.indisreplident, \
                    array(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o) \
                           JOIN pg_catalog.pg_attribute a \
                             ON a.attrelid = i.indrelid AND a.attnum = k.n ORDER BY k.o) \
               FROM pg_catalog.pg_index i \
              WHERE i.indrelid = ANY($1::oid[]) AND i.indisunique AND i.indisvalid \
                AND i.indpred IS NULL AND i.indexprs IS NULL \
              ORDER BY i.indrelid, i.indisprimary DESC, i.indexrelid",
            &[&oids],
        )
        .await
        .map_err(PipelineError::query("could not read table indexes"))?;
    let mut out: HashMap<u32, Vec<IndexRow>> = HashMap::new();
    for r in rows {
        let oid: u32 = r.try_get(0).map_err(bad_row)?;
        out.entry(oid).or_default().push(IndexRow {
            primary: r.try_get(1).map_err(bad_row)?,
            replident: r.try_get(2).map_err(bad_row)?,
            columns: r.try_get(3).map_err(bad_row)?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, generated: bool) -> Column {
        Column {
            name: name.into(),
            type_oid: 20,
            type_name: "bigint".into(),
            generated,
        }
    }

    #[test]
    fn generated_columns_are_not_replicated() {
        let t = TableInfo {
            oid: 1,
            schema: "s".into(),
            name: "t".into(),
            relkind: 'r',
            replica_identity: 'd',
            all_columns: vec![col("a", false), col("g", true), col("b", false)],
            key: vec!["a".into()],
            has_primary_key: true,
            unique_keys: vec![vec!["a".into()], vec!["b".into(), "a".into()]],
            pages: 0,
            filenode: 1,
        };
        assert_eq!(t.column_names(), vec!["a".to_owned(), "b".to_owned()]);
        assert!(t.key_is_unique());
        assert!(same_set(
            &["a".into(), "b".into()],
            &["b".into(), "a".into()]
        ));
        assert_eq!(t.display_name(), "s.t");
    }
}

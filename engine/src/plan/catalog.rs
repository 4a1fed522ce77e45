//! What `plan` knows about the source: a snapshot of its tables, sizes, keys and foreign keys.
//!
//! The decision logic ([`super::decide`]) is a pure function of this snapshot, so it is tested
//! with snapshots written by hand; [`load`] reads one from a live server in a handful of
//! catalog queries (one per kind of object, not per table).

use std::collections::HashMap;

use serde::Serialize;
use tokio_postgres::Client;

use super::PlanError;

/// A column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnStat {
    /// Name.
    pub name: String,
    /// `format_type(type, typmod)`.
    pub type_name: String,
    /// `NOT NULL`.
    pub not_null: bool,
}

/// A primary key or unique constraint (or unique index).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyStat {
    /// Constraint (or index) name.
    pub name: String,
    /// The primary key.
    pub primary: bool,
    /// A constraint (`ALTER TABLE ... DROP CONSTRAINT` works), not only an index.
    pub constraint: bool,
    /// Columns, in key order.
    pub columns: Vec<String>,
}

/// A table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableStat {
    /// Schema.
    pub schema: String,
    /// Name.
    pub name: String,
    /// `pg_total_relation_size` (partitions included for a partitioned table).
    pub bytes: i64,
    /// Rows: exact for small tables, the planner's estimate for others; `None` if unknown.
    pub rows: Option<i64>,
    /// Columns in `attnum` order (generated ones excluded).
    pub columns: Vec<ColumnStat>,
    /// Primary key and unique keys over plain columns.
    pub keys: Vec<KeyStat>,
    /// The replica identity's columns (`FULL`: every column; empty: none).
    pub replica_identity: Vec<String>,
}

impl TableStat {
    /// `schema.name` for people.
    pub fn display(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// The column called `name`.
    pub fn column(&self, name: &str) -> Option<&ColumnStat> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The primary key's columns.
    pub fn primary_key(&self) -> Option<&KeyStat> {
        self.keys.iter().find(|k| k.primary)
    }
}

/// A foreign key between two tables of the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForeignKey {
    /// Constraint name.
    pub name: String,
    /// Referencing table (index into [`Snapshot::tables`]).
    pub table: usize,
    /// Referencing columns.
    pub columns: Vec<String>,
    /// Referenced table.
    pub ref_table: usize,
    /// Referenced columns.
    pub ref_columns: Vec<String>,
}

/// The source as `plan` sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// Database name.
    pub database: String,
    /// Tables.
    pub tables: Vec<TableStat>,
    /// Foreign keys between them.
    pub foreign_keys: Vec<ForeignKey>,
}

/// Tables smaller than this are counted exactly.
const EXACT_COUNT_BYTES: i64 = 8 * 1024 * 1024;

fn q(what: &'static str) -> impl Fn(tokio_postgres::Error) -> PlanError {
    move |source| PlanError::Query { what, source }
}

/// Reads the snapshot of the ordinary and partitioned tables of `schemas` (every user schema
/// when empty).
pub async fn load(client: &Client, schemas: &[String]) -> Result<Snapshot, PlanError> {
    let database: String = client
        .query_one("SELECT current_database()::text", &[])
        .await
        .and_then(|r| r.try_get(0))
        .map_err(q("could not read the database name"))?;
    let rows = client
        .query(
            "SELECT c.oid, n.nspname::text, c.relname::text, \
                    CASE WHEN c.relkind = 'p' THEN \
                      (SELECT coalesce(sum(pg_catalog.pg_total_relation_size(relid)), 0)::int8 \
                         FROM pg_catalog.pg_partition_tree(c.oid)) \
                    ELSE pg_catalog.pg_total_relation_size(c.oid) END, \
                    CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::int8 END, \
                    c.relreplident::text \
               FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
              WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relpersistence = 'p' \
                AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgwarp') \
                AND n.nspname NOT LIKE 'pg\\_%' \
                AND (cardinality($1::text[]) = 0 OR n.nspname = ANY($1::text[])) \
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
                                 WHERE d.classid = 'pg_catalog.pg_class'::regclass \
                                   AND d.objid = c.oid AND d.deptype = 'e') \
              ORDER BY 2, 3",
            &[&schemas],
        )
        .await
        .map_err(q("could not list the tables"))?;
    let mut tables = Vec::with_capacity(rows.len());
    let mut by_oid: HashMap<u32, usize> = HashMap::new();
    let mut identity: Vec<String> = Vec::new();
    for r in &rows {
        let read = || -> Result<_, tokio_postgres::Error> {
            Ok((
                r.try_get::<_, u32>(0)?,
                r.try_get::<_, String>(1)?,
                r.try_get::<_, String>(2)?,
                r.try_get::<_, i64>(3)?,
                r.try_get::<_, Option<i64>>(4)?,
                r.try_get::<_, String>(5)?,
            ))
        };
        let (oid, schema, name, bytes, rows, ident) =
            read().map_err(q("could not list the tables"))?;
        by_oid.insert(oid, tables.len());
        identity.push(ident);
        tables.push(TableStat {
            schema,
            name,
            bytes,
            rows,
            columns: Vec::new(),
            keys: Vec::new(),
            replica_identity: Vec::new(),
        });
    }
    let oids: Vec<u32> = by_oid.keys().copied().collect();

    let cols = client
        .query(
            "SELECT a.attrelid, a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod), \
                    a.attnotnull \
               FROM pg_catalog.pg_attribute a \
              WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped \
                AND a.attgenerated = '' \
              ORDER BY a.attrelid, a.attnum",
            &[&oids],
        )
        .await
        .map_err(q("could not read the columns"))?;
    for r in &cols {
        let read = || -> Result<_, tokio_postgres::Error> {
            Ok((
                r.try_get::<_, u32>(0)?,
                ColumnStat {
                    name: r.try_get(1)?,
                    type_name: r.try_get(2)?,
                    not_null: r.try_get(3)?,
                },
            ))
        };
        let (oid, col) = read().map_err(q("could not read the columns"))?;
        if let Some(t) = by_oid.get(&oid).and_then(|&i| tables.get_mut(i)) {
            t.columns.push(col);
        }
    }

    let keys = client
        .query(
            "SELECT i.indrelid, coalesce(con.conname, ic.relname)::text, i.indisprimary, \
                    con.oid IS NOT NULL, i.indisreplident, \
                    array(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o) \
                           JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n \
                          ORDER BY k.o) \
               FROM pg_catalog.pg_index i \
               JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid \
               LEFT JOIN pg_catalog.pg_constraint con ON con.conindid = i.indexrelid \
                    AND con.contype IN ('p', 'u') \
              WHERE i.indrelid = ANY($1::oid[]) AND i.indisunique AND i.indisvalid \
                AND i.indpred IS NULL AND i.indexprs IS NULL \
              ORDER BY i.indrelid, i.indisprimary DESC, 2",
            &[&oids],
        )
        .await
        .map_err(q("could not read the keys"))?;
    let mut replident_index: HashMap<usize, Vec<String>> = HashMap::new();
    for r in &keys {
        let read = || -> Result<_, tokio_postgres::Error> {
            Ok((
                r.try_get::<_, u32>(0)?,
                KeyStat {
                    name: r.try_get(1)?,
                    primary: r.try_get(2)?,
                    constraint: r.try_get(3)?,
                    columns: r.try_get(5)?,
                },
                r.try_get::<_, bool>(4)?,
            ))
        };
        let (oid, key, replident) = read().map_err(q("could not read the keys"))?;
        if let Some(&i) = by_oid.get(&oid) {
            if replident {
                replident_index.insert(i, key.columns.clone());
            }
            if let Some(t) = tables.get_mut(i) {
                t.keys.push(key);
            }
        }
    }
    for (i, t) in tables.iter_mut().enumerate() {
        t.replica_identity = match identity.get(i).map(String::as_str) {
            Some("f") => t.columns.iter().map(|c| c.name.clone()).collect(),
            Some("d") => t
                .primary_key()
                .map(|k| k.columns.clone())
                .unwrap_or_default(),
            Some("i") => replident_index.remove(&i).unwrap_or_default(),
            _ => Vec::new(),
        };
    }

    let fks = client
        .query(
            "SELECT con.conname::text, con.conrelid, con.confrelid, \
                    array(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, o) \
                           JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n \
                          ORDER BY k.o), \
                    array(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, o) \
                           JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n \
                          ORDER BY k.o) \
               FROM pg_catalog.pg_constraint con \
              WHERE con.contype = 'f' AND con.conrelid = ANY($1::oid[]) \
                AND con.confrelid = ANY($1::oid[]) AND con.conparentid = 0 \
              ORDER BY 2, 1",
            &[&oids],
        )
        .await
        .map_err(q("could not read the foreign keys"))?;
    let mut foreign_keys = Vec::with_capacity(fks.len());
    for r in &fks {
        let read = || -> Result<_, tokio_postgres::Error> {
            Ok((
                r.try_get::<_, String>(0)?,
                r.try_get::<_, u32>(1)?,
                r.try_get::<_, u32>(2)?,
                r.try_get::<_, Vec<String>>(3)?,
                r.try_get::<_, Vec<String>>(4)?,
            ))
        };
        let (name, rel, ref_rel, columns, ref_columns) =
            read().map_err(q("could not read the foreign keys"))?;
        if let (Some(&table), Some(&ref_table)) = (by_oid.get(&rel), by_oid.get(&ref_rel)) {
            foreign_keys.push(ForeignKey {
                name,
                table,
                columns,
                ref_table,
                ref_columns,
            });
        }
    }

    // exact row counts where they are cheap
    for t in tables.iter_mut().filter(|t| t.bytes < EXACT_COUNT_BYTES) {
        let sql = format!(
            "SELECT count(*) FROM {}",
            crate::citus::names::quote_qualified(&t.schema, &t.name)
        );
        if let Ok(row) = client.query_one(&sql, &[]).await {
            t.rows = row.try_get(0).ok();
        }
    }
    Ok(Snapshot {
        database,
        tables,
        foreign_keys,
    })
}

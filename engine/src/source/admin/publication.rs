//! The publication pgoutput streams: created or brought up to date idempotently.
//!
//! Running the setup twice must not fail or duplicate anything, and changing the table list
//! must change the publication. [`ensure_publication`] therefore reads what the publication
//! holds and only issues `CREATE PUBLICATION` or `ALTER PUBLICATION ... SET ...` when it
//! differs from what was asked. Whole schemas use `FOR TABLES IN SCHEMA` on PostgreSQL 15+;
//! on older servers the schemas' tables are listed at setup time (tables created later are
//! then not included, as the operator is told in the log).

use std::collections::BTreeSet;
use std::fmt;

use tokio_postgres::Client;

use super::super::SourceError;
use super::super::quote::{quote_ident, quote_qualified, validate_publication_name};
use super::pg_err;

/// `schema.table`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QualifiedName {
    /// Schema.
    pub schema: String,
    /// Table.
    pub name: String,
}

impl QualifiedName {
    /// Builds a name.
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        QualifiedName {
            schema: schema.into(),
            name: name.into(),
        }
    }

    /// Quoted for SQL.
    pub fn quoted(&self) -> String {
        quote_qualified(&self.schema, &self.name)
    }
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// What the publication should contain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicationScope {
    /// These tables.
    Tables(Vec<QualifiedName>),
    /// Every table of these schemas (including tables created later, on PG 15+).
    Schemas(Vec<String>),
}

/// What [`ensure_publication`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicationChange {
    /// The publication did not exist and was created.
    Created,
    /// It existed with other contents and was changed.
    Altered,
    /// It already had exactly the requested contents.
    Unchanged,
}

async fn server_version(client: &Client) -> Result<u32, SourceError> {
    let v: String = client
        .query_one("SELECT current_setting('server_version_num')", &[])
        .await
        .map_err(pg_err("could not read the server version"))?
        .get(0);
    Ok(v.parse().unwrap_or(0))
}

/// The tables the publication publishes now (as `pg_publication_tables` resolves them:
/// explicit tables, schemas' tables, or all tables); `None` if it does not exist.
pub async fn publication_tables(
    client: &Client,
    name: &str,
) -> Result<Option<Vec<QualifiedName>>, SourceError> {
    let what = format!("could not read publication \"{name}\"");
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1",
            &[&name],
        )
        .await
        .map_err(pg_err(&what))?
        .is_some();
    if !exists {
        return Ok(None);
    }
    let rows = client
        .query(
            "SELECT schemaname::text, tablename::text FROM pg_catalog.pg_publication_tables
              WHERE pubname = $1 ORDER BY 1, 2",
            &[&name],
        )
        .await
        .map_err(pg_err(&what))?;
    Ok(Some(
        rows.iter()
            .map(|r| QualifiedName::new(r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect(),
    ))
}

/// Checks that the publication exists and publishes at least one table; returns its tables.
pub async fn check_publication(
    client: &Client,
    name: &str,
) -> Result<Vec<QualifiedName>, SourceError> {
    match publication_tables(client, name).await? {
        None => Err(SourceError::PublicationMissing {
            publication: name.to_owned(),
        }),
        Some(tables) if tables.is_empty() => Err(SourceError::PublicationEmpty {
            publication: name.to_owned(),
        }),
        Some(tables) => Ok(tables),
    }
}

/// Lists the ordinary and partitioned tables of `schemas` (for servers without
/// `FOR TABLES IN SCHEMA`).
async fn tables_of_schemas(
    client: &Client,
    schemas: &[String],
    version: u32,
) -> Result<Vec<QualifiedName>, SourceError> {
    // PG 13+ publishes a partitioned table through its root; before, only leaf tables
    let filter = if version >= 130_000 {
        "c.relkind IN ('r', 'p') AND NOT c.relispartition"
    } else {
        "c.relkind = 'r'"
    };
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text FROM pg_catalog.pg_class c
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = ANY($1) AND {filter} AND c.relpersistence = 'p'
          ORDER BY 1, 2"
    );
    let rows = client
        .query(&sql, &[&schemas])
        .await
        .map_err(pg_err("could not list the tables of the chosen schemas"))?;
    Ok(rows
        .iter()
        .map(|r| QualifiedName::new(r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect())
}

/// What an existing publication is defined with.
struct Definition {
    all_tables: bool,
    tables: BTreeSet<QualifiedName>,
    schemas: BTreeSet<String>,
}

async fn definition(
    client: &Client,
    name: &str,
    version: u32,
) -> Result<Option<Definition>, SourceError> {
    let what = format!("could not read publication \"{name}\"");
    let Some(row) = client
        .query_opt(
            "SELECT puballtables FROM pg_catalog.pg_publication WHERE pubname = $1",
            &[&name],
        )
        .await
        .map_err(pg_err(&what))?
    else {
        return Ok(None);
    };
    let tables = client
        .query(
            "SELECT n.nspname::text, c.relname::text FROM pg_catalog.pg_publication_rel pr
               JOIN pg_catalog.pg_publication p ON p.oid = pr.prpubid
               JOIN pg_catalog.pg_class c ON c.oid = pr.prrelid
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE p.pubname = $1",
            &[&name],
        )
        .await
        .map_err(pg_err(&what))?
        .iter()
        .map(|r| QualifiedName::new(r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect();
    let schemas = if version >= 150_000 {
        client
            .query(
                "SELECT n.nspname::text FROM pg_catalog.pg_publication_namespace pn
                   JOIN pg_catalog.pg_publication p ON p.oid = pn.pnpubid
                   JOIN pg_catalog.pg_namespace n ON n.oid = pn.pnnspid
                  WHERE p.pubname = $1",
                &[&name],
            )
            .await
            .map_err(pg_err(&what))?
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect()
    } else {
        BTreeSet::new()
    };
    Ok(Some(Definition {
        all_tables: row.get(0),
        tables,
        schemas,
    }))
}

/// Creates the publication, or changes it to exactly `scope`; does nothing when it already
/// matches. Fails with [`SourceError::PublicationEmpty`] when the scope holds no table.
pub async fn ensure_publication(
    client: &Client,
    name: &str,
    scope: &PublicationScope,
) -> Result<PublicationChange, SourceError> {
    validate_publication_name(name)?;
    let version = server_version(client).await?;
    // the target definition: (tables, schemas), one of them empty
    let (tables, schemas): (BTreeSet<QualifiedName>, BTreeSet<String>) = match scope {
        PublicationScope::Tables(tables) => (tables.iter().cloned().collect(), BTreeSet::new()),
        PublicationScope::Schemas(schemas) if version >= 150_000 => {
            (BTreeSet::new(), schemas.iter().cloned().collect())
        }
        PublicationScope::Schemas(schemas) => {
            tracing::warn!(publication = %name, "FOR TABLES IN SCHEMA needs PostgreSQL 15: listing the schemas' current tables; tables created later will not be published");
            (
                tables_of_schemas(client, schemas, version)
                    .await?
                    .into_iter()
                    .collect(),
                BTreeSet::new(),
            )
        }
    };
    if tables.is_empty() && schemas.is_empty() {
        return Err(SourceError::PublicationEmpty {
            publication: name.to_owned(),
        });
    }
    let members = if schemas.is_empty() {
        let list: Vec<String> = tables.iter().map(QualifiedName::quoted).collect();
        format!("TABLE {}", list.join(", "))
    } else {
        let list: Vec<String> = schemas.iter().map(|s| quote_ident(s)).collect();
        format!("TABLES IN SCHEMA {}", list.join(", "))
    };
    let existing = definition(client, name, version).await?;
    let (sql, change) = match existing {
        None => (
            format!("CREATE PUBLICATION {} FOR {members}", quote_ident(name)),
            PublicationChange::Created,
        ),
        Some(def) if def.all_tables => {
            tracing::warn!(publication = %name, "publication is FOR ALL TABLES: left unchanged (it publishes every table, not only the chosen ones)");
            return Ok(PublicationChange::Unchanged);
        }
        Some(def) if def.tables == tables && def.schemas == schemas => {
            return Ok(PublicationChange::Unchanged);
        }
        Some(_) => (
            format!("ALTER PUBLICATION {} SET {members}", quote_ident(name)),
            PublicationChange::Altered,
        ),
    };
    let what = format!("could not create or alter publication \"{name}\"");
    client.batch_execute(&sql).await.map_err(pg_err(&what))?;
    tracing::info!(publication = %name, ?change, "publication ready");
    Ok(change)
}

/// Drops the publication if it exists; returns whether it existed.
pub async fn drop_publication(client: &Client, name: &str) -> Result<bool, SourceError> {
    validate_publication_name(name)?;
    let existed = publication_tables(client, name).await?.is_some();
    if existed {
        let what = format!("could not drop publication \"{name}\"");
        client
            .batch_execute(&format!("DROP PUBLICATION IF EXISTS {}", quote_ident(name)))
            .await
            .map_err(pg_err(&what))?;
    }
    Ok(existed)
}

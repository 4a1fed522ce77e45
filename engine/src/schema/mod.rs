//! `pgwarp schema`: copy the tables' definitions to the target, then distribute them as the
//! plan says, while they are still empty.
//!
//! ```text
//!  source ──pg_dump --schema-only──► psql (one transaction) ──► target tables (empty)
//!                                                                  │ --plan FILE
//!                                          keys widened, create_*_table ◄┘ (one transaction)
//! ```
//!
//! Safe to run again: when every chosen table already exists on the target and is empty, the
//! copy is skipped; when they are already Citus tables, the plan is. It refuses to touch a
//! target where a chosen table holds rows, or where only some of them exist, so it never
//! distributes (or leaves behind) rows in coordinator shell tables.

pub mod apply;
pub mod dump;

use std::path::PathBuf;

use tokio_postgres::Client;

use crate::citus::names::quote_qualified;
use crate::config::TableScope;
use crate::conn::{ConnConfig, ConnError, connect};
use crate::verify::pg_message;

use dump::Selection;

/// Why the schema could not be copied.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// A connection could not be opened.
    #[error("could not connect to the {side}: {source}")]
    Connect {
        /// `source` or `target`.
        side: &'static str,
        /// Why.
        #[source]
        source: ConnError,
    },
    /// A query failed.
    #[error("{what} on the {side}: {}", pg_message(.source))]
    Query {
        /// What was being done.
        what: String,
        /// `source` or `target`.
        side: &'static str,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// pg_dump or psql cannot be used.
    #[error("{0}")]
    Tools(String),
    /// pg_dump failed.
    #[error("pg_dump failed: {0}")]
    Dump(String),
    /// psql failed: nothing was created (one transaction).
    #[error("the schema could not be created on the target (nothing was): {0}")]
    Restore(String),
    /// The plan cannot be applied.
    #[error("{0}")]
    Plan(String),
    /// The target is not in a state the command can work from.
    #[error("{0}")]
    Refused(String),
}

impl SchemaError {
    fn query(
        what: impl Into<String>,
        side: &'static str,
    ) -> impl FnOnce(tokio_postgres::Error) -> SchemaError {
        let what = what.into();
        move |source| SchemaError::Query { what, side, source }
    }
}

/// What to copy.
#[derive(Debug, Clone)]
pub struct SchemaRequest {
    /// The source database.
    pub source: ConnConfig,
    /// The target.
    pub target: ConnConfig,
    /// Tables or schemas; `None`: every table of the database.
    pub scope: Option<TableScope>,
    /// A plan file's text, to apply after the copy.
    pub plan: Option<String>,
    /// `--pg-dump`: the pg_dump to use.
    pub pg_dump: Option<PathBuf>,
}

/// What was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaReport {
    /// The tables, quoted.
    pub tables: Vec<String>,
    /// Whether the DDL was copied now (false: the tables were already there, empty).
    pub copied: bool,
    /// The pg_dump used, with its major version.
    pub tool: Option<(PathBuf, u32)>,
    /// Plan statements run (`None`: no plan, or already applied).
    pub plan_statements: Option<usize>,
    /// The tables were already Citus tables: the plan was not run again.
    pub plan_already_applied: bool,
}

async fn open(cfg: &ConnConfig, side: &'static str) -> Result<Client, SchemaError> {
    connect(cfg)
        .await
        .map(|(c, _task)| c)
        .map_err(|source| SchemaError::Connect { side, source })
}

/// The chosen tables on the source, quoted.
async fn source_tables(
    source: &Client,
    scope: Option<&TableScope>,
) -> Result<Vec<String>, SchemaError> {
    const WHAT: &str = "could not list the tables";
    let rows = match scope {
        Some(TableScope::Tables(names)) => {
            let rows = source
                .query(
                    "SELECT t.name, n.nspname::text, c.relname::text \
                       FROM unnest($1::text[]) WITH ORDINALITY AS t(name, ord) \
                       LEFT JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(t.name) \
                       LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                      ORDER BY t.ord",
                    &[names],
                )
                .await
                .map_err(SchemaError::query(WHAT, "source"))?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let read = || -> Result<(String, Option<String>, Option<String>), tokio_postgres::Error> {
                    Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))
                };
                match read().map_err(SchemaError::query(WHAT, "source"))? {
                    (_, Some(s), Some(n)) => out.push(quote_qualified(&s, &n)),
                    (name, _, _) => {
                        return Err(SchemaError::Refused(format!(
                            "table {name} does not exist on the source"
                        )));
                    }
                }
            }
            return Ok(out);
        }
        Some(TableScope::Schemas(schemas)) => source
            .query(
                "SELECT n.nspname::text, c.relname::text FROM pg_catalog.pg_class c \
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                  WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'p') \
                    AND NOT c.relispartition ORDER BY 1, 2",
                &[schemas],
            )
            .await,
        None => source
            .query(
                "SELECT n.nspname::text, c.relname::text FROM pg_catalog.pg_class c \
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                  WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
                    AND c.relpersistence = 'p' \
                    AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgwarp') \
                    AND n.nspname NOT LIKE 'pg\\_%' \
                    AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
                                     WHERE d.classid = 'pg_catalog.pg_class'::regclass \
                                       AND d.objid = c.oid AND d.deptype = 'e') \
                  ORDER BY 1, 2",
                &[],
            )
            .await,
    }
    .map_err(SchemaError::query(WHAT, "source"))?;
    rows.iter()
        .map(|r| {
            Ok(quote_qualified(
                &r.try_get::<_, String>(0)?,
                &r.try_get::<_, String>(1)?,
            ))
        })
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(SchemaError::query(WHAT, "source"))
}

/// `(exists, has rows)` of each table on the target.
async fn target_state(
    target: &Client,
    tables: &[String],
) -> Result<Vec<(bool, bool)>, SchemaError> {
    let mut out = Vec::with_capacity(tables.len());
    for t in tables {
        let what = format!("could not look at table {t}");
        let exists: bool = target
            .query_one("SELECT pg_catalog.to_regclass($1) IS NOT NULL", &[t])
            .await
            .and_then(|r| r.try_get(0))
            .map_err(SchemaError::query(what.clone(), "target"))?;
        let rows = if exists {
            target
                .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {t})"), &[])
                .await
                .and_then(|r| r.try_get(0))
                .map_err(SchemaError::query(what, "target"))?
        } else {
            false
        };
        out.push((exists, rows));
    }
    Ok(out)
}

/// Copies the schema and applies the plan; `log` receives a line per step.
pub async fn copy_schema(
    req: &SchemaRequest,
    log: &mut dyn FnMut(String),
) -> Result<SchemaReport, SchemaError> {
    let source = open(&req.source, "source").await?;
    let target = open(&req.target, "target").await?;
    let version: String = source
        .query_one("SELECT current_setting('server_version_num')", &[])
        .await
        .and_then(|r| r.try_get(0))
        .map_err(SchemaError::query(
            "could not read the server version",
            "source",
        ))?;
    let major = version.parse::<u32>().unwrap_or(0) / 10_000;
    let tables = source_tables(&source, req.scope.as_ref()).await?;
    if tables.is_empty() {
        return Err(SchemaError::Refused("no tables to copy".to_owned()));
    }
    if req.plan.is_some() && !apply::is_citus(&target).await? {
        return Err(SchemaError::Plan(
            "--plan distributes tables with Citus, but the target has no \
             create_distributed_table: is it a Citus coordinator with the extension created?"
                .to_owned(),
        ));
    }
    let state = target_state(&target, &tables).await?;
    let with_rows: Vec<&String> = tables
        .iter()
        .zip(&state)
        .filter(|(_, (_, rows))| *rows)
        .map(|(t, _)| t)
        .collect();
    if !with_rows.is_empty() {
        return Err(SchemaError::Refused(format!(
            "table(s) {} already hold rows on the target: schema only works on an empty target \
             (a sync copies the rows)",
            join(&with_rows)
        )));
    }
    let existing: Vec<&String> = tables
        .iter()
        .zip(&state)
        .filter(|(_, (exists, _))| *exists)
        .map(|(t, _)| t)
        .collect();
    let mut report = SchemaReport {
        tables: tables.clone(),
        copied: false,
        tool: None,
        plan_statements: None,
        plan_already_applied: false,
    };
    if existing.len() == tables.len() {
        log(format!(
            "all {} table(s) already exist on the target, empty: nothing to copy",
            tables.len()
        ));
    } else if !existing.is_empty() {
        return Err(SchemaError::Refused(format!(
            "table(s) {} already exist on the target, the others do not: drop them there, or \
             leave them out with --tables",
            join(&existing)
        )));
    } else {
        let tools = dump::find_tools(major, req.pg_dump.as_deref()).await?;
        let selection = match &req.scope {
            Some(TableScope::Tables(_)) => Selection::Tables(tables.clone()),
            Some(TableScope::Schemas(s)) => Selection::Schemas(s.clone()),
            None => Selection::All,
        };
        let mut script = dump::dump(&tools, &req.source, &selection).await?;
        if let Selection::Tables(_) = selection {
            // a table dump does not create its schemas
            let mut schemas: Vec<String> = tables
                .iter()
                .filter_map(|t| t.split_once("\".\"").map(|(s, _)| format!("{s}\"")))
                .collect();
            schemas.sort();
            schemas.dedup();
            let create: String = schemas
                .iter()
                .map(|s| format!("CREATE SCHEMA IF NOT EXISTS {s};\n"))
                .collect();
            script = format!("{create}{script}");
        }
        let restored = dump::restore(
            &tools,
            &req.target,
            &dump::tolerate_existing_schemas(&script),
        )
        .await;
        if let (Err(SchemaError::Restore(msg)), Selection::Tables(_)) = (&restored, &selection) {
            return Err(SchemaError::Restore(format!(
                "{msg}\nhint: with --tables only the tables themselves are copied: the types, \
                 functions and referenced tables they need must already exist on the target \
                 (or copy whole schemas with --schemas)"
            )));
        }
        restored?;
        log(format!(
            "copied the definitions of {} table(s) with {} (PostgreSQL {})",
            tables.len(),
            tools.pg_dump.display(),
            tools.major
        ));
        report.copied = true;
        report.tool = Some((tools.pg_dump.clone(), tools.major));
    }

    if let Some(plan) = &req.plan {
        let already = apply::citus_tables(&target, &tables).await?;
        if !already.is_empty() {
            log(format!(
                "{} of the tables are already Citus tables: the plan is not applied again",
                already.len()
            ));
            report.plan_already_applied = true;
        } else {
            let n = apply::apply(&target, plan).await?;
            log(format!("applied the plan: {n} statement(s)"));
            report.plan_statements = Some(n);
        }
        let stranded = apply::nonempty_shells(&target, &tables).await?;
        if !stranded.is_empty() {
            return Err(SchemaError::Refused(format!(
                "coordinator shell table(s) {} hold local data after distribution: remove it with \
                 truncate_local_data_after_distributing_table before syncing",
                stranded.join(", ")
            )));
        }
    }
    Ok(report)
}

fn join(names: &[&String]) -> String {
    names
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

//! Privilege checks: everything the roles of the two connection strings must be allowed to do,
//! asked of the servers (`has_*_privilege`) before anything is created, so a missing GRANT is
//! reported with the statement that fixes it instead of failing a sync half-way (a missing
//! `SELECT` would otherwise stop the snapshot after the slot exists). `docs/security.md` lists
//! the same privileges and why each is needed.
//!
//! * source: `USAGE` on each schema, `SELECT` on each table, and, unless the publication
//!   already publishes exactly these tables, what creating or changing it takes: owning the
//!   tables (and the publication), and `CREATE` on the database for a new one;
//! * target, coordinator and every node: `CREATE` on the database (or a usable `pgwarp`
//!   schema) for pgwarp's state and progress tables, `SET` of `session_replication_role`, and
//!   `SELECT, INSERT, UPDATE, DELETE, TRUNCATE` on every shard table the node holds.

use std::collections::BTreeMap;

use tokio_postgres::Client;

use crate::citus::names::quote_ident;
use crate::pipeline::PipelineError;
use crate::pipeline::catalog::TableInfo;
use crate::source::admin::{QualifiedName, publication_tables};
use crate::source::quote::display_ident;

use super::{ProblemKind, Report};

/// Table privileges the node writers use on every shard table.
const WRITE_PRIVILEGES: [&str; 5] = ["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE"];

async fn current_user(client: &Client, what: &str) -> Result<String, PipelineError> {
    client
        .query_one("SELECT current_user::text", &[])
        .await
        .and_then(|r| r.try_get(0))
        .map_err(PipelineError::query(format!(
            "could not read the role name on {what}"
        )))
}

fn qualified(t: &TableInfo) -> String {
    format!("{}.{}", quote_ident(&t.schema), quote_ident(&t.name))
}

/// The source's problems: schema usage, table reads, and the publication.
pub async fn source(
    client: &Client,
    publication: &str,
    tables: &[TableInfo],
    resuming: bool,
    report: &mut Report,
) -> Result<(), PipelineError> {
    if tables.is_empty() {
        return Ok(());
    }
    let role = current_user(client, "the source").await?;
    let shown = display_ident(&role);
    let oids: Vec<u32> = tables.iter().map(|t| t.oid).collect();
    let rows = client
        .query(
            "SELECT c.oid, pg_catalog.has_schema_privilege(c.relnamespace, 'USAGE'), \
                    pg_catalog.has_table_privilege(c.oid, 'SELECT'), \
                    pg_catalog.pg_has_role(c.relowner, 'USAGE') \
               FROM pg_catalog.pg_class c WHERE c.oid = ANY($1::oid[])",
            &[&oids],
        )
        .await
        .map_err(PipelineError::query(
            "could not read the privileges on the source tables",
        ))?;
    let mut owns_all = true;
    let mut schemas_reported: Vec<&str> = Vec::new();
    for row in &rows {
        let get = |i| row.try_get::<_, bool>(i).unwrap_or(false);
        let oid: u32 = row.try_get(0).unwrap_or(0);
        let Some(t) = tables.iter().find(|t| t.oid == oid) else {
            continue;
        };
        if !get(1) && !schemas_reported.contains(&t.schema.as_str()) {
            schemas_reported.push(&t.schema);
            report.add(
                ProblemKind::MissingPrivilege,
                format!(
                    "role \"{role}\" may not use schema \"{}\" on the source: GRANT USAGE ON \
                     SCHEMA {} TO {shown}",
                    t.schema,
                    quote_ident(&t.schema)
                ),
            );
        }
        if !get(2) {
            report.add(
                ProblemKind::MissingPrivilege,
                format!(
                    "role \"{role}\" may not read table \"{}\" on the source (the snapshot \
                     copies it): GRANT SELECT ON {} TO {shown}",
                    t.display_name(),
                    qualified(t)
                ),
            );
        }
        owns_all &= get(3);
    }
    if resuming {
        // the publication was set up by the run being resumed
        return Ok(());
    }
    let wanted: Vec<QualifiedName> = tables
        .iter()
        .map(|t| QualifiedName::new(&t.schema, &t.name))
        .collect();
    let existing = publication_tables(client, publication).await?;
    let matches = existing
        .as_ref()
        .is_some_and(|have| have.len() == wanted.len() && wanted.iter().all(|w| have.contains(w)));
    if matches {
        return Ok(());
    }
    let may_create =
        if existing.is_some() {
            client
            .query_one(
                "SELECT pg_catalog.pg_has_role(pubowner, 'USAGE') FROM pg_catalog.pg_publication \
                 WHERE pubname = $1",
                &[&publication],
            )
            .await
            .and_then(|r| r.try_get::<_, bool>(0))
            .map_err(PipelineError::query("could not read the publication's owner"))?
        } else {
            client
            .query_one(
                "SELECT pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE')",
                &[],
            )
            .await
            .and_then(|r| r.try_get::<_, bool>(0))
            .map_err(PipelineError::query(
                "could not read the privileges on the source database",
            ))?
        };
    if owns_all && may_create {
        return Ok(());
    }
    let list: Vec<String> = wanted.iter().map(QualifiedName::quoted).collect();
    let state = if existing.is_some() {
        "publishes other tables"
    } else {
        "does not exist"
    };
    report.add(
        ProblemKind::MissingPrivilege,
        format!(
            "publication \"{publication}\" {state} and role \"{role}\" may not create or change \
             it (that takes being the owner of every table, and CREATE on the database): \
             have the tables' owner run CREATE PUBLICATION {} FOR TABLE {}, or make {shown} \
             the owner of the tables and GRANT CREATE ON DATABASE to it",
            quote_ident(publication),
            list.join(", ")
        ),
    );
    Ok(())
}

/// One node's (or the target's) own problems: room for the `pgwarp` schema and the right to
/// set `session_replication_role`. `on` names the server in messages.
pub async fn server(client: &Client, on: &str, report: &mut Report) -> Result<(), PipelineError> {
    let role = current_user(client, on).await?;
    let shown = display_ident(&role);
    let row = client
        .query_one(
            "SELECT pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE'), \
                    coalesce((SELECT pg_catalog.has_schema_privilege(n.oid, 'USAGE') \
                                 AND pg_catalog.has_schema_privilege(n.oid, 'CREATE') \
                                FROM pg_catalog.pg_namespace n WHERE n.nspname = 'pgwarp'), \
                             false), \
                    pg_catalog.current_database()::text",
            &[],
        )
        .await
        .map_err(PipelineError::query(format!(
            "could not read the privileges on {on}"
        )))?;
    let get = |i| row.try_get::<_, bool>(i).unwrap_or(false);
    if !get(0) && !get(1) {
        let db: String = row.try_get(2).unwrap_or_default();
        report.add(
            ProblemKind::MissingPrivilege,
            format!(
                "role \"{role}\" may not create the schema pgwarp on {on} (pgwarp keeps its \
                 state and progress there): GRANT CREATE ON DATABASE {} TO {shown}",
                quote_ident(&db)
            ),
        );
    }
    // the real thing, undone at once: PostgreSQL 15's GRANT SET ON PARAMETER or a superuser
    let set = client
        .batch_execute("BEGIN; SET LOCAL session_replication_role = replica; ROLLBACK")
        .await;
    if let Err(e) = set {
        let _ = client.batch_execute("ROLLBACK").await;
        if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) {
            report.add(
                ProblemKind::MissingPrivilege,
                format!(
                    "role \"{role}\" may not set session_replication_role on {on} (pgwarp \
                     applies changes as replication does, without firing triggers again): \
                     GRANT SET ON PARAMETER session_replication_role TO {shown}, or use a \
                     superuser"
                ),
            );
        } else {
            return Err(PipelineError::Query {
                what: format!("could not test setting session_replication_role on {on}"),
                source: e,
            });
        }
    }
    Ok(())
}

/// A shard table on a node: (`schema.name` of its table, quoted table, quoted shard table).
pub type NodeShard = (String, String, String);

/// The privileges on the shard tables a node holds. `citus`: grants go to the distributed
/// table on the coordinator (Citus propagates them); else to the table itself.
pub async fn shards(
    client: &Client,
    node: &str,
    shards: &[NodeShard],
    citus: bool,
    report: &mut Report,
) -> Result<(), PipelineError> {
    if shards.is_empty() {
        return Ok(());
    }
    let role = current_user(client, &format!("node {node}")).await?;
    let shown = display_ident(&role);
    let names: Vec<&str> = shards.iter().map(|(_, _, s)| s.as_str()).collect();
    let rows = client
        .query(
            "SELECT t.ord::int4, \
                    pg_catalog.has_table_privilege(r.oid, 'SELECT'), \
                    pg_catalog.has_table_privilege(r.oid, 'INSERT'), \
                    pg_catalog.has_table_privilege(r.oid, 'UPDATE'), \
                    pg_catalog.has_table_privilege(r.oid, 'DELETE'), \
                    pg_catalog.has_table_privilege(r.oid, 'TRUNCATE'), \
                    pg_catalog.has_schema_privilege(c.relnamespace, 'USAGE'), \
                    n.nspname::text \
               FROM unnest($1::text[]) WITH ORDINALITY AS t(name, ord), \
                    LATERAL (SELECT pg_catalog.to_regclass(t.name)::oid AS oid) r \
               JOIN pg_catalog.pg_class c ON c.oid = r.oid \
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace",
            &[&names],
        )
        .await
        .map_err(PipelineError::query(format!(
            "could not read the privileges on the shards on node {node}"
        )))?;
    // (table, privilege) -> shard tables lacking it
    let mut missing: BTreeMap<(usize, &str), Vec<&str>> = BTreeMap::new();
    let mut schemas: Vec<String> = Vec::new();
    for row in &rows {
        if !row.try_get::<_, bool>(6).unwrap_or(false) {
            let schema: String = row.try_get(7).unwrap_or_default();
            if !schemas.contains(&schema) {
                report.add(
                    ProblemKind::MissingPrivilege,
                    format!(
                        "role \"{role}\" may not use schema \"{schema}\" on node {node}: GRANT \
                         USAGE ON SCHEMA {} TO {shown}",
                        quote_ident(&schema)
                    ),
                );
                schemas.push(schema);
            }
        }
        let ord: i32 = row.try_get(0).unwrap_or(0);
        let Some(index) = usize::try_from(ord).ok().and_then(|o| o.checked_sub(1)) else {
            continue;
        };
        let Some((table, _, shard)) = shards.get(index) else {
            continue;
        };
        let table_index = shards
            .iter()
            .position(|(t, _, _)| t == table)
            .unwrap_or(index);
        for (i, privilege) in WRITE_PRIVILEGES.iter().enumerate() {
            if !row.try_get::<_, bool>(i + 1).unwrap_or(false) {
                missing
                    .entry((table_index, privilege))
                    .or_default()
                    .push(shard);
            }
        }
    }
    for ((table_index, privilege), lacking) in missing {
        let Some((table, quoted_table, _)) = shards.get(table_index) else {
            continue;
        };
        let more = match lacking.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        let fix = if citus {
            format!(
                "GRANT {privilege} ON {quoted_table} TO {shown} on the coordinator (Citus \
                 propagates it to the shards)"
            )
        } else {
            format!("GRANT {privilege} ON {quoted_table} TO {shown}")
        };
        report.add(
            ProblemKind::MissingPrivilege,
            format!(
                "role \"{role}\" may not {privilege} on shard table {}{more} of table \"{table}\" \
                 on node {node}: {fix}",
                lacking.first().copied().unwrap_or_default()
            ),
        );
    }
    Ok(())
}

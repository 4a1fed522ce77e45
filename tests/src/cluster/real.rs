//! Runs a spec on a real Citus cluster (`$PGWARP_TEST_CITUS_COORDINATOR`), with Citus's own
//! functions, so the same tests can check the engine against the real thing.
//!
//! Each fixture gets a fresh schema (and one per tenant schema) in the coordinator's database;
//! dropping the fixture drops them with `CASCADE`, which Citus propagates to the workers.
//! Workers are reached with the coordinator's user, password and database at the
//! `nodename:nodeport` of `pg_dist_node`.

use tokio_postgres::Config;

use crate::cluster::fixture::{CitusFixture, FixtureMode, FixtureNode};
use crate::cluster::spec::{ClusterSpec, TableKind};
use crate::endpoint::with_client;
use crate::error::{HarnessError, Result};
use crate::options::{quote_ident, quote_literal};

/// Parses the coordinator's connection string.
pub(crate) fn parse(conn_string: &str) -> Result<Config> {
    conn_string.parse::<Config>().map_err(|e| {
        HarnessError::Environment(format!(
            "PGWARP_TEST_CITUS_COORDINATOR is not a valid connection string: {e}"
        ))
    })
}

fn port_of(config: &Config) -> u16 {
    config.get_ports().first().copied().unwrap_or(5432)
}

/// A connection string for `host:port` with the coordinator's credentials and database.
fn node_conn_string(config: &Config, host: &str, port: u16) -> String {
    let mut s = format!("host={host} port={port}");
    if let Some(user) = config.get_user() {
        s.push_str(&format!(" user={}", conn_quote(user)));
    }
    if let Some(db) = config.get_dbname() {
        s.push_str(&format!(" dbname={}", conn_quote(db)));
    }
    if let Some(pw) = config.get_password() {
        s.push_str(&format!(
            " password={}",
            conn_quote(&String::from_utf8_lossy(pw))
        ));
    }
    s
}

fn conn_quote(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The statements creating `spec` in `schema` (tenant schemas per `tenants`) with Citus's
/// functions, one per element, to run in autocommit mode on the coordinator.
pub(crate) fn statements(
    spec: &ClusterSpec,
    schema: &str,
    tenants: &[(String, String)],
) -> Vec<String> {
    let main = quote_ident(schema);
    let mut out = vec![format!("CREATE SCHEMA {main}")];
    for prelude in &spec.prelude {
        out.push(format!("SET search_path = {main}"));
        out.push(prelude.clone());
    }
    let lit = |table: &str, in_schema: &str| {
        quote_literal(&format!(
            "{}.{}",
            quote_ident(in_schema),
            quote_ident(table)
        ))
    };
    let mut created_tenants: Vec<&str> = Vec::new();
    for table in spec.tables() {
        let mut in_schema = schema;
        if let TableKind::Tenant { schema: logical } = &table.kind {
            let physical = tenants
                .iter()
                .find(|(l, _)| l == logical)
                .map(|(_, p)| p.as_str())
                .unwrap_or(logical.as_str());
            if !created_tenants.contains(&physical) {
                created_tenants.push(physical);
                out.push("SET citus.enable_schema_based_sharding = on".to_owned());
                out.push(format!("CREATE SCHEMA {}", quote_ident(physical)));
                out.push("RESET citus.enable_schema_based_sharding".to_owned());
            }
            in_schema = physical;
        }
        out.push(format!(
            "SET search_path = {}, {main}",
            quote_ident(in_schema)
        ));
        out.push(table.ddl.clone());
        let me = lit(&table.name, in_schema);
        match &table.kind {
            TableKind::Hash {
                column,
                shard_count,
            } => out.push(format!(
                "SELECT create_distributed_table({me}, {}, shard_count => {shard_count}, \
                 colocate_with => 'none')",
                quote_literal(column)
            )),
            // Partitions are distributed along with their parent.
            TableKind::HashColocated { column, with } => out.push(format!(
                "SELECT create_distributed_table({me}, {}, colocate_with => {}) \
                 FROM pg_class WHERE oid = {me}::regclass AND NOT relispartition",
                quote_literal(column),
                lit(with, schema)
            )),
            TableKind::Reference => out.push(format!("SELECT create_reference_table({me})")),
            TableKind::SingleShard { with: None } => out.push(format!(
                "SELECT create_distributed_table({me}, NULL, colocate_with => 'none')"
            )),
            TableKind::SingleShard { with: Some(with) } => out.push(format!(
                "SELECT create_distributed_table({me}, NULL, colocate_with => {})",
                lit(with, schema)
            )),
            TableKind::Tenant { .. } => {}
            TableKind::CitusLocal => {
                out.push(format!("SELECT citus_add_local_table_to_metadata({me})"))
            }
        }
    }
    out.push("RESET search_path".to_owned());
    out
}

/// Creates `spec` on the real cluster behind `conn_string`.
pub(crate) fn create(conn_string: &str, spec: &ClusterSpec) -> Result<CitusFixture> {
    let config = parse(conn_string)?;
    let port = port_of(&config);
    let schema = crate::unique_name("app");
    let tenants: Vec<(String, String)> = spec
        .tenant_schemas()
        .into_iter()
        .map(|t| (t.clone(), format!("{schema}_{t}")))
        .collect();
    let database = match (config.get_dbname(), config.get_user()) {
        (Some(db), _) | (None, Some(db)) => db.to_owned(),
        (None, None) => "postgres".to_owned(),
    };
    let coordinator = FixtureNode {
        nodeid: 0,
        groupid: 0,
        host: String::new(),
        port,
        conn_string: conn_string.to_owned(),
    };
    // Created before the DDL runs, so a failure halfway drops what was made.
    let mut fixture = CitusFixture {
        mode: FixtureMode::Real,
        database,
        schema: schema.clone(),
        tenants: tenants.clone(),
        nodes: vec![coordinator],
        spec: spec.clone(),
    };
    let stmts = statements(spec, &schema, &tenants);
    with_client(
        conn_string,
        port,
        "create the fixture on the real Citus coordinator",
        |c| async move {
            for stmt in &stmts {
                c.batch_execute(stmt).await?;
            }
            Ok(())
        },
    )?;

    let rows = fixture.coordinator().query_rows(
        "SELECT nodeid, groupid, nodename, nodeport FROM pg_dist_node \
         WHERE noderole = 'primary' AND isactive AND nodecluster = 'default' ORDER BY groupid",
    )?;
    let mut nodes = Vec::new();
    for row in rows {
        let get = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        let bad = || HarnessError::UnexpectedResult("bad pg_dist_node row".to_owned());
        let groupid: i32 = get(1).parse().map_err(|_| bad())?;
        let host = get(2);
        let node_port: u16 = get(3).parse().map_err(|_| bad())?;
        let conn_string = if groupid == 0 {
            conn_string.to_owned()
        } else {
            node_conn_string(&config, &host, node_port)
        };
        nodes.push(FixtureNode {
            nodeid: get(0).parse().map_err(|_| bad())?,
            groupid,
            host,
            port: node_port,
            conn_string,
        });
    }
    if nodes.first().is_none_or(|n| n.groupid != 0) {
        // The coordinator is not in pg_dist_node: keep it first anyway.
        let mut coordinator = fixture.nodes[0].clone();
        coordinator.groupid = 0;
        nodes.insert(0, coordinator);
    }
    fixture.nodes = nodes;
    Ok(fixture)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_use_citus_functions_in_declaration_order() {
        let spec = ClusterSpec::new()
            .prelude("CREATE TYPE mood AS ENUM ('a')")
            .distributed("users", "CREATE TABLE users (id bigint)", "id", 8)
            .distributed_colocated("orders", "CREATE TABLE orders (id bigint)", "id", "users")
            .reference("products", "CREATE TABLE products (id int)")
            .single_shard("cfg", "CREATE TABLE cfg (k text)")
            .tenant("acme", "inv", "CREATE TABLE inv (id int)")
            .citus_local("audit", "CREATE TABLE audit (id int)");
        let tenants = vec![("acme".to_owned(), "s1_acme".to_owned())];
        let got = statements(&spec, "s1", &tenants);
        let want = [
            r#"CREATE SCHEMA "s1""#,
            r#"SET search_path = "s1""#,
            "CREATE TYPE mood AS ENUM ('a')",
            r#"SET search_path = "s1", "s1""#,
            "CREATE TABLE users (id bigint)",
            r#"SELECT create_distributed_table('"s1"."users"', 'id', shard_count => 8, colocate_with => 'none')"#,
            r#"SET search_path = "s1", "s1""#,
            "CREATE TABLE orders (id bigint)",
            r#"SELECT create_distributed_table('"s1"."orders"', 'id', colocate_with => '"s1"."users"') FROM pg_class WHERE oid = '"s1"."orders"'::regclass AND NOT relispartition"#,
            r#"SET search_path = "s1", "s1""#,
            "CREATE TABLE products (id int)",
            r#"SELECT create_reference_table('"s1"."products"')"#,
            r#"SET search_path = "s1", "s1""#,
            "CREATE TABLE cfg (k text)",
            r#"SELECT create_distributed_table('"s1"."cfg"', NULL, colocate_with => 'none')"#,
            "SET citus.enable_schema_based_sharding = on",
            r#"CREATE SCHEMA "s1_acme""#,
            "RESET citus.enable_schema_based_sharding",
            r#"SET search_path = "s1_acme", "s1""#,
            "CREATE TABLE inv (id int)",
            r#"SET search_path = "s1", "s1""#,
            "CREATE TABLE audit (id int)",
            r#"SELECT citus_add_local_table_to_metadata('"s1"."audit"')"#,
            "RESET search_path",
        ];
        let got: Vec<String> = got
            .iter()
            .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn worker_connections_reuse_the_coordinator_credentials() {
        let config = parse("host=10.0.0.1 port=5432 user=app password=s'x dbname=prod").unwrap();
        assert_eq!(
            node_conn_string(&config, "127.0.0.1", 6001),
            r"host=127.0.0.1 port=6001 user='app' dbname='prod' password='s\'x'"
        );
    }
}

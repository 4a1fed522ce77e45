//! Builds a spec on the harness's own servers: a Citus-shaped cluster without Citus.
//!
//! On every node, in a database of the same name: the schemas, the spec's prelude and shell
//! tables, the fake catalog (`catalog.rs`) with that node's `pg_dist_local_group`, then the
//! shard tables of the placements in that node's group. Shard tables are made from the spec's
//! own DDL: run with `search_path = pgwarp_scratch, <schema>` so the table lands in a scratch
//! schema, then renamed (table, indexes, owned sequences) with the shard id and moved to the
//! real schema. Tables of one colocation group are created together for each shard index, so
//! foreign keys and partitions among them resolve to the sibling shards.

use std::collections::BTreeMap;

use crate::cluster::catalog::{CATALOG_DDL, DistColumn, NodeRow, SHARDIFY_FUNCTION, catalog_rows};
use crate::cluster::fixture::{CitusFixture, FixtureMode, FixtureNode};
use crate::cluster::layout::{Layout, SchemaRef, plan};
use crate::cluster::spec::{ClusterSpec, TableKind};
use crate::error::{HarnessError, Result};
use crate::options::{quote_ident, quote_literal};
use crate::server::PgServer;

/// Scratch schema in which shard tables are created before being renamed and moved.
pub(crate) const SCRATCH_SCHEMA: &str = "pgwarp_scratch";

/// Creates `spec` on `coordinator` and `workers` in a fresh database.
pub(crate) fn create(
    coordinator: &PgServer,
    workers: &[PgServer],
    spec: &ClusterSpec,
) -> Result<CitusFixture> {
    let database = crate::unique_name("citus");
    let schema = crate::unique_name("app");
    let tenants: Vec<(String, String)> = spec
        .tenant_schemas()
        .into_iter()
        .map(|t| (t.clone(), format!("{schema}_{t}")))
        .collect();
    for (_, physical) in &tenants {
        if physical.len() > 63 {
            return Err(HarnessError::InvalidSpec(format!(
                "tenant schema name \"{physical}\" is too long"
            )));
        }
    }

    let mut sorted: Vec<&PgServer> = workers.iter().collect();
    sorted.sort_by_key(|s| (s.host().to_owned(), s.port()));
    let mut servers = vec![coordinator];
    servers.extend(sorted);
    let node_rows: Vec<NodeRow> = servers
        .iter()
        .enumerate()
        .map(|(i, s)| NodeRow {
            nodeid: i as i32 + 1,
            groupid: i as i32,
            nodename: s.host().to_owned(),
            nodeport: s.port(),
            shouldhaveshards: i > 0,
        })
        .collect();

    let mut databases = Vec::with_capacity(servers.len());
    for server in &servers {
        databases.push(server.create_database_named(&database)?);
    }
    let nodes: Vec<FixtureNode> = node_rows
        .iter()
        .map(|n| FixtureNode {
            nodeid: n.nodeid,
            groupid: n.groupid,
            host: n.nodename.clone(),
            port: n.nodeport,
            conn_string: servers[n.groupid as usize].conn_string(&database),
        })
        .collect();
    let fixture = CitusFixture {
        mode: FixtureMode::Fake {
            _databases: databases,
        },
        database,
        schema,
        tenants,
        nodes,
        spec: spec.clone(),
    };

    let worker_groups: Vec<i32> = node_rows.iter().skip(1).map(|n| n.groupid).collect();
    let layout = plan(spec, &worker_groups)?;
    let shells = shells_sql(&fixture)?;
    run_on_all(&fixture, |_| Ok(shells.clone()))?;

    let dist = read_dist_columns(&fixture, &layout)?;
    let names = shard_names(&fixture, &layout)?;
    let qualified = |t: usize| {
        let plan = &layout.tables[t];
        format!(
            "{}.{}",
            quote_ident(&physical_schema(&fixture, &plan.schema)),
            quote_ident(&plan.name)
        )
    };
    let schema_name = |s: &SchemaRef| physical_schema(&fixture, s);
    let dist_of = |t: usize| dist.get(&t).copied();
    run_on_all(&fixture, |node| {
        let mut sql = catalog_rows(
            &layout,
            &node_rows,
            node.groupid,
            &qualified,
            &schema_name,
            &dist_of,
        );
        sql.push_str(SHARDIFY_FUNCTION);
        sql.push_str(&shard_tables_sql(&fixture, &layout, &names, node.groupid)?);
        Ok(sql)
    })?;
    Ok(fixture)
}

/// The real name of a schema reference.
pub(crate) fn physical_schema(fixture: &CitusFixture, schema: &SchemaRef) -> String {
    match schema {
        SchemaRef::Main => fixture.schema.clone(),
        SchemaRef::Tenant(t) => fixture
            .tenant_schema(t)
            .map(str::to_owned)
            .unwrap_or_default(),
    }
}

/// Runs the script made for each node, on all nodes in parallel.
fn run_on_all(
    fixture: &CitusFixture,
    script: impl Fn(&FixtureNode) -> Result<String> + Sync,
) -> Result<()> {
    let scripts: Vec<String> = fixture.nodes.iter().map(&script).collect::<Result<_>>()?;
    std::thread::scope(|scope| {
        let handles: Vec<_> = fixture
            .nodes
            .iter()
            .zip(&scripts)
            .map(|(node, sql)| scope.spawn(move || node.execute(sql)))
            .collect();
        handles.into_iter().try_for_each(|h| match h.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        })
    })
}

/// Schemas, prelude, shell tables and the catalog: identical on every node.
fn shells_sql(fixture: &CitusFixture) -> Result<String> {
    let main = quote_ident(&fixture.schema);
    let mut sql = format!("CREATE SCHEMA {main};\nCREATE SCHEMA IF NOT EXISTS {SCRATCH_SCHEMA};\n");
    for (_, physical) in &fixture.tenants {
        sql.push_str(&format!("CREATE SCHEMA {};\n", quote_ident(physical)));
    }
    sql.push_str(&format!("SET search_path = {main};\n"));
    for prelude in &fixture.spec.prelude {
        sql.push_str(prelude);
        sql.push_str(";\n");
    }
    for table in fixture.spec.tables() {
        let schema = fixture.schema_of(&table.name)?;
        sql.push_str(&format!(
            "SET search_path = {}, {main};\n{};\n",
            quote_ident(schema),
            table.ddl
        ));
    }
    sql.push_str("RESET search_path;\n");
    sql.push_str(CATALOG_DDL);
    Ok(sql)
}

/// attnum, type, typmod and collation of each hash table's distribution column, from the
/// coordinator.
fn read_dist_columns(
    fixture: &CitusFixture,
    layout: &Layout,
) -> Result<BTreeMap<usize, DistColumn>> {
    let mut out = BTreeMap::new();
    for (i, t) in layout.tables.iter().enumerate() {
        let Some(column) = &t.dist_column else {
            continue;
        };
        let qualified = fixture.qualified(&t.name)?;
        let rows = fixture.coordinator().query_rows(&format!(
            "SELECT attnum, atttypid, atttypmod, attcollation, attgenerated FROM pg_attribute \
             WHERE attrelid = {}::regclass AND attname = {} AND attnum > 0 AND NOT attisdropped",
            quote_literal(&qualified),
            quote_literal(column)
        ))?;
        let Some(row) = rows.first() else {
            return Err(HarnessError::InvalidSpec(format!(
                "table {qualified} has no column \"{column}\" to distribute by"
            )));
        };
        if row.get(4).cloned().flatten().is_some_and(|g| !g.is_empty()) {
            return Err(HarnessError::InvalidSpec(format!(
                "distribution column \"{column}\" of {qualified} is a generated column"
            )));
        }
        let num = |i: usize| -> Result<i64> {
            row.get(i)
                .cloned()
                .flatten()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| {
                    HarnessError::UnexpectedResult(format!("bad pg_attribute row for {qualified}"))
                })
        };
        out.insert(
            i,
            DistColumn {
                attnum: num(0)? as i16,
                typid: num(1)? as u32,
                typmod: num(2)? as i32,
                collation: num(3)? as u32,
            },
        );
    }
    Ok(out)
}

/// Shard table names (unqualified) by shard id.
fn shard_names(fixture: &CitusFixture, layout: &Layout) -> Result<BTreeMap<i64, String>> {
    layout
        .shards
        .iter()
        .map(|s| {
            Ok((
                s.shardid,
                fixture.shard_table_name(&layout.tables[s.table].name, s.shardid)?,
            ))
        })
        .collect()
}

/// Creation rounds: the tables of one colocation group at one shard index. Citus local
/// tables (colocation 0) are each their own round.
fn rounds(layout: &Layout) -> BTreeMap<(i32, usize, usize), Vec<(usize, i64)>> {
    let mut rounds: BTreeMap<(i32, usize, usize), Vec<(usize, i64)>> = BTreeMap::new();
    for (t, plan) in layout.tables.iter().enumerate() {
        for (index, shard) in layout.shards_of(t).enumerate() {
            let key = if plan.colocationid == 0 {
                (0, t, 0)
            } else {
                (plan.colocationid, 0, index)
            };
            rounds.entry(key).or_default().push((t, shard.shardid));
        }
    }
    rounds
}

/// SQL creating the shard tables held by `groupid`.
fn shard_tables_sql(
    fixture: &CitusFixture,
    layout: &Layout,
    names: &BTreeMap<i64, String>,
    groupid: i32,
) -> Result<String> {
    let mut sql = String::new();
    for members in rounds(layout).values() {
        let Some(&(_, first_shard)) = members.first() else {
            continue;
        };
        if !layout.groups_of(first_shard).contains(&groupid) {
            continue;
        }
        let shards: Vec<(&str, i64, &str)> = members
            .iter()
            .map(|&(t, shardid)| {
                let name = names.get(&shardid).map(String::as_str).unwrap_or_default();
                (layout.tables[t].name.as_str(), shardid, name)
            })
            .collect();
        sql.push_str(&shard_round_sql(fixture, &shards)?);
    }
    Ok(sql)
}

/// Creates the shard tables `(table, shardid, shard name)` of one round (same schema) from the
/// spec's DDL. Needs [`SHARDIFY_FUNCTION`] in the session.
pub(crate) fn shard_round_sql(
    fixture: &CitusFixture,
    shards: &[(&str, i64, &str)],
) -> Result<String> {
    let Some((first, _, _)) = shards.first() else {
        return Ok(String::new());
    };
    let schema = fixture.schema_of(first)?;
    let mut sql = format!(
        "SET search_path = {SCRATCH_SCHEMA}, {}, {};\n",
        quote_ident(schema),
        quote_ident(&fixture.schema)
    );
    for (table, _, _) in shards {
        sql.push_str(&fixture.spec_table(table)?.ddl);
        sql.push_str(";\n");
    }
    for (table, shardid, shard_name) in shards {
        sql.push_str(&format!(
            "SELECT pg_temp.pgwarp_shardify({}, {}, {shardid}, {});\n",
            quote_literal(table),
            quote_literal(shard_name),
            quote_literal(schema)
        ));
    }
    sql.push_str("RESET search_path;\n");
    Ok(sql)
}

/// Whether a spec table is distributed by hash (for split).
pub(crate) fn is_hash(spec: &ClusterSpec, table: &str) -> bool {
    matches!(
        spec.table(table).map(|t| &t.kind),
        Some(TableKind::Hash { .. } | TableKind::HashColocated { .. })
    )
}

//! `pgwarp route`: where does Citus put this value?
//!
//! ```text
//! pgwarp route --target 'host=coord dbname=app' --table orders --value 42 [--json] [--raw]
//! ```
//!
//! The value is first cast on the target to the column's declared type and printed back in
//! canonical form (`SELECT CAST($1 AS numeric(10,2))::text` with the session settings the
//! engine's source connection uses), so any input syntax the server accepts works and the value
//! is rounded by the column's typmod exactly as it would be when stored. `--raw` skips that and
//! hashes the text as given, which must then be in the type's canonical output form. The hash,
//! shard and node(s) are then computed by pgwarp's own router, from the catalog only.

use std::io::Write;

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;
use tokio_postgres::Client;

use crate::citus::{CitusTable, DistColumn, TableKind, TableRouter, Topology};

use super::connect::connect_target;

/// Arguments of `pgwarp route`.
#[derive(Debug, Clone, Args)]
pub struct RouteArgs {
    /// Connection string of the target (Citus coordinator or plain PostgreSQL).
    #[arg(long, env = "PGWARP_TARGET")]
    pub target: String,
    /// The table, as SQL names it on the target (`orders`, `sales.orders`).
    #[arg(long)]
    pub table: String,
    /// The distribution column value (required for hash-distributed tables).
    #[arg(long)]
    pub value: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Hash the value exactly as given (canonical output form) instead of casting it on the
    /// target first.
    #[arg(long)]
    pub raw: bool,
}

/// What `pgwarp route` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteReport {
    /// `schema.table`.
    pub table: String,
    /// How the table is distributed.
    pub kind: TableKind,
    /// Distribution column name, for hash tables.
    pub distribution_column: Option<String>,
    /// Distribution column type, for hash tables.
    pub column_type: Option<String>,
    /// The value as hashed (canonical text), for hash tables.
    pub value: Option<String>,
    /// The value's hash, for hash tables.
    pub hash: Option<i32>,
    /// Index of the shard in hash-range order.
    pub shard_index: usize,
    /// `pg_dist_shard.shardid` (0 for a plain table).
    pub shard_id: i64,
    /// Qualified, quoted shard table name.
    pub shard_name: String,
    /// The shard's hash range, for hash tables.
    pub range: Option<(i32, i32)>,
    /// `host:port` of every node the row is written to.
    pub nodes: Vec<String>,
}

/// Runs `pgwarp route` and prints the report.
pub async fn run(args: &RouteArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let report = route(args).await?;
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        write_text(&report, out)?;
    }
    Ok(())
}

/// Computes the report without printing it.
pub async fn route(args: &RouteArgs) -> anyhow::Result<RouteReport> {
    let (client, addr) = connect_target(&args.target).await?;
    let topology = Topology::load(&client, &addr, &[args.table.as_str()]).await?;
    let table = topology
        .tables
        .first()
        .context("the topology has no table")?;
    let (value, hash, index) = match (&table.router, &table.dist_column) {
        (TableRouter::Hash { kernel, .. }, Some(col)) => {
            let Some(input) = args.value.as_deref() else {
                bail!(
                    "table \"{}.{}\" is hash-distributed by \"{}\": --value is required",
                    table.schema,
                    table.name,
                    col.name
                );
            };
            let canonical = if args.raw {
                input.to_string()
            } else {
                canonicalize(&client, col, input).await?
            };
            let hash = kernel
                .hash_text(canonical.as_bytes())
                .map_err(|e| table.route_error(e.into()))
                .with_context(|| {
                    format!(
                        "value is not valid for column \"{}\" of type {}",
                        col.name, col.type_name
                    )
                })?;
            let index = table
                .router
                .route_hash(hash)
                .map_err(|e| table.route_error(e))?;
            (Some(canonical), Some(hash), index)
        }
        _ => (None, None, 0),
    };
    report(&topology, table, value, hash, index)
}

/// Casts the input to the column's declared type on the target and returns its canonical text.
async fn canonicalize(client: &Client, col: &DistColumn, input: &str) -> anyhow::Result<String> {
    client
        .batch_execute(
            "SET DateStyle = 'ISO, MDY'; SET TimeZone = 'UTC'; SET IntervalStyle = 'postgres'; \
             SET extra_float_digits = 3; SET bytea_output = 'hex'",
        )
        .await
        .context("setting session output formats on the target")?;
    // format_type output is a valid type name (quoted where needed), typmod included.
    let sql = format!("SELECT CAST($1::text AS {})::text", col.type_name);
    let row = client.query_one(&sql, &[&input]).await.map_err(|e| {
        let msg = e
            .as_db_error()
            .map_or_else(|| e.to_string(), |db| db.message().to_string());
        anyhow::anyhow!(
            "value is not valid for column \"{}\" of type {}: {msg}",
            col.name,
            col.type_name
        )
    })?;
    let text: Option<String> = row.try_get(0)?;
    text.context("the distribution column value cannot be NULL")
}

fn report(
    topology: &Topology,
    table: &CitusTable,
    value: Option<String>,
    hash: Option<i32>,
    index: usize,
) -> anyhow::Result<RouteReport> {
    let shard = table
        .shard(index)
        .context("router returned an unknown shard index")?;
    Ok(RouteReport {
        table: format!("{}.{}", table.schema, table.name),
        kind: table.kind,
        distribution_column: table.dist_column.as_ref().map(|c| c.name.clone()),
        column_type: table.dist_column.as_ref().map(|c| c.type_name.clone()),
        value,
        hash,
        shard_index: index,
        shard_id: shard.shard_id,
        shard_name: shard.qualified_name.clone(),
        range: shard.range,
        nodes: topology
            .shard_nodes(shard)
            .map(ToString::to_string)
            .collect(),
    })
}

fn write_text(r: &RouteReport, out: &mut dyn Write) -> std::io::Result<()> {
    let kind = match r.kind {
        TableKind::Hash => "hash-distributed",
        TableKind::Reference => "reference table",
        TableKind::SingleShard => "single-shard table",
        TableKind::Tenant => "schema-based (tenant) table",
        TableKind::CitusLocal => "Citus local table",
        TableKind::Plain => "not a Citus table",
    };
    writeln!(out, "table:  {} ({kind})", r.table)?;
    if let (Some(col), Some(typ), Some(v), Some(h)) =
        (&r.distribution_column, &r.column_type, &r.value, r.hash)
    {
        writeln!(out, "column: {col} {typ}")?;
        writeln!(out, "value:  {v}")?;
        writeln!(out, "hash:   {h}")?;
    }
    if r.kind == TableKind::Plain {
        writeln!(out, "shard:  {} (the table itself)", r.shard_name)?;
    } else {
        writeln!(out, "shard:  {} {}", r.shard_id, r.shard_name)?;
    }
    if let Some((min, max)) = r.range {
        writeln!(
            out,
            "range:  [{min}, {max}] (shard index {})",
            r.shard_index
        )?;
    }
    let label = if r.nodes.len() > 1 {
        "nodes: "
    } else {
        "node:  "
    };
    writeln!(out, "{label} {}", r.nodes.join(", "))
}

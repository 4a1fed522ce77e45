//! `pgwarp plan`: read the source and propose a distribution.
//!
//! ```text
//! pgwarp plan --source S [--schemas a,b] [--shard-count N] [--tenant-column NAME]
//!             [--min-size 100MB] [--out plan.sql]
//! ```
//!
//! Prints the report; with `--out`, writes the SQL for the target (see [`crate::plan`]).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::config::{RawSize, parse_size};
use crate::conn::{ConnConfig, connect};
use crate::plan::{self, PlanOptions, render};

/// Arguments of `pgwarp plan`.
#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// Connection string of the source database.
    #[arg(long, env = "PGWARP_SOURCE")]
    pub source: String,
    /// Schemas to plan (comma-separated); default: every user schema.
    #[arg(long, value_delimiter = ',')]
    pub schemas: Vec<String>,
    /// Shards for the tenant's colocation group (Citus's default when not given).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub shard_count: Option<u32>,
    /// Distribute by this column instead of the detected tenant key.
    #[arg(long, value_name = "NAME")]
    pub tenant_column: Option<String>,
    /// Tables at least this large are distributed (e.g. 100MB, 1GB).
    #[arg(long, value_name = "SIZE", default_value = "100MB")]
    pub min_size: String,
    /// Write the SQL for the target to this file.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Runs `pgwarp plan`.
pub async fn run(args: &PlanArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let min_size = parse_size(&RawSize::Text(args.min_size.clone()))
        .map_err(|e| anyhow::anyhow!("invalid --min-size: {e}"))?;
    let options = PlanOptions {
        min_size: i64::try_from(min_size).unwrap_or(i64::MAX),
        tenant_column: args.tenant_column.clone(),
        shard_count: args.shard_count,
    };
    let cfg = ConnConfig::parse(&args.source).context("invalid source connection string")?;
    let (client, _task) = connect(&cfg)
        .await
        .context("could not connect to the source")?;
    let (snap, plan) = plan::plan(&client, &args.schemas, &options).await?;
    if snap.tables.is_empty() {
        anyhow::bail!("no tables found on the source to plan");
    }
    write!(out, "{}", render::report(&snap, &plan))?;
    if let Some(path) = &args.out {
        std::fs::write(path, render::sql_file(&snap, &plan))
            .with_context(|| format!("could not write \"{}\"", path.display()))?;
        writeln!(
            out,
            "\nSQL for the target written to {} (apply it with pgwarp schema --plan {})",
            path.display(),
            path.display()
        )?;
    }
    Ok(())
}

//! `pgwarp schema`: copy the tables' definitions to the target and apply a plan.
//!
//! ```text
//! pgwarp schema --source S --target T [--tables a,b | --schemas s] [--plan plan.sql]
//!               [--pg-dump /path/to/pg_dump]
//! ```
//!
//! Without `--tables` or `--schemas`, every table of the source database is copied. See
//! [`crate::schema`].

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::config::RawConfig;
use crate::schema::{self, SchemaRequest};

use super::sync::CommonArgs;

/// Arguments of `pgwarp schema`.
#[derive(Debug, Clone, Args)]
pub struct SchemaArgs {
    /// Source, target, tables or schemas.
    #[command(flatten)]
    pub common: CommonArgs,
    /// A plan file written by pgwarp plan --out: applied on the target after the copy.
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// The pg_dump to use (default: the one matching the source's major version).
    #[arg(long, value_name = "PATH")]
    pub pg_dump: Option<PathBuf>,
}

/// Runs `pgwarp schema`.
pub async fn run(args: &SchemaArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let settings = args.common.settings(RawConfig::default())?;
    let plan = match &args.plan {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("could not read the plan file \"{}\"", path.display()))?,
        ),
        None => None,
    };
    let req = SchemaRequest {
        source: settings.source.clone(),
        target: settings.target.clone(),
        scope: settings.scope.clone(),
        plan,
        pg_dump: args.pg_dump.clone(),
    };
    let report = {
        let mut log = |line: String| {
            let _ = writeln!(out, "{line}");
        };
        schema::copy_schema(&req, &mut log).await?
    };
    writeln!(
        out,
        "schema ready on the target: {} table(s), empty",
        report.tables.len()
    )?;
    Ok(())
}

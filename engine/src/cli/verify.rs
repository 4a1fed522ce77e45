//! `pgwarp verify`: compare the source and the target, table by table and shard by shard.
//!
//! ```text
//! pgwarp verify --source S --target T [--tables a,b] [--sample N] [--parallel N] [--json]
//! ```
//!
//! Exit status: 0 when every table is equal, 1 when some differ, 2 when verify could not
//! compare (unreachable server, missing table, failed query). Without `--tables`, the tables
//! of the sync recorded on the target for `--slot` are verified.
//!
//! Connection options are `sync`'s ([`CommonArgs`]: flags over `PGWARP_*` variables over the
//! `--config` file). This file also holds the error that carries an exit status other than 1
//! ([`ExitStatus`]), which `main` turns into the process status.

use std::io::Write;

use anyhow::Context;
use clap::Args;

use crate::config::{RawConfig, Settings, TableScope};
use crate::conn::connect;
use crate::verify::{self, VerifyReport, VerifyRequest};

use super::sync::CommonArgs;

/// An error that ends the process with a given exit status (other errors exit with 1).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ExitStatus {
    /// The process exit status.
    pub status: u8,
    /// What to print on stderr.
    pub message: String,
}

/// The exit status for an error returned by a command: [`ExitStatus`]'s, or 1.
pub fn exit_status(err: &anyhow::Error) -> u8 {
    err.downcast_ref::<ExitStatus>().map_or(1, |e| e.status)
}

/// Arguments of `pgwarp verify`.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// Source, target, tables (default: the sync's tables), slot, configuration file.
    #[command(flatten)]
    pub common: CommonArgs,
    /// List up to N differing keys for each mismatching shard.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub sample: usize,
    /// Scans running at once (1 to 64).
    #[arg(long, value_name = "N")]
    pub parallel: Option<u32>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `pgwarp verify` and prints the report.
pub async fn run(args: &VerifyArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let report = match report(args).await {
        Ok(r) => r,
        Err(e) => {
            return Err(ExitStatus {
                status: 2,
                message: format!("verify failed: {e:#}"),
            }
            .into());
        }
    };
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        report.write_text(out)?;
    }
    outcome(&report)
}

/// The command's result for a report: `Ok` when equal, an [`ExitStatus`] otherwise.
pub fn outcome(report: &VerifyReport) -> anyhow::Result<()> {
    match report.exit_status() {
        0 => Ok(()),
        1 => Err(ExitStatus {
            status: 1,
            message: format!(
                "verify found differences in {} table(s)",
                report.mismatched().count()
            ),
        }
        .into()),
        status => Err(ExitStatus {
            status,
            message: format!(
                "verify could not compare {} table(s)",
                report.errors().count()
            ),
        }
        .into()),
    }
}

/// Runs the verification without printing.
pub async fn report(args: &VerifyArgs) -> anyhow::Result<VerifyReport> {
    let settings = args.common.settings(RawConfig {
        parallel: args.parallel,
        ..RawConfig::default()
    })?;
    let tables = resolve_tables(&settings).await?;
    let request = VerifyRequest {
        source: settings.source.clone(),
        target: settings.target.clone(),
        nodes: settings.nodes.clone(),
        tables,
        parallel: if args.parallel.is_some() {
            settings.parallel
        } else {
            verify::DEFAULT_PARALLEL
        },
        sample: args.sample,
    };
    Ok(verify::verify(&request).await?)
}

/// The tables to work on: the settings' scope, else the sync's tables recorded on the target.
pub async fn resolve_tables(settings: &Settings) -> anyhow::Result<Vec<String>> {
    if let Some(TableScope::Tables(t)) = &settings.scope {
        return Ok(t.clone());
    }
    if let Some(scope @ TableScope::Schemas(_)) = &settings.scope {
        let (source, _task) = connect(&settings.source)
            .await
            .context("could not connect to the source")?;
        return Ok(verify::scope_tables(&source, scope).await?);
    }
    let (target, _task) = connect(&settings.target)
        .await
        .context("could not connect to the target")?;
    match verify::tables_of_sync(&target, &settings.slot).await? {
        Some(t) if !t.is_empty() => Ok(t),
        _ => anyhow::bail!(
            "no tables given and no sync with slot \"{}\" is recorded on the target: use --tables",
            settings.slot
        ),
    }
}

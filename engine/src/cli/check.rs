//! `pgwarp check`: the preflight, on its own.
//!
//! ```text
//! pgwarp check --source S --target T [--tables a,b | --schemas s] [--slot NAME] [--json]
//! ```
//!
//! Prints every problem found (one per line, or a JSON report) and exits with status 1 when
//! there is any; `sync` runs the same check and refuses to start on any problem.

use std::io::Write;

use anyhow::bail;
use clap::Args;

use crate::config::RawConfig;

use super::sync::CommonArgs;

/// Arguments of `pgwarp check`.
#[derive(Debug, Clone, Default, Args)]
pub struct CheckArgs {
    /// Source, target, tables, slot.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `pgwarp check`.
pub async fn run(args: &CheckArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let settings = args.common.settings(RawConfig::default())?;
    let report = crate::check::run(&settings).await?;
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        for p in &report.problems {
            writeln!(out, "problem: {p}")?;
        }
        if report.is_ok() {
            writeln!(
                out,
                "ok: {} table(s) ready to {}",
                report.tables.len(),
                if report.resuming { "resume" } else { "sync" }
            )?;
        }
    }
    if !report.is_ok() {
        bail!("{} problem(s) found", report.problems.len());
    }
    Ok(())
}

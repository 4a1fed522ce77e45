//! `pgwarp cleanup`: remove the slot, the publication and the `pgwarp` state of a sync.
//!
//! ```text
//! pgwarp cleanup --source S --target T [--slot NAME] [--publication NAME] [--force]
//! ```
//!
//! Safe to run again: what is already gone is reported as such. See [`crate::cleanup`].

use std::io::Write;

use clap::Args;

use crate::cleanup::{self, CleanupRequest, NodeCleanup};
use crate::config::RawConfig;

use super::sync::CommonArgs;

/// Arguments of `pgwarp cleanup`.
#[derive(Debug, Clone, Args)]
pub struct CleanupArgs {
    /// Source, target, slot, publication.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Drop the slot even while a sync streams it (the sync stops).
    #[arg(long)]
    pub force: bool,
}

/// Runs `pgwarp cleanup`.
pub async fn run(args: &CleanupArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let settings = args.common.settings(RawConfig::default())?;
    let req = CleanupRequest {
        source: settings.source.clone(),
        target: settings.target.clone(),
        nodes: settings.nodes.clone(),
        slot: settings.slot.clone(),
        publication: settings.publication.clone(),
        force: args.force,
    };
    let report = cleanup::cleanup(&req)
        .await
        .map_err(|e| anyhow::anyhow!("cleanup of slot \"{}\" failed: {e}", req.slot))?;
    let gone = |existed: bool| if existed { "dropped" } else { "not there" };
    writeln!(
        out,
        "replication slot \"{}\": {}",
        req.slot,
        gone(report.slot_dropped)
    )?;
    writeln!(
        out,
        "publication \"{}\": {}",
        req.publication,
        gone(report.publication_dropped)
    )?;
    for (node, result) in &report.nodes {
        let what = match result {
            NodeCleanup::Nothing => "no pgwarp schema".to_owned(),
            NodeCleanup::SchemaDropped => "pgwarp schema dropped".to_owned(),
            NodeCleanup::RowsRemoved(n) => format!(
                "{n} row(s) of slot \"{}\" removed; the pgwarp schema stays (other syncs use it)",
                req.slot
            ),
            NodeCleanup::Failed(e) => format!("FAILED: {e}"),
        };
        writeln!(out, "node {node}: {what}")?;
    }
    if !report.fence_lift_sql.is_empty() {
        writeln!(
            out,
            "note: a cutover fence may still be up on the source; to lift it, run there:"
        )?;
        for sql in &report.fence_lift_sql {
            writeln!(out, "  {sql};")?;
        }
    }
    if report.failed() {
        anyhow::bail!("cleanup could not clean every node (see above); run it again");
    }
    Ok(())
}

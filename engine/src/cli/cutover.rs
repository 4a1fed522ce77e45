//! `pgwarp cutover`: fence the source, let the running sync catch up, copy sequences, verify,
//! drop the slot and publication, and print the write downtime.
//!
//! ```text
//! pgwarp cutover --source S --target T [--slot NAME] [--publication NAME]
//!                [--fence-role ROLE ...] [--no-fence] [--max-wait SECS] [--no-verify]
//!                [--tables a,b] [--parallel N]
//! pgwarp cutover --source S --target T [--slot NAME] --unfence
//! ```
//!
//! Run it while `pgwarp sync` is streaming: the sync applies the last transactions before the
//! fence. See [`crate::cutover`] for the sequence of steps and what a failure undoes.

use std::io::Write;
use std::time::Duration;

use clap::Args;

use crate::config::{RawConfig, TableScope};
use crate::cutover::{self, CutoverOutcome, CutoverRequest};
use crate::verify;

use super::sync::{CommonArgs, shutdown_token};

/// Arguments of `pgwarp cutover`.
#[derive(Debug, Clone, Args)]
pub struct CutoverArgs {
    /// Source, target, slot, publication, tables (default: the sync's).
    #[command(flatten)]
    pub common: CommonArgs,
    /// Application role to fence (repeat, or comma-separate); none: fence the whole database.
    #[arg(long = "fence-role", value_name = "ROLE", value_delimiter = ',')]
    pub fence_roles: Vec<String>,
    /// Do not fence: the application's writers are already stopped.
    #[arg(long, conflicts_with = "fence_roles")]
    pub no_fence: bool,
    /// Longest wait, in seconds, for the target to apply everything up to the fence.
    #[arg(long, value_name = "SECS", default_value_t = cutover::DEFAULT_MAX_WAIT.as_secs())]
    pub max_wait: u64,
    /// Skip the verification (it reads every table on both sides while writes are fenced).
    #[arg(long)]
    pub no_verify: bool,
    /// Verify's concurrent scans (1 to 64).
    #[arg(long, value_name = "N")]
    pub parallel: Option<u32>,
    /// Only lift the fence an earlier cutover put up (roll back to the source).
    #[arg(long, conflicts_with_all = ["fence_roles", "no_fence", "no_verify"])]
    pub unfence: bool,
}

impl CutoverArgs {
    /// The request these arguments describe.
    pub fn request(&self) -> anyhow::Result<CutoverRequest> {
        let settings = self.common.settings(RawConfig {
            parallel: self.parallel,
            ..RawConfig::default()
        })?;
        let tables = match &settings.scope {
            None => None,
            Some(TableScope::Tables(t)) => Some(t.clone()),
            Some(TableScope::Schemas(_)) => {
                anyhow::bail!("cutover takes --tables (default: the sync's tables), not --schemas")
            }
        };
        if self.max_wait == 0 {
            anyhow::bail!("--max-wait must be at least 1 second");
        }
        Ok(CutoverRequest {
            source: settings.source.clone(),
            target: settings.target.clone(),
            nodes: settings.nodes.clone(),
            slot: settings.slot.clone(),
            publication: settings.publication.clone(),
            tables,
            fence_roles: self.fence_roles.clone(),
            fence: !self.no_fence,
            max_wait: Duration::from_secs(self.max_wait),
            verify: !self.no_verify,
            parallel: if self.parallel.is_some() {
                settings.parallel
            } else {
                verify::DEFAULT_PARALLEL
            },
        })
    }
}

/// Runs `pgwarp cutover`.
pub async fn run(args: &CutoverArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let req = args.request()?;
    if args.unfence {
        return match cutover::unfence(&req).await? {
            Some(f) => {
                writeln!(out, "fence lifted: {} accept writes again", f.describe())?;
                for sql in f.lift_sql() {
                    writeln!(out, "  {sql}")?;
                }
                Ok(())
            }
            None => {
                writeln!(
                    out,
                    "no fence of slot \"{}\" is up: nothing to lift",
                    req.slot
                )?;
                Ok(())
            }
        };
    }
    let cancel = shutdown_token();
    let result = {
        let mut log = |line: String| {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        };
        cutover::cutover(&req, &cancel, &mut log).await
    };
    match result {
        Ok(CutoverOutcome::AlreadyDone {
            finished_at,
            downtime_seconds,
        }) => {
            writeln!(
                out,
                "the cutover of slot \"{}\" was already completed{}{}: nothing to do",
                req.slot,
                finished_at.map(|t| format!(" at {t}")).unwrap_or_default(),
                downtime_seconds
                    .map(|d| format!(" (write downtime {d:.1} s)"))
                    .unwrap_or_default()
            )?;
            Ok(())
        }
        Ok(CutoverOutcome::Done(report)) => {
            match &report.publication {
                Ok(true) => writeln!(out, "publication \"{}\" dropped", req.publication)?,
                Ok(false) => {}
                Err(e) => writeln!(
                    out,
                    "warning: publication \"{}\" could not be dropped ({e}); pgwarp cleanup \
                     removes it",
                    req.publication
                )?,
            }
            writeln!(out, "cutover complete")?;
            writeln!(out, "write downtime: {:.1} s", report.downtime_seconds)?;
            if !report.lift_sql.is_empty() {
                writeln!(
                    out,
                    "the source stays read-only for {}: point the application at the target \
                     (pgwarp cutover --unfence lifts the fence)",
                    report.fence
                )?;
            }
            Ok(())
        }
        Err(failure) => Err(anyhow::Error::new(failure)),
    }
}

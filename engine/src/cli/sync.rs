//! `pgwarp sync`: the command glue around [`crate::pipeline`].
//!
//! ```text
//! pgwarp sync --source S --target T [--tables a,b | --schemas s] [--slot NAME]
//!             [--publication NAME] [--parallel N] [--spill-dir DIR] [--metrics-addr ADDR]
//!             [--progress auto|always|never] [--until-caught-up] [-c pgwarp.toml]
//! ```
//!
//! Order: settings (file, then environment, then flags), the preflight check (nothing is
//! created while any problem remains; the read-only preparation runs alongside it), then the
//! pipeline with Ctrl-C and SIGTERM wired to its cancellation token. A stopped sync prints how to resume; `--until-caught-up` prints the
//! position every node reached.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::config::{RawConfig, Settings, load_file};
use crate::pipeline::{self, SyncOptions, SyncOutcome};

/// Options shared by `sync`, `check` and `status`.
#[derive(Debug, Clone, Default, Args)]
pub struct CommonArgs {
    /// Configuration file (TOML); flags and PGWARP_* variables override it.
    #[arg(short = 'c', long = "config", env = "PGWARP_CONFIG")]
    pub config: Option<PathBuf>,
    /// Source connection string (keyword/value or URI, as libpq takes it).
    #[arg(long, env = "PGWARP_SOURCE")]
    pub source: Option<String>,
    /// Target connection string: the Citus coordinator or a plain PostgreSQL.
    #[arg(long, env = "PGWARP_TARGET")]
    pub target: Option<String>,
    /// Tables to sync, comma-separated (`name` or `schema.name`, SQL syntax: quote names
    /// with double quotes; commas inside quotes do not separate).
    #[arg(long, conflicts_with = "schemas")]
    pub tables: Option<Vec<String>>,
    /// Schemas whose tables to sync, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub schemas: Option<Vec<String>>,
    /// Replication slot name (default pgwarp).
    #[arg(long, env = "PGWARP_SLOT")]
    pub slot: Option<String>,
    /// Publication name (default pgwarp).
    #[arg(long, env = "PGWARP_PUBLICATION")]
    pub publication: Option<String>,
}

impl CommonArgs {
    /// The flags as a config layer.
    pub fn raw(&self) -> RawConfig {
        RawConfig {
            source: self.source.clone(),
            target: self.target.clone(),
            tables: self.tables.clone(),
            schemas: self.schemas.clone(),
            slot: self.slot.clone(),
            publication: self.publication.clone(),
            ..Default::default()
        }
    }

    /// The settings: the file, then `extra` and these flags on top.
    pub fn settings(&self, extra: RawConfig) -> anyhow::Result<Settings> {
        let file = match &self.config {
            Some(path) => load_file(path)?,
            None => RawConfig::default(),
        };
        Ok(file.overlay(extra.overlay(self.raw())).validate()?)
    }
}

/// Arguments of `pgwarp sync`.
#[derive(Debug, Clone, Default, Args)]
pub struct SyncArgs {
    /// Source, target, tables, slot, publication.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Snapshot reader connections (default 4).
    #[arg(long, env = "PGWARP_PARALLEL")]
    pub parallel: Option<u32>,
    /// Directory for large streamed transactions beyond the memory budget.
    #[arg(long, env = "PGWARP_SPILL_DIR")]
    pub spill_dir: Option<PathBuf>,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9187).
    #[arg(long, env = "PGWARP_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// Progress bars: auto (on a terminal), always, never.
    #[arg(long, env = "PGWARP_PROGRESS", value_parser = ["auto", "always", "never"])]
    pub progress: Option<String>,
    /// Exit once the snapshot is done and every node has applied the source up to its WAL
    /// position at that moment.
    #[arg(long)]
    pub until_caught_up: bool,
}

impl SyncArgs {
    /// The settings for this run.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        self.common.settings(RawConfig {
            parallel: self.parallel,
            spill_dir: self.spill_dir.clone(),
            metrics_addr: self.metrics_addr.clone(),
            progress: self.progress.clone(),
            ..Default::default()
        })
    }
}

/// A token cancelled by Ctrl-C or SIGTERM.
pub fn shutdown_token() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot watch SIGTERM");
                        let _ = tokio::signal::ctrl_c().await;
                        t.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("stopping: finishing the batches in flight");
        t.cancel();
    });
    token
}

/// Runs `pgwarp sync`.
pub async fn run(args: &SyncArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let settings = args.settings()?;
    let cancel = shutdown_token();
    let outcome = sync(&settings, args.until_caught_up, &cancel, out).await?;
    match outcome {
        SyncOutcome::CaughtUp(lsn) => {
            writeln!(
                out,
                "caught up: every node has applied the source up to {lsn}"
            )?;
        }
        SyncOutcome::CutoverDone => {
            writeln!(
                out,
                "cutover complete: the slot was dropped by pgwarp cutover; nothing left to sync"
            )?;
        }
        SyncOutcome::Stopped => {
            writeln!(
                out,
                "stopped; run pgwarp sync again with the same options to resume"
            )?;
        }
    }
    Ok(())
}

/// Check, prepare, run: the sync itself, for the command and the demo.
pub async fn sync(
    settings: &Settings,
    until_caught_up: bool,
    cancel: &CancellationToken,
    out: &mut dyn Write,
) -> anyhow::Result<SyncOutcome> {
    // the preparation only reads (tables, topology), so it runs while the check does; its
    // result is used only once the check found nothing
    tracing::debug!("start-up: checking and preparing");
    let (report, prepared) = tokio::join!(crate::check::run(settings), pipeline::prepare(settings));
    let report = report.context("preflight check failed")?;
    if !report.is_ok() {
        for p in &report.problems {
            writeln!(out, "problem: {p}")?;
        }
        bail!(
            "preflight check found {} problem(s); nothing was changed",
            report.problems.len()
        );
    }
    let prepared = prepared?;
    tracing::debug!("start-up: checked and prepared");
    let _metrics = match settings.metrics_addr {
        Some(addr) => Some(crate::metrics::serve(addr, prepared.stats.clone()).await?),
        None => None,
    };
    let display = crate::cli::progress::Display::start(settings.progress, prepared.stats.clone());
    let result = pipeline::run(&prepared, SyncOptions { until_caught_up }, cancel).await;
    display.finish();
    Ok(result?)
}

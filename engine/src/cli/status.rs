//! `pgwarp status`: phase, snapshot progress, lag per node, throughput and slot health.
//!
//! ```text
//! pgwarp status --source S --target T [--slot NAME] [--sample 1s] [--json]
//! ```

use std::io::Write;
use std::time::Duration;

use clap::Args;

use crate::config::RawConfig;
use crate::status::{StatusReport, gather};

use super::sync::CommonArgs;

/// Arguments of `pgwarp status`.
#[derive(Debug, Clone, Default, Args)]
pub struct StatusArgs {
    /// Source, target, slot (tables are read from the sync's state).
    #[command(flatten)]
    pub common: CommonArgs,
    /// How long to watch the positions to measure throughput, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub sample_ms: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

/// Writes the report as text.
pub fn render(r: &StatusReport, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "slot {} (publication {}): phase {}",
        r.slot,
        r.publication.as_deref().unwrap_or("-"),
        r.phase
    )?;
    if let Some(cp) = &r.consistent_point {
        writeln!(out, "  consistent point {cp}")?;
    }
    if let Some(done) = &r.snapshot_done_at {
        writeln!(out, "  snapshot done at {done}")?;
    }
    if let Some(at) = &r.caught_up_lsn {
        writeln!(out, "  last caught up at {at}")?;
    }
    if !r.tables.is_empty() {
        writeln!(out, "snapshot:")?;
        for t in &r.tables {
            writeln!(
                out,
                "  {:<40} {:>4}/{:<4} chunks {:>12} rows {:>10}",
                t.table,
                t.chunks_done,
                t.chunks,
                t.rows,
                bytes(u64::try_from(t.bytes).unwrap_or(0))
            )?;
        }
    }
    let s = &r.source;
    if s.slot_exists {
        writeln!(
            out,
            "source: WAL at {}, slot {} (wal_status {}), confirmed {}, retained WAL {}",
            s.wal_lsn,
            if s.slot_active { "active" } else { "inactive" },
            s.wal_status.as_deref().unwrap_or("-"),
            s.confirmed_flush_lsn.as_deref().unwrap_or("-"),
            s.retained_wal_bytes.map_or_else(|| "-".to_owned(), bytes)
        )?;
    } else {
        writeln!(out, "source: WAL at {}, slot does not exist", s.wal_lsn)?;
    }
    if !r.nodes.is_empty() {
        writeln!(out, "nodes:")?;
        for n in &r.nodes {
            match (&n.applied_lsn, n.lag_bytes, n.lag_seconds) {
                (Some(at), Some(lb), Some(ls)) => writeln!(
                    out,
                    "  {:<24} applied {:<14} lag {} / {:.1}s",
                    n.node,
                    at,
                    bytes(lb),
                    ls
                )?,
                _ if n.reachable => writeln!(out, "  {:<24} no streamed progress yet", n.node)?,
                _ => writeln!(out, "  {:<24} unreachable", n.node)?,
            }
        }
    }
    if let Some(t) = r.throughput_bytes_per_second {
        writeln!(
            out,
            "throughput: {}/s of WAL applied (over {:.1}s)",
            bytes(t as u64),
            r.sample_seconds
        )?;
    }
    Ok(())
}

/// Runs `pgwarp status`.
pub async fn run(args: &StatusArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let settings = args.common.settings(RawConfig::default())?;
    let report = gather(&settings, Duration::from_millis(args.sample_ms)).await?;
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        render(&report, out)?;
    }
    Ok(())
}

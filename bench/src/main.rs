//! `pgwarp-bench`: pgwarp side by side with the limits and the peers, in one run, with plots.
//!
//! ```text
//! cargo run --release -p pgwarp-bench -- --quick            # a few minutes on 2 cores
//! cargo run --release -p pgwarp-bench                        # the full run (scale 1)
//! cargo run --release -p pgwarp-bench -- --scale 0.2 --only l-copy,pgwarp-p2 --out /tmp/b
//! ```
//!
//! It starts its own PostgreSQL 15 servers on loopback (a source, a Citus-shaped coordinator
//! with two workers or the real Citus of `$PGWARP_TEST_CITUS_COORDINATOR`, and a plain
//! target), generates the data, runs every contender one after another on clones of the same
//! source database, verifies every result, and writes `results.md`, `results.json` and SVG
//! plots to the results directory (default `bench/results/<time>`). See `docs/benchmarks.md`
//! and the [`runner`] module for what is measured and how.

mod runner;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;

use runner::{Config, Contender};

#[derive(Debug, Parser)]
#[command(
    name = "pgwarp-bench",
    about = "pgwarp side by side with the limits (L-copy, L-slot, source read) and the peers"
)]
struct Args {
    /// Small scale (0.2: 200k orders, 40k users, pgbench -s 2; 150k-statement mixed loads,
    /// a 500k-row transaction, 8 s lag levels): a few minutes on 2 cores.
    #[arg(long)]
    quick: bool,
    /// Data scale: 1 = 1M orders, 200k users, 10k products, pgbench -s 10 (loads scale along).
    #[arg(long)]
    scale: Option<f64>,
    /// Results directory (default: bench/results/<UTC time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run only these, comma-separated.
    #[arg(long, value_delimiter = ',', value_enum)]
    only: Option<Vec<Contender>>,
    /// The pgwarp binary (default: build it with cargo and use target/release/pgwarp).
    #[arg(long)]
    pgwarp: Option<PathBuf>,
    /// Seconds per steady-load level of the lag measurement.
    #[arg(long)]
    lag_seconds: Option<f64>,
    /// Statements per mixed load (default 500k at scale 1; 150k with --quick).
    #[arg(long)]
    mixed_rows: Option<i64>,
    /// Rows of the large transaction (default 1M at scale 1; 500k with --quick).
    #[arg(long)]
    large_rows: Option<i64>,
    /// Seed of the load sequence (which original orders the updates pick).
    #[arg(long, default_value_t = 42)]
    seed: i64,
    /// Record a system-wide `perf record -a -g` of each pgwarp snapshot and drain into DIR.
    #[arg(long, value_name = "DIR")]
    perf: Option<PathBuf>,
    /// Measure pgwarp's snapshots only: skip the backlog drains and lag of `pgwarp-p2`.
    #[arg(long)]
    snapshot_only: bool,
    /// Only render DIR/results.json again (results.md and the plots), running nothing.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["quick", "only", "perf", "snapshot_only"])]
    render: Option<PathBuf>,
}

impl Args {
    fn config(self) -> Config {
        let (base_scale, base_mixed, base_large, base_lag) = if self.quick {
            (0.2, 150_000.0, 500_000.0, 8.0)
        } else {
            (1.0, 500_000.0, 1_000_000.0, 30.0)
        };
        let scale = self.scale.unwrap_or(base_scale);
        let factor = scale / base_scale;
        // whole groups of 100 statements: the mixed sequence's pattern repeats every 10
        let mixed = self
            .mixed_rows
            .unwrap_or_else(|| ((base_mixed * factor / 100.0).round() as i64 * 100).max(1000));
        let large = self
            .large_rows
            .unwrap_or_else(|| ((base_large * factor).round() as i64).max(1000));
        let (_, stamp) = runner::machine::utc_now();
        let out = self.out.unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("results")
                .join(if self.quick {
                    format!("{stamp}-quick")
                } else {
                    stamp
                })
        });
        Config {
            quick: self.quick,
            scale,
            mixed_rows: mixed,
            large_rows: large,
            lag_seconds: self.lag_seconds.unwrap_or(base_lag),
            out,
            only: self.only,
            pgwarp: self.pgwarp,
            seed: self.seed,
            perf: self.perf,
            snapshot_only: self.snapshot_only,
            command: std::iter::once("pgwarp-bench".to_owned())
                .chain(std::env::args().skip(1))
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(dir) = &args.render {
        let path = dir.join("results.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("could not read {}", path.display()))?;
        let results: runner::results::Results = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a results file", path.display()))?;
        runner::save(&results, dir)?;
        println!("{}", runner::report::markdown(&results));
        return Ok(());
    }
    let cfg = args.config();
    eprintln!(
        "pgwarp-bench: scale {}, mixed loads of {} statements, large transaction of {} rows, \
         lag levels of {} s; results in {}",
        cfg.scale,
        cfg.mixed_rows,
        cfg.large_rows,
        cfg.lag_seconds,
        cfg.out.display()
    );
    let results = runner::run(&cfg).await?;
    if let Some(parent) = cfg.out.parent() {
        let latest = parent.join("latest");
        let _ = std::fs::remove_file(&latest);
        let _ = std::os::unix::fs::symlink(&cfg.out, &latest);
    }
    println!("{}", runner::report::markdown(&results));
    eprintln!(
        "results: {}/results.md (and results.json, snapshot.svg, cdc.svg, lag.svg); {:.0} s",
        cfg.out.display(),
        results.total_seconds
    );
    Ok(())
}

//! The side-by-side benchmark: one lab, every contender on the same data and loads, one after
//! another, and the limits measured in the same run.
//!
//! ```text
//!  lab (source, Citus-shaped cluster, plain target) ── template database (storefront + pgbench)
//!   │
//!   ├─ limits ── source read (1, 2 streams) · L-copy (1, 2, 4 streams) · L-slot (per load)
//!   ├─ native subscription → plain target   snapshot · backlog drains · lag (25/50/75%)
//!   ├─ pgcopydb → plain target              snapshot · backlog drains
//!   ├─ pg_dump | psql → coordinator         snapshot
//!   ├─ native subscription → coordinator    snapshot: rows replicated vs rows visible
//!   ├─ pgwarp --parallel 1 → Citus shards   snapshot
//!   └─ pgwarp --parallel 2 → Citus shards   snapshot · backlog drains (+ L-slot) · lag
//! ```
//!
//! Each contender gets its own clone of the template and a fresh target, and ends with a
//! verification against its source. Results are written after every step (`results.json`,
//! `results.md`, SVG plots) so a run that fails late still leaves what it measured.

pub mod cdc;
pub mod child;
pub mod data;
pub mod db;
pub mod lab;
pub mod lag;
pub mod lcopy;
pub mod limits;
pub mod machine;
pub mod native;
pub mod pgcopydb;
pub mod pgdump;
pub mod pgwarp;
pub mod profile;
pub mod report;
pub mod results;
pub mod steps;
pub mod svg;
pub mod verify;
pub mod workload;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use data::{Sizes, TABLES, TEMPLATE_DB, TEMPLATE_SCHEMA};
use lab::Lab;
use results::{Kind, Results, SnapshotRow, Status};
use workload::LoadSpec;

/// A contender or limit, as `--only` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Contender {
    /// `COPY TO STDOUT` of the source, 1 and 2 streams.
    SourceRead,
    /// Parallel binary COPY into the shards, 1/2/4 streams.
    LCopy,
    /// `pg_recvlogical` to /dev/null, per load.
    LSlot,
    /// `CREATE SUBSCRIPTION` into the plain target.
    Native,
    /// `pgcopydb clone` / `follow` into the plain target.
    Pgcopydb,
    /// `pg_dump --data-only | psql` into the coordinator.
    PgDump,
    /// `CREATE SUBSCRIPTION` into the coordinator (the documented failure).
    NativeCoordinator,
    /// pgwarp, one snapshot reader.
    PgwarpP1,
    /// pgwarp, two snapshot readers, with the CDC and lag measurements.
    PgwarpP2,
}

/// Everything the run is told.
#[derive(Debug, Clone)]
pub struct Config {
    /// Small scale, short lag levels.
    pub quick: bool,
    /// Data scale (1 = 1M orders).
    pub scale: f64,
    /// Statements per mixed load.
    pub mixed_rows: i64,
    /// Rows of the large transaction.
    pub large_rows: i64,
    /// Seconds per lag level.
    pub lag_seconds: f64,
    /// Results directory.
    pub out: PathBuf,
    /// Contenders to run (None: all).
    pub only: Option<Vec<Contender>>,
    /// The pgwarp binary (None: build and find it).
    pub pgwarp: Option<PathBuf>,
    /// Seed of the load sequence.
    pub seed: i64,
    /// Record a system-wide `perf` profile of each pgwarp phase into this directory.
    pub perf: Option<PathBuf>,
    /// pgwarp's snapshots only: no backlog drains or lag for `pgwarp-p2`.
    pub snapshot_only: bool,
    /// The command line, for the report.
    pub command: String,
}

impl Config {
    /// Whether `c` runs.
    pub fn runs(&self, c: Contender) -> bool {
        self.only.as_ref().is_none_or(|o| o.contains(&c))
    }
}

/// What every step needs.
pub struct Ctx<'a> {
    /// The configuration.
    pub cfg: &'a Config,
    /// The servers.
    pub lab: &'a Lab,
    /// Scratch directory (logs, export files, spill).
    pub work: PathBuf,
    /// The backlog loads.
    pub loads: Vec<LoadSpec>,
    /// Rows in the source.
    pub source_rows: i64,
    /// Binary COPY bytes of the source.
    pub source_bytes: u64,
    /// The source's `server_version_num`.
    pub server_version: u32,
    /// Upper bound for any single wait.
    pub timeout: Duration,
    /// Upper bound for one backlog drain by a peer (a peer slower than this is far outside
    /// every goal; a hung peer must not hold the run up for [`Ctx::timeout`]).
    pub peer_drain_timeout: Duration,
    /// The pgwarp binary, when a pgwarp contender runs.
    pub pgwarp: Option<PathBuf>,
}

impl Ctx<'_> {
    /// A snapshot row with this run's row and byte counts.
    pub fn snapshot_row(
        &self,
        contender: &str,
        kind: Kind,
        path: &str,
        seconds: Option<f64>,
        status: Status,
    ) -> SnapshotRow {
        SnapshotRow {
            contender: contender.to_owned(),
            kind,
            path: path.to_owned(),
            seconds,
            rows: self.source_rows,
            bytes: self.source_bytes,
            cpu_s: None,
            peak_rss_kib: None,
            streams: None,
            status,
        }
    }
}

/// Runs the benchmark and writes the results under `cfg.out`.
pub async fn run(cfg: &Config) -> Result<Results> {
    let started = Instant::now();
    std::fs::create_dir_all(&cfg.out)
        .with_context(|| format!("could not create {}", cfg.out.display()))?;
    let work = cfg.out.join("work");
    std::fs::create_dir_all(&work)?;
    let mut r = Results {
        command: cfg.command.clone(),
        started: machine::utc_now().0,
        scale: cfg.scale,
        quick: cfg.quick,
        settings: Lab::settings_text(),
        ..Default::default()
    };
    let wants_pgwarp = cfg.runs(Contender::PgwarpP1) || cfg.runs(Contender::PgwarpP2);
    let pgwarp_bin = if wants_pgwarp {
        Some(pgwarp::locate(cfg.pgwarp.clone())?)
    } else {
        None
    };

    step(&mut r, "lab");
    let t = Instant::now();
    let lab = tokio::task::block_in_place(Lab::start)?;
    eprintln!("lab started in {:.1}s", t.elapsed().as_secs_f64());
    r.citus = if lab.cluster.is_real() {
        "real Citus cluster ($PGWARP_TEST_CITUS_COORDINATOR)".into()
    } else {
        "Citus-shaped fake: coordinator + 2 workers (pg_dist_* catalogs, shard tables; no Citus planner)"
            .into()
    };
    let version: String = lab.source.query_scalar("postgres", "SELECT version()")?;
    let server_version: i32 = lab.source.query_scalar(
        "postgres",
        "SELECT current_setting('server_version_num')::int",
    )?;
    r.machine = machine::Machine::describe(version);

    step(&mut r, "template");
    let sizes = Sizes::at(cfg.scale);
    r.sizes = Some(sizes);
    let t = Instant::now();
    tokio::task::block_in_place(|| data::build_template(&lab.source, &sizes, cfg.seed))?;
    r.template_seconds = t.elapsed().as_secs_f64();
    for tbl in TABLES {
        let n: i64 = lab.source.query_scalar(
            TEMPLATE_DB,
            &format!("SELECT count(*) FROM {TEMPLATE_SCHEMA}.{}", tbl.name),
        )?;
        r.tables.push((tbl.name.to_owned(), n));
        r.source_rows += n;
    }
    eprintln!(
        "template: {} rows in {:.1}s",
        r.source_rows, r.template_seconds
    );

    let mut ctx = Ctx {
        cfg,
        lab: &lab,
        work: work.clone(),
        loads: workload::backlog_loads(cfg.mixed_rows, cfg.large_rows),
        source_rows: r.source_rows,
        source_bytes: 0,
        server_version: server_version.unsigned_abs(),
        timeout: Duration::from_secs(if cfg.quick { 600 } else { 3600 }),
        peer_drain_timeout: Duration::from_secs(if cfg.quick { 60 } else { 300 }),
        pgwarp: pgwarp_bin,
    };

    step(&mut r, "limits");
    if let Err(e) = steps::limits(&mut ctx, &mut r).await {
        error_row(&ctx, &mut r, "limits", &e);
    }
    save(&r, &cfg.out)?;

    let mut native_capacity = None;
    if cfg.runs(Contender::Native) {
        step(&mut r, "native");
        match steps::native_plain(&ctx, &mut r).await {
            Ok(c) => native_capacity = c,
            Err(e) => error_row(&ctx, &mut r, results::names::NATIVE, &e),
        }
        save(&r, &cfg.out)?;
    }
    if cfg.runs(Contender::Pgcopydb) {
        step(&mut r, "pgcopydb");
        if let Err(e) = steps::pgcopydb(&ctx, &mut r).await {
            error_row(&ctx, &mut r, results::names::PGCOPYDB, &e);
        }
        save(&r, &cfg.out)?;
    }
    if cfg.runs(Contender::PgDump) {
        step(&mut r, "pg_dump");
        if let Err(e) = steps::pg_dump(&ctx, &mut r).await {
            error_row(&ctx, &mut r, results::names::PGDUMP, &e);
        }
        save(&r, &cfg.out)?;
    }
    if cfg.runs(Contender::NativeCoordinator) {
        step(&mut r, "native into coordinator");
        if let Err(e) = steps::native_coordinator(&ctx, &mut r).await {
            error_row(&ctx, &mut r, results::names::NATIVE_COORD, &e);
        }
        save(&r, &cfg.out)?;
    }
    for (c, parallel) in [(Contender::PgwarpP1, 1), (Contender::PgwarpP2, 2)] {
        if cfg.runs(c) {
            step(&mut r, &format!("pgwarp --parallel {parallel}"));
            let full = c == Contender::PgwarpP2 && !cfg.snapshot_only;
            if let Err(e) = steps::pgwarp(&ctx, &mut r, parallel, full, native_capacity).await {
                error_row(&ctx, &mut r, &results::names::pgwarp(parallel), &e);
            }
            save(&r, &cfg.out)?;
        }
    }
    if cfg.runs(Contender::LSlot) && !cfg.runs(Contender::PgwarpP2) {
        step(&mut r, "L-slot");
        if let Err(e) = steps::lslot_alone(&ctx, &mut r).await {
            error_row(&ctx, &mut r, results::names::LSLOT, &e);
        }
    }
    step(&mut r, "end");
    r.total_seconds = started.elapsed().as_secs_f64();
    save(&r, &cfg.out)?;
    // keep the logs, drop the bulky scratch files
    let _ = std::fs::remove_dir_all(work.join("lcopy"));
    let _ = std::fs::remove_dir_all(work.join("pgcopydb"));
    Ok(r)
}

/// Records the load average at the start of a step and says what runs.
fn step(r: &mut Results, name: &str) {
    let la = machine::load_average();
    eprintln!(
        "== {name} (load average {:.2} {:.2} {:.2})",
        la[0], la[1], la[2]
    );
    r.loadavg.push((name.to_owned(), la));
}

/// Records a step's error: as its snapshot row if it has none yet, else as a note.
fn error_row(ctx: &Ctx<'_>, r: &mut Results, contender: &str, e: &anyhow::Error) {
    eprintln!("{contender}: {e:#}");
    let message = format!("{e:#}");
    if r.snapshot.iter().any(|s| s.contender == contender) {
        r.notes.push(format!("{contender}: error: {message}"));
    } else {
        let kind = if contender.starts_with("pgwarp") {
            Kind::Pgwarp
        } else {
            Kind::Peer
        };
        r.snapshot
            .push(ctx.snapshot_row(contender, kind, "", None, Status::Error(message)));
    }
}

/// Writes `results.json`, `results.md` and the plots.
pub fn save(r: &Results, out: &Path) -> Result<()> {
    std::fs::write(out.join("results.json"), serde_json::to_string_pretty(r)?)?;
    std::fs::write(out.join("results.md"), report::markdown(r))?;
    std::fs::write(out.join("snapshot.svg"), svg::snapshot_chart(r))?;
    std::fs::write(out.join("cdc.svg"), svg::cdc_chart(r))?;
    std::fs::write(out.join("lag.svg"), svg::lag_chart(r))?;
    Ok(())
}

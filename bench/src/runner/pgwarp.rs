//! pgwarp as a contender: the release binary, run as a child process so its CPU time and
//! peak memory are its own.
//!
//! * snapshot: `pgwarp sync --until-caught-up` on a fresh slot (setup, snapshot, catch-up);
//! * startup: the same command again with nothing to do (the fixed cost inside every drain);
//! * backlog drain: the load runs while pgwarp is stopped, then `pgwarp sync --until-caught-up`
//!   resumes from the slot; the drain ends when every placement shows the load's marker;
//! * lag: `pgwarp sync` left running with `--metrics-addr`, sampled while paced loads run, then
//!   stopped with SIGTERM (what Ctrl-C does).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::process::Command;

use super::child::{self, Running, Usage};
use super::data::SourceDb;
use super::workload::MarkerProbe;

/// Finds (and, under cargo, builds) the `pgwarp` release binary.
///
/// With `explicit`, that file. Under `cargo run` (`$CARGO` set), `cargo build --release -p
/// pgwarp --bin pgwarp` first (a no-op when up to date), so the benchmark never measures a
/// stale engine. Otherwise `pgwarp` next to this executable.
pub fn locate(explicit: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        if !p.is_file() {
            bail!("{} does not exist", p.display());
        }
        return Ok(p);
    }
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let dir = exe
        .parent()
        .context("this executable has no directory")?
        .to_path_buf();
    if let Some(cargo) = std::env::var_os("CARGO") {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("no workspace directory")?;
        eprintln!("building the pgwarp release binary (cargo build --release -p pgwarp)");
        let status = std::process::Command::new(cargo)
            .current_dir(workspace)
            .args(["build", "--release", "-p", "pgwarp", "--bin", "pgwarp"])
            .status()
            .context("could not run cargo")?;
        if !status.success() {
            bail!("cargo build --release -p pgwarp failed");
        }
    }
    let candidate = dir.join("pgwarp");
    if !candidate.is_file() {
        bail!(
            "{} not found: build it with `cargo build --release -p pgwarp` or pass --pgwarp PATH",
            candidate.display()
        );
    }
    Ok(candidate)
}

/// One pgwarp sync configuration (source, target, tables, slot).
pub struct Pgwarp {
    /// The binary.
    pub bin: PathBuf,
    /// Source connection string.
    pub source: String,
    /// Target (coordinator) connection string.
    pub target: String,
    /// Qualified table names.
    pub tables: Vec<String>,
    /// Slot and publication name.
    pub slot: String,
    /// Snapshot readers.
    pub parallel: u32,
    /// Log file (stdout and stderr of every run).
    pub log: PathBuf,
    /// Spill directory.
    pub spill: PathBuf,
}

impl Pgwarp {
    /// A configuration for `src` into `target`.
    pub fn new(bin: &Path, src: &SourceDb, target: &str, parallel: u32, work: &Path) -> Pgwarp {
        let slot = format!("bench_pgwarp_p{parallel}");
        Pgwarp {
            bin: bin.to_path_buf(),
            source: src.conn_string(),
            target: target.to_owned(),
            tables: src.tables(),
            log: work.join(format!("pgwarp-p{parallel}.log")),
            spill: work.join(format!("spill-p{parallel}")),
            slot,
            parallel,
        }
    }

    fn command(&self, until_caught_up: bool, metrics_port: Option<u16>) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("sync")
            .args(["--source", &self.source, "--target", &self.target])
            .arg("--tables")
            .arg(self.tables.join(","))
            .args(["--slot", &self.slot, "--publication", &self.slot])
            .arg("--parallel")
            .arg(self.parallel.to_string())
            .arg("--spill-dir")
            .arg(&self.spill)
            .args(["--progress", "never"])
            .env("PGWARP_LOG", "info")
            .env("NO_COLOR", "1");
        if until_caught_up {
            cmd.arg("--until-caught-up");
        }
        if let Some(port) = metrics_port {
            cmd.arg("--metrics-addr").arg(format!("127.0.0.1:{port}"));
        }
        cmd
    }

    /// Runs `sync --until-caught-up` to its end.
    pub async fn until_caught_up(&self) -> Result<Usage> {
        self.spawn(true, None)?
            .wait_ok()
            .await
            .with_context(|| format!("pgwarp sync failed; see {}", self.log.display()))
    }

    /// Starts `sync`.
    pub fn spawn(&self, until_caught_up: bool, metrics_port: Option<u16>) -> Result<Running> {
        child::spawn(
            "pgwarp sync",
            self.command(until_caught_up, metrics_port),
            Some(&self.log),
        )
    }

    /// A backlog drain: starts `sync --until-caught-up` and returns the seconds until every
    /// placement shows `marker`, with the process's usage.
    pub async fn drain(
        &self,
        probe: &MarkerProbe,
        marker: i64,
        timeout: Duration,
    ) -> Result<(f64, Usage)> {
        let open = probe.open().await?;
        let mut running = self.spawn(true, None)?;
        let seconds = wait_marker(&open, &mut running, marker, timeout)
            .await
            .with_context(|| format!("pgwarp sync; see {}", self.log.display()))?;
        let usage = running
            .wait_ok()
            .await
            .with_context(|| format!("pgwarp sync failed; see {}", self.log.display()))?;
        Ok((seconds, usage))
    }
}

/// Polls the marker every 20 ms while the child runs; the seconds since the child started
/// when every placement shows it.
pub async fn wait_marker(
    open: &super::workload::OpenProbe,
    running: &mut Running,
    marker: i64,
    timeout: Duration,
) -> Result<f64> {
    loop {
        if open.lowest().await? >= marker {
            return Ok(running.elapsed().as_secs_f64());
        }
        if running.has_exited() {
            if open.lowest().await? >= marker {
                return Ok(running.elapsed().as_secs_f64());
            }
            bail!("the consumer exited before applying marker {marker}");
        }
        if running.elapsed() > timeout {
            bail!("marker {marker} not applied within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A free TCP port on 127.0.0.1 (for the metrics endpoint).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}

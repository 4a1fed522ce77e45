//! `pgcopydb` (the Debian package) as a contender, into the plain target.
//!
//! * snapshot: `pgcopydb clone --table-jobs 2 --index-jobs 2` into an empty database (it copies
//!   the schema itself, loads the tables, then builds indexes and runs `VACUUM ANALYZE`);
//! * CDC: `pgcopydb stream setup` (slot with its logical decoding plugin, replication origin on
//!   the target, sentinel table on the source) and `stream sentinel set apply` once; then, per
//!   load, `pgcopydb follow --resume --endpos <LSN after the load>`, timed until the marker
//!   arrives. Older releases (0.10 in Debian 12) decode with `wal2json`, which must be
//!   installed on the source (`postgresql-15-wal2json`).
//!
//! When `pgcopydb` is not on the `PATH` the contender is reported as not available.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use pgwarp_decoder::Lsn;
use tokio::process::Command;

use super::child::{self, Usage};
use super::db::OwnedDb;
use super::pgwarp::wait_marker;
use super::workload::MarkerProbe;

/// `pgcopydb` on the `PATH`, with its version line.
pub fn find() -> Option<(PathBuf, String)> {
    let path = std::env::var_os("PATH")?;
    let bin = std::env::split_paths(&path)
        .map(|d| d.join("pgcopydb"))
        .find(|p| p.is_file())?;
    let out = std::process::Command::new(&bin)
        .arg("version")
        .output()
        .ok()?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let version = text
        .lines()
        .find(|l| l.starts_with("pgcopydb version"))
        .unwrap_or("pgcopydb (version unknown)")
        .trim()
        .to_owned();
    Some((bin, version))
}

/// Whether the source server has the `wal2json` plugin (needed by pgcopydb before 0.13).
pub fn has_wal2json(bin_dir: &Path) -> bool {
    let lib = std::process::Command::new(bin_dir.join("pg_config"))
        .arg("--pkglibdir")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    lib.is_some_and(|d| Path::new(&d).join("wal2json.so").is_file())
}

/// One pgcopydb setup: source clone, target database, work directory.
pub struct Pgcopydb {
    bin: PathBuf,
    source: String,
    target: String,
    work: PathBuf,
    log: PathBuf,
    /// Slot and replication origin name.
    pub name: String,
}

impl Pgcopydb {
    /// A configuration from `source` (URI) into `target`.
    pub fn new(bin: &Path, source: &OwnedDb, target: &OwnedDb, work: &Path) -> Pgcopydb {
        Pgcopydb {
            bin: bin.to_path_buf(),
            source: source.uri(),
            target: target.uri(),
            work: work.join("pgcopydb"),
            log: work.join("pgcopydb.log"),
            name: format!("bench_pgcopydb_{}", std::process::id()),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args).args(["--source", &self.source]);
        cmd
    }

    async fn run(&self, what: &str, cmd: Command) -> Result<Usage> {
        child::spawn(what, cmd, Some(&self.log))?
            .wait_ok()
            .await
            .with_context(|| format!("{what} failed; see {}", self.log.display()))
    }

    /// `pgcopydb clone`: the snapshot.
    pub async fn clone_db(&self) -> Result<Usage> {
        let dir = self.work.join("clone");
        let mut cmd = self.command(&["clone"]);
        cmd.args(["--target", &self.target])
            .arg("--dir")
            .arg(&dir)
            .args([
                "--table-jobs",
                "2",
                "--index-jobs",
                "2",
                "--no-owner",
                "--no-acl",
            ]);
        self.run("pgcopydb clone", cmd).await
    }

    /// `stream setup` and `stream sentinel set apply`.
    pub async fn setup_stream(&self) -> Result<()> {
        let mut cmd = self.command(&["stream", "setup"]);
        cmd.args(["--target", &self.target])
            .arg("--dir")
            .arg(self.work.join("cdc"))
            .args(["--slot-name", &self.name, "--origin", &self.name]);
        self.run("pgcopydb stream setup", cmd).await?;
        let cmd = self.command(&["stream", "sentinel", "set", "apply"]);
        self.run("pgcopydb stream sentinel set apply", cmd).await?;
        Ok(())
    }

    /// `pgcopydb follow --resume --endpos`: seconds until the marker arrives, and usage.
    pub async fn follow(
        &self,
        endpos: Lsn,
        probe: &MarkerProbe,
        marker: i64,
        timeout: Duration,
    ) -> Result<(f64, Usage)> {
        let open = probe.open().await?;
        let mut cmd = self.command(&["follow"]);
        cmd.args(["--target", &self.target])
            .arg("--dir")
            .arg(self.work.join("cdc"))
            .args(["--slot-name", &self.name, "--origin", &self.name])
            .args(["--resume", "--not-consistent"])
            .arg(format!("--endpos={endpos}"));
        let log_start = std::fs::metadata(&self.log).map_or(0, |m| m.len());
        let mut running = child::spawn("pgcopydb follow", cmd, Some(&self.log))?;
        let waited = wait_marker(&open, &mut running, marker, timeout).await;
        let seconds = match waited {
            Ok(s) => s,
            Err(e) => {
                let _ = running.wait_timeout(Duration::from_secs(10)).await;
                return Err(e.context(self.errors_since(log_start)));
            }
        };
        let usage = running
            .wait_ok()
            .await
            .with_context(|| format!("pgcopydb follow failed; see {}", self.log.display()))?;
        Ok((seconds, usage))
    }

    /// The first `ERROR` lines pgcopydb logged after byte `from` of its log.
    fn errors_since(&self, from: u64) -> String {
        let text = std::fs::read(&self.log).unwrap_or_default();
        let tail = String::from_utf8_lossy(text.get(from as usize..).unwrap_or_default());
        let errors: Vec<&str> = tail
            .lines()
            .filter(|l| l.contains(" ERROR ") && !l.contains("SQL params"))
            .filter_map(|l| l.split_once(" ERROR ").map(|(_, m)| m.trim()))
            .take(3)
            .collect();
        if errors.is_empty() {
            format!("see {}", self.log.display())
        } else {
            format!("pgcopydb: {}", errors.join(" | "))
        }
    }

    /// Drops the replication origin on the target server (origins are server-wide).
    pub fn cleanup(&self, target: &OwnedDb) {
        let _ = target.execute(&format!(
            "SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin \
              WHERE roname = '{}'",
            self.name
        ));
    }
}

//! The classic offline path: `pg_dump --data-only | psql` into the Citus coordinator.
//!
//! On a real Citus cluster the coordinator routes every `COPY` row to its shard. The
//! Citus-shaped fake has no Citus planner, so the rows land in the coordinator's shell tables:
//! its rate is still what pushing every row through one coordinator connection costs, and is
//! reported as "through coordinator (fake: shell tables)". Verification then reads the tables
//! on the coordinator (the shells on the fake, the distributed tables on a real Citus).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::data::SourceDb;

/// Runs `pg_dump --data-only -n <schema> <source> | psql <coordinator>`; returns seconds.
pub async fn dump_restore(bin_dir: &Path, src: &SourceDb, coordinator: &str) -> Result<f64> {
    let pg_dump = bin_dir.join("pg_dump");
    let psql = bin_dir.join("psql");
    let source = src.conn_string();
    let schema = src.schema.clone();
    let coordinator = coordinator.to_owned();
    tokio::task::spawn_blocking(move || -> Result<f64> {
        let started = Instant::now();
        let mut dump = Command::new(&pg_dump)
            .args(["--data-only", "--no-owner", "--no-privileges", "-n"])
            .arg(&schema)
            .args(["-d", &source])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("could not run {}", pg_dump.display()))?;
        let out = dump.stdout.take().context("no pg_dump stdout")?;
        let restore = Command::new(&psql)
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &coordinator])
            .stdin(Stdio::from(out))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("could not run {}", psql.display()))?;
        let restored = restore.wait_with_output()?;
        let dumped = dump.wait_with_output()?;
        let seconds = started.elapsed().as_secs_f64();
        if !dumped.status.success() {
            bail!(
                "pg_dump failed: {}",
                String::from_utf8_lossy(&dumped.stderr).trim()
            );
        }
        if !restored.status.success() {
            bail!(
                "psql failed: {}",
                String::from_utf8_lossy(&restored.stderr).trim()
            );
        }
        Ok(seconds)
    })
    .await
    .context("the pg_dump | psql thread failed")?
}

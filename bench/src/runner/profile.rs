//! `--perf DIR`: a system-wide `perf record` around each pgwarp phase, to see where the time
//! goes: in pgwarp, in the source's walsender, or in the nodes' backends.
//!
//! The profile covers every process (`-a`), sampled by the `cpu-clock` software event at
//! 499 Hz with call graphs (`-g`), which works in virtual machines without hardware
//! counters. Read one with `perf report -i DIR/<phase>.data --sort comm,dso`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::process::Command;

use super::child::{self, Running};

/// A running `perf record`.
pub struct Recording {
    running: Running,
}

/// Starts recording into `dir/<name>.data`.
pub async fn start(dir: &Path, name: &str) -> Result<Recording> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = Command::new("perf");
    cmd.args(["record", "-a", "-g", "-F", "499", "-o"])
        .arg(dir.join(format!("{name}.data")));
    let running = child::spawn("perf record", cmd, Some(&dir.join("perf.log")))
        .context("could not start perf (is it installed?)")?;
    // let it set up its buffers before the measured work starts
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(Recording { running })
}

impl Recording {
    /// Stops recording (`SIGINT`, which makes perf write its file) and waits.
    pub async fn stop(self) -> Result<()> {
        self.running.signal("INT")?;
        self.running.wait_timeout(Duration::from_secs(60)).await?;
        Ok(())
    }
}

//! Child processes under measurement: wall time, CPU seconds and peak memory.
//!
//! CPU time comes from this process's `cutime + cstime` (`/proc/self/stat`), which the kernel
//! raises by a child's whole user and system time when the child is reaped: the difference
//! around one child's life is that child's CPU, exact to the clock tick (10 ms), provided no
//! other child is reaped meanwhile (the runner runs measured children one at a time). Peak
//! resident memory is the child's `VmHWM` (`/proc/<pid>/status`), read every 50 ms while it
//! runs; the high-water mark only grows, so the last reading misses at most the last 50 ms.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use tokio::process::{Child, Command};

/// What a finished child cost.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Usage {
    /// Wall-clock seconds from spawn to exit.
    pub wall: f64,
    /// User + system CPU seconds.
    pub cpu: f64,
    /// Peak resident set, KiB.
    pub peak_rss_kib: u64,
}

/// A running child.
pub struct Running {
    child: Child,
    name: String,
    started: Instant,
    cpu_before: Duration,
    hwm: Arc<AtomicU64>,
    poller: tokio::task::JoinHandle<()>,
}

/// Spawns `cmd` with stdout and stderr appended to `log` (or discarded).
pub fn spawn(name: &str, mut cmd: Command, log: Option<&Path>) -> Result<Running> {
    match log {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("could not open {}", path.display()))?;
            let err = file.try_clone()?;
            cmd.stdout(Stdio::from(file)).stderr(Stdio::from(err));
        }
        None => {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
    }
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    let cpu_before = children_cpu()?;
    let started = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("could not start {name}"))?;
    let pid = child.id().unwrap_or(0);
    let hwm = Arc::new(AtomicU64::new(0));
    let seen = hwm.clone();
    let poller = tokio::spawn(async move {
        loop {
            match peak_rss_kib(pid) {
                Some(kib) => {
                    seen.fetch_max(kib, Ordering::Relaxed);
                }
                None => return,
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    Ok(Running {
        child,
        name: name.to_owned(),
        started,
        cpu_before,
        hwm,
        poller,
    })
}

impl Running {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Seconds since spawn.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Whether it has exited (without reaping it).
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Asks it to stop (`SIGTERM`, as a service manager would).
    pub fn terminate(&self) -> Result<()> {
        self.signal("TERM")
    }

    /// Sends a signal by name (`TERM`, `INT`) with `kill(1)`.
    pub fn signal(&self, name: &str) -> Result<()> {
        let pid = self.pid();
        if pid == 0 {
            return Ok(());
        }
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), pid.to_string()])
            .status()
            .context("could not run kill")?;
        if !status.success() {
            bail!("kill -{name} {pid} failed");
        }
        Ok(())
    }

    /// Waits for the exit; fails on a non-zero status.
    pub async fn wait_ok(self) -> Result<Usage> {
        let name = self.name.clone();
        let (status, usage) = self.wait().await?;
        if !status.success() {
            bail!("{name} exited with {status}");
        }
        Ok(usage)
    }

    /// Waits for the exit, up to `timeout`, then kills it.
    pub async fn wait_timeout(mut self, timeout: Duration) -> Result<(ExitStatus, Usage)> {
        if tokio::time::timeout(timeout, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
        }
        self.wait().await
    }

    /// Waits for the exit and returns the status and what it cost.
    pub async fn wait(mut self) -> Result<(ExitStatus, Usage)> {
        let status = self
            .child
            .wait()
            .await
            .with_context(|| format!("could not wait for {}", self.name))?;
        let wall = self.started.elapsed().as_secs_f64();
        self.poller.abort();
        let cpu = children_cpu()?.saturating_sub(self.cpu_before);
        Ok((
            status,
            Usage {
                wall,
                cpu: cpu.as_secs_f64(),
                peak_rss_kib: self.hwm.load(Ordering::Relaxed),
            },
        ))
    }
}

/// User + system CPU of this process's reaped children (`cutime + cstime`).
pub fn children_cpu() -> Result<Duration> {
    proc_cpu("/proc/self/stat", true)
}

/// User + system CPU of a process (`utime + stime`) from its stat file.
pub fn proc_cpu(stat_path: &str, children: bool) -> Result<Duration> {
    let stat = std::fs::read_to_string(stat_path)
        .with_context(|| format!("could not read {stat_path}"))?;
    // fields after the command name, which is in parentheses and may contain spaces
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed stat file")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // after ")": state is field 0; utime 11, stime 12, cutime 13, cstime 14
    let (a, b) = if children { (13, 14) } else { (11, 12) };
    let tick = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .context("short stat file")?
            .parse::<u64>()
            .context("bad stat field")
    };
    Ok(Duration::from_millis(
        (tick(a)? + tick(b)?) * 1000 / clock_ticks(),
    ))
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on every Linux this runs on).
fn clock_ticks() -> u64 {
    100
}

/// `VmHWM` of a live process, KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

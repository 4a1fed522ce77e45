//! What a running sync shows: progress bars on a terminal, periodic log lines otherwise.
//!
//! On a terminal (or with `--progress always`): one bar per table during the snapshot (bytes
//! read against the table's size, rows, rate, ETA), then one live line while streaming (lag in
//! bytes and seconds, rows per second). Without a terminal the same numbers go to the log every
//! ten seconds, so a sync under systemd or in CI leaves a readable trail. Both read the
//! pipeline's counters and never slow it down. Log lines go through [`LogWriter`], which lifts
//! the bars off the terminal for the moment a line is written, so the two never tear each other.

use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;

use crate::config::ProgressMode;
use crate::pipeline::stats::{LivePhase, Stats};

/// Where the bars are drawn: one canvas for the process, shared with [`LogWriter`].
fn canvas() -> &'static MultiProgress {
    static CANVAS: OnceLock<MultiProgress> = OnceLock::new();
    CANVAS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4)))
}

/// The log's writer: writes each log line to `inner` (stderr for the binary) while the progress
/// bars, if any are drawn, are cleared, and draws them again below it.
#[derive(Debug, Default)]
pub struct LogWriter<W = std::io::Stderr> {
    inner: W,
}

impl LogWriter {
    /// A writer to stderr.
    pub fn stderr() -> LogWriter {
        LogWriter {
            inner: std::io::stderr(),
        }
    }
}

impl<W: Write> Write for LogWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let inner = &mut self.inner;
        canvas().suspend(|| inner.write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The running display; stop it with [`Display::finish`].
pub struct Display {
    task: Option<JoinHandle<()>>,
}

impl Display {
    /// Starts showing `stats` as `mode` asks.
    pub fn start(mode: ProgressMode, stats: Arc<Stats>) -> Display {
        let bars = match mode {
            ProgressMode::Always => true,
            ProgressMode::Never => false,
            ProgressMode::Auto => std::io::stderr().is_terminal(),
        };
        let task = if bars {
            tokio::spawn(draw(stats))
        } else {
            tokio::spawn(log(stats))
        };
        Display { task: Some(task) }
    }

    /// Stops the display.
    pub fn finish(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

fn human(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}

/// A one-line summary of the stream: lag and rate.
pub fn stream_line(stats: &Stats, rows_per_sec: f64) -> String {
    let lag_bytes = (0..stats.nodes.len())
        .map(|i| stats.node_lag_bytes(i))
        .max()
        .unwrap_or(0);
    let lag_secs = (0..stats.nodes.len())
        .map(|i| stats.node_lag_seconds(i))
        .fold(0.0, f64::max);
    format!(
        "streaming: lag {} / {:.1}s, {:.0} rows/s, {} rows applied, flushed to {}",
        human(lag_bytes),
        lag_secs,
        rows_per_sec,
        stats.rows_applied(),
        stats.durable_lsn()
    )
}

async fn draw(stats: Arc<Stats>) {
    let multi = canvas();
    let style = ProgressStyle::with_template(
        "{prefix:>24} [{bar:30}] {bytes}/{total_bytes} {msg} ({bytes_per_sec}, eta {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    let mut table_bars: Vec<ProgressBar> = Vec::new();
    let mut stream_bar: Option<ProgressBar> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut last = (Instant::now(), stats.rows_applied());
    loop {
        tick.tick().await;
        match stats.phase() {
            LivePhase::Setup => {}
            LivePhase::Snapshot => {
                if table_bars.is_empty() {
                    for t in &stats.tables {
                        let bar = multi.add(ProgressBar::new(
                            t.bytes_expected.load(Ordering::Relaxed).max(1),
                        ));
                        bar.set_style(style.clone());
                        bar.set_prefix(t.name.clone());
                        table_bars.push(bar);
                    }
                }
                for (t, bar) in stats.tables.iter().zip(&table_bars) {
                    let bytes = t.bytes_copied.load(Ordering::Relaxed);
                    if bytes > bar.length().unwrap_or(0) {
                        bar.set_length(bytes);
                    }
                    bar.set_position(bytes);
                    bar.set_message(format!(
                        "{} rows, chunks {}/{}",
                        t.rows_copied.load(Ordering::Relaxed),
                        t.chunks_done.load(Ordering::Relaxed),
                        t.chunks_total.load(Ordering::Relaxed)
                    ));
                }
            }
            LivePhase::Streaming | LivePhase::Done => {
                for bar in table_bars.drain(..) {
                    bar.finish();
                }
                let bar = stream_bar.get_or_insert_with(|| {
                    let b = multi.add(ProgressBar::new_spinner());
                    b.enable_steady_tick(Duration::from_millis(250));
                    b
                });
                let now = (Instant::now(), stats.rows_applied());
                let secs = now.0.duration_since(last.0).as_secs_f64().max(0.001);
                let rate = now.1.saturating_sub(last.1) as f64 / secs;
                last = now;
                bar.set_message(stream_line(&stats, rate));
            }
        }
    }
}

async fn log(stats: Arc<Stats>) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    tick.tick().await;
    let mut last = (Instant::now(), stats.rows_applied());
    loop {
        tick.tick().await;
        let now = (Instant::now(), stats.rows_applied());
        let secs = now.0.duration_since(last.0).as_secs_f64().max(0.001);
        let rate = now.1.saturating_sub(last.1) as f64 / secs;
        last = now;
        match stats.phase() {
            LivePhase::Snapshot => {
                for t in &stats.tables {
                    tracing::info!(
                        table = %t.name,
                        rows = t.rows_copied.load(Ordering::Relaxed),
                        bytes = t.bytes_copied.load(Ordering::Relaxed),
                        chunks_done = t.chunks_done.load(Ordering::Relaxed),
                        chunks = t.chunks_total.load(Ordering::Relaxed),
                        "snapshot progress"
                    );
                }
            }
            LivePhase::Streaming => tracing::info!("{}", stream_line(&stats, rate)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_pass_through_whole() {
        let mut w = LogWriter { inner: Vec::new() };
        w.write_all(b"2026-11-21 INFO line one\n").unwrap();
        w.write_all(b"line two\n").unwrap();
        w.flush().unwrap();
        assert_eq!(w.inner, b"2026-11-21 INFO line one\nline two\n");
    }
}

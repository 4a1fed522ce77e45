//! Replication lag under a steady load, sampled every 100 ms.
//!
//! Each sample reads the source's `pg_current_wal_lsn()` and the consumer's applied position:
//! for pgwarp, `pgwarp_flush_lsn_bytes` from its metrics endpoint (the minimum over nodes of
//! what each committed, the position it confirms to the source); for a native subscription,
//! the `replay_lsn` its apply worker reports to the walsender (`pg_stat_replication`).
//!
//! * lag in bytes = source position − applied position;
//! * lag in seconds = time since the source passed the applied position: found in the sample
//!   history and interpolated linearly between the two samples around it (the changes written
//!   before that moment are all applied).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use super::db;

/// Where the applied position is read.
#[derive(Debug, Clone)]
pub enum Applied {
    /// pgwarp's metrics endpoint on this loopback port.
    Metrics(u16),
    /// `replay_lsn` of the walsender serving this `application_name`.
    ReplayLsn(String),
}

/// One sample.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Seconds since sampling started.
    pub t: f64,
    /// Source WAL position (bytes).
    pub source: u64,
    /// Applied position (bytes).
    pub applied: u64,
}

/// Lag statistics of one steady-load level.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LagStats {
    /// Median lag, seconds.
    pub p50_s: f64,
    /// 95th percentile, seconds.
    pub p95_s: f64,
    /// Maximum, seconds.
    pub max_s: f64,
    /// Median lag, bytes.
    pub p50_bytes: u64,
    /// 95th percentile, bytes.
    pub p95_bytes: u64,
    /// Maximum, bytes.
    pub max_bytes: u64,
    /// (t, lag seconds) per sample, for the plot.
    pub series: Vec<(f64, f64)>,
}

/// Reads `pgwarp_flush_lsn_bytes` from the metrics page.
async fn scrape_flush_lsn(port: u16) -> Result<u64> {
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await?;
    let mut body = String::new();
    conn.read_to_string(&mut body).await?;
    body.lines()
        .find_map(|l| l.strip_prefix("pgwarp_flush_lsn_bytes "))
        .context("no pgwarp_flush_lsn_bytes in the metrics")?
        .trim()
        .parse()
        .context("bad pgwarp_flush_lsn_bytes value")
}

fn parse_lsn(text: &str) -> Result<u64> {
    let lsn: pgwarp_decoder::Lsn = text
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid LSN \"{text}\""))?;
    Ok(lsn.0)
}

/// Samples until `stop` fires; returns the samples.
pub async fn sample(
    source_conn: String,
    applied: Applied,
    interval: Duration,
    mut stop: oneshot::Receiver<()>,
) -> Result<Vec<Sample>> {
    let client = db::connect(&source_conn).await?;
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {}
        }
        let (source, applied_pos) = match &applied {
            Applied::Metrics(port) => {
                let s = db::scalar_text(&client, "SELECT pg_current_wal_lsn()::text").await?;
                match scrape_flush_lsn(*port).await {
                    Ok(a) => (parse_lsn(&s)?, a),
                    Err(e) => {
                        failures += 1;
                        if failures > 50 {
                            return Err(e.context("the metrics endpoint stopped answering"));
                        }
                        continue;
                    }
                }
            }
            Applied::ReplayLsn(app) => {
                let rows = client
                    .simple_query(&format!(
                        "SELECT pg_current_wal_lsn()::text, \
                         (SELECT replay_lsn::text FROM pg_stat_replication \
                           WHERE application_name = '{app}' LIMIT 1)"
                    ))
                    .await?;
                let row = rows.into_iter().find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
                    _ => None,
                });
                let Some(row) = row else { bail!("no row") };
                let Some(applied) = row.get(1) else {
                    continue;
                };
                (parse_lsn(row.get(0).unwrap_or("0/0"))?, parse_lsn(applied)?)
            }
        };
        samples.push(Sample {
            t: started.elapsed().as_secs_f64(),
            source,
            applied: applied_pos,
        });
    }
    Ok(samples)
}

/// Lag in seconds for each sample (see the module documentation).
pub fn lag_seconds(samples: &[Sample]) -> Vec<f64> {
    samples
        .iter()
        .enumerate()
        .map(|(j, s)| {
            if s.applied >= s.source {
                return 0.0;
            }
            // the latest earlier sample whose source position the consumer has passed, then
            // the moment the source passed the applied position, interpolated linearly
            // between that sample and the next
            match samples[..=j].iter().rposition(|p| p.source <= s.applied) {
                Some(i) if i < j => {
                    let (a, b) = (samples[i], samples[i + 1]);
                    let passed = if b.source > a.source {
                        a.t + (s.applied - a.source) as f64 / (b.source - a.source) as f64
                            * (b.t - a.t)
                    } else {
                        a.t
                    };
                    s.t - passed
                }
                Some(i) => s.t - samples[i].t,
                None => s.t - samples.first().map_or(s.t, |f| f.t),
            }
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Statistics over the samples taken while the load ran (`t <= until`).
pub fn stats(samples: &[Sample], until: f64) -> LagStats {
    let secs = lag_seconds(samples);
    let mut in_load: Vec<f64> = Vec::new();
    let mut bytes: Vec<f64> = Vec::new();
    let mut series = Vec::new();
    for (s, l) in samples.iter().zip(&secs) {
        series.push((s.t, *l));
        if s.t <= until {
            in_load.push(*l);
            bytes.push(s.source.saturating_sub(s.applied) as f64);
        }
    }
    in_load.sort_by(f64::total_cmp);
    bytes.sort_by(f64::total_cmp);
    LagStats {
        p50_s: percentile(&in_load, 0.5),
        p95_s: percentile(&in_load, 0.95),
        max_s: in_load.last().copied().unwrap_or(0.0),
        p50_bytes: percentile(&bytes, 0.5) as u64,
        p95_bytes: percentile(&bytes, 0.95) as u64,
        max_bytes: bytes.last().copied().unwrap_or(0.0) as u64,
        series,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: f64, source: u64, applied: u64) -> Sample {
        Sample { t, source, applied }
    }

    #[test]
    fn lag_is_time_since_the_source_passed_the_applied_position() {
        let samples = [
            s(0.0, 100, 100),
            s(0.1, 200, 100),
            s(0.2, 300, 150),
            s(0.3, 400, 300),
            s(0.4, 400, 400),
        ];
        let lag = lag_seconds(&samples);
        assert_eq!(lag[0], 0.0);
        assert!((lag[1] - 0.1).abs() < 1e-9); // applied 100 = source at t=0
        assert!((lag[2] - 0.15).abs() < 1e-9); // the source passed 150 at t=0.05
        assert!((lag[3] - 0.1).abs() < 1e-9); // 300 = source at t=0.2
        assert_eq!(lag[4], 0.0);
    }

    #[test]
    fn stats_cover_the_load_only() {
        let samples = [s(0.0, 100, 100), s(0.1, 200, 100), s(0.2, 300, 300)];
        let st = stats(&samples, 0.15);
        assert!((st.max_s - 0.1).abs() < 1e-9);
        assert_eq!(st.max_bytes, 100);
        assert_eq!(st.series.len(), 3);
    }
}

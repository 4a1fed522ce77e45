//! The CDC measurements every consumer goes through: backlog drains and lag under steady load.
//!
//! Backlog drain, per load: the consumer is stopped; the load runs on the source (and, when
//! asked, a fresh slot is created just before it, so `pg_recvlogical` drains exactly the same
//! WAL: that is L-slot); then the consumer starts and the clock runs until every placement of
//! the target shows the load's marker.
//!
//! Lag: the consumer runs; for each level a paced load runs for a fixed time while
//! [`super::lag::sample`] records both positions every 100 ms; after the load, the time until
//! its marker is applied is the catch-up time.

use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::sync::oneshot;

use super::child::Usage;
use super::lag::{self, Applied};
use super::limits;
use super::results::{CdcRow, Kind, LagRow, LoadRow, Status, names};
use super::workload::{LoadRun, LoadSpec, Loader, MarkerProbe};

/// A CDC consumer that can be stopped and started around a load.
pub trait Consumer {
    /// Name in the results.
    fn name(&self) -> String;
    /// Limit, pgwarp or peer.
    fn kind(&self) -> Kind;
    /// Starts consuming after `load` and returns the seconds until its marker is applied on
    /// every placement, and the consumer's usage when it is a process of its own. Leaves the
    /// consumer stopped.
    async fn drain(&mut self, spec: &LoadSpec, load: &LoadRun) -> Result<Drained>;
}

/// One drain as a consumer reports it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Drained {
    /// Seconds from start until the marker was applied everywhere.
    pub seconds: f64,
    /// The consumer's process usage, when it is a process of its own.
    pub usage: Option<Usage>,
    /// Transactions the consumer committed on the target nodes, when known.
    pub node_txns: Option<i64>,
}

/// L-slot alongside a consumer: the source database and the publication to decode with.
pub struct LslotAlongside<'a> {
    /// `pg_recvlogical` and friends.
    pub bin_dir: &'a std::path::Path,
    /// Connection string of the source clone.
    pub conn_string: String,
    /// Publication the consumer uses.
    pub publication: String,
    /// `server_version_num` of the source.
    pub server_version: u32,
}

/// What the backlog drains produced.
pub struct Drains {
    /// One row per load (and per L-slot drain).
    pub rows: Vec<CdcRow>,
    /// The loads as the source ran them.
    pub loads: Vec<LoadRow>,
    /// The consumer failed a drain (its row says why; later loads did not run).
    pub failed: bool,
}

/// Runs every load with the consumer stopped, then drains it.
pub async fn backlog<C: Consumer>(
    consumer: &mut C,
    loader: &mut Loader,
    loads: &[LoadSpec],
    lslot: Option<&LslotAlongside<'_>>,
) -> Result<Drains> {
    let mut out = Drains {
        rows: Vec::new(),
        loads: Vec::new(),
        failed: false,
    };
    for (i, spec) in loads.iter().enumerate() {
        let slot = format!("bench_lslot_{}_{i}", std::process::id());
        let admin = match lslot {
            Some(l) => {
                let c = super::db::connect(&l.conn_string).await?;
                limits::create_slot(&c, &slot).await?;
                Some(c)
            }
            None => None,
        };
        let run = loader.run(spec).await?;
        out.loads.push(LoadRow {
            load: spec.name.clone(),
            rows: run.rows,
            transactions: spec.transactions(),
            seconds: run.seconds,
            wal_bytes: run.wal_bytes,
        });
        if let (Some(l), Some(admin)) = (lslot, &admin) {
            let options = limits::pgoutput_options(l.server_version, &l.publication);
            let usage =
                limits::lslot_drain(l.bin_dir, &l.conn_string, &slot, &options, run.end_lsn).await;
            limits::drop_slot(admin, &slot).await?;
            let usage = usage?;
            out.rows.push(CdcRow {
                contender: names::LSLOT.into(),
                kind: Kind::Limit,
                load: spec.name.clone(),
                seconds: Some(usage.wall),
                rows: run.rows,
                wal_bytes: run.wal_bytes,
                cpu_s: Some(usage.cpu),
                peak_rss_kib: Some(usage.peak_rss_kib),
                node_txns: None,
                status: Status::NotApplicable,
            });
        }
        let drained = match consumer.drain(spec, &run).await {
            Ok(done) => done,
            Err(e) => {
                // a consumer that cannot apply a load is a result, not a crash of the run
                out.rows.push(CdcRow {
                    contender: consumer.name(),
                    kind: consumer.kind(),
                    load: spec.name.clone(),
                    seconds: None,
                    rows: run.rows,
                    wal_bytes: run.wal_bytes,
                    cpu_s: None,
                    peak_rss_kib: None,
                    node_txns: None,
                    status: Status::Failed(format!("{e:#}")),
                });
                out.failed = true;
                break;
            }
        };
        out.rows.push(CdcRow {
            contender: consumer.name(),
            kind: consumer.kind(),
            load: spec.name.clone(),
            seconds: Some(drained.seconds),
            rows: run.rows,
            wal_bytes: run.wal_bytes,
            cpu_s: drained.usage.map(|u| u.cpu),
            peak_rss_kib: drained.usage.map(|u| u.peak_rss_kib),
            node_txns: drained.node_txns,
            status: Status::Verified,
        });
    }
    Ok(out)
}

/// One steady-load level.
#[derive(Debug, Clone)]
pub struct Level {
    /// Name (`25% native`).
    pub name: String,
    /// Row changes per second.
    pub rate: f64,
}

/// Runs the levels against a running consumer.
#[allow(clippy::too_many_arguments)]
pub async fn steady(
    contender: &str,
    loader: &mut Loader,
    source_conn: &str,
    applied: &Applied,
    probe: &MarkerProbe,
    levels: &[Level],
    seconds: f64,
    timeout: Duration,
) -> Result<Vec<LagRow>> {
    let open = probe.open().await?;
    // the consumer is running and has caught up before the first level
    let (marker, _) = loader.marker().await?;
    open.wait_for(marker, timeout).await?;
    let mut rows = Vec::new();
    for level in levels {
        let (stop, stopped) = oneshot::channel();
        let sampler = tokio::spawn(lag::sample(
            source_conn.to_owned(),
            applied.clone(),
            Duration::from_millis(100),
            stopped,
        ));
        let started = Instant::now();
        let run = loader.paced(level.rate, seconds).await?;
        let load_end = started.elapsed();
        open.wait_for(run.marker, timeout).await?;
        let catch_up = started.elapsed().saturating_sub(load_end);
        // a few samples after catching up, for the plot
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = stop.send(());
        let samples = sampler.await??;
        rows.push(LagRow {
            contender: contender.to_owned(),
            level: level.name.clone(),
            target_rate: level.rate,
            achieved_rate: run.rows as f64 / run.seconds.max(1e-9),
            stats: lag::stats(&samples, load_end.as_secs_f64()),
            catch_up_s: catch_up.as_secs_f64(),
            status: Status::Verified,
        });
    }
    Ok(rows)
}

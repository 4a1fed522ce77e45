//! pgwarp: snapshot with 1 and 2 readers; with 2, backlog drains (L-slot alongside, on the same
//! WAL) and lag under steady load.

use std::time::Duration;

use anyhow::{Context, Result};

use super::super::cdc::{self, Consumer, Drained, LslotAlongside};
use super::super::data::SourceDb;
use super::super::db;
use super::super::lag::Applied;
use super::super::pgwarp::{self, Pgwarp};
use super::super::profile;
use super::super::results::{Kind, Results, names};
use super::super::verify;
use super::super::workload::{LoadRun, LoadSpec, Loader, MarkerProbe};
use super::super::{Contender, Ctx};
use super::{fixture, keep_loads, lag_result, levels, mark, settle, status_of};

/// pgwarp, resumed per load with `sync --until-caught-up`.
struct PgwarpConsumer<'a> {
    pg: &'a Pgwarp,
    probe: MarkerProbe,
    timeout: Duration,
    perf: Option<&'a std::path::Path>,
    /// Connection strings of the fixture's nodes.
    nodes: Vec<String>,
}

/// Rows ever inserted or updated in `pgwarp.progress` on the nodes: one per node transaction
/// pgwarp committed (read after its process exited, so its backends have reported them).
async fn progress_writes(nodes: &[String]) -> Result<i64> {
    let mut total = 0;
    for conn in nodes {
        let c = db::connect(conn).await?;
        total += db::scalar_i64(
            &c,
            "SELECT coalesce(sum(n_tup_ins + n_tup_upd), 0)::bigint FROM pg_stat_user_tables \
              WHERE schemaname = 'pgwarp' AND relname = 'progress'",
        )
        .await?;
    }
    Ok(total)
}

impl Consumer for PgwarpConsumer<'_> {
    fn name(&self) -> String {
        names::pgwarp(self.pg.parallel)
    }
    fn kind(&self) -> Kind {
        Kind::Pgwarp
    }
    async fn drain(&mut self, spec: &LoadSpec, load: &LoadRun) -> Result<Drained> {
        let before = progress_writes(&self.nodes).await?;
        let perf = match self.perf {
            Some(dir) => Some(profile::start(dir, &format!("drain-{}", spec.name)).await?),
            None => None,
        };
        let drained = self.pg.drain(&self.probe, load.marker, self.timeout).await;
        if let Some(p) = perf {
            p.stop().await?;
        }
        let (seconds, usage) = drained?;
        // the backends report their counts as they exit, just after pgwarp
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = progress_writes(&self.nodes).await?;
        Ok(Drained {
            seconds,
            usage: Some(usage),
            node_txns: Some(after - before),
        })
    }
}

/// pgwarp into the Citus shards: snapshot; with `full`, also backlog drains (with L-slot on
/// the same WAL) and lag.
pub async fn pgwarp(
    ctx: &Ctx<'_>,
    r: &mut Results,
    parallel: u32,
    full: bool,
    native_capacity: Option<f64>,
) -> Result<()> {
    let bin = ctx.pgwarp.as_ref().context("no pgwarp binary")?;
    let f = fixture(ctx)?;
    let src = SourceDb::clone_template(&ctx.lab.source, "bench_pgwarp_src", f.schema())?;
    let pg = Pgwarp::new(bin, &src, f.coordinator_conn_string(), parallel, &ctx.work);
    std::fs::create_dir_all(&pg.spill)?;
    let contender = names::pgwarp(parallel);
    let perf = match &ctx.cfg.perf {
        Some(dir) => Some(profile::start(dir, &format!("snapshot-p{parallel}")).await?),
        None => None,
    };
    let usage = pg.until_caught_up().await;
    if let Some(p) = perf {
        p.stop().await?;
    }
    let usage = usage?;
    let v = verify::verify_fixture(&src.conn_string(), &src.schema, &f).await?;
    let mut row = ctx.snapshot_row(
        &contender,
        Kind::Pgwarp,
        "source → Citus worker shards (binary COPY, routed)",
        Some(usage.wall),
        status_of(&v),
    );
    row.cpu_s = Some(usage.cpu);
    row.peak_rss_kib = Some(usage.peak_rss_kib);
    row.streams = Some(parallel as usize);
    r.snapshot.push(row);
    if !full {
        return Ok(());
    }
    let idle = pg.until_caught_up().await?;
    r.notes.push(format!(
        "{contender}: `sync --until-caught-up` with nothing to apply takes {:.2}s \
         (connect, preflight check, resume): a fixed cost inside every drain below",
        idle.wall
    ));
    let probe = MarkerProbe::fixture(&f)?;
    let mut loader = Loader::connect(&src).await?;
    let lslot = ctx.cfg.runs(Contender::LSlot).then(|| LslotAlongside {
        bin_dir: ctx.lab.source.bin_dir(),
        conn_string: src.conn_string(),
        publication: pg.slot.clone(),
        server_version: ctx.server_version,
    });
    let mut consumer = PgwarpConsumer {
        pg: &pg,
        probe: probe.clone(),
        timeout: ctx.timeout,
        perf: ctx.cfg.perf.as_deref(),
        nodes: f.nodes().iter().map(|n| n.conn_string.clone()).collect(),
    };
    let m = mark(r);
    let drains = cdc::backlog(&mut consumer, &mut loader, &ctx.loads, lslot.as_ref()).await?;
    keep_loads(r, drains.loads.clone());
    r.cdc.extend(drains.rows.iter().cloned());
    let rate_of = |who: &str| {
        drains
            .rows
            .iter()
            .find(|d| d.contender == who && d.load == "mixed-100")
            .and_then(|d| Some(d.rows as f64 / d.seconds?))
    };
    let lslot_rate = rate_of(names::LSLOT);
    let base = match (native_capacity, lslot_rate) {
        (Some(c), _) => Some((c, "native")),
        (None, Some(l)) => {
            r.notes.push(
                "lag levels: no native capacity measured; 80% of L-slot stands in for it".into(),
            );
            Some((l * 0.8, "native (est. 80% L-slot)"))
        }
        (None, None) => rate_of(&contender).map(|p| (p, "pgwarp")),
    };
    let port = pgwarp::free_port()?;
    let mut running = pg.spawn(false, Some(port))?;
    let lag = cdc::steady(
        &contender,
        &mut loader,
        &ctx.lab.source.conn_string("postgres"),
        &Applied::Metrics(port),
        &probe,
        &levels(base, lslot_rate),
        ctx.cfg.lag_seconds,
        ctx.timeout,
    )
    .await;
    let exited_early = running.has_exited();
    running.terminate()?;
    let (exit, usage) = running.wait_timeout(Duration::from_secs(120)).await?;
    let lag = match lag {
        Err(e) if exited_early => Err(e.context(format!(
            "pgwarp sync exited during the lag measurement ({exit}); see {}",
            pg.log.display()
        ))),
        other => other,
    };
    let applied: f64 = lag.as_ref().map_or(0.0, |l| {
        l.iter()
            .map(|l| l.achieved_rate * ctx.cfg.lag_seconds)
            .sum()
    });
    lag_result(r, &contender, lag);
    r.notes.push(format!(
        "{contender} streaming under steady load: {:.2} CPU s over {:.1}s wall for about {:.0} \
         row changes ({:.2} CPU s per million), peak RSS {:.0} MiB; stopped with SIGTERM ({exit})",
        usage.cpu,
        usage.wall,
        applied,
        usage.cpu / (applied / 1e6).max(1e-9),
        usage.peak_rss_kib as f64 / 1024.0
    ));
    let v = verify::verify_fixture(&src.conn_string(), &src.schema, &f).await?;
    settle(r, m, &status_of(&v));
    Ok(())
}

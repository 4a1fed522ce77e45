//! The contenders writing into the plain PostgreSQL target: native logical replication and
//! pgcopydb.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::super::Ctx;
use super::super::cdc::{self, Consumer, Drained};
use super::super::data::{SourceDb, TEMPLATE_SCHEMA};
use super::super::db::OwnedDb;
use super::super::lag::Applied;
use super::super::native::Subscription;
use super::super::pgcopydb::{self, Pgcopydb};
use super::super::results::{Kind, Results, Status, names};
use super::super::verify;
use super::super::workload::{LoadRun, LoadSpec, Loader, MarkerProbe};
use super::{keep_loads, lag_result, levels, mark, plain_target, settle, status_of};

/// A native subscription, stopped between drains with `DISABLE`.
struct NativeConsumer {
    sub: Subscription,
    probe: MarkerProbe,
    timeout: Duration,
}

impl Consumer for NativeConsumer {
    fn name(&self) -> String {
        names::NATIVE.into()
    }
    fn kind(&self) -> Kind {
        Kind::Peer
    }
    async fn drain(&mut self, _: &LoadSpec, load: &LoadRun) -> Result<Drained> {
        let open = self.probe.open().await?;
        self.sub.enable().await?;
        self.sub.wait_for_worker(self.timeout).await?;
        let started = Instant::now();
        open.wait_for(load.marker, self.timeout).await?;
        let seconds = started.elapsed().as_secs_f64();
        self.sub.disable().await?;
        Ok(Drained {
            seconds,
            ..Default::default()
        })
    }
}

/// Native logical replication into the plain target. Returns its capacity on the mixed
/// load with 100 statements per transaction (rows/s), the base of the lag levels.
pub async fn native_plain(ctx: &Ctx<'_>, r: &mut Results) -> Result<Option<f64>> {
    let src = SourceDb::clone_template(&ctx.lab.source, "bench_native_src", TEMPLATE_SCHEMA)?;
    let tgt = plain_target(ctx, "bench_native")?;
    let name = "bench_native";
    let (sub, seconds) = Subscription::create(&src, &tgt.conn_string(), name, ctx.timeout).await?;
    let v = verify::verify_plain(
        &src.conn_string(),
        TEMPLATE_SCHEMA,
        &tgt.conn_string(),
        TEMPLATE_SCHEMA,
    )
    .await?;
    let mut row = ctx.snapshot_row(
        names::NATIVE,
        Kind::Peer,
        "source → plain PostgreSQL (initial table sync, 2 workers)",
        Some(seconds),
        status_of(&v),
    );
    row.streams = Some(2);
    r.snapshot.push(row);
    sub.disable().await?;
    let probe = MarkerProbe::plain(&tgt.conn_string(), TEMPLATE_SCHEMA);
    let mut loader = Loader::connect(&src).await?;
    let mut consumer = NativeConsumer {
        sub,
        probe: probe.clone(),
        timeout: ctx.timeout,
    };
    let m = mark(r);
    let drains = cdc::backlog(&mut consumer, &mut loader, &ctx.loads, None).await?;
    keep_loads(r, drains.loads);
    let capacity = drains
        .rows
        .iter()
        .find(|d| d.load == "mixed-100")
        .and_then(|d| Some(d.rows as f64 / d.seconds?));
    r.cdc.extend(drains.rows);
    let sub = consumer.sub;
    sub.enable().await?;
    let lag = cdc::steady(
        names::NATIVE,
        &mut loader,
        &ctx.lab.source.conn_string("postgres"),
        &Applied::ReplayLsn(name.into()),
        &probe,
        &levels(capacity.map(|c| (c, "native")), None),
        ctx.cfg.lag_seconds,
        ctx.timeout,
    )
    .await;
    let v = verify::verify_plain(
        &src.conn_string(),
        TEMPLATE_SCHEMA,
        &tgt.conn_string(),
        TEMPLATE_SCHEMA,
    )
    .await?;
    lag_result(r, names::NATIVE, lag);
    settle(r, m, &status_of(&v));
    sub.drop_all().await?;
    Ok(capacity)
}

/// pgcopydb, resumed per load with `follow --endpos`.
struct PgcopydbConsumer<'a> {
    p: &'a Pgcopydb,
    probe: MarkerProbe,
    timeout: Duration,
}

impl Consumer for PgcopydbConsumer<'_> {
    fn name(&self) -> String {
        names::PGCOPYDB.into()
    }
    fn kind(&self) -> Kind {
        Kind::Peer
    }
    async fn drain(&mut self, _: &LoadSpec, load: &LoadRun) -> Result<Drained> {
        let (seconds, usage) = self
            .p
            .follow(load.end_lsn, &self.probe, load.marker, self.timeout)
            .await?;
        Ok(Drained {
            seconds,
            usage: Some(usage),
            node_txns: None,
        })
    }
}

/// pgcopydb into the plain target: clone, then backlog drains.
pub async fn pgcopydb(ctx: &Ctx<'_>, r: &mut Results) -> Result<()> {
    let Some((bin, version)) = pgcopydb::find() else {
        r.snapshot.push(ctx.snapshot_row(
            names::PGCOPYDB,
            Kind::Peer,
            "",
            None,
            Status::NotAvailable("pgcopydb is not installed (apt-get install pgcopydb)".into()),
        ));
        return Ok(());
    };
    r.notes
        .push(format!("pgcopydb: {version} ({})", bin.display()));
    let src = SourceDb::clone_template(&ctx.lab.source, "bench_pgcopydb_src", TEMPLATE_SCHEMA)?;
    let tgt = OwnedDb::create(ctx.lab.target.endpoint(), "bench_pgcopydb")?;
    let p = Pgcopydb::new(&bin, &src.db, &tgt, &ctx.work);
    let result = pgcopydb_phases(ctx, r, &src, &tgt, &p).await;
    p.cleanup(&tgt);
    result
}

async fn pgcopydb_phases(
    ctx: &Ctx<'_>,
    r: &mut Results,
    src: &SourceDb,
    tgt: &OwnedDb,
    p: &Pgcopydb,
) -> Result<()> {
    let usage = p.clone_db().await?;
    let v = verify::verify_plain(
        &src.conn_string(),
        TEMPLATE_SCHEMA,
        &tgt.conn_string(),
        TEMPLATE_SCHEMA,
    )
    .await?;
    let mut row = ctx.snapshot_row(
        names::PGCOPYDB,
        Kind::Peer,
        "source → plain PostgreSQL (schema, COPY, indexes, VACUUM ANALYZE)",
        Some(usage.wall),
        status_of(&v),
    );
    row.cpu_s = Some(usage.cpu);
    row.peak_rss_kib = Some(usage.peak_rss_kib);
    row.streams = Some(2);
    r.snapshot.push(row);
    if !pgcopydb::has_wal2json(ctx.lab.source.bin_dir()) {
        r.notes.push(
            "pgcopydb CDC skipped: its decoding plugin wal2json is not installed on the source \
             (apt-get install postgresql-15-wal2json)"
                .into(),
        );
        return Ok(());
    }
    p.setup_stream().await?;
    let mut loader = Loader::connect(src).await?;
    let mut consumer = PgcopydbConsumer {
        p,
        probe: MarkerProbe::plain(&tgt.conn_string(), TEMPLATE_SCHEMA),
        timeout: ctx.peer_drain_timeout,
    };
    let m = mark(r);
    let drains = cdc::backlog(&mut consumer, &mut loader, &ctx.loads, None).await?;
    keep_loads(r, drains.loads);
    r.cdc.extend(drains.rows);
    let v = verify::verify_plain(
        &src.conn_string(),
        TEMPLATE_SCHEMA,
        &tgt.conn_string(),
        TEMPLATE_SCHEMA,
    )
    .await?;
    settle(r, m, &status_of(&v));
    Ok(())
}

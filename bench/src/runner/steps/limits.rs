//! The limits: source read, L-copy, and L-slot when pgwarp's drains do not run.

use anyhow::Result;

use super::super::data::{SourceDb, TEMPLATE_SCHEMA};
use super::super::lcopy;
use super::super::limits;
use super::super::results::{CdcRow, Kind, LoadRow, Results, Status, names};
use super::super::verify;
use super::super::workload::Loader;
use super::super::{Contender, Ctx};
use super::{fixture, status_of};

/// Source read (1 and 2 streams) and L-copy (1, 2, 4 streams). The 1-stream source read
/// always runs: its byte count is the data size every snapshot's MB/s is computed from.
pub async fn limits(ctx: &mut Ctx<'_>, r: &mut Results) -> Result<()> {
    let src = SourceDb::clone_template(&ctx.lab.source, "bench_read", TEMPLATE_SCHEMA)?;
    let read1 = limits::source_read(&src, 1).await?;
    ctx.source_bytes = read1.bytes;
    r.source_bytes = read1.bytes;
    if ctx.cfg.runs(Contender::SourceRead) {
        let read2 = limits::source_read(&src, 2).await?;
        for read in [read1, read2] {
            r.snapshot.push(ctx.snapshot_row(
                &names::source_read(read.streams),
                Kind::Limit,
                "source → /dev/null (COPY TO, binary)",
                Some(read.seconds),
                Status::NotApplicable,
            ));
        }
    }
    drop(src);
    if !ctx.cfg.runs(Contender::LCopy) {
        return Ok(());
    }
    let f = fixture(ctx)?;
    let src = SourceDb::clone_template(&ctx.lab.source, "bench_lcopy", f.schema())?;
    let export = lcopy::export(&src, &f, &ctx.work.join("lcopy")).await?;
    r.notes.push(format!(
        "L-copy: {} per-placement binary COPY files exported and split in {:.1}s (not timed)",
        export.jobs.len(),
        export.seconds
    ));
    let mut runs = Vec::new();
    for streams in [1, 2, 4] {
        runs.push(lcopy::run(&f, &export, streams).await?);
    }
    let v = verify::verify_fixture(&src.conn_string(), &src.schema, &f).await?;
    for run in runs {
        let mut row = ctx.snapshot_row(
            &names::lcopy(run.streams),
            Kind::Limit,
            "pre-split files → Citus shards (binary COPY)",
            Some(run.seconds),
            status_of(&v),
        );
        row.streams = Some(run.streams);
        r.snapshot.push(row);
    }
    Ok(())
}

/// L-slot on its own (when pgwarp's CDC run is not selected): a publication of every table,
/// and each load drained by `pg_recvlogical`.
pub async fn lslot_alone(ctx: &Ctx<'_>, r: &mut Results) -> Result<()> {
    let src = SourceDb::clone_template(&ctx.lab.source, "bench_lslot_src", TEMPLATE_SCHEMA)?;
    let publication = "bench_lslot";
    src.db.execute(&format!(
        "CREATE PUBLICATION {publication} FOR TABLE {}",
        src.tables().join(", ")
    ))?;
    let mut loader = Loader::connect(&src).await?;
    let admin = src.db.connect().await?;
    let options = limits::pgoutput_options(ctx.server_version, publication);
    for (i, spec) in ctx.loads.iter().enumerate() {
        let slot = format!("bench_lslot_alone_{i}");
        limits::create_slot(&admin, &slot).await?;
        let run = loader.run(spec).await?;
        if r.loads.len() <= i {
            r.loads.push(LoadRow {
                load: spec.name.clone(),
                rows: run.rows,
                transactions: spec.transactions(),
                seconds: run.seconds,
                wal_bytes: run.wal_bytes,
            });
        }
        let usage = limits::lslot_drain(
            ctx.lab.source.bin_dir(),
            &src.conn_string(),
            &slot,
            &options,
            run.end_lsn,
        )
        .await;
        limits::drop_slot(&admin, &slot).await?;
        let usage = usage?;
        r.cdc.push(CdcRow {
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
    Ok(())
}

//! The contenders writing through the Citus coordinator: `pg_dump | psql`, and native
//! logical replication into the coordinator (the documented failure).

use anyhow::Result;

use super::super::Ctx;
use super::super::data::{SourceDb, TABLES};
use super::super::native::{self, Subscription};
use super::super::pgdump;
use super::super::results::{Kind, Results, Status, names};
use super::super::verify;
use super::{fixture, status_of};

/// `pg_dump --data-only | psql` into the coordinator.
pub async fn pg_dump(ctx: &Ctx<'_>, r: &mut Results) -> Result<()> {
    let f = fixture(ctx)?;
    let src = SourceDb::clone_template(&ctx.lab.source, "bench_dump_src", f.schema())?;
    let seconds =
        pgdump::dump_restore(ctx.lab.source.bin_dir(), &src, f.coordinator_conn_string()).await?;
    let v = verify::verify_plain(
        &src.conn_string(),
        &src.schema,
        f.coordinator_conn_string(),
        f.schema(),
    )
    .await?;
    let (path, status) = if f.is_real() {
        ("source → coordinator → shards (COPY text)", status_of(&v))
    } else if v.ok {
        (
            "through coordinator (fake: shell tables)",
            Status::Caveat("rows in the fake coordinator's shell tables".into()),
        )
    } else {
        ("through coordinator (fake: shell tables)", status_of(&v))
    };
    let mut row = ctx.snapshot_row(names::PGDUMP, Kind::Peer, path, Some(seconds), status);
    row.streams = Some(1);
    r.snapshot.push(row);
    Ok(())
}

/// `CREATE SUBSCRIPTION` on the coordinator: rows replicated vs rows visible.
pub async fn native_coordinator(ctx: &Ctx<'_>, r: &mut Results) -> Result<()> {
    let f = fixture(ctx)?;
    let src = SourceDb::clone_template(&ctx.lab.source, "bench_coord_src", f.schema())?;
    let name = "bench_native_coord";
    let (sub, seconds) =
        Subscription::create(&src, f.coordinator_conn_string(), name, ctx.timeout).await?;
    let replicated =
        native::shell_rows(f.coordinator_conn_string(), f.schema(), f.is_real()).await?;
    let mut visible = 0;
    for t in TABLES {
        visible += tokio::task::block_in_place(|| f.count(t.name))?;
    }
    sub.drop_all().await?;
    let status = if visible == ctx.source_rows {
        Status::Verified
    } else {
        Status::Failed(format!(
            "{replicated} of {} rows replicated into the coordinator's shell tables, \
             {visible} visible through Citus",
            ctx.source_rows
        ))
    };
    r.snapshot.push(ctx.snapshot_row(
        names::NATIVE_COORD,
        Kind::Peer,
        "source → coordinator (shell tables)",
        Some(seconds),
        status,
    ));
    Ok(())
}

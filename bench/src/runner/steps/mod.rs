//! One function per contender: prepare its source clone and target, run its phases, verify,
//! and add its rows to the results. This file holds what they share.
//!
//! * [`limits`]: source read, L-copy, and L-slot on its own;
//! * [`plain`]: the contenders writing into the plain target (native subscription, pgcopydb);
//! * [`coordinator`]: the contenders writing through the coordinator (pg_dump | psql, native
//!   subscription into the coordinator);
//! * [`pgwarp`]: pgwarp itself.

mod coordinator;
mod limits;
mod pgwarp;
mod plain;

use anyhow::{Context, Result};
use pgwarp_tests::cluster::CitusFixture;

use super::Ctx;
use super::cdc::Level;
use super::data::{self, TEMPLATE_SCHEMA};
use super::db::OwnedDb;
use super::results::{Kind, LagRow, LoadRow, Results, Status};
use super::verify::Verdict;

pub use coordinator::{native_coordinator, pg_dump};
pub use limits::{limits, lslot_alone};
pub use pgwarp::pgwarp;
pub use plain::{native_plain, pgcopydb};

/// The status a verdict gives a measurement.
fn status_of(v: &Verdict) -> Status {
    if v.ok {
        Status::Verified
    } else {
        Status::Failed(v.problems.join("; "))
    }
}

/// A fresh fixture of the benchmark tables.
fn fixture(ctx: &Ctx<'_>) -> Result<CitusFixture> {
    let spec = data::cluster_spec();
    tokio::task::block_in_place(|| ctx.lab.cluster.create(&spec))
        .context("could not create the cluster fixture")
}

/// An empty database on the plain target with the benchmark tables in `storefront`.
fn plain_target(ctx: &Ctx<'_>, prefix: &str) -> Result<OwnedDb> {
    let db = OwnedDb::create(ctx.lab.target.endpoint(), prefix)?;
    db.execute(&format!(
        "CREATE SCHEMA {TEMPLATE_SCHEMA}; SET search_path = {TEMPLATE_SCHEMA}; {}",
        data::plain_ddl()
    ))?;
    Ok(db)
}

fn keep_loads(r: &mut Results, loads: Vec<LoadRow>) {
    if r.loads.is_empty() {
        r.loads = loads;
    }
}

/// Rows added to the results since a mark, whose status the final verification sets.
#[derive(Debug, Clone, Copy)]
struct Mark {
    cdc: usize,
    lag: usize,
}

fn mark(r: &Results) -> Mark {
    Mark {
        cdc: r.cdc.len(),
        lag: r.lag.len(),
    }
}

/// Gives every counting drain and lag row added since `m` (limits excepted) the final
/// verification's status; a failed drain keeps its own.
fn settle(r: &mut Results, m: Mark, status: &Status) {
    for row in &mut r.cdc[m.cdc..] {
        if row.kind != Kind::Limit && row.status.counts() {
            row.status = status.clone();
        }
    }
    for row in &mut r.lag[m.lag..] {
        if row.status.counts() {
            row.status = status.clone();
        }
    }
}

/// Records a failed lag measurement as a note (the drains before it stand).
fn lag_result(r: &mut Results, contender: &str, lag: Result<Vec<LagRow>>) {
    match lag {
        Ok(rows) => r.lag.extend(rows),
        Err(e) => r
            .notes
            .push(format!("{contender}: the lag measurement failed: {e:#}")),
    }
}

/// The steady-load levels: 25/50/75% of `base` (named after it), and 75% of L-slot.
fn levels(base: Option<(f64, &str)>, lslot: Option<f64>) -> Vec<Level> {
    let mut out = Vec::new();
    if let Some((rate, name)) = base {
        for p in [25.0, 50.0, 75.0] {
            out.push(Level {
                name: format!("{p:.0}% {name}"),
                rate: rate * p / 100.0,
            });
        }
    }
    if let Some(rate) = lslot {
        out.push(Level {
            name: "75% L-slot".into(),
            rate: rate * 0.75,
        });
    }
    out
}

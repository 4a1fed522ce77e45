//! What a run measured, as plain data: written as `results.json` and rendered by
//! [`super::report`] and [`super::svg`].

use serde::{Deserialize, Serialize};

use super::data::Sizes;
use super::lag::LagStats;
use super::machine::Machine;

/// How a measurement ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Status {
    /// Measured, and the result matched the source row for row.
    Verified,
    /// Measured; the result is not comparable with the source by design (a limit that
    /// discards what it reads).
    NotApplicable,
    /// Measured with a caveat that changes what the number means.
    Caveat(String),
    /// Ran, but the result does not match the source: not a valid throughput.
    Failed(String),
    /// Could not run (the message says why).
    Error(String),
    /// The tool is not installed.
    NotAvailable(String),
}

impl Status {
    /// Whether the measured time stands as a valid result.
    pub fn counts(&self) -> bool {
        matches!(
            self,
            Status::Verified | Status::NotApplicable | Status::Caveat(_)
        )
    }

    /// Short text for tables.
    pub fn text(&self) -> String {
        match self {
            Status::Verified => "verified".into(),
            Status::NotApplicable => "n/a (limit)".into(),
            Status::Caveat(c) => format!("verified; {c}"),
            Status::Failed(m) => format!("**FAILED**: {m}"),
            Status::Error(m) => format!("error: {m}"),
            Status::NotAvailable(m) => format!("not available: {m}"),
        }
    }
}

/// Whether a row is a limit or a contender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// A limit (L-copy, L-slot, source read).
    Limit,
    /// pgwarp.
    Pgwarp,
    /// Another tool.
    Peer,
}

/// One snapshot measurement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotRow {
    /// Who.
    pub contender: String,
    /// Limit, pgwarp or peer.
    pub kind: Kind,
    /// Where the rows went.
    pub path: String,
    /// Wall seconds (None when it did not run).
    pub seconds: Option<f64>,
    /// Source rows.
    pub rows: i64,
    /// Source binary COPY bytes.
    pub bytes: u64,
    /// CPU seconds of the tool's own process(es), when measurable.
    pub cpu_s: Option<f64>,
    /// Peak RSS of the tool, KiB.
    pub peak_rss_kib: Option<u64>,
    /// Parallel streams it read or wrote with (compared with L-copy of as many streams).
    #[serde(default)]
    pub streams: Option<usize>,
    /// Verification.
    pub status: Status,
}

/// One backlog drain.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CdcRow {
    /// Who.
    pub contender: String,
    /// Limit, pgwarp or peer.
    pub kind: Kind,
    /// Which load.
    pub load: String,
    /// Seconds from consumer start to the last change applied.
    pub seconds: Option<f64>,
    /// Row changes.
    pub rows: i64,
    /// WAL bytes of the load.
    pub wal_bytes: u64,
    /// CPU seconds of the consumer process.
    pub cpu_s: Option<f64>,
    /// Peak RSS of the consumer, KiB.
    pub peak_rss_kib: Option<u64>,
    /// pgwarp: transactions committed on the nodes (progress-row upserts) for this load.
    #[serde(default)]
    pub node_txns: Option<i64>,
    /// Verification (of the contender's final state).
    pub status: Status,
}

/// One load as the source ran it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadRow {
    /// Which load.
    pub load: String,
    /// Row changes.
    pub rows: i64,
    /// Source transactions (the marker's included).
    #[serde(default)]
    pub transactions: i64,
    /// Seconds the source took.
    pub seconds: f64,
    /// WAL bytes.
    pub wal_bytes: u64,
}

/// Lag at one steady-load level.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LagRow {
    /// Who.
    pub contender: String,
    /// Level name (`25% native`, `75% L-slot`).
    pub level: String,
    /// Target rate, row changes per second.
    pub target_rate: f64,
    /// Achieved rate.
    pub achieved_rate: f64,
    /// Lag statistics.
    pub stats: LagStats,
    /// Seconds from the end of the load until its marker was applied.
    pub catch_up_s: f64,
    /// Verification / errors.
    pub status: Status,
}

/// Everything one run measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Results {
    /// The command line.
    pub command: String,
    /// When it started.
    pub started: String,
    /// The machine.
    pub machine: Machine,
    /// Server settings (every server).
    pub settings: String,
    /// What the Citus target was.
    pub citus: String,
    /// `--scale`.
    pub scale: f64,
    /// `--quick`.
    pub quick: bool,
    /// Generated sizes.
    pub sizes: Option<Sizes>,
    /// Rows per table in the source.
    pub tables: Vec<(String, i64)>,
    /// Source rows, all tables.
    pub source_rows: i64,
    /// Source binary COPY bytes, all tables.
    pub source_bytes: u64,
    /// Seconds to build the template.
    pub template_seconds: f64,
    /// Snapshot measurements.
    pub snapshot: Vec<SnapshotRow>,
    /// Backlog drains.
    pub cdc: Vec<CdcRow>,
    /// The loads as the source ran them.
    pub loads: Vec<LoadRow>,
    /// Lag measurements.
    pub lag: Vec<LagRow>,
    /// Free-form notes (tool versions, fallbacks).
    pub notes: Vec<String>,
    /// Load average at the start of each step.
    pub loadavg: Vec<(String, [f64; 3])>,
    /// Seconds the whole run took.
    pub total_seconds: f64,
}

impl Results {
    /// The snapshot row of `contender` that counts.
    pub fn snapshot_of(&self, contender: &str) -> Option<&SnapshotRow> {
        self.snapshot
            .iter()
            .find(|r| r.contender == contender && r.seconds.is_some() && r.status.counts())
    }

    /// The fastest counting snapshot row whose name starts with `prefix`.
    pub fn best_snapshot(&self, prefix: &str) -> Option<&SnapshotRow> {
        self.snapshot
            .iter()
            .filter(|r| r.contender.starts_with(prefix) && r.status.counts())
            .filter(|r| r.seconds.is_some())
            .min_by(|a, b| {
                a.seconds
                    .unwrap_or(f64::MAX)
                    .total_cmp(&b.seconds.unwrap_or(f64::MAX))
            })
    }

    /// The loads of the CDC rows, in first-seen order.
    pub fn load_names(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for c in &self.cdc {
            if !out.contains(&c.load.as_str()) {
                out.push(&c.load);
            }
        }
        out
    }

    /// The CDC rows of `load`: limits first, then pgwarp, then the peers.
    pub fn cdc_rows(&self, load: &str) -> Vec<&CdcRow> {
        let mut rows: Vec<&CdcRow> = self.cdc.iter().filter(|c| c.load == load).collect();
        rows.sort_by_key(|c| match c.kind {
            Kind::Limit => 0,
            Kind::Pgwarp => 1,
            Kind::Peer => 2,
        });
        rows
    }

    /// The counting drain of `contender` for `load`.
    pub fn cdc_of(&self, contender: &str, load: &str) -> Option<&CdcRow> {
        self.cdc.iter().find(|r| {
            r.contender == contender && r.load == load && r.seconds.is_some() && r.status.counts()
        })
    }
}

/// Contender names used in the results.
pub mod names {
    /// `pg_recvlogical` to `/dev/null`.
    pub const LSLOT: &str = "L-slot (pg_recvlogical)";
    /// Native subscription into the plain target.
    pub const NATIVE: &str = "native subscription";
    /// Native subscription into the coordinator.
    pub const NATIVE_COORD: &str = "native subscription into coordinator";
    /// pgcopydb.
    pub const PGCOPYDB: &str = "pgcopydb";
    /// pg_dump | psql.
    pub const PGDUMP: &str = "pg_dump | psql";
    /// pgwarp with `--parallel n`.
    pub fn pgwarp(parallel: u32) -> String {
        format!("pgwarp --parallel {parallel}")
    }
    /// L-copy with n streams.
    pub fn lcopy(streams: usize) -> String {
        format!(
            "L-copy {streams} stream{}",
            if streams == 1 { "" } else { "s" }
        )
    }
    /// Source read with n streams.
    pub fn source_read(streams: usize) -> String {
        format!(
            "source read {streams} stream{}",
            if streams == 1 { "" } else { "s" }
        )
    }
}

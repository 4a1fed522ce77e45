//! `pgwarp status`: where a sync stands, read from the servers alone.
//!
//! Status needs no running pgwarp: everything is in the databases. The phase and snapshot
//! progress come from `pgwarp.sync_state` and `pgwarp.snapshot_chunks` on the target, what each
//! node holds from its `pgwarp.progress` row, and the slot's health from the source. Lag in
//! bytes is the source's WAL position minus what a node recorded; lag in seconds is how long
//! ago a lagging node last recorded progress (zero when it is caught up). Throughput is
//! measured by reading the positions twice, `sample` apart.

mod gather;

use serde::Serialize;

pub use gather::gather;

/// Everything `status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// Slot name.
    pub slot: String,
    /// Publication, from the state.
    pub publication: Option<String>,
    /// `setup`, `snapshot`, `streaming`, or `none` when no sync state exists.
    pub phase: String,
    /// The tables, from the state.
    pub tables: Vec<TableStatus>,
    /// The slot's consistent point.
    pub consistent_point: Option<String>,
    /// Idempotent replay position.
    pub idempotent_until: Option<String>,
    /// When the snapshot finished.
    pub snapshot_done_at: Option<String>,
    /// Last position `--until-caught-up` reached.
    pub caught_up_lsn: Option<String>,
    /// The source and the slot.
    pub source: SourceStatus,
    /// Every node.
    pub nodes: Vec<NodeStatus>,
    /// WAL bytes per second the slowest node advanced during the sample.
    pub throughput_bytes_per_second: Option<f64>,
    /// Seconds the sample took.
    pub sample_seconds: f64,
}

/// Snapshot progress of one table.
#[derive(Debug, Clone, Serialize)]
pub struct TableStatus {
    /// `schema.name`.
    pub table: String,
    /// Chunks planned.
    pub chunks: i64,
    /// Chunks done.
    pub chunks_done: i64,
    /// Rows copied.
    pub rows: i64,
    /// Bytes copied.
    pub bytes: i64,
}

/// The source side.
#[derive(Debug, Clone, Serialize)]
pub struct SourceStatus {
    /// `pg_current_wal_lsn()`.
    pub wal_lsn: String,
    /// Whether the slot exists.
    pub slot_exists: bool,
    /// Consumer connected.
    pub slot_active: bool,
    /// `wal_status` (`reserved`, `extended`, `unreserved`, `lost`).
    pub wal_status: Option<String>,
    /// `confirmed_flush_lsn`.
    pub confirmed_flush_lsn: Option<String>,
    /// `restart_lsn`.
    pub restart_lsn: Option<String>,
    /// WAL bytes the slot keeps (current position minus `restart_lsn`).
    pub retained_wal_bytes: Option<u64>,
}

/// One node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// `host:port`.
    pub node: String,
    /// Whether it could be reached.
    pub reachable: bool,
    /// Recorded position (`pgwarp.progress`).
    pub applied_lsn: Option<String>,
    /// WAL bytes behind the source.
    pub lag_bytes: Option<u64>,
    /// Seconds behind (zero when caught up).
    pub lag_seconds: Option<f64>,
    /// Seconds since the node last recorded progress.
    pub last_progress_seconds: Option<f64>,
}

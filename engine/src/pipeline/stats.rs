//! Live counters of a running sync, shared (lock-free) by the pipeline's tasks, the progress
//! display and the metrics endpoint.
//!
//! Writers only add or raise; readers take a consistent-enough view at any time. Nothing here
//! holds row values.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pgwarp_decoder::{Lsn, PgTimestamp};

/// Upper bounds (seconds) of the batch latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The phase, as shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LivePhase {
    /// Checking and creating publication and slot.
    Setup = 0,
    /// Copying the snapshot.
    Snapshot = 1,
    /// Following the slot.
    Streaming = 2,
    /// Stopped.
    Done = 3,
}

impl LivePhase {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            LivePhase::Setup => "setup",
            LivePhase::Snapshot => "snapshot",
            LivePhase::Streaming => "streaming",
            LivePhase::Done => "done",
        }
    }
}

/// Snapshot counters of one table.
#[derive(Debug, Default)]
pub struct TableStats {
    /// `schema.name`.
    pub name: String,
    /// Chunks planned.
    pub chunks_total: AtomicU64,
    /// Chunks complete.
    pub chunks_done: AtomicU64,
    /// Rows copied by this run.
    pub rows_copied: AtomicU64,
    /// Bytes copied by this run.
    pub bytes_copied: AtomicU64,
    /// Bytes expected (table size on the source), for the progress bar.
    pub bytes_expected: AtomicU64,
}

/// Counters of one node.
#[derive(Debug, Default)]
pub struct NodeStats {
    /// `host:port`.
    pub label: String,
    /// Every transaction committing before this position is applied on the node.
    pub done_before: AtomicU64,
    /// Source commit time (microseconds since 2000-01-01) of the last transaction applied.
    pub last_commit_time: AtomicI64,
    /// Batches committed.
    pub batches: AtomicU64,
}

/// A latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Cumulative bucket counts, total count, and sum in seconds.
    pub fn read(&self) -> (Vec<u64>, u64, f64) {
        (
            self.buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            self.count.load(Ordering::Relaxed),
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        )
    }
}

/// Rows and bytes applied.
#[derive(Debug, Default)]
pub struct Applied {
    /// Rows (changes) applied.
    pub rows: AtomicU64,
    /// Bytes of row data applied.
    pub bytes: AtomicU64,
}

/// Everything counted.
#[derive(Debug)]
pub struct Stats {
    /// When the run started.
    pub started: Instant,
    phase: AtomicU8,
    /// Per table.
    pub tables: Vec<TableStats>,
    /// Per node.
    pub nodes: Vec<NodeStats>,
    /// Applied rows and bytes, `[table][node]`.
    pub applied: Vec<Vec<Applied>>,
    /// The source's WAL end as last reported by the server.
    pub source_wal_end: AtomicU64,
    /// Everything committing before this has been received.
    pub received: AtomicU64,
    /// Flush position reported to the source (min over nodes).
    pub durable: AtomicU64,
    /// Batch commit latency.
    pub batch_latency: Histogram,
    /// Bytes written to spill files.
    pub spilled_bytes: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    table_index: HashMap<String, usize>,
}

impl Stats {
    /// Counters for these tables and nodes.
    pub fn new(tables: &[String], nodes: &[String]) -> Stats {
        Stats {
            started: Instant::now(),
            phase: AtomicU8::new(LivePhase::Setup as u8),
            tables: tables
                .iter()
                .map(|t| TableStats {
                    name: t.clone(),
                    ..Default::default()
                })
                .collect(),
            nodes: nodes
                .iter()
                .map(|n| NodeStats {
                    label: n.clone(),
                    ..Default::default()
                })
                .collect(),
            applied: tables
                .iter()
                .map(|_| nodes.iter().map(|_| Applied::default()).collect())
                .collect(),
            source_wal_end: AtomicU64::new(0),
            received: AtomicU64::new(0),
            durable: AtomicU64::new(0),
            batch_latency: Histogram::default(),
            spilled_bytes: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
            table_index: tables
                .iter()
                .enumerate()
                .map(|(i, t)| (t.clone(), i))
                .collect(),
        }
    }

    /// The current phase.
    pub fn phase(&self) -> LivePhase {
        match self.phase.load(Ordering::Relaxed) {
            0 => LivePhase::Setup,
            1 => LivePhase::Snapshot,
            2 => LivePhase::Streaming,
            _ => LivePhase::Done,
        }
    }

    /// Sets the phase.
    pub fn set_phase(&self, phase: LivePhase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    /// Index of table `schema.name`.
    pub fn table_index(&self, name: &str) -> Option<usize> {
        self.table_index.get(name).copied()
    }

    /// Counts rows and bytes applied for a table on a node.
    pub fn add_applied(&self, table: usize, node: usize, rows: u64, bytes: u64) {
        if let Some(a) = self.applied.get(table).and_then(|t| t.get(node)) {
            a.rows.fetch_add(rows, Ordering::Relaxed);
            a.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Counts an error by kind.
    pub fn count_error(&self, kind: &str) {
        let mut e = self
            .errors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *e.entry(kind.to_owned()).or_default() += 1;
    }

    /// Errors by kind.
    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.errors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Lag of a node in bytes behind the source's WAL end.
    pub fn node_lag_bytes(&self, node: usize) -> u64 {
        let end = self.source_wal_end.load(Ordering::Relaxed);
        let done = self
            .nodes
            .get(node)
            .map_or(0, |n| n.done_before.load(Ordering::Relaxed));
        end.saturating_sub(done)
    }

    /// Lag of a node in seconds: zero when it has applied everything received, else the age
    /// of the last source transaction it applied.
    pub fn node_lag_seconds(&self, node: usize) -> f64 {
        let Some(n) = self.nodes.get(node) else {
            return 0.0;
        };
        let received = self.received.load(Ordering::Relaxed);
        if n.done_before.load(Ordering::Relaxed) >= received {
            return 0.0;
        }
        let at = n.last_commit_time.load(Ordering::Relaxed);
        if at == 0 {
            return 0.0;
        }
        let now = PgTimestamp::now().as_micros();
        (now.saturating_sub(at).max(0)) as f64 / 1e6
    }

    /// Total rows applied (snapshot and stream) so far.
    pub fn rows_applied(&self) -> u64 {
        self.applied
            .iter()
            .flatten()
            .map(|a| a.rows.load(Ordering::Relaxed))
            .sum()
    }

    /// Total bytes applied so far.
    pub fn bytes_applied(&self) -> u64 {
        self.applied
            .iter()
            .flatten()
            .map(|a| a.bytes.load(Ordering::Relaxed))
            .sum()
    }

    /// The flush position.
    pub fn durable_lsn(&self) -> Lsn {
        Lsn(self.durable.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(300));
        let (b, count, sum) = h.read();
        assert_eq!(count, 2);
        assert_eq!(b[0], 1); // <= 5 ms
        assert_eq!(b[6], 2); // <= 500 ms
        assert!((sum - 0.303).abs() < 1e-6);
    }

    #[test]
    fn lag_is_zero_when_caught_up() {
        let s = Stats::new(&["s.t".into()], &["n:1".into()]);
        s.received.store(100, Ordering::Relaxed);
        s.source_wal_end.store(150, Ordering::Relaxed);
        s.nodes[0].done_before.store(100, Ordering::Relaxed);
        assert_eq!(s.node_lag_seconds(0), 0.0);
        assert_eq!(s.node_lag_bytes(0), 50);
        s.add_applied(0, 0, 3, 30);
        assert_eq!(s.rows_applied(), 3);
        assert_eq!(s.table_index("s.t"), Some(0));
    }
}

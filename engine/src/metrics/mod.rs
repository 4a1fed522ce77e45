//! Prometheus metrics of a running sync (`--metrics-addr`).
//!
//! The numbers live in [`crate::pipeline::stats::Stats`] (atomics the pipeline updates anyway);
//! this module only renders them in the Prometheus text format ([`render`]) and serves them
//! from a small HTTP/1.1 responder ([`serve`]): one request per connection, `GET /metrics`
//! (or `/`), everything else 404. A full HTTP stack would be a large dependency for one page.
//!
//! Metrics (all prefixed `pgwarp_`): `phase`, `lag_bytes{node}`, `lag_seconds{node}`,
//! `rows_applied_total{table,node}`, `bytes_applied_total{table,node}`,
//! `batch_duration_seconds` (histogram), `snapshot_chunks{table,state}`,
//! `snapshot_rows_total{table}`, `snapshot_bytes_total{table}`, `flush_lsn_bytes`,
//! `source_wal_end_bytes`, `spilled_bytes_total`, `errors_total{kind}`.

mod http;

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

pub use http::{MetricsServer, serve};

use crate::pipeline::stats::{LATENCY_BUCKETS, Stats};

fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The `# HELP` and `# TYPE` lines of metric `pgwarp_{name}`.
fn head(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(
        o,
        "# HELP pgwarp_{name} {help}\n# TYPE pgwarp_{name} {kind}"
    );
}

/// A metric without labels: its header and its one sample.
fn single(o: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    head(o, name, kind, help);
    let _ = writeln!(o, "pgwarp_{name} {value}");
}

/// The metrics in the Prometheus text exposition format.
pub fn render(stats: &Stats) -> String {
    let mut o = String::with_capacity(4096);
    head(
        &mut o,
        "phase",
        "gauge",
        "0 setup, 1 snapshot, 2 streaming, 3 done",
    );
    let phase = stats.phase();
    let _ = writeln!(o, "pgwarp_phase {}", phase as u8);

    head(
        &mut o,
        "lag_bytes",
        "gauge",
        "WAL bytes between the source's end and what the node applied",
    );
    for (i, n) in stats.nodes.iter().enumerate() {
        let _ = writeln!(
            o,
            "pgwarp_lag_bytes{{node=\"{}\"}} {}",
            label(&n.label),
            stats.node_lag_bytes(i)
        );
    }
    head(
        &mut o,
        "lag_seconds",
        "gauge",
        "age of the last source transaction the node applied, 0 when caught up",
    );
    for (i, n) in stats.nodes.iter().enumerate() {
        let _ = writeln!(
            o,
            "pgwarp_lag_seconds{{node=\"{}\"}} {:.3}",
            label(&n.label),
            stats.node_lag_seconds(i)
        );
    }
    head(
        &mut o,
        "rows_applied_total",
        "counter",
        "rows written (snapshot and stream)",
    );
    for (t, table) in stats.tables.iter().enumerate() {
        for (n, node) in stats.nodes.iter().enumerate() {
            if let Some(a) = stats.applied.get(t).and_then(|x| x.get(n)) {
                let _ = writeln!(
                    o,
                    "pgwarp_rows_applied_total{{table=\"{}\",node=\"{}\"}} {}",
                    label(&table.name),
                    label(&node.label),
                    a.rows.load(Ordering::Relaxed)
                );
            }
        }
    }
    head(
        &mut o,
        "bytes_applied_total",
        "counter",
        "row bytes written (snapshot and stream)",
    );
    for (t, table) in stats.tables.iter().enumerate() {
        for (n, node) in stats.nodes.iter().enumerate() {
            if let Some(a) = stats.applied.get(t).and_then(|x| x.get(n)) {
                let _ = writeln!(
                    o,
                    "pgwarp_bytes_applied_total{{table=\"{}\",node=\"{}\"}} {}",
                    label(&table.name),
                    label(&node.label),
                    a.bytes.load(Ordering::Relaxed)
                );
            }
        }
    }
    head(
        &mut o,
        "batch_duration_seconds",
        "histogram",
        "time to apply one batch on a node",
    );
    let (buckets, count, sum) = stats.batch_latency.read();
    for (bound, n) in LATENCY_BUCKETS.iter().zip(&buckets) {
        let _ = writeln!(
            o,
            "pgwarp_batch_duration_seconds_bucket{{le=\"{bound}\"}} {n}"
        );
    }
    let _ = writeln!(
        o,
        "pgwarp_batch_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
    );
    let _ = writeln!(o, "pgwarp_batch_duration_seconds_sum {sum:.6}");
    let _ = writeln!(o, "pgwarp_batch_duration_seconds_count {count}");

    head(
        &mut o,
        "snapshot_chunks",
        "gauge",
        "snapshot chunks by state",
    );
    for t in &stats.tables {
        let total = t.chunks_total.load(Ordering::Relaxed);
        let done = t.chunks_done.load(Ordering::Relaxed);
        let name = label(&t.name);
        let _ = writeln!(
            o,
            "pgwarp_snapshot_chunks{{table=\"{name}\",state=\"done\"}} {done}"
        );
        let _ = writeln!(
            o,
            "pgwarp_snapshot_chunks{{table=\"{name}\",state=\"pending\"}} {}",
            total.saturating_sub(done)
        );
    }
    head(
        &mut o,
        "snapshot_rows_total",
        "counter",
        "rows read from the source snapshot",
    );
    for t in &stats.tables {
        let _ = writeln!(
            o,
            "pgwarp_snapshot_rows_total{{table=\"{}\"}} {}",
            label(&t.name),
            t.rows_copied.load(Ordering::Relaxed)
        );
    }
    head(
        &mut o,
        "snapshot_bytes_total",
        "counter",
        "bytes read from the source snapshot",
    );
    for t in &stats.tables {
        let _ = writeln!(
            o,
            "pgwarp_snapshot_bytes_total{{table=\"{}\"}} {}",
            label(&t.name),
            t.bytes_copied.load(Ordering::Relaxed)
        );
    }
    single(
        &mut o,
        "flush_lsn_bytes",
        "gauge",
        "flush position confirmed to the source, as a byte position",
        stats.durable.load(Ordering::Relaxed),
    );
    single(
        &mut o,
        "source_wal_end_bytes",
        "gauge",
        "the source's WAL end as last reported",
        stats.source_wal_end.load(Ordering::Relaxed),
    );
    single(
        &mut o,
        "spilled_bytes_total",
        "counter",
        "bytes of streamed transactions spilled to disk",
        stats.spilled_bytes.load(Ordering::Relaxed),
    );
    head(
        &mut o,
        "errors_total",
        "counter",
        "errors by kind (transient ones were retried)",
    );
    for (kind, n) in stats.errors() {
        let _ = writeln!(o, "pgwarp_errors_total{{kind=\"{}\"}} {n}", label(&kind));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn renders_every_family() {
        let s = Stats::new(&["app.users".into()], &["w1:5432".into()]);
        s.add_applied(0, 0, 10, 1000);
        s.batch_latency.observe(Duration::from_millis(20));
        s.count_error("sink");
        let text = render(&s);
        assert!(
            text.contains("pgwarp_rows_applied_total{table=\"app.users\",node=\"w1:5432\"} 10")
        );
        assert!(
            text.contains("pgwarp_bytes_applied_total{table=\"app.users\",node=\"w1:5432\"} 1000")
        );
        assert!(text.contains("pgwarp_batch_duration_seconds_bucket{le=\"0.025\"} 1"));
        assert!(text.contains("pgwarp_batch_duration_seconds_count 1"));
        assert!(text.contains("pgwarp_errors_total{kind=\"sink\"} 1"));
        assert!(text.contains("pgwarp_lag_bytes{node=\"w1:5432\"} 0"));
        assert!(text.contains("pgwarp_phase 0"));
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c"), "a\\\"b\\\\c");
    }
}

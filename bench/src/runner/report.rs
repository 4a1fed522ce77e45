//! The Markdown report: a summary of the ratios against the goals, then every measurement.
//!
//! Ratios are rate ratios within one run (the limit's or peer's seconds over the contender's),
//! so machine speed and background load cancel out as far as they can.

use std::fmt::Write;

use super::results::{CdcRow, Kind, Results, SnapshotRow, names};

/// A table cell: pipes escaped, no line breaks.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn secs(s: Option<f64>) -> String {
    s.map_or("—".into(), |s| format!("{s:.2}"))
}

fn rate(rows: i64, s: Option<f64>) -> String {
    match s {
        Some(s) if s > 0.0 => format!("{:.0}", rows as f64 / s),
        _ => "—".into(),
    }
}

fn mbs(bytes: u64, s: Option<f64>) -> String {
    match s {
        Some(s) if s > 0.0 => format!("{:.1}", bytes as f64 / s / 1e6),
        _ => "—".into(),
    }
}

fn pct(x: Option<f64>) -> String {
    x.map_or("—".into(), |x| format!("{:.0}%", x * 100.0))
}

fn times(x: Option<f64>) -> String {
    x.map_or("—".into(), |x| format!("{x:.2}×"))
}

fn cpu_per_m(cpu: Option<f64>, rows: i64) -> String {
    match cpu {
        Some(c) if rows > 0 => format!("{:.2}", c / (rows as f64 / 1e6)),
        _ => "—".into(),
    }
}

fn rss(kib: Option<u64>) -> String {
    kib.map_or("—".into(), |k| format!("{:.0} MiB", k as f64 / 1024.0))
}

/// `a`'s rate over `b`'s (same rows): `b.seconds / a.seconds`.
fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if a > 0.0 => Some(b / a),
        _ => None,
    }
}

fn goal(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "**not met**",
        None => "not measured",
    }
}

fn counting_seconds(row: Option<&SnapshotRow>) -> Option<f64> {
    row.filter(|r| r.status.counts()).and_then(|r| r.seconds)
}

fn cdc_seconds(row: Option<&CdcRow>) -> Option<f64> {
    row.filter(|r| r.status.counts()).and_then(|r| r.seconds)
}

/// The summary rows: (measure, value, goal, verdict).
fn summary(r: &Results) -> Vec<(String, String, String, &'static str)> {
    let mut out = Vec::new();
    let lcopy = counting_seconds(r.best_snapshot("L-copy"));
    let dump = r.snapshot_of(names::PGDUMP).and_then(|s| s.seconds);
    for p in [1, 2] {
        let name = names::pgwarp(p);
        let Some(me) = counting_seconds(r.snapshot_of(&name)) else {
            continue;
        };
        let same = counting_seconds(r.snapshot_of(&names::lcopy(p as usize)));
        let vs_same = ratio(Some(me), same);
        out.push((
            format!("snapshot: {name} vs L-copy {p} stream(s)"),
            pct(vs_same),
            "≥ 90%".into(),
            goal(vs_same.map(|x| x >= 0.9)),
        ));
        let vs_lcopy = ratio(Some(me), lcopy);
        out.push((
            format!("snapshot: {name} vs best L-copy"),
            pct(vs_lcopy),
            "≥ 90%".into(),
            goal(vs_lcopy.map(|x| x >= 0.9)),
        ));
        let vs_dump = ratio(Some(me), dump);
        out.push((
            format!("snapshot: {name} vs pg_dump | psql"),
            times(vs_dump),
            "≥ 3×".into(),
            goal(vs_dump.map(|x| x >= 3.0)),
        ));
    }
    let pgwarp = names::pgwarp(2);
    for load in ["mixed-1", "mixed-100", "large-tx"] {
        let me = cdc_seconds(r.cdc_of(&pgwarp, load));
        let lslot = cdc_seconds(r.cdc_of(names::LSLOT, load));
        let x = ratio(me, lslot);
        out.push((
            format!("CDC backlog {load}: pgwarp vs L-slot"),
            pct(x),
            "≥ 90%".into(),
            goal(x.map(|x| x >= 0.9)),
        ));
        let native = cdc_seconds(r.cdc_of(names::NATIVE, load));
        let x = ratio(me, native);
        out.push((
            format!("CDC backlog {load}: pgwarp vs native subscription"),
            times(x),
            "> 1× (beat it)".into(),
            goal(x.map(|x| x > 1.0)),
        ));
        let copydb = cdc_seconds(r.cdc_of(names::PGCOPYDB, load));
        let x = ratio(me, copydb);
        let copydb_failed = r
            .cdc
            .iter()
            .any(|c| c.contender == names::PGCOPYDB && c.load == load && !c.status.counts());
        out.push((
            format!("CDC backlog {load}: pgwarp vs pgcopydb"),
            if copydb_failed {
                "pgcopydb failed".into()
            } else {
                times(x)
            },
            "≥ 5×".into(),
            goal(x.map(|x| x >= 5.0)),
        ));
    }
    for l in r.lag.iter().filter(|l| l.contender == pgwarp) {
        // a level the source could not produce says nothing about that rate
        let reached = l.achieved_rate >= 0.9 * l.target_rate;
        let ok = l.status.counts() && reached;
        out.push((
            format!(
                "lag at {} (target {:.0}, achieved {:.0} rows/s): pgwarp p95 / max",
                l.level, l.target_rate, l.achieved_rate
            ),
            format!("{:.2} s / {:.2} s", l.stats.p95_s, l.stats.max_s),
            if l.level.contains("L-slot") {
                "< 1 s".into()
            } else {
                "—".into()
            },
            if !l.level.contains("L-slot") {
                ""
            } else if !reached {
                "not measured: the source fell short of the rate"
            } else {
                goal(ok.then_some(l.stats.max_s < 1.0))
            },
        ));
    }
    out
}

/// Renders the whole report.
pub fn markdown(r: &Results) -> String {
    let mut o = String::new();
    let m = &r.machine;
    let _ = writeln!(o, "# pgwarp benchmark\n");
    let _ = writeln!(
        o,
        "Started {}; the run took {:.0} s. Command: `{}`\n",
        r.started, r.total_seconds, r.command
    );
    let _ = writeln!(
        o,
        "**Machine**: {} CPUs ({}), {} MiB RAM, Linux {}; {}; pgwarp commit {}.\n",
        m.cpus, m.cpu, m.memory_mib, m.kernel, m.postgres, m.commit
    );
    let la: Vec<String> = r
        .loadavg
        .iter()
        .map(|(s, l)| format!("{s} {:.2}", l[0]))
        .collect();
    let _ = writeln!(
        o,
        "**Load average** (1 min) at the start of each step: {}. Other work shares this \
         machine, so absolute numbers are noisy; the ratios compare measurements of the same \
         run.\n",
        la.join(", ")
    );
    let _ = writeln!(
        o,
        "**Lab**: every server is PostgreSQL 15 on 127.0.0.1 with the same settings: {}. \
         `fsync = off` and `synchronous_commit = off` apply to every server alike; each load's \
         final marker and the paced loads commit with `synchronous_commit = on`. Citus target: {}.\n",
        r.settings, r.citus
    );
    let tables: Vec<String> = r.tables.iter().map(|(t, n)| format!("{t} {n}")).collect();
    let _ = writeln!(
        o,
        "**Data** (scale {}{}): {}; {} rows, {:.1} MB as binary COPY; template built in {:.1} s.\n",
        r.scale,
        if r.quick { ", --quick" } else { "" },
        tables.join(", "),
        r.source_rows,
        r.source_bytes as f64 / 1e6,
        r.template_seconds
    );

    let _ = writeln!(o, "## Summary\n");
    let _ = writeln!(o, "| measure | value | goal | |\n|---|---:|---|---|");
    for (what, value, g, verdict) in summary(r) {
        let _ = writeln!(o, "| {} | {value} | {g} | {verdict} |", cell(&what));
    }

    let lcopy = counting_seconds(r.best_snapshot("L-copy"));
    let dump = r.snapshot_of(names::PGDUMP).and_then(|s| s.seconds);
    let _ = writeln!(
        o,
        "\n## Snapshot\n\n{} rows, {:.1} MB (binary COPY size). Ratios are rates relative to \
         the best L-copy and to pg_dump | psql.\n",
        r.source_rows,
        r.source_bytes as f64 / 1e6
    );
    let _ = writeln!(
        o,
        "| contender | path | streams | seconds | rows/s | MB/s | of L-copy, same streams | \
         of best L-copy | vs pg_dump \\| psql | CPU s / M rows | peak RSS | result |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for s in &r.snapshot {
        let (same, of_lcopy, vs_dump) =
            if s.status.counts() && s.kind != Kind::Limit || s.contender.starts_with("L-copy") {
                let same = s
                    .streams
                    .and_then(|n| counting_seconds(r.snapshot_of(&names::lcopy(n))));
                (
                    ratio(s.seconds, same),
                    ratio(s.seconds, lcopy),
                    ratio(s.seconds, dump),
                )
            } else {
                (None, None, None)
            };
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            cell(&s.contender),
            cell(&s.path),
            s.streams.map_or("—".into(), |n| n.to_string()),
            secs(s.seconds),
            rate(s.rows, s.seconds),
            mbs(s.bytes, s.seconds),
            pct(same),
            pct(of_lcopy),
            times(vs_dump),
            cpu_per_m(s.cpu_s, s.rows),
            rss(s.peak_rss_kib),
            cell(&s.status.text())
        );
    }

    let _ = writeln!(
        o,
        "\n## CDC backlog drain\n\nThe load runs while the consumer is stopped; the clock runs \
         from the consumer's start until its last change is applied (every placement shows the \
         load's marker). MB/s counts the load's WAL. L-slot drains the same WAL as pgwarp. \
         \"node txns\": transactions pgwarp committed on the nodes for the load (each upserts its \
         progress row), next to the load's source transactions.\n"
    );
    let _ = writeln!(
        o,
        "| load | contender | seconds | rows/s | WAL MB/s | of L-slot | vs native | vs pgcopydb | \
         CPU s / M rows | peak RSS | node txns | result |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    let loads = r.load_names();
    for load in loads {
        let lslot = cdc_seconds(r.cdc_of(names::LSLOT, load));
        let native = cdc_seconds(r.cdc_of(names::NATIVE, load));
        let copydb = cdc_seconds(r.cdc_of(names::PGCOPYDB, load));
        for c in r.cdc_rows(load) {
            let me = if c.status.counts() { c.seconds } else { None };
            let _ = writeln!(
                o,
                "| {load} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                cell(&c.contender),
                secs(c.seconds),
                rate(c.rows, c.seconds),
                mbs(c.wal_bytes, c.seconds),
                pct(ratio(me, lslot)),
                times(ratio(me, native)),
                times(ratio(me, copydb)),
                cpu_per_m(c.cpu_s, c.rows),
                rss(c.peak_rss_kib),
                c.node_txns.map_or("—".into(), |n| n.to_string()),
                cell(&c.status.text())
            );
        }
    }
    if !r.loads.is_empty() {
        let _ = writeln!(
            o,
            "\nThe loads on the source (generated server-side by PL/pgSQL while no consumer runs):\n\n\
             | load | row changes | transactions | seconds | rows/s | WAL MB |\n\
             |---|---:|---:|---:|---:|---:|"
        );
        for l in &r.loads {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {:.2} | {:.0} | {:.1} |",
                l.load,
                l.rows,
                l.transactions,
                l.seconds,
                l.rows as f64 / l.seconds.max(1e-9),
                l.wal_bytes as f64 / 1e6
            );
        }
    }

    let _ = writeln!(
        o,
        "\n## Lag under steady load\n\nThe mixed sequence paced server-side at a fraction of a \
         measured capacity (two sessions, 100 row changes per transaction as three set-based \
         statements, `synchronous_commit = on`); \"achieved\" is what the source managed while \
         the consumer ran on the same cores. Lag sampled every 100 ms: bytes = source \
         `pg_current_wal_lsn()` minus the consumer's applied position (pgwarp: its confirmed \
         flush position, the minimum over nodes; native: the apply worker's reported \
         position); seconds = time since the source passed the applied position.\n"
    );
    let _ = writeln!(
        o,
        "| contender | level | target rows/s | achieved rows/s | p50 s | p95 s | max s | \
         p50 kB | p95 kB | max kB | catch-up s | result |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for l in &r.lag {
        let s = &l.stats;
        let _ = writeln!(
            o,
            "| {} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.0} | {:.0} | {:.0} | {:.2} | {} |",
            l.contender,
            l.level,
            l.target_rate,
            l.achieved_rate,
            s.p50_s,
            s.p95_s,
            s.max_s,
            s.p50_bytes as f64 / 1e3,
            s.p95_bytes as f64 / 1e3,
            s.max_bytes as f64 / 1e3,
            l.catch_up_s,
            cell(&l.status.text())
        );
    }
    if !r.notes.is_empty() {
        let _ = writeln!(o, "\n## Notes\n");
        for n in &r.notes {
            let _ = writeln!(o, "* {n}");
        }
    }
    let _ = writeln!(
        o,
        "\nPlots: `snapshot.svg` (snapshot rows/s), `cdc.svg` (backlog drain rows/s per load), \
         `lag.svg` (lag over time per level)."
    );
    o
}

//! Hand-written SVG plots (no plotting crate, no fonts to ship): horizontal bar charts of
//! throughput and a line chart of lag over time.

use std::fmt::Write;

use super::results::{Kind, Results, Status};

const LIMIT: &str = "#9e9e9e";
const PGWARP: &str = "#e4572e";
const PEER: &str = "#4c78a8";
const PALETTE: &[&str] = &[
    "#e4572e", "#f3a712", "#a8c686", "#669bbc", "#29335c", "#8e44ad", "#17becf", "#7f7f7f",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn color(kind: Kind) -> &'static str {
    match kind {
        Kind::Limit => LIMIT,
        Kind::Pgwarp => PGWARP,
        Kind::Peer => PEER,
    }
}

/// A bar: label, value (None: not a valid result), colour, note after the value.
struct Bar {
    label: String,
    value: Option<f64>,
    color: &'static str,
    note: String,
}

fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// Horizontal bars in groups.
fn bar_chart(title: &str, unit: &str, groups: &[(String, Vec<Bar>)]) -> String {
    let (label_w, bar_w, right_w) = (300.0, 440.0, 260.0);
    let width = label_w + bar_w + right_w;
    let row = 22.0;
    let head = 26.0;
    let rows: usize = groups.iter().map(|(_, b)| b.len()).sum();
    let height = 60.0 + rows as f64 * row + groups.len() as f64 * head + 20.0;
    let max = groups
        .iter()
        .flat_map(|(_, b)| b.iter().filter_map(|b| b.value))
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        s,
        r##"<rect width="100%" height="100%" fill="white"/><text x="10" y="22" font-size="16" font-weight="bold">{}</text><text x="10" y="40" fill="#555">{}</text>"##,
        esc(title),
        esc(unit)
    );
    let mut y = 52.0;
    for (name, bars) in groups {
        y += head;
        let _ = write!(
            s,
            r#"<text x="10" y="{}" font-weight="bold">{}</text>"#,
            y - 8.0,
            esc(name)
        );
        for b in bars {
            let _ = write!(
                s,
                r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
                label_w - 8.0,
                y + 15.0,
                esc(&b.label)
            );
            let (w, text) = match b.value {
                Some(v) => (v / max * bar_w, format!("{} {}", human(v), b.note)),
                None => (0.0, b.note.clone()),
            };
            let _ = write!(
                s,
                r#"<rect x="{label_w}" y="{}" width="{w:.1}" height="{}" fill="{}"/>"#,
                y + 3.0,
                row - 6.0,
                b.color
            );
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{}">{}</text>"#,
                label_w + w + 6.0,
                y + 15.0,
                esc(&text)
            );
            y += row;
        }
    }
    s.push_str("</svg>\n");
    s
}

fn note_of(status: &Status) -> String {
    match status {
        Status::Verified | Status::NotApplicable => String::new(),
        Status::Caveat(c) => format!("({c})"),
        Status::Failed(m) => {
            let short: String = m.chars().take(70).collect();
            format!(
                "FAILED: {short}{}",
                if m.chars().count() > 70 { "…" } else { "" }
            )
        }
        Status::Error(_) => "error".into(),
        Status::NotAvailable(_) => "not available".into(),
    }
}

/// Snapshot rows/s per contender.
pub fn snapshot_chart(r: &Results) -> String {
    let bars: Vec<Bar> = r
        .snapshot
        .iter()
        .map(|s| Bar {
            label: s.contender.clone(),
            value: s
                .seconds
                .filter(|_| s.status.counts())
                .map(|secs| s.rows as f64 / secs.max(1e-9)),
            color: color(s.kind),
            note: note_of(&s.status),
        })
        .collect();
    bar_chart(
        "Snapshot throughput",
        &format!(
            "rows/s, {} rows; grey = limits, orange = pgwarp, blue = peers",
            r.source_rows
        ),
        &[("snapshot".to_owned(), bars)],
    )
}

/// Backlog drain rows/s per load and contender.
pub fn cdc_chart(r: &Results) -> String {
    let loads = r.load_names();
    let groups: Vec<(String, Vec<Bar>)> = loads
        .iter()
        .map(|load| {
            let bars = r
                .cdc_rows(load)
                .into_iter()
                .map(|c| Bar {
                    label: c.contender.clone(),
                    value: c
                        .seconds
                        .filter(|_| c.status.counts())
                        .map(|secs| c.rows as f64 / secs.max(1e-9)),
                    color: color(c.kind),
                    note: note_of(&c.status),
                })
                .collect();
            ((*load).to_owned(), bars)
        })
        .collect();
    bar_chart(
        "CDC backlog drain",
        "row changes applied per second; grey = L-slot, orange = pgwarp, blue = peers",
        &groups,
    )
}

fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

/// Lag over time, one line per contender and level.
pub fn lag_chart(r: &Results) -> String {
    let (left, top, w, h) = (60.0, 50.0, 620.0, 320.0);
    let legend_w = 300.0;
    let series: Vec<(String, &Vec<(f64, f64)>)> = r
        .lag
        .iter()
        .map(|l| (format!("{} @ {}", l.contender, l.level), &l.stats.series))
        .collect();
    let xmax = nice_max(
        series
            .iter()
            .flat_map(|(_, p)| p.iter().map(|(x, _)| *x))
            .fold(0.0, f64::max),
    );
    let ymax = nice_max(
        series
            .iter()
            .flat_map(|(_, p)| p.iter().map(|(_, y)| *y))
            .fold(1.0, f64::max),
    );
    let width = left + w + legend_w;
    let height = top + h + 50.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>"#
    );
    let _ = write!(
        s,
        r##"<text x="10" y="22" font-size="16" font-weight="bold">Lag under steady load</text><text x="10" y="40" fill="#555">seconds behind the source, sampled every 100 ms; dashed: 1 s</text>"##
    );
    let px = |x: f64| left + x / xmax * w;
    let py = |y: f64| top + h - y / ymax * h;
    for i in 0..=5 {
        let (fx, fy) = (xmax * i as f64 / 5.0, ymax * i as f64 / 5.0);
        let _ = write!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{fy:.2}</text><text x="{:.1}" y="{}" text-anchor="middle">{fx:.0}</text>"##,
            left + w,
            py(fy),
            py(fy),
            left - 6.0,
            py(fy) + 4.0,
            px(fx),
            top + h + 16.0
        );
    }
    let _ = write!(
        s,
        r##"<line x1="{left}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#c00" stroke-dasharray="4 4"/><rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#999"/><text x="{}" y="{}" text-anchor="middle">seconds since the level started</text>"##,
        left + w,
        py(1.0),
        py(1.0),
        left + w / 2.0,
        top + h + 36.0
    );
    for (i, (name, points)) in series.iter().enumerate() {
        let c = PALETTE[i % PALETTE.len()];
        let path: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{}"/>"#,
            path.join(" ")
        );
        let ly = top + 14.0 + i as f64 * 18.0;
        let _ = write!(
            s,
            r#"<line x1="{}" x2="{}" y1="{ly}" y2="{ly}" stroke="{c}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            left + w + 14.0,
            left + w + 34.0,
            left + w + 40.0,
            ly + 4.0,
            esc(name)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_max_rounds_up_to_1_2_2_5_5() {
        assert_eq!(nice_max(0.7), 1.0);
        assert_eq!(nice_max(1.3), 2.0);
        assert_eq!(nice_max(2.2), 2.5);
        assert_eq!(nice_max(3.1), 5.0);
        assert_eq!(nice_max(70.0), 100.0);
    }

    #[test]
    fn labels_are_escaped() {
        let groups = vec![(
            "g".to_owned(),
            vec![Bar {
                label: "pg_dump | psql <a&b>".into(),
                value: Some(10.0),
                color: PEER,
                note: String::new(),
            }],
        )];
        let svg = bar_chart("t", "u", &groups);
        assert!(svg.contains("pg_dump | psql &lt;a&amp;b&gt;"));
        assert!(!svg.contains("<a&b>"));
    }
}

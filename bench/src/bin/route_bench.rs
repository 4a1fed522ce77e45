//! route_bench: the per-row cost of pgwarp's router (hash the distribution value, find its
//! shard) for bigint, text, uuid and numeric keys, in both value forms the engine sees: the
//! binary send format (binary pgoutput / binary COPY) and the text output format.
//!
//! Values are generated up front into one contiguous buffer and routed from borrowed slices,
//! as the engine routes slices of a received frame. Two range layouts: the uniform 32 shards
//! `create_distributed_table` makes (arithmetic index) and 33 shards after a split (binary
//! search over the stored ranges). Each measurement is the best of `--rounds` passes.
//!
//! ```text
//! cargo run --release -p pgwarp-bench --bin route_bench [-- --rows 1000000 --rounds 5]
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Parser;
use pgwarp::citus::router::uniform_ranges;
use pgwarp::citus::{HashKernel, ShardRanges, TableRouter};

#[derive(Debug, Parser)]
#[command(about = "Per-row cost of hashing and routing distribution values")]
struct Args {
    /// Values per key type.
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// Passes per measurement (the best is reported).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

/// Values stored back to back, addressed by (offset, length).
struct Column {
    data: Vec<u8>,
    spans: Vec<(usize, usize)>,
}

impl Column {
    fn new() -> Column {
        Column {
            data: Vec::new(),
            spans: Vec::new(),
        }
    }
    fn push(&mut self, v: &[u8]) {
        self.spans.push((self.data.len(), v.len()));
        self.data.extend_from_slice(v);
    }
    fn avg_len(&self) -> f64 {
        self.data.len() as f64 / self.spans.len() as f64
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// `numeric_send` of a plain decimal string (`-123.45`).
fn numeric_send(s: &str) -> Vec<u8> {
    let (neg, s) = s.strip_prefix('-').map_or((false, s), |r| (true, r));
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let int = int.trim_start_matches('0');
    let pad_int = (4 - int.len() % 4) % 4;
    let pad_frac = (4 - frac.len() % 4) % 4;
    let all = format!("{}{int}{frac}{}", "0".repeat(pad_int), "0".repeat(pad_frac));
    let mut groups: Vec<u16> = all
        .as_bytes()
        .chunks(4)
        .map(|c| c.iter().fold(0u16, |v, d| v * 10 + u16::from(d - b'0')))
        .collect();
    let mut weight = ((int.len() + pad_int) / 4) as i16 - 1;
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    let mut out = Vec::with_capacity(8 + 2 * groups.len());
    out.extend_from_slice(&(groups.len() as i16).to_be_bytes());
    out.extend_from_slice(&(if groups.is_empty() { 0 } else { weight }).to_be_bytes());
    out.extend_from_slice(&(if neg { 0x4000u16 } else { 0 }).to_be_bytes());
    out.extend_from_slice(&(frac.len() as u16).to_be_bytes());
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
    out
}

/// (name, kernel, binary values, text values)
fn workloads(rows: usize) -> Vec<(&'static str, HashKernel, Column, Column)> {
    let mut rng = Rng(7);
    let mut out = Vec::new();

    let (mut bin, mut text) = (Column::new(), Column::new());
    for _ in 0..rows {
        let v = (rng.next() >> (rng.next() % 40)) as i64;
        bin.push(&v.to_be_bytes());
        text.push(v.to_string().as_bytes());
    }
    out.push(("bigint", HashKernel::Int8, bin, text));

    let (mut bin, mut text) = (Column::new(), Column::new());
    for _ in 0..rows {
        let v = format!(
            "tenant-{}-{:x}",
            rng.next() % 1_000_000,
            rng.next() >> (rng.next() % 64)
        );
        bin.push(v.as_bytes());
        text.push(v.as_bytes());
    }
    out.push(("text", HashKernel::Text, bin, text));

    let (mut bin, mut text) = (Column::new(), Column::new());
    for _ in 0..rows {
        let (a, b) = (rng.next(), rng.next());
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&a.to_be_bytes());
        raw[8..].copy_from_slice(&b.to_be_bytes());
        bin.push(&raw);
        let t = format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        );
        text.push(t.as_bytes());
    }
    out.push(("uuid", HashKernel::Uuid, bin, text));

    let (mut bin, mut text) = (Column::new(), Column::new());
    for _ in 0..rows {
        let int = rng.next() % 10u64.pow(1 + (rng.next() % 12) as u32);
        let v = format!("{int}.{:02}", rng.next() % 100);
        bin.push(&numeric_send(&v));
        text.push(v.as_bytes());
    }
    out.push(("numeric", HashKernel::Numeric, bin, text));
    out
}

/// 32 uniform shards with shard 3 split in two: 33 ranges, binary search.
fn split_ranges() -> ShardRanges {
    let mut r = uniform_ranges(32);
    let (lo, hi) = r[3];
    let mid = lo + (hi - lo) / 3;
    r.splice(3..4, [(lo, mid), (mid + 1, hi)]);
    ShardRanges::from_sorted(&r).expect("valid split ranges")
}

fn best_ns_per_row(rounds: usize, rows: usize, mut pass: impl FnMut() -> usize) -> f64 {
    let mut best = Duration::MAX;
    for _ in 0..rounds {
        let start = Instant::now();
        black_box(pass());
        best = best.min(start.elapsed());
    }
    best.as_nanos() as f64 / rows as f64
}

fn main() -> Result<()> {
    let args = Args::parse();
    let uniform = ShardRanges::uniform(32)?;
    let split = split_ranges();
    println!(
        "route_bench: {} values per type, best of {} passes, one thread",
        args.rows, args.rounds
    );
    println!(
        "{:<8} {:<6} {:>9} {:>12} {:>14} {:>12}",
        "key", "form", "avg bytes", "hash ns/row", "uniform ns/row", "split ns/row"
    );
    for (name, kernel, bin, text) in workloads(args.rows) {
        for (form, col, binary) in [("binary", &bin, true), ("text", &text, false)] {
            let values: Vec<&[u8]> = col
                .spans
                .iter()
                .map(|&(o, l)| &col.data[o..o + l])
                .collect();
            let hash = |v: &[u8]| {
                if binary {
                    kernel.hash_binary(v)
                } else {
                    kernel.hash_text(v)
                }
            };
            let hash_only = best_ns_per_row(args.rounds, values.len(), || {
                values
                    .iter()
                    .map(|v| hash(black_box(v)).map_or(0, |h| h as usize))
                    .fold(0, usize::wrapping_add)
            });
            let mut per_layout = Vec::new();
            for ranges in [&uniform, &split] {
                let router = TableRouter::Hash {
                    kernel: kernel.clone(),
                    ranges: ranges.clone(),
                };
                let ns = best_ns_per_row(args.rounds, values.len(), || {
                    let route = |v: &[u8]| {
                        if binary {
                            router.route_binary(Some(v))
                        } else {
                            router.route_text(Some(v))
                        }
                    };
                    values
                        .iter()
                        .map(|v| route(black_box(v)).unwrap_or(usize::MAX))
                        .fold(0, usize::wrapping_add)
                });
                per_layout.push(ns);
            }
            // Every value must route (a failed parse would make the numbers meaningless).
            assert!(
                values.iter().all(|v| hash(v).is_ok()),
                "{name} {form}: unroutable value"
            );
            println!(
                "{name:<8} {form:<6} {:>9.1} {hash_only:>12.1} {:>14.1} {:>12.1}",
                col.avg_len(),
                per_layout[0],
                per_layout[1]
            );
        }
    }
    Ok(())
}

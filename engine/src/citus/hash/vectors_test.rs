//! Every row of `../shared/citus/hash-vectors.csv` (taken from a real Citus 13.2 cluster)
//! through both kernel paths: the text path on the literal, and the binary path on the literal
//! converted to the type's send format by the small test-only encoders below. The hash and the
//! shard index (7 and 32 uniform shards, ROUTING.md §2.2) must match exactly.
//!
//! The integration test `tests/tests/citus_hash_vectors_server.rs` repeats the binary path with
//! the send format produced by a real server, so these encoders are not the only witness.

use std::net::IpAddr;

use super::{HashKernel, datetime, interval, numeric_encode_binary, uuid};
use crate::citus::router::ShardRanges;

/// The CSV sits in the shared folder beside the workspace (the CI clone has `../shared`).
const CSV: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/citus/hash-vectors.csv"
);

pub(crate) struct Vector {
    pub typ: String,
    pub shard_count: u32,
    pub lit: String,
    pub hash: i32,
    pub shard_index: usize,
}

/// Splits one CSV record (RFC 4180 quoting; the literals contain no newlines).
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if cur.is_empty() => quoted = true,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

pub(crate) fn load() -> Vec<Vector> {
    let text = std::fs::read_to_string(CSV).unwrap_or_else(|e| {
        panic!("hash vectors missing at {CSV}: {e} (the tests need ../shared)")
    });
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("typ,shard_count,lit,hash,shard_index"));
    lines
        .map(|l| {
            let f = fields(l);
            assert_eq!(f.len(), 5, "bad CSV line {l:?}");
            Vector {
                typ: f[0].clone(),
                shard_count: f[1].parse().unwrap(),
                lit: f[2].clone(),
                hash: f[3].parse().unwrap(),
                shard_index: f[4].parse().unwrap(),
            }
        })
        .collect()
}

pub(crate) fn kernel(typ: &str) -> HashKernel {
    let oid = match typ {
        "bool" => 16,
        "bytea" => 17,
        "int8" => 20,
        "int2" => 21,
        "int4" => 23,
        "text" => 25,
        "oid" => 26,
        "inet" => 869,
        "float4" => 700,
        "float8" => 701,
        "bpchar" | "bpchar1" => 1042,
        "varchar" => 1043,
        "date" => 1082,
        "time" => 1083,
        "timestamp" => 1114,
        "timestamptz" => 1184,
        "interval" => 1186,
        "numeric" => 1700,
        "uuid" => 2950,
        "jsonb" => 3802,
        other => panic!("type {other} in the CSV has no test mapping"),
    };
    HashKernel::for_builtin(oid).unwrap()
}

/// Expands `1e20` into plain decimal digits for the numeric encoder.
fn plain_decimal(lit: &str) -> String {
    let Some((mant, exp)) = lit.split_once(['e', 'E']) else {
        return lit.to_string();
    };
    let exp: i32 = exp.parse().unwrap();
    assert!(exp >= 0 && !mant.contains('.'), "unsupported literal {lit}");
    format!("{mant}{}", "0".repeat(exp as usize))
}

/// The type's binary send format of a literal.
pub(crate) fn encode(typ: &str, lit: &str) -> Vec<u8> {
    match typ {
        "bool" => vec![u8::from(lit == "true" || lit == "t")],
        "int2" => lit.parse::<i16>().unwrap().to_be_bytes().to_vec(),
        "int4" => lit.parse::<i32>().unwrap().to_be_bytes().to_vec(),
        "int8" => lit.parse::<i64>().unwrap().to_be_bytes().to_vec(),
        "oid" => lit.parse::<u32>().unwrap().to_be_bytes().to_vec(),
        "float4" => lit.parse::<f32>().unwrap().to_be_bytes().to_vec(),
        "float8" => lit.parse::<f64>().unwrap().to_be_bytes().to_vec(),
        "text" | "varchar" | "bpchar" | "bpchar1" => lit.as_bytes().to_vec(),
        "bytea" => {
            let hex = lit.strip_prefix("\\x").unwrap();
            (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                .collect()
        }
        "uuid" => uuid::parse(lit.as_bytes()).unwrap().to_vec(),
        "date" => datetime::date_days(lit.as_bytes())
            .unwrap()
            .to_be_bytes()
            .to_vec(),
        "time" => datetime::time_usecs(lit.as_bytes())
            .unwrap()
            .to_be_bytes()
            .to_vec(),
        "timestamp" => datetime::timestamp_usecs(lit.as_bytes(), false)
            .unwrap()
            .to_be_bytes()
            .to_vec(),
        "timestamptz" => datetime::timestamp_usecs(lit.as_bytes(), true)
            .unwrap()
            .to_be_bytes()
            .to_vec(),
        "interval" => {
            let (t, d, m) = interval::parse(lit.as_bytes()).unwrap();
            [
                t.to_be_bytes().as_slice(),
                &d.to_be_bytes(),
                &m.to_be_bytes(),
            ]
            .concat()
        }
        "numeric" => match lit {
            "NaN" => vec![0, 0, 0, 0, 0xC0, 0, 0, 0],
            _ => numeric_encode_binary(&plain_decimal(lit)),
        },
        "inet" => {
            let (addr, bits) = match lit.split_once('/') {
                Some((a, b)) => (a, Some(b.parse::<u8>().unwrap())),
                None => (lit, None),
            };
            match addr.parse::<IpAddr>().unwrap() {
                IpAddr::V4(a) => [&[2, bits.unwrap_or(32), 0, 4][..], &a.octets()].concat(),
                IpAddr::V6(a) => [&[3, bits.unwrap_or(128), 0, 16][..], &a.octets()].concat(),
            }
        }
        "jsonb" => [&[1u8][..], lit.as_bytes()].concat(),
        other => panic!("no encoder for {other}"),
    }
}

#[test]
fn every_csv_vector_hashes_and_routes_on_both_paths() {
    let vectors = load();
    assert_eq!(vectors.len(), 4044);
    let mut failures = Vec::new();
    for v in &vectors {
        let k = kernel(&v.typ);
        let ranges = ShardRanges::uniform(v.shard_count).unwrap();
        let text = k.hash_text(v.lit.as_bytes());
        let binary = k.hash_binary(&encode(&v.typ, &v.lit));
        for (path, got) in [("text", text), ("binary", binary)] {
            match got {
                Ok(h) if h == v.hash => {
                    if ranges.find(h) != Some(v.shard_index) {
                        failures.push(format!(
                            "{} {:?} ({path}): index {:?} != {}",
                            v.typ,
                            v.lit,
                            ranges.find(h),
                            v.shard_index
                        ));
                    }
                }
                other => failures.push(format!(
                    "{} {:?} ({path}): {other:?} != {}",
                    v.typ, v.lit, v.hash
                )),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_csv_type_is_covered() {
    let vectors = load();
    let mut types: Vec<&str> = vectors.iter().map(|v| v.typ.as_str()).collect();
    types.sort_unstable();
    types.dedup();
    assert_eq!(types.len(), 21, "{types:?}");
    assert!(
        vectors.iter().any(|v| v.shard_count == 7) && vectors.iter().any(|v| v.shard_count == 32)
    );
}

//! The 4044 vectors of `../shared/citus/hash-vectors.csv` (taken from a real Citus 13.2
//! cluster) through a real PostgreSQL: each literal is cast to its type on the server, and the
//! server's canonical text output and binary send form go through pgwarp's kernels. Proves
//! that (a) the CSV's Citus hash equals PostgreSQL's own type-cache hash of the value, (b) the
//! binary path is right on bytes a server produced (the unit test uses hand-written encoders),
//! (c) the text path is right on canonical output (the unit test uses the CSV literals), and
//! (d) the shard index of the uniform 7- and 32-shard ranges matches.

use pgwarp::citus::{HashKernel, ShardRanges};
use pgwarp_tests::PgServer;

const CSV: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/citus/hash-vectors.csv"
);

fn fields(line: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted) = (Vec::new(), String::new(), false);
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

/// CSV type → (SQL type, send function, type OID).
fn sql_type(typ: &str) -> (&'static str, &'static str, u32) {
    match typ {
        "bool" => ("bool", "boolsend", 16),
        "bytea" => ("bytea", "byteasend", 17),
        "int8" => ("int8", "int8send", 20),
        "int2" => ("int2", "int2send", 21),
        "int4" => ("int4", "int4send", 23),
        "text" => ("text", "textsend", 25),
        "oid" => ("oid", "oidsend", 26),
        "float4" => ("float4", "float4send", 700),
        "float8" => ("float8", "float8send", 701),
        "inet" => ("inet", "inet_send", 869),
        "bpchar" => ("bpchar", "bpcharsend", 1042),
        "bpchar1" => ("character(1)", "bpcharsend", 1042),
        "varchar" => ("varchar", "varcharsend", 1043),
        "date" => ("date", "date_send", 1082),
        "time" => ("time", "time_send", 1083),
        "timestamp" => ("timestamp", "timestamp_send", 1114),
        "timestamptz" => ("timestamptz", "timestamptz_send", 1184),
        "interval" => ("interval", "interval_send", 1186),
        "numeric" => ("numeric", "numeric_send", 1700),
        "uuid" => ("uuid", "uuid_send", 2950),
        "jsonb" => ("jsonb", "jsonb_send", 3802),
        other => panic!("unknown CSV type {other}"),
    }
}

#[tokio::test]
async fn csv_vectors_through_a_real_server() {
    let text = std::fs::read_to_string(CSV)
        .unwrap_or_else(|e| panic!("{CSV}: {e} (the tests need ../shared)"));
    let rows: Vec<Vec<String>> = text.lines().skip(1).map(fields).collect();
    assert_eq!(rows.len(), 4044);
    let db = PgServer::shared().create_database("csv_vectors").unwrap();
    let client = db.connect().await.unwrap();
    client
        .batch_execute(
            "SET DateStyle = 'ISO, MDY'; SET TimeZone = 'UTC'; SET IntervalStyle = 'postgres'; \
             SET extra_float_digits = 3; SET bytea_output = 'hex'",
        )
        .await
        .unwrap();

    let mut types: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    types.sort_unstable();
    types.dedup();
    let mut checked = 0;
    let mut failures = Vec::new();
    for typ in types {
        let (sql_type, send, oid) = sql_type(typ);
        let kernel = HashKernel::for_builtin(oid).unwrap();
        let vectors: Vec<&Vec<String>> = rows.iter().filter(|r| r[0] == typ).collect();
        let lits: Vec<&str> = vectors.iter().map(|r| r[2].as_str()).collect();
        let sql = format!(
            "SELECT v::text, hash_record(ROW(v)), {send}(v) \
             FROM unnest($1::text[]) WITH ORDINALITY AS u(s, i), LATERAL (SELECT s::{sql_type} AS v) x ORDER BY i"
        );
        let out = client
            .query(&sql, &[&lits])
            .await
            .unwrap_or_else(|e| panic!("{typ}: {e:?}"));
        assert_eq!(out.len(), vectors.len());
        for (r, v) in out.iter().zip(&vectors) {
            let (text, server, binary): (String, i32, Vec<u8>) = (r.get(0), r.get(1), r.get(2));
            let want: i32 = v[3].parse().unwrap();
            let (count, index): (u32, usize) = (v[1].parse().unwrap(), v[4].parse().unwrap());
            let by_text = kernel.hash_text(text.as_bytes());
            let by_binary = kernel.hash_binary(&binary);
            let shard = ShardRanges::uniform(count).unwrap().find(want);
            if server != want
                || by_text != Ok(want)
                || by_binary != Ok(want)
                || shard != Some(index)
            {
                failures.push(format!(
                    "{typ} {:?}: csv {want} idx {index}; server {server}; text {by_text:?} of {text:?}; binary {by_binary:?}; idx {shard:?}",
                    v[2]
                ));
            }
            checked += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(checked, 4044);
}

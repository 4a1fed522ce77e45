//! Property tests of pgwarp's hash kernels against a real PostgreSQL 15.
//!
//! For each type, thousands of random values (plus hand-picked edge values) are generated in
//! Rust as input literals, sent in one query, and the server returns per value: its canonical
//! text output (with the session settings the engine's source connection uses), the type's own
//! hash function (`hashint8`, `hash_numeric`, `jsonb_hash`, ...), `hash_record(ROW(v))` (which
//! calls the type cache's default hash function, the exact lookup Citus uses), and the binary
//! send form (`int8send`, `numeric_send`, ...). pgwarp's kernel must produce the server's hash
//! from the text form and from the binary form.
//!
//! Random values come from a fixed-seed generator (override with `PGWARP_TEST_SEED`), so a
//! failure is reproducible; the failing literal is printed.

use std::fmt::Write as _;
use std::sync::Arc;

use pgwarp::citus::{EnumLabels, HashKernel};
use pgwarp_tests::PgServer;
use tokio_postgres::Client;

/// SplitMix64: small, deterministic, good enough to spread test values.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("PGWARP_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5EED_CA75);
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % ((hi - lo) as u64 + 1)) as i64
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    /// A string of `lo..=hi` random decimal digits.
    fn num(&mut self, lo: i64, hi: i64) -> String {
        let n = self.range(lo, hi) as usize;
        self.digits(n)
    }
    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }
}

const N: usize = 3000;

const SESSION: &str = "SET DateStyle = 'ISO, MDY'; SET TimeZone = 'UTC'; \
    SET IntervalStyle = 'postgres'; SET extra_float_digits = 3; SET bytea_output = 'hex'";

async fn client(prefix: &str) -> (pgwarp_tests::TestDb, Client) {
    let db = PgServer::shared()
        .create_database(prefix)
        .expect("test database");
    let client = db.connect().await.expect("connect");
    client
        .batch_execute(SESSION)
        .await
        .expect("session settings");
    (db, client)
}

/// Sends `literals` cast to `typ`; checks every value's text and binary hash against the
/// server's `hashfn` and the type cache's hash. Returns the number of values checked.
async fn check(
    client: &Client,
    typ: &str,
    hashfn: Option<&str>,
    send: &str,
    kernel: &HashKernel,
    literals: &[String],
) -> usize {
    let named = hashfn.map_or_else(|| "hash_record(ROW(v))".to_string(), |f| format!("{f}(v)"));
    let sql = format!(
        "SELECT s, v::text, {named}, hash_record(ROW(v)), {send}(v) \
         FROM unnest($1::text[]) WITH ORDINALITY AS u(s, i), LATERAL (SELECT s::{typ} AS v) x ORDER BY i"
    );
    let rows = client
        .query(&sql, &[&literals])
        .await
        .unwrap_or_else(|e| panic!("{typ}: {e:?}"));
    assert_eq!(rows.len(), literals.len());
    let mut failures = Vec::new();
    for r in &rows {
        let lit: String = r.get(0);
        let text: String = r.get(1);
        let named: i32 = r.get(2);
        let typcache: i32 = r.get(3);
        let binary: Vec<u8> = r.get(4);
        if named != typcache {
            failures.push(format!(
                "{lit:?}: {named} (named) != {typcache} (type cache)"
            ));
        }
        let by_text = kernel.hash_text(text.as_bytes());
        let by_binary = kernel.hash_binary(&binary);
        if by_text != Ok(typcache) || by_binary != Ok(typcache) {
            failures.push(format!(
                "{typ} {lit:?} (output {text:?}, send {binary:02x?}): server {typcache}, text {by_text:?}, binary {by_binary:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} {typ} values differ:\n{}",
        failures.len(),
        rows.len(),
        failures[..failures.len().min(20)].join("\n")
    );
    rows.len()
}

fn kernel(oid: u32) -> HashKernel {
    HashKernel::for_builtin(oid).expect("builtin kernel")
}

fn ints(rng: &mut Rng, bits: u32, extra: &[i128]) -> Vec<String> {
    let mut out: Vec<String> = extra.iter().map(|v| v.to_string()).collect();
    for _ in 0..N {
        let raw = rng.next() as i128;
        let v = match rng.below(3) {
            0 => raw >> (128 - bits),                                 // full range
            1 => (raw >> (128 - bits)) >> rng.below(u64::from(bits)), // small magnitudes
            _ => (rng.range(-1000, 1000)) as i128,
        };
        let v = if bits == 0 {
            v
        } else {
            v.clamp(-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
        };
        out.push(v.to_string());
    }
    out
}

#[tokio::test]
async fn integer_types_match_server() {
    let (_db, c) = client("hash_ints").await;
    let mut rng = Rng::new();
    let e16 = [0, 1, -1, -3, 32767, -32768];
    check(
        &c,
        "int2",
        Some("hashint2"),
        "int2send",
        &kernel(21),
        &ints(&mut rng, 16, &e16),
    )
    .await;
    let e32 = [0, 1, -1, 123, 2147483647, -2147483648];
    check(
        &c,
        "int4",
        Some("hashint4"),
        "int4send",
        &kernel(23),
        &ints(&mut rng, 32, &e32),
    )
    .await;
    let e64 = [
        0,
        1,
        -1,
        4294967296,
        -4294967296,
        9223372036854775807,
        -9223372036854775808,
        2608474032,
        963809240,
    ];
    check(
        &c,
        "int8",
        Some("hashint8"),
        "int8send",
        &kernel(20),
        &ints(&mut rng, 64, &e64),
    )
    .await;
    let oids: Vec<String> = [0u64, 1, 4294967295]
        .iter()
        .map(u64::to_string)
        .chain((0..N).map(|_| (rng.next() >> 32).to_string()))
        .collect();
    check(&c, "oid", Some("hashoid"), "oidsend", &kernel(26), &oids).await;
    let bools: Vec<String> = ["true", "false", "t", "f"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    check(&c, "bool", None, "boolsend", &kernel(16), &bools).await;
    // "char": every byte value, written as PG 15's octal escape for bytes >= 0x80.
    let chars: Vec<String> = (1u32..=255)
        .map(|b| {
            if b >= 0x80 {
                format!("\\{b:03o}")
            } else {
                char::from_u32(b).map(String::from).unwrap_or_default()
            }
        })
        .collect();
    check(
        &c,
        "\"char\"",
        Some("hashchar"),
        "charsend",
        &kernel(18),
        &chars,
    )
    .await;
    let lsns: Vec<String> = (0..N)
        .map(|_| format!("{:X}/{:X}", rng.next() >> 40, rng.next() >> 32))
        .collect();
    check(
        &c,
        "pg_lsn",
        Some("pg_lsn_hash"),
        "pg_lsn_send",
        &kernel(3220),
        &lsns,
    )
    .await;
}

fn random_string(rng: &mut Rng) -> String {
    const POOL: &[&str] = &[
        "a", "b", "Z", "0", " ", "_", "-", "\"", "'", "\\", ",", "{", "}", "é", "ß", "ж", "日",
        "本", "😀", "\t", "\n",
    ];
    let len = match rng.below(10) {
        0 => 0,
        1 => rng.range(100, 3000) as usize,
        _ => rng.below(40) as usize,
    };
    (0..len)
        .map(|_| POOL[rng.below(POOL.len() as u64) as usize])
        .collect()
}

#[tokio::test]
async fn string_types_match_server() {
    let (_db, c) = client("hash_strings").await;
    let mut rng = Rng::new();
    let mut texts: Vec<String> = [
        "",
        " ",
        "a",
        "  leading",
        "trailing  ",
        "привет мир",
        "tenant-42",
        "日本語テキスト",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    texts.extend((0..N).map(|_| random_string(&mut rng)));
    check(
        &c,
        "text",
        Some("hashtext"),
        "textsend",
        &kernel(25),
        &texts,
    )
    .await;
    check(
        &c,
        "varchar",
        Some("hashtext"),
        "varcharsend",
        &kernel(1043),
        &texts,
    )
    .await;
    check(
        &c,
        "bpchar",
        Some("hashbpchar"),
        "bpcharsend",
        &kernel(1042),
        &texts,
    )
    .await;
    check(
        &c,
        "char(12)",
        Some("hashbpchar"),
        "bpcharsend",
        &kernel(1042),
        &texts
            .iter()
            .map(|t| t.chars().take(12).collect())
            .collect::<Vec<_>>(),
    )
    .await;
    let names: Vec<String> = texts
        .iter()
        .map(|t| {
            t.chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .take(60)
                .collect()
        })
        .collect();
    check(
        &c,
        "name",
        Some("hashname"),
        "namesend",
        &kernel(19),
        &names,
    )
    .await;

    let mut bytea: Vec<String> = vec!["\\x".into(), "\\x00".into(), "\\x00ff10".into()];
    bytea.extend((0..N).map(|_| {
        let len = if rng.chance(5) {
            rng.range(500, 5000)
        } else {
            rng.range(0, 64)
        };
        let mut s = String::from("\\x");
        for _ in 0..len {
            let _ = write!(s, "{:02x}", rng.below(256));
        }
        s
    }));
    check(&c, "bytea", None, "byteasend", &kernel(17), &bytea).await;

    let mut uuids: Vec<String> = vec![
        "00000000-0000-0000-0000-000000000000".into(),
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into(),
        "ffffffff-ffff-ffff-ffff-ffffffffffff".into(),
    ];
    uuids.extend((0..N).map(|_| {
        let (a, b) = (rng.next(), rng.next());
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        )
    }));
    check(
        &c,
        "uuid",
        Some("uuid_hash"),
        "uuid_send",
        &kernel(2950),
        &uuids,
    )
    .await;
}

fn random_numeric(rng: &mut Rng) -> String {
    let sign = if rng.chance(40) { "-" } else { "" };
    match rng.below(12) {
        0 => format!("{sign}{}", rng.num(1, 40)),
        1 => format!(
            "{sign}0.{}{}",
            "0".repeat(rng.below(120) as usize),
            rng.num(1, 30)
        ),
        2 => format!("{sign}{}e{}", rng.num(1, 20), rng.range(-300, 300)),
        3 => format!("{sign}{}.{}", rng.num(400, 1200), rng.num(0, 1200)),
        4 => format!(
            "{sign}{}{}",
            rng.range(1, 9),
            "0".repeat(rng.below(60) as usize)
        ),
        5 => format!(
            "{sign}{}.{}",
            rng.num(1, 20),
            "0".repeat(rng.below(20) as usize)
        ),
        _ => format!("{sign}{}.{}", rng.num(1, 25), rng.num(1, 25)),
    }
}

#[tokio::test]
async fn numeric_matches_server() {
    let (_db, c) = client("hash_numeric").await;
    let mut rng = Rng::new();
    let mut lits: Vec<String> = [
        "0",
        "-0",
        "0.000",
        "1",
        "-1",
        "1.5",
        "-1.5",
        "0.5",
        "12345.678",
        "1e10",
        "100",
        "30",
        "NaN",
        "Infinity",
        "-Infinity",
        "0.00012",
        "9999",
        "10000",
        "0.0001",
        "1e-16383",
        "1e131071",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    lits.extend((0..N).map(|_| random_numeric(&mut rng)));
    check(
        &c,
        "numeric",
        Some("hash_numeric"),
        "numeric_send",
        &kernel(1700),
        &lits,
    )
    .await;
    // A typmod rounds on input: the stored (rounded) value is what is hashed and sent.
    check(
        &c,
        "numeric(12,3)",
        Some("hash_numeric"),
        "numeric_send",
        &kernel(1700),
        &(0..N)
            .map(|_| format!("{}.{}", rng.num(1, 9), rng.digits(6)))
            .collect::<Vec<_>>(),
    )
    .await;
}

#[tokio::test]
async fn float_types_match_server() {
    let (_db, c) = client("hash_floats").await;
    let mut rng = Rng::new();
    let specials = [
        "0",
        "-0",
        "NaN",
        "Infinity",
        "-Infinity",
        "1.5",
        "-1",
        "1e308",
        "4.9e-324",
        "2.2250738585072014e-308",
        "1e-45",
        "3.4028235e38",
    ];
    let mut f8: Vec<String> = specials.iter().map(|s| s.to_string()).collect();
    f8.extend((0..N).map(|_| {
        let v = f64::from_bits(rng.next());
        if v.is_nan() {
            "NaN".to_string()
        } else if v.is_infinite() {
            format!("{v}")
        } else {
            format!("{v:e}")
        }
    }));
    f8.extend(
        (0..N / 4).map(|_| format!("{}", (rng.range(-1_000_000, 1_000_000) as f64) / 1000.0)),
    );
    let f8: Vec<String> = f8
        .into_iter()
        .map(|s| s.replace("inf", "Infinity"))
        .collect();
    check(
        &c,
        "float8",
        Some("hashfloat8"),
        "float8send",
        &kernel(701),
        &f8,
    )
    .await;
    let mut f4: Vec<String> = specials
        .iter()
        .filter(|s| !s.contains("e3") && !s.contains("e-3"))
        .map(|s| s.to_string())
        .collect();
    f4.extend((0..N).map(|_| {
        let v = f32::from_bits(rng.next() as u32);
        if v.is_nan() {
            "NaN".to_string()
        } else if v.is_infinite() {
            format!("{v}").replace("inf", "Infinity")
        } else {
            format!("{v:e}")
        }
    }));
    check(
        &c,
        "float4",
        Some("hashfloat4"),
        "float4send",
        &kernel(700),
        &f4,
    )
    .await;
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm; independent of the
/// engine's `date2j`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn date_literal(days_since_1970: i64) -> String {
    let (y, m, d) = civil(days_since_1970);
    if y <= 0 {
        format!("{:04}-{m:02}-{d:02} BC", 1 - y)
    } else {
        format!("{y:04}-{m:02}-{d:02}")
    }
}

fn time_literal(us: i64) -> String {
    format!(
        "{:02}:{:02}:{:02}.{:06}",
        us / 3_600_000_000,
        us / 60_000_000 % 60,
        us / 1_000_000 % 60,
        us % 1_000_000
    )
}

/// Days of 4713-11-24 BC (julian day 0) and 294276-12-31, relative to 1970-01-01.
const MIN_DAY: i64 = -2_440_588;
const MAX_TS_DAY: i64 = 106_741_034;

#[tokio::test]
async fn date_and_time_types_match_server() {
    let (_db, c) = client("hash_datetime").await;
    let mut rng = Rng::new();
    let mut dates: Vec<String> = [
        "infinity",
        "-infinity",
        "2000-01-01",
        "1997-08-08",
        "2024-02-29",
        "0001-01-01",
        "0001-12-31 BC",
        "4713-11-24 BC",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    dates.extend((0..N).map(|_| {
        date_literal(if rng.chance(70) {
            rng.range(-40_000, 40_000)
        } else {
            rng.range(MIN_DAY, 2_000_000_000)
        })
    }));
    check(&c, "date", None, "date_send", &kernel(1082), &dates).await;

    let mut times: Vec<String> = ["00:00:00", "24:00:00", "23:59:59.999999", "12:30"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    times.extend((0..N).map(|_| time_literal(rng.range(0, 86_400_000_000 - 1))));
    check(
        &c,
        "time",
        Some("time_hash"),
        "time_send",
        &kernel(1083),
        &times,
    )
    .await;
    let timetz: Vec<String> = (0..N)
        .map(|_| {
            format!(
                "{}{:+03}:{:02}",
                time_literal(rng.range(0, 86_399_999_999)),
                rng.range(-15, 15),
                rng.below(4) * 15
            )
        })
        .collect();
    check(
        &c,
        "timetz",
        Some("timetz_hash"),
        "timetz_send",
        &kernel(1266),
        &timetz,
    )
    .await;

    let mut stamps: Vec<String> = [
        "infinity",
        "-infinity",
        "2000-01-01 00:00:00",
        "2024-01-01 12:30:00.123456",
        "0044-03-15 12:00:00 BC",
        "4713-11-24 00:00:00+00 BC",
        "294276-12-31 23:59:59.999999+00",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    stamps.extend((0..N).map(|_| {
        let day = if rng.chance(70) {
            rng.range(-40_000, 40_000)
        } else {
            rng.range(MIN_DAY + 1, MAX_TS_DAY - 1)
        };
        let time = time_literal(rng.range(0, 86_400_000_000 - 1));
        let time = if rng.chance(30) {
            time[..8].to_string()
        } else {
            time
        };
        let date = date_literal(day);
        match date.strip_suffix(" BC") {
            Some(d) => format!("{d} {time} BC"),
            None => format!("{date} {time}"),
        }
    }));
    check(
        &c,
        "timestamp",
        Some("timestamp_hash"),
        "timestamp_send",
        &kernel(1114),
        &stamps,
    )
    .await;
    let with_offsets: Vec<String> = stamps
        .iter()
        .map(|s| {
            // The range ends cannot take an offset (it would leave the valid range).
            if s.contains("infinity")
                || s.starts_with("294276")
                || s.starts_with("4713")
                || rng.chance(20)
            {
                return s.clone();
            }
            let (body, bc) = s
                .strip_suffix(" BC")
                .map_or((s.as_str(), ""), |b| (b, " BC"));
            format!(
                "{body}{:+03}:{:02}{bc}",
                rng.range(-12, 14),
                rng.below(4) * 15
            )
        })
        .collect();
    let k = kernel(1184);
    check(
        &c,
        "timestamptz",
        None,
        "timestamptz_send",
        &k,
        &with_offsets,
    )
    .await;
    // The text path must accept any offset the server prints: zones with odd (and, before
    // 1937, second-granular) offsets.
    for zone in [
        "Asia/Kathmandu",
        "America/St_Johns",
        "Europe/Amsterdam",
        "Pacific/Chatham",
    ] {
        c.batch_execute(&format!("SET TimeZone = '{zone}'"))
            .await
            .unwrap();
        check(
            &c,
            "timestamptz",
            None,
            "timestamptz_send",
            &k,
            &with_offsets,
        )
        .await;
    }
    c.batch_execute("SET TimeZone = 'UTC'").await.unwrap();
}

#[tokio::test]
async fn interval_matches_server() {
    let (_db, c) = client("hash_interval").await;
    let mut rng = Rng::new();
    let mut lits: Vec<String> = [
        "0",
        "1 day",
        "24 hours",
        "1 mon",
        "30 days",
        "-1 days +00:00:01",
        "1 year 2 mons -3 days +04:05:06.789",
        "-178000000 years",
        "178000000 years",
        "2562047788 hours",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    lits.extend((0..N).map(|_| {
        let months = if rng.chance(20) {
            rng.range(-2_000_000_000, 2_000_000_000)
        } else {
            rng.range(-1000, 1000)
        };
        let days = if rng.chance(20) {
            rng.range(-2_000_000_000, 2_000_000_000)
        } else {
            rng.range(-1000, 1000)
        };
        let us = if rng.chance(20) {
            rng.range(-9_000_000_000_000_000, 9_000_000_000_000_000)
        } else {
            rng.range(-100_000_000_000, 100_000_000_000)
        };
        format!("{months} mons {days} days {us} microseconds")
    }));
    check(
        &c,
        "interval",
        Some("interval_hash"),
        "interval_send",
        &kernel(1186),
        &lits,
    )
    .await;
}

#[tokio::test]
async fn network_types_match_server() {
    let (_db, c) = client("hash_inet").await;
    let mut rng = Rng::new();
    let mut lits: Vec<String> = [
        "10.1.2.3/24",
        "10.1.2.3",
        "0.0.0.0/0",
        "::1",
        "::",
        "2001:db8::1/64",
        "::ffff:1.2.3.4",
        "::1.2.3.4",
        "fe80::1/10",
        "255.255.255.255",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    lits.extend((0..N).map(|_| {
        if rng.chance(50) {
            let a = rng.next() as u32;
            format!(
                "{}.{}.{}.{}/{}",
                a >> 24,
                (a >> 16) & 255,
                (a >> 8) & 255,
                a & 255,
                rng.range(0, 32)
            )
        } else {
            let groups: Vec<String> = (0..8)
                .map(|_| {
                    if rng.chance(30) {
                        "0".into()
                    } else {
                        format!("{:x}", rng.below(65536))
                    }
                })
                .collect();
            format!("{}/{}", groups.join(":"), rng.range(0, 128))
        }
    }));
    check(
        &c,
        "inet",
        Some("hashinet"),
        "inet_send",
        &kernel(869),
        &lits,
    )
    .await;
    let cidrs: Vec<String> = c
        .query(
            "SELECT network(s::inet)::text FROM unnest($1::text[]) s",
            &[&lits],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    check(
        &c,
        "cidr",
        Some("hashinet"),
        "cidr_send",
        &kernel(650),
        &cidrs,
    )
    .await;
    let macs: Vec<String> = (0..N)
        .map(|_| {
            let b = rng.next().to_be_bytes();
            format!(
                "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                b[0], b[1], b[2], b[3], b[4], b[5]
            )
        })
        .collect();
    check(
        &c,
        "macaddr",
        Some("hashmacaddr"),
        "macaddr_send",
        &kernel(829),
        &macs,
    )
    .await;
    let macs8: Vec<String> = (0..N)
        .map(|_| {
            rng.next()
                .to_be_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        })
        .collect();
    check(
        &c,
        "macaddr8",
        Some("hashmacaddr8"),
        "macaddr8_send",
        &kernel(774),
        &macs8,
    )
    .await;
}

fn random_json(rng: &mut Rng, depth: u32) -> String {
    let scalar = |rng: &mut Rng| -> String {
        match rng.below(8) {
            0 => "null".into(),
            1 => "true".into(),
            2 => "false".into(),
            3 => format!("{}", rng.range(-1_000_000, 1_000_000)),
            4 => format!(
                "{}.{}e{}",
                rng.range(-99, 99),
                rng.digits(3),
                rng.range(-20, 20)
            ),
            5 => "\"\\u00e9\\ud83d\\ude00\\n\\\"x\\/\"".into(),
            _ => format!("{:?}", random_string(rng).replace(['\t', '\n'], "")),
        }
    };
    if depth == 0 || rng.chance(35) {
        return scalar(rng);
    }
    let n = rng.below(6);
    if rng.chance(50) {
        let items: Vec<String> = (0..n).map(|_| random_json(rng, depth - 1)).collect();
        format!("[{}]", items.join(", "))
    } else {
        let keys = ["a", "b", "aa", "k", "s", "ab", "é", "", "key", "b"];
        let items: Vec<String> = (0..n)
            .map(|_| {
                format!(
                    "\"{}\": {}",
                    keys[rng.below(keys.len() as u64) as usize],
                    random_json(rng, depth - 1)
                )
            })
            .collect();
        format!("{{{}}}", items.join(","))
    }
}

#[tokio::test]
async fn jsonb_matches_server() {
    let (_db, c) = client("hash_jsonb").await;
    let mut rng = Rng::new();
    let mut lits: Vec<String> = [
        "{}",
        "[]",
        "1",
        "\"a\"",
        "null",
        "true",
        "[[]]",
        "{\"a\": {}}",
        "{\"b\":1,\"a\":2,\"b\":3}",
        "1.50",
        "-0",
        "1e400",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    lits.extend((0..N).map(|_| random_json(&mut rng, 4)));
    check(
        &c,
        "jsonb",
        Some("jsonb_hash"),
        "jsonb_send",
        &kernel(3802),
        &lits,
    )
    .await;
}

#[tokio::test]
async fn enum_matches_server_with_coordinator_oids() {
    let (db, c) = client("hash_enum").await;
    // Labels added out of order get OIDs that do not follow the sort order.
    db.execute("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')")
        .unwrap();
    db.execute("ALTER TYPE mood ADD VALUE 'meh' BEFORE 'ok'; ALTER TYPE mood ADD VALUE 'ecstatic'; ALTER TYPE mood ADD VALUE 'Ünïcode label'").unwrap();
    let labels: Vec<(String, u32)> = c
        .query(
            "SELECT enumlabel::text, oid FROM pg_enum WHERE enumtypid = 'mood'::regtype",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(labels.len(), 6);
    let k = HashKernel::Enum(Arc::new(EnumLabels::new(
        labels.iter().map(|(l, o)| (l.as_str(), *o)),
    )));
    let lits: Vec<String> = labels.iter().map(|(l, _)| l.clone()).collect();
    check(&c, "mood", Some("hashenum"), "enum_send", &k, &lits).await;
}

#[tokio::test]
async fn arrays_match_server() {
    let (_db, c) = client("hash_arrays").await;
    let mut rng = Rng::new();
    let mut ints: Vec<String> = [
        "{}",
        "{1,2,3}",
        "{1,NULL,3}",
        "{NULL}",
        "{{1,2},{3,4}}",
        "[5:6]={1,2}",
        "[0:1][2:3]={{1,2},{3,4}}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    ints.extend((0..N).map(|_| {
        let items: Vec<String> = (0..rng.below(8))
            .map(|_| {
                if rng.chance(10) {
                    "NULL".into()
                } else {
                    rng.range(-1_000_000, 1_000_000).to_string()
                }
            })
            .collect();
        format!("{{{}}}", items.join(","))
    }));
    let int4_array = HashKernel::Array(Arc::new(kernel(23)));
    check(
        &c,
        "int4[]",
        Some("hash_array"),
        "array_send",
        &int4_array,
        &ints,
    )
    .await;
    let mut texts: Vec<String> = [
        "{a,b,c}",
        "{d,e,f}",
        "{\"\",\"NULL\",NULL}",
        "{\"a,b\",\"c\\\"d\",\" x \"}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    texts.extend((0..N).map(|_| {
        let items: Vec<String> = (0..rng.below(6))
            .map(|_| {
                format!(
                    "\"{}\"",
                    random_string(&mut rng)
                        .chars()
                        .take(20)
                        .collect::<String>()
                        .replace('\\', "\\\\")
                        .replace('"', "\\\"")
                )
            })
            .collect();
        format!("{{{}}}", items.join(","))
    }));
    let text_array = HashKernel::Array(Arc::new(kernel(25)));
    check(
        &c,
        "text[]",
        Some("hash_array"),
        "array_send",
        &text_array,
        &texts,
    )
    .await;
    let nums: Vec<String> = (0..N / 3)
        .map(|_| {
            format!(
                "{{{},{}}}",
                random_numeric(&mut rng),
                random_numeric(&mut rng)
            )
        })
        .collect();
    check(
        &c,
        "numeric[]",
        Some("hash_array"),
        "array_send",
        &HashKernel::Array(Arc::new(kernel(1700))),
        &nums,
    )
    .await;
}

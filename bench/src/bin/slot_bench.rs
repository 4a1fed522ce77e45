//! slot_bench: how fast pgwarp's replication client drains a logical slot, next to
//! `pg_recvlogical` draining the same changes to `/dev/null`, in the same run.
//!
//! Several identical slots are created before the load, so every drain sees exactly the same
//! WAL. The load is `--rows` row inserts in `--transactions` transactions. pgwarp's client
//! decodes every pgoutput message (framing and tuple) with `pgwarp-decoder`; `pg_recvlogical`
//! only copies bytes. Drains alternate (pgwarp, pg_recvlogical, pg_recvlogical, pgwarp, ...)
//! so neither side profits from a warmer cache. Both use the same plugin options
//! (`proto_version`, `publication_names`, `binary 'true'`).
//!
//! ```text
//! cargo run --release -p pgwarp-bench --bin slot_bench -- --rows 1000000 --transactions 10
//! ```

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use pgwarp::conn::{self, ConnConfig};
use pgwarp::source::replication::max_proto_version;
use pgwarp::source::{ReplicationClient, StreamOptions};
use pgwarp_decoder::{Decoder, Lsn, Message, ReplicationMessage};
use pgwarp_tests::{PgServer, ServerOptions};

#[derive(Debug, Parser)]
#[command(about = "Drain a logical slot with pgwarp's client and with pg_recvlogical")]
struct Args {
    /// Row changes to generate.
    #[arg(long, default_value_t = 1_000_000)]
    rows: i64,
    /// Transactions the rows are spread over.
    #[arg(long, default_value_t = 10)]
    transactions: i64,
    /// Drains per client.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
}

/// One drain's measurement.
struct Drain {
    elapsed: Duration,
    /// CPU time (user + system) the client itself used.
    cpu: Duration,
    rows: i64,
    bytes: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let server = PgServer::start_with(
        ServerOptions::default()
            .setting("shared_buffers", "256MB")
            .setting("max_wal_size", "4GB")
            .setting("logical_decoding_work_mem", "256MB"),
    )?;
    let db = server.create_database("slot_bench")?;
    let conn_string = db.conn_string();
    let cfg = ConnConfig::parse(&format!("{conn_string} sslmode=disable"))?;
    let (admin, _conn) = conn::connect(&cfg).await?;
    admin
        .batch_execute(
            "CREATE TABLE bench_rows (id bigint PRIMARY KEY, k int NOT NULL, amount numeric,
                                      note text, created timestamptz NOT NULL);
             CREATE PUBLICATION bench_pub FOR TABLE bench_rows;",
        )
        .await?;
    let slots: Vec<String> = (0..args.rounds * 2)
        .map(|i| format!("bench_slot_{i}"))
        .collect();
    for slot in &slots {
        admin
            .execute(
                "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
                &[slot],
            )
            .await?;
    }

    let per_tx = args.rows / args.transactions;
    let load_start = Instant::now();
    for t in 0..args.transactions {
        let (from, to) = (
            t * per_tx + 1,
            if t + 1 == args.transactions {
                args.rows
            } else {
                (t + 1) * per_tx
            },
        );
        admin
            .execute(
                "INSERT INTO bench_rows
                 SELECT i, (i % 1000)::int, (i * 1.25)::numeric, md5(i::text),
                        '2024-01-01'::timestamptz + i * interval '1 second'
                   FROM generate_series($1::int8, $2::int8) i",
                &[&from, &to],
            )
            .await?;
    }
    let end: String = admin
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await?
        .get(0);
    let end: Lsn = end.parse()?;
    let version: i32 = admin
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await?
        .get(0);
    let proto = max_proto_version(version.unsigned_abs()).as_u32();
    println!(
        "loaded {} rows in {} transactions in {:.1?}; WAL end {end}; pgoutput protocol {proto}",
        args.rows,
        args.transactions,
        load_start.elapsed()
    );

    let recvlogical = server.bin_dir().join("pg_recvlogical");
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for (round, pair) in slots.chunks(2).enumerate() {
        let (a, b) = (&pair[0], &pair[1]);
        // alternate which goes first
        let (first_ours, slot_ours, slot_theirs) = if round % 2 == 0 {
            (true, a, b)
        } else {
            (false, b, a)
        };
        if first_ours {
            ours.push(drain_pgwarp(&cfg, slot_ours, args.rows).await?);
            theirs.push(drain_recvlogical(
                &recvlogical,
                &conn_string,
                slot_theirs,
                proto,
                end,
            )?);
        } else {
            theirs.push(drain_recvlogical(
                &recvlogical,
                &conn_string,
                slot_theirs,
                proto,
                end,
            )?);
            ours.push(drain_pgwarp(&cfg, slot_ours, args.rows).await?);
        }
    }
    let bytes = ours.first().map_or(0, |d| d.bytes);
    println!(
        "\n{:<34} {:>10} {:>12} {:>10} {:>10}",
        "client", "seconds", "rows/s", "MB/s", "client CPU"
    );
    for (name, runs) in [
        ("pgwarp (decode every message)", &ours),
        ("pg_recvlogical -f /dev/null", &theirs),
    ] {
        for run in runs.iter() {
            let secs = run.elapsed.as_secs_f64();
            println!(
                "{name:<34} {secs:>10.3} {:>12.0} {:>10.1} {:>9.3}s",
                args.rows as f64 / secs,
                bytes as f64 / secs / 1e6,
                run.cpu.as_secs_f64()
            );
        }
    }
    let median = |runs: &[Drain]| {
        let mut times: Vec<Duration> = runs.iter().map(|d| d.elapsed).collect();
        times.sort();
        times.get(times.len() / 2).copied().unwrap_or_default()
    };
    let best = |runs: &[Drain]| runs.iter().map(|d| d.elapsed).min().unwrap_or_default();
    for (label, pick) in [
        ("best", &best as &dyn Fn(&[Drain]) -> Duration),
        ("median", &median),
    ] {
        let (o, t) = (pick(&ours), pick(&theirs));
        println!(
            "{label}: pgwarp {:.3}s ({:.0} rows/s), pg_recvlogical {:.3}s ({:.0} rows/s): \
             pgwarp takes {:.1}% of pg_recvlogical's time",
            o.as_secs_f64(),
            args.rows as f64 / o.as_secs_f64(),
            t.as_secs_f64(),
            args.rows as f64 / t.as_secs_f64(),
            100.0 * o.as_secs_f64() / t.as_secs_f64(),
        );
    }
    println!(
        "({} bytes of pgoutput and {} decoded rows per drain)",
        bytes,
        ours.first().map_or(0, |d| d.rows)
    );
    Ok(())
}

/// Streams `slot` until `rows` inserts and their final commit have been decoded.
async fn drain_pgwarp(cfg: &ConnConfig, slot: &str, rows: i64) -> Result<Drain> {
    let started = Instant::now();
    let cpu_before = cpu_time(false)?;
    let client = ReplicationClient::connect(cfg).await?;
    let opts = StreamOptions {
        messages: false,
        streaming: false,
        ..StreamOptions::new(["bench_pub"])
    };
    let mut stream = client.start_replication(slot, Lsn(0), &opts).await?;
    let mut decoder = Decoder::new(stream.proto_version());
    let (mut inserts, mut bytes, mut columns) = (0i64, 0u64, 0usize);
    loop {
        let Some(message) = stream.next().await? else {
            bail!("stream ended early")
        };
        let ReplicationMessage::XLogData(w) = message else {
            continue;
        };
        bytes += w.data.len() as u64;
        match decoder.decode_at(&w.data, w.wal_start)? {
            Message::Insert(insert) => {
                inserts += 1;
                columns += insert.new.iter().filter(|c| c.bytes().is_some()).count();
            }
            Message::Commit(commit) if inserts >= rows => {
                stream.set_durable(commit.end_lsn);
                break;
            }
            _ => {}
        }
    }
    let elapsed = started.elapsed();
    let cpu = cpu_time(false)?.saturating_sub(cpu_before);
    stream.stop().await?;
    if inserts != rows || columns != (rows as usize) * 5 {
        bail!("pgwarp drained {inserts} inserts with {columns} values, expected {rows} rows of 5");
    }
    Ok(Drain {
        elapsed,
        cpu,
        rows: inserts,
        bytes,
    })
}

/// Runs `pg_recvlogical` on `slot` up to `end`, writing to /dev/null.
fn drain_recvlogical(
    program: &PathBuf,
    conn_string: &str,
    slot: &str,
    proto: u32,
    end: Lsn,
) -> Result<Drain> {
    let started = Instant::now();
    let cpu_before = cpu_time(true)?;
    let status = Command::new(program)
        .args([
            "-d",
            conn_string,
            "-S",
            slot,
            "--start",
            "--no-loop",
            "-f",
            "/dev/null",
        ])
        .args([
            "-o",
            &format!("proto_version={proto}"),
            "-o",
            "publication_names=bench_pub",
            "-o",
            "binary=true",
        ])
        .arg(format!("--endpos={end}"))
        .status()
        .with_context(|| format!("could not run {}", program.display()))?;
    let elapsed = started.elapsed();
    if !status.success() {
        bail!("pg_recvlogical failed: {status}");
    }
    let cpu = cpu_time(true)?.saturating_sub(cpu_before);
    Ok(Drain {
        elapsed,
        cpu,
        rows: 0,
        bytes: 0,
    })
}

/// CPU time of this process, or of its waited-for children, from `/proc/self/stat`
/// (`utime + stime` or `cutime + cstime`, in clock ticks of 10 ms).
fn cpu_time(children: bool) -> Result<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // fields after the command name, which is in parentheses and may contain spaces
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc/self/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let (a, b) = if children { (13, 14) } else { (11, 12) };
    let ticks: u64 = fields.get(a).context("short stat")?.parse::<u64>()?
        + fields.get(b).context("short stat")?.parse::<u64>()?;
    Ok(Duration::from_millis(ticks * 10))
}

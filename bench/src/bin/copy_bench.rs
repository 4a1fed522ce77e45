//! copy_bench: the sink's write paths against the limits, in the same run.
//!
//! * **COPY path vs L-copy.** Two worker servers hold pre-created shard tables. The same rows,
//!   pre-split per shard as binary COPY tuples, are written (a) by **L-copy**: one plain
//!   tokio-postgres `copy_in` stream per node, shard after shard in one transaction, the bytes
//!   sent as they are; (b) by the **sink**: one `NodeWriter` per node applying one batch of
//!   `Change::Insert` rows (`Row::Copy`, zero-copy slices of the same buffers), with planning,
//!   encoding and the progress row. Runs alternate; tables are truncated between runs.
//! * **Apply.** An update-heavy batch (every row of a batch updated, pgoutput binary images) and
//!   a delete-heavy batch (key-only images) against a loaded table, through the sink's staged
//!   path (COPY into a temporary table, then one set-based statement), next to the `unnest`
//!   alternative (arrays bound as parameters, one statement).
//!
//! ```text
//! cargo run --release -p pgwarp-bench --bin copy_bench -- --rows 1000000 --rounds 3
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use clap::Parser;
use futures_util::{SinkExt, pin_mut};
use pgwarp_decoder::{ColumnRef, Lsn, TupleData};
use pgwarp_sink::{
    BINARY_COPY_SIGNATURE, Change, CopyTuple, NoTlsConnector, NodeBatch, NodeWriter, Row, Shard,
    ShardTarget, TargetTable, WriterConfig,
};
use pgwarp_tests::{PgServer, ServerOptions, TestDb};
use tokio_postgres::{Client, NoTls};

#[derive(Debug, Parser)]
#[command(about = "Sink COPY path vs raw parallel binary COPY, and staged apply vs unnest")]
struct Args {
    /// Rows for the COPY comparison.
    #[arg(long, default_value_t = 1_000_000)]
    rows: i64,
    /// Shards per node.
    #[arg(long, default_value_t = 8)]
    shards_per_node: usize,
    /// Runs per COPY variant.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Rows per apply batch (the table holds twice as many).
    #[arg(long, default_value_t = 100_000)]
    apply_rows: i64,
}

const SHARD_DDL: &str =
    "(id bigint PRIMARY KEY, account int, amount float8, created timestamptz, note text)";
const COLUMNS: [&str; 5] = ["id", "account", "amount", "created", "note"];

struct Node {
    _server: PgServer,
    db: TestDb,
    shards: Vec<Shard>,
    /// Per shard: the concatenated binary tuples, and the tuples as slices of it.
    data: Vec<(Bytes, Vec<CopyTuple>)>,
}

async fn connect(conn: &str) -> Result<Client> {
    let (client, connection) = tokio_postgres::connect(conn, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// One row as a binary COPY tuple.
fn put_row(out: &mut BytesMut, id: i64) {
    out.put_i16(5);
    out.put_i32(8);
    out.put_i64(id);
    out.put_i32(4);
    out.put_i32((id % 10_000) as i32);
    out.put_i32(8);
    out.put_f64(id as f64 * 0.25);
    out.put_i32(8);
    out.put_i64(700_000_000_000_000 + id * 1_000_000);
    let note = format!(
        "order {id} note {:x}",
        (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    );
    out.put_i32(note.len() as i32);
    out.put_slice(note.as_bytes());
}

async fn start_node(index: usize, args: &Args, table: &Arc<TargetTable>) -> Result<Node> {
    let server = PgServer::start_with(
        ServerOptions::default()
            .setting("shared_buffers", "256MB")
            .setting("max_wal_size", "4GB")
            .setting("checkpoint_timeout", "30min"),
    )?;
    let db = server.create_database("copy_bench")?;
    let mut shards = Vec::new();
    for s in 0..args.shards_per_node {
        let name = format!("items_{}", 102008 + index + 2 * s);
        db.execute(&format!("CREATE TABLE {name} {SHARD_DDL}"))?;
        shards.push(Arc::new(ShardTarget::new(table.clone(), "public", &name)));
    }
    Ok(Node {
        _server: server,
        db,
        shards,
        data: Vec::new(),
    })
}

async fn truncate(nodes: &[Node]) -> Result<()> {
    for n in nodes {
        let names: Vec<&str> = n.shards.iter().map(|s| s.quoted_name()).collect();
        n.db.execute(&format!("TRUNCATE {}; CHECKPOINT", names.join(", ")))?;
    }
    Ok(())
}

/// L-copy on one node: every shard's bytes through `COPY ... FROM STDIN (FORMAT binary)`.
async fn lcopy_node(node: &Node, client: &Client) -> Result<u64> {
    client.batch_execute("BEGIN").await?;
    let mut rows = 0;
    for (shard, (bytes, _)) in node.shards.iter().zip(&node.data) {
        let sink = client
            .copy_in::<_, Bytes>(&format!(
                "COPY {} ({}) FROM STDIN (FORMAT binary)",
                shard.quoted_name(),
                COLUMNS.join(", ")
            ))
            .await?;
        pin_mut!(sink);
        let mut header = BytesMut::new();
        header.put_slice(BINARY_COPY_SIGNATURE);
        header.put_u64(0);
        sink.send(header.freeze()).await?;
        for at in (0..bytes.len()).step_by(64 * 1024) {
            sink.send(bytes.slice(at..(at + 64 * 1024).min(bytes.len())))
                .await?;
        }
        sink.send(Bytes::from_static(&[0xff, 0xff])).await?;
        rows += sink.as_mut().finish().await?;
    }
    client.batch_execute("COMMIT").await?;
    Ok(rows)
}

/// The sink on one node: one batch of inserts, as per-shard bulk chunks (`bulk`) or one
/// `Change::Insert` per row.
async fn sink_node(node: &Node, w: &mut NodeWriter, round: u64, bulk: bool) -> Result<u64> {
    let mut changes = Vec::new();
    for (shard, (bytes, tuples)) in node.shards.iter().zip(&node.data) {
        if bulk {
            changes.push(Change::InsertRows {
                shard: shard.clone(),
                data: bytes.clone(),
                rows: tuples.len() as u64,
            });
        } else {
            changes.extend(tuples.iter().map(|t| Change::Insert {
                shard: shard.clone(),
                row: Row::Copy(t.clone()),
            }));
        }
    }
    let report = w.apply(&NodeBatch::complete(changes, Lsn(round))).await?;
    Ok(report.counts.inserted)
}

fn rate(rows: u64, d: Duration) -> f64 {
    rows as f64 / d.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn copy_comparison(args: &Args, nodes: &mut [Node]) -> Result<()> {
    // Pre-split rows: id -> shard (id mod total shards), shard k on node k % 2.
    let total = nodes.len() * args.shards_per_node;
    let mut bufs: Vec<BytesMut> = (0..total).map(|_| BytesMut::new()).collect();
    for id in 1..=args.rows {
        put_row(&mut bufs[(id as usize) % total], id);
    }
    for (k, buf) in bufs.into_iter().enumerate() {
        let bytes = buf.freeze();
        let mut tuples = Vec::new();
        let mut pos = 0;
        while pos < bytes.len() {
            let (t, next) = CopyTuple::parse_at(&bytes, pos)?.context("unexpected trailer")?;
            tuples.push(t);
            pos = next;
        }
        nodes[k % nodes.len()].data.push((bytes, tuples));
    }
    let bytes: usize = nodes
        .iter()
        .flat_map(|n| n.data.iter().map(|d| d.0.len()))
        .sum();
    println!(
        "COPY: {} rows, {:.1} MiB of binary tuples, {} shards on {} nodes, {} rounds",
        args.rows,
        bytes as f64 / (1 << 20) as f64,
        total,
        nodes.len(),
        args.rounds
    );
    const NAMES: [&str; 3] = ["L-copy", "sink bulk", "sink rows"];
    let mut rates: [Vec<f64>; 3] = Default::default();
    let mut run = 0u64;
    for round in 0..args.rounds {
        let order = match round % 3 {
            0 => [0, 1, 2],
            1 => [2, 0, 1],
            _ => [1, 2, 0],
        };
        for variant in order {
            truncate(nodes).await?;
            // Connections are opened before the clock starts, for both variants.
            let (elapsed, rows) = if variant == 0 {
                let c0 = connect(&nodes[0].db.conn_string()).await?;
                let c1 = connect(&nodes[1].db.conn_string()).await?;
                let start = Instant::now();
                let (a, b) =
                    tokio::try_join!(lcopy_node(&nodes[0], &c0), lcopy_node(&nodes[1], &c1))?;
                (start.elapsed(), a + b)
            } else {
                let writer = |n: &Node| {
                    NodeWriter::connect(
                        Arc::new(NoTlsConnector::new(n.db.conn_string())),
                        WriterConfig::new("copy_bench", "node"),
                    )
                };
                let (mut w0, mut w1) = tokio::try_join!(writer(&nodes[0]), writer(&nodes[1]))?;
                run += 1;
                let r = run;
                let start = Instant::now();
                let bulk = variant == 1;
                let (a, b) = tokio::try_join!(
                    sink_node(&nodes[0], &mut w0, r, bulk),
                    sink_node(&nodes[1], &mut w1, r, bulk)
                )?;
                (start.elapsed(), a + b)
            };
            anyhow::ensure!(rows == args.rows as u64, "wrote {rows} rows");
            let r = rate(rows, elapsed);
            println!(
                "  round {round} {:<9} {:>8.0} ms {:>10.0} rows/s",
                NAMES[variant],
                elapsed.as_secs_f64() * 1000.0,
                r
            );
            rates[variant].push(r);
        }
    }
    let mut per_row = Vec::new();
    for (shard, (_, tuples)) in nodes[0].shards.iter().zip(&nodes[0].data) {
        per_row.extend(tuples.iter().map(|t| Change::Insert {
            shard: shard.clone(),
            row: Row::Copy(t.clone()),
        }));
    }
    let n = per_row.len();
    let batch = NodeBatch::complete(per_row, Lsn(1));
    let start = Instant::now();
    batch.net_counts()?;
    println!(
        "  planning {n} single-row inserts for one node: {:.0} ms",
        start.elapsed().as_secs_f64() * 1000.0
    );
    let [l, bulk, rows] = rates.map(median);
    println!(
        "COPY median rows/s: L-copy {l:.0}, sink bulk {bulk:.0} ({:.3} of L-copy), \
         sink rows {rows:.0} ({:.3} of L-copy)",
        bulk / l,
        rows / l
    );
    Ok(())
}

/// A pgoutput-style binary tuple for the apply table `(id bigint, balance bigint, note text)`.
fn apply_tuple(id: i64, balance: Option<i64>, note: Option<&str>) -> Row {
    let id = id.to_be_bytes();
    let bal = balance.map(i64::to_be_bytes);
    let cols = [
        ColumnRef::Binary(&id),
        bal.as_ref()
            .map_or(ColumnRef::Null, |b| ColumnRef::Binary(b)),
        note.map_or(ColumnRef::Null, |n| ColumnRef::Binary(n.as_bytes())),
    ];
    Row::Tuple(TupleData::from_values(cols).expect("tuple"))
}

fn reload(db: &TestDb, rows: i64) -> Result<()> {
    db.execute(&format!(
        "DROP TABLE IF EXISTS acct; \
         CREATE TABLE acct (id bigint PRIMARY KEY, balance bigint, note text); \
         INSERT INTO acct SELECT g, g, 'account ' || g FROM generate_series(1, {rows}) g"
    ))?;
    db.execute("VACUUM ANALYZE acct")?;
    db.execute("CHECKPOINT")?;
    Ok(())
}

async fn apply_comparison(args: &Args, db: &TestDb) -> Result<()> {
    let n = args.apply_rows;
    let table = Arc::new(TargetTable::new(
        "public.acct",
        vec!["id".into(), "balance".into(), "note".into()],
        vec![0],
        true,
    )?);
    let shard: Shard = Arc::new(ShardTarget::new(table, "public", "acct"));
    let ids: Vec<i64> = (1..=n).map(|i| i * 2).collect();
    let notes: Vec<String> = ids.iter().map(|i| format!("updated {i}")).collect();
    println!(
        "apply: batches of {n} rows against a table of {} rows",
        2 * n
    );
    let mut lsn = 0;
    for round in 0..2 {
        // update-heavy, staged
        reload(db, 2 * n)?;
        let mut w = NodeWriter::connect(
            Arc::new(NoTlsConnector::new(db.conn_string())),
            WriterConfig::new(format!("apply{round}"), "node"),
        )
        .await?;
        let changes: Vec<Change> = ids
            .iter()
            .zip(&notes)
            .map(|(&id, note)| Change::Update {
                shard: shard.clone(),
                old_key: None,
                new: apply_tuple(id, Some(-id), Some(note)),
                moved_from: None,
            })
            .collect();
        lsn += 1;
        let batch = NodeBatch::complete(changes, Lsn(lsn));
        let start = Instant::now();
        batch.net_counts()?;
        let plan_upd = start.elapsed();
        let start = Instant::now();
        let r = w.apply(&batch).await?;
        let staged_upd = start.elapsed();
        anyhow::ensure!(r.counts.updated == n as u64);

        // update-heavy, unnest
        reload(db, 2 * n)?;
        let client = connect(&db.conn_string()).await?;
        let balances: Vec<i64> = ids.iter().map(|i| -i).collect();
        let start = Instant::now();
        client.batch_execute("BEGIN").await?;
        let done = client
            .execute(
                "UPDATE acct t SET balance = u.b, note = u.n \
                 FROM unnest($1::int8[], $2::int8[], $3::text[]) u(id, b, n) WHERE t.id = u.id",
                &[&ids, &balances, &notes],
            )
            .await?;
        client.batch_execute("COMMIT").await?;
        let unnest_upd = start.elapsed();
        anyhow::ensure!(done == n as u64);

        // delete-heavy, staged
        reload(db, 2 * n)?;
        let changes: Vec<Change> = ids
            .iter()
            .map(|&id| Change::Delete {
                shard: shard.clone(),
                key: apply_tuple(id, None, None),
            })
            .collect();
        lsn += 1;
        let batch = NodeBatch::complete(changes, Lsn(lsn));
        let start = Instant::now();
        batch.net_counts()?;
        let plan_del = start.elapsed();
        let start = Instant::now();
        let r = w.apply(&batch).await?;
        let staged_del = start.elapsed();
        anyhow::ensure!(r.counts.deleted == n as u64);

        // delete-heavy, unnest
        reload(db, 2 * n)?;
        let start = Instant::now();
        let done = client
            .execute("DELETE FROM acct WHERE id = ANY($1)", &[&ids])
            .await?;
        let unnest_del = start.elapsed();
        anyhow::ensure!(done == n as u64);

        let n = n as u64;
        println!(
            "  round {round}: update staged {:>7.0} rows/s (planning {:>3.0} ms), unnest {:>7.0} rows/s \
             | delete staged {:>7.0} rows/s (planning {:>3.0} ms), unnest {:>7.0} rows/s",
            rate(n, staged_upd),
            plan_upd.as_secs_f64() * 1000.0,
            rate(n, unnest_upd),
            rate(n, staged_del),
            plan_del.as_secs_f64() * 1000.0,
            rate(n, unnest_del)
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let table = Arc::new(TargetTable::new(
        "public.items",
        COLUMNS.iter().map(|c| c.to_string()).collect(),
        vec![0],
        true,
    )?);
    let mut nodes = vec![
        start_node(0, &args, &table).await?,
        start_node(1, &args, &table).await?,
    ];
    copy_comparison(&args, &mut nodes).await?;
    apply_comparison(&args, &nodes[0].db).await?;
    Ok(())
}

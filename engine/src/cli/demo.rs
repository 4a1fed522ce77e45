//! `pgwarp demo`: the whole migration on this machine, in well under a minute.
//!
//! ```text
//! pgwarp demo [--users N] [--stream-seconds S]
//! ```
//!
//! 1. Starts throwaway servers (the test harness's, `pgwarp-tests`): a source PostgreSQL and a
//!    Citus-shaped cluster of a coordinator and two workers (a real Citus cluster instead when
//!    `PGWARP_TEST_CITUS_COORDINATOR` names one).
//! 2. Loads a storefront: `users` distributed by `user_id`, `orders` colocated with it,
//!    `products` a reference table.
//! 3. Runs `sync` (check, snapshot, stream) while a write load runs on the source: new users
//!    and orders, updates, orders moving to other users (and so to other shards and nodes),
//!    deletes, price changes, and one larger transaction.
//! 4. Stops the load, waits until every node has applied the source's last change, stops the
//!    sync, and compares every table row for row (and every row's shard) with the source.
//! 5. Prints a summary: rows, throughput, final lag, verification.
//!
//! Everything is removed when the demo ends. It exits non-zero if the verification fails.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use pgwarp_tests::cluster::{CitusCluster, CitusFixture, ClusterSpec};
use pgwarp_tests::{PgServer, TestDb};

use crate::config::RawConfig;
use crate::pipeline::stats::LivePhase;
use crate::pipeline::{self, CancellationToken, SyncOptions, SyncOutcome};

/// Arguments of `pgwarp demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Users in the storefront (orders are three per user).
    #[arg(long, default_value_t = 50_000)]
    pub users: i64,
    /// How long the write load keeps running once streaming has started.
    #[arg(long, default_value_t = 5)]
    pub stream_seconds: u64,
    /// Progress bars: auto, always, never.
    #[arg(long, value_parser = ["auto", "always", "never"])]
    pub progress: Option<String>,
}

const USERS: &str = "CREATE TABLE users (user_id bigint PRIMARY KEY, name text NOT NULL, \
                     email text, created_at timestamptz NOT NULL DEFAULT now())";
const ORDERS: &str = "CREATE TABLE orders (user_id bigint NOT NULL, order_id bigint NOT NULL, \
                      product_id int NOT NULL, quantity int NOT NULL, status text NOT NULL, \
                      PRIMARY KEY (user_id, order_id))";
const PRODUCTS: &str = "CREATE TABLE products (product_id int PRIMARY KEY, name text NOT NULL, \
                        price numeric(10,2) NOT NULL)";
const TABLES: [&str; 3] = ["users", "orders", "products"];

fn spec() -> ClusterSpec {
    ClusterSpec::new()
        .distributed("users", USERS, "user_id", 16)
        .distributed_colocated("orders", ORDERS, "user_id", "users")
        .reference("products", PRODUCTS)
}

fn load_sql(users: i64) -> String {
    format!(
        "INSERT INTO products SELECT g, 'product ' || g, (g % 97) + 0.99 FROM generate_series(1, 500) g;
         INSERT INTO users SELECT g, 'user ' || g, 'user' || g || '@example.com',
                '2024-01-01'::timestamptz + g * interval '1 minute'
           FROM generate_series(1, {users}) g;
         INSERT INTO orders SELECT (g % {users}) + 1, g, (g % 500) + 1, (g % 5) + 1, 'placed'
           FROM generate_series(1, {orders}) g;
         CREATE SEQUENCE order_ids START {next};",
        orders = users * 3,
        next = users * 3 + 1
    )
}

/// One round of the write load.
fn round(i: i64, users: i64) -> String {
    let mut sql = format!(
        "BEGIN;
         INSERT INTO users SELECT {base} + g, 'new ' || g, NULL, now() FROM generate_series(1, 10) g;
         INSERT INTO orders SELECT {base} + (g % 10) + 1, nextval('order_ids'), (g % 500) + 1, 1, 'placed'
           FROM generate_series(1, 30) g;
         COMMIT;
         UPDATE orders SET status = 'shipped' WHERE order_id % 997 = {m} AND status = 'placed';
         UPDATE orders SET user_id = user_id + 10000000
          WHERE (user_id, order_id) IN (SELECT user_id, order_id FROM orders
                                         WHERE user_id < 10000000 AND order_id % 101 = {r}
                                         ORDER BY order_id LIMIT 3);
         DELETE FROM orders WHERE (user_id, order_id) IN (SELECT user_id, order_id FROM orders
                                   WHERE order_id % 211 = {d} ORDER BY order_id LIMIT 2);
         UPDATE products SET price = price + 0.01 WHERE product_id = {p};",
        base = users + 1000 + i * 10,
        m = i % 997,
        r = i % 101,
        d = i % 211,
        p = (i % 500) + 1
    );
    if i == 20 {
        sql.push_str(
            "INSERT INTO orders SELECT 20000000 + (g % 100), nextval('order_ids'), 1, 1, 'bulk'
               FROM generate_series(1, 20000) g;",
        );
    }
    sql
}

/// Runs `pgwarp demo`.
pub async fn run(args: &DemoArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let started = Instant::now();
    writeln!(
        out,
        "starting a source PostgreSQL and a Citus-shaped cluster (coordinator + 2 workers)..."
    )?;
    let (source, cluster) = tokio::task::spawn_blocking(|| {
        std::thread::scope(|s| {
            let src = s.spawn(PgServer::start);
            let cluster = CitusCluster::start(2);
            let src = src.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            (src, cluster)
        })
    })
    .await?;
    let source = source.context("could not start the source server")?;
    let cluster = cluster.context("could not start the cluster")?;
    let users = args.users.max(100);
    let source = Arc::new(source);
    let cluster = Arc::new(cluster);
    let (fixture, db) = tokio::task::spawn_blocking({
        let (spec, source, cluster) = (spec(), source.clone(), cluster.clone());
        move || -> anyhow::Result<(CitusFixture, TestDb)> {
            let fixture = cluster.create(&spec)?;
            let db = source.create_database("storefront")?;
            db.execute(&format!(
                "CREATE SCHEMA {s}; SET search_path TO {s}; {USERS}; {ORDERS}; {PRODUCTS}; {}",
                load_sql(users),
                s = fixture.schema()
            ))?;
            Ok((fixture, db))
        }
    })
    .await??;
    let schema = fixture.schema().to_owned();
    writeln!(
        out,
        "loaded a storefront on the source: {users} users, {} orders, 500 products ({:.1}s)",
        users * 3,
        started.elapsed().as_secs_f64()
    )?;

    // the write load
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let load = {
        let client = db.connect().await?;
        client
            .batch_execute(&format!("SET search_path TO {schema}"))
            .await?;
        let (stop, rounds) = (stop.clone(), rounds.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Acquire) {
                i += 1;
                client.batch_execute(&round(i, users)).await?;
                rounds.store(i as u64, Ordering::Release);
            }
            Ok::<i64, tokio_postgres::Error>(i)
        })
    };

    let settings = RawConfig {
        source: Some(db.conn_string()),
        target: Some(fixture.coordinator_conn_string().to_owned()),
        tables: Some(TABLES.iter().map(|t| format!("{schema}.{t}")).collect()),
        slot: Some("pgwarp_demo".into()),
        publication: Some("pgwarp_demo".into()),
        progress: args.progress.clone(),
        ..Default::default()
    }
    .validate()?;
    writeln!(out, "running pgwarp sync while the write load runs...")?;
    let report = crate::check::run(&settings).await?;
    if !report.is_ok() {
        for p in &report.problems {
            writeln!(out, "problem: {p}")?;
        }
        bail!("the preflight check failed");
    }
    let prepared = Arc::new(pipeline::prepare(&settings).await?);
    let display = super::progress::Display::start(settings.progress, prepared.stats.clone());
    let cancel = CancellationToken::new();
    let sync = {
        let (prepared, cancel) = (prepared.clone(), cancel.clone());
        tokio::spawn(async move { pipeline::run(&prepared, SyncOptions::default(), &cancel).await })
    };
    let stats = prepared.stats.clone();
    while stats.phase() != LivePhase::Streaming {
        if sync.is_finished() {
            display.finish();
            let result = sync.await?;
            bail!("the sync stopped early: {result:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let snapshot_done = started.elapsed();
    let snapshot_secs = stats.started.elapsed().as_secs_f64();
    let snapshot_rows = stats.rows_applied();
    tokio::time::sleep(Duration::from_secs(args.stream_seconds)).await;
    stop.store(true, Ordering::Release);
    let load_rounds = load.await??;
    let stream_started_rows = snapshot_rows;

    // wait until every node has applied everything the load wrote
    let (client, _c) = crate::conn::connect(&settings.source).await?;
    let last: String = client
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await?
        .get(0);
    let last: pgwarp_decoder::Lsn = last.parse().map_err(|_| anyhow::anyhow!("bad LSN"))?;
    let wait_started = Instant::now();
    while stats.durable_lsn() < last {
        if sync.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let catch_up = wait_started.elapsed();
    cancel.cancel();
    let outcome = sync.await??;
    display.finish();
    if outcome != SyncOutcome::Stopped {
        bail!("unexpected end of the sync: {outcome:?}");
    }

    // verify row for row and shard placement
    writeln!(out, "verifying every table row for row...")?;
    let verified = tokio::task::spawn_blocking(move || {
        let v = verify(&db, &fixture);
        let _ = db.execute("SELECT pg_drop_replication_slot('pgwarp_demo')");
        // the database and fixture go first, then the servers (with `source` and `cluster`)
        drop((fixture, db));
        v
    })
    .await??;
    drop((source, cluster));
    let total = started.elapsed().as_secs_f64();
    let rows = stats.rows_applied();
    let bytes = stats.bytes_applied();
    writeln!(out)?;
    writeln!(out, "pgwarp demo summary")?;
    writeln!(
        out,
        "  snapshot:   {snapshot_rows} rows in {snapshot_secs:.1}s ({:.0} rows/s)",
        snapshot_rows as f64 / snapshot_secs.max(0.001)
    )?;
    writeln!(
        out,
        "  stream:     {} rows applied from {load_rounds} rounds of writes, caught up {:.2}s after the load stopped",
        rows.saturating_sub(stream_started_rows),
        catch_up.as_secs_f64()
    )?;
    writeln!(
        out,
        "  total:      {rows} rows, {} written to the shards",
        indicatif::HumanBytes(bytes)
    )?;
    writeln!(
        out,
        "  final lag:  0 bytes (every node applied the source up to {last}; flush position {})",
        stats.durable_lsn()
    )?;
    for line in &verified.lines {
        writeln!(out, "  verified:   {line}")?;
    }
    writeln!(
        out,
        "  time:       {total:.1}s in all ({:.1}s to the end of the snapshot)",
        snapshot_done.as_secs_f64()
    )?;
    if !verified.ok {
        bail!("verification failed");
    }
    writeln!(out, "verification passed: source and cluster are identical")?;
    Ok(())
}

struct Verified {
    ok: bool,
    lines: Vec<String>,
}

fn verify(db: &TestDb, fixture: &CitusFixture) -> anyhow::Result<Verified> {
    let schema = fixture.schema();
    let mut ok = true;
    let mut lines = Vec::new();
    for table in TABLES {
        let mut want = db.query_rows(&format!("SELECT * FROM {schema}.{table}"))?;
        want.sort();
        let got = fixture.rows(table)?;
        let same = want == got;
        ok &= same;
        lines.push(format!(
            "{table}: {} rows on the source, {} on the cluster, {}",
            want.len(),
            got.len(),
            if same { "identical" } else { "DIFFERENT" }
        ));
    }
    // every row of a distributed table is in the shard its hash selects
    let mut misplaced = 0i64;
    for table in ["users", "orders"] {
        for shard in fixture.shards(table)? {
            let Some((lo, hi)) = shard.range else {
                continue;
            };
            for group in &shard.groups {
                let node = fixture.node_of_group(*group)?;
                misplaced += node.query_scalar::<i64>(&format!(
                    "SELECT count(*) FROM {} WHERE NOT (pg_catalog.worker_hash(user_id) BETWEEN {lo} AND {hi})",
                    shard.shard_table
                ))?;
            }
        }
    }
    ok &= misplaced == 0;
    lines.push(format!(
        "{misplaced} rows outside the shard their hash selects"
    ));
    for (shard, group, n) in fixture.placement_counts("products")? {
        lines.push(format!("products shard {shard} on group {group}: {n} rows"));
    }
    Ok(Verified { ok, lines })
}

//! Transient failures while streaming: the source and the target restart under a write load;
//! the sync reconnects, resumes from the slot, and ends with both sides identical.

mod sync_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use pgwarp::pipeline::stats::LivePhase;
use pgwarp::pipeline::{self, CancellationToken, SyncOptions, SyncOutcome};
use pgwarp_tests::{PgServer, ServerOptions, StopMode, unique_name};
use sync_support::{assert_rows_equal, settings, source_rows};

const DDL: &str = "CREATE TABLE items (id bigint PRIMARY KEY, n int NOT NULL)";

/// Writes until stopped, reconnecting whenever the server goes away; returns the next id.
fn start_load(conn: String, schema: String, stop: Arc<AtomicBool>, written: Arc<AtomicI64>) {
    tokio::spawn(async move {
        let mut id: i64 = 1_000_000;
        while !stop.load(Ordering::Acquire) {
            let Ok((client, connection)) =
                tokio_postgres::connect(&conn, tokio_postgres::NoTls).await
            else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            tokio::spawn(connection);
            while !stop.load(Ordering::Acquire) {
                let sql = format!(
                    "INSERT INTO {schema}.items VALUES ({id}, 0);
                     UPDATE {schema}.items SET n = n + 1 WHERE id = {};
                     DELETE FROM {schema}.items WHERE id = {};",
                    id % 5000 + 1,
                    id % 7919 + 5000
                );
                if client.batch_execute(&sql).await.is_err() {
                    break;
                }
                id += 1;
                written.store(id, Ordering::Release);
            }
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_and_target_restarts_are_survived() {
    let source =
        PgServer::start_with(ServerOptions::default().setting("synchronous_commit", "on")).unwrap();
    let target = PgServer::start().unwrap();
    let schema = unique_name("transient");
    let src = source.create_database("transient_src").unwrap();
    let dst = target.create_database("transient_dst").unwrap();
    for db in [&src, &dst] {
        db.execute(&format!(
            "CREATE SCHEMA {schema}; SET search_path TO {schema}; {DDL}"
        ))
        .unwrap();
    }
    src.execute(&format!(
        "INSERT INTO {schema}.items SELECT g, 0 FROM generate_series(1, 20000) g"
    ))
    .unwrap();
    let slot = unique_name("transient_slot");
    let settings = settings(
        &src.conn_string(),
        &dst.conn_string(),
        &schema,
        &["items"],
        &slot,
    );
    let prepared = Arc::new(pipeline::prepare(&settings).await.unwrap());
    let cancel = CancellationToken::new();
    let run = {
        let (p, c) = (prepared.clone(), cancel.clone());
        tokio::spawn(async move { pipeline::run(&p, SyncOptions::default(), &c).await })
    };
    let stats = prepared.stats.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicI64::new(0));
    start_load(
        src.conn_string(),
        schema.clone(),
        stop.clone(),
        written.clone(),
    );

    let wait_rows = |n: i64| {
        let written = written.clone();
        async move {
            let target = written.load(Ordering::Acquire) + n;
            while written.load(Ordering::Acquire) < target {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    while stats.phase() != LivePhase::Streaming {
        assert!(!run.is_finished(), "sync ended early");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_rows(200).await;
    source.restart(StopMode::Fast).unwrap();
    wait_rows(200).await;
    target.restart(StopMode::Fast).unwrap();
    wait_rows(200).await;
    stop.store(true, Ordering::Release);

    // wait until every change is applied, then stop
    let last: String = src
        .query_scalar("SELECT pg_current_wal_insert_lsn()::text")
        .unwrap();
    let last: pgwarp_decoder::Lsn = last.parse().unwrap();
    while stats.durable_lsn() < last {
        assert!(!run.is_finished(), "sync ended early: {:?}", run.await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cancel.cancel();
    assert!(matches!(run.await.unwrap(), Ok(SyncOutcome::Stopped)));
    let errors = stats.errors();
    assert!(!errors.is_empty(), "the restarts should have been seen");

    let want = source_rows(&src, &schema, "items");
    let mut got = dst
        .query_rows(&format!("SELECT * FROM {schema}.items"))
        .unwrap();
    got.sort();
    assert_rows_equal("items", &want, &got);
    src.execute(&format!("SELECT pg_drop_replication_slot('{slot}')"))
        .unwrap();
}

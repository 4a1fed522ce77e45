//! A column added on the source while syncing stops the stream with a clear error before
//! anything after the change is applied (and before the slot is confirmed past it); once the
//! same change is made on the target, the next run goes on from there.

mod sync_support;

use pgwarp_tests::unique_name;
use sync_support::{
    assert_rows_equal, plain_target, run_sync, settings, source_db, source_rows, src_exec,
    sync_until_caught_up,
};

use pgwarp::pipeline::CancellationToken;

const DDL: &str = "CREATE TABLE users (user_id bigint PRIMARY KEY, name text)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_column_stops_the_sync_until_the_target_has_it() {
    let schema = unique_name("ddl");
    let source = source_db("sync_ddl_src", &schema, DDL);
    let target = plain_target("sync_ddl_dst", &schema, DDL);
    src_exec(
        &source,
        &schema,
        "INSERT INTO users SELECT g, 'u' FROM generate_series(1, 100) g;",
    );
    let slot = unique_name("ddl_slot");
    let settings = settings(
        &source.conn_string(),
        &target.conn_string(),
        &schema,
        &["users"],
        &slot,
    );
    sync_until_caught_up(&settings).await;

    // a sync runs (the check passed), then the table changes on the source
    let prepared = pgwarp::pipeline::prepare(&settings).await.unwrap();
    let stats = prepared.stats.clone();
    let running = tokio::spawn(async move {
        pgwarp::pipeline::run(
            &prepared,
            pgwarp::pipeline::SyncOptions::default(),
            &CancellationToken::new(),
        )
        .await
    });
    while stats.phase() != pgwarp::pipeline::stats::LivePhase::Streaming {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // (separate transactions: one statement list runs as one transaction)
    src_exec(
        &source,
        &schema,
        "INSERT INTO users VALUES (101, 'before');",
    );
    src_exec(&source, &schema, "ALTER TABLE users ADD COLUMN age int;");
    src_exec(
        &source,
        &schema,
        "INSERT INTO users VALUES (102, 'after', 42);",
    );
    let after: String = source
        .query_scalar("SELECT pg_current_wal_insert_lsn()::text")
        .unwrap();
    let err = running.await.unwrap().unwrap_err().to_string();
    assert!(
        err.contains(&format!("table \"{schema}.users\" changed on the source"))
            && err.contains("column \"age\" was added"),
        "{err}"
    );
    let ids = |sql: &str| -> Vec<Vec<Option<String>>> { target.query_rows(sql).unwrap() };
    let applied = ids(&format!(
        "SELECT user_id FROM {schema}.users WHERE user_id > 100 ORDER BY 1"
    ));
    assert_eq!(
        applied,
        vec![vec![Some("101".to_owned())]],
        "only the change before the DDL"
    );
    let confirmed: bool = source
        .query_scalar(&format!(
            "SELECT confirmed_flush_lsn < '{after}'::pg_lsn FROM pg_replication_slots \
              WHERE slot_name = '{slot}'"
        ))
        .unwrap();
    assert!(confirmed, "the slot must not be confirmed past the change");
    // a new run refuses to start while the target lacks the column
    let again = run_sync(&settings, true, &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(again.contains("ColumnMismatch"), "{again}");

    // the operator applies the change to the target; the sync goes on
    target
        .execute(&format!("ALTER TABLE {schema}.users ADD COLUMN age int"))
        .unwrap();
    sync_until_caught_up(&settings).await;
    let want = source_rows(&source, &schema, "users");
    let mut got = target
        .query_rows(&format!("SELECT * FROM {schema}.users"))
        .unwrap();
    got.sort();
    assert_rows_equal("users", &want, &got);
    source
        .execute(&format!("SELECT pg_drop_replication_slot('{slot}')"))
        .unwrap();
}

//! The same concurrent-load scenario into a plain PostgreSQL target (one node: every table is
//! its own only shard).

mod sync_support;

use pgwarp::pipeline::CancellationToken;
use pgwarp_tests::unique_name;
use sync_support::load::{Load, ORDER_SEQUENCE, STOREFRONT_DDL, initial_data};
use sync_support::{
    assert_rows_equal, plain_target, run_sync, settings, source_db, source_rows, src_exec,
    sync_until_caught_up,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_load_into_plain_postgresql() {
    let schema = unique_name("plain");
    let source = source_db(
        "sync_plain_src",
        &schema,
        &format!("{STOREFRONT_DDL} {ORDER_SEQUENCE}"),
    );
    let target = plain_target("sync_plain_dst", &schema, STOREFRONT_DDL);
    src_exec(&source, &schema, &initial_data(10_000));
    let slot = unique_name("plain_slot");
    let tables = ["users", "orders", "products", "events"];
    let settings = settings(
        &source.conn_string(),
        &target.conn_string(),
        &schema,
        &tables,
        &slot,
    );

    let load = Load::start(&source, &schema, 20_000).await;
    load.wait_for(2).await;
    sync_until_caught_up(&settings).await;
    load.stop().await;
    sync_until_caught_up(&settings).await;

    for table in tables {
        let want = source_rows(&source, &schema, table);
        let mut got = target
            .query_rows(&format!("SELECT * FROM {schema}.{table}"))
            .unwrap();
        got.sort();
        assert_rows_equal(table, &want, &got);
    }
    // progress is recorded on the target for the slot
    let recorded: i64 = target
        .query_scalar(&format!(
            "SELECT count(*) FROM pgwarp.progress WHERE slot = '{slot}' AND lsn > '0/0'"
        ))
        .unwrap();
    assert_eq!(recorded, 1);
    // a third run with nothing new is a no-op that still catches up
    let outcome = run_sync(&settings, true, &CancellationToken::new())
        .await
        .unwrap();
    assert!(matches!(
        outcome,
        pgwarp::pipeline::SyncOutcome::CaughtUp(_)
    ));
    source
        .execute(&format!("SELECT pg_drop_replication_slot('{slot}')"))
        .unwrap();
}

/// `--until-caught-up` waits for commits made just before it started, even ones the source has
/// not written out yet (`synchronous_commit = off`, as on the test servers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn until_caught_up_covers_commits_made_just_before() {
    let schema = unique_name("recent");
    let ddl = "CREATE TABLE users (user_id bigint PRIMARY KEY, name text NOT NULL, score int);";
    let source = source_db("sync_recent_src", &schema, ddl);
    let target = plain_target("sync_recent_dst", &schema, ddl);
    src_exec(
        &source,
        &schema,
        "INSERT INTO users SELECT g, 'user ' || g, g % 100 FROM generate_series(1, 100) g;",
    );
    let slot = unique_name("recent_slot");
    let settings = settings(
        &source.conn_string(),
        &target.conn_string(),
        &schema,
        &["users"],
        &slot,
    );
    sync_until_caught_up(&settings).await;
    src_exec(
        &source,
        &schema,
        "UPDATE users SET score = score + 1 WHERE user_id = 54;
         UPDATE users SET user_id = user_id + 50000000, name = name || ' moved' WHERE user_id = 54;",
    );
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

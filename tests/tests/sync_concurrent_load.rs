//! End to end under a concurrent write load: inserts, updates (with unchanged TOAST values),
//! distribution-key changes that move rows between shards and nodes, deletes, a truncate, a
//! rolled-back savepoint, a large transaction streamed while in progress (with a rolled-back
//! subtransaction) and a large rolled-back one, all running while the snapshot is copied and
//! while the stream is applied. After `--until-caught-up`, every table equals the source row
//! for row and every row sits in the shard its hash selects.
//!
//! The large transaction has 50,000 rows here; `slow_large_transaction_of_200k_rows` runs the
//! same scenario with 200,000 (the acceptance size), which takes a few times longer.

mod sync_support;

use std::sync::atomic::Ordering;
use sync_support::load::{Load, ORDER_SEQUENCE, STOREFRONT_DDL, initial_data, storefront_spec};

use pgwarp::config::StreamedApply;
use pgwarp::pipeline::{CancellationToken, SyncOutcome};
use sync_support::{Env, run_sync_stats, sync_until_caught_up};

const TABLES: [&str; 4] = ["users", "orders", "products", "events"];

async fn scenario(prefix: &str, big_rows: i64, apply: StreamedApply) {
    let env = Env::new(
        prefix,
        storefront_spec(),
        &format!("{STOREFRONT_DDL} {ORDER_SEQUENCE}"),
    );
    env.src(&initial_data(20_000));
    let mut settings = env.settings(&TABLES);
    settings.streamed_apply = apply;

    let load = Load::start(&env.source, &env.schema, big_rows).await;
    load.wait_for(2).await;
    // the first run copies the snapshot and streams while the load goes on
    sync_until_caught_up(&settings).await;
    let iterations = load.stop().await;
    assert!(iterations >= 25);
    // certainly after the snapshot: a large transaction (streamed by the server while in
    // progress; applied live, or spilled beyond the memory budget and applied at its commit)
    // with a rolled-back subtransaction, and a large one rolled back
    env.src(&format!(
        "BEGIN;
         INSERT INTO orders SELECT 8000000 + (g % 500), nextval('order_ids'), 2, 'late bulk'
           FROM generate_series(1, {big_rows}) g;
         SAVEPOINT s1;
         UPDATE orders SET status = 'rolled back' WHERE user_id >= 8000000;
         ROLLBACK TO SAVEPOINT s1;
         COMMIT;
         BEGIN;
         DELETE FROM orders WHERE user_id < 1000;
         ROLLBACK;"
    ));
    // the second run resumes from the slot and applies the rest
    let (outcome, stats) = run_sync_stats(&settings, true, &CancellationToken::new())
        .await
        .unwrap();
    assert!(matches!(outcome, SyncOutcome::CaughtUp(_)), "{outcome:?}");
    // applied live, the large transaction is not spilled; but a streamed transaction of the
    // load that some node already committed in the first run (past the position the run
    // stopped at) is replayed, and kept until its commit, where those nodes skip it
    if apply == StreamedApply::AtCommit {
        assert!(
            stats.spilled_bytes.load(Ordering::Relaxed) > 0,
            "the large transaction was not spilled"
        );
    }

    env.assert_synced("users", Some("user_id"));
    env.assert_synced("orders", Some("user_id"));
    env.assert_synced("products", None);
    env.assert_synced("events", Some("id"));
    // the big transaction arrived whole, its rolled-back parts did not
    let bulk: i64 = env
        .fixture
        .rows("orders")
        .unwrap()
        .iter()
        .filter(|r| r[3].as_deref().is_some_and(|s| s.starts_with("bulk")))
        .count() as i64;
    assert_eq!(bulk, big_rows - big_rows / 1000);
    let late: i64 = env
        .source
        .query_scalar(&format!(
            "SELECT count(*) FROM {}.orders WHERE status = 'late bulk'",
            env.schema
        ))
        .unwrap();
    assert_eq!(late, big_rows);
    let placements = env.fixture.placement_counts("products").unwrap();
    assert!(
        placements.iter().all(|(_, _, n)| *n == 200),
        "{placements:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_load_during_snapshot_and_stream_converges() {
    scenario("sync_load", 50_000, StreamedApply::Live).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_load_converges_with_streamed_transactions_applied_at_commit() {
    scenario("sync_load_commit", 50_000, StreamedApply::AtCommit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_large_transaction_of_200k_rows() {
    scenario("sync_load_big", 200_000, StreamedApply::Live).await;
}

//! A shard split (or move) while pgwarp syncs: the placements pgwarp routes with are no longer
//! the cluster's. pgwarp watches them (every two seconds) and stops with an error naming the
//! shards, and refuses to resume the sync afterwards: rows written to a moved shard's old
//! placement could be lost and the per-node progress no longer matches the shards.
//!
//! The split is the harness's `citus_split_shard_by_split_points` (real Citus with
//! `PGWARP_TEST_CITUS_COORDINATOR`).

mod sync_support;

use pgwarp_tests::cluster::ClusterSpec;
use sync_support::Env;
use sync_support::process::{PgwarpProcess, child_main, sync_args, wait_until};

/// The child process's entry point (see `sync_support::process`).
#[test]
#[ignore = "entry point of the pgwarp child process the test starts"]
fn child_entry() {
    child_main();
}

fn spec() -> ClusterSpec {
    ClusterSpec::new()
        .distributed(
            "accounts",
            "CREATE TABLE accounts (id bigint PRIMARY KEY, balance int NOT NULL)",
            "id",
            4,
        )
        .reference(
            "plans",
            "CREATE TABLE plans (id int PRIMARY KEY, name text)",
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_while_streaming_stops_the_sync_and_refuses_to_resume_it() {
    let env = Env::new(
        "shard_split",
        spec(),
        "CREATE TABLE accounts (id bigint PRIMARY KEY, balance int NOT NULL);
         CREATE TABLE plans (id int PRIMARY KEY, name text);",
    );
    env.src(
        "INSERT INTO accounts SELECT g, g % 100 FROM generate_series(1, 2000) g;
         INSERT INTO plans VALUES (1, 'basic'), (2, 'pro');",
    );
    let dir = tempfile::tempdir().unwrap();
    let config = env.config_file(dir.path(), &["accounts", "plans"]);

    // a sync that runs and streams
    let mut p = PgwarpProcess::spawn(&sync_args(&config, false), &dir.path().join("1.log"));
    env.src("UPDATE accounts SET balance = balance + 1 WHERE id % 10 = 0");
    wait_until("streamed changes are applied", &mut p, || {
        env.phase().as_deref() == Some("streaming") && env.stream_progress_recorded()
    })
    .await;

    // split the first shard of accounts at the middle of its range
    let shard = env.fixture.shards("accounts").unwrap().remove(0);
    let (lo, hi) = shard.range.expect("a hash shard has a range");
    let middle = i32::try_from((i64::from(lo) + i64::from(hi)) / 2).unwrap();
    let (left, right) = env
        .fixture
        .split_shard("accounts", shard.shardid, middle)
        .unwrap();
    // writes to every shard go on: whether pgwarp first tries to write into the dropped parent
    // shard or first sees the new placements, the error names the split
    env.src("UPDATE accounts SET balance = balance + 1");
    let (status, log) = p.wait().await;
    assert!(!status.success(), "pgwarp went on after the split:\n{log}");
    let table = format!("table \"{}.accounts\"", env.schema);
    for needle in [
        "the shard placements changed during the sync".to_owned(),
        format!("shard {} of {table} is gone", shard.shardid),
        format!("shard {left} of {table} is new"),
        format!("shard {right} of {table} is new"),
        "citus_rebalance_stop()".to_owned(),
    ] {
        assert!(
            log.contains(&needle),
            "the error does not say {needle:?}:\n{log}"
        );
    }

    // starting it again is refused with the same explanation, before anything is written
    let p2 = PgwarpProcess::spawn(&sync_args(&config, true), &dir.path().join("2.log"));
    let (status, log2) = p2.wait().await;
    assert!(!status.success(), "pgwarp resumed after the split:\n{log2}");
    assert!(
        log2.contains(&format!("shard {} of {table} is gone", shard.shardid)),
        "{log2}"
    );
    assert_eq!(env.phase().as_deref(), Some("streaming"));
}

//! Large transactions applied while the source streams them (`streaming 'on'`, protocol 2+):
//! pgwarp writes their pieces into one open transaction per node as they arrive and commits it,
//! with the node's progress row, at Stream Commit; a Stream Abort or a subtransaction abort
//! rolls the nodes back; transactions committing meanwhile are applied beside it, in source
//! commit order; a kill while it is open loses nothing.
//!
//! The source server streams any transaction of more than a few hundred rows (its
//! `logical_decoding_work_mem` is 64 kB), and the sync's spill budget is 256 kB, so every
//! large transaction here would be spilled if it were not applied live: `spilled_bytes == 0`
//! proves it was. Commit LSNs are read from the source's WAL (`pg_walinspect`).

mod sync_support;

use std::sync::atomic::Ordering;

use pgwarp::pipeline::{CancellationToken, SyncOutcome};
use pgwarp_decoder::Lsn;
use pgwarp_tests::cluster::ClusterSpec;
use sync_support::process::{PgwarpProcess, child_main, wait_until};
use sync_support::{Env, run_sync, run_sync_stats, sync_until_caught_up};
use tokio_postgres::Client;

const TABLES: [&str; 2] = ["items", "tags"];

/// The child process's entry point (see `sync_support::process`).
#[test]
#[ignore = "entry point of the pgwarp child process the kill test starts"]
fn child_entry() {
    child_main();
}

fn env(prefix: &str) -> Env {
    let spec = ClusterSpec::new()
        .distributed(
            "items",
            "CREATE TABLE items (id bigint PRIMARY KEY, grp int NOT NULL, note text)",
            "id",
            8,
        )
        .reference("tags", "CREATE TABLE tags (id int PRIMARY KEY, label text)");
    let env = Env::new(
        prefix,
        spec,
        "CREATE TABLE items (id bigint PRIMARY KEY, grp int NOT NULL, note text);
         CREATE TABLE tags (id int PRIMARY KEY, label text);",
    );
    env.source
        .execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        .unwrap_or_else(|e| panic!("could not create pg_walinspect: {e}"));
    env.src(
        "INSERT INTO items SELECT g, g % 7, 'initial ' || g FROM generate_series(1, 2000) g;
         INSERT INTO tags SELECT g, 'tag ' || g FROM generate_series(1, 20) g;",
    );
    env
}

fn assert_all_synced(env: &Env) {
    env.assert_synced("items", Some("id"));
    env.assert_synced("tags", None);
}

/// A connection to the source with the test schema on the search path.
async fn source_session(env: &Env) -> Client {
    let client = env.source.connect().await.expect("connect to the source");
    client
        .batch_execute(&format!(
            "SET search_path TO {}",
            pgwarp_tests::quote_ident(&env.schema)
        ))
        .await
        .expect("set the search path");
    client
}

/// The running transaction's xid, for finding its commit record later.
async fn xid(client: &Client) -> String {
    client
        .query_one("SELECT pg_current_xact_id()::text", &[])
        .await
        .and_then(|r| r.try_get(0))
        .expect("read the xid")
}

/// The source's WAL insert position.
fn wal_position(env: &Env) -> String {
    env.source
        .query_scalar::<String>("SELECT pg_current_wal_insert_lsn()::text")
        .expect("read the WAL position")
}

/// The commit record of `xid` written after `from`: its start (the commit LSN pgoutput
/// reports) and end. The commit must have been flushed (`synchronous_commit = on`): the WAL
/// is read up to the flush position.
fn commit_record(env: &Env, from: &str, xid: &str) -> (Lsn, Lsn) {
    let rows = env
        .source
        .query_rows(&format!(
            "SELECT start_lsn::text, end_lsn::text \
             FROM pg_get_wal_records_info_till_end_of_wal('{from}') \
             WHERE resource_manager = 'Transaction' AND record_type = 'COMMIT' \
               AND xid::text = '{xid}'"
        ))
        .expect("read the WAL");
    assert_eq!(rows.len(), 1, "commit records of xid {xid}: {rows:?}");
    let lsn = |i: usize| -> Lsn {
        rows[0][i]
            .as_deref()
            .and_then(|t| t.parse().ok())
            .expect("an LSN")
    };
    (lsn(0), lsn(1))
}

/// Every worker's progress row for the slot.
fn worker_progress(env: &Env) -> Vec<Lsn> {
    env.fixture
        .workers()
        .iter()
        .map(|w| {
            w.query_scalar::<String>(&format!(
                "SELECT lsn::text FROM pgwarp.progress WHERE slot = '{}' AND node NOT LIKE '%#%'",
                env.slot
            ))
            .expect("read the progress row")
            .parse()
            .expect("an LSN")
        })
        .collect()
}

/// Bytes of every `items` shard table on the workers: rows written by a transaction that has
/// not committed yet take room, although no one else can see them.
fn item_shard_bytes(env: &Env) -> i64 {
    let shards = env.fixture.shards("items").expect("the items shards");
    env.fixture
        .workers()
        .iter()
        .map(|w| {
            let mine: Vec<String> = shards
                .iter()
                .filter(|s| s.groups.contains(&w.groupid))
                .map(|s| format!("pg_relation_size('{}')", s.shard_table))
                .collect();
            if mine.is_empty() {
                return 0;
            }
            w.query_scalar::<i64>(&format!("SELECT ({})::int8", mine.join(" + ")))
                .expect("read the shard sizes")
        })
        .sum()
}

/// Polls `condition` while the sync started in the background runs (a ten-minute hang guard,
/// not a timing assertion).
async fn wait_while_running<T>(
    what: &str,
    running: &tokio::task::JoinHandle<T>,
    mut condition: impl FnMut() -> bool,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    while !condition() {
        assert!(!running.is_finished(), "the sync stopped before {what}");
        assert!(
            std::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_transaction_is_written_while_it_streams_and_others_commit_beside_it() {
    let env = env("live_while");
    let settings = env.settings(&TABLES);
    sync_until_caught_up(&settings).await;

    // follow the slot in the background
    let cancel = CancellationToken::new();
    let running = {
        let (s, c) = (settings.clone(), cancel.clone());
        tokio::spawn(async move { run_sync_stats(&s, false, &c).await })
    };
    let before = item_shard_bytes(&env);
    let from = wal_position(&env);
    let big = source_session(&env).await;
    big.batch_execute(
        "BEGIN; INSERT INTO items SELECT g, g % 7, repeat('x', 100) || g \
         FROM generate_series(100001, 120000) g",
    )
    .await
    .unwrap();
    let big_xid = xid(&big).await;

    // its rows reach the shards while it is still open on the source (invisible there)
    wait_while_running("the shards to grow", &running, || {
        item_shard_bytes(&env) > before
    })
    .await;
    assert_eq!(env.fixture.count("items").unwrap(), 2000);

    // a transaction committing meanwhile is applied beside it, before it commits
    env.src("UPDATE items SET note = 'while open' WHERE id = 5; INSERT INTO tags VALUES (99, 'meanwhile')");
    wait_while_running("the small transaction", &running, || {
        env.fixture
            .rows("tags")
            .unwrap()
            .iter()
            .any(|r| r[0].as_deref() == Some("99"))
    })
    .await;
    assert_eq!(env.fixture.count("items").unwrap(), 2000);

    big.batch_execute(
        "UPDATE items SET note = 'big saw it' WHERE id = 5; \
         SET LOCAL synchronous_commit = on; COMMIT",
    )
    .await
    .unwrap();
    let (commit_lsn, _) = commit_record(&env, &from, &big_xid);
    wait_while_running("the commit on every worker", &running, || {
        worker_progress(&env).iter().all(|p| *p >= commit_lsn)
    })
    .await;
    cancel.cancel();
    let (outcome, stats) = running.await.unwrap().unwrap();
    assert_eq!(outcome, SyncOutcome::Stopped);
    assert_eq!(stats.spilled_bytes.load(Ordering::Relaxed), 0, "spilled");
    assert_all_synced(&env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_transactions_apply_in_commit_order_and_progress_is_the_commit_lsn() {
    let env = env("live_order");
    let settings = env.settings(&TABLES);
    sync_until_caught_up(&settings).await;

    // the decoding order is the WAL's: the big transaction's first rows are streamed before
    // the small ones commit, its later statements (which read what they committed) after
    let from = wal_position(&env);
    let big = source_session(&env).await;
    big.batch_execute(
        "BEGIN; INSERT INTO items SELECT g, 1, repeat('a', 100) FROM generate_series(10001, 14000) g",
    )
    .await
    .unwrap();
    let big_xid = xid(&big).await;
    // two small transactions: the first may make the router send what it holds at once (a
    // watermark), the second waits in its buffers when the big one's next segment comes
    env.src("UPDATE tags SET label = 'small zero' WHERE id = 3");
    env.src(
        "INSERT INTO items VALUES (5001, 2, 'small one');
         UPDATE items SET note = 'small two' WHERE id = 7;
         DELETE FROM items WHERE id = 8;",
    );
    big.batch_execute(
        "UPDATE items SET grp = 3, note = note || ' then big' WHERE id IN (5001, 7);
         INSERT INTO items VALUES (8, 3, 'big reinserted');
         DELETE FROM items WHERE id BETWEEN 10001 AND 10100;
         INSERT INTO items SELECT g, 4, repeat('b', 100) FROM generate_series(14001, 18000) g;
         SET LOCAL synchronous_commit = on;
         COMMIT",
    )
    .await
    .unwrap();
    let (commit_lsn, _) = commit_record(&env, &from, &big_xid);

    let (outcome, stats) = run_sync_stats(&settings, true, &CancellationToken::new())
        .await
        .unwrap();
    assert!(matches!(outcome, SyncOutcome::CaughtUp(_)), "{outcome:?}");
    assert_eq!(stats.spilled_bytes.load(Ordering::Relaxed), 0, "spilled");
    assert_all_synced(&env);
    // the big transaction is the last: each worker recorded exactly its commit LSN
    assert_eq!(
        worker_progress(&env),
        vec![commit_lsn; env.fixture.workers().len()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_abort_and_subtransaction_aborts_leave_only_committed_rows() {
    let env = env("live_abort");
    let settings = env.settings(&TABLES);
    sync_until_caught_up(&settings).await;

    env.src(
        "BEGIN;
         INSERT INTO items SELECT g, 1, repeat('t', 100) FROM generate_series(20001, 24000) g;
         SAVEPOINT a;
         INSERT INTO items SELECT g, 2, repeat('a', 100) FROM generate_series(30001, 34000) g;
         UPDATE items SET note = 'touched by a' WHERE id BETWEEN 1 AND 500;
         ROLLBACK TO SAVEPOINT a;
         SAVEPOINT b;
         INSERT INTO items SELECT g, 3, repeat('b', 100) FROM generate_series(40001, 44000) g;
         SAVEPOINT c;
         UPDATE items SET note = 'c kept' WHERE id BETWEEN 20001 AND 20300;
         RELEASE SAVEPOINT c;
         RELEASE SAVEPOINT b;
         SAVEPOINT d;
         DELETE FROM items WHERE id BETWEEN 40001 AND 41000;
         SAVEPOINT e;
         INSERT INTO items SELECT g, 5, repeat('e', 100) FROM generate_series(50001, 54000) g;
         ROLLBACK TO SAVEPOINT d;
         INSERT INTO items SELECT g, 6, repeat('z', 100) FROM generate_series(60001, 64000) g;
         COMMIT;
         BEGIN;
         INSERT INTO items SELECT g, 7, repeat('r', 100) FROM generate_series(70001, 80000) g;
         DELETE FROM items WHERE id < 1000;
         ROLLBACK;
         UPDATE tags SET label = 'after' WHERE id = 1;",
    );
    let (outcome, stats) = run_sync_stats(&settings, true, &CancellationToken::new())
        .await
        .unwrap();
    assert!(matches!(outcome, SyncOutcome::CaughtUp(_)), "{outcome:?}");
    assert_eq!(stats.spilled_bytes.load(Ordering::Relaxed), 0, "spilled");
    assert_all_synced(&env);
    let count = |range: &str| {
        env.fixture
            .rows("items")
            .unwrap()
            .iter()
            .filter(|r| {
                let id: i64 = r[0].as_deref().and_then(|v| v.parse().ok()).unwrap_or(0);
                match range {
                    "top" => (20001..=24000).contains(&id),
                    "a" => (30001..=34000).contains(&id),
                    "b" => (40001..=44000).contains(&id),
                    "e" => (50001..=54000).contains(&id),
                    "after d" => (60001..=64000).contains(&id),
                    "aborted" => (70001..=80000).contains(&id),
                    _ => false,
                }
            })
            .count()
    };
    // what committed: the top level, b (with c and without d's delete), not a or e, nor the
    // aborted transaction
    assert_eq!(
        ["top", "a", "b", "e", "after d", "aborted"].map(count),
        [4000, 0, 4000, 0, 4000, 0]
    );
    assert_eq!(env.fixture.count("items").unwrap(), 2000 + 12000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_an_open_streamed_transaction_then_resume_converges() {
    let env = env("live_kill");
    let settings = env.settings(&TABLES);
    sync_until_caught_up(&settings).await;
    let dir = tempfile::tempdir().unwrap();
    let config = env.config_file(dir.path(), &TABLES);
    let args = |until: bool| {
        let mut a = vec![
            "sync".to_owned(),
            "-c".to_owned(),
            config.display().to_string(),
        ];
        if until {
            a.push("--until-caught-up".to_owned());
        }
        a
    };
    let mut sync = PgwarpProcess::spawn(&args(false), &dir.path().join("first.log"));

    let before = item_shard_bytes(&env);
    let big = source_session(&env).await;
    big.batch_execute(
        "BEGIN; INSERT INTO items SELECT g, 8, repeat('k', 100) FROM generate_series(200001, 230000) g",
    )
    .await
    .unwrap();
    // the nodes hold an open transaction with part of it
    wait_until(
        "rows of the open transaction on the shards",
        &mut sync,
        || item_shard_bytes(&env) > before,
    )
    .await;
    let log = sync.kill_9();
    assert!(!log.contains("panicked"), "{log}");
    assert_eq!(env.fixture.count("items").unwrap(), 2000);

    big.batch_execute(
        "UPDATE items SET note = 'after the kill' WHERE id BETWEEN 1 AND 100; COMMIT",
    )
    .await
    .unwrap();
    env.src("INSERT INTO tags VALUES (77, 'after')");
    let (status, log) = PgwarpProcess::spawn(&args(true), &dir.path().join("second.log"))
        .wait()
        .await;
    assert!(status.success(), "the second run failed:\n{log}");
    assert_all_synced(&env);
    assert_eq!(env.fixture.count("items").unwrap(), 2000 + 30000);
    // and a later run finds nothing left to do
    let done = run_sync(&settings, true, &CancellationToken::new()).await;
    assert!(matches!(done, Ok(SyncOutcome::CaughtUp(_))), "{done:?}");
    assert_all_synced(&env);
}

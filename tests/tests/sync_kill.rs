//! Killing pgwarp (`kill -9`, SIGINT) during the snapshot and during streaming, under a
//! concurrent write load, then starting it again: the result is the same as an uninterrupted
//! run, nothing lost or duplicated.
//!
//! To kill *during* the snapshot without relying on timing, the `events` shards on the workers
//! are locked in EXCLUSIVE mode (reads allowed, writes blocked) before the sync starts; the
//! readers copy the big tables first and then block on `events`, so the snapshot is certainly
//! unfinished while at least one chunk is recorded as done. The lock is released after the
//! kill. `events` is also truncated on the source meanwhile (load iteration 5), so the resume
//! sees a rewritten table and copies it again whole.

mod sync_support;

use sync_support::Env;
use sync_support::load::{Load, ORDER_SEQUENCE, STOREFRONT_DDL, initial_data, storefront_spec};
use sync_support::process::{PgwarpProcess, child_main, sync_args, wait_until};
use tokio_postgres::Client;

const TABLES: [&str; 4] = ["users", "orders", "products", "events"];

/// The child process's entry point (see `sync_support::process`).
#[test]
#[ignore = "entry point of the pgwarp child process the kill tests start"]
fn child_entry() {
    child_main();
}

/// Holds EXCLUSIVE locks on every `events` shard until dropped (or released).
struct EventsLock {
    clients: Vec<Client>,
}

impl EventsLock {
    async fn take(env: &Env) -> EventsLock {
        let mut clients = Vec::new();
        for node in env.fixture.nodes() {
            let shards: Vec<String> = env
                .fixture
                .shards("events")
                .unwrap()
                .into_iter()
                .filter(|s| s.groups.contains(&node.groupid))
                .map(|s| s.shard_table)
                .collect();
            if shards.is_empty() {
                continue;
            }
            let client = pgwarp_tests::connect(&node.conn_string, node.port)
                .await
                .unwrap();
            client
                .batch_execute(&format!(
                    "BEGIN; LOCK TABLE {} IN EXCLUSIVE MODE",
                    shards.join(", ")
                ))
                .await
                .unwrap();
            clients.push(client);
        }
        EventsLock { clients }
    }

    async fn release(self) {
        for c in &self.clients {
            c.batch_execute("COMMIT").await.unwrap();
        }
    }
}

fn assert_all_synced(env: &Env) {
    env.assert_synced("users", Some("user_id"));
    env.assert_synced("orders", Some("user_id"));
    env.assert_synced("products", None);
    env.assert_synced("events", Some("id"));
}

/// Starts a sync that cannot finish its snapshot (events locked) and waits until it has
/// recorded at least one chunk.
async fn start_blocked_snapshot(
    env: &Env,
    config: &std::path::Path,
    log: &std::path::Path,
) -> (PgwarpProcess, EventsLock) {
    let lock = EventsLock::take(env).await;
    let mut p = PgwarpProcess::spawn(&sync_args(config, false), log);
    wait_until("a snapshot chunk is done", &mut p, || {
        env.phase().as_deref() == Some("snapshot") && env.chunks().0 >= 1
    })
    .await;
    let (done, total) = env.chunks();
    assert!(done < total, "the snapshot must still be unfinished");
    (p, lock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_snapshot_and_during_streaming_then_resume() {
    let env = Env::new(
        "sync_kill",
        storefront_spec(),
        &format!("{STOREFRONT_DDL} {ORDER_SEQUENCE}"),
    );
    env.src(&initial_data(30_000));
    let dir = tempfile::tempdir().unwrap();
    let config = env.config_file(dir.path(), &TABLES);
    let load = Load::start(&env.source, &env.schema, 20_000).await;

    // 1. kill -9 during the snapshot
    let (p1, lock) = start_blocked_snapshot(&env, &config, &dir.path().join("1.log")).await;
    let log1 = p1.kill_9();
    lock.release().await;
    assert!(log1.contains("replication slot created"), "{log1}");

    // 2. restart: the snapshot resumes, then streams; kill -9 while streaming
    let mut p2 = PgwarpProcess::spawn(&sync_args(&config, false), &dir.path().join("2.log"));
    wait_until("streamed changes are applied", &mut p2, || {
        env.phase().as_deref() == Some("streaming") && env.stream_progress_recorded()
    })
    .await;
    load.wait_for(load.iterations() + 3).await;
    let log2 = p2.kill_9();
    assert!(log2.contains("resuming the snapshot"), "{log2}");

    // 3. the load stops; a last run catches up
    load.stop().await;
    let p3 = PgwarpProcess::spawn(&sync_args(&config, true), &dir.path().join("3.log"));
    let (status, log3) = p3.wait().await;
    assert!(status.success(), "{log3}");
    assert!(log3.contains("caught up"), "{log3}");
    assert_all_synced(&env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_during_snapshot_and_during_streaming_then_resume() {
    let env = Env::new(
        "sync_sigint",
        storefront_spec(),
        &format!("{STOREFRONT_DDL} {ORDER_SEQUENCE}"),
    );
    env.src(&initial_data(20_000));
    let dir = tempfile::tempdir().unwrap();
    let config = env.config_file(dir.path(), &TABLES);
    let load = Load::start(&env.source, &env.schema, 20_000).await;

    // 1. Ctrl-C during the snapshot: a clean stop (exit 0) once the lock is gone
    let (p1, lock) = start_blocked_snapshot(&env, &config, &dir.path().join("1.log")).await;
    p1.interrupt();
    lock.release().await;
    let (status, log1) = p1.wait().await;
    assert!(status.success(), "{log1}");
    assert!(log1.contains("stopped; run pgwarp sync again"), "{log1}");

    // 2. Ctrl-C while streaming
    let mut p2 = PgwarpProcess::spawn(&sync_args(&config, false), &dir.path().join("2.log"));
    wait_until("streamed changes are applied", &mut p2, || {
        env.phase().as_deref() == Some("streaming") && env.stream_progress_recorded()
    })
    .await;
    load.wait_for(load.iterations() + 3).await;
    p2.interrupt();
    let (status, log2) = p2.wait().await;
    assert!(status.success(), "{log2}");
    assert!(log2.contains("streaming stopped"), "{log2}");

    load.stop().await;
    let p3 = PgwarpProcess::spawn(&sync_args(&config, true), &dir.path().join("3.log"));
    let (status, log3) = p3.wait().await;
    assert!(status.success(), "{log3}");
    assert_all_synced(&env);
}

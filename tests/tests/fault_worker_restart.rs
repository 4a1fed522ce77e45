//! A worker restarted under pgwarp, with a fast and with an immediate (crash) shutdown, in the
//! middle of the stream and in the middle of the snapshot. pgwarp retries with backoff on new
//! connections, replays what the worker lost, and the data converges row for row; every node
//! records progress past the final marker, and nothing is applied twice (a replayed insert
//! would violate the primary key and stop the sync).
//!
//! Mid-snapshot is made deterministic with a lock: a session on the worker holds a lock on one
//! of its `users` shards that blocks inserts (not reads), so the snapshot is certainly writing
//! when the worker goes down; the restart ends that session.

mod fault_support;

use std::time::Duration;

use fault_support::faults::{LockHolder, pgwarp_sessions_waiting_on_a_lock};
use fault_support::flow::{converge_and_stop, load_scenario, stream_fault};
use fault_support::process::child_main;
use fault_support::scenario::wait_for;
use pgwarp_tests::StopMode;

#[test]
#[ignore = "entry point of the pgwarp child processes, not a test"]
fn child_entry() {
    child_main();
}

fn restart_during_stream(mode: StopMode) {
    let sc = load_scenario(5000);
    let worker = sc.fixture.node_of_group(2).unwrap().clone();
    let out = stream_fault(&sc, |sc, _sync, _load| {
        sc.server_of_group(2).restart(mode).unwrap();
    });
    // it noticed, said so, and retried on the restarted worker
    let label = format!("{}:{}", worker.host, worker.port);
    assert!(
        out.stderr
            .lines()
            .any(|l| l.contains("WARN") && l.contains(&label)),
        "no retry of node {label} was logged:\n{}",
        out.stderr
    );
}

#[test]
fn worker_fast_restart_during_stream_converges() {
    restart_during_stream(StopMode::Fast);
}

#[test]
fn worker_immediate_restart_during_stream_converges() {
    restart_during_stream(StopMode::Immediate);
}

fn restart_during_snapshot(mode: StopMode) {
    let sc = load_scenario(100_000);
    let worker = sc.fixture.node_of_group(2).unwrap().clone();
    let shard = sc
        .fixture
        .shards("users")
        .unwrap()
        .into_iter()
        .find(|s| s.groups == [2])
        .expect("a users shard on worker 2");
    // SHARE blocks the snapshot's COPY into the shard, not the preflight's reads
    let holder = LockHolder::hold(
        &worker.conn_string,
        &format!("LOCK TABLE {} IN SHARE MODE", shard.shard_table),
    );
    let config = sc.config_file(&fault_support::load::TABLES, "");
    let mut sync = sc.spawn_sync(&config, &[], "info");
    let server = sc.server_of_group(2);
    wait_for(
        "a snapshot write blocked on worker 2",
        &mut sync,
        Duration::from_secs(300),
        |_| pgwarp_sessions_waiting_on_a_lock(server.endpoint()) > 0,
    );
    assert_eq!(sc.phase().as_deref(), Some("snapshot"));
    // rows are arriving elsewhere, and worker 2 is stuck in the middle
    server.restart(mode).unwrap();
    holder.release();
    sc.src("UPDATE users SET score = 1 WHERE user_id % 1000 = 0");
    let out = converge_and_stop(&sc, sync);
    assert!(
        out.stderr.contains("snapshot done"),
        "the snapshot did not finish in the same run:\n{}",
        out.stderr
    );
}

#[test]
fn worker_fast_restart_during_snapshot_converges() {
    restart_during_snapshot(StopMode::Fast);
}

#[test]
fn worker_immediate_restart_during_snapshot_converges() {
    restart_during_snapshot(StopMode::Immediate);
}

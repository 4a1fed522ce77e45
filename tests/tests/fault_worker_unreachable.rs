//! A worker unreachable for 30 seconds in the middle of a streaming load (stopped, then
//! started again): longer than the node writer's own retries, so pgwarp restarts the stream
//! from the slot with growing pauses until the worker is back, then catches up; the data
//! converges row for row. Slow by design (the name says so; `.ci/run` runs it with the rest).

mod fault_support;

use std::time::Duration;

use fault_support::flow::{load_scenario, stream_fault};
use fault_support::process::child_main;
use pgwarp_tests::StopMode;

#[test]
#[ignore = "entry point of the pgwarp child processes, not a test"]
fn child_entry() {
    child_main();
}

#[test]
fn slow_worker_unreachable_for_30_seconds_converges() {
    let sc = load_scenario(5000);
    let worker = sc.fixture.node_of_group(2).unwrap().clone();
    let out = stream_fault(&sc, |sc, sync, load| {
        let server = sc.server_of_group(2);
        server.stop(StopMode::Fast).unwrap();
        // the load goes on while the worker is away
        std::thread::sleep(Duration::from_secs(30));
        assert!(
            sync.exited().is_none(),
            "pgwarp gave up while the worker was away:\n{}",
            sync.stderr()
        );
        server.start_again().unwrap();
        load.advance(1);
    });
    let label = format!("{}:{}", worker.host, worker.port);
    let retries: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("WARN") && l.contains(&label))
        .collect();
    assert!(
        retries.len() >= 2,
        "expected repeated retries of node {label}:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("restarting from the slot"),
        "the stream was not restarted from the slot:\n{}",
        out.stderr
    );
}

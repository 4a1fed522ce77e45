//! The source server restarted under pgwarp in the middle of a streaming load, with a fast
//! and with an immediate (crash) shutdown. The replication connection and the load's
//! connection drop; pgwarp retries with backoff until the source is back, restarts the stream
//! from the slot's confirmed position (which never passed what every node committed), and the
//! data converges row for row.

mod fault_support;

use fault_support::flow::{load_scenario, stream_fault};
use fault_support::process::child_main;
use pgwarp_tests::StopMode;

#[test]
#[ignore = "entry point of the pgwarp child processes, not a test"]
fn child_entry() {
    child_main();
}

fn source_restart(mode: StopMode) {
    let sc = load_scenario(5000);
    let out = stream_fault(&sc, |sc, _sync, _load| {
        sc.source_server.restart(mode).unwrap();
    });
    assert!(
        out.stderr.contains("restarting from the slot"),
        "the stream was not restarted from the slot:\n{}",
        out.stderr
    );
}

#[test]
fn source_fast_restart_during_stream_converges() {
    source_restart(StopMode::Fast);
}

#[test]
fn source_immediate_restart_during_stream_converges() {
    source_restart(StopMode::Immediate);
}

//! pgwarp's sessions terminated under it (`pg_terminate_backend`, as an administrator or a
//! connection killer would), on the source (the walsender and the reader sessions) and on a
//! worker (the node writers), in the middle of a streaming load. pgwarp reconnects, resumes
//! from the slot and the nodes' progress rows, and the data converges row for row.

mod fault_support;

use fault_support::faults::terminate_pgwarp;
use fault_support::flow::{load_scenario, stream_fault};
use fault_support::process::child_main;

#[test]
#[ignore = "entry point of the pgwarp child processes, not a test"]
fn child_entry() {
    child_main();
}

#[test]
fn backends_terminated_on_the_source_converge() {
    let sc = load_scenario(5000);
    let out = stream_fault(&sc, |sc, _sync, load| {
        let first = terminate_pgwarp(sc.source.endpoint(), sc.source.name());
        assert!(first >= 1, "no pgwarp session on the source to terminate");
        // and again once it has reconnected and streams anew
        load.advance(5);
        terminate_pgwarp(sc.source.endpoint(), sc.source.name());
    });
    assert!(
        out.stderr.contains("restarting from the slot"),
        "the stream was not restarted from the slot:\n{}",
        out.stderr
    );
}

#[test]
fn backends_terminated_on_a_worker_converge() {
    let sc = load_scenario(5000);
    stream_fault(&sc, |sc, _sync, load| {
        let server = sc.server_of_group(1);
        let n = terminate_pgwarp(server.endpoint(), sc.fixture.database());
        assert!(n >= 1, "no pgwarp session on worker 1 to terminate");
        load.advance(5);
        terminate_pgwarp(server.endpoint(), sc.fixture.database());
    });
    // a terminated session found idle is replaced without a word, one found busy is retried
    // with a warning: either way the marker reached worker 1 on a new session (the progress
    // check of stream_fault), and no row is missing or doubled
}

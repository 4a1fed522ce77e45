//! Row data stays where it belongs: a large transaction that pgwarp spills to disk while the
//! source still runs it lands in files only the running user can read (directory 0700, files
//! 0600), and no row value appears in pgwarp's logs, even at `trace` level.

mod fault_support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use fault_support::faults::LockHolder;
use fault_support::flow::{converge_and_stop, load_scenario};
use fault_support::load;
use fault_support::process::child_main;
use fault_support::scenario::wait_for;
use pgwarp_tests::quote_ident;

#[test]
#[ignore = "entry point of the pgwarp child processes, not a test"]
fn child_entry() {
    child_main();
}

const CANARY: &str = "RowValueCanary31";

#[test]
fn spill_files_are_private_and_logs_carry_no_row_values() {
    let sc = load_scenario(1000);
    sc.src(&format!(
        "UPDATE users SET name = '{CANARY} ' || user_id WHERE user_id <= 10"
    ));
    // streamed transactions kept until their commit, so the large one below is spilled
    let config = sc.config_file(&load::TABLES, "streamed_apply = \"at-commit\"");
    let mut sync = sc.spawn_sync(&config, &[], "trace");
    wait_for("the snapshot", &mut sync, Duration::from_secs(600), |_| {
        sc.phase().as_deref() == Some("streaming")
    });
    sc.wait_caught_up(&mut sync, Duration::from_secs(600));

    // a large transaction left open on the source: streamed while in progress, spilled
    let open = LockHolder::hold(
        &sc.source.conn_string(),
        &format!(
            "SET search_path TO {}; INSERT INTO ledger SELECT g, 1, '{CANARY}' || g \
             FROM generate_series(7000001, 7020000) g",
            quote_ident(&sc.schema)
        ),
    );
    let spill = sc.spill_dir();
    let mut files = Vec::new();
    wait_for("a spill file", &mut sync, Duration::from_secs(300), |_| {
        files = std::fs::read_dir(&spill)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        !files.is_empty()
    });
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&spill), 0o700, "spill directory {}", spill.display());
    for f in &files {
        assert_eq!(mode(f), 0o600, "spill file {}", f.display());
    }
    // the transaction never commits; then a committed one with the canary
    open.release();
    sc.src(&format!(
        "INSERT INTO ledger SELECT g, 2, '{CANARY}' || g FROM generate_series(8000001, 8005000) g"
    ));
    let out = converge_and_stop(&sc, sync);
    assert!(out.stderr.contains("TRACE"), "the run was not traced");
    assert!(
        !out.stderr.contains(CANARY) && !out.stdout.contains(CANARY),
        "a row value appears in pgwarp's output"
    );
}

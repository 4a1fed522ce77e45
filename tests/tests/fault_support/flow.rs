//! The shape every streaming fault scenario shares:
//!
//! ```text
//!  source rows ─► pgwarp sync (a process) ─► snapshot done, caught up
//!                   │  load running on the source
//!                   │  ── fault injected ──
//!                   │  load goes on, then stops
//!                   ▼
//!  marker transaction on every node ─► slot confirms it ─► row-for-row equal,
//!  every node's progress past the marker ─► Ctrl-C ─► clean exit
//! ```

use std::time::Duration;

use super::load::{self, Load};
use super::process::{Finished, Running};
use super::scenario::{Scenario, wait_for};

/// A scenario with the load's tables and `users` initial users.
pub fn load_scenario(users: i64) -> Scenario {
    let sc = Scenario::start(&load::spec(), load::DDL);
    sc.src(&load::initial_rows(users));
    sc
}

/// Starts `pgwarp sync` (no `--until-caught-up`) and waits until it has copied the snapshot
/// and confirmed everything written so far.
pub fn start_streaming(sc: &Scenario, extra_config: &str) -> Running {
    let config = sc.config_file(&load::TABLES, extra_config);
    let mut sync = sc.spawn_sync(&config, &[], "info");
    wait_for("the snapshot", &mut sync, Duration::from_secs(600), |_| {
        sc.phase().as_deref() == Some("streaming")
    });
    sc.wait_caught_up(&mut sync, Duration::from_secs(600));
    sync
}

/// Commits a marker transaction that reaches every node (an update of the reference table),
/// waits until the slot confirms it, checks every table row for row and every node's
/// progress row past the marker, then stops pgwarp with Ctrl-C and expects a clean exit.
pub fn converge_and_stop(sc: &Scenario, mut sync: Running) -> Finished {
    let before = sc.source_lsn();
    sc.src("UPDATE products SET price = price WHERE id = 1");
    sc.wait_caught_up(&mut sync, Duration::from_secs(600));
    for table in load::TABLES {
        sc.assert_synced(table);
    }
    let now = sc.source_lsn();
    let progress = sc.progress();
    assert_eq!(
        progress.len(),
        sc.fixture.nodes().len(),
        "one progress row per node: {progress:?}"
    );
    for (node, lsn) in &progress {
        assert!(
            *lsn > before && *lsn <= now,
            "node {node} recorded progress {lsn}, not past the marker after {before} (source at {now})"
        );
    }
    let finished = sync.interrupt();
    finished.expect_success();
    finished
}

/// The whole scenario: stream, `fault` in the middle of a running load, converge. Returns
/// pgwarp's output for assertions about what it did.
pub fn stream_fault(sc: &Scenario, fault: impl FnOnce(&Scenario, &mut Running, &Load)) -> Finished {
    let mut sync = start_streaming(sc, "");
    let load = Load::start(&sc.source.conn_string(), &sc.schema);
    load.advance(15);
    fault(sc, &mut sync, &load);
    load.advance(15);
    let iterations = load.stop();
    assert!(iterations >= 30, "{iterations} load iterations");
    converge_and_stop(sc, sync)
}

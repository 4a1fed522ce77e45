//! The slot invalidated while pgwarp is stopped: the source removed WAL the slot still needed
//! (`max_slot_wal_keep_size` exceeded). The changes in that WAL are gone for good, so there is
//! nothing to resume: `sync` (and `check`) must stop with a message that tells the operator to
//! re-sync, apply nothing more, and leave the slot and the state as they are for the operator
//! to inspect.

mod fault_support;

use fault_support::load;
use fault_support::process::{Pgwarp, child_main};
use fault_support::scenario::{Scenario, source_options};

#[test]
#[ignore = "entry point of the pgwarp child processes, not a test"]
fn child_entry() {
    child_main();
}

#[test]
fn slot_invalidated_while_stopped_tells_the_operator_to_resync() {
    let sc = Scenario::start_with(
        &load::spec(),
        load::DDL,
        source_options()
            .setting("max_slot_wal_keep_size", "1MB")
            .setting("max_wal_size", "32MB")
            .setting("min_wal_size", "32MB"),
    );
    sc.src(&load::initial_rows(2000));
    let config = sc.config_file(&load::TABLES, "");
    let config = config.to_str().unwrap();
    Pgwarp::new(&["sync", "-c", config, "--until-caught-up"])
        .run()
        .expect_success();
    for t in load::TABLES {
        sc.assert_synced(t);
    }

    // while pgwarp is stopped: changes, then enough WAL for the server to drop the slot's
    sc.src("INSERT INTO users SELECT g, 'lost', 0 FROM generate_series(100001, 100100) g;");
    for _ in 0..6 {
        sc.src(
            "INSERT INTO ledger SELECT g, 1, repeat('w', 500) FROM generate_series(1, 20000) g;
             DELETE FROM ledger;",
        );
        sc.source
            .execute("SELECT pg_switch_wal(); CHECKPOINT;")
            .unwrap();
    }
    let status: String = sc.src_scalar(&format!(
        "SELECT wal_status FROM pg_replication_slots WHERE slot_name = '{}'",
        sc.slot
    ));
    assert_eq!(
        status, "lost",
        "the test did not manage to invalidate the slot"
    );
    let users_before = sc.fixture.count("users").unwrap();

    for command in ["sync", "check"] {
        let run = Pgwarp::new(&[command, "-c", config]).run();
        let all = format!("{}\n{}", run.stdout, run.stderr);
        assert!(!run.status.success(), "{command} succeeded:\n{all}");
        assert!(
            all.contains(&format!("replication slot \"{}\"", sc.slot))
                && all.contains("invalidated")
                && all.contains("re-sync"),
            "{command} does not say the slot was invalidated and a re-sync is needed:\n{all}"
        );
    }
    // nothing was applied, the state and the slot are left for the operator
    assert_eq!(sc.fixture.count("users").unwrap(), users_before);
    assert_eq!(sc.phase().as_deref(), Some("streaming"));
    let slots: i64 = sc.src_scalar(&format!(
        "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{}'",
        sc.slot
    ));
    assert_eq!(slots, 1);
}

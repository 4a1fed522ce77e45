//! Schema changes on the source while pgwarp streams. pgwarp sees them in the Relation message
//! that precedes the first change made under the new definition, and:
//!
//! * follows an ADD COLUMN that the operator already made on the target (the column's values
//!   arrive, nothing stops);
//! * stops on anything else (an ADD COLUMN the target lacks, DROP COLUMN, ALTER TYPE) with a
//!   message naming the table, the column and what to do, after applying everything committed
//!   before the change and nothing after it: the slot's confirmed position stays before the
//!   change. Once the operator makes the same change on the target, `pgwarp sync` resumes
//!   exactly there and the data converges.

mod fault_support;

use std::time::Duration;

use fault_support::flow::{converge_and_stop, load_scenario, start_streaming};
use fault_support::load;
use fault_support::process::{Pgwarp, child_main};
use fault_support::scenario::Scenario;
use pgwarp_tests::quote_ident;

#[test]
#[ignore = "entry point of the pgwarp child processes, not a test"]
fn child_entry() {
    child_main();
}

/// Runs `ALTER TABLE <t> <action>` on the target: the coordinator's shell and every placement
/// of every shard (what Citus does for a DDL on a distributed table).
fn alter_on_target(sc: &Scenario, table: &str, action: &str) {
    sc.fixture
        .coordinator()
        .execute(&format!(
            "ALTER TABLE {} {action}",
            sc.fixture.qualified(table).unwrap()
        ))
        .unwrap();
    for shard in sc.fixture.shards(table).unwrap() {
        for group in &shard.groups {
            sc.fixture
                .node_of_group(*group)
                .unwrap()
                .execute(&format!("ALTER TABLE {} {action}", shard.shard_table))
                .unwrap();
        }
    }
}

/// Changes committed just before a schema change: plenty, so some are still queued for the
/// nodes when pgwarp meets the change.
const BEFORE: &str =
    "INSERT INTO users SELECT g, 'before', 1 FROM generate_series(200001, 203000) g;
                      UPDATE users SET score = score + 1 WHERE user_id % 3 = 0;";

/// Streams, commits [`BEFORE`], then `ddl`, then `after` (the first change under the new
/// definition); pgwarp must stop. Returns the error output and the LSN between `ddl` and
/// `after`.
fn change_stops(sc: &Scenario, ddl: &str, after: &str) -> (String, pgwarp_decoder::Lsn) {
    let mut sync = start_streaming(sc, "");
    sc.src(BEFORE);
    sc.src(ddl);
    let between = sc.source_lsn();
    sc.src(after);
    let status = sync.wait_for_exit(Duration::from_secs(600));
    let stderr = sync.stderr();
    assert!(!status.success(), "pgwarp went on after: {ddl}\n{stderr}");
    let flush = sc
        .confirmed_flush()
        .expect("the slot has a confirmed position");
    assert!(
        flush <= between,
        "the slot confirmed {flush}, past the schema change (before {between})"
    );
    (stderr, between)
}

/// The operator makes the change on the target too; pgwarp resumes and converges.
fn resume_after_fix(sc: &Scenario, action: &str) {
    alter_on_target(sc, "users", action);
    let config = sc.config_file(&load::TABLES, "");
    Pgwarp::new(&["sync", "-c", config.to_str().unwrap(), "--until-caught-up"])
        .run()
        .expect_success();
    for table in load::TABLES {
        sc.assert_synced(table);
    }
}

fn assert_says(stderr: &str, sc: &Scenario, needles: &[&str]) {
    let table = format!("table \"{}.users\"", sc.schema);
    for needle in std::iter::once(table.as_str()).chain(needles.iter().copied()) {
        assert!(
            stderr.contains(needle),
            "the error does not say {needle:?}:\n{stderr}"
        );
    }
}

#[test]
fn add_column_already_on_the_target_is_followed() {
    let sc = load_scenario(2000);
    let sync = start_streaming(&sc, "");
    sc.src(BEFORE);
    alter_on_target(&sc, "users", "ADD COLUMN email text");
    sc.src("ALTER TABLE users ADD COLUMN email text");
    sc.src(
        "INSERT INTO users SELECT g, 'with email', 2, 'u' || g || '@example.com'
           FROM generate_series(300001, 300500) g;
         UPDATE users SET email = 'old' || user_id || '@example.com' WHERE user_id % 10 = 0;
         DELETE FROM users WHERE user_id % 17 = 0;",
    );
    let out = converge_and_stop(&sc, sync);
    let with_email: i64 = sc
        .fixture
        .rows("users")
        .unwrap()
        .iter()
        .filter(|r| r.get(3).cloned().flatten().is_some())
        .count() as i64;
    assert!(
        with_email > 500,
        "{with_email} rows with an email on the target"
    );
    assert!(
        out.stderr.contains("email"),
        "following the new column was not logged:\n{}",
        out.stderr
    );
}

#[test]
fn add_column_missing_on_the_target_stops_before_the_slot_passes_it() {
    let sc = load_scenario(2000);
    let (stderr, _) = change_stops(
        &sc,
        "ALTER TABLE users ADD COLUMN email text",
        "INSERT INTO users VALUES (400001, 'x', 0, 'x@example.com')",
    );
    assert_says(&stderr, &sc, &["column \"email\"", "added", "target"]);
    resume_after_fix(&sc, "ADD COLUMN email text");
}

#[test]
fn drop_column_stops_before_the_slot_passes_it() {
    let sc = load_scenario(2000);
    let (stderr, _) = change_stops(
        &sc,
        "ALTER TABLE users DROP COLUMN score",
        "INSERT INTO users VALUES (400001, 'x')",
    );
    assert_says(&stderr, &sc, &["column \"score\"", "dropped"]);
    resume_after_fix(&sc, "DROP COLUMN score");
}

#[test]
fn alter_type_stops_before_the_slot_passes_it() {
    let sc = load_scenario(2000);
    let (stderr, _) = change_stops(
        &sc,
        "ALTER TABLE users ALTER COLUMN score TYPE bigint",
        "UPDATE users SET score = 5000000000 WHERE user_id = 1",
    );
    assert_says(&stderr, &sc, &["column \"score\"", "type"]);
    resume_after_fix(&sc, "ALTER COLUMN score TYPE bigint");
}

#[test]
fn schema_change_without_a_later_change_lets_the_stream_go_on() {
    // DDL alone sends nothing: until a row is written under the new definition there is
    // nothing to refuse, and pgwarp keeps streaming the other tables
    let sc = load_scenario(2000);
    let sync = start_streaming(&sc, "");
    sc.src(&format!(
        "ALTER TABLE {}.users ADD COLUMN note text",
        quote_ident(&sc.schema)
    ));
    sc.src("UPDATE products SET price = 7 WHERE id < 10; INSERT INTO ledger VALUES (1, 1, 'x');");
    alter_on_target(&sc, "users", "ADD COLUMN note text");
    converge_and_stop(&sc, sync);
}

#[test]
fn changes_from_before_an_added_column_replay_with_the_older_definition() {
    // pgwarp is stopped while rows are written, then a column is added on both sides and
    // more rows are written: on restart the stream replays the older transactions (fewer
    // columns) and then the newer ones
    let sc = load_scenario(2000);
    let config = sc.config_file(&load::TABLES, "");
    let config = config.to_str().unwrap();
    Pgwarp::new(&["sync", "-c", config, "--until-caught-up"])
        .run()
        .expect_success();
    sc.src(BEFORE);
    alter_on_target(&sc, "users", "ADD COLUMN email text DEFAULT 'none'");
    sc.src("ALTER TABLE users ADD COLUMN email text DEFAULT 'none'");
    sc.src(
        "INSERT INTO users SELECT g, 'after', 3, g || '@example.com'
           FROM generate_series(300001, 300100) g;
         UPDATE users SET email = 'changed' WHERE user_id % 11 = 0;",
    );
    Pgwarp::new(&["sync", "-c", config, "--until-caught-up"])
        .run()
        .expect_success();
    for table in load::TABLES {
        sc.assert_synced(table);
    }
}

#[test]
fn column_dropped_while_stopped_is_reported_as_dropped() {
    // pgwarp is stopped while rows are written under the old definition, then a column is
    // dropped on both sides: on restart the replayed changes still carry the column, which the
    // table no longer has; pgwarp stops and says the column was dropped (not added), and the
    // slot stays where it was
    let sc = load_scenario(2000);
    let config = sc.config_file(&load::TABLES, "");
    let config = config.to_str().unwrap();
    Pgwarp::new(&["sync", "-c", config, "--until-caught-up"])
        .run()
        .expect_success();
    let before = sc
        .confirmed_flush()
        .expect("the slot has a confirmed position");
    sc.src(BEFORE);
    sc.src("ALTER TABLE users DROP COLUMN score");
    alter_on_target(&sc, "users", "DROP COLUMN score");
    let run = Pgwarp::new(&["sync", "-c", config, "--until-caught-up"]).run();
    let stderr = run.expect_failure();
    assert_says(
        stderr,
        &sc,
        &[
            "column \"score\" was dropped",
            "start the sync of this table over",
        ],
    );
    assert!(!stderr.contains("was added"), "{stderr}");
    assert_eq!(sc.confirmed_flush(), Some(before));
}

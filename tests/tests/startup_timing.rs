//! Where `pgwarp sync --until-caught-up` spends its start-up on a resumed sync (issue #8).
//!
//! Not a test of behaviour: an `#[ignore]`d measurement for developers. It builds the
//! storefront tables on the Citus-shaped cluster, finishes the snapshot in-process, then runs
//! the command several times in a child process with debug logs and prints, for each run, the
//! milliseconds between consecutive start-up log lines (from the first line to "node writer
//! ready" and "caught up"). Run with
//! `PGWARP_TEST_CHILD_LOG=info,pgwarp=debug,tokio_postgres=warn cargo nextest run -p pgwarp-tests
//! --test startup_timing --run-ignored only --no-capture resumed_sync_startup_breakdown`.

mod sync_support;

use sync_support::load::{ORDER_SEQUENCE, STOREFRONT_DDL, initial_data, storefront_spec};
use sync_support::process::{PgwarpProcess, child_main, sync_args};
use sync_support::{Env, sync_until_caught_up};

const TABLES: [&str; 4] = ["users", "orders", "products", "events"];
const RUNS: usize = 5;

#[test]
#[ignore = "started by the tests as a child process"]
fn child_entry() {
    child_main();
}

/// The microseconds since midnight of a log line's RFC 3339 timestamp, if it has one (the
/// first line follows the test runner's `test child_entry ... ` on the same line).
fn micros_of(line: &str) -> Option<(u64, &str)> {
    let start = line.find("Z ")?.checked_sub(26)?;
    let line = line.get(start..)?;
    let time = line.split_whitespace().next()?.split('T').nth(1)?;
    let time = time.trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: u64 = parts.next()?.parse().ok()?;
    let m: u64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some((
        (h * 3600 + m * 60) * 1_000_000 + (s * 1_000_000.0) as u64,
        line,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test: run it by name"]
async fn resumed_sync_startup_breakdown() {
    let env = Env::new(
        "startup_src",
        storefront_spec(),
        &format!("{STOREFRONT_DDL} {ORDER_SEQUENCE}"),
    );
    env.src(&initial_data(500));
    sync_until_caught_up(&env.settings(&TABLES)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = env.config_file(dir.path(), &TABLES);
    for run in 0..RUNS {
        env.src(&format!(
            "INSERT INTO products VALUES ({}, 'marker', 1);",
            100_000 + run
        ));
        let p = PgwarpProcess::spawn(&sync_args(&config, true), &dir.path().join("run.log"));
        let (status, log) = p.wait().await;
        assert!(status.success(), "{log}");
        println!("--- run {run}");
        let mut first = None;
        let mut last = None;
        for line in log.lines() {
            let Some((t, line)) = micros_of(line) else {
                continue;
            };
            let first = *first.get_or_insert(t);
            let delta = last.map_or(0, |l| t - l);
            last = Some(t);
            let text: String = line.chars().skip(28).take(150).collect();
            println!(
                "{:>8.1} ms (+{:>6.1}) {text}",
                (t - first) as f64 / 1000.0,
                delta as f64 / 1000.0
            );
        }
    }
    env.assert_synced("products", None);
}

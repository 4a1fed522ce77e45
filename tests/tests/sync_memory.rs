//! Memory with default settings: peak RSS of a pgwarp process while it syncs a large table
//! (snapshot) and then a 1,000,000-row transaction (streamed by the server, spilled beyond the
//! default 64 MiB transaction memory). The acceptance bound is 300 MB.
//!
//! Ignored by default: it writes a few GB and takes minutes. Run it with
//! `PGWARP_MEMORY_ROWS=10000000 cargo test -p pgwarp-tests --test sync_memory -- --ignored
//! --nocapture` (10 M rows of ~200 bytes is a table of about 2.3 GB).

mod sync_support;

use std::time::Duration;

use pgwarp_tests::cluster::ClusterSpec;
use sync_support::Env;
use sync_support::process::{PgwarpProcess, child_main, sync_args};

const BIG: &str = "CREATE TABLE big (id bigint PRIMARY KEY, payload text NOT NULL)";

/// The child process's entry point (see `sync_support::process`).
#[test]
#[ignore = "entry point of the pgwarp child process"]
fn child_entry() {
    child_main();
}

fn kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Runs `pgwarp sync --until-caught-up` in a child and returns its peak RSS in MiB.
async fn peak_rss_mib(env: &Env, dir: &std::path::Path, name: &str) -> (f64, String) {
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "source = \"{}\"\ntarget = \"{}\"\ntables = [\"{}.big\"]\nslot = \"{}\"\n\
             publication = \"{}\"\nspill_dir = \"{}\"\nprogress = \"never\"\n",
            env.source.conn_string(),
            env.fixture.coordinator_conn_string(),
            env.schema,
            env.slot,
            env.slot,
            dir.join("spill").display()
        ),
    )
    .unwrap();
    let mut p = PgwarpProcess::spawn(&sync_args(&config, true), &dir.join(format!("{name}.log")));
    let status_path = format!("/proc/{}/status", p.id());
    let mut peak = 0u64;
    loop {
        if let Ok(s) = std::fs::read_to_string(&status_path) {
            peak = peak.max(kib(&s, "VmHWM:").unwrap_or(0));
        }
        if p.exited().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, log) = p.wait().await;
    assert!(status.success(), "{log}");
    (peak as f64 / 1024.0, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes gigabytes and takes minutes; run explicitly to measure memory"]
async fn slow_memory_profile_large_table_and_million_row_transaction() {
    let rows: i64 = std::env::var("PGWARP_MEMORY_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let env = Env::new(
        "sync_memory",
        ClusterSpec::new().distributed("big", BIG, "id", 16),
        BIG,
    );
    env.src(&format!(
        "INSERT INTO big SELECT g, repeat(md5(g::text), 6) FROM generate_series(1, {rows}) g;"
    ));
    let size: i64 = env
        .source
        .query_scalar(&format!(
            "SELECT pg_total_relation_size('{}.big')",
            env.schema
        ))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let (snapshot_peak, _) = peak_rss_mib(&env, dir.path(), "snapshot").await;
    let snapshot_secs = started.elapsed().as_secs_f64();
    println!(
        "snapshot of {rows} rows ({:.0} MiB on the source): peak RSS {snapshot_peak:.0} MiB, {snapshot_secs:.0}s",
        size as f64 / 1048576.0
    );

    // one transaction of a million rows, streamed by the server and spilled by pgwarp
    env.src(&format!(
        "INSERT INTO big SELECT g, repeat(md5(g::text), 6) FROM generate_series({}, {}) g;",
        rows + 1,
        rows + 1_000_000
    ));
    let started = std::time::Instant::now();
    let (stream_peak, _) = peak_rss_mib(&env, dir.path(), "stream").await;
    println!(
        "1,000,000-row transaction: peak RSS {stream_peak:.0} MiB, {:.0}s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(env.fixture.count("big").unwrap(), rows + 1_000_000);
    assert!(
        snapshot_peak < 300.0,
        "snapshot peak RSS {snapshot_peak:.0} MiB"
    );
    assert!(stream_peak < 300.0, "stream peak RSS {stream_peak:.0} MiB");
}

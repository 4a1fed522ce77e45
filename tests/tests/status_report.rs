//! `pgwarp status` after a sync: phase, snapshot progress per table, nodes and their lag, slot
//! health; and before any sync.

mod sync_support;

use std::time::Duration;

use pgwarp_tests::cluster::ClusterSpec;
use sync_support::{Env, sync_until_caught_up};

const USERS: &str = "CREATE TABLE users (user_id bigint PRIMARY KEY, name text)";
const PRODUCTS: &str = "CREATE TABLE products (id int PRIMARY KEY, name text)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_after_a_sync_shows_phase_progress_lag_and_slot_health() {
    let spec = ClusterSpec::new()
        .distributed("users", USERS, "user_id", 8)
        .reference("products", PRODUCTS);
    let env = Env::new("status", spec, &format!("{USERS}; {PRODUCTS};"));
    let settings = env.settings(&["users", "products"]);

    // before any sync: no state, no slot
    let before = pgwarp::status::gather(&settings, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(before.phase, "none");
    assert!(!before.source.slot_exists);
    assert!(before.nodes.is_empty());

    env.src(
        "INSERT INTO users SELECT g, 'u' || g FROM generate_series(1, 5000) g;
         INSERT INTO products SELECT g, 'p' || g FROM generate_series(1, 30) g;",
    );
    sync_until_caught_up(&settings).await;
    env.src("UPDATE users SET name = 'changed' WHERE user_id <= 100;");
    let caught_up = sync_until_caught_up(&settings).await;

    let r = pgwarp::status::gather(&settings, Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(r.phase, "streaming");
    assert_eq!(r.publication.as_deref(), Some(env.slot.as_str()));
    assert_eq!(r.caught_up_lsn, Some(caught_up.to_string()));
    assert_eq!(r.tables.len(), 2);
    for t in &r.tables {
        assert!(t.chunks > 0 && t.chunks_done == t.chunks, "{t:?}");
    }
    let rows: i64 = r.tables.iter().map(|t| t.rows).sum();
    assert_eq!(rows, 5030);
    assert!(r.source.slot_exists && !r.source.slot_active);
    assert_eq!(r.source.wal_status.as_deref(), Some("reserved"));
    assert!(r.source.retained_wal_bytes.is_some());
    // both workers hold shards; users changes were applied on every node holding them
    assert!(r.nodes.len() >= 2, "{:?}", r.nodes);
    let with_progress: Vec<_> = r.nodes.iter().filter(|n| n.applied_lsn.is_some()).collect();
    assert!(!with_progress.is_empty(), "{:?}", r.nodes);
    for n in &with_progress {
        assert!(n.lag_bytes.is_some() && n.lag_seconds.is_some());
    }
    assert!(r.throughput_bytes_per_second.is_some());

    // the command renders it
    let mut out = Vec::new();
    pgwarp::cli::status::render(&r, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("phase streaming"), "{text}");
    assert!(text.contains("wal_status reserved"), "{text}");
    assert!(text.contains(&format!("{}.users", env.schema)), "{text}");
}

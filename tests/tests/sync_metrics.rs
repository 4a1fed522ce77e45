//! The Prometheus endpoint of a running sync reports what was applied.

mod sync_support;

use pgwarp::pipeline::{self, CancellationToken, SyncOptions, SyncOutcome};
use pgwarp_tests::cluster::ClusterSpec;
use sync_support::Env;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const USERS: &str = "CREATE TABLE users (user_id bigint PRIMARY KEY, name text)";

async fn get(addr: std::net::SocketAddr) -> String {
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut page = String::new();
    c.read_to_string(&mut page).await.unwrap();
    page
}

/// The value of the first sample line starting with `prefix`.
fn value(page: &str, prefix: &str) -> f64 {
    page.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in\n{page}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_rows_per_table_and_node() {
    let env = Env::new(
        "sync_metrics",
        ClusterSpec::new().distributed("users", USERS, "user_id", 4),
        USERS,
    );
    env.src("INSERT INTO users SELECT g, 'u' FROM generate_series(1, 3000) g;");
    let settings = env.settings(&["users"]);
    let prepared = pipeline::prepare(&settings).await.unwrap();
    let server = pgwarp::metrics::serve("127.0.0.1:0".parse().unwrap(), prepared.stats.clone())
        .await
        .unwrap();
    let outcome = pipeline::run(
        &prepared,
        SyncOptions {
            until_caught_up: true,
        },
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert!(matches!(outcome, SyncOutcome::CaughtUp(_)));
    let page = get(server.local_addr()).await;
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    // every row was written once, spread over the nodes
    let table = format!("{}.users", env.schema);
    let applied: f64 = page
        .lines()
        .filter(|l| l.starts_with(&format!("pgwarp_rows_applied_total{{table=\"{table}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(applied, 3000.0, "{page}");
    assert_eq!(
        value(
            &page,
            &format!("pgwarp_snapshot_rows_total{{table=\"{table}\"}}")
        ),
        3000.0
    );
    assert_eq!(value(&page, "pgwarp_phase "), 3.0);
    assert!(value(&page, "pgwarp_batch_duration_seconds_count ") > 0.0);
    assert!(page.contains("pgwarp_lag_bytes{node="), "{page}");
}

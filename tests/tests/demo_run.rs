//! `pgwarp demo` end to end at a small scale: it starts its own servers, syncs a storefront
//! under a write load, and its verification passes.

use pgwarp::cli::demo::{DemoArgs, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_verifies_source_and_cluster_identical() {
    let args = DemoArgs {
        users: 3_000,
        stream_seconds: 1,
        progress: Some("never".into()),
    };
    let mut out = Vec::new();
    let result = run(&args, &mut out).await;
    let text = String::from_utf8(out).unwrap();
    assert!(result.is_ok(), "{result:?}\n{text}");
    assert!(text.contains("verification passed"), "{text}");
    assert!(text.contains("users: "), "{text}");
    assert!(
        text.contains("0 rows outside the shard their hash selects"),
        "{text}"
    );
    assert!(!text.contains("DIFFERENT"), "{text}");
}

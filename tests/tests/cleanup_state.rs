//! `pgwarp cleanup` after a real sync into the Citus-shaped cluster.
//!
//! What each test proves:
//! * `cleanup_removes_everything_and_is_idempotent`: slot, publication and the `pgwarp` schema
//!   on the coordinator and on every worker are gone after one run; a second run reports that
//!   nothing is left and succeeds; rows another sync keeps in the schema survive (and the
//!   schema with them).
//! * `an_active_slot_needs_force`: while a sync streams, cleanup refuses and names the
//!   consumer; `--force` ends it and the sync stops.
//! * `mistakes_are_reported`: a missing target, an unreachable source.

mod sync_support;
mod verify_support;

use std::time::Duration;

use pgwarp::pipeline::CancellationToken;
use pgwarp_tests::cluster::ClusterSpec;
use sync_support::{Env, run_sync, sync_until_caught_up};
use verify_support::pgwarp;

const USERS: &str = "CREATE TABLE users (user_id bigint PRIMARY KEY, name text)";
const PRODUCTS: &str = "CREATE TABLE products (id int PRIMARY KEY, name text)";

fn env(prefix: &str) -> Env {
    let spec = ClusterSpec::new()
        .distributed("users", USERS, "user_id", 4)
        .reference("products", PRODUCTS);
    let env = Env::new(prefix, spec, &format!("{USERS}; {PRODUCTS};"));
    env.src(
        "INSERT INTO users SELECT g, 'u' || g FROM generate_series(1, 300) g; \
         INSERT INTO products SELECT g, 'p' || g FROM generate_series(1, 10) g;",
    );
    env
}

fn has_schema(env: &Env) -> Vec<bool> {
    env.fixture
        .nodes()
        .iter()
        .map(|n| {
            n.query_scalar::<bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'pgwarp')",
            )
            .unwrap()
        })
        .collect()
}

fn cleanup_args(env: &Env) -> Vec<String> {
    let mut args = env.command_line("cleanup");
    args.extend(["--publication".to_owned(), env.slot.clone()]);
    args
}

async fn run(args: &[String]) -> verify_support::Outcome {
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    pgwarp(&argv).await
}

fn source_objects(env: &Env) -> i64 {
    env.source
        .query_scalar(&format!(
            "SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{s}') + \
                    (SELECT count(*) FROM pg_publication WHERE pubname = '{s}')",
            s = env.slot
        ))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_removes_everything_and_is_idempotent() {
    let env = env("clean_all");
    sync_until_caught_up(&env.settings(&["users", "products"])).await;
    assert_eq!(source_objects(&env), 2);
    assert_eq!(has_schema(&env), vec![true; env.fixture.nodes().len()]);

    let out = run(&cleanup_args(&env)).await;
    out.expect_status(0);
    out.expect_stdout(&format!("replication slot \"{}\": dropped", env.slot));
    out.expect_stdout(&format!("publication \"{}\": dropped", env.slot));
    assert_eq!(
        out.stdout.matches(": pgwarp schema dropped").count(),
        env.fixture.nodes().len(),
        "{}",
        out.stdout
    );
    assert_eq!(source_objects(&env), 0);
    assert_eq!(has_schema(&env), vec![false; env.fixture.nodes().len()]);

    let again = run(&cleanup_args(&env)).await;
    again.expect_status(0);
    again.expect_stdout(": not there");
    assert_eq!(
        again.stdout.matches(": no pgwarp schema").count(),
        env.fixture.nodes().len(),
        "{}",
        again.stdout
    );

    // another sync's rows keep the schema alive on that node
    let worker = &env.fixture.workers()[0];
    worker
        .execute(&format!(
            "CREATE SCHEMA pgwarp; \
             CREATE TABLE pgwarp.progress (slot text, node text, lsn pg_lsn, \
                                           PRIMARY KEY (slot, node)); \
             INSERT INTO pgwarp.progress VALUES ('other_sync', 'n', '0/1'), \
               ('{s}', 'n', '0/2'), ('{s}.snapshot', 'n reader 0', '0/0'), \
               ('{s}x', 'n', '0/3')",
            s = env.slot
        ))
        .unwrap();
    let out = run(&cleanup_args(&env)).await;
    out.expect_status(0);
    let worker_line = format!(
        "node {}:{}: 2 row(s) of slot \"{}\" removed; the pgwarp schema stays",
        worker.host, worker.port, env.slot
    );
    out.expect_stdout(&worker_line);
    let rows: Vec<Vec<Option<String>>> = worker
        .query_rows("SELECT slot FROM pgwarp.progress ORDER BY 1")
        .unwrap();
    assert_eq!(
        rows,
        vec![
            vec![Some("other_sync".to_owned())],
            vec![Some(format!("{}x", env.slot))]
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_slot_needs_force() {
    let env = env("clean_force");
    let settings = env.settings(&["users", "products"]);
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let sync = std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(run_sync(&settings, false, &c))
    });
    // wait until the sync streams the slot
    loop {
        let active: bool = env
            .source
            .query_scalar(&format!(
                "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = '{}' \
                 AND active)",
                env.slot
            ))
            .unwrap();
        if active && env.phase().as_deref() == Some("streaming") {
            break;
        }
        assert!(!sync.is_finished(), "the sync ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = run(&cleanup_args(&env)).await;
    out.expect_status(1);
    out.expect_stderr(&format!(
        "cleanup of slot \"{s}\" failed: replication slot \"{s}\" is active for PID",
        s = env.slot
    ));
    assert_eq!(source_objects(&env), 2);

    let mut args = cleanup_args(&env);
    args.push("--force".to_owned());
    let out = run(&args).await;
    out.expect_status(0);
    assert_eq!(source_objects(&env), 0);
    let ended = sync.join().unwrap();
    assert!(ended.is_err(), "{ended:?}");
    cancel.cancel();
}

#[tokio::test]
async fn mistakes_are_reported() {
    let out = pgwarp(&["cleanup", "--source", "host=127.0.0.1 port=1 dbname=x"]).await;
    out.expect_status(1);
    out.expect_stderr("no target given");
    let db = pgwarp_tests::PgServer::shared()
        .create_database("cleanup_t")
        .unwrap();
    let out = pgwarp(&[
        "cleanup",
        "--source",
        "host=127.0.0.1 port=1 user=postgres dbname=x",
        "--target",
        &db.conn_string(),
    ])
    .await;
    out.expect_status(1);
    out.expect_stderr(
        "cleanup of slot \"pgwarp\" failed: could not connect to the source: could not \
             connect to server at 127.0.0.1:1",
    );
}

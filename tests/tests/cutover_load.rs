//! `pgwarp cutover` with a real `pgwarp sync` streaming into the Citus-shaped cluster while an
//! application role keeps writing to the source.
//!
//! What each test proves:
//! * `cutover_under_a_running_write_load`: the application role is fenced (its writes then fail
//!   with SQLSTATE 25006), the target catches up through the running sync, the coordinator's
//!   sequence hands out the value the source would have handed out next, verify passes, every
//!   table equals the source row for row with every row in its shard, slot and publication are
//!   gone, the sync ends with "cutover done" because its slot is gone, `pgwarp.cutover` says
//!   `done`, and a second run has nothing to do.
//! * `a_cutover_that_cannot_catch_up_lifts_the_fence`: with one shard table locked on a worker
//!   the sync cannot apply; cutover gives up after `--max-wait`, says why, lifts the fence (the
//!   application writes again) and keeps the slot; once the lock is gone a second cutover (this
//!   time fencing the whole database) succeeds.

mod sync_support;
mod verify_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use pgwarp::pipeline::{CancellationToken, SyncOutcome};
use pgwarp_tests::cluster::ClusterSpec;
use pgwarp_tests::{TestDb, unique_name};
use sync_support::{Env, run_sync};
use verify_support::{Outcome, pgwarp};

const SEQ: &str = "CREATE SEQUENCE order_ids";
const USERS: &str = "CREATE TABLE users (user_id bigint PRIMARY KEY, name text NOT NULL)";
const ORDERS: &str = "CREATE TABLE orders (user_id bigint NOT NULL, \
    order_id bigint NOT NULL DEFAULT nextval('order_ids'), amount numeric(12,2), \
    PRIMARY KEY (user_id, order_id))";
const PRODUCTS: &str = "CREATE TABLE products (id int PRIMARY KEY, name text)";

fn spec() -> ClusterSpec {
    ClusterSpec::new()
        .prelude(SEQ)
        .distributed("users", USERS, "user_id", 8)
        .distributed_colocated("orders", ORDERS, "user_id", "users")
        .reference("products", PRODUCTS)
}

/// The environment, an application role allowed to write, and initial rows.
fn setup(prefix: &str) -> (Env, String) {
    let env = Env::new(
        prefix,
        spec(),
        &format!("{SEQ}; {USERS}; {ORDERS}; {PRODUCTS};"),
    );
    let role = unique_name("shop_app");
    env.src(&format!(
        "CREATE ROLE {role} LOGIN; \
         GRANT USAGE ON SCHEMA \"{s}\" TO {role}; \
         GRANT ALL ON ALL TABLES IN SCHEMA \"{s}\" TO {role}; \
         GRANT ALL ON ALL SEQUENCES IN SCHEMA \"{s}\" TO {role}; \
         INSERT INTO users SELECT g, 'user ' || g FROM generate_series(1, 2000) g; \
         INSERT INTO orders (user_id, amount) SELECT (g % 2000) + 1, g / 4.0 \
           FROM generate_series(1, 6000) g; \
         INSERT INTO products SELECT g, 'p' || g FROM generate_series(1, 30) g;",
        s = env.schema
    ));
    (env, role)
}

/// A sync running in its own thread until cancelled (or until its slot is dropped).
struct Sync {
    cancel: CancellationToken,
    handle: JoinHandle<Result<SyncOutcome, String>>,
}

impl Sync {
    fn start(env: &Env) -> Sync {
        let settings = env.settings(&["users", "orders", "products"]);
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        let handle = std::thread::spawn(move || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(run_sync(&settings, false, &c))
        });
        Sync { cancel, handle }
    }

    /// Waits until the sync streams (snapshot done).
    async fn wait_streaming(&self, env: &Env) {
        while env.phase().as_deref() != Some("streaming") {
            assert!(
                !self.handle.is_finished(),
                "the sync ended before streaming"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stop(self) -> Result<SyncOutcome, String> {
        self.cancel.cancel();
        self.handle.join().expect("sync thread")
    }
}

/// An application writing as `role` until stopped, counting what happened to its writes.
struct AppLoad {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    read_only: Arc<AtomicU64>,
    handle: JoinHandle<Result<(), String>>,
}

impl AppLoad {
    fn start(db: &TestDb, schema: &str, role: &str) -> AppLoad {
        let conninfo = format!(
            "{} user={role} application_name=shop options='-c search_path={schema}'",
            db.conn_string().replace("user=postgres", "")
        );
        let (stop, ok, read_only) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let (s, o, r) = (stop.clone(), ok.clone(), read_only.clone());
        let handle = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(async move {
                    let mut i: i64 = 0;
                    let mut client = None;
                    while !s.load(Ordering::Acquire) {
                        if client.is_none() {
                            let (c, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
                                .await
                                .map_err(|e| format!("app connect: {e}"))?;
                            tokio::spawn(conn);
                            client = Some(c);
                        }
                        let Some(c) = client.as_ref() else { continue };
                        i += 1;
                        let sql = format!(
                            "BEGIN; \
                             INSERT INTO users VALUES (100000 + {i}, 'app ' || {i}); \
                             INSERT INTO orders (user_id, amount) VALUES (100000 + {i}, {i}), ((({i} * 7) % 2000) + 1, 1.5); \
                             UPDATE users SET name = name || '+' WHERE user_id = ({i} % 2000) + 1; \
                             DELETE FROM orders WHERE user_id = (({i} * 13) % 2000) + 1 \
                               AND order_id = (SELECT min(order_id) FROM orders WHERE user_id = (({i} * 13) % 2000) + 1); \
                             COMMIT"
                        );
                        match c.batch_execute(&sql).await {
                            Ok(()) => {
                                o.fetch_add(1, Ordering::AcqRel);
                            }
                            Err(e) => match e.as_db_error().map(|d| d.code().code().to_owned()) {
                                Some(code) if code == "25006" => {
                                    r.fetch_add(1, Ordering::AcqRel);
                                    let _ = c.batch_execute("ROLLBACK").await;
                                    tokio::time::sleep(Duration::from_millis(5)).await;
                                }
                                // ended by the fence, or the connection is gone: reconnect
                                Some(code) if code == "57P01" => client = None,
                                None if e.is_closed() || c.is_closed() => client = None,
                                _ => return Err(format!("app write failed: {e}")),
                            },
                        }
                    }
                    Ok(())
                })
        });
        AppLoad {
            stop,
            ok,
            read_only,
            handle,
        }
    }

    fn ok(&self) -> u64 {
        self.ok.load(Ordering::Acquire)
    }

    fn read_only(&self) -> u64 {
        self.read_only.load(Ordering::Acquire)
    }

    async fn wait_until(&self, what: impl Fn(&AppLoad) -> bool) {
        while !what(self) {
            assert!(!self.handle.is_finished(), "the application load ended");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Release);
        let counts = (self.ok(), self.read_only());
        if let Err(e) = self.handle.join().expect("load thread") {
            panic!("{e}");
        }
        counts
    }
}

fn next_value(db_rows: Vec<Vec<Option<String>>>) -> i64 {
    let row = &db_rows[0];
    let last: i64 = row[0].as_deref().unwrap().parse().unwrap();
    if row[1].as_deref() == Some("true") {
        last + 1
    } else {
        last
    }
}

/// `pgwarp cutover` of `env`'s sync with `extra` arguments.
async fn cutover(env: &Env, extra: &[&str]) -> Outcome {
    let mut args = env.command_line("cutover");
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    pgwarp(&args).await
}

fn source_count(env: &Env, sql: &str) -> i64 {
    env.source.query_scalar(sql).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutover_under_a_running_write_load() {
    let (env, role) = setup("cut_load");
    let sync = Sync::start(&env);
    sync.wait_streaming(&env).await;
    let load = AppLoad::start(&env.source, &env.schema, &role);
    let before = load.ok();
    load.wait_until(|l| l.ok() >= before + 30).await;

    let out = cutover(
        &env,
        &[
            "--publication",
            &env.slot,
            "--fence-role",
            &role,
            "--max-wait",
            "120",
        ],
    )
    .await;
    out.expect_status(0);
    // the application is fenced: its writes fail as read-only from now on
    let fenced_ok = load.ok();
    load.wait_until(|l| l.read_only() >= 5).await;
    let (ok, read_only) = load.stop();
    assert_eq!(ok, fenced_ok, "a write succeeded after the cutover");
    assert!(read_only >= 5 && ok > before + 30, "{ok} {read_only}");

    for line in [
        format!("fenced writes on the source: roles {role}"),
        "the target has applied everything up to the fence".to_owned(),
        "sequences: 1 found, 1 moved forward on the target".to_owned(),
        "verify: 3 table(s) equal".to_owned(),
        format!("replication slot \"{}\" dropped", env.slot),
        format!("publication \"{}\" dropped", env.slot),
        "cutover complete".to_owned(),
        "write downtime: ".to_owned(),
    ] {
        assert!(
            out.stdout.contains(&line),
            "missing {line:?} in\n{}",
            out.stdout
        );
    }

    env.assert_synced("users", Some("user_id"));
    env.assert_synced("orders", Some("user_id"));
    env.assert_synced("products", None);
    // the coordinator's sequence continues where the source's stopped
    let source_next = next_value(
        env.source
            .query_rows(&format!(
                "SELECT last_value::text, is_called::text FROM \"{}\".order_ids",
                env.schema
            ))
            .unwrap(),
    );
    let target_next = next_value(
        env.fixture
            .coordinator()
            .query_rows(&format!(
                "SELECT last_value::text, is_called::text FROM \"{}\".order_ids",
                env.schema
            ))
            .unwrap(),
    );
    assert!(source_next > 6000);
    assert_eq!(target_next, source_next);
    let max_order: i64 = source_count(
        &env,
        &format!("SELECT max(order_id) FROM \"{}\".orders", env.schema),
    );
    assert!(target_next > max_order);

    assert_eq!(
        source_count(
            &env,
            &format!(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{}'",
                env.slot
            )
        ),
        0
    );
    assert_eq!(
        source_count(
            &env,
            &format!(
                "SELECT count(*) FROM pg_publication WHERE pubname = '{}'",
                env.slot
            )
        ),
        0
    );
    // the sync stops because its slot is gone, and says the migration is complete
    let ended = sync.handle.join().expect("sync thread");
    assert!(matches!(ended, Ok(SyncOutcome::CutoverDone)), "{ended:?}");
    let state: String = env
        .fixture
        .coordinator()
        .query_scalar(&format!(
            "SELECT state || ' ' || (fence_lsn IS NOT NULL) || ' ' || (downtime_seconds > 0) \
             FROM pgwarp.cutover WHERE slot = '{}'",
            env.slot
        ))
        .unwrap();
    assert_eq!(state, "done true true");

    let again = cutover(&env, &["--fence-role", &role]).await;
    again.expect_status(0);
    again.expect_stdout("already completed");
    env.src(&format!("DROP OWNED BY {role}; DROP ROLE {role}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cutover_that_cannot_catch_up_lifts_the_fence() {
    let (env, role) = setup("cut_stuck");
    let sync = Sync::start(&env);
    sync.wait_streaming(&env).await;
    // the sync cannot write to this shard while the lock is held
    let shard = &env.fixture.shards("users").unwrap()[0];
    let node = env.fixture.node_of_group(shard.groups[0]).unwrap();
    let (locker, conn) = tokio_postgres::connect(&node.conn_string, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    locker
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
            shard.shard_table
        ))
        .await
        .unwrap();
    env.src("INSERT INTO users SELECT g, 'blocked' FROM generate_series(50001, 50400) g");

    let args = |fence_role: Option<&str>, wait: &str| {
        let mut a = env.command_line("cutover");
        a.extend([
            "--publication".to_owned(),
            env.slot.clone(),
            "--max-wait".to_owned(),
            wait.to_owned(),
        ]);
        if let Some(r) = fence_role {
            a.extend(["--fence-role".to_owned(), r.to_owned()]);
        }
        a
    };
    let a = args(Some(&role), "2");
    let argv: Vec<&str> = a.iter().map(String::as_str).collect();
    let out = pgwarp(&argv).await;
    out.expect_status(1);
    assert!(
        out.stderr.starts_with(
            "cutover failed: the target did not catch up with the source within 2 s: the source \
             was fenced at WAL position"
        ),
        "{}",
        out.stderr
    );
    out.expect_stderr("the sync is streaming but has not applied up to the fence");
    assert!(
        out.stderr.ends_with(
            "; the fence was lifted: the source accepts writes again and the sync goes on"
        ),
        "{}",
        out.stderr
    );
    // the application writes again, the slot is still there, the record says what happened
    let load = AppLoad::start(&env.source, &env.schema, &role);
    load.wait_until(|l| l.ok() >= 3).await;
    let (_, read_only) = load.stop();
    assert_eq!(read_only, 0);
    assert_eq!(
        source_count(
            &env,
            &format!(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{}'",
                env.slot
            )
        ),
        1
    );
    let state: String = env
        .fixture
        .coordinator()
        .query_scalar(&format!(
            "SELECT state FROM pgwarp.cutover WHERE slot = '{}'",
            env.slot
        ))
        .unwrap();
    assert_eq!(state, "failed");

    // once the sync can apply again, a cutover fencing the whole database goes through
    locker.batch_execute("ROLLBACK").await.unwrap();
    let a = args(None, "120");
    let argv: Vec<&str> = a.iter().map(String::as_str).collect();
    let out = pgwarp(&argv).await;
    out.expect_status(0);
    out.expect_stdout(&format!(
        "fenced writes on the source: database \"{}\"",
        env.source.name()
    ));
    env.assert_synced("users", Some("user_id"));
    env.assert_synced("orders", Some("user_id"));
    let _ = sync.stop();
    // lift the database fence so the harness can drop the database
    let lifted = cutover(&env, &["--unfence"]).await;
    lifted.expect_status(0);
    lifted.expect_stdout("fence lifted");
    env.src(&format!("DROP OWNED BY {role}; DROP ROLE {role}"));
}

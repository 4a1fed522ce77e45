//! A write load on the source of the fault scenarios, running in its own thread while faults
//! are injected, and the tables it writes.
//!
//! Every iteration commits: new users with a ledger row (one ledger row per iteration, so the
//! ledger's count is the number of committed iterations), score updates, a user whose
//! distribution column changes (the row moves between shards and nodes), a delete, and a
//! reference-table update that reaches every node. Every 10th iteration adds one large
//! transaction, which the source streams while in progress and pgwarp spills to disk. A
//! failed iteration (the source restarted under it) is retried on a new connection; whether
//! its commit landed does not matter, since tests compare against the source's actual rows.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pgwarp_tests::quote_ident;

/// The load's tables (unqualified).
pub const DDL: &str = "
    CREATE TABLE users (user_id bigint PRIMARY KEY, name text NOT NULL, score int NOT NULL);
    CREATE TABLE ledger (id bigint PRIMARY KEY, amount int NOT NULL, note text);
    CREATE TABLE products (id int PRIMARY KEY, price int NOT NULL);";

/// The tables, for config files.
pub const TABLES: [&str; 3] = ["users", "ledger", "products"];

/// The cluster spec for [`DDL`]: two hash tables and a reference table.
pub fn spec() -> pgwarp_tests::cluster::ClusterSpec {
    pgwarp_tests::cluster::ClusterSpec::new()
        .distributed(
            "users",
            "CREATE TABLE users (user_id bigint PRIMARY KEY, name text NOT NULL, score int NOT NULL)",
            "user_id",
            8,
        )
        .distributed(
            "ledger",
            "CREATE TABLE ledger (id bigint PRIMARY KEY, amount int NOT NULL, note text)",
            "id",
            4,
        )
        .reference(
            "products",
            "CREATE TABLE products (id int PRIMARY KEY, price int NOT NULL)",
        )
}

/// Initial rows: `users` users, 50 products.
pub fn initial_rows(users: i64) -> String {
    format!(
        "INSERT INTO users SELECT g, 'user ' || g, 0 FROM generate_series(1, {users}) g;
         INSERT INTO products SELECT g, 100 FROM generate_series(1, 50) g;"
    )
}

/// The SQL of iteration `i` (one string per transaction).
fn iteration(i: u64) -> Vec<String> {
    let mut out = vec![
        format!(
            "BEGIN;
             INSERT INTO users SELECT 10000000 + {i} * 10 + g, 'late ' || g, 0
               FROM generate_series(1, 10) g;
             INSERT INTO ledger VALUES ({i}, {a}, 'iteration {i}');
             COMMIT;",
            a = i % 100
        ),
        format!(
            "UPDATE users SET score = score + 1 WHERE user_id % 97 = {};",
            i % 97
        ),
        format!(
            "UPDATE users SET user_id = user_id + 500000000, name = name || ' moved'
              WHERE user_id = (SELECT min(user_id) FROM users
                                WHERE user_id < 500000000 AND user_id % 13 = {});",
            i % 13
        ),
        format!(
            "DELETE FROM users WHERE user_id = 10000000 + {} * 10 + 3;",
            i.saturating_sub(1)
        ),
        format!(
            "UPDATE products SET price = price + 1 WHERE id = {};",
            i % 50 + 1
        ),
    ];
    if i % 10 == 5 {
        out.push(format!(
            "INSERT INTO ledger SELECT 1000000000 + {i} * 10000 + g, g % 7, repeat('x', 40)
               FROM generate_series(1, 3000) g;"
        ));
    }
    out
}

/// A running load.
pub struct Load {
    stop: Arc<AtomicBool>,
    iterations: Arc<AtomicU64>,
    handle: Option<JoinHandle<u64>>,
}

impl Load {
    /// Starts the load on `conn_string` with `schema` on the search path.
    pub fn start(conn_string: &str, schema: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let iterations = Arc::new(AtomicU64::new(0));
        let (s, n) = (stop.clone(), iterations.clone());
        let conn_string = conn_string.to_owned();
        let search_path = format!("SET search_path TO {}", quote_ident(schema));
        let handle = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(run(conn_string, search_path, s, n))
        });
        Load {
            stop,
            iterations,
            handle: Some(handle),
        }
    }

    /// Iterations completed without error so far.
    pub fn iterations(&self) -> u64 {
        self.iterations.load(Ordering::Acquire)
    }

    /// Waits until `n` more iterations than now are done (a hang guard of ten minutes).
    pub fn advance(&self, n: u64) {
        let target = self.iterations() + n;
        let deadline = Instant::now() + Duration::from_secs(600);
        while self.iterations() < target {
            assert!(
                Instant::now() < deadline,
                "the load made no progress ({} iterations)",
                self.iterations()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops after the current iteration; returns the number of iterations.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Release);
        self.handle
            .take()
            .map(|h| h.join().expect("the load thread"))
            .unwrap_or_default()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

async fn connect(conn_string: &str, search_path: &str) -> Option<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(conn_string, tokio_postgres::NoTls)
        .await
        .ok()?;
    tokio::spawn(connection);
    client.batch_execute(search_path).await.ok()?;
    Some(client)
}

async fn run(
    conn_string: String,
    search_path: String,
    stop: Arc<AtomicBool>,
    iterations: Arc<AtomicU64>,
) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut client = None;
    let (mut id, mut done) = (0u64, 0u64);
    while !stop.load(Ordering::Acquire) {
        assert!(Instant::now() < deadline, "the load ran for 15 minutes");
        let Some(c) = client.as_ref() else {
            client = connect(&conn_string, &search_path).await;
            if client.is_none() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            continue;
        };
        // a failed iteration may have committed part of its work: never reuse its ids
        id += 1;
        let mut ok = true;
        for sql in iteration(id) {
            if c.batch_execute(&sql).await.is_err() {
                ok = false;
                break;
            }
        }
        if ok {
            done += 1;
            iterations.store(done, Ordering::Release);
        } else {
            // the source went away under it: go on with a new connection
            client = None;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    done
}

//! A concurrent write load on the storefront tables of the sync tests.
//!
//! Every iteration commits a handful of transactions: inserts, updates (some rows carry an
//! out-of-line TOASTed `bio`, so updates send "unchanged TOAST" markers), updates that change
//! the distribution column (rows move between shards and nodes), deletes, a savepoint rolled
//! back inside a transaction, reference-table updates. Once per run it truncates `events`,
//! commits one large transaction (streamed by the server while in progress, with a
//! subtransaction rolled back in the middle) and rolls back another large one. It runs until
//! told to stop; how many iterations it made is returned. Nothing here depends on timing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pgwarp_tests::cluster::ClusterSpec;
use pgwarp_tests::{TestDb, quote_ident};
use tokio::task::JoinHandle;

/// The tables the load writes (unqualified; created in the fixture's schema).
pub const STOREFRONT_DDL: &str = "
    CREATE TABLE users (user_id bigint PRIMARY KEY, name text NOT NULL, score int, bio text);
    CREATE TABLE orders (user_id bigint NOT NULL, order_id bigint NOT NULL, amount numeric(12,2),
                         status text, PRIMARY KEY (user_id, order_id));
    CREATE TABLE products (id int PRIMARY KEY, name text, price numeric(10,2));
    CREATE TABLE events (id bigint PRIMARY KEY, kind text, at timestamptz);";

/// The cluster spec for [`STOREFRONT_DDL`]: `users` hash-distributed in 16 shards, `orders`
/// colocated with it, `products` a reference table, `events` hash-distributed in 4 shards.
pub fn storefront_spec() -> ClusterSpec {
    ClusterSpec::new()
        .distributed(
            "users",
            "CREATE TABLE users (user_id bigint PRIMARY KEY, name text NOT NULL, score int, bio text)",
            "user_id",
            16,
        )
        .distributed_colocated(
            "orders",
            "CREATE TABLE orders (user_id bigint NOT NULL, order_id bigint NOT NULL, \
             amount numeric(12,2), status text, PRIMARY KEY (user_id, order_id))",
            "user_id",
            "users",
        )
        .reference(
            "products",
            "CREATE TABLE products (id int PRIMARY KEY, name text, price numeric(10,2))",
        )
        .distributed(
            "events",
            "CREATE TABLE events (id bigint PRIMARY KEY, kind text, at timestamptz)",
            "id",
            4,
        )
}

/// Initial rows: `users` users (one in 50 with a TOASTed bio), 3 orders each, 200 products,
/// 2000 events.
pub fn initial_data(users: i64) -> String {
    format!(
        "INSERT INTO users SELECT g, 'user ' || g, (g % 100)::int,
             CASE WHEN g % 50 = 0 THEN (SELECT string_agg(md5(g::text || i::text), '')
                                          FROM generate_series(1, 80) i) END
           FROM generate_series(1, {users}) g;
         INSERT INTO orders SELECT (g % {users}) + 1, g, (g % 1000) / 7.0, 'new'
           FROM generate_series(1, {orders}) g;
         INSERT INTO products SELECT g, 'product ' || g, g * 1.5 FROM generate_series(1, 200) g;
         INSERT INTO events SELECT g, 'boot', '2024-01-01'::timestamptz + g * interval '1 second'
           FROM generate_series(1, 2000) g;
         SELECT setval('order_ids', {orders} + 1);",
        orders = users * 3
    )
}

/// The sequence the load takes new order ids from (create it with the tables).
pub const ORDER_SEQUENCE: &str = "CREATE SEQUENCE order_ids;";

/// A running load.
pub struct Load {
    stop: Arc<AtomicBool>,
    iterations: Arc<AtomicU64>,
    handle: JoinHandle<Result<u64, String>>,
}

impl Load {
    /// Starts the load on `db` (tables in `schema`); the large transaction has `big_rows` rows.
    pub async fn start(db: &TestDb, schema: &str, big_rows: i64) -> Load {
        let client = db.connect().await.expect("connect the load");
        client
            .batch_execute(&format!("SET search_path TO {}", quote_ident(schema)))
            .await
            .expect("set the search path");
        let stop = Arc::new(AtomicBool::new(false));
        let iterations = Arc::new(AtomicU64::new(0));
        let (s, it) = (stop.clone(), iterations.clone());
        let handle = tokio::spawn(async move {
            let mut i: i64 = 0;
            while !s.load(Ordering::Acquire) || i < 25 {
                i += 1;
                for sql in iteration(i, big_rows) {
                    client
                        .batch_execute(&sql)
                        .await
                        .map_err(|e| format!("load iteration {i}: {e}\n{sql}"))?;
                }
                it.store(i as u64, Ordering::Release);
            }
            Ok(i as u64)
        });
        Load {
            stop,
            iterations,
            handle,
        }
    }

    /// Iterations completed so far.
    pub fn iterations(&self) -> u64 {
        self.iterations.load(Ordering::Acquire)
    }

    /// Waits until at least `n` iterations are done.
    pub async fn wait_for(&self, n: u64) {
        while self.iterations() < n && !self.handle.is_finished() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Stops after the current iteration (and at least the scripted first 25); returns the
    /// number of iterations.
    pub async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Release);
        match self.handle.await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => panic!("{e}"),
            Err(e) => panic!("load task failed: {e}"),
        }
    }
}

/// The transactions of iteration `i`.
fn iteration(i: i64, big_rows: i64) -> Vec<String> {
    let mut out = vec![
        // new users and their orders
        format!(
            "BEGIN;
             INSERT INTO users SELECT 1000000 + {i} * 100 + g, 'late ' || g, g, NULL
               FROM generate_series(1, 20) g;
             INSERT INTO orders SELECT 1000000 + {i} * 100 + (g % 20) + 1, nextval('order_ids'),
                    g * 1.25, 'new' FROM generate_series(1, 40) g;
             COMMIT;"
        ),
        // updates, some on rows with a TOASTed bio (sent as unchanged TOAST)
        format!(
            "UPDATE users SET score = score + 1 WHERE user_id % 97 = {m} OR user_id % 50 = 0 AND user_id % 1000 = {k};",
            m = i % 97,
            k = (i * 50) % 1000
        ),
        // rows move: the distribution column changes
        format!(
            "UPDATE orders SET user_id = user_id + 5000000
              WHERE (user_id, order_id) IN (SELECT user_id, order_id FROM orders
                                             WHERE user_id < 5000000 AND order_id % 31 = {r}
                                             ORDER BY order_id LIMIT 5);",
            r = i % 31
        ),
        format!(
            "UPDATE users SET user_id = user_id + 50000000, name = name || ' moved'
              WHERE user_id = (SELECT min(user_id) FROM users
                                WHERE user_id < 50000000 AND bio IS NULL AND user_id % 7 = {r});",
            r = i % 7
        ),
        // deletes
        format!(
            "DELETE FROM orders WHERE (user_id, order_id) IN (SELECT user_id, order_id FROM orders
                WHERE order_id % 53 = {r} ORDER BY order_id LIMIT 3);",
            r = i % 53
        ),
        // a savepoint rolled back
        format!(
            "BEGIN;
             INSERT INTO events VALUES (100000 + {i} * 10, 'kept', now());
             SAVEPOINT s;
             INSERT INTO events VALUES (100000 + {i} * 10 + 1, 'rolled back', now());
             UPDATE events SET kind = 'rolled back too' WHERE id = 100000 + {i} * 10;
             ROLLBACK TO SAVEPOINT s;
             UPDATE products SET price = price + 1 WHERE id = {p};
             COMMIT;",
            p = (i % 200) + 1
        ),
    ];
    match i {
        5 => out.push(
            "BEGIN; TRUNCATE events;
             INSERT INTO events SELECT 200000 + g, 'after truncate', now() FROM generate_series(1, 500) g;
             COMMIT;"
                .to_owned(),
        ),
        8 => out.push(format!(
            "BEGIN;
             INSERT INTO orders SELECT 7000000, nextval('order_ids'), 1, 'aborted'
               FROM generate_series(1, {n});
             ROLLBACK;",
            n = big_rows / 4
        )),
        15 => out.push(format!(
            "BEGIN;
             INSERT INTO orders SELECT 2000000 + (g % 1000), nextval('order_ids'), g % 100, 'bulk'
               FROM generate_series(1, {big_rows}) g;
             SAVEPOINT half;
             INSERT INTO orders SELECT 3000000, nextval('order_ids'), 0, 'rolled back'
               FROM generate_series(1, 1000);
             ROLLBACK TO SAVEPOINT half;
             UPDATE orders SET status = 'bulk done' WHERE user_id BETWEEN 2000000 AND 2000010;
             DELETE FROM orders WHERE user_id = 2000999;
             COMMIT;"
        )),
        _ => {}
    }
    out
}

//! The smallest end-to-end sync: a snapshot of rows that exist, then streamed inserts,
//! updates and deletes, into the Citus-shaped cluster.

mod sync_support;

use pgwarp_tests::cluster::ClusterSpec;
use sync_support::{Env, sync_until_caught_up};

const USERS: &str = "CREATE TABLE users (user_id bigint PRIMARY KEY, name text, score int)";
const PRODUCTS: &str = "CREATE TABLE products (id int PRIMARY KEY, name text)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_then_stream_into_a_cluster() {
    let spec = ClusterSpec::new()
        .distributed("users", USERS, "user_id", 8)
        .reference("products", PRODUCTS);
    let env = Env::new("sync_smoke", spec, &format!("{USERS}; {PRODUCTS};"));
    env.src(
        "INSERT INTO users SELECT g, 'user ' || g, g % 7 FROM generate_series(1, 2000) g;
         INSERT INTO products SELECT g, 'p' || g FROM generate_series(1, 50) g;",
    );
    let settings = env.settings(&["users", "products"]);
    sync_until_caught_up(&settings).await;
    env.assert_synced("users", Some("user_id"));
    env.assert_synced("products", None);

    env.src(
        "INSERT INTO users SELECT g, 'new ' || g, 1 FROM generate_series(2001, 2500) g;
         UPDATE users SET score = score + 100 WHERE user_id % 10 = 0;
         DELETE FROM users WHERE user_id % 13 = 0;
         UPDATE users SET user_id = user_id + 100000 WHERE user_id BETWEEN 100 AND 150;
         UPDATE products SET name = 'renamed' WHERE id < 10;
         DELETE FROM products WHERE id > 45;",
    );
    sync_until_caught_up(&settings).await;
    env.assert_synced("users", Some("user_id"));
    env.assert_synced("products", None);
    // every placement of the reference table holds every row
    let counts = env.fixture.placement_counts("products").unwrap();
    assert!(counts.len() >= 2, "{counts:?}");
    assert!(counts.iter().all(|(_, _, n)| *n == 45), "{counts:?}");
}

/// `--schemas`: every table of the schema is synced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_schema_is_synced() {
    let spec = ClusterSpec::new()
        .distributed("users", USERS, "user_id", 4)
        .reference("products", PRODUCTS);
    let env = Env::new("sync_schemas", spec, &format!("{USERS}; {PRODUCTS};"));
    env.src(
        "INSERT INTO users SELECT g, 'user ' || g, 1 FROM generate_series(1, 300) g;
         INSERT INTO products SELECT g, 'p' || g FROM generate_series(1, 20) g;",
    );
    let mut raw = env.settings(&["users"]);
    raw.scope = Some(pgwarp::config::TableScope::Schemas(vec![
        env.schema.clone(),
    ]));
    sync_until_caught_up(&raw).await;
    env.src("DELETE FROM products WHERE id > 10; UPDATE users SET score = 2;");
    sync_until_caught_up(&raw).await;
    env.assert_synced("users", Some("user_id"));
    env.assert_synced("products", None);
}

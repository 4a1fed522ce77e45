//! `pgwarp plan` against real source databases.
//!
//! What each test proves:
//! * `storefront`: users, orders (FK to users), order_items (with a `user_id` column, FK to
//!   orders and to a small products table), a small countries lookup and an unrelated
//!   settings table: distributed by `user_id` in one colocation group, products and countries
//!   as reference tables, settings local; the keys that must include `user_id` are named; the
//!   target part of the SQL file applies on a plain server holding the same schema and leaves
//!   exactly the widened keys and foreign keys; on a real Citus (when
//!   `$PGWARP_TEST_CITUS_COORDINATOR` is set) the whole file distributes the tables.
//! * `chain_with_a_table_lacking_the_tenant_column`: companies <- projects <- tasks <-
//!   comments, tasks and comments without `company_id`: both are distributed by a backfilled
//!   `company_id`, parents first, and the source statements that add and fill it run on the
//!   source as printed.
//! * `mistakes_are_reported`: an unreachable source, a bad `--min-size`, an empty database.

mod verify_support;

use pgwarp_tests::cluster::CITUS_COORDINATOR_ENV;
use pgwarp_tests::{PgServer, TestDb, quote_ident, unique_name};
use verify_support::{pgwarp, plan};

const STOREFRONT: &str = "
    CREATE TABLE countries (code text PRIMARY KEY, name text);
    CREATE TABLE users (user_id bigint PRIMARY KEY, email text UNIQUE NOT NULL,
                        country text REFERENCES countries (code), bio text);
    CREATE TABLE orders (order_id bigint PRIMARY KEY,
                         user_id bigint NOT NULL REFERENCES users (user_id), total numeric);
    CREATE TABLE products (id int PRIMARY KEY, name text);
    CREATE TABLE order_items (order_id bigint NOT NULL REFERENCES orders (order_id),
                              line int NOT NULL, user_id bigint NOT NULL,
                              product_id int REFERENCES products (id), qty int,
                              PRIMARY KEY (order_id, line));
    CREATE TABLE settings (k text PRIMARY KEY, v text);";

const STOREFRONT_ROWS: &str = "
    INSERT INTO countries VALUES ('de', 'Germany'), ('fr', 'France');
    INSERT INTO users SELECT g, 'u' || g || '@example.com', 'de', repeat('x', 100)
      FROM generate_series(1, 3000) g;
    INSERT INTO orders SELECT g, (g % 3000) + 1, g FROM generate_series(1, 6000) g;
    INSERT INTO products SELECT g, 'p' || g FROM generate_series(1, 10) g;
    INSERT INTO order_items SELECT (g % 6000) + 1, g, ((g % 6000) % 3000) + 1, (g % 10) + 1, 1
      FROM generate_series(1, 12000) g;
    INSERT INTO settings VALUES ('a', 'b');
    ANALYZE;";

/// A database on the shared server with `ddl` run in a schema of its own.
fn database(prefix: &str, ddl: &str) -> (TestDb, String) {
    let db = PgServer::shared().create_database(prefix).unwrap();
    let schema = unique_name("plan");
    db.create_schema(&schema, ddl).unwrap();
    (db, schema)
}

/// The statements of the target part of a plan file.
fn target_statements(sql: &str) -> Vec<String> {
    let (_, target) = sql.split_once("-- pgwarp:target").expect("target marker");
    target
        .lines()
        .filter(|l| !l.starts_with("--") && !l.trim().is_empty())
        .map(|l| l.trim_end_matches(';').to_owned())
        .collect()
}

#[tokio::test]
async fn storefront() {
    let (src, schema) = database("plan_store", STOREFRONT);
    src.execute_in(&schema, STOREFRONT_ROWS).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plan.sql");
    let out = plan(
        &src.conn_string(),
        &schema,
        "200kB",
        &["--shard-count", "8", "--out", file.to_str().unwrap()],
    )
    .await;
    out.expect_status(0);
    let r = &out.stdout;
    for line in [
        format!("tenant key: {schema}.users.user_id, column \"user_id\" (bigint)"),
        format!(
            "colocation group 1, 8 shards: {schema}.users, {schema}.orders, {schema}.order_items"
        ),
        "distributed by user_id (group 1): tenant root".to_owned(),
        "distributed by user_id (group 1): has the tenant column user_id".to_owned(),
        format!("reference: small, referenced by {schema}.order_items"),
        format!("reference: small, referenced by {schema}.users"),
        "local: small, not referenced by distributed tables".to_owned(),
        format!(
            "{schema}.orders: primary key orders_pkey (order_id) must include the distribution \
             column: becomes (user_id, order_id)"
        ),
        format!(
            "{schema}.users: unique key users_email_key (email) must include the distribution \
             column: becomes (user_id, email)"
        ),
        format!(
            "CREATE UNIQUE INDEX CONCURRENTLY \"orders_pgwarp_identity\" ON \"{schema}\".\"orders\" \
             (\"user_id\", \"order_id\");"
        ),
    ] {
        assert!(r.contains(&line), "missing {line:?} in\n{r}");
    }
    let sql = std::fs::read_to_string(&file).unwrap();
    let statements = target_statements(&sql);
    let citus: Vec<&String> = statements
        .iter()
        .filter(|s| s.starts_with("SELECT"))
        .collect();
    let q = |t: &str| format!("'\"{schema}\".\"{t}\"'");
    assert_eq!(
        citus,
        [
            &format!("SELECT create_reference_table({})", q("countries")),
            &format!("SELECT create_reference_table({})", q("products")),
            &format!(
                "SELECT create_distributed_table({}, 'user_id', shard_count => 8)",
                q("users")
            ),
            &format!(
                "SELECT create_distributed_table({}, 'user_id', colocate_with => {})",
                q("orders"),
                q("users")
            ),
            &format!(
                "SELECT create_distributed_table({}, 'user_id', colocate_with => {})",
                q("order_items"),
                q("users")
            ),
        ]
    );

    // the key changes apply to the same schema on a plain server
    let dst = PgServer::shared().create_database("plan_keys").unwrap();
    dst.execute(&format!(
        "CREATE SCHEMA {s}; SET search_path = {s}; {STOREFRONT}",
        s = quote_ident(&schema)
    ))
    .unwrap();
    let keys: Vec<&String> = statements
        .iter()
        .filter(|s| s.starts_with("ALTER"))
        .collect();
    assert!(!keys.is_empty());
    for stmt in &keys {
        dst.execute(stmt).unwrap_or_else(|e| panic!("{stmt}: {e}"));
    }
    let constraints = dst
        .query_rows(&format!(
            "SELECT conrelid::regclass::text, conname::text, pg_get_constraintdef(oid) \
             FROM pg_constraint WHERE connamespace = '{schema}'::regnamespace AND contype IN ('p', 'u', 'f') \
             ORDER BY 1, 2"
        ))
        .unwrap();
    let defs: Vec<String> = constraints
        .iter()
        .map(|r| {
            let table = r[0].as_deref().unwrap().rsplit('.').next().unwrap();
            let def = r[2].as_deref().unwrap().replace(&format!("{schema}."), "");
            format!("{table}.{}: {def}", r[1].as_deref().unwrap())
        })
        .collect();
    assert_eq!(
        defs,
        [
            "countries.countries_pkey: PRIMARY KEY (code)",
            "order_items.order_items_order_id_fkey: FOREIGN KEY (user_id, order_id) REFERENCES orders(user_id, order_id)",
            "order_items.order_items_pkey: PRIMARY KEY (user_id, order_id, line)",
            "order_items.order_items_product_id_fkey: FOREIGN KEY (product_id) REFERENCES products(id)",
            "orders.orders_pkey: PRIMARY KEY (user_id, order_id)",
            "orders.orders_user_id_fkey: FOREIGN KEY (user_id) REFERENCES users(user_id)",
            "products.products_pkey: PRIMARY KEY (id)",
            "settings.settings_pkey: PRIMARY KEY (k)",
            "users.users_country_fkey: FOREIGN KEY (country) REFERENCES countries(code)",
            "users.users_email_key: UNIQUE (user_id, email)",
            "users.users_pkey: PRIMARY KEY (user_id)",
        ],
        "{defs:#?}"
    );

    // a real Citus runs the whole file
    if let Ok(coordinator) = std::env::var(CITUS_COORDINATOR_ENV)
        && !coordinator.trim().is_empty()
    {
        let cfg = pgwarp::conn::ConnConfig::parse(&coordinator).unwrap();
        let (c, _t) = pgwarp::conn::connect(&cfg).await.unwrap();
        c.batch_execute(&format!(
            "CREATE SCHEMA {s}; SET search_path = {s}; {STOREFRONT}",
            s = quote_ident(&schema)
        ))
        .await
        .unwrap();
        let run = c.batch_execute(&sql).await;
        let kinds = c
            .query(
                &format!(
                    "SELECT logicalrelid::regclass::text, partmethod::text FROM pg_dist_partition \
                     WHERE logicalrelid::regclass::text LIKE '{schema}.%' ORDER BY 1"
                ),
                &[],
            )
            .await;
        let _ = c
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", quote_ident(&schema)))
            .await;
        run.unwrap();
        assert_eq!(kinds.unwrap().len(), 5);
    }
}

const CHAIN: &str = "
    CREATE TABLE companies (id bigint PRIMARY KEY, name text, profile text);
    CREATE TABLE projects (id bigint PRIMARY KEY, company_id bigint NOT NULL REFERENCES companies (id), name text);
    CREATE TABLE tags (id int PRIMARY KEY, label text);
    CREATE TABLE tasks (id bigint PRIMARY KEY, project_id bigint NOT NULL REFERENCES projects (id),
                        tag_id int REFERENCES tags (id), title text);
    CREATE TABLE comments (id bigint PRIMARY KEY, task_id bigint NOT NULL REFERENCES tasks (id), body text);";

const CHAIN_ROWS: &str = "
    INSERT INTO companies SELECT g, 'c' || g, repeat('p', 400) FROM generate_series(1, 1000) g;
    INSERT INTO projects SELECT g, (g % 1000) + 1, 'p' || g FROM generate_series(1, 4000) g;
    INSERT INTO tags SELECT g, 't' || g FROM generate_series(1, 5) g;
    INSERT INTO tasks SELECT g, (g % 4000) + 1, (g % 5) + 1, 'task ' || g FROM generate_series(1, 8000) g;
    INSERT INTO comments SELECT g, (g % 8000) + 1, 'comment ' || g FROM generate_series(1, 16000) g;
    ANALYZE;";

#[tokio::test]
async fn chain_with_a_table_lacking_the_tenant_column() {
    let (src, schema) = database("plan_chain", CHAIN);
    src.execute_in(&schema, CHAIN_ROWS).unwrap();
    let out = plan(&src.conn_string(), &schema, "200kB", &[]).await;
    out.expect_status(0);
    let r = &out.stdout;
    for line in [
        format!("tenant key: {schema}.companies.id, column \"company_id\" (bigint)"),
        format!(
            "colocation group 1: {schema}.companies, {schema}.projects, {schema}.tasks, {schema}.comments"
        ),
        format!(
            "distributed by company_id (group 1): reaches the tenant through {schema}.projects: needs company_id backfilled"
        ),
        format!(
            "distributed by company_id (group 1): reaches the tenant through {schema}.tasks: needs company_id backfilled"
        ),
        format!("reference: small, referenced by {schema}.tasks"),
    ] {
        assert!(r.contains(&line), "missing {line:?} in\n{r}");
    }
    // the source part, as printed, runs on the source: every task and comment gets its company
    let (_, source_part) = r
        .split_once("before pgwarp sync, on the SOURCE (application changes):\n")
        .unwrap();
    let statements: Vec<&str> = source_part
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert!(statements[0].starts_with(&format!("ALTER TABLE \"{schema}\".\"tasks\" ADD COLUMN")));
    for stmt in statements {
        src.execute(stmt).unwrap_or_else(|e| panic!("{stmt}: {e}"));
    }
    let wrong: i64 = src
        .query_scalar(&format!(
            "SELECT count(*) FROM {s}.comments c JOIN {s}.tasks t ON t.id = c.task_id \
             JOIN {s}.projects p ON p.id = t.project_id \
             WHERE c.company_id IS DISTINCT FROM p.company_id OR t.company_id IS DISTINCT FROM p.company_id",
            s = quote_ident(&schema)
        ))
        .unwrap();
    assert_eq!(wrong, 0);
    // after the backfill, plan finds the column everywhere: nothing more to backfill
    let again = plan(&src.conn_string(), &schema, "200kB", &[]).await;
    again.expect_status(0);
    assert!(!again.stdout.contains("backfilled"), "{}", again.stdout);
    again.expect_stdout("distributed by company_id (group 1): has the tenant column company_id");
}

#[tokio::test]
async fn mistakes_are_reported() {
    let out = pgwarp(&[
        "plan",
        "--source",
        "host=127.0.0.1 port=1 user=postgres dbname=x",
    ])
    .await;
    out.expect_status(1);
    out.expect_stderr(
        "could not connect to the source: could not connect to server at 127.0.0.1:1",
    );
    let db = PgServer::shared().create_database("plan_empty").unwrap();
    let out = pgwarp(&["plan", "--source", &db.conn_string(), "--min-size", "lots"]).await;
    out.expect_status(1);
    out.expect_stderr("invalid --min-size: \"lots\" is not a size");
    let out = pgwarp(&["plan", "--source", &db.conn_string()]).await;
    out.expect_status(1);
    out.expect_stderr("no tables found on the source to plan");
}

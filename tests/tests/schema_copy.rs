//! `pgwarp schema` with the real pg_dump and psql.
//!
//! What each test proves:
//! * `copies_a_schema_to_a_plain_target_and_is_safe_to_rerun`: types, sequences, defaults,
//!   checks, indexes and foreign keys arrive on an empty target, without a row; a second run
//!   finds the tables there and empty and does nothing; a table holding a row on the target
//!   makes it refuse; `--plan` on a plain PostgreSQL is refused before anything happens.
//! * `tables_subset_copies_only_the_tables`: `--tables` copies only those tables (and their
//!   owned sequences), creating their schema; a type they need must exist on the target,
//!   else nothing is created and the message says why.
//! * `citus_shaped_coordinator`: the definitions land on the coordinator; when
//!   `$PGWARP_TEST_CITUS_COORDINATOR` names a real Citus, a plan distributes them and no shell
//!   table holds data.
//! * `mistakes_are_reported`: an unusable `--pg-dump`, a missing table, a partly present target.

mod verify_support;

use pgwarp_tests::cluster::{CitusCluster, ClusterSpec};
use pgwarp_tests::{PgServer, TestDb, quote_ident, unique_name};
use verify_support::{pgwarp, plan};

const DDL: &str = "
    CREATE TYPE mood AS ENUM ('sad', 'happy');
    CREATE SEQUENCE invoice_no START 1000;
    CREATE TABLE users (user_id bigserial PRIMARY KEY, name text NOT NULL CHECK (name <> ''),
                        mood mood DEFAULT 'happy');
    CREATE TABLE orders (user_id bigint NOT NULL REFERENCES users (user_id),
                         order_id bigint NOT NULL, invoice bigint DEFAULT nextval('invoice_no'),
                         total numeric(10,2), PRIMARY KEY (user_id, order_id));
    CREATE INDEX orders_total ON orders (total);
    CREATE TABLE notes (id int PRIMARY KEY, body text);";

fn source(prefix: &str) -> (TestDb, String) {
    let db = PgServer::shared().create_database(prefix).unwrap();
    let schema = unique_name("shop");
    db.execute(&format!(
        "CREATE SCHEMA {s}; SET search_path = {s}; {DDL} \
         INSERT INTO users (name) VALUES ('a'), ('b'); \
         INSERT INTO orders (user_id, order_id, total) VALUES (1, 1, 9.5);",
        s = quote_ident(&schema)
    ))
    .unwrap();
    (db, schema)
}

/// Column definitions and constraints of `schema`'s tables, to compare two databases.
fn shape(db: &TestDb, schema: &str) -> Vec<Vec<Option<String>>> {
    db.query_rows(&format!(
        "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), \
                pg_get_expr(d.adbin, d.adrelid), a.attnotnull::text \
           FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid \
           LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum \
          WHERE c.relnamespace = '{schema}'::regnamespace AND c.relkind IN ('r', 'S', 'i') \
            AND a.attnum > 0 \
         UNION ALL \
         SELECT conrelid::regclass::text, conname::text, pg_get_constraintdef(oid), NULL, NULL \
           FROM pg_constraint WHERE connamespace = '{schema}'::regnamespace \
         ORDER BY 1, 2"
    ))
    .unwrap()
}

fn count(db: &TestDb, sql: &str) -> i64 {
    db.query_scalar(sql).unwrap()
}

#[tokio::test]
async fn copies_a_schema_to_a_plain_target_and_is_safe_to_rerun() {
    let (src, schema) = source("sch_src");
    let dst = PgServer::shared().create_database("sch_dst").unwrap();
    let args = [
        "schema",
        "--source",
        &src.conn_string(),
        "--target",
        &dst.conn_string(),
        "--schemas",
        &schema,
    ];
    let out = pgwarp(&args).await;
    out.expect_status(0);
    out.expect_stdout("copied the definitions of 3 table(s) with /usr/lib/postgresql/15/bin/pg_dump (PostgreSQL 15)");
    assert_eq!(shape(&dst, &schema), shape(&src, &schema));
    let rows = count(
        &dst,
        &format!(
            "SELECT (SELECT count(*) FROM {s}.users) + (SELECT count(*) FROM {s}.orders)",
            s = quote_ident(&schema)
        ),
    );
    assert_eq!(rows, 0);
    // the copied sequence starts where the DDL says, not where the source is
    assert_eq!(
        count(&dst, &format!("SELECT nextval('{schema}.invoice_no')")),
        1000
    );

    let again = pgwarp(&args).await;
    again.expect_status(0);
    again.expect_stdout("all 3 table(s) already exist on the target, empty: nothing to copy");

    dst.execute(&format!(
        "INSERT INTO {}.notes VALUES (1, 'x')",
        quote_ident(&schema)
    ))
    .unwrap();
    let refused = pgwarp(&args).await;
    refused.expect_status(1);
    refused.expect_stderr(&format!(
        "table(s) \"{schema}\".\"notes\" already hold rows on the target"
    ));

    let plan = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(plan.path(), "-- pgwarp:target\nSELECT 1;\n").unwrap();
    let mut with_plan: Vec<&str> = args.to_vec();
    with_plan.extend(["--plan", plan.path().to_str().unwrap()]);
    let out = pgwarp(&with_plan).await;
    out.expect_status(1);
    out.expect_stderr(
        "--plan distributes tables with Citus, but the target has no create_distributed_table",
    );
}

#[tokio::test]
async fn tables_subset_copies_only_the_tables() {
    let (src, schema) = source("sch_sub");
    let dst = PgServer::shared().create_database("sch_subdst").unwrap();
    let run = |tables: String| {
        let (s, t) = (src.conn_string(), dst.conn_string());
        async move {
            pgwarp(&[
                "schema", "--source", &s, "--target", &t, "--tables", &tables,
            ])
            .await
        }
    };
    let out = run(format!("{schema}.users")).await;
    out.expect_status(1);
    out.expect_stderr(&format!("type \"{schema}.mood\" does not exist"))
        .expect_stderr("hint: with --tables only the tables themselves are copied");
    // nothing was created: one transaction
    let schemas = count(
        &dst,
        &format!("SELECT count(*) FROM pg_namespace WHERE nspname = '{schema}'"),
    );
    assert_eq!(schemas, 0);
    dst.execute(&format!(
        "CREATE SCHEMA {s}; CREATE TYPE {s}.mood AS ENUM ('sad', 'happy')",
        s = quote_ident(&schema)
    ))
    .unwrap();
    let out = run(format!("{schema}.notes,{schema}.users")).await;
    out.expect_status(0);
    let tables: Vec<Vec<Option<String>>> = dst
        .query_rows(&format!(
            "SELECT relname::text FROM pg_class WHERE relnamespace = '{schema}'::regnamespace \
             AND relkind IN ('r', 'S') ORDER BY 1"
        ))
        .unwrap();
    let names: Vec<&str> = tables.iter().map(|r| r[0].as_deref().unwrap()).collect();
    assert_eq!(names, ["notes", "users", "users_user_id_seq"]);
}

#[tokio::test]
async fn citus_shaped_coordinator() {
    let cluster = CitusCluster::shared_or_start(2).unwrap();
    let f = cluster.create(&ClusterSpec::new()).unwrap();
    let (src, schema) = source("sch_citus");
    let out = pgwarp(&[
        "schema",
        "--source",
        &src.conn_string(),
        "--target",
        f.coordinator_conn_string(),
        "--schemas",
        &schema,
    ])
    .await;
    out.expect_status(0);
    let n: i64 = f
        .coordinator()
        .query_scalar(&format!(
            "SELECT count(*) FROM pg_class WHERE relnamespace = '{schema}'::regnamespace \
             AND relkind = 'r'"
        ))
        .unwrap();
    assert_eq!(n, 3);

    if f.is_real() {
        // a real Citus distributes the empty tables as the plan says
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plan.sql");
        let planned = plan(
            &src.conn_string(),
            &schema,
            "1",
            &["--out", file.to_str().unwrap()],
        )
        .await;
        planned.expect_status(0);
        let applied = pgwarp(&[
            "schema",
            "--source",
            &src.conn_string(),
            "--target",
            f.coordinator_conn_string(),
            "--schemas",
            &schema,
            "--plan",
            file.to_str().unwrap(),
        ])
        .await;
        applied.expect_status(0);
        applied.expect_stdout("applied the plan");
        let citus: i64 = f
            .coordinator()
            .query_scalar(&format!(
                "SELECT count(*) FROM pg_dist_partition \
                 WHERE logicalrelid::regclass::text LIKE '{schema}.%'"
            ))
            .unwrap();
        assert_eq!(citus, 3);
    }
}

#[tokio::test]
async fn mistakes_are_reported() {
    let (src, schema) = source("sch_err");
    let dst = PgServer::shared().create_database("sch_errdst").unwrap();
    let (s, t) = (src.conn_string(), dst.conn_string());
    let out = pgwarp(&[
        "schema",
        "--source",
        &s,
        "--target",
        &t,
        "--schemas",
        &schema,
        "--pg-dump",
        "/nonexistent/pg_dump",
    ])
    .await;
    out.expect_status(1);
    out.expect_stderr("/nonexistent/pg_dump is not a working pg_dump");
    let out = pgwarp(&[
        "schema", "--source", &s, "--target", &t, "--tables", "nosuch",
    ])
    .await;
    out.expect_status(1);
    out.expect_stderr("table nosuch does not exist on the source");

    dst.execute(&format!(
        "CREATE SCHEMA {s}; CREATE TABLE {s}.notes (id int)",
        s = quote_ident(&schema)
    ))
    .unwrap();
    let out = pgwarp(&[
        "schema",
        "--source",
        &s,
        "--target",
        &t,
        "--schemas",
        &schema,
    ])
    .await;
    out.expect_status(1);
    out.expect_stderr(&format!(
        "table(s) \"{schema}\".\"notes\" already exist on the target, the others do not"
    ));
}

//! `pgwarp verify` end to end on the Citus-shaped cluster and on a plain PostgreSQL target.
//!
//! What each test proves:
//! * `equal_data_verifies_in_parallel`: four kinds of tables with many column types verify as
//!   equal with several scans at once, even though one worker's database formats dates, times
//!   and floats differently (verify sets the session's output format itself); the JSON report
//!   counts every row.
//! * `deleted_changed_and_misplaced_rows_are_named_by_shard_and_node`: a row deleted from its
//!   shard, a value changed in a shard, and a row planted in the wrong shard table on a worker
//!   are each reported with the shard id, shard table and node that hold the difference, and
//!   `--sample` lists exactly the differing keys; the exit status is 1.
//! * `reference_table_placements_are_compared_one_by_one`: a change on one placement of a
//!   reference table names that node only.
//! * `enum_distribution_column_is_bucketed_with_the_coordinators_oids`: enum label OIDs differ
//!   between the source and the coordinator; verify still buckets correctly.
//! * `plain_postgres_target`: one bucket per table; a difference names the table.

mod verify_support;

use pgwarp_tests::PgServer;
use pgwarp_tests::cluster::{CitusCluster, CitusFixture, ClusterSpec};
use serde_json::Value;
use verify_support::{node_label, pgwarp, shard_of, source_db, source_exec, verify};

const USERS: &str = "CREATE TABLE users (user_id bigint PRIMARY KEY, name text)";
const ORDERS: &str = "CREATE TABLE orders (user_id bigint, order_id bigint, at timestamptz, \
    amount numeric(10,2), note text, payload jsonb, raw bytea, score float8, day date, \
    span interval, PRIMARY KEY (user_id, order_id))";
const PRODUCTS: &str = "CREATE TABLE products (id int PRIMARY KEY, name text)";
const SETTINGS: &str = "CREATE TABLE settings (k text PRIMARY KEY, v text)";

fn spec() -> ClusterSpec {
    ClusterSpec::new()
        .distributed("users", USERS, "user_id", 8)
        .distributed_colocated("orders", ORDERS, "user_id", "users")
        .reference("products", PRODUCTS)
        .single_shard("settings", SETTINGS)
}

const USERS_ROWS: &str =
    "SELECT g::bigint, 'user ' || g || ' \"q'' \\ ' FROM generate_series(1, 300) g";
const ORDERS_ROWS: &str = "SELECT u::bigint, o::bigint, \
    timestamptz '2024-03-01 10:00:00+00' + (u * o) * interval '37 minutes', \
    (u * 1.37 + o)::numeric(10,2), CASE WHEN o = 2 THEN NULL ELSE 'n' || o END, \
    jsonb_build_object('u', u, 'tags', jsonb_build_array(o, 'x')), \
    decode(md5(u::text || o), 'hex'), u / 7.0::float8 + 1e-17, \
    date '2020-01-01' + u, make_interval(days => o, secs => u * 1.5) \
    FROM generate_series(1, 300) u, generate_series(1, 3) o";
const PRODUCTS_ROWS: &str = "SELECT g, 'p' || g FROM generate_series(1, 20) g";
const SETTINGS_ROWS: &str = "SELECT 'k' || g, 'v' || g FROM generate_series(1, 5) g";

/// A fixture and a source with the same rows in every table.
fn populated() -> (CitusFixture, pgwarp_tests::TestDb) {
    let cluster = CitusCluster::shared_or_start(2).unwrap();
    let f = cluster.create(&spec()).unwrap();
    let src = source_db(
        f.schema(),
        &format!("{USERS}; {ORDERS}; {PRODUCTS}; {SETTINGS};"),
    );
    for (table, rows) in [
        ("users", USERS_ROWS),
        ("orders", ORDERS_ROWS),
        ("products", PRODUCTS_ROWS),
        ("settings", SETTINGS_ROWS),
    ] {
        source_exec(&src, f.schema(), &format!("INSERT INTO {table} {rows}"));
        f.insert_routed(table, rows).unwrap();
    }
    (f, src)
}

fn tables(f: &CitusFixture) -> String {
    ["users", "orders", "products", "settings"]
        .iter()
        .map(|t| f.qualified(t).unwrap())
        .collect::<Vec<_>>()
        .join(",")
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn table<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"].as_str().unwrap().ends_with(&format!(".{name}")))
        .unwrap_or_else(|| panic!("no table {name} in {report}"))
}

#[tokio::test]
async fn equal_data_verifies_in_parallel() {
    let (f, src) = populated();
    // a worker whose sessions format values differently by default
    let worker = &f.workers()[0];
    worker
        .execute(&format!(
            "ALTER DATABASE \"{}\" SET DateStyle = 'SQL, DMY'; \
             ALTER DATABASE \"{}\" SET TimeZone = 'Asia/Tokyo'; \
             ALTER DATABASE \"{}\" SET extra_float_digits = 0; \
             ALTER DATABASE \"{}\" SET IntervalStyle = 'iso_8601'; \
             ALTER DATABASE \"{}\" SET bytea_output = 'escape'",
            f.database(),
            f.database(),
            f.database(),
            f.database(),
            f.database()
        ))
        .unwrap();
    let tables = tables(&f);
    let text = verify(
        &src.conn_string(),
        f.coordinator_conn_string(),
        &tables,
        &["--parallel", "4"],
    )
    .await;
    text.expect_status(0);
    text.expect_stdout("all 4 table(s) equal");

    let out = verify(
        &src.conn_string(),
        f.coordinator_conn_string(),
        &tables,
        &["--json"],
    )
    .await;
    out.expect_status(0);
    let report = json(&out.stdout);
    assert_eq!(report["equal"], Value::Bool(true));
    for (name, rows, kind, shards) in [
        ("users", 300, "hash", 8),
        ("orders", 900, "hash", 8),
        ("products", 20, "reference", 1),
        ("settings", 5, "single_shard", 1),
    ] {
        let t = table(&report, name);
        assert_eq!(t["status"], "equal", "{t}");
        assert_eq!(t["source_rows"], rows, "{t}");
        assert_eq!(t["target_rows"], rows, "{t}");
        assert_eq!(t["kind"], kind, "{t}");
        assert_eq!(t["shards"], shards, "{t}");
        assert!(t["mismatches"].as_array().unwrap().is_empty());
    }
}

#[tokio::test]
async fn deleted_changed_and_misplaced_rows_are_named_by_shard_and_node() {
    let (f, src) = populated();
    // 1. users 17: deleted from its shard
    let (del_shard, del_table, del_group) = shard_of(&f, "users", "17::bigint");
    f.node_of_group(del_group)
        .unwrap()
        .execute(&format!("DELETE FROM {del_table} WHERE user_id = 17"))
        .unwrap();
    // 2. orders (42, 3): amount changed
    let (chg_shard, chg_table, chg_group) = shard_of(&f, "orders", "42::bigint");
    f.node_of_group(chg_group)
        .unwrap()
        .execute(&format!(
            "UPDATE {chg_table} SET amount = amount + 0.01 WHERE user_id = 42 AND order_id = 3"
        ))
        .unwrap();
    // 3. a new user exists on the source; on the target it sits in a shard it does not hash to
    let (planted, right_shard) = (7777..)
        .map(|k: i64| (k, shard_of(&f, "users", &format!("{k}::bigint")).0))
        .find(|(_, shard)| *shard != del_shard)
        .unwrap();
    source_exec(
        &src,
        f.schema(),
        &format!("INSERT INTO users VALUES ({planted}, 'planted')"),
    );
    let (wrong_shard, wrong_table, wrong_group) = f
        .shards("users")
        .unwrap()
        .into_iter()
        .find(|s| s.shardid != right_shard && s.shardid != del_shard)
        .map(|s| (s.shardid, s.shard_table, s.groups[0]))
        .unwrap();
    f.node_of_group(wrong_group)
        .unwrap()
        .execute(&format!(
            "INSERT INTO {wrong_table} VALUES ({planted}, 'planted')"
        ))
        .unwrap();

    let out = verify(
        &src.conn_string(),
        f.coordinator_conn_string(),
        &tables(&f),
        &["--sample", "10", "--json"],
    )
    .await;
    out.expect_status(1);
    out.expect_stderr("differences in 2 table(s)");
    let report = json(&out.stdout);
    assert_eq!(report["equal"], Value::Bool(false));
    assert_eq!(table(&report, "products")["status"], "equal");
    assert_eq!(table(&report, "settings")["status"], "equal");

    let users = table(&report, "users");
    assert_eq!(users["status"], "mismatch");
    assert_eq!(users["source_rows"], 301);
    assert_eq!(users["target_rows"], 300);
    let mismatches = users["mismatches"].as_array().unwrap();
    let by_id = |id: i64| {
        mismatches
            .iter()
            .find(|m| m["shard_id"] == id)
            .unwrap_or_else(|| panic!("shard {id} not reported: {users}"))
    };
    assert_eq!(mismatches.len(), 3, "{users}");
    // the deleted row
    let m = by_id(del_shard);
    assert_eq!(m["shard_table"], del_table);
    assert_eq!(m["node"], node_label(&f, del_group));
    assert_eq!(
        m["source"]["rows"].as_i64().unwrap(),
        m["target"]["rows"].as_i64().unwrap() + 1
    );
    assert_eq!(m["misplaced_rows"], 0);
    assert_eq!(
        m["sample"]["missing_on_target"],
        serde_json::json!(["(17)"])
    );
    assert_eq!(m["sample"]["key_columns"], serde_json::json!(["user_id"]));
    // the planted row: extra where it is, missing where it belongs
    let m = by_id(wrong_shard);
    assert_eq!(m["shard_table"], wrong_table);
    assert_eq!(m["node"], node_label(&f, wrong_group));
    assert_eq!(m["misplaced_rows"], 1);
    assert_eq!(
        m["sample"]["extra_on_target"],
        serde_json::json!(["(7777)"])
    );
    let m = by_id(right_shard);
    assert_eq!(
        m["sample"]["missing_on_target"],
        serde_json::json!(["(7777)"])
    );

    let orders = table(&report, "orders");
    let mismatches = orders["mismatches"].as_array().unwrap();
    assert_eq!(mismatches.len(), 1, "{orders}");
    let m = &mismatches[0];
    assert_eq!(m["shard_id"], chg_shard);
    assert_eq!(m["shard_table"], chg_table);
    assert_eq!(m["node"], node_label(&f, chg_group));
    assert_eq!(m["source"]["rows"], m["target"]["rows"]);
    assert_ne!(m["source"]["sum"], m["target"]["sum"]);
    assert_eq!(m["sample"]["different"], serde_json::json!(["(42,3)"]));
    assert!(
        m["sample"]["missing_on_target"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // the text report says the same for a person
    let text = verify(
        &src.conn_string(),
        f.coordinator_conn_string(),
        &tables(&f),
        &["--sample", "3"],
    )
    .await;
    text.expect_status(1);
    let line = format!(
        "shard {del_shard} {del_table} on {}: source",
        node_label(&f, del_group)
    );
    text.expect_stdout(&line);
    text.expect_stdout("missing on target: (user_id)=(17)");
    text.expect_stdout("1 row(s) in this shard hash outside its range");
    text.expect_stdout("different: (user_id, order_id)=(42,3)");
}

#[tokio::test]
async fn reference_table_placements_are_compared_one_by_one() {
    let (f, src) = populated();
    let shard = &f.shards("products").unwrap()[0];
    assert!(shard.groups.len() >= 2);
    let group = shard.groups[shard.groups.len() - 1];
    f.node_of_group(group)
        .unwrap()
        .execute(&format!(
            "UPDATE {} SET name = 'changed' WHERE id = 5",
            shard.shard_table
        ))
        .unwrap();
    let out = verify(
        &src.conn_string(),
        f.coordinator_conn_string(),
        &f.qualified("products").unwrap(),
        &["--json", "--sample", "5"],
    )
    .await;
    out.expect_status(1);
    let report = json(&out.stdout);
    let products = table(&report, "products");
    let mismatches = products["mismatches"].as_array().unwrap();
    assert_eq!(mismatches.len(), 1, "{products}");
    assert_eq!(mismatches[0]["node"], node_label(&f, group));
    assert_eq!(mismatches[0]["shard_id"], shard.shardid);
    assert_eq!(
        mismatches[0]["sample"]["different"],
        serde_json::json!(["(5)"])
    );
}

#[tokio::test]
async fn enum_distribution_column_is_bucketed_with_the_coordinators_oids() {
    let cluster = CitusCluster::shared_or_start(2).unwrap();
    let spec = ClusterSpec::new()
        .prelude("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'ecstatic')")
        .distributed(
            "moods",
            "CREATE TABLE moods (m mood, id int, PRIMARY KEY (m, id))",
            "m",
            4,
        );
    let f = cluster.create(&spec).unwrap();
    // types created first on the source shift its enum OIDs away from the coordinator's
    let src = source_db(
        f.schema(),
        "CREATE TYPE filler1 AS ENUM ('a', 'b', 'c'); CREATE TYPE filler2 AS ENUM ('x'); \
         CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'ecstatic'); \
         CREATE TABLE moods (m mood, id int, PRIMARY KEY (m, id));",
    );
    let coord_oids: Vec<String> = f
        .coordinator()
        .query_rows(&format!(
            "SELECT oid::text FROM pg_enum WHERE enumtypid = '\"{}\".mood'::regtype ORDER BY 1",
            f.schema()
        ))
        .unwrap()
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    let src_oids: Vec<String> = src
        .query_rows(&format!(
            "SELECT oid::text FROM pg_enum WHERE enumtypid = '\"{}\".mood'::regtype ORDER BY 1",
            f.schema()
        ))
        .unwrap()
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    assert_ne!(coord_oids, src_oids, "the test needs different enum OIDs");
    let rows =
        "SELECT (enum_range(NULL::mood))[1 + g % 4] AS m, g AS id FROM generate_series(1, 200) g";
    source_exec(&src, f.schema(), &format!("INSERT INTO moods {rows}"));
    // Citus routes enums by the coordinator's label OIDs (the workers' differ, so the
    // fixture's insert_routed, which hashes on each node, cannot be used here)
    for label in ["sad", "ok", "happy", "ecstatic"] {
        let (_, shard_table, group) =
            shard_of(&f, "moods", &format!("'{label}'::\"{}\".mood", f.schema()));
        f.node_of_group(group)
            .unwrap()
            .execute(&format!(
                "SET search_path = \"{}\"; INSERT INTO {shard_table} \
                 SELECT * FROM ({rows}) r WHERE r.m = '{label}'",
                f.schema()
            ))
            .unwrap();
    }
    let args = [
        "verify",
        "--source",
        &src.conn_string(),
        "--target",
        f.coordinator_conn_string(),
        "--tables",
        &f.qualified("moods").unwrap(),
        "--json",
    ];
    let out = pgwarp(&args).await;
    out.expect_status(0);
    assert_eq!(table(&json(&out.stdout), "moods")["source_rows"], 200);

    // a row missing from its shard is still found in the right one
    let (id, shard_table, group) =
        shard_of(&f, "moods", &format!("'happy'::\"{}\".mood", f.schema()));
    f.node_of_group(group)
        .unwrap()
        .execute(&format!(
            "DELETE FROM {shard_table} WHERE id = (SELECT min(id) FROM {shard_table} WHERE m = 'happy')"
        ))
        .unwrap();
    let out = pgwarp(&args).await;
    out.expect_status(1);
    let report = json(&out.stdout);
    let m = &table(&report, "moods")["mismatches"];
    assert_eq!(m.as_array().unwrap().len(), 1, "{m}");
    assert_eq!(m[0]["shard_id"], id);
    // enum OIDs differ between nodes too: rows outside their range are not counted there
    assert_eq!(m[0]["misplaced_rows"], Value::Null);
}

#[tokio::test]
async fn plain_postgres_target() {
    let server = PgServer::shared();
    let ddl = "CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TABLE b (x int, y int);";
    let src = server.create_database("vsrc").unwrap();
    let dst = server.create_database("vdst").unwrap();
    for db in [&src, &dst] {
        db.execute(ddl).unwrap();
        db.execute(
            "INSERT INTO a SELECT g, 'v' || g FROM generate_series(1, 100) g; \
             INSERT INTO b SELECT g % 3, g % 5 FROM generate_series(1, 50) g",
        )
        .unwrap();
    }
    let args = [
        "verify",
        "--source",
        &src.conn_string(),
        "--target",
        &dst.conn_string(),
        "--tables",
        "a,public.b",
        "--json",
        "--sample",
        "5",
    ];
    let out = pgwarp(&args).await;
    out.expect_status(0);
    let report = json(&out.stdout);
    assert_eq!(table(&report, "a")["kind"], "plain");
    assert_eq!(table(&report, "b")["source_rows"], 50);

    // b has no key: a duplicate row is found by the count, and listed by its digest
    dst.execute("INSERT INTO b VALUES (1, 1); DELETE FROM a WHERE id = 9")
        .unwrap();
    let out = pgwarp(&args).await;
    out.expect_status(1);
    let report = json(&out.stdout);
    let a = &table(&report, "a")["mismatches"][0];
    assert_eq!(a["shard_id"], 0);
    assert_eq!(a["shard_table"], "\"public\".\"a\"");
    assert_eq!(a["node"], format!("127.0.0.1:{}", dst.port()));
    assert_eq!(a["sample"]["missing_on_target"], serde_json::json!(["(9)"]));
    let b = &table(&report, "b")["mismatches"][0];
    assert_eq!(b["source"]["rows"], 50);
    assert_eq!(b["target"]["rows"], 51);
    let extra = b["sample"]["extra_on_target"].as_array().unwrap();
    let digest: String = dst.query_scalar("SELECT md5(ROW(1, 1)::text)").unwrap();
    assert_eq!(extra, &vec![Value::String(digest)]);
}

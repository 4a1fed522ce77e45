//! `pgwarp route` end to end, run in-process (argument parsing, connection, topology load,
//! value canonicalization on the target, routing, output) against the Citus-shaped cluster and
//! a plain PostgreSQL.
//!
//! What each test proves:
//! * `json_output_names_the_shard_citus_uses`: for hash tables of several types, the shard id
//!   equals `get_shard_id_for_distribution_column`, the shard name and node equal the catalog's;
//!   values in any input syntax are canonicalized (and typmod-rounded) on the target.
//! * `text_output_for_every_kind`: reference tables list every node; single-shard tables need no
//!   value; a plain PostgreSQL prints the table itself.
//! * `errors_are_clear`: missing table, unparseable value, missing `--value`.

use pgwarp::citus::TableKind;
use pgwarp::cli::route::{RouteArgs, RouteReport, route};
use pgwarp::cli::{Cli, run};
use pgwarp_tests::PgServer;
use pgwarp_tests::cluster::{CitusCluster, CitusFixture, ClusterSpec};

async fn pgwarp(args: &[&str]) -> Result<String, String> {
    let mut argv = vec!["pgwarp", "route"];
    argv.extend_from_slice(args);
    let cli = Cli::try_from_args(argv).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    run(cli, &mut out).await.map_err(|e| format!("{e:#}"))?;
    Ok(String::from_utf8(out).unwrap())
}

fn spec() -> ClusterSpec {
    ClusterSpec::new()
        .distributed(
            "users",
            "CREATE TABLE users (user_id bigint PRIMARY KEY, name text)",
            "user_id",
            32,
        )
        .distributed(
            "prices",
            "CREATE TABLE prices (amount numeric(10,2), note text)",
            "amount",
            7,
        )
        .distributed(
            "events",
            "CREATE TABLE events (at timestamptz, v int)",
            "at",
            5,
        )
        .reference("products", "CREATE TABLE products (id int PRIMARY KEY)")
        .single_shard("settings", "CREATE TABLE settings (k text PRIMARY KEY)")
}

/// The report `pgwarp route` prints, computed in-process.
async fn report(f: &CitusFixture, table: &str, value: &str, raw: bool) -> RouteReport {
    let args = RouteArgs {
        target: f.coordinator_conn_string().to_string(),
        table: f.qualified(table).unwrap(),
        value: Some(value.to_string()),
        json: true,
        raw,
    };
    route(&args).await.unwrap()
}

#[tokio::test]
async fn json_output_names_the_shard_citus_uses() {
    let cluster = CitusCluster::shared_or_start(2).unwrap();
    let f = cluster.create(&spec()).unwrap();
    let cases = [
        ("users", "42", "'42'::bigint"),
        (
            "users",
            "-9223372036854775808",
            "'-9223372036854775808'::bigint",
        ),
        ("users", " 7 ", "7::bigint"), // input syntax: blanks are accepted by int8in
        ("prices", "1.005", "1.01::numeric"), // numeric(10,2) rounds half away from zero
        ("prices", "12", "12.00::numeric"),
        (
            "events",
            "2024-01-01 12:00:00+02",
            "'2024-01-01 10:00:00+00'::timestamptz",
        ),
        (
            "events",
            "Jan 2 2020 3:04pm UTC",
            "'2020-01-02 15:04:00+00'::timestamptz",
        ),
    ];
    for (table, value, sql) in cases {
        let r = report(&f, table, value, false).await;
        let want = f.shard_id_for(table, sql).unwrap();
        assert_eq!(r.shard_id, want, "{table} {value}: {r:?}");
        let shard = f
            .shards(table)
            .unwrap()
            .into_iter()
            .find(|s| s.shardid == want)
            .unwrap();
        assert_eq!(r.shard_name, shard.shard_table);
        let node = f.node_of_group(shard.groups[0]).unwrap();
        assert_eq!(r.nodes, [format!("{}:{}", node.host, node.port)]);
        assert_eq!(r.kind, TableKind::Hash);
        let (lo, hi) = shard.range.unwrap();
        assert_eq!(r.range, Some((lo, hi)));
        assert!((lo..=hi).contains(&r.hash.unwrap()));
    }
    // --raw hashes the canonical text as given: the same shard as the canonicalized form.
    let canonical = report(&f, "events", "2024-01-01 10:00:00+00", true).await;
    let via_server = report(&f, "events", "2024-01-01 12:00:00+02", false).await;
    assert_eq!(canonical.shard_id, via_server.shard_id);
    assert_eq!(via_server.value.as_deref(), Some("2024-01-01 10:00:00+00"));

    // The printed JSON carries the same report.
    let users = f.qualified("users").unwrap();
    let out = pgwarp(&[
        "--target",
        f.coordinator_conn_string(),
        "--table",
        &users,
        "--value",
        "42",
        "--json",
    ])
    .await
    .unwrap();
    let r = report(&f, "users", "42", false).await;
    assert!(
        out.contains(&format!("\"shard_id\": {}", r.shard_id)),
        "{out}"
    );
    assert!(
        out.contains(&format!("\"shard_name\": {:?}", r.shard_name)),
        "{out}"
    );
    assert!(out.contains("\"kind\": \"hash\""), "{out}");
}

#[tokio::test]
async fn text_output_for_every_kind() {
    let cluster = CitusCluster::shared_or_start(2).unwrap();
    let f = cluster.create(&spec()).unwrap();
    let conn = f.coordinator_conn_string();
    let products = f.qualified("products").unwrap();
    let out = pgwarp(&["--target", conn, "--table", &products])
        .await
        .unwrap();
    let shard = &f.shards("products").unwrap()[0];
    assert!(out.contains("(reference table)"), "{out}");
    assert!(
        out.contains(&format!("shard:  {} {}", shard.shardid, shard.shard_table)),
        "{out}"
    );
    let nodes: Vec<String> = f
        .nodes()
        .iter()
        .map(|n| format!("{}:{}", n.host, n.port))
        .collect();
    assert!(
        out.contains(&format!("nodes:  {}", nodes.join(", "))),
        "{out}"
    );

    let settings = f.qualified("settings").unwrap();
    let out = pgwarp(&["--target", conn, "--table", &settings])
        .await
        .unwrap();
    assert!(out.contains("(single-shard table)"), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("node:")).count(),
        1,
        "{out}"
    );

    let users = f.qualified("users").unwrap();
    let out = pgwarp(&["--target", conn, "--table", &users, "--value", "1"])
        .await
        .unwrap();
    // ROUTING.md §3.9: bigint 1 with 32 shards -> shard index 1.
    assert!(out.contains("hash:   -1905060026"), "{out}");
    assert!(out.contains("(shard index 1)"), "{out}");

    let db = PgServer::shared().create_database("route_plain").unwrap();
    db.execute("CREATE TABLE t (id int)").unwrap();
    let out = pgwarp(&[
        "--target",
        &db.conn_string(),
        "--table",
        "t",
        "--value",
        "5",
    ])
    .await
    .unwrap();
    assert!(out.contains("(not a Citus table)"), "{out}");
    assert!(
        out.contains("shard:  \"public\".\"t\" (the table itself)"),
        "{out}"
    );
    assert!(
        out.contains(&format!("node:   127.0.0.1:{}", db.port())),
        "{out}"
    );
}

#[tokio::test]
async fn errors_are_clear() {
    let cluster = CitusCluster::shared_or_start(2).unwrap();
    let f = cluster.create(&spec()).unwrap();
    let conn = f.coordinator_conn_string();
    let users = f.qualified("users").unwrap();
    let err = pgwarp(&["--target", conn, "--table", "no_such_table", "--value", "1"])
        .await
        .unwrap_err();
    assert_eq!(
        err,
        "relation \"no_such_table\" does not exist on the target"
    );
    let err = pgwarp(&["--target", conn, "--table", &users, "--value", "abc"])
        .await
        .unwrap_err();
    assert!(err.starts_with("value is not valid for column \"user_id\" of type bigint: invalid input syntax for type bigint"), "{err}");
    let err = pgwarp(&[
        "--target", conn, "--table", &users, "--value", "abc", "--raw",
    ])
    .await
    .unwrap_err();
    assert!(
        err.starts_with("value is not valid for column \"user_id\" of type bigint"),
        "{err}"
    );
    let err = pgwarp(&["--target", conn, "--table", &users])
        .await
        .unwrap_err();
    assert!(
        err.contains("is hash-distributed by \"user_id\": --value is required"),
        "{err}"
    );
    let err = pgwarp(&["--table", "t"]).await.unwrap_err();
    assert!(err.contains("--target"), "{err}");
}

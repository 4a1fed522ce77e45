//! `pgwarp verify` tried the way a new user would: every mistake gives exit status 2 and a
//! message that says what is wrong and where.
//!
//! * `bad_arguments`: a non-numeric `--sample`, an out-of-range `--parallel`, a missing source.
//! * `unreachable_target`: the address in the message, status 2.
//! * `missing_table_and_missing_tables`: a table that is not on the source; no `--tables` and no
//!   sync recorded on the target.
//! * `missing_privileges`: a role that may not read the table gets the server's
//!   "permission denied" with its SQLSTATE.
//! * `a_table_that_cannot_be_read_does_not_hide_the_others`: a shard table missing on a worker
//!   fails that table only; the others are still compared; status 2.

mod verify_support;

use pgwarp_tests::cluster::{CitusCluster, ClusterSpec};
use pgwarp_tests::{PgServer, unique_name};
use verify_support::{pgwarp, source_db, source_exec, verify};

fn plain_pair() -> (pgwarp_tests::TestDb, pgwarp_tests::TestDb) {
    let server = PgServer::shared();
    let src = server.create_database("vesrc").unwrap();
    let dst = server.create_database("vedst").unwrap();
    for db in [&src, &dst] {
        db.execute("CREATE TABLE a (id int PRIMARY KEY); INSERT INTO a VALUES (1), (2)")
            .unwrap();
    }
    (src, dst)
}

#[tokio::test]
async fn bad_arguments() {
    let (src, dst) = plain_pair();
    let (s, t) = (src.conn_string(), dst.conn_string());
    let out = pgwarp(&["verify", "--source", &s, "--target", &t, "--sample", "abc"]).await;
    out.expect_status(2);
    out.expect_stderr("invalid value 'abc' for '--sample <N>'");

    let out = verify(&s, &t, "a", &["--parallel", "0"]).await;
    out.expect_status(2);
    out.expect_stderr("parallel must be 1 to 64, not 0");

    let out = pgwarp(&["verify", "--target", &t, "--tables", "a"]).await;
    out.expect_status(2);
    out.expect_stderr("no source given");

    let out = pgwarp(&[
        "verify",
        "--source",
        "host=127.0.0.1 port=notaport",
        "--target",
        &t,
    ])
    .await;
    out.expect_status(2);
    out.expect_stderr("invalid source connection string");
}

#[tokio::test]
async fn unreachable_target() {
    let (src, _dst) = plain_pair();
    let out = verify(
        &src.conn_string(),
        "host=127.0.0.1 port=1 user=postgres dbname=x",
        "a",
        &[],
    )
    .await;
    out.expect_status(2);
    out.expect_stderr("target: could not connect to server at 127.0.0.1:1");
}

#[tokio::test]
async fn missing_table_and_missing_tables() {
    let (src, dst) = plain_pair();
    let (s, t) = (src.conn_string(), dst.conn_string());
    let out = verify(&s, &t, "a,nosuch", &[]).await;
    out.expect_status(2);
    out.expect_stderr("table nosuch does not exist on the source");

    src.execute("CREATE TABLE only_here (id int)").unwrap();
    let out = verify(&s, &t, "only_here", &[]).await;
    out.expect_status(2);
    out.expect_stderr("table \"public\".\"only_here\" does not exist on the target");

    let out = pgwarp(&["verify", "--source", &s, "--target", &t]).await;
    out.expect_status(2);
    out.expect_stderr(
        "no tables given and no sync with slot \"pgwarp\" is recorded on the target: use --tables",
    );
}

#[tokio::test]
async fn missing_privileges() {
    let (src, dst) = plain_pair();
    let role = unique_name("noread");
    src.execute(&format!("CREATE ROLE {role} LOGIN")).unwrap();
    let s = format!(
        "{} user={role}",
        src.conn_string().replace("user=postgres", "")
    );
    let out = verify(&s, &dst.conn_string(), "a", &[]).await;
    src.execute(&format!("DROP ROLE {role}")).unwrap();
    out.expect_status(2);
    assert!(
        out.stdout.contains("ERROR     public.a  could not checksum table public.a on source: permission denied for table a (SQLSTATE 42501)"),
        "{out:#?}"
    );
    out.expect_stderr("could not compare 1 table(s)");
}

#[tokio::test]
async fn a_table_that_cannot_be_read_does_not_hide_the_others() {
    let cluster = CitusCluster::shared_or_start(2).unwrap();
    let spec = ClusterSpec::new()
        .distributed("t1", "CREATE TABLE t1 (id bigint PRIMARY KEY)", "id", 4)
        .distributed("t2", "CREATE TABLE t2 (id bigint PRIMARY KEY)", "id", 4);
    let f = cluster.create(&spec).unwrap();
    let src = source_db(
        f.schema(),
        "CREATE TABLE t1 (id bigint PRIMARY KEY); CREATE TABLE t2 (id bigint PRIMARY KEY);",
    );
    for t in ["t1", "t2"] {
        let rows = "SELECT g::bigint FROM generate_series(1, 50) g";
        source_exec(&src, f.schema(), &format!("INSERT INTO {t} {rows}"));
        f.insert_routed(t, rows).unwrap();
    }
    let shard = &f.shards("t2").unwrap()[1];
    f.node_of_group(shard.groups[0])
        .unwrap()
        .execute(&format!("DROP TABLE {}", shard.shard_table))
        .unwrap();
    let tables = format!(
        "{},{}",
        f.qualified("t1").unwrap(),
        f.qualified("t2").unwrap()
    );
    let out = verify(
        &src.conn_string(),
        f.coordinator_conn_string(),
        &tables,
        &[],
    )
    .await;
    out.expect_status(2);
    out.expect_stdout(&format!("equal     {}.t1  50 rows", f.schema()));
    let relation = shard
        .shard_table
        .split('.')
        .nth(1)
        .unwrap()
        .trim_matches('"');
    out.expect_stdout(&format!(
        "ERROR     {}.t2  could not checksum the shards of {}.t2 on {}:{}: relation \"{}.{relation}\" does not exist (SQLSTATE 42P01)",
        f.schema(),
        f.schema(),
        f.node_of_group(shard.groups[0]).unwrap().host,
        f.node_of_group(shard.groups[0]).unwrap().port,
        f.schema(),
    ));
}

/// The binary's own entry point maps verify's outcomes to exit statuses 0, 1 and 2.
#[test]
fn binary_exit_statuses() {
    use std::process::ExitCode;
    let (src, dst) = plain_pair();
    let (s, t) = (src.conn_string(), dst.conn_string());
    let run = |target: &str| {
        pgwarp::cli::main_from([
            "pgwarp", "verify", "--source", &s, "--target", target, "--tables", "a",
        ])
    };
    assert_eq!(run(&t), ExitCode::SUCCESS);
    dst.execute("DELETE FROM a WHERE id = 1").unwrap();
    assert_eq!(run(&t), ExitCode::from(1));
    assert_eq!(
        run("host=127.0.0.1 port=1 user=postgres dbname=x"),
        ExitCode::from(2)
    );
}

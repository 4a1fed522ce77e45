//! `pgwarp check`: problems of the source server, one test each, plus one showing they are all
//! reported at once. The source servers here are dedicated (misconfigured on purpose); the
//! target is a plain database with the same table.

mod sync_support;

use std::sync::OnceLock;

use pgwarp::check::{ProblemKind, Report};
use pgwarp_tests::{PasswordEncryption, PgServer, ServerOptions, TestDb, unique_name};
use sync_support::settings;

const DDL: &str = "CREATE TABLE items (id bigint PRIMARY KEY, name text)";

/// wal_level = replica, no replication slots, no WAL senders: three problems at once.
fn misconfigured() -> &'static PgServer {
    static SERVER: OnceLock<PgServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        PgServer::start_with(
            ServerOptions::default()
                .setting("wal_level", "replica")
                .setting("max_replication_slots", "0")
                .setting("max_wal_senders", "0"),
        )
        .expect("start the misconfigured server")
    })
}

fn database(server: &PgServer, prefix: &str, schema: &str) -> TestDb {
    let db = server.create_database(prefix).unwrap();
    db.execute(&format!(
        "CREATE SCHEMA {schema}; SET search_path TO {schema}; {DDL}"
    ))
    .unwrap();
    db
}

async fn check(source: &str, schema: &str, slot: &str) -> Report {
    let target = database(PgServer::shared(), "check_srv_dst", schema);
    let settings = settings(source, &target.conn_string(), schema, &["items"], slot);
    pgwarp::check::run(&settings).await.unwrap()
}

fn kinds(report: &Report) -> Vec<ProblemKind> {
    report.problems.iter().map(|p| p.kind).collect()
}

async fn misconfigured_report() -> Report {
    let schema = unique_name("chk");
    let source = database(misconfigured(), "check_srv_src", &schema);
    check(&source.conn_string(), &schema, &unique_name("slot")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_level_below_logical_is_reported() {
    let report = misconfigured_report().await;
    assert!(report.has(ProblemKind::WalLevel), "{:#?}", report.problems);
    let p = report
        .problems
        .iter()
        .find(|p| p.kind == ProblemKind::WalLevel)
        .unwrap();
    assert!(p.message.contains("wal_level is \"replica\""), "{p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_free_replication_slot_is_reported() {
    let report = misconfigured_report().await;
    assert!(
        report.has(ProblemKind::NoFreeSlot),
        "{:#?}",
        report.problems
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_free_wal_sender_is_reported() {
    let report = misconfigured_report().await;
    assert!(
        report.has(ProblemKind::NoFreeWalSender),
        "{:#?}",
        report.problems
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_server_problem_is_reported_at_once() {
    let report = misconfigured_report().await;
    assert_eq!(
        kinds(&report),
        vec![
            ProblemKind::WalLevel,
            ProblemKind::NoFreeSlot,
            ProblemKind::NoFreeWalSender
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_without_replication_is_reported() {
    let server = sync_support::source_server();
    let role = unique_name("norepl");
    server
        .create_role(&role, "pw", PasswordEncryption::ScramSha256, "")
        .unwrap();
    let schema = unique_name("chk");
    let source = database(server, "check_role_src", &schema);
    source
        .execute(&format!(
            "GRANT USAGE ON SCHEMA {schema} TO {role}; GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role};
             ALTER TABLE {schema}.items OWNER TO {role}; GRANT CREATE ON DATABASE {} TO {role}",
            source.name()
        ))
        .unwrap();
    let conn = format!(
        "host=127.0.0.1 port={} user={role} password=pw dbname={}",
        server.port(),
        source.name()
    );
    let report = check(&conn, &schema, &unique_name("slot")).await;
    assert_eq!(
        kinds(&report),
        vec![ProblemKind::NoReplicationPrivilege],
        "{:#?}",
        report.problems
    );
    assert!(report.problems[0].message.contains("REPLICATION"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_slot_with_the_same_name_is_reported() {
    let server = sync_support::source_server();
    let schema = unique_name("chk");
    let source = database(server, "check_slot_src", &schema);
    let slot = unique_name("taken");
    source
        .execute(&format!(
            "SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')"
        ))
        .unwrap();
    let report = check(&source.conn_string(), &schema, &slot).await;
    source
        .execute(&format!("SELECT pg_drop_replication_slot('{slot}')"))
        .unwrap();
    assert_eq!(
        kinds(&report),
        vec![ProblemKind::SlotInUse],
        "{:#?}",
        report.problems
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_setup_has_no_problem() {
    let schema = unique_name("chk");
    let source = database(sync_support::source_server(), "check_ok_src", &schema);
    let report = check(&source.conn_string(), &schema, &unique_name("slot")).await;
    assert!(report.is_ok(), "{:#?}", report.problems);
    assert!(!report.resuming);
    assert_eq!(report.tables, vec![format!("{schema}.items")]);
}

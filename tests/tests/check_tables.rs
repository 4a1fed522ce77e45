//! `pgwarp check`: table problems, one test each, against the Citus-shaped cluster; then all
//! of them in one report, and `sync` refusing to start.

mod sync_support;

use pgwarp::check::{ProblemKind, Report};
use pgwarp_tests::cluster::ClusterSpec;
use sync_support::Env;

const USERS: &str = "CREATE TABLE users (user_id bigint PRIMARY KEY, name text)";

async fn check(env: &Env, tables: &[&str]) -> Report {
    pgwarp::check::run(&env.settings(tables)).await.unwrap()
}

fn kinds(report: &Report) -> Vec<ProblemKind> {
    report.problems.iter().map(|p| p.kind).collect()
}

fn users_spec() -> ClusterSpec {
    ClusterSpec::new().distributed("users", USERS, "user_id", 4)
}

/// Asserts that exactly `kind` was found, and that its message names `needle`.
fn assert_only(report: &Report, kind: ProblemKind, needle: &str) {
    assert_eq!(kinds(report), vec![kind], "{:#?}", report.problems);
    assert!(
        report.problems[0].message.contains(needle),
        "{}",
        report.problems[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_missing_on_the_source() {
    let env = Env::new(
        "chk_nosrc",
        users_spec(),
        "CREATE TABLE other (id int PRIMARY KEY)",
    );
    let report = check(&env, &["users"]).await;
    assert_only(
        &report,
        ProblemKind::MissingOnSource,
        "does not exist on the source",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_missing_on_the_target() {
    let env = Env::new(
        "chk_nodst",
        users_spec(),
        &format!("{USERS}; CREATE TABLE orphans (id int PRIMARY KEY);"),
    );
    let report = check(&env, &["users", "orphans"]).await;
    assert_only(&report, ProblemKind::MissingOnTarget, "orphans");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn column_of_another_type_on_the_target() {
    let env = Env::new(
        "chk_type",
        users_spec(),
        "CREATE TABLE users (user_id bigint PRIMARY KEY, name varchar(20))",
    );
    let report = check(&env, &["users"]).await;
    assert_only(
        &report,
        ProblemKind::ColumnMismatch,
        "is character varying(20) on the source but text on the target",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn column_missing_on_the_target() {
    let env = Env::new(
        "chk_col",
        users_spec(),
        "CREATE TABLE users (user_id bigint PRIMARY KEY, name text, email text)",
    );
    let report = check(&env, &["users"]).await;
    assert_only(&report, ProblemKind::ColumnMismatch, "\"email\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn column_only_on_the_target() {
    let env = Env::new(
        "chk_extra",
        ClusterSpec::new().distributed(
            "users",
            "CREATE TABLE users (user_id bigint PRIMARY KEY, name text, added int NOT NULL)",
            "user_id",
            4,
        ),
        USERS,
    );
    let report = check(&env, &["users"]).await;
    assert_only(&report, ProblemKind::ExtraTargetColumn, "\"added\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_without_primary_key() {
    let env = Env::new(
        "chk_nopk",
        users_spec(),
        "CREATE TABLE users (user_id bigint NOT NULL, name text)",
    );
    let report = check(&env, &["users"]).await;
    assert_only(&report, ProblemKind::NoReplicaIdentity, "no primary key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_identity_nothing() {
    let env = Env::new(
        "chk_nothing",
        users_spec(),
        &format!("{USERS}; ALTER TABLE users REPLICA IDENTITY NOTHING;"),
    );
    let report = check(&env, &["users"]).await;
    assert_only(&report, ProblemKind::NoReplicaIdentity, "NOTHING");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_unique_key_on_the_target_for_the_replica_identity() {
    let env = Env::new(
        "chk_nouk",
        ClusterSpec::new().distributed(
            "users",
            "CREATE TABLE users (user_id bigint NOT NULL, name text)",
            "user_id",
            4,
        ),
        USERS,
    );
    let report = check(&env, &["users"]).await;
    assert_only(&report, ProblemKind::NoUniqueKeyOnTarget, "(user_id)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_key_without_the_distribution_column() {
    let ddl = "CREATE TABLE users (user_id bigint PRIMARY KEY, name text, email text); \
               CREATE UNIQUE INDEX users_email ON users (email)";
    let env = Env::new(
        "chk_ukdist",
        ClusterSpec::new().distributed("users", ddl, "user_id", 4),
        ddl,
    );
    let report = check(&env, &["users"]).await;
    assert_only(&report, ProblemKind::UniqueKeyWithoutDistColumn, "(email)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_shell_with_local_rows() {
    let env = Env::new("chk_shell", users_spec(), USERS);
    env.fixture
        .coordinator()
        .execute(&format!(
            "INSERT INTO {}.users VALUES (1, 'hidden')",
            env.schema
        ))
        .unwrap();
    let report = check(&env, &["users"]).await;
    assert_only(
        &report,
        ProblemKind::ShellHasLocalRows,
        "truncate_local_data_after_distributing_table",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_table_with_rows() {
    let env = Env::new("chk_full", users_spec(), USERS);
    env.fixture
        .insert_routed("users", "SELECT g, 'x' FROM generate_series(1, 10) g")
        .unwrap();
    let report = check(&env, &["users"]).await;
    assert_only(&report, ProblemKind::TargetNotEmpty, "already holds rows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_column_only_on_one_side() {
    let env = Env::new(
        "chk_gen",
        ClusterSpec::new().distributed(
            "users",
            "CREATE TABLE users (user_id bigint PRIMARY KEY, name text, twice bigint)",
            "user_id",
            4,
        ),
        "CREATE TABLE users (user_id bigint PRIMARY KEY, name text, \
         twice bigint GENERATED ALWAYS AS (user_id * 2) STORED)",
    );
    let report = check(&env, &["users"]).await;
    assert_only(
        &report,
        ProblemKind::GeneratedColumn,
        "generated on the source",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distribution_column_type_the_router_cannot_hash() {
    let ddl = "CREATE TABLE spans (span int4range PRIMARY KEY, name text)";
    let env = Env::new(
        "chk_hash",
        ClusterSpec::new().distributed("spans", ddl, "span", 4),
        ddl,
    );
    let report = check(&env, &["spans"]).await;
    assert_only(&report, ProblemKind::UnroutableTable, "range types");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_source_table() {
    let env = Env::new(
        "chk_part",
        users_spec(),
        "CREATE TABLE users (user_id bigint PRIMARY KEY, name text) PARTITION BY HASH (user_id);
         CREATE TABLE users_0 PARTITION OF users FOR VALUES WITH (MODULUS 1, REMAINDER 0);",
    );
    let report = check(&env, &["users"]).await;
    assert_only(&report, ProblemKind::NotATable, "partitioned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_table_problem_is_reported_at_once() {
    let spec = ClusterSpec::new()
        .distributed("users", USERS, "user_id", 4)
        .distributed(
            "orders",
            "CREATE TABLE orders (id bigint PRIMARY KEY, total int)",
            "id",
            4,
        );
    let env = Env::new(
        "chk_all",
        spec,
        "CREATE TABLE users (user_id bigint, name text);
         CREATE TABLE orders (id bigint PRIMARY KEY, total text);
         CREATE TABLE lost (id int PRIMARY KEY);",
    );
    env.fixture
        .insert_routed("orders", "SELECT g, g FROM generate_series(1, 3) g")
        .unwrap();
    let report = check(&env, &["users", "orders", "lost"]).await;
    let mut found = kinds(&report);
    found.sort_by_key(|k| format!("{k:?}"));
    assert_eq!(
        found,
        vec![
            ProblemKind::ColumnMismatch,
            ProblemKind::MissingOnTarget,
            ProblemKind::NoReplicaIdentity,
            ProblemKind::TargetNotEmpty,
        ],
        "{:#?}",
        report.problems
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_refuses_to_start_and_changes_nothing() {
    let env = Env::new(
        "chk_refuse",
        users_spec(),
        "CREATE TABLE users (user_id bigint NOT NULL, name text)",
    );
    let settings = env.settings(&["users"]);
    let mut out = Vec::new();
    let cancel = pgwarp::pipeline::CancellationToken::new();
    let err = pgwarp::cli::sync::sync(&settings, true, &cancel, &mut out)
        .await
        .unwrap_err();
    let printed = String::from_utf8(out).unwrap();
    assert!(
        err.to_string()
            .contains("preflight check found 1 problem(s); nothing was changed"),
        "{err}"
    );
    assert!(printed.contains("problem: table"), "{printed}");
    let slots: i64 = env
        .source
        .query_scalar(&format!(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{}'",
            env.slot
        ))
        .unwrap();
    let publications: i64 = env
        .source
        .query_scalar("SELECT count(*) FROM pg_publication")
        .unwrap();
    assert_eq!((slots, publications), (0, 0));
    assert_eq!(env.phase(), None);
}

//! The parts of `pgwarp cutover`, each against real servers, without a running sync.
//!
//! What each test proves:
//! * `role_fence_ends_old_sessions_and_lifting_restores_the_previous_setting`: after the fence a
//!   session of the fenced role opened before it is gone, a new session's write fails with
//!   SQLSTATE 25006, pgwarp's own sessions and other roles are untouched; lifting restores the
//!   exact setting each role had before (`RESET`, or the earlier value).
//! * `database_fence_covers_every_role`: without roles, every new session of the database is
//!   read-only and older sessions are ended; lifting resets it.
//! * `sequences_are_copied_forward_only`: the sequences of serial, identity and `nextval`
//!   default columns are found through the catalog and moved forward on the target (never
//!   back); a missing one is reported before anything changes.
//! * `a_fence_position_nobody_applies_times_out`: with a slot nobody streams, the wait ends at
//!   its limit with the positions of slot and nodes and the hint that no sync is running.
//! * `slot_and_publication_are_dropped_idempotently`: dropping twice is not an error.

mod verify_support;

use std::time::Duration;

use pgwarp::conn::{ConnConfig, connect};
use pgwarp::cutover::fence::{self, FenceKind};
use pgwarp::cutover::{CutoverError, retire, sequences, wait};
use pgwarp::pipeline::nodes::NodeTarget;
use pgwarp_tests::{PgServer, TestDb, unique_name};
use tokio_postgres::Client;

async fn client(conninfo: &str) -> Client {
    let cfg = ConnConfig::parse(conninfo).unwrap();
    connect(&cfg).await.unwrap().0
}

/// A connection string for `role`, as an application (not pgwarp) would connect.
fn as_role(db: &TestDb, role: &str) -> String {
    format!(
        "{} user={role} application_name=shop",
        db.conn_string().replace("user=postgres", "")
    )
}

/// The SQLSTATE of a failed statement, or "ok".
async fn write_outcome(conninfo: &str, sql: &str) -> String {
    let c = client(conninfo).await;
    match c.batch_execute(sql).await {
        Ok(()) => "ok".to_owned(),
        Err(e) => e.as_db_error().unwrap().code().code().to_owned(),
    }
}

fn role_setting(db: &TestDb, role: &str) -> Option<String> {
    db.query_rows(&format!(
        "SELECT c FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole, \
         unnest(s.setconfig) c WHERE r.rolname = '{role}' \
         AND s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND c LIKE 'default_transaction_read_only=%'"
    ))
    .unwrap()
    .into_iter()
    .next()
    .and_then(|r| r[0].clone())
}

#[tokio::test]
async fn role_fence_ends_old_sessions_and_lifting_restores_the_previous_setting() {
    let db = PgServer::shared().create_database("fence").unwrap();
    let (app, batch, other) = (
        unique_name("app"),
        unique_name("batch"),
        unique_name("other"),
    );
    db.execute(&format!(
        "CREATE TABLE t (id int); \
         CREATE ROLE {app} LOGIN; CREATE ROLE {batch} LOGIN; CREATE ROLE {other} LOGIN; \
         GRANT ALL ON t TO {app}, {batch}, {other}; \
         ALTER ROLE {batch} IN DATABASE \"{}\" SET default_transaction_read_only = off",
        db.name()
    ))
    .unwrap();
    let admin = client(&db.conn_string()).await;
    // an application session open before the fence, in a transaction
    let old = client(&as_role(&db, &app)).await;
    old.batch_execute("BEGIN; INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    // pgwarp's own sessions are never ended
    let ours = client(&format!(
        "{} application_name=pgwarp_sync",
        as_role(&db, &app)
    ))
    .await;

    let f = fence::plan(&admin, &[app.clone(), batch.clone()], true)
        .await
        .unwrap();
    assert_eq!(f.kind, FenceKind::Roles);
    assert_eq!(f.previous, vec![None, Some("off".to_owned())]);
    let at = fence::apply(&admin, &f).await.unwrap();
    let ended = fence::end_sessions(&admin, &f, &at).await.unwrap();
    assert_eq!(ended, 1);
    assert!(
        old.batch_execute("COMMIT").await.is_err(),
        "old session survived"
    );
    assert!(!ours.is_closed());
    ours.batch_execute("SELECT 1").await.unwrap();

    let insert = "INSERT INTO t VALUES (2)";
    assert_eq!(write_outcome(&as_role(&db, &app), insert).await, "25006");
    assert_eq!(write_outcome(&as_role(&db, &batch), insert).await, "25006");
    assert_eq!(write_outcome(&as_role(&db, &other), insert).await, "ok");

    fence::lift(&admin, &f).await.unwrap();
    assert_eq!(write_outcome(&as_role(&db, &app), insert).await, "ok");
    assert_eq!(role_setting(&db, &app), None);
    assert_eq!(
        role_setting(&db, &batch).as_deref(),
        Some("default_transaction_read_only=off")
    );
    // the uncommitted row of the ended session is not there
    assert_eq!(
        db.query_scalar::<i64>("SELECT count(*) FROM t WHERE id = 1")
            .unwrap(),
        0
    );

    let missing = fence::plan(&admin, &["nosuch_role_x".to_owned()], true).await;
    match missing {
        Err(CutoverError::Precondition(m)) => {
            assert!(
                m.contains("role \"nosuch_role_x\" does not exist on the source"),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }
    drop((old, ours, admin));
    db.execute(&format!(
        "DROP OWNED BY {app}, {batch}, {other}; DROP ROLE {app}, {batch}, {other}"
    ))
    .unwrap();
}

#[tokio::test]
async fn database_fence_covers_every_role() {
    let db = PgServer::shared().create_database("dbfence").unwrap();
    db.execute("CREATE TABLE t (id int)").unwrap();
    let admin = client(&db.conn_string()).await;
    let old = client(&format!("{} application_name=shop", db.conn_string())).await;
    let f = fence::plan(&admin, &[], true).await.unwrap();
    assert_eq!(f.kind, FenceKind::Database);
    assert_eq!(f.previous, vec![None]);
    let at = fence::apply(&admin, &f).await.unwrap();
    assert_eq!(fence::end_sessions(&admin, &f, &at).await.unwrap(), 1);
    assert!(old.batch_execute("SELECT 1").await.is_err());
    assert_eq!(
        write_outcome(&db.conn_string(), "INSERT INTO t VALUES (1)").await,
        "25006"
    );
    // the session that put the fence up keeps writing
    admin
        .batch_execute("INSERT INTO t VALUES (0)")
        .await
        .unwrap();
    fence::lift(&admin, &f).await.unwrap();
    assert_eq!(
        write_outcome(&db.conn_string(), "INSERT INTO t VALUES (1)").await,
        "ok"
    );
    let setting: i64 = db
        .query_scalar(
            "SELECT count(*) FROM pg_db_role_setting WHERE setrole = 0 AND setdatabase = \
             (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .unwrap();
    assert_eq!(setting, 0);
}

#[tokio::test]
async fn sequences_are_copied_forward_only() {
    let server = PgServer::shared();
    let ddl = "CREATE SEQUENCE free_seq START 100; \
               CREATE TABLE a (id serial PRIMARY KEY, ext bigint DEFAULT nextval('free_seq')); \
               CREATE TABLE b (id bigint GENERATED ALWAYS AS IDENTITY (INCREMENT BY 5), v int); \
               CREATE TABLE c (id int); CREATE SEQUENCE unrelated;";
    let src = server.create_database("seqsrc").unwrap();
    let dst = server.create_database("seqdst").unwrap();
    src.execute(ddl).unwrap();
    dst.execute(ddl).unwrap();
    src.execute(
        "INSERT INTO a (id) SELECT nextval('a_id_seq') FROM generate_series(1, 41); \
         INSERT INTO b (v) SELECT g FROM generate_series(1, 7) g; \
         SELECT nextval('unrelated'); \
         SELECT setval('free_seq', 5000)",
    )
    .unwrap();
    // the target is already ahead for free_seq
    dst.execute("SELECT setval('free_seq', 9000)").unwrap();
    let (s, t) = (
        client(&src.conn_string()).await,
        client(&dst.conn_string()).await,
    );
    let tables = vec!["a".to_owned(), "public.b".to_owned(), "c".to_owned()];
    let seqs = sequences::of_tables(&s, &tables).await.unwrap();
    let names: Vec<String> = seqs.iter().map(|q| q.quoted()).collect();
    assert_eq!(
        names,
        [
            "\"public\".\"a_id_seq\"",
            "\"public\".\"b_id_seq\"",
            "\"public\".\"free_seq\""
        ]
    );
    sequences::check_target(&t, &seqs).await.unwrap();
    let copies = sequences::copy(&s, &t, &seqs).await.unwrap();
    let moved: Vec<(String, i64, bool)> = copies
        .iter()
        .map(|c| (c.sequence.clone(), c.source_next, c.moved))
        .collect();
    assert_eq!(
        moved,
        [
            ("public.a_id_seq".to_owned(), 42, true),
            ("public.b_id_seq".to_owned(), 36, true),
            ("public.free_seq".to_owned(), 5001, false),
        ]
    );
    // what the target hands out next
    assert_eq!(
        dst.query_scalar::<i64>("SELECT nextval('a_id_seq')")
            .unwrap(),
        42
    );
    assert_eq!(
        dst.query_scalar::<i64>("SELECT nextval('b_id_seq')")
            .unwrap(),
        36
    );
    assert_eq!(
        dst.query_scalar::<i64>("SELECT nextval('free_seq')")
            .unwrap(),
        9001
    );
    assert_eq!(
        dst.query_scalar::<i64>("SELECT nextval('unrelated')")
            .unwrap(),
        1
    );
    // running it again changes nothing
    let again = sequences::copy(&s, &t, &seqs).await.unwrap();
    assert!(again.iter().all(|c| !c.moved), "{again:?}");

    dst.execute("DROP TABLE b").unwrap();
    match sequences::check_target(&t, &seqs).await {
        Err(CutoverError::Precondition(m)) => assert!(
            m.contains(
                "\"public\".\"b_id_seq\" used by the migrated tables do not exist on the target"
            ),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_fence_position_nobody_applies_times_out() {
    let db = PgServer::shared().create_database("waitsrc").unwrap();
    let slot = unique_name("idle_slot");
    db.execute(&format!(
        "SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')"
    ))
    .unwrap();
    let src = client(&db.conn_string()).await;
    db.execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
        .unwrap();
    let fence_lsn = wait::fence_position(&src).await.unwrap();
    // the WAL up to the fence is flushed at once
    let flushed: String = db
        .query_scalar("SELECT pg_current_wal_flush_lsn()::text")
        .unwrap();
    assert!(flushed.parse::<pgwarp_decoder::Lsn>().unwrap() > fence_lsn);
    // a node without pgwarp.progress: no row, no error
    let node = NodeTarget {
        label: format!("127.0.0.1:{}", db.port()),
        config: ConnConfig::parse(&db.conn_string()).unwrap(),
    };
    let err = wait::wait(&src, &slot, fence_lsn, &[node], Duration::from_secs(1))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "the target did not catch up with the source within 1 s: the source was fenced at \
             WAL position {fence_lsn}; the slot has confirmed "
        )),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("node 127.0.0.1:{} has applied nothing", db.port())),
        "{msg}"
    );
    assert!(
        msg.ends_with("no process is streaming the slot: is pgwarp sync running?"),
        "{msg}"
    );
    retire::drop_slot(&src, &slot, false).await.unwrap();
}

#[tokio::test]
async fn slot_and_publication_are_dropped_idempotently() {
    let db = PgServer::shared().create_database("retire").unwrap();
    let slot = unique_name("retire_slot");
    db.execute(&format!(
        "CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION {slot} FOR TABLE t"
    ))
    .unwrap();
    db.execute(&format!(
        "SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')"
    ))
    .unwrap();
    let src = client(&db.conn_string()).await;
    assert!(retire::drop_slot(&src, &slot, false).await.unwrap());
    assert!(!retire::drop_slot(&src, &slot, false).await.unwrap());
    assert!(retire::drop_pub(&src, &slot).await.unwrap());
    assert!(!retire::drop_pub(&src, &slot).await.unwrap());
    let left: i64 = db
        .query_scalar(&format!(
            "SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}') + \
                    (SELECT count(*) FROM pg_publication WHERE pubname = '{slot}')"
        ))
        .unwrap();
    assert_eq!(left, 0);
}

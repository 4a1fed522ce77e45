//! `pgwarp cutover` tried the way a new user would: every mistake is reported before anything
//! on the source changes.
//!
//! * `bad_arguments`: a non-numeric and a zero `--max-wait`, `--unfence` with fence options.
//! * `nothing_to_cut_over`: no slot, no sync recorded, `--unfence` without a recorded cutover.
//! * `unknown_role_changes_nothing`: a `--fence-role` that does not exist stops the cutover
//!   before the fence; no record is left in the fenced state.
//! * `missing_privileges`: a role that may not change role settings gets the server's
//!   message, nothing was changed, and the record says the cutover failed.

mod verify_support;

use pgwarp_tests::{PgServer, TestDb, unique_name};
use verify_support::pgwarp;

fn pair() -> (TestDb, TestDb) {
    let server = PgServer::shared();
    let src = server.create_database("cesrc").unwrap();
    let dst = server.create_database("cedst").unwrap();
    for db in [&src, &dst] {
        db.execute("CREATE TABLE a (id int PRIMARY KEY)").unwrap();
    }
    (src, dst)
}

/// A slot and a sync state row that say "streaming", as a running sync would leave them.
fn fake_sync(src: &TestDb, dst: &TestDb, slot: &str) {
    src.execute(&format!(
        "SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')"
    ))
    .unwrap();
    dst.execute(&format!(
        "CREATE SCHEMA pgwarp; \
         CREATE TABLE pgwarp.sync_state (slot text PRIMARY KEY, publication text NOT NULL, \
           phase text NOT NULL, tables text[] NOT NULL, consistent_point pg_lsn, \
           idempotent_until pg_lsn NOT NULL DEFAULT '0/0', snapshot_started_at timestamptz, \
           snapshot_done_at timestamptz, caught_up_lsn pg_lsn, \
           updated_at timestamptz NOT NULL DEFAULT now()); \
         CREATE TABLE pgwarp.snapshot_chunks (slot text); \
         INSERT INTO pgwarp.sync_state (slot, publication, phase, tables) \
           VALUES ('{slot}', '{slot}', 'streaming', ARRAY['public.a'])"
    ))
    .unwrap();
}

fn drop_slot(src: &TestDb, slot: &str) {
    src.execute(&format!(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
         WHERE slot_name = '{slot}'"
    ))
    .unwrap();
}

#[tokio::test]
async fn bad_arguments() {
    let (src, dst) = pair();
    let (s, t) = (src.conn_string(), dst.conn_string());
    let base = ["cutover", "--source", &s, "--target", &t];
    let with = |extra: &[&'static str]| {
        let mut v: Vec<String> = base.iter().map(|x| x.to_string()).collect();
        v.extend(extra.iter().map(|x| x.to_string()));
        v
    };
    for (extra, status, message) in [
        (
            &["--max-wait", "soon"][..],
            2,
            "invalid value 'soon' for '--max-wait <SECS>'",
        ),
        (
            &["--max-wait", "0"][..],
            1,
            "--max-wait must be at least 1 second",
        ),
        (
            &["--unfence", "--fence-role", "app"][..],
            2,
            "the argument '--unfence' cannot be used with '--fence-role <ROLE>'",
        ),
        (
            &["--no-fence", "--fence-role", "app"][..],
            2,
            "cannot be used with",
        ),
    ] {
        let args = with(extra);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = pgwarp(&argv).await;
        out.expect_status(status);
        assert!(out.stderr.contains(message), "{extra:?}: {}", out.stderr);
    }
}

#[tokio::test]
async fn nothing_to_cut_over() {
    let (src, dst) = pair();
    let (s, t) = (src.conn_string(), dst.conn_string());
    let out = pgwarp(&[
        "cutover", "--source", &s, "--target", &t, "--slot", "nosuch",
    ])
    .await;
    out.expect_status(1);
    assert_eq!(
        out.stderr,
        "cutover failed: replication slot \"nosuch\" does not exist on the source: nothing to \
         cut over (give the sync's --slot); nothing was changed"
    );

    let slot = unique_name("ce_slot");
    src.execute(&format!(
        "SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')"
    ))
    .unwrap();
    let out = pgwarp(&["cutover", "--source", &s, "--target", &t, "--slot", &slot]).await;
    drop_slot(&src, &slot);
    out.expect_status(1);
    assert!(
        out.stderr
            .contains("no pgwarp sync is recorded on the target (no pgwarp.sync_state): run pgwarp sync first; nothing was changed"),
        "{}",
        out.stderr
    );

    let out = pgwarp(&[
        "cutover",
        "--source",
        &s,
        "--target",
        &t,
        "--slot",
        &slot,
        "--unfence",
    ])
    .await;
    out.expect_status(1);
    out.expect_stderr(&format!(
        "no cutover of slot \"{slot}\" is recorded on the target: nothing to lift"
    ));
}

#[tokio::test]
async fn unknown_role_changes_nothing() {
    let (src, dst) = pair();
    let slot = unique_name("ce_role");
    fake_sync(&src, &dst, &slot);
    let out = pgwarp(&[
        "cutover",
        "--source",
        &src.conn_string(),
        "--target",
        &dst.conn_string(),
        "--slot",
        &slot,
        "--fence-role",
        "no_such_app_role",
    ])
    .await;
    drop_slot(&src, &slot);
    out.expect_status(1);
    assert!(
        out.stderr.contains(
            "role \"no_such_app_role\" does not exist on the source: --fence-role names the \
             roles the application connects as; nothing was changed"
        ),
        "{}",
        out.stderr
    );
    let records: i64 = dst
        .query_scalar("SELECT count(*) FROM pg_class WHERE relname = 'cutover'")
        .unwrap();
    assert_eq!(records, 0);
}

#[tokio::test]
async fn missing_privileges() {
    let (src, dst) = pair();
    let slot = unique_name("ce_priv");
    fake_sync(&src, &dst, &slot);
    let (weak, app) = (unique_name("weak"), unique_name("app"));
    src.execute(&format!(
        "CREATE ROLE {weak} LOGIN REPLICATION; CREATE ROLE {app} LOGIN"
    ))
    .unwrap();
    let s = format!(
        "{} user={weak}",
        src.conn_string().replace("user=postgres", "")
    );
    let out = pgwarp(&[
        "cutover",
        "--source",
        &s,
        "--target",
        &dst.conn_string(),
        "--slot",
        &slot,
        "--fence-role",
        &app,
    ])
    .await;
    drop_slot(&src, &slot);
    src.execute(&format!("DROP ROLE {weak}; DROP ROLE {app}"))
        .unwrap();
    out.expect_status(1);
    out.expect_stderr(&format!(
        "cutover failed: could not fence writes (ALTER ROLE \"{app}\" IN DATABASE \"{}\" SET \
             default_transaction_read_only = on) on the source: permission denied",
        src.name()
    ));
    assert!(
        out.stderr.ends_with("; nothing was changed"),
        "{}",
        out.stderr
    );
    let state: String = dst
        .query_scalar(&format!(
            "SELECT state FROM pgwarp.cutover WHERE slot = '{slot}'"
        ))
        .unwrap();
    assert_eq!(state, "failed");
}

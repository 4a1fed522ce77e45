//! Every source error an operator must act on, produced for real and checked word for word:
//! what happened, where, and what to do.

mod source_support;

use pgwarp::conn::{self, ConnError};
use pgwarp::error::Classify;
use pgwarp::source::admin::{
    PublicationScope, check_publication, check_ready_for_replication, check_slot,
    ensure_publication, slot_info,
};
use pgwarp::source::{
    CreateSlotOptions, ReplicationClient, SnapshotAction, SourceError, StreamOptions,
};
use pgwarp_decoder::ReplicationMessage;
use pgwarp_tests::{PasswordEncryption, PgServer, ServerOptions, unique_name};
use source_support::config;

const NO_SNAPSHOT: CreateSlotOptions = CreateSlotOptions {
    temporary: false,
    snapshot: SnapshotAction::Nothing,
    two_phase: false,
};

const WAL_LEVEL_MESSAGE: &str = "logical decoding is not enabled on the source server (wal_level \
    is \"replica\"): set wal_level = logical in postgresql.conf and restart the server";

#[tokio::test]
async fn wal_level_replica_is_reported_upfront_and_at_slot_creation() {
    let server =
        PgServer::start_with(ServerOptions::default().setting("wal_level", "replica")).unwrap();
    let db = server.create_database("src_wal_level").unwrap();
    let cfg = config(&db.conn_string());
    let (admin, _conn) = conn::connect(&cfg).await.unwrap();
    let err = check_ready_for_replication(&admin, 1).await.unwrap_err();
    assert_eq!(err.to_string(), WAL_LEVEL_MESSAGE);

    let mut client = ReplicationClient::connect(&cfg).await.unwrap();
    let err = client.create_slot("never", &NO_SNAPSHOT).await.unwrap_err();
    assert!(
        matches!(err, SourceError::WalLevelNotLogical { .. }),
        "{err:?}"
    );
    assert_eq!(err.to_string(), WAL_LEVEL_MESSAGE);
    assert!(!err.is_transient());
}

#[tokio::test]
async fn role_without_replication_is_told_to_grant_it() {
    let server = PgServer::shared();
    let role = unique_name("no_repl");
    server
        .create_role(&role, "pw", PasswordEncryption::ScramSha256, "")
        .unwrap();
    let db = server.create_database("src_no_repl").unwrap();
    let cfg = config(&format!("{} user={role}", db.conn_string()));
    let expected = format!(
        "role \"{role}\" is not allowed to start replication on the source: grant it with \
         ALTER ROLE {role} REPLICATION"
    );
    let err = ReplicationClient::connect(&cfg).await.unwrap_err();
    assert!(
        matches!(err, SourceError::NoReplicationPrivilege { .. }),
        "{err:?}"
    );
    assert_eq!(err.to_string(), expected);
    let (admin, _conn) = conn::connect(&cfg).await.unwrap();
    assert_eq!(
        check_ready_for_replication(&admin, 1)
            .await
            .unwrap_err()
            .to_string(),
        expected
    );
}

#[tokio::test]
async fn existing_and_active_slots() {
    let db = PgServer::shared().create_database("src_slots").unwrap();
    db.execute("CREATE TABLE t (id bigint PRIMARY KEY); CREATE PUBLICATION p FOR TABLE t;")
        .unwrap();
    let cfg = config(&db.conn_string());
    let mut client = ReplicationClient::connect(&cfg).await.unwrap();
    let slot = client.create_slot("busy_slot", &NO_SNAPSHOT).await.unwrap();
    let err = client
        .create_slot("busy_slot", &NO_SNAPSHOT)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "replication slot \"busy_slot\" already exists: resume with it, or drop it with SELECT \
         pg_drop_replication_slot('busy_slot') to start over"
    );
    assert!(!err.is_transient());

    // the client is still usable after an error (ReadyForQuery consumed)
    let first = client
        .start_replication(
            "busy_slot",
            slot.consistent_point,
            &StreamOptions::new(["p"]),
        )
        .await
        .unwrap();
    let pid = first.backend_pid();
    let second = ReplicationClient::connect(&cfg).await.unwrap();
    let err = second
        .start_replication(
            "busy_slot",
            slot.consistent_point,
            &StreamOptions::new(["p"]),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, SourceError::SlotActive { pid: Some(p), .. } if p == pid),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "replication slot \"busy_slot\" is active for PID {pid}: another consumer is using \
             it; stop it, or end it with SELECT pg_terminate_backend({pid})"
        )
    );
    let (admin, _conn) = conn::connect(&cfg).await.unwrap();
    assert_eq!(
        check_slot(&admin, "busy_slot")
            .await
            .unwrap_err()
            .to_string(),
        err.to_string()
    );
    let missing = check_slot(&admin, "no_such_slot").await.unwrap_err();
    assert_eq!(
        missing.to_string(),
        "replication slot \"no_such_slot\" does not exist: it was dropped or never created; run \
         the setup again to create it from a new snapshot"
    );
    let third = ReplicationClient::connect(&cfg).await.unwrap();
    let err = third
        .start_replication(
            "no_such_slot",
            slot.consistent_point,
            &StreamOptions::new(["p"]),
        )
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), missing.to_string());
    first.stop().await.unwrap();
}

#[tokio::test]
async fn invalidated_slot_requires_a_resync() {
    let server = PgServer::start_with(
        ServerOptions::default()
            .setting("max_slot_wal_keep_size", "1MB")
            .setting("wal_keep_size", "0"),
    )
    .unwrap();
    let db = server.create_database("src_lost").unwrap();
    db.execute("CREATE TABLE t (id bigint); CREATE PUBLICATION p FOR TABLE t;")
        .unwrap();
    let cfg = config(&db.conn_string());
    let mut client = ReplicationClient::connect(&cfg).await.unwrap();
    let slot = client.create_slot("lost_slot", &NO_SNAPSHOT).await.unwrap();
    client.close().await.unwrap();
    for i in 0..4 {
        db.execute(&format!(
            "INSERT INTO t VALUES ({i}); SELECT pg_switch_wal();"
        ))
        .unwrap();
    }
    db.execute("CHECKPOINT").unwrap();

    let (admin, _conn) = conn::connect(&cfg).await.unwrap();
    let info = slot_info(&admin, "lost_slot").await.unwrap().unwrap();
    assert_eq!(info.wal_status.as_deref(), Some("lost"));
    let expected = "replication slot \"lost_slot\" was invalidated: the server removed WAL the \
                    slot still needed (see max_slot_wal_keep_size); re-sync is required: drop the \
                    slot and start again from a new snapshot";
    assert_eq!(
        check_slot(&admin, "lost_slot")
            .await
            .unwrap_err()
            .to_string(),
        expected
    );

    let client = ReplicationClient::connect(&cfg).await.unwrap();
    let err = client
        .start_replication(
            "lost_slot",
            slot.consistent_point,
            &StreamOptions::new(["p"]),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, SourceError::SlotInvalidated { .. }),
        "{err:?}"
    );
    assert_eq!(err.to_string(), expected);
}

#[tokio::test]
async fn missing_and_empty_publications() {
    let db = PgServer::shared().create_database("src_pubs").unwrap();
    db.execute("CREATE TABLE t (id bigint PRIMARY KEY); CREATE PUBLICATION empty_pub;")
        .unwrap();
    let cfg = config(&db.conn_string());
    let (admin, _conn) = conn::connect(&cfg).await.unwrap();

    let missing = check_publication(&admin, "nope").await.unwrap_err();
    assert_eq!(
        missing.to_string(),
        "publication \"nope\" does not exist on the source: create it with CREATE PUBLICATION \
         nope FOR TABLE ... (or let pgwarp create it)"
    );
    let empty = check_publication(&admin, "empty_pub").await.unwrap_err();
    assert_eq!(
        empty.to_string(),
        "publication \"empty_pub\" contains no tables: add them with ALTER PUBLICATION empty_pub \
         ADD TABLE ..."
    );
    let err = ensure_publication(&admin, "other", &PublicationScope::Tables(vec![]))
        .await
        .unwrap_err();
    assert!(matches!(err, SourceError::PublicationEmpty { .. }));

    // pgoutput reports a missing publication when it decodes the first change
    let mut client = ReplicationClient::connect(&cfg).await.unwrap();
    let slot = client.create_slot("pub_slot", &NO_SNAPSHOT).await.unwrap();
    let mut stream = client
        .start_replication(
            "pub_slot",
            slot.consistent_point,
            &StreamOptions::new(["nope"]),
        )
        .await
        .unwrap();
    db.execute("INSERT INTO t VALUES (1)").unwrap();
    let err = loop {
        match stream.next().await {
            Ok(Some(ReplicationMessage::PrimaryKeepalive(_))) => {}
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(err, SourceError::PublicationMissing { .. }),
        "{err:?}"
    );
    assert_eq!(err.to_string(), missing.to_string());
}

#[tokio::test]
async fn unreachable_server_names_host_and_port_and_is_transient() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let cfg = config(&format!(
        "host=127.0.0.1 port={closed} user=postgres sslmode=disable"
    ));
    let expected = format!(
        "could not connect to server at 127.0.0.1:{closed}: Connection refused (os error 111)"
    );
    let err = conn::connect(&cfg).await.unwrap_err();
    assert!(matches!(err, ConnError::Unreachable { .. }), "{err:?}");
    assert_eq!(err.to_string(), expected);
    assert!(err.is_transient());
    let err = ReplicationClient::connect(&cfg).await.unwrap_err();
    assert_eq!(err.to_string(), expected);
    assert!(err.is_transient());

    let two = config(&format!(
        "host=127.0.0.1,127.0.0.1 port={closed},{closed} user=postgres"
    ));
    let err = conn::connect(&two).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("could not connect to any host: {expected}; {expected}")
    );
    assert!(err.is_transient());
}

#[tokio::test]
async fn terminated_walsender_is_a_transient_admin_shutdown() {
    let db = PgServer::shared().create_database("src_shutdown").unwrap();
    db.execute("CREATE TABLE t (id bigint PRIMARY KEY); CREATE PUBLICATION p FOR TABLE t;")
        .unwrap();
    let cfg = config(&db.conn_string());
    let mut client = ReplicationClient::connect(&cfg).await.unwrap();
    let slot = client.create_slot("term_slot", &NO_SNAPSHOT).await.unwrap();
    let mut stream = client
        .start_replication(
            "term_slot",
            slot.consistent_point,
            &StreamOptions::new(["p"]),
        )
        .await
        .unwrap();
    db.execute(&format!(
        "SELECT pg_terminate_backend({})",
        stream.backend_pid()
    ))
    .unwrap();
    let err = loop {
        match stream.next().await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("stream ended cleanly"),
            Err(e) => break e,
        }
    };
    match &err {
        SourceError::Server { error, .. } => assert_eq!(error.code, "57P01"),
        other => panic!("expected the server's admin shutdown error, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "replication from slot \"term_slot\" failed: terminating connection due to administrator \
         command (SQLSTATE 57P01)"
    );
    assert!(err.is_transient());
}

//! The replication stream's feedback and keepalive behaviour against a real server:
//! the slot's confirmed position is exactly what the client declared durable, a restart
//! resumes from it without loss or repetition, and an idle stream outlives
//! `wal_sender_timeout`.

mod source_support;

use std::time::Duration;

use pgwarp::conn;
use pgwarp::error::Classify;
use pgwarp::source::admin::slot_info;
use pgwarp::source::{
    CreateSlotOptions, ReplicationClient, ReplicationStream, SnapshotAction, SourceError,
    StreamOptions,
};
use pgwarp_decoder::{Decoder, Lsn, ReplicationMessage};
use pgwarp_tests::{PgServer, ServerOptions};
use source_support::{config, read_until_marker};

const NO_SNAPSHOT: CreateSlotOptions = CreateSlotOptions {
    temporary: false,
    snapshot: SnapshotAction::Nothing,
    two_phase: false,
};

/// Sends a status update asking for a reply and reads until the server's keepalive answers:
/// the server has then processed the update. Returns the keepalive's WAL end.
async fn sync_feedback(stream: &mut ReplicationStream) -> Lsn {
    stream.send_status(true).await.unwrap();
    loop {
        match stream.next().await.unwrap() {
            Some(ReplicationMessage::PrimaryKeepalive(k)) => return k.wal_end,
            Some(ReplicationMessage::XLogData(_)) => {}
            None => panic!("stream ended"),
        }
    }
}

async fn confirmed(client: &tokio_postgres::Client, slot: &str) -> Option<Lsn> {
    slot_info(client, slot)
        .await
        .unwrap()
        .expect("slot exists")
        .confirmed_flush_lsn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_flush_is_exactly_the_acknowledged_lsn_and_resume_is_exactly_once() {
    let db = PgServer::shared().create_database("src_feedback").unwrap();
    db.execute("CREATE TABLE t (id bigint PRIMARY KEY); CREATE PUBLICATION fb_pub FOR TABLE t;")
        .unwrap();
    let cfg = config(&db.conn_string());
    let (admin, _admin_conn) = conn::connect(&cfg).await.unwrap();

    let mut client = ReplicationClient::connect(&cfg).await.unwrap();
    let slot = client.create_slot("fb_slot", &NO_SNAPSHOT).await.unwrap();
    db.execute("INSERT INTO t SELECT generate_series(1, 10)")
        .unwrap();
    db.execute("INSERT INTO t SELECT generate_series(11, 20)")
        .unwrap();
    db.execute("INSERT INTO t SELECT generate_series(21, 30)")
        .unwrap();
    db.execute("SELECT pg_logical_emit_message(true, 'm1', '')")
        .unwrap();

    let opts = StreamOptions {
        status_interval: Duration::from_millis(100),
        ..StreamOptions::new(["fb_pub"])
    };
    let mut stream = client
        .start_replication("fb_slot", slot.consistent_point, &opts)
        .await
        .unwrap();
    let mut decoder = Decoder::new(stream.proto_version());
    let first = read_until_marker(&mut stream, &mut decoder, "m1")
        .await
        .unwrap();
    let ids: Vec<Vec<i64>> = first
        .transactions
        .iter()
        .map(|(_, ids)| ids.clone())
        .collect();
    assert_eq!(
        ids,
        vec![
            (1..=10).collect::<Vec<_>>(),
            (11..=20).collect(),
            (21..=30).collect()
        ]
    );

    // acknowledge the end of the first transaction only
    let x = first.transactions[0].0;
    stream.set_durable(x);
    sync_feedback(&mut stream).await;
    assert_eq!(confirmed(&admin, "fb_slot").await, Some(x));

    // more WAL: the server now reports ends well past x, and status updates keep going out
    db.execute("INSERT INTO t SELECT generate_series(31, 40)")
        .unwrap();
    db.execute("SELECT pg_logical_emit_message(true, 'm2', '')")
        .unwrap();
    let second = read_until_marker(&mut stream, &mut decoder, "m2")
        .await
        .unwrap();
    assert_eq!(second.ids, (31..=40).collect::<Vec<_>>());
    for _ in 0..5 {
        let server_end = sync_feedback(&mut stream).await;
        assert!(
            server_end > second.transactions[0].0,
            "keepalive end {server_end} is not past the data"
        );
        assert_eq!(confirmed(&admin, "fb_slot").await, Some(x));
    }
    // timer-driven updates (100 ms) while idle must not move it either
    let idle_until = tokio::time::Instant::now() + Duration::from_millis(600);
    while let Ok(message) = tokio::time::timeout_at(idle_until, stream.next()).await {
        message.unwrap();
    }
    assert_eq!(stream.last_reported().map(|p| p.flush), Some(x));
    assert_eq!(confirmed(&admin, "fb_slot").await, Some(x));

    let client = stream.stop().await.unwrap();
    client.close().await.unwrap();
    assert_eq!(confirmed(&admin, "fb_slot").await, Some(x));

    // a new connection resumes from x: everything after it, once
    let client = ReplicationClient::connect(&cfg).await.unwrap();
    let start = confirmed(&admin, "fb_slot").await.unwrap();
    let mut stream = client
        .start_replication("fb_slot", start, &opts)
        .await
        .unwrap();
    db.execute("SELECT pg_logical_emit_message(true, 'm3', '')")
        .unwrap();
    let mut decoder = Decoder::new(stream.proto_version());
    let resumed = read_until_marker(&mut stream, &mut decoder, "m3")
        .await
        .unwrap();
    assert_eq!(resumed.ids, (11..=40).collect::<Vec<_>>());
    stream.stop().await.unwrap();
}

fn short_timeout_server() -> PgServer {
    PgServer::start_with(ServerOptions::default().setting("wal_sender_timeout", "2s")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_stream_outlives_a_two_second_wal_sender_timeout() {
    let server = short_timeout_server();
    let db = server.create_database("src_keepalive").unwrap();
    db.execute("CREATE TABLE t (id bigint PRIMARY KEY); CREATE PUBLICATION ka_pub FOR TABLE t;")
        .unwrap();
    let cfg = config(&db.conn_string());
    let mut client = ReplicationClient::connect(&cfg).await.unwrap();
    let slot = client.create_slot("ka_slot", &NO_SNAPSHOT).await.unwrap();
    let mut stream = client
        .start_replication(
            "ka_slot",
            slot.consistent_point,
            &StreamOptions::new(["ka_pub"]),
        )
        .await
        .unwrap();
    // one second, clamped to a third of the server's two
    assert_eq!(stream.status_interval(), Duration::from_nanos(666_666_666));
    let walsender = stream.backend_pid();

    // ten idle seconds (each `next` is cancelled by the deadline branch at the end)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut keepalives = 0;
    loop {
        tokio::select! {
            message = stream.next() => match message.unwrap() {
                Some(ReplicationMessage::PrimaryKeepalive(_)) => keepalives += 1,
                Some(ReplicationMessage::XLogData(w)) => panic!("unexpected data at {}", w.wal_start),
                None => panic!("stream ended"),
            },
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    assert!(keepalives > 0);
    let pids: Vec<i32> = db
        .query_rows("SELECT pid FROM pg_stat_replication")
        .unwrap()
        .into_iter()
        .map(|r| r[0].as_deref().unwrap().parse().unwrap())
        .collect();
    assert_eq!(pids, vec![walsender]);

    db.execute("INSERT INTO t VALUES (7); SELECT pg_logical_emit_message(true, 'after-idle', '')")
        .unwrap();
    let mut decoder = Decoder::new(stream.proto_version());
    let received = read_until_marker(&mut stream, &mut decoder, "after-idle")
        .await
        .unwrap();
    assert_eq!(received.ids, vec![7]);
    stream.stop().await.unwrap();
}

/// The control for the test above: a stream nobody polls sends no feedback, and the server
/// drops it after `wal_sender_timeout`; the client sees a transient error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpolled_stream_is_timed_out_by_the_server() {
    let server = short_timeout_server();
    let db = server.create_database("src_timeout").unwrap();
    db.execute("CREATE TABLE t (id bigint PRIMARY KEY); CREATE PUBLICATION to_pub FOR TABLE t;")
        .unwrap();
    let cfg = config(&db.conn_string());
    let mut client = ReplicationClient::connect(&cfg).await.unwrap();
    let slot = client.create_slot("to_slot", &NO_SNAPSHOT).await.unwrap();
    let mut stream = client
        .start_replication(
            "to_slot",
            slot.consistent_point,
            &StreamOptions::new(["to_pub"]),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let err = loop {
        match stream.next().await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("stream ended cleanly"),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(err, SourceError::Closed { .. } | SourceError::Io { .. }),
        "{err}"
    );
    assert!(err.is_transient());
    assert!(
        server
            .log_tail(50)
            .contains("terminating walsender process due to replication timeout")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publication_names_with_quotes_are_passed_intact() {
    let db = PgServer::shared().create_database("src_quotes").unwrap();
    let publication = "it's \"odd\", really";
    db.execute(&format!(
        "CREATE TABLE t (id bigint PRIMARY KEY); CREATE TABLE other (id bigint PRIMARY KEY);
         CREATE PUBLICATION {} FOR TABLE t; CREATE PUBLICATION plain FOR TABLE other;",
        pgwarp::source::quote::quote_ident(publication)
    ))
    .unwrap();
    let cfg = config(&db.conn_string());
    let mut client = ReplicationClient::connect(&cfg).await.unwrap();
    let slot = client
        .create_slot("quote_slot", &NO_SNAPSHOT)
        .await
        .unwrap();
    db.execute("INSERT INTO t VALUES (1); INSERT INTO other VALUES (2); INSERT INTO t VALUES (3);")
        .unwrap();
    db.execute("SELECT pg_logical_emit_message(true, 'end', '')")
        .unwrap();
    let opts = StreamOptions::new([publication]);
    let mut stream = client
        .start_replication("quote_slot", slot.consistent_point, &opts)
        .await
        .unwrap();
    let mut decoder = Decoder::new(stream.proto_version());
    let received = read_until_marker(&mut stream, &mut decoder, "end")
        .await
        .unwrap();
    assert_eq!(received.ids, vec![1, 3]);
    assert_eq!(received.per_relation.keys().collect::<Vec<_>>(), vec!["t"]);
}

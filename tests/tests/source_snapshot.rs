//! A slot's exported snapshot and its stream meet exactly at the consistent point: with a
//! writer committing numbered rows before, during and after slot creation, the rows visible
//! in the snapshot and the rows streamed from the consistent point are disjoint and together
//! are every row written.

mod source_support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use pgwarp::conn;
use pgwarp::source::{ReplicationClient, StreamOptions};
use pgwarp_decoder::Decoder;
use pgwarp_tests::PgServer;
use source_support::{config, read_until_marker};

/// Waits (yielding) until the writer has committed at least `n` rows.
async fn wait_for_rows(written: &AtomicI64, n: i64) {
    while written.load(Ordering::Acquire) < n {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_and_stream_cover_every_row_exactly_once_under_concurrent_writes() {
    let db = PgServer::shared().create_database("src_snapshot").unwrap();
    db.execute(
        "CREATE TABLE items (id bigint PRIMARY KEY, note text);
         CREATE PUBLICATION snap_pub FOR TABLE items;",
    )
    .unwrap();
    let cfg = config(&db.conn_string());

    // the writer: one row per transaction, ids 1, 2, 3, ... until told to stop
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicI64::new(0));
    let (writer_client, _writer_conn) = conn::connect(&cfg).await.unwrap();
    let writer = {
        let stop = stop.clone();
        let written = written.clone();
        tokio::spawn(async move {
            let insert = writer_client
                .prepare("INSERT INTO items VALUES ($1, 'x')")
                .await
                .unwrap();
            let mut id: i64 = 0;
            while !stop.load(Ordering::Acquire) {
                id += 1;
                writer_client.execute(&insert, &[&id]).await.unwrap();
                written.store(id, Ordering::Release);
            }
            id
        })
    };

    wait_for_rows(&written, 300).await;
    let client = ReplicationClient::connect(&cfg).await.unwrap();
    let exported = client
        .create_slot_exporting("snap_slot", false)
        .await
        .unwrap();
    let at_creation = written.load(Ordering::Acquire);

    // import the snapshot while the writer keeps going
    let (reader, _reader_conn) = conn::connect(&cfg).await.unwrap();
    reader
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await
        .unwrap();
    reader
        .batch_execute(&format!(
            "SET TRANSACTION SNAPSHOT '{}'",
            exported.snapshot_name()
        ))
        .await
        .unwrap();
    wait_for_rows(&written, at_creation + 300).await;
    let snapshot_ids: Vec<i64> = reader
        .query("SELECT id FROM items ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    reader.batch_execute("COMMIT").await.unwrap();
    let (client, slot) = exported.release();

    wait_for_rows(&written, at_creation + 600).await;
    stop.store(true, Ordering::Release);
    let total = writer.await.unwrap();
    db.execute("SELECT pg_logical_emit_message(true, 'test-end', '')")
        .unwrap();

    let opts = StreamOptions::new(["snap_pub"]);
    let mut stream = client
        .start_replication("snap_slot", slot.consistent_point, &opts)
        .await
        .unwrap();
    let mut decoder = Decoder::new(stream.proto_version());
    let received = read_until_marker(&mut stream, &mut decoder, "test-end")
        .await
        .unwrap();
    stream.stop().await.unwrap();

    // the snapshot is a prefix 1..=k (one writer, commits in id order) taken mid-stream
    let k = snapshot_ids.len() as i64;
    assert!(k >= 300, "snapshot saw only {k} rows");
    assert!(
        k < total,
        "the writer kept going after the snapshot ({k} of {total})"
    );
    assert_eq!(snapshot_ids, (1..=k).collect::<Vec<_>>());
    // the stream has exactly the rest, once each, in commit order
    assert_eq!(received.ids, (k + 1..=total).collect::<Vec<_>>());
    let snap: BTreeSet<i64> = snapshot_ids.into_iter().collect();
    let streamed: BTreeSet<i64> = received.ids.iter().copied().collect();
    assert!(snap.is_disjoint(&streamed));
    assert_eq!(snap.union(&streamed).count() as i64, total);
    // every transaction after the consistent point ends after it
    assert!(
        received
            .transactions
            .iter()
            .all(|(end, _)| *end > slot.consistent_point)
    );
}

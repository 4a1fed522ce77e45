//! Crash safety: the writer's connection is killed in the middle of a batch, the writer
//! replays the batch from a new connection, and a restarted writer resumes from the progress
//! rows. No change may be lost and none applied twice.

mod sink_support;

use std::sync::Arc;
use std::time::Duration;

use pgwarp_decoder::{ColumnRef, Lsn, TupleData};
use pgwarp_sink::{
    Change, NodeBatch, NodeWriter, RetryPolicy, Row, Shard, ShardTarget, TargetTable, WriterConfig,
};
use pgwarp_tests::TestDb;
use sink_support::{connector, progress, rows, target};

const DDL: &str = "
    CREATE TABLE log (id int, v text);
    CREATE TABLE acct (id int PRIMARY KEY, v text);
";

fn shard(name: &str, key: Vec<usize>, unique: bool) -> Shard {
    let t = TargetTable::new(
        format!("public.{name}"),
        vec!["id".into(), "v".into()],
        key,
        unique,
    )
    .unwrap();
    Arc::new(ShardTarget::new(Arc::new(t), "public", name))
}

fn row(id: i32, v: &str) -> Row {
    let id = id.to_string();
    Row::Tuple(
        TupleData::from_values([
            ColumnRef::Text(id.as_bytes()),
            ColumnRef::Text(v.as_bytes()),
        ])
        .unwrap(),
    )
}

fn inserts(log: &Shard, acct: &Shard, ids: std::ops::RangeInclusive<i32>) -> Vec<Change> {
    let mut out = Vec::new();
    for id in ids {
        out.push(Change::Insert {
            shard: log.clone(),
            row: row(id, "log"),
        });
        out.push(Change::Insert {
            shard: acct.clone(),
            row: row(id, "new"),
        });
    }
    out
}

fn counts(db: &TestDb) -> Vec<Vec<Option<String>>> {
    rows(
        db,
        "SELECT (SELECT count(*) FROM log), (SELECT count(DISTINCT id) FROM log), \
                (SELECT count(*) FROM acct), (SELECT count(*) FROM acct WHERE v = 'upd')",
    )
}

fn expect(log: i64, distinct: i64, acct: i64, upd: i64) -> Vec<Vec<Option<String>>> {
    vec![
        [log, distinct, acct, upd]
            .iter()
            .map(|n| Some(n.to_string()))
            .collect(),
    ]
}

async fn wait_for_lock_wait(db: &TestDb, pid: i32) {
    loop {
        let r = rows(
            db,
            &format!("SELECT wait_event_type FROM pg_stat_activity WHERE pid = {pid}"),
        );
        if r.first().and_then(|r| r[0].as_deref()) == Some("Lock") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn config(slot: &str) -> WriterConfig {
    let mut c = WriterConfig::new(slot, "node-1");
    c.retry = RetryPolicy {
        max_attempts: 5,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
    };
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_killed_mid_batch_is_replayed_exactly_once() {
    let db = target("sink_crash", DDL);
    let slot = "crash_slot";
    let (log, acct) = (shard("log", vec![], false), shard("acct", vec![0], true));
    let mut w = NodeWriter::connect(connector(&db.conn_string()), config(slot))
        .await
        .unwrap();

    let b1 = NodeBatch::complete(inserts(&log, &acct, 1..=100), Lsn(100));
    assert_eq!(w.apply(&b1).await.unwrap().counts.inserted, 200);

    // Another session locks `acct`: batch 2 copies into `log`, then waits on `acct`.
    let locker = db.connect().await.unwrap();
    locker
        .batch_execute("BEGIN; LOCK TABLE acct IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let b2 = NodeBatch::complete(inserts(&log, &acct, 101..=200), Lsn(200));
    let mut lane = w.into_lanes().remove(0);
    let pid = lane.backend_pid().unwrap();
    let task = tokio::spawn(async move {
        let report = lane.apply(&b2).await;
        (lane, report)
    });
    wait_for_lock_wait(&db, pid).await;
    // The COPY into `log` went through in the open transaction, the one into `acct` waits.
    assert_eq!(
        rows(
            &db,
            &format!("SELECT query LIKE 'COPY%acct%' FROM pg_stat_activity WHERE pid = {pid}")
        ),
        vec![vec![Some("t".into())]]
    );
    db.execute(&format!("SELECT pg_terminate_backend({pid})"))
        .unwrap();
    locker.batch_execute("COMMIT").await.unwrap();
    let (lane, report) = task.await.unwrap();
    let report = report.unwrap();
    assert_eq!(report.attempts, 2);
    assert!(!report.skipped);
    assert_ne!(lane.backend_pid(), Some(pid));
    assert_eq!(counts(&db), expect(200, 200, 200, 0));
    assert_eq!(progress(&db, slot, "node-1"), Some(Lsn(200).to_string()));
    drop(lane);

    // A restarted writer resumes from the progress row; the engine replays from the slot's
    // confirmed position, which may be older: those batches are skipped.
    let mut w = NodeWriter::connect(connector(&db.conn_string()), config(slot))
        .await
        .unwrap();
    assert_eq!(w.committed_lsn(), Lsn(200));
    assert!(w.apply(&b1).await.unwrap().skipped);
    let b2 = NodeBatch::complete(inserts(&log, &acct, 101..=200), Lsn(200));
    assert!(w.apply(&b2).await.unwrap().skipped);
    let mut b3 = Vec::new();
    for id in 1..=50 {
        b3.push(Change::Update {
            shard: acct.clone(),
            old_key: None,
            new: row(id, "upd"),
            moved_from: None,
        });
    }
    for id in 151..=200 {
        b3.push(Change::Delete {
            shard: acct.clone(),
            key: row(id, "new"),
        });
    }
    let r3 = w.apply(&NodeBatch::complete(b3, Lsn(300))).await.unwrap();
    assert_eq!((r3.counts.updated, r3.counts.deleted), (50, 50));
    assert_eq!(counts(&db), expect(200, 200, 150, 50));
    assert_eq!(progress(&db, slot, "node-1"), Some(Lsn(300).to_string()));
}

/// A statement over staged rows (here an UPDATE waiting for a row lock) is killed; the replay
/// re-stages and re-applies it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_killed_during_staged_update_is_replayed() {
    let db = target("sink_crash_upd", DDL);
    db.execute("INSERT INTO acct SELECT g, 'new' FROM generate_series(1, 100) g")
        .unwrap();
    let acct = shard("acct", vec![0], true);
    let w = NodeWriter::connect(connector(&db.conn_string()), config("s2"))
        .await
        .unwrap();
    let locker = db.connect().await.unwrap();
    locker
        .batch_execute("BEGIN; SELECT * FROM acct WHERE id = 77 FOR UPDATE")
        .await
        .unwrap();
    let changes: Vec<Change> = (1..=100)
        .map(|id| Change::Update {
            shard: acct.clone(),
            old_key: None,
            new: row(id, "upd"),
            moved_from: None,
        })
        .collect();
    let pid = w.lanes()[0].backend_pid().unwrap();
    let mut writer = w;
    let task = tokio::spawn(async move {
        let r = writer.apply(&NodeBatch::complete(changes, Lsn(10))).await;
        (writer, r)
    });
    wait_for_lock_wait(&db, pid).await;
    db.execute(&format!("SELECT pg_terminate_backend({pid})"))
        .unwrap();
    locker.batch_execute("COMMIT").await.unwrap();
    let (_writer, r) = task.await.unwrap();
    let r = r.unwrap();
    assert_eq!((r.attempts, r.counts.updated), (2, 100));
    assert_eq!(counts(&db), expect(0, 0, 100, 100));
    assert_eq!(progress(&db, "s2", "node-1"), Some(Lsn(10).to_string()));
}

/// A node that cannot be reached is a transient error, retried a bounded number of times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_node_is_transient_and_bounded() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut c = config("s3");
    c.retry.max_attempts = 2;
    let err = NodeWriter::connect(
        connector(&format!(
            "host=127.0.0.1 port={port} user=postgres dbname=x"
        )),
        c,
    )
    .await
    .err()
    .unwrap();
    assert!(err.is_transient(), "{err}");
    assert!(
        err.to_string()
            .starts_with("could not connect to node node-1: "),
        "{err}"
    );
}

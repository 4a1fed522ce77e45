//! The node writer against a real PostgreSQL target, driven by real changes from a real slot:
//! every change kind, compaction, unchanged TOAST values, truncate barriers, idempotent
//! replays, lanes, and how errors are reported. Each scenario runs with pgoutput in binary and
//! in text mode, and the target must equal the source row for row.

mod sink_support;

use pgwarp_decoder::Lsn;
use pgwarp_sink::{Change, NodeBatch, NodeWriter, SinkError, WriterConfig};
use sink_support::{Mapper, Source, connector, progress, rows, target, writer};

/// Tables of the scenarios; `big` is stored out of line uncompressed, so values over 2 kB
/// come back as "unchanged TOAST" when an update leaves them alone.
const DDL: &str = "
    CREATE TABLE items (id int PRIMARY KEY, name text, qty int, big text);
    ALTER TABLE items ALTER COLUMN big SET STORAGE EXTERNAL;
    CREATE TABLE notes (k text, v int);
    ALTER TABLE notes REPLICA IDENTITY FULL;
    CREATE TABLE pairs (a int, b int, note text, PRIMARY KEY (a, b));
";

fn big(tag: &str) -> String {
    format!("repeat('{tag}' || md5('{tag}'), 200)")
}

fn same(source: &Source, target: &pgwarp_tests::TestDb, table: &str) {
    let sql = format!("SELECT * FROM {table} ORDER BY 1, 2");
    let want = source.rows(&sql);
    let got = rows(target, &sql);
    assert_eq!(got, want, "table {table} differs from the source");
}

async fn every_change_kind(binary: bool) {
    let source = Source::new("sink_kinds_src", DDL, binary);
    let target = target("sink_kinds_dst", DDL);
    let mut mapper = Mapper::default();
    let mut w = writer(&target, &source.slot).await;
    assert_eq!(w.committed_lsn(), Lsn::INVALID);

    // Initial rows, applied in their own batch so that later changes find them.
    source.exec(&format!(
        "INSERT INTO items SELECT g, 'n' || g, g, {} FROM generate_series(1, 10) g;
         INSERT INTO pairs VALUES (9, 9, 'keep')",
        big("init")
    ));
    let txns = source.changes().await;
    let report = w.apply(&mapper.batch(&txns)).await.unwrap();
    assert_eq!(report.counts.inserted, 11);
    same(&source, &target, "items");

    // One transaction per rule, all applied as one batch.
    let workload = [
        // insert + update -> insert of the new image
        "INSERT INTO items VALUES (11, 'a', 1, NULL); UPDATE items SET name = 'b' WHERE id = 11",
        // insert + delete -> nothing
        "INSERT INTO items VALUES (12, 'a', 1, NULL); DELETE FROM items WHERE id = 12",
        // update + delete -> delete
        "UPDATE items SET qty = 100 WHERE id = 1; DELETE FROM items WHERE id = 1",
        // delete + insert -> replace
        "DELETE FROM items WHERE id = 2; INSERT INTO items VALUES (2, 'again', 2, 'small')",
        // key change with an unchanged TOAST value -> move capturing `big`
        "UPDATE items SET id = 103 WHERE id = 3",
        // key change with a complete image -> delete + insert
        &format!(
            "UPDATE items SET id = 104, big = {} WHERE id = 4",
            big("four")
        ),
        // two partial updates -> one update of both columns, `big` left alone
        "UPDATE items SET name = 'five' WHERE id = 5; UPDATE items SET qty = 55 WHERE id = 5",
        // insert then partial update -> `big` taken from the insert
        &format!(
            "INSERT INTO items VALUES (13, 'x', 13, {}); UPDATE items SET name = 'y' WHERE id = 13",
            big("thirteen")
        ),
        // swap two keys through a temporary one, `big` unchanged -> two moves
        "UPDATE items SET id = 1006 WHERE id = 6; UPDATE items SET id = 6 WHERE id = 7; \
         UPDATE items SET id = 7 WHERE id = 1006",
        // several rows in one statement
        "UPDATE items SET qty = qty + 1 WHERE id BETWEEN 8 AND 10",
        // a table without a unique key (REPLICA IDENTITY FULL): applied in source order
        "INSERT INTO notes VALUES ('a', 1), ('b', 2), (NULL, 3); UPDATE notes SET v = 3 WHERE k = 'a'; \
         UPDATE notes SET v = 4 WHERE k = 'a'; DELETE FROM notes WHERE k = 'b'; \
         UPDATE notes SET k = 'n' WHERE k IS NULL; INSERT INTO notes VALUES ('c', 4)",
        // a composite key, with a key change
        "INSERT INTO pairs VALUES (1, 1, 'x'), (1, 2, 'y'); UPDATE pairs SET b = 3 WHERE a = 1 AND b = 2; \
         DELETE FROM pairs WHERE a = 1 AND b = 1; UPDATE pairs SET note = 'kept' WHERE a = 9",
    ];
    for sql in workload {
        source.exec(sql);
    }
    let txns = source.changes().await;
    assert_eq!(txns.len(), workload.len());
    let batch = mapper.batch(&txns);
    let report = w.apply(&batch).await.unwrap();
    assert!(!report.skipped);
    assert_eq!(report.attempts, 1);
    assert_eq!(report.counts.moved, 3, "{:?}", report.counts);
    for t in ["items", "notes", "pairs"] {
        same(&source, &target, t);
    }
    let last = txns.last().unwrap().commit_lsn;
    assert_eq!(
        progress(&target, &source.slot, "target"),
        Some(last.to_string())
    );
    assert_eq!(w.committed_lsn(), last);

    // The same batch again (an engine replay after a lost COMMIT reply): skipped.
    let again = w.apply(&batch).await.unwrap();
    assert!(again.skipped);
    same(&source, &target, "items");

    // A new writer reads the progress row back.
    drop(w);
    let w = writer(&target, &source.slot).await;
    assert_eq!(w.committed_lsn(), last);
    source.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_kind_matches_the_source_binary() {
    every_change_kind(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_kind_matches_the_source_text() {
    every_change_kind(false).await;
}

async fn truncate_barrier(binary: bool) {
    let ddl = "
        CREATE TABLE items (id int PRIMARY KEY, name text);
        CREATE TABLE parent (id int PRIMARY KEY);
        CREATE TABLE child (id int PRIMARY KEY, pid int REFERENCES parent);
        CREATE TABLE seqd (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, v text);
    ";
    let source = Source::new("sink_trunc_src", ddl, binary);
    let target = target("sink_trunc_dst", ddl);
    let mut mapper = Mapper::default();
    let mut w = writer(&target, &source.slot).await;
    source.exec(
        "INSERT INTO items SELECT g, 'old' FROM generate_series(1, 5) g;
         INSERT INTO parent VALUES (1), (2); INSERT INTO child VALUES (10, 1);
         INSERT INTO seqd (v) VALUES ('a'), ('b')",
    );
    source
        .exec("INSERT INTO items VALUES (6, 'before'); UPDATE items SET name = 'upd' WHERE id = 1");
    source.exec("TRUNCATE items");
    source.exec("INSERT INTO items VALUES (1, 'after'), (7, 'after')");
    source.exec("TRUNCATE parent CASCADE");
    source.exec("INSERT INTO parent VALUES (3); INSERT INTO child VALUES (11, 3)");
    source.exec("TRUNCATE seqd RESTART IDENTITY");
    let txns = source.changes().await;
    // The target's sequence has moved; RESTART IDENTITY must reset it.
    target
        .execute("SELECT setval(pg_get_serial_sequence('seqd', 'id'), 50)")
        .unwrap();
    let report = w.apply(&mapper.batch(&txns)).await.unwrap();
    assert_eq!(report.counts.truncates, 3);
    for t in ["items", "parent", "child", "seqd"] {
        let sql = format!("SELECT * FROM {t} ORDER BY 1");
        assert_eq!(rows(&target, &sql), source.rows(&sql), "{t}");
    }
    assert_eq!(
        rows(&target, "SELECT * FROM items ORDER BY 1"),
        vec![
            vec![Some("1".into()), Some("after".into())],
            vec![Some("7".into()), Some("after".into())]
        ]
    );
    assert_eq!(
        target
            .query_scalar::<i64>("SELECT nextval(pg_get_serial_sequence('seqd', 'id'))")
            .unwrap(),
        1
    );
    source.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_is_a_barrier_with_cascade_and_restart_identity_binary() {
    truncate_barrier(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_is_a_barrier_with_cascade_and_restart_identity_text() {
    truncate_barrier(false).await;
}

/// A source and a target with ten `items` rows (TOASTed `big`), applied through a writer.
struct Seeded {
    source: Source,
    target: pgwarp_tests::TestDb,
    mapper: Mapper,
    w: NodeWriter,
    /// The transaction that inserted the rows.
    base: Vec<sink_support::Txn>,
}

async fn seeded(prefix: &str) -> Seeded {
    let source = Source::new(&format!("{prefix}_src"), DDL, true);
    let target = target(&format!("{prefix}_dst"), DDL);
    let mut mapper = Mapper::default();
    let mut w = writer(&target, &source.slot).await;
    source.exec(&format!(
        "INSERT INTO items SELECT g, 'n' || g, g, {} FROM generate_series(1, 10) g",
        big("i")
    ));
    let base = source.changes().await;
    w.apply(&mapper.batch(&base)).await.unwrap();
    Seeded {
        source,
        target,
        mapper,
        w,
        base,
    }
}

/// Idempotent batches (a large transaction split over batches, or a resumed snapshot) converge
/// when replayed over any prefix of themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_replay_converges() {
    let Seeded {
        source,
        target,
        mut mapper,
        mut w,
        base,
    } = seeded("sink_idem").await;
    let workload = [
        "INSERT INTO items VALUES (11, 'a', 1, NULL); UPDATE items SET name = 'b' WHERE id = 11",
        "INSERT INTO items VALUES (12, 'a', 1, NULL); DELETE FROM items WHERE id = 12",
        "DELETE FROM items WHERE id = 2; INSERT INTO items VALUES (2, 'again', 2, 'small')",
        "UPDATE items SET id = 103 WHERE id = 3",
        "UPDATE items SET name = 'five' WHERE id = 5",
        "DELETE FROM items WHERE id = 1",
        "INSERT INTO items VALUES (1, 'back', 1, NULL)",
    ];
    for sql in workload {
        source.exec(sql);
    }
    let txns = source.changes().await;
    let open = txns.last().unwrap().commit_lsn;
    let first_half = mapper.changes(&txns[..4]);
    let all = mapper.changes(&txns);
    // The first half lands (as the batch before a crash did), then the whole transaction is
    // replayed from its start, twice.
    w.apply(&NodeBatch::partial(first_half, base[0].commit_lsn, open))
        .await
        .unwrap();
    for _ in 0..2 {
        let report = w
            .apply(&NodeBatch::partial(all.clone(), base[0].commit_lsn, open))
            .await
            .unwrap();
        assert!(!report.skipped);
        same(&source, &target, "items");
    }
    // Once the node records the open transaction's commit, the partial batch is skipped.
    w.apply(&NodeBatch::complete(vec![], open)).await.unwrap();
    let report = w
        .apply(&NodeBatch::partial(all, base[0].commit_lsn, open))
        .await
        .unwrap();
    assert!(report.skipped);
    source.finish();
}

/// An idempotent replay over a target that holds some rows in a *later* state than the batch's
/// start (what a resumed snapshot leaves: it copies rows as they are when it runs) removes every
/// place a row left during the batch. In session 1 a row moved to a new key and then deleted
/// survived: the batch's net effect deleted only its original key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_replay_over_a_later_state_removes_the_places_rows_left() {
    let Seeded {
        source,
        target,
        mut mapper,
        mut w,
        base,
    } = seeded("sink_later").await;
    let workload = [
        // moved (complete image), then deleted at its new key
        format!("UPDATE items SET id = 203, big = {} WHERE id = 3", big("m")),
        "DELETE FROM items WHERE id = 203".to_owned(),
        // inserted, then moved
        "INSERT INTO items VALUES (300, 'a', 1, NULL)".to_owned(),
        "UPDATE items SET id = 301 WHERE id = 300".to_owned(),
        // moved twice
        format!("UPDATE items SET id = 500, big = {} WHERE id = 5", big("f")),
        "UPDATE items SET id = 501 WHERE id = 500".to_owned(),
        // moved keeping its unchanged TOAST value, then updated
        "UPDATE items SET id = 404 WHERE id = 4".to_owned(),
        "UPDATE items SET qty = 44 WHERE id = 404".to_owned(),
    ];
    for sql in &workload {
        source.exec(sql);
    }
    let txns = source.changes().await;
    assert_eq!(txns.len(), workload.len());
    // The target reaches the intermediate states first: 203, 300, 500 and 404 exist, their
    // origins are gone.
    let later = [&txns[0], &txns[2], &txns[4], &txns[6]];
    let mut changes = Vec::new();
    for t in later {
        changes.extend(mapper.changes(std::slice::from_ref(t)));
    }
    w.apply(&NodeBatch::complete(changes, txns[6].commit_lsn))
        .await
        .unwrap();
    let ids = |db: &pgwarp_tests::TestDb| -> Vec<Option<String>> {
        rows(db, "SELECT id FROM items WHERE id > 10 ORDER BY id")
            .into_iter()
            .map(|mut r| r.remove(0))
            .collect()
    };
    let some =
        |v: &[&str]| -> Vec<Option<String>> { v.iter().map(|s| Some((*s).to_owned())).collect() };
    assert_eq!(ids(&target), some(&["203", "300", "404", "500"]));
    // Then the whole sequence is replayed idempotently from its start, as one batch.
    let all = mapper.changes(&txns);
    let open = txns.last().unwrap().commit_lsn;
    w.apply(&NodeBatch::partial(all, base[0].commit_lsn, open))
        .await
        .unwrap();
    assert_eq!(ids(&target), some(&["301", "404", "501"]));
    same(&source, &target, "items");
    source.finish();
}

/// Two lanes have their own progress rows; the node's LSN is their minimum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lanes_record_progress_separately() {
    let source = Source::new("sink_lanes_src", DDL, true);
    let target = target("sink_lanes_dst", DDL);
    let mut mapper = Mapper::default();
    let mut config = WriterConfig::new(&source.slot, "node-a");
    config.lanes = 2;
    let mut w = NodeWriter::connect(connector(&target.conn_string()), config)
        .await
        .unwrap();
    source.exec("INSERT INTO items VALUES (1, 'a', 1, NULL)");
    source.exec("INSERT INTO pairs VALUES (1, 1, 'p')");
    let txns = source.changes().await;
    let b0 = mapper.batch(&txns[..1]);
    let b1 = mapper.batch(&txns[1..]);
    let reports = w.apply_per_lane(&[b0, b1]).await.unwrap();
    assert_eq!(reports.len(), 2);
    assert_eq!(
        progress(&target, &source.slot, "node-a"),
        Some(txns[0].commit_lsn.to_string())
    );
    assert_eq!(
        progress(&target, &source.slot, "node-a#1"),
        Some(txns[1].commit_lsn.to_string())
    );
    assert_eq!(w.committed_lsn(), txns[0].commit_lsn);
    same(&source, &target, "items");
    same(&source, &target, "pairs");
    source.finish();
}

/// Writers for several slots starting at once on a fresh node all create or find the progress
/// table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_table_creation_tolerates_concurrency() {
    let target = target("sink_concurrent", "SELECT 1");
    let conn = target.conn_string();
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let conn = conn.clone();
            tokio::spawn(async move {
                NodeWriter::connect(connector(&conn), WriterConfig::new(format!("slot{i}"), "n"))
                    .await
                    .map(|w| w.committed_lsn())
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), Lsn::INVALID);
    }
    assert_eq!(
        target
            .query_scalar::<i64>("SELECT count(*) FROM pgwarp.progress WHERE lsn = '0/0'")
            .unwrap(),
        6
    );
}

/// Definite errors name node, shard, table and LSN, leave the target and its progress row
/// untouched, and are not retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_node_shard_table_and_lsn() {
    let source = Source::new("sink_err_src", DDL, true);
    let target = target(
        "sink_err_dst",
        &DDL.replace("qty int, big text", "qty int CHECK (qty > 0), big text")
            .replace(
                "CREATE TABLE pairs (a int, b int,",
                "CREATE TABLE pairs (a int, b bigint,",
            ),
    );
    let mut mapper = Mapper::default();
    let mut w = writer(&target, &source.slot).await;

    // A constraint the source does not have.
    source.exec("INSERT INTO items VALUES (1, 'a', -1, NULL)");
    let txns = source.changes().await;
    let lsn = txns[0].commit_lsn;
    let err = w.apply(&mapper.batch(&txns)).await.unwrap_err();
    assert!(!err.is_transient());
    assert_eq!(err.sqlstate(), Some("23514"));
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "could not copy rows into shard \"public\".\"items\" of table public.items on node target (batch commit lsn {lsn}): "
        )),
        "{msg}"
    );
    assert!(
        !msg.contains("-1"),
        "row values leaked into the message: {msg}"
    );
    assert_eq!(
        rows(&target, "SELECT count(*) FROM items"),
        vec![vec![Some("0".into())]]
    );
    assert_eq!(
        progress(&target, &source.slot, "target"),
        Some("0/0".into())
    );

    // A type the target does not have (int4 sent, int8 expected).
    source.exec("INSERT INTO pairs VALUES (1, 2, 'x')");
    let txns = source.changes().await;
    let err = w.apply(&mapper.batch(&txns)).await.unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(
        matches!(&err, SinkError::Shard { table, .. } if table == "public.pairs"),
        "{err}"
    );

    // A shard table that does not exist.
    target.execute("DROP TABLE items").unwrap();
    source.exec("UPDATE items SET name = 'b' WHERE id = 1");
    source.exec("INSERT INTO items VALUES (2, 'a', 1, NULL)");
    let txns = source.changes().await;
    let err = w.apply(&mapper.batch(&txns)).await.unwrap_err();
    assert!(!err.is_transient());
    assert_eq!(err.sqlstate(), Some("42P01"));
    assert!(
        err.to_string()
            .contains("shard \"public\".\"items\" of table public.items on node target"),
        "{err}"
    );

    // The writer is still usable after definite errors.
    let ok = w
        .apply(&NodeBatch::complete(Vec::<Change>::new(), lsn))
        .await
        .unwrap();
    assert!(!ok.skipped);
    assert_eq!(
        progress(&target, &source.slot, "target"),
        Some(lsn.to_string())
    );
    source.finish();
}

//! The stream lane's open transaction against a real PostgreSQL target: pieces of one source
//! transaction applied across calls while the first lane commits other batches, savepoints,
//! the progress row written only at commit (exactly the commit LSN), a commit the node already
//! holds rolled back, an abort leaving nothing, and staging tables reused between pieces.

mod sink_support;

use pgwarp_decoder::Lsn;
use pgwarp_sink::{Change, NodeBatch, SinkError};
use sink_support::{Mapper, Source, progress, rows, target, writer};

const DDL: &str = "CREATE TABLE items (id int PRIMARY KEY, name text, qty int)";

fn same(source: &Source, target: &pgwarp_tests::TestDb) {
    let sql = "SELECT * FROM items ORDER BY 1";
    assert_eq!(
        rows(target, sql),
        source.rows(sql),
        "items differ from the source"
    );
}

fn count(db: &pgwarp_tests::TestDb) -> i64 {
    db.query_scalar::<i64>("SELECT count(*) FROM items")
        .unwrap()
}

fn piece(changes: &[Change]) -> NodeBatch {
    NodeBatch::complete(changes.to_vec(), Lsn::INVALID)
}

#[tokio::test]
async fn pieces_commit_once_with_the_progress_row_beside_the_first_lane() {
    let source = Source::new("sink_open_src", DDL, true);
    let target = target("sink_open_dst", DDL);
    let mut mapper = Mapper::default();
    let mut w = writer(&target, &source.slot).await;
    source.exec("INSERT INTO items SELECT g, 'n' || g, g FROM generate_series(1, 100) g");
    let initial = source.changes().await;
    w.apply(&mapper.batch(&initial)).await.unwrap();

    // two small transactions, then the big one: updates, deletes, inserts, in that order
    source.exec("UPDATE items SET qty = -1 WHERE id = 50");
    let small_one = source.changes().await;
    source.exec("UPDATE items SET qty = -2 WHERE id = 60");
    let small_two = source.changes().await;
    source.exec(
        "BEGIN;
         UPDATE items SET name = 'big' WHERE id <= 5;
         DELETE FROM items WHERE id BETWEEN 20 AND 25;
         INSERT INTO items SELECT g, 'new', g FROM generate_series(1001, 1200) g;
         COMMIT",
    );
    let big = source.changes().await;
    // rows the big transaction's rolled-back subtransaction wrote: gone again on the source
    source.exec("INSERT INTO items SELECT g, 'rolled back', g FROM generate_series(5001, 5010) g");
    let rolled_back = source.changes().await;
    source.exec("DELETE FROM items WHERE id > 5000");
    let _ = source.changes().await;

    let changes = mapper.changes(&big);
    let updates = &changes[..5];
    let deletes = &changes[5..11];
    let inserts = &changes[11..];
    assert_eq!((updates.len(), deletes.len(), inserts.len()), (5, 6, 200));

    // the first small one through the stream lane: its staging table outlives the commit
    let lane = w.stream_lane().await.unwrap();
    assert_eq!(lane.progress_key(), "target");
    lane.begin_open().await.unwrap();
    lane.apply_open(&piece(&mapper.changes(&small_one)))
        .await
        .unwrap();
    lane.commit_open(small_one[0].commit_lsn).await.unwrap();

    lane.begin_open().await.unwrap();
    // updates are staged: the staging table holds them until the transaction ends
    lane.apply_open(&piece(updates)).await.unwrap();
    lane.savepoint(7).await.unwrap();
    lane.apply_open(&piece(&mapper.changes(&rolled_back)))
        .await
        .unwrap();
    lane.rollback_to_savepoint(7).await.unwrap();
    // another batch on the first lane commits meanwhile
    assert_eq!(count(&target), 100);
    let report = w.apply(&mapper.batch(&small_two)).await.unwrap();
    assert!(!report.skipped);
    assert_eq!(
        progress(&target, &source.slot, "target"),
        Some(small_two[0].commit_lsn.to_string())
    );
    // deletes are staged too: the updates staged before the savepoint must not be taken for
    // them (the staging table is emptied between pieces)
    let lane = w.stream_lane().await.unwrap();
    lane.apply_open(&piece(deletes)).await.unwrap();
    lane.apply_open(&piece(inserts)).await.unwrap();
    assert_eq!(count(&target), 100, "uncommitted rows are visible");
    // a batch cannot go through a lane with an open transaction
    let refused = lane.apply(&piece(inserts)).await.unwrap_err();
    assert!(matches!(refused, SinkError::Config(_)), "{refused}");

    let commit_lsn = big[0].commit_lsn;
    let report = lane.commit_open(commit_lsn).await.unwrap();
    assert!(!report.skipped);
    assert_eq!(report.committed_lsn, commit_lsn);
    assert_eq!(
        (
            report.counts.inserted,
            report.counts.updated,
            report.counts.deleted
        ),
        (200, 5, 6),
        "net rows of the committed pieces, without the rolled-back one"
    );
    assert!(!lane.is_open());
    assert_eq!(
        progress(&target, &source.slot, "target"),
        Some(commit_lsn.to_string())
    );
    same(&source, &target);
    source.finish();
}

#[tokio::test]
async fn a_transaction_the_node_holds_is_rolled_back_and_an_abort_leaves_nothing() {
    let source = Source::new("sink_open_skip_src", DDL, false);
    let target = target("sink_open_skip_dst", DDL);
    let mut mapper = Mapper::default();
    let mut w = writer(&target, &source.slot).await;
    source.exec("INSERT INTO items SELECT g, 'n' || g, g FROM generate_series(1, 10) g");
    let first = source.changes().await;
    w.apply(&mapper.batch(&first)).await.unwrap();
    source.exec("INSERT INTO items SELECT g, 'again', g FROM generate_series(11, 20) g");
    let second = source.changes().await;
    let changes = mapper.changes(&second);

    // aborted: nothing reaches the node, and the lane can open the next one
    let lane = w.stream_lane().await.unwrap();
    lane.begin_open().await.unwrap();
    lane.apply_open(&piece(&changes)).await.unwrap();
    lane.rollback_open().await.unwrap();
    assert!(!lane.is_open());
    assert_eq!(count(&target), 10);

    // the node already recorded a later position: the commit rolls back and says so
    let recorded = first[0].commit_lsn;
    lane.begin_open().await.unwrap();
    lane.apply_open(&piece(&changes)).await.unwrap();
    let stale = Lsn(recorded.0 - 1);
    let report = lane.commit_open(stale).await.unwrap();
    assert!(report.skipped);
    assert_eq!(report.committed_lsn, recorded);
    assert_eq!(count(&target), 10);
    assert_eq!(
        progress(&target, &source.slot, "target"),
        Some(recorded.to_string())
    );

    // and the real one commits
    lane.begin_open().await.unwrap();
    lane.apply_open(&piece(&changes)).await.unwrap();
    let report = lane.commit_open(second[0].commit_lsn).await.unwrap();
    assert!(!report.skipped);
    same(&source, &target);
    // steps on a lane without an open transaction are refused
    let lane = w.stream_lane().await.unwrap();
    assert!(matches!(
        lane.savepoint(1).await.unwrap_err(),
        SinkError::Config(_)
    ));
    source.finish();
}

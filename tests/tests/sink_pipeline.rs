//! The node writer sends a batch's statements and COPYs pipelined, all at once, on one
//! connection: these scenarios check that a batch touching many tables (more requests than
//! `try_join_all` polls as a plain vector) still runs in plan order, and that a failure in the
//! middle of the pipeline commits nothing, names the right shard, and leaves the lane able to
//! apply the same batch once the target is repaired.

mod sink_support;

use pgwarp_sink::{NodeWriter, SinkError};
use sink_support::{Mapper, Source, Txn, progress, rows, target, writer};

/// Tables in the batch: each gets a staging COPY, a delete, an update and a shard COPY, so a
/// batch is 4 × TABLES requests.
const TABLES: usize = 40;

fn ddl() -> String {
    (0..TABLES)
        .map(|i| format!("CREATE TABLE t{i} (id int PRIMARY KEY, v text, n int);"))
        .collect()
}

/// Every table's rows on a database, in order.
fn all_rows(db: &pgwarp_tests::TestDb) -> Vec<Vec<Vec<Option<String>>>> {
    (0..TABLES)
        .map(|i| rows(db, &format!("SELECT * FROM t{i} ORDER BY id")))
        .collect()
}

fn source_rows(source: &Source) -> Vec<Vec<Vec<Option<String>>>> {
    (0..TABLES)
        .map(|i| source.rows(&format!("SELECT * FROM t{i} ORDER BY id")))
        .collect()
}

struct Setup {
    source: Source,
    target: pgwarp_tests::TestDb,
    mapper: Mapper,
    w: NodeWriter,
    /// One source transaction updating, deleting and inserting in every table.
    txns: Vec<Txn>,
}

/// Seeds rows 1..3 in every table on both sides, then runs the transaction on the source.
async fn setup(prefix: &str) -> Setup {
    let ddl = ddl();
    let source = Source::new(&format!("{prefix}_src"), &ddl, true);
    let target = target(&format!("{prefix}_dst"), &ddl);
    let mut mapper = Mapper::default();
    let mut w = writer(&target, &source.slot).await;
    let seed: String = (0..TABLES)
        .map(|i| {
            format!("INSERT INTO t{i} SELECT g, 'v' || g, g * {i} FROM generate_series(1, 3) g;")
        })
        .collect();
    source.exec(&seed);
    let base = source.changes().await;
    w.apply(&mapper.batch(&base)).await.unwrap();
    assert_eq!(all_rows(&target), source_rows(&source));
    let change: String = (0..TABLES)
        .map(|i| {
            format!(
                "UPDATE t{i} SET v = 'u{i}' WHERE id = 1; DELETE FROM t{i} WHERE id = 2; \
                 INSERT INTO t{i} VALUES (4, 'new', {i});"
            )
        })
        .collect();
    source.exec(&format!("BEGIN; {change} COMMIT;"));
    let txns = source.changes().await;
    assert_eq!(txns.len(), 1);
    Setup {
        source,
        target,
        mapper,
        w,
        txns,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_many_tables_applies_in_plan_order() {
    let Setup {
        source,
        target,
        mut mapper,
        mut w,
        txns,
    } = setup("sink_pipe_order").await;
    let lsn = txns[0].commit_lsn;
    let report = w.apply(&mapper.batch(&txns)).await.unwrap();
    assert!(!report.skipped);
    assert_eq!(report.counts.inserted, TABLES as u64);
    assert_eq!(report.counts.updated, TABLES as u64);
    assert_eq!(report.counts.deleted, TABLES as u64);
    assert_eq!(all_rows(&target), source_rows(&source));
    assert_eq!(
        progress(&target, &source.slot, "target"),
        Some(lsn.to_string())
    );
    source.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_inside_the_pipeline_commits_nothing_and_the_lane_recovers() {
    let Setup {
        source,
        target,
        mut mapper,
        mut w,
        txns,
    } = setup("sink_pipe_fail").await;
    let lsn = txns[0].commit_lsn;
    let before = progress(&target, &source.slot, "target");
    let batch = mapper.batch(&txns);

    // A row the source does not have, in the middle of the plan: its shard's COPY fails
    // while the statements and COPYs of later tables are already on their way.
    target
        .execute("INSERT INTO t20 VALUES (4, 'stray', 0)")
        .unwrap();
    let state = all_rows(&target);
    let err = w.apply(&batch).await.unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert_eq!(err.sqlstate(), Some("23505"), "{err}");
    assert!(
        matches!(&err, SinkError::Shard { table, what, .. }
            if table == "public.t20" && *what == "copy rows into"),
        "{err}"
    );
    assert_eq!(
        all_rows(&target),
        state,
        "a failed batch left changes behind"
    );
    assert_eq!(progress(&target, &source.slot, "target"), before);

    // A row an update expects is missing: the count check fails after every request has
    // answered, and still nothing is committed.
    target
        .execute("DELETE FROM t20 WHERE id = 4; DELETE FROM t33 WHERE id = 1")
        .unwrap();
    let state = all_rows(&target);
    let err = w.apply(&batch).await.unwrap_err();
    assert!(
        matches!(&err, SinkError::Diverged { table, what, expected: 1, affected: 0, .. }
            if table == "public.t33" && *what == "update"),
        "{err}"
    );
    assert_eq!(
        all_rows(&target),
        state,
        "a diverged batch left changes behind"
    );
    assert_eq!(progress(&target, &source.slot, "target"), before);

    // Repaired: the same lane applies the same batch.
    target
        .execute("INSERT INTO t33 VALUES (1, 'v1', 33)")
        .unwrap();
    let report = w.apply(&batch).await.unwrap();
    assert!(!report.skipped);
    assert_eq!(report.attempts, 1);
    assert_eq!(all_rows(&target), source_rows(&source));
    assert_eq!(
        progress(&target, &source.slot, "target"),
        Some(lsn.to_string())
    );
    source.finish();
}

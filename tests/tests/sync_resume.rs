//! Resuming an interrupted snapshot from a fresh snapshot (the argument is in
//! `pgwarp::pipeline::snapshot`): the hard case is a row whose old version was in a chunk that
//! never finished and whose new version landed in a chunk that did. Its update carries an
//! unchanged TOAST value, so replaying the update cannot recreate it: only the re-read of the
//! finished chunk for rows newer than its snapshot finds it.
//!
//! Deterministic set-up on a plain PostgreSQL target: an `ENABLE ALWAYS` trigger on the target
//! table blocks COPY of the first chunk's rows behind an advisory lock the test holds; the other
//! reader finishes every other chunk; the sync is then stopped (cancellation token), leaving the
//! first chunk partly written. On the source, the last row of the first chunk (with a TOASTed
//! document) is updated to a version too large for its page, so the new version goes to the
//! end of the table, inside the last chunk, which is done.

mod sync_support;

use pgwarp::pipeline::{CancellationToken, SyncOutcome};
use pgwarp_tests::unique_name;
use sync_support::{
    assert_rows_equal, plain_target, run_sync, settings, source_db, source_rows, src_exec,
    sync_until_caught_up,
};

const CHUNK_BYTES: u64 = 256 * 1024;
const DDL: &str = "CREATE TABLE docs (id int PRIMARY KEY, val int NOT NULL, doc text, note text)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_moved_from_unfinished_chunk_into_finished_chunk_survives_resume() {
    let schema = unique_name("resume");
    let source = source_db("sync_resume_src", &schema, DDL);
    let target = plain_target("sync_resume_dst", &schema, DDL);
    src_exec(
        &source,
        &schema,
        "INSERT INTO docs SELECT g, g, NULL, NULL FROM generate_series(1, 40000) g;",
    );
    source.execute(&format!("VACUUM {schema}.docs")).unwrap();
    let page_of = |id: i32| -> i64 {
        source
            .query_scalar(&format!(
                "SELECT (ctid::text::point)[0]::int8 FROM {schema}.docs WHERE id = {id}"
            ))
            .unwrap()
    };
    // the chunk plan the engine will make (same pure function, same size, parallel 2)
    let pages: i64 = source
        .query_scalar(&format!(
            "SELECT pg_relation_size('{schema}.docs') / current_setting('block_size')::int8"
        ))
        .unwrap();
    let plan = pgwarp::pipeline::chunks::plan_chunks(pages as u64, 2, CHUNK_BYTES / 8192);
    assert!(plan.len() >= 3, "{plan:?}");
    let last_page = plan[0].end.unwrap() as i64 - 1;
    // R: the last row of chunk 0. Make room on its page (delete two rows, vacuum), then give
    // it a TOASTed document with a HOT update, so it stays on that page
    let on_page = |p: i64| format!("ctid >= '({p},0)'::tid AND ctid < '({},0)'::tid", p + 1);
    let r: i32 = source
        .query_scalar(&format!(
            "SELECT max(id) FROM {schema}.docs WHERE {}",
            on_page(last_page)
        ))
        .unwrap();
    src_exec(
        &source,
        &schema,
        &format!(
            "DELETE FROM docs WHERE id IN (SELECT id FROM docs WHERE {} ORDER BY id LIMIT 2);",
            on_page(last_page)
        ),
    );
    source.execute(&format!("VACUUM {schema}.docs")).unwrap();
    src_exec(
        &source,
        &schema,
        &format!(
            "UPDATE docs SET doc = (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 200) i)
              WHERE id = {r};"
        ),
    );
    assert_eq!(page_of(r), last_page, "R must still be in chunk 0");
    let last_of_chunk0 = r;

    // block COPY of chunk 0's rows on the target
    target
        .execute(&format!(
            "SET search_path TO {schema};
             CREATE FUNCTION block_chunk0() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF NEW.id <= {last_of_chunk0} THEN PERFORM pg_advisory_xact_lock_shared(4242); END IF;
               RETURN NEW;
             END $$;
             CREATE TRIGGER block BEFORE INSERT ON docs FOR EACH ROW EXECUTE FUNCTION block_chunk0();
             ALTER TABLE docs ENABLE ALWAYS TRIGGER block;"
        ))
        .unwrap();
    let locker = target.connect().await.unwrap();
    locker
        .batch_execute("SELECT pg_advisory_lock(4242)")
        .await
        .unwrap();

    let slot = unique_name("resume_slot");
    let mut raw_settings = settings(
        &source.conn_string(),
        &target.conn_string(),
        &schema,
        &["docs"],
        &slot,
    );
    raw_settings.parallel = 2;
    raw_settings.limits.chunk_bytes = CHUNK_BYTES;
    raw_settings.limits.snapshot_batch_bytes = 16 * 1024;
    let cancel = CancellationToken::new();
    let run = {
        let (s, c) = (raw_settings.clone(), cancel.clone());
        tokio::spawn(async move { run_sync(&s, false, &c).await })
    };
    // wait until every chunk but chunk 0 is done
    let chunk_counts = || -> (i64, i64) {
        target
            .query_rows(&format!(
                "SELECT count(done_xmin), count(*) FROM pgwarp.snapshot_chunks WHERE slot = '{slot}'"
            ))
            .ok()
            .and_then(|r| r.into_iter().next())
            .map(|r| {
                let n = |i: usize| r[i].as_deref().and_then(|v| v.parse().ok()).unwrap_or(0);
                (n(0), n(1))
            })
            .unwrap_or((0, 0))
    };
    loop {
        let (done, total) = chunk_counts();
        if total > 1 && done == total - 1 {
            break;
        }
        assert!(!run.is_finished(), "sync ended early: {:?}", run.await);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    cancel.cancel();
    locker
        .batch_execute("SELECT pg_advisory_unlock(4242)")
        .await
        .unwrap();
    assert!(matches!(run.await.unwrap(), Ok(SyncOutcome::Stopped)));
    let (done, total) = chunk_counts();
    assert_eq!(done, total - 1, "chunk 0 must stay unfinished");
    let on_target: i64 = target
        .query_scalar(&format!(
            "SELECT count(*) FROM {schema}.docs WHERE id = {last_of_chunk0}"
        ))
        .unwrap();
    assert_eq!(on_target, 0, "the row must not have reached the target yet");
    target
        .execute(&format!("DROP TRIGGER block ON {schema}.docs"))
        .unwrap();

    // the row moves: its new version is too big for its page, so it goes to the end of the
    // table; the TOASTed document is unchanged (sent as an unchanged TOAST marker)
    src_exec(
        &source,
        &schema,
        &format!("UPDATE docs SET val = -1, note = repeat('n', 1000) WHERE id = {last_of_chunk0};"),
    );
    let last_chunk_start: i64 = target
        .query_scalar(&format!(
            "SELECT max(start_page) FROM pgwarp.snapshot_chunks WHERE slot = '{slot}'"
        ))
        .unwrap();
    assert!(
        page_of(last_of_chunk0) >= last_chunk_start,
        "the new version should be in the last (finished) chunk"
    );

    sync_until_caught_up(&raw_settings).await;
    let want = source_rows(&source, &schema, "docs");
    let mut got = target
        .query_rows(&format!("SELECT * FROM {schema}.docs"))
        .unwrap();
    got.sort();
    assert_rows_equal("docs", &want, &got);
    let idempotent: String = target
        .query_scalar(&format!(
            "SELECT idempotent_until::text FROM pgwarp.sync_state WHERE slot = '{slot}'"
        ))
        .unwrap();
    assert_ne!(idempotent, "0/0", "the resume must replay idempotently");
    source
        .execute(&format!("SELECT pg_drop_replication_slot('{slot}')"))
        .unwrap();
}

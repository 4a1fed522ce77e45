//! Helpers shared by the `sync_*`, `check_*`, `status_*` and `demo_*` tests: a source server
//! that streams large transactions early, a source database mirroring a cluster fixture's
//! schema, running `sync` in-process, and row-for-row and placement verification.
#![allow(dead_code)]

pub mod load;
pub mod process;

use std::sync::OnceLock;

use std::sync::Arc;

use pgwarp::config::{RawConfig, RawSize, Settings};
use pgwarp::pipeline::CancellationToken;
use pgwarp::pipeline::stats::Stats;
use pgwarp::pipeline::{self, SyncOptions, SyncOutcome};
use pgwarp_tests::cluster::{CitusCluster, CitusFixture, ClusterSpec};
pub use pgwarp_tests::rows::assert_rows_equal;
use pgwarp_tests::sync_config::SyncConfig;
use pgwarp_tests::sync_state::sync_phase;
use pgwarp_tests::{PgServer, ServerOptions, TestDb, quote_ident, unique_name};

/// The source server of this test binary: `logical_decoding_work_mem` at its 64 kB minimum,
/// so any transaction of more than a few hundred rows is streamed while in progress (protocol
/// 2+), which exercises spilling, stream commit and stream abort.
pub fn source_server() -> &'static PgServer {
    static SERVER: OnceLock<PgServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        PgServer::start_with(
            ServerOptions::default()
                .setting("logical_decoding_work_mem", "64kB")
                .setting("max_wal_size", "1GB"),
        )
        .unwrap_or_else(|e| panic!("could not start the source server: {e}"))
    })
}

/// The shared Citus-shaped cluster (two workers).
pub fn cluster() -> &'static CitusCluster {
    CitusCluster::shared_or_start(2).unwrap_or_else(|e| panic!("could not start the cluster: {e}"))
}

/// A source database with `schema` created and `ddl` run in it (unqualified names).
pub fn source_db(prefix: &str, schema: &str, ddl: &str) -> TestDb {
    let db = source_server()
        .create_database(prefix)
        .unwrap_or_else(|e| panic!("could not create the source database: {e}"));
    db.create_schema(schema, ddl)
        .unwrap_or_else(|e| panic!("could not create the source tables: {e}"));
    db
}

/// A plain PostgreSQL target database on the shared server, with `schema` created and `ddl`
/// run in it (unqualified names).
pub fn plain_target(prefix: &str, schema: &str, ddl: &str) -> TestDb {
    let db = PgServer::shared()
        .create_database(prefix)
        .unwrap_or_else(|e| panic!("could not create the target database: {e}"));
    db.create_schema(schema, ddl)
        .unwrap_or_else(|e| panic!("could not create the target tables: {e}"));
    db
}

/// Runs `sql` in the source database with the schema on the search path.
pub fn src_exec(db: &TestDb, schema: &str, sql: &str) {
    db.execute_in(schema, sql)
        .unwrap_or_else(|e| panic!("source SQL failed: {e}\n{sql}"));
}

/// A cluster fixture and a source database with the same tables (in the same schema).
pub struct Env {
    pub fixture: CitusFixture,
    pub source: TestDb,
    pub schema: String,
    pub slot: String,
}

impl Env {
    /// Creates the fixture and the source with the same DDL.
    pub fn new(prefix: &str, spec: ClusterSpec, source_ddl: &str) -> Env {
        let fixture = cluster()
            .create(&spec)
            .unwrap_or_else(|e| panic!("could not create the fixture: {e}"));
        let schema = fixture.schema().to_owned();
        let source = source_db(prefix, &schema, source_ddl);
        Env {
            fixture,
            source,
            schema,
            slot: unique_name("slot"),
        }
    }

    /// Settings for syncing `tables` (unqualified names in the fixture's schema).
    pub fn settings(&self, tables: &[&str]) -> Settings {
        settings(
            &self.source.conn_string(),
            self.fixture.coordinator_conn_string(),
            &self.schema,
            tables,
            &self.slot,
        )
    }

    /// `<command> --source <source> --target <coordinator> --slot <slot>`: the start of a
    /// `pgwarp` command line about this sync.
    pub fn command_line(&self, command: &str) -> Vec<String> {
        vec![
            command.to_owned(),
            "--source".to_owned(),
            self.source.conn_string(),
            "--target".to_owned(),
            self.fixture.coordinator_conn_string().to_owned(),
            "--slot".to_owned(),
            self.slot.clone(),
        ]
    }

    /// Runs SQL on the source.
    pub fn src(&self, sql: &str) {
        src_exec(&self.source, &self.schema, sql);
    }

    /// Asserts that `table` is identical on both sides and every row is in its shard.
    pub fn assert_synced(&self, table: &str, dist_column: Option<&str>) {
        let source_rows = source_rows(&self.source, &self.schema, table);
        let target_rows = self
            .fixture
            .rows(table)
            .unwrap_or_else(|e| panic!("could not read {table} on the cluster: {e}"));
        assert_rows_equal(table, &source_rows, &target_rows);
        if let Some(col) = dist_column {
            assert_placement(&self.fixture, table, col);
        }
    }

    /// Writes a configuration file for syncing `tables` (small budgets, as [`settings`]).
    pub fn config_file(&self, dir: &std::path::Path, tables: &[&str]) -> std::path::PathBuf {
        let path = dir.join(format!("{}.toml", self.slot));
        let tables: Vec<String> = tables
            .iter()
            .map(|t| format!("{}.{}", self.schema, t))
            .collect();
        let config = SyncConfig {
            source: &self.source.conn_string(),
            target: self.fixture.coordinator_conn_string(),
            tables: &tables,
            slot: &self.slot,
            publication: &self.slot,
            spill_dir: &dir.join("spill"),
            extra: "",
        };
        std::fs::write(&path, config.to_toml()).expect("write the config file");
        path
    }

    /// The phase in `pgwarp.sync_state`, if the sync got that far.
    pub fn phase(&self) -> Option<String> {
        sync_phase(&self.fixture, &self.slot)
    }

    /// (done, total) snapshot chunks.
    pub fn chunks(&self) -> (i64, i64) {
        self.fixture
            .coordinator()
            .query_rows(&format!(
                "SELECT count(done_xmin), count(*) FROM pgwarp.snapshot_chunks WHERE slot = '{}'",
                self.slot
            ))
            .ok()
            .and_then(|rows| rows.into_iter().next())
            .map(|row| {
                let n = |i: usize| {
                    row.get(i)
                        .cloned()
                        .flatten()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0)
                };
                (n(0), n(1))
            })
            .unwrap_or((0, 0))
    }

    /// Whether some node has recorded streamed progress for the slot.
    pub fn stream_progress_recorded(&self) -> bool {
        self.fixture.nodes().iter().any(|node| {
            node.query_scalar::<i64>(&format!(
                "SELECT count(*) FROM pgwarp.progress WHERE slot = '{}' AND lsn > '0/0'",
                self.slot
            ))
            .is_ok_and(|n| n > 0)
        })
    }

    /// Drops the slot and publication (so the source database can be dropped).
    pub fn cleanup(&self) {
        let _ = self.source.execute(&format!(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
             WHERE slot_name = '{}'",
            self.slot
        ));
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Settings for a sync of `tables` in `schema`.
pub fn settings(source: &str, target: &str, schema: &str, tables: &[&str], slot: &str) -> Settings {
    RawConfig {
        source: Some(source.to_owned()),
        target: Some(target.to_owned()),
        tables: Some(
            tables
                .iter()
                .map(|t| format!("{}.{}", quote_ident(schema), quote_ident(t)))
                .collect(),
        ),
        slot: Some(slot.to_owned()),
        publication: Some(slot.to_owned()),
        parallel: Some(3),
        spill_dir: Some(std::env::temp_dir().join(format!("pgwarp-test-spill-{slot}"))),
        progress: Some("never".to_owned()),
        // small budgets, so tests cross them: spilling, partial batches, full queues
        limits: pgwarp::config::RawLimits {
            transaction_memory: Some(RawSize::Text("256kB".into())),
            queue_bytes: Some(RawSize::Text("2MB".into())),
            batch_bytes: Some(RawSize::Text("1MB".into())),
            snapshot_batch_bytes: Some(RawSize::Text("256kB".into())),
            chunk_bytes: Some(RawSize::Text("512kB".into())),
        },
        ..Default::default()
    }
    .validate()
    .unwrap_or_else(|e| panic!("invalid settings: {e}"))
}

/// Check, prepare and run a sync in-process.
pub async fn run_sync(
    settings: &Settings,
    until_caught_up: bool,
    cancel: &CancellationToken,
) -> Result<SyncOutcome, String> {
    run_sync_stats(settings, until_caught_up, cancel)
        .await
        .map(|(outcome, _)| outcome)
}

/// Like [`run_sync`], also returning the run's counters.
pub async fn run_sync_stats(
    settings: &Settings,
    until_caught_up: bool,
    cancel: &CancellationToken,
) -> Result<(SyncOutcome, Arc<Stats>), String> {
    let report = pgwarp::check::run(settings)
        .await
        .map_err(|e| format!("check failed: {e}"))?;
    if !report.is_ok() {
        return Err(format!("check found problems: {:#?}", report.problems));
    }
    let prepared = pipeline::prepare(settings)
        .await
        .map_err(|e| format!("prepare failed: {e}"))?;
    let outcome = pipeline::run(&prepared, SyncOptions { until_caught_up }, cancel)
        .await
        .map_err(|e| format!("sync failed: {e}"))?;
    Ok((outcome, prepared.stats.clone()))
}

/// Runs a sync until caught up, panicking on failure.
pub async fn sync_until_caught_up(settings: &Settings) -> pgwarp_decoder::Lsn {
    match run_sync(settings, true, &CancellationToken::new()).await {
        Ok(SyncOutcome::CaughtUp(lsn)) => lsn,
        Ok(other) => panic!("sync ended with {other:?}"),
        Err(e) => panic!("{e}"),
    }
}

/// Every row of a source table as text, sorted.
pub fn source_rows(db: &TestDb, schema: &str, table: &str) -> Vec<Vec<Option<String>>> {
    let mut rows = db
        .query_rows(&format!(
            "SELECT * FROM {}.{}",
            quote_ident(schema),
            quote_ident(table)
        ))
        .unwrap_or_else(|e| panic!("could not read {table} on the source: {e}"));
    rows.sort();
    rows
}

/// Every row of every shard of `table` hashes into its shard's range (checked on each node
/// with `worker_hash`, PostgreSQL's own hash as Citus uses it).
pub fn assert_placement(fixture: &CitusFixture, table: &str, column: &str) {
    let shards = fixture
        .shards(table)
        .unwrap_or_else(|e| panic!("could not read the shards of {table}: {e}"));
    for shard in shards {
        let Some((lo, hi)) = shard.range else {
            continue;
        };
        for group in &shard.groups {
            let node = fixture.node_of_group(*group).unwrap();
            let misplaced: i64 = node
                .query_scalar(&format!(
                    "SELECT count(*) FROM {} WHERE NOT (pg_catalog.worker_hash({}) BETWEEN {lo} AND {hi})",
                    shard.shard_table,
                    quote_ident(column)
                ))
                .unwrap_or_else(|e| panic!("could not check shard {}: {e}", shard.shard_table));
            assert_eq!(
                misplaced, 0,
                "{misplaced} rows of {} are outside its hash range",
                shard.shard_table
            );
        }
    }
}

//! A scenario: a source server and a Citus-shaped cluster of its own (so a test may stop,
//! restart or cut any of them without touching other tests), the same tables on both sides,
//! and `pgwarp` run as a process against them.
//!
//! Convergence is observed from outside, as an operator would: the slot's
//! `confirmed_flush_lsn` reaching the source's WAL insert position means every node has
//! committed everything before it (pgwarp confirms the minimum over nodes). Then the tables
//! are compared row for row.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pgwarp_decoder::Lsn;
use pgwarp_tests::cluster::{CitusCluster, CitusFixture, ClusterSpec};
use pgwarp_tests::rows::assert_rows_equal;
use pgwarp_tests::sync_config::SyncConfig;
use pgwarp_tests::sync_state::sync_phase;
use pgwarp_tests::{PgServer, ServerOptions, TestDb, quote_ident, unique_name};

use super::process::{Pgwarp, Running};

/// The source server options of every scenario: large transactions stream early
/// (`logical_decoding_work_mem` at its minimum) and commits are durable, so an immediate
/// shutdown of the source loses nothing the test believes committed.
pub fn source_options() -> ServerOptions {
    ServerOptions::default()
        .setting("logical_decoding_work_mem", "64kB")
        .setting("synchronous_commit", "on")
        .setting("max_wal_size", "1GB")
}

/// Servers, fixture and source database of one test.
pub struct Scenario {
    // drop order: the fixture and the database before their servers
    /// The cluster's databases and shard tables.
    pub fixture: CitusFixture,
    /// The source database.
    pub source: TestDb,
    /// The fixture's schema (also created on the source).
    pub schema: String,
    /// Slot and publication name.
    pub slot: String,
    /// The source connection string config files get (default: the harness's superuser).
    pub source_conninfo: String,
    /// The target (coordinator) connection string config files get.
    pub target_conninfo: String,
    /// Config file, spill directory and process output.
    pub dir: tempfile::TempDir,
    /// The source server.
    pub source_server: PgServer,
    /// Coordinator and workers.
    pub cluster: CitusCluster,
}

impl Scenario {
    /// Starts the servers and creates `spec` on the cluster and `source_ddl` (unqualified
    /// names) in the same schema on the source.
    pub fn start(spec: &ClusterSpec, source_ddl: &str) -> Scenario {
        Scenario::start_with(spec, source_ddl, source_options())
    }

    /// [`Scenario::start`] with other source server options.
    pub fn start_with(spec: &ClusterSpec, source_ddl: &str, options: ServerOptions) -> Scenario {
        let (cluster, source_server) = std::thread::scope(|s| {
            let cluster = s.spawn(|| CitusCluster::start_fake(2));
            let source = s.spawn(|| PgServer::start_with(options));
            (
                cluster.join().expect("cluster thread"),
                source.join().expect("source thread"),
            )
        });
        let cluster = cluster.unwrap_or_else(|e| panic!("could not start the cluster: {e}"));
        let source_server =
            source_server.unwrap_or_else(|e| panic!("could not start the source: {e}"));
        let fixture = cluster
            .create(spec)
            .unwrap_or_else(|e| panic!("could not create the fixture: {e}"));
        let schema = fixture.schema().to_owned();
        let source = source_server
            .create_database("fault_source")
            .unwrap_or_else(|e| panic!("could not create the source database: {e}"));
        source
            .create_schema(&schema, source_ddl)
            .unwrap_or_else(|e| panic!("could not create the source tables: {e}"));
        Scenario {
            source_conninfo: source.conn_string(),
            target_conninfo: fixture.coordinator_conn_string().to_owned(),
            fixture,
            source,
            schema,
            slot: unique_name("fault"),
            dir: tempfile::tempdir().expect("a temporary directory"),
            source_server,
            cluster,
        }
    }

    /// Every server: source, coordinator, workers.
    pub fn servers(&self) -> Vec<&PgServer> {
        let mut all = vec![&self.source_server];
        all.extend(self.cluster.coordinator_server());
        all.extend(self.cluster.worker_servers());
        all
    }

    /// The worker servers, in start order.
    pub fn workers(&self) -> &[PgServer] {
        self.cluster.worker_servers()
    }

    /// The server of the fixture's node in group `group` (0 = coordinator).
    pub fn server_of_group(&self, group: i32) -> &PgServer {
        let port = self
            .fixture
            .node_of_group(group)
            .unwrap_or_else(|e| panic!("no group {group}: {e}"))
            .port;
        self.servers()
            .into_iter()
            .find(|s| s.port() == port)
            .unwrap_or_else(|| panic!("no server on port {port}"))
    }

    /// Runs SQL on the source with the schema on the search path.
    pub fn src(&self, sql: &str) {
        self.source
            .execute_in(&self.schema, sql)
            .unwrap_or_else(|e| panic!("source SQL failed: {e}\n{sql}"));
    }

    /// A scalar from the source.
    pub fn src_scalar<T: tokio_postgres::types::FromSqlOwned + Send + 'static>(
        &self,
        sql: &str,
    ) -> T {
        self.source
            .query_scalar(sql)
            .unwrap_or_else(|e| panic!("source query failed: {e}\n{sql}"))
    }

    /// The spill directory the config file names.
    pub fn spill_dir(&self) -> PathBuf {
        self.dir.path().join("spill")
    }

    /// Writes the config file for syncing `tables` (unqualified, in the scenario's schema),
    /// small budgets so every test crosses them, plus `extra` lines (top-level keys).
    pub fn config_file(&self, tables: &[&str], extra: &str) -> PathBuf {
        let list: Vec<String> = tables
            .iter()
            .map(|t| format!("{}.{}", quote_ident(&self.schema), quote_ident(t)))
            .collect();
        self.config_file_for(&list, &self.slot, extra)
    }

    /// [`Scenario::config_file`] with `tables` as SQL names and a publication name.
    pub fn config_file_for(&self, tables: &[String], publication: &str, extra: &str) -> PathBuf {
        let path = self.dir.path().join("pgwarp.toml");
        let config = SyncConfig {
            source: &self.source_conninfo,
            target: &self.target_conninfo,
            tables,
            slot: &self.slot,
            publication,
            spill_dir: &self.spill_dir(),
            extra,
        };
        std::fs::write(&path, config.to_toml()).expect("write the config file");
        path
    }

    /// `pgwarp sync -c <config>` plus `args`, running.
    pub fn spawn_sync(&self, config: &Path, args: &[&str], log: &str) -> Running {
        let mut all = vec!["sync", "-c", config.to_str().expect("utf-8 path")];
        all.extend_from_slice(args);
        Pgwarp::new(&all)
            .env("PGWARP_LOG", log)
            .spawn_in(self.dir.path())
    }

    /// The phase in `pgwarp.sync_state`, if the sync got that far.
    pub fn phase(&self) -> Option<String> {
        sync_phase(&self.fixture, &self.slot)
    }

    /// The slot's `confirmed_flush_lsn`, if the slot exists and has one.
    pub fn confirmed_flush(&self) -> Option<Lsn> {
        let text: Option<String> = self
            .source
            .query_rows(&format!(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = '{}'",
                self.slot
            ))
            .ok()?
            .into_iter()
            .next()?
            .into_iter()
            .next()?;
        text?.parse().ok()
    }

    /// The source's WAL insert position now.
    pub fn source_lsn(&self) -> Lsn {
        let text: String = self.src_scalar("SELECT pg_current_wal_insert_lsn()::text");
        text.parse().expect("an LSN")
    }

    /// `(node label, lsn)` of every `pgwarp.progress` row of the slot, over all nodes.
    pub fn progress(&self) -> Vec<(String, Lsn)> {
        let mut out = Vec::new();
        for node in self.fixture.nodes() {
            let rows = node
                .query_rows(&format!(
                    "SELECT node, lsn::text FROM pgwarp.progress WHERE slot = '{}'",
                    self.slot
                ))
                .unwrap_or_default();
            for row in rows {
                let mut it = row.into_iter();
                let label = it.next().flatten().unwrap_or_default();
                let lsn = it
                    .next()
                    .flatten()
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(Lsn::INVALID);
                out.push((label, lsn));
            }
        }
        out.sort();
        out
    }

    /// Waits until the slot has confirmed everything the source wrote before this call, with
    /// `pgwarp` still running (a hang guard of `limit`, not a timing assertion).
    pub fn wait_caught_up(&self, running: &mut Running, limit: Duration) -> Lsn {
        let target = self.source_lsn();
        wait_for(
            &format!("the slot to confirm {target}"),
            running,
            limit,
            |_| self.confirmed_flush().is_some_and(|f| f >= target),
        );
        target
    }

    /// Asserts `table` (a spec name; tenant tables are read from their schema on both sides)
    /// is identical on both sides, row for row.
    pub fn assert_synced(&self, table: &str) {
        let mut source = self
            .source
            .query_rows(&format!(
                "SELECT * FROM {}.{}",
                quote_ident(self.fixture.schema_of(table).unwrap_or(&self.schema)),
                quote_ident(table)
            ))
            .unwrap_or_else(|e| panic!("could not read {table} on the source: {e}"));
        source.sort();
        let target = self
            .fixture
            .rows(table)
            .unwrap_or_else(|e| panic!("could not read {table} on the cluster: {e}"));
        assert_rows_equal(table, &source, &target);
    }
}

/// Polls `condition` until it holds; fails with pgwarp's output if pgwarp exits first or
/// `limit` passes (a hang guard, not a timing assertion).
pub fn wait_for(
    what: &str,
    running: &mut Running,
    limit: Duration,
    mut condition: impl FnMut(&Running) -> bool,
) {
    let deadline = Instant::now() + limit;
    loop {
        if condition(running) {
            return;
        }
        if let Some(status) = running.exited() {
            panic!(
                "pgwarp exited ({status}) before {what}\nstdout:\n{}\nstderr:\n{}",
                running.stdout(),
                running.stderr()
            );
        }
        if Instant::now() > deadline {
            panic!(
                "gave up waiting for {what} after {limit:?}\nstderr:\n{}",
                running.stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

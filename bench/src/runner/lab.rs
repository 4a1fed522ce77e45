//! The lab: every server the benchmark uses, on loopback, all PostgreSQL 15 with the same
//! settings.
//!
//! ```text
//!   source ──────────────► Citus-shaped cluster: coordinator + 2 workers (or a real Citus)
//!     │                     (pgwarp, L-copy, pg_dump | psql, native sub into the coordinator)
//!     └──────────────────► plain PostgreSQL target (native subscription, pgcopydb)
//! ```
//!
//! Every server gets the harness defaults (`fsync = off`, `synchronous_commit = off`,
//! `full_page_writes = off`, `wal_level = logical`) plus [`BENCH_SETTINGS`]; the cluster's servers
//! are started by the harness and given the same settings with `ALTER SYSTEM` and a restart.
//! A real Citus cluster (`$PGWARP_TEST_CITUS_COORDINATOR`) keeps its own settings.

use anyhow::{Context, Result};
use pgwarp_tests::cluster::CitusCluster;
use pgwarp_tests::{PgServer, ServerOptions, StopMode};

/// Settings on top of the harness defaults, identical on every server.
pub const BENCH_SETTINGS: &[(&str, &str)] = &[
    ("shared_buffers", "256MB"),
    ("max_wal_size", "8GB"),
    ("min_wal_size", "1GB"),
    ("checkpoint_timeout", "30min"),
    ("autovacuum", "off"),
    ("max_worker_processes", "16"),
    ("max_logical_replication_workers", "8"),
    ("max_sync_workers_per_subscription", "2"),
    ("logical_decoding_work_mem", "64MB"),
    ("wal_sender_timeout", "5min"),
    ("wal_receiver_timeout", "5min"),
    ("wal_retrieve_retry_interval", "1s"),
];

/// The running servers.
pub struct Lab {
    /// The source of every contender.
    pub source: PgServer,
    /// The plain PostgreSQL target.
    pub target: PgServer,
    /// The Citus-shaped cluster (or a real one).
    pub cluster: CitusCluster,
}

fn options() -> ServerOptions {
    BENCH_SETTINGS
        .iter()
        .fold(ServerOptions::default(), |o, (k, v)| o.setting(k, v))
}

impl Lab {
    /// Starts the source, the plain target and the cluster (in parallel).
    pub fn start() -> Result<Lab> {
        let (source, target, cluster) = std::thread::scope(|s| {
            let source = s.spawn(|| PgServer::start_with(options()));
            let target = s.spawn(|| PgServer::start_with(options()));
            let cluster = s.spawn(|| CitusCluster::start(2));
            (source.join(), target.join(), cluster.join())
        });
        let join = |what: &str| anyhow::anyhow!("the thread starting the {what} panicked");
        let source = source
            .map_err(|_| join("source"))?
            .context("could not start the source")?;
        let target = target
            .map_err(|_| join("target"))?
            .context("could not start the target")?;
        let cluster = cluster
            .map_err(|_| join("cluster"))?
            .context("could not start the cluster")?;
        let mut servers: Vec<&PgServer> = cluster.worker_servers().iter().collect();
        servers.extend(cluster.coordinator_server());
        std::thread::scope(|s| {
            let handles: Vec<_> = servers
                .iter()
                .map(|server| {
                    s.spawn(move || -> Result<()> {
                        for (k, v) in BENCH_SETTINGS {
                            server.set_setting(k, v)?;
                        }
                        server.restart(StopMode::Fast)?;
                        Ok(())
                    })
                })
                .collect();
            handles.into_iter().try_for_each(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a thread restarting a node panicked"))?
                    .context("could not apply the settings to a cluster node")
            })
        })?;
        Ok(Lab {
            source,
            target,
            cluster,
        })
    }

    /// The settings as `name = value` lines (for the report).
    pub fn settings_text() -> String {
        pgwarp_tests::options::DEFAULT_SETTINGS
            .iter()
            .filter(|(k, _)| {
                !matches!(
                    *k,
                    "listen_addresses" | "logging_collector" | "log_line_prefix"
                ) && !BENCH_SETTINGS.iter().any(|(b, _)| b == k)
            })
            .chain(BENCH_SETTINGS.iter())
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

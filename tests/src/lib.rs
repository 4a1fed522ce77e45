//! pgwarp-tests: the test harness.
//!
//! Integration tests run against real PostgreSQL 15 servers, never mocks. This crate starts
//! them and shapes them:
//!
//! * [`PgServer`]: a throwaway server (`initdb` in a private temporary directory, a free port
//!   on 127.0.0.1, `wal_level = logical`, no fsync). [`PgServer::shared`] is one server per test
//!   process; [`PgServer::start_with`] a dedicated one for tests that restart servers or change
//!   settings, `pg_hba.conf` or TLS files. Servers never outlive the test process, even when it
//!   panics or is killed (see [`server`] and [`watchdog`]).
//! * [`TestDb`]: a database per test, dropped afterwards.
//! * [`cluster`]: a Citus-shaped cluster (coordinator with `pg_dist_*` catalogs and shell tables,
//!   workers with shard tables) built from a declarative spec, or a real Citus cluster when
//!   `$PGWARP_TEST_CITUS_COORDINATOR` is set.
//! * What the process-level tests share about `pgwarp` itself: [`child`] (running it as a
//!   child process), [`sync_config`] (its configuration file), [`sync_state`] (what a sync
//!   recorded on the target) and [`rows`] (comparing a table on both sides).
//!
//! ```no_run
//! use pgwarp_tests::PgServer;
//! # fn main() -> Result<(), pgwarp_tests::HarnessError> {
//! let db = PgServer::shared().create_database("my_test")?;
//! db.execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")?;
//! assert_eq!(db.query_scalar::<i64>("SELECT count(*) FROM t")?, 1);
//! # Ok(()) }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod child;
pub mod cluster;
pub mod database;
pub mod endpoint;
pub mod error;
pub mod options;
pub mod rows;
pub mod server;
pub mod sync_config;
pub mod sync_state;
pub mod toolchain;
pub mod watchdog;

use std::sync::atomic::{AtomicU64, Ordering};

pub use database::TestDb;
pub use endpoint::{Endpoint, connect};
pub use error::{HarnessError, Result};
pub use options::{PasswordEncryption, ServerOptions, StopMode, quote_ident};
pub use server::PgServer;

/// A name unique in this process and across concurrently running test processes:
/// `<prefix>_<pid>_<n>`, with the prefix lowercased, reduced to `[a-z0-9_]` and clipped so the
/// whole name fits PostgreSQL's 63-byte identifier limit.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut clean: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() || clean.starts_with(|c: char| c.is_ascii_digit()) {
        clean.insert(0, 't');
    }
    let suffix = format!("_{}_{n}", std::process::id());
    clean.truncate(63 - suffix.len());
    clean + &suffix
}

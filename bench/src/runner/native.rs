//! Native logical replication as a contender: `CREATE SUBSCRIPTION ... WITH (binary = true,
//! streaming = on)`.
//!
//! * into the plain target: the snapshot is the initial table synchronisation (`copy_data`,
//!   up to `max_sync_workers_per_subscription` tables at once), timed until every table of
//!   `pg_subscription_rel` is ready; a backlog drain is `ALTER SUBSCRIPTION ... DISABLE`, the
//!   load, `ENABLE`, until the marker arrives.
//! * into the Citus coordinator, the documented failure: the subscription reports success and
//!   writes every row into the coordinator's local shell tables, none of which Citus reads.
//!   The report shows rows replicated (in the shells) next to rows visible (in the shards).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use pgwarp_tests::quote_ident;
use tokio_postgres::Client;

use super::data::SourceDb;
use super::db;

/// A subscription on some target database to a source clone.
pub struct Subscription {
    /// Name of the subscription, its slot and its publication.
    pub name: String,
    target: Client,
}

impl Subscription {
    /// Creates the publication on the source and the subscription on the target, and waits
    /// until every table is synchronised. Returns it and the seconds from `CREATE
    /// SUBSCRIPTION` to ready.
    pub async fn create(
        src: &SourceDb,
        target_conn: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<(Subscription, f64)> {
        let source = src.db.connect().await?;
        source
            .batch_execute(&format!(
                "CREATE PUBLICATION {name} FOR TABLE {}",
                src.tables().join(", ")
            ))
            .await
            .context("could not create the publication")?;
        let target = db::connect(target_conn).await?;
        let started = Instant::now();
        target
            .batch_execute(&format!(
                "CREATE SUBSCRIPTION {name} CONNECTION '{}' PUBLICATION {name} \
                 WITH (binary = true, streaming = on)",
                src.conn_string().replace('\'', "''")
            ))
            .await
            .context("could not create the subscription")?;
        let sub = Subscription {
            name: name.to_owned(),
            target,
        };
        loop {
            let pending = db::scalar_i64(
                &sub.target,
                &format!(
                    "SELECT count(*) FROM pg_subscription_rel r JOIN pg_subscription s \
                       ON s.oid = r.srsubid WHERE s.subname = '{name}' AND r.srsubstate <> 'r'"
                ),
            )
            .await?;
            if pending == 0 {
                break;
            }
            if started.elapsed() > timeout {
                bail!("subscription {name} not synchronised within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok((sub, started.elapsed().as_secs_f64()))
    }

    /// Stops the apply worker (`DISABLE`) and waits until it is gone.
    pub async fn disable(&self) -> Result<()> {
        self.target
            .batch_execute(&format!("ALTER SUBSCRIPTION {} DISABLE", self.name))
            .await?;
        let started = Instant::now();
        loop {
            let running = db::scalar_i64(
                &self.target,
                &format!(
                    "SELECT count(*) FROM pg_stat_subscription \
                      WHERE subname = '{}' AND pid IS NOT NULL",
                    self.name
                ),
            )
            .await?;
            if running == 0 {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("the apply worker of {} did not stop", self.name);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts the apply worker again.
    pub async fn enable(&self) -> Result<()> {
        self.target
            .batch_execute(&format!("ALTER SUBSCRIPTION {} ENABLE", self.name))
            .await
            .context("could not enable the subscription")
    }

    /// Waits (polling every 5 ms) until the apply worker runs. The launcher starts it up to
    /// `wal_retrieve_retry_interval` after `ENABLE`; a drain is timed from here, so that
    /// scheduling delay is not counted as apply time.
    pub async fn wait_for_worker(&self, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        loop {
            let running = db::scalar_i64(
                &self.target,
                &format!(
                    "SELECT count(*) FROM pg_stat_subscription \
                      WHERE subname = '{}' AND pid IS NOT NULL",
                    self.name
                ),
            )
            .await?;
            if running > 0 {
                return Ok(());
            }
            if started.elapsed() > timeout {
                bail!("the apply worker of {} did not start", self.name);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Drops the subscription (and its slot on the source).
    pub async fn drop_all(self) -> Result<()> {
        self.target
            .batch_execute(&format!("DROP SUBSCRIPTION IF EXISTS {}", self.name))
            .await
            .context("could not drop the subscription")
    }
}

/// Rows in the coordinator's own shell tables (what a subscription into the coordinator
/// wrote): `count(*)` on the fake cluster, `n_live_tup` on a real one (whose planner would
/// answer a `count(*)` from the shards).
pub async fn shell_rows(coordinator_conn: &str, schema: &str, real: bool) -> Result<i64> {
    let c = db::connect(coordinator_conn).await?;
    let mut total = 0;
    for t in super::data::TABLES {
        let rel = format!("{}.{}", quote_ident(schema), quote_ident(t.name));
        total += if real {
            db::scalar_i64(
                &c,
                &format!(
                    "SELECT coalesce(n_live_tup, 0) FROM pg_stat_user_tables \
                      WHERE relid = '{rel}'::regclass"
                ),
            )
            .await?
        } else {
            db::scalar_i64(&c, &format!("SELECT count(*) FROM {rel}")).await?
        };
    }
    Ok(total)
}

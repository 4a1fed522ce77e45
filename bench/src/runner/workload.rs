//! The change workloads, generated server-side so the load itself is fast and deterministic.
//!
//! * **mixed**: statement `i` of one global sequence is an insert (`i % 10` in 0..6), an update
//!   by primary key of an original order (6..9), or a delete by primary key of the order the
//!   insert at `i - 9` created (9): 60/30/10, every statement touches exactly one row, and the
//!   same `i` always makes the same change. Transactions hold 1 or 100 statements.
//! * **large**: one `INSERT ... SELECT` of N orders in one transaction.
//! * **paced**: the same mixed sequence at a given rate of row changes per second, 100 per
//!   transaction, sleeping server-side between transactions, in two sessions at once, for
//!   the lag measurements. Each transaction makes its 60 inserts, 30 updates and 10 deletes
//!   with three set-based statements: the WAL and the decoded changes are the same row by
//!   row, but the source can produce them fast enough to load a consumer near its limit.
//!
//! Every load ends by raising `bench_marker.v` in a transaction of its own, committed with
//! `synchronous_commit = on` so the whole load is written out before the consumer starts. A contender has applied the load
//! when every placement of `bench_marker` holds that value (see [`MarkerProbe`]).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use pgwarp_decoder::Lsn;
use serde::Serialize;
use tokio_postgres::Client;

use super::data::SourceDb;
use super::db;

/// The load procedures, created in the template (schema `bench`, unqualified table names:
/// callers put the data schema on the `search_path`).
pub const PROCEDURES: &str = "
CREATE PROCEDURE bench.mixed(INOUT next bigint, n bigint, per_tx int)
LANGUAGE plpgsql AS $$
DECLARE
  cfg bench.config;
  i bigint;
  oid bigint;
  uid bigint;
  in_tx int := 0;
BEGIN
  SELECT * INTO cfg FROM bench.config;
  FOR i IN next .. next + n - 1 LOOP
    IF i % 10 < 6 THEN
      INSERT INTO orders
        SELECT * FROM bench.order_rows(100000000000 + i, 100000000000 + i,
                                       cfg.n_users, cfg.n_products);
    ELSIF i % 10 < 9 THEN
      oid := 1 + (((i % 2147483647) * 2654435761 + cfg.seed) % cfg.n_orders);
      uid := 1 + (oid * 7919) % cfg.n_users;
      UPDATE orders
         SET status = 'updated', total = total + 1,
             updated_at = '2024-01-01 00:00:00+00'::timestamptz + i * interval '1 second',
             details = details || jsonb_build_object('rev', i)
       WHERE user_id = uid AND order_id = oid;
    ELSE
      oid := 100000000000 + i - 9;
      uid := 1 + (oid * 7919) % cfg.n_users;
      DELETE FROM orders WHERE user_id = uid AND order_id = oid;
    END IF;
    in_tx := in_tx + 1;
    IF in_tx >= per_tx THEN
      COMMIT;
      in_tx := 0;
    END IF;
  END LOOP;
  next := next + n;
END $$;

CREATE PROCEDURE bench.paced(INOUT next bigint, rate float8, seconds float8,
                             lanes int, lane int)
LANGUAGE plpgsql AS $$
DECLARE
  cfg bench.config;
  done bigint := 0;
  t0 timestamptz := clock_timestamp();
  ahead float8;
BEGIN
  SELECT * INTO cfg FROM bench.config;
  LOOP
    EXIT WHEN extract(epoch FROM clock_timestamp() - t0) >= seconds;
    ahead := done / rate - extract(epoch FROM clock_timestamp() - t0);
    IF ahead > 0 THEN PERFORM pg_sleep(ahead); END IF;
    -- statements next .. next + 99 of the mixed sequence, as three set-based statements
    INSERT INTO orders
      SELECT * FROM bench.order_rows(100000000000 + next, 100000000000 + next + 99,
                                     cfg.n_users, cfg.n_products) o
       WHERE o.order_id % 10 < 6;
    UPDATE orders o
       SET status = 'updated', total = total + 1,
           updated_at = '2024-01-01 00:00:00+00'::timestamptz + u.i * interval '1 second',
           details = details || jsonb_build_object('rev', u.i)
      FROM (SELECT i, 1 + lane + lanes * (((i % 2147483647) * 2654435761 + cfg.seed)
                                         % (cfg.n_orders / lanes)) AS oid
              FROM generate_series(next, next + 99) i WHERE i % 10 BETWEEN 6 AND 8) u
     WHERE o.user_id = 1 + (u.oid * 7919) % cfg.n_users AND o.order_id = u.oid;
    DELETE FROM orders o
     USING generate_series(next, next + 99) i
     WHERE i % 10 = 9 AND o.order_id = 100000000000 + i - 9
       AND o.user_id = 1 + ((100000000000 + i - 9) * 7919) % cfg.n_users;
    COMMIT;
    next := next + 100;
    done := done + 100;
  END LOOP;
END $$;

CREATE PROCEDURE bench.large(n bigint)
LANGUAGE sql AS $$
  INSERT INTO orders
    SELECT * FROM bench.order_rows(200000000001, 200000000000 + n,
                                   (SELECT n_users FROM bench.config),
                                   (SELECT n_products FROM bench.config));
$$;
";

/// Which change load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum LoadKind {
    /// The mixed sequence, `per_tx` statements per transaction.
    Mixed {
        /// Statements per transaction.
        per_tx: i64,
    },
    /// One transaction inserting all rows.
    Large,
}

/// A load of the backlog-drain workloads.
#[derive(Debug, Clone, Serialize)]
pub struct LoadSpec {
    /// Short name (`mixed-1`, `mixed-100`, `large-tx`).
    pub name: String,
    /// What it runs.
    pub kind: LoadKind,
    /// Row changes (statements for mixed loads, rows for the large one).
    pub rows: i64,
}

/// The three backlog loads, in the order they run: `mixed` statements with 1 and with 100
/// per transaction, then one transaction of `large` rows.
pub fn backlog_loads(mixed: i64, large: i64) -> Vec<LoadSpec> {
    vec![
        LoadSpec {
            name: "mixed-1".into(),
            kind: LoadKind::Mixed { per_tx: 1 },
            rows: mixed,
        },
        LoadSpec {
            name: "mixed-100".into(),
            kind: LoadKind::Mixed { per_tx: 100 },
            rows: mixed,
        },
        LoadSpec {
            name: "large-tx".into(),
            kind: LoadKind::Large,
            rows: large,
        },
    ]
}

impl LoadSpec {
    /// Source transactions of the load, the marker's included.
    pub fn transactions(&self) -> i64 {
        match self.kind {
            LoadKind::Mixed { per_tx } => (self.rows + per_tx - 1) / per_tx.max(1) + 1,
            LoadKind::Large => 2,
        }
    }
}

/// What one load did on the source.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LoadRun {
    /// Row changes made (the marker update not counted).
    pub rows: i64,
    /// Seconds the source took to run it.
    pub seconds: f64,
    /// WAL bytes it wrote (marker included).
    pub wal_bytes: u64,
    /// WAL position after the marker commit.
    #[serde(skip)]
    pub end_lsn: Lsn,
    /// The marker value that ends it.
    pub marker: i64,
}

/// Sequence numbers of the paced lanes start at `(lane + 1) * LANE_BASE`, far above the
/// backlog loads' (which count from 0), so no two sessions ever touch the same new order.
const LANE_BASE: i64 = 10_000_000_000;

/// Paced loads run in this many sessions at once (each updating its own residue class of the
/// original orders, so they never wait for each other's row locks).
pub const LANES: i64 = 2;

/// Sessions on a source clone that run loads in sequence.
pub struct Loader {
    client: Client,
    lanes: Vec<Client>,
    lane_next: Vec<i64>,
    next_seq: i64,
    next_marker: i64,
}

impl Loader {
    /// Connects to the clone with the data schema and `bench` on the search path: one session
    /// for the backlog loads (`synchronous_commit = off`: nothing consumes while they run) and
    /// [`LANES`] for the paced loads (`on`: each commit is written out at once, so the
    /// walsender sees it without waiting for the WAL writer).
    pub async fn connect(src: &SourceDb) -> Result<Loader> {
        let path = format!(
            "SET search_path = {}, bench",
            pgwarp_tests::quote_ident(&src.schema)
        );
        let client = db::connect(&src.conn_string()).await?;
        client
            .batch_execute(&format!("{path}; SET synchronous_commit = off"))
            .await?;
        let mut lanes = Vec::new();
        for _ in 0..LANES {
            let c = db::connect(&src.conn_string()).await?;
            c.batch_execute(&format!("{path}; SET synchronous_commit = on"))
                .await?;
            lanes.push(c);
        }
        Ok(Loader {
            client,
            lanes,
            lane_next: (0..LANES).map(|k| (k + 1) * LANE_BASE).collect(),
            next_seq: 0,
            next_marker: 1,
        })
    }

    /// The source's current WAL position.
    pub async fn current_lsn(&self) -> Result<Lsn> {
        current_lsn(&self.client).await
    }

    /// Runs a backlog load to the end, then the marker.
    pub async fn run(&mut self, spec: &LoadSpec) -> Result<LoadRun> {
        let before = self.current_lsn().await?;
        let started = Instant::now();
        match spec.kind {
            LoadKind::Mixed { per_tx } => {
                let sql = format!(
                    "CALL bench.mixed({}, {}, {per_tx})",
                    self.next_seq, spec.rows
                );
                let next = db::scalar_i64(&self.client, &sql)
                    .await
                    .context("the mixed load failed")?;
                self.next_seq = next;
            }
            LoadKind::Large => {
                self.client
                    .batch_execute(&format!("CALL bench.large({})", spec.rows))
                    .await
                    .context("the large transaction failed")?;
            }
        }
        let (marker, end_lsn) = self.marker().await?;
        Ok(LoadRun {
            rows: spec.rows,
            seconds: started.elapsed().as_secs_f64(),
            wal_bytes: end_lsn.0.saturating_sub(before.0),
            end_lsn,
            marker,
        })
    }

    /// Runs the mixed sequence at `rate` row changes per second in total for `seconds`, 100
    /// per transaction, split over the [`LANES`] sessions; then the marker.
    pub async fn paced(&mut self, rate: f64, seconds: f64) -> Result<LoadRun> {
        let before = self.current_lsn().await?;
        let started = Instant::now();
        let per_lane = rate / LANES as f64;
        let calls =
            self.lanes
                .iter()
                .zip(&self.lane_next)
                .enumerate()
                .map(|(k, (client, next))| {
                    let sql =
                        format!("CALL bench.paced({next}, {per_lane}, {seconds}, {LANES}, {k})");
                    async move { db::scalar_i64(client, &sql).await }
                });
        let nexts = futures_util::future::try_join_all(calls)
            .await
            .context("the paced load failed")?;
        let elapsed = started.elapsed().as_secs_f64();
        let rows: i64 = nexts
            .iter()
            .zip(&self.lane_next)
            .map(|(after, before)| after - before)
            .sum();
        self.lane_next = nexts;
        let (marker, end_lsn) = self.marker().await?;
        Ok(LoadRun {
            rows,
            seconds: elapsed,
            wal_bytes: end_lsn.0.saturating_sub(before.0),
            end_lsn,
            marker,
        })
    }

    /// Raises the marker in a transaction of its own, written out at once; returns its value
    /// and the WAL position after it.
    pub async fn marker(&mut self) -> Result<(i64, Lsn)> {
        let value = self.next_marker;
        self.next_marker += 1;
        self.client
            .batch_execute(&format!(
                "BEGIN; SET LOCAL synchronous_commit = on; \
                 UPDATE bench_marker SET v = {value} WHERE id = 1; COMMIT"
            ))
            .await?;
        Ok((value, self.current_lsn().await?))
    }
}

/// `pg_current_wal_lsn()` of the server.
pub async fn current_lsn(client: &Client) -> Result<Lsn> {
    let text = db::scalar_text(client, "SELECT pg_current_wal_lsn()::text").await?;
    text.parse()
        .map_err(|_| anyhow::anyhow!("invalid WAL position \"{text}\""))
}

/// Where a target shows the marker: every placement of `bench_marker`.
#[derive(Debug, Clone)]
pub struct MarkerProbe {
    /// (connection string, query returning the marker value).
    pub places: Vec<(String, String)>,
}

impl MarkerProbe {
    /// The marker of a plain target whose tables are in `schema`.
    pub fn plain(conn_string: &str, schema: &str) -> MarkerProbe {
        MarkerProbe {
            places: vec![(
                conn_string.to_owned(),
                format!(
                    "SELECT v FROM {}.bench_marker WHERE id = 1",
                    pgwarp_tests::quote_ident(schema)
                ),
            )],
        }
    }

    /// The marker on every placement of a Citus-shaped fixture.
    pub fn fixture(f: &pgwarp_tests::cluster::CitusFixture) -> Result<MarkerProbe> {
        let mut places = Vec::new();
        for shard in f.shards("bench_marker")? {
            for group in &shard.groups {
                let node = f.node_of_group(*group)?;
                places.push((
                    node.conn_string.clone(),
                    format!("SELECT v FROM {} WHERE id = 1", shard.shard_table),
                ));
            }
        }
        if places.is_empty() {
            bail!("bench_marker has no placement");
        }
        Ok(MarkerProbe { places })
    }

    /// Opens one connection per place (before a clock starts).
    pub async fn open(&self) -> Result<OpenProbe> {
        let mut clients = Vec::new();
        for (conn, sql) in &self.places {
            clients.push((db::connect(conn).await?, sql.clone()));
        }
        Ok(OpenProbe { clients })
    }
}

/// A marker probe with its connections open.
pub struct OpenProbe {
    clients: Vec<(Client, String)>,
}

impl OpenProbe {
    /// The lowest marker value over the placements (0 where the row is missing).
    pub async fn lowest(&self) -> Result<i64> {
        let mut low = i64::MAX;
        for (client, sql) in &self.clients {
            let v = match db::scalar_text(client, sql).await {
                Ok(text) => text.parse().unwrap_or(0),
                Err(_) => 0,
            };
            low = low.min(v);
        }
        Ok(low)
    }

    /// Polls every 20 ms until every placement shows `marker` or more; gives up after
    /// `timeout`.
    pub async fn wait_for(&self, marker: i64, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.lowest().await? >= marker {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("marker {marker} did not reach every placement within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

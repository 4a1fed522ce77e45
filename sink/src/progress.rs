//! The exactly-once record on each node: `pgwarp.progress (slot, node) -> lsn`.
//!
//! Every batch transaction locks the row of its (slot, node) key with `SELECT ... FOR UPDATE`,
//! skips the batch if the recorded LSN already covers it, and otherwise applies the batch and
//! raises the LSN (`GREATEST`, so it never moves back) before `COMMIT`. Data and progress commit
//! or roll back together, so after a crash, and after a `COMMIT` whose reply was lost, the row
//! says exactly which source transactions the node holds. Lanes run with `synchronous_commit
//! = on` whatever the node's default: with it off, a node that crashes right after a `COMMIT`
//! loses that transaction (data and row alike) although pgwarp already confirmed it to the
//! source, which then never sends it again. The row lock also serialises two
//! writers that share a key by mistake instead of letting them both apply a batch.
//!
//! The schema and table are created on demand on every node, coordinator included. Concurrent
//! creators (several lanes, several nodes of one server, Citus propagating DDL from the
//! coordinator) are serialised by a transaction-level advisory lock, DDL propagation is turned
//! off for the transaction, and "already exists" errors are tolerated.

use pgwarp_decoder::Lsn;
use tokio_postgres::Client;

/// Advisory lock key for creating the schema ("pgwarp" in ASCII).
const CREATE_LOCK: i64 = 0x7067_7761_7270;

const CREATE: &str = "BEGIN; \
    SET LOCAL citus.enable_ddl_propagation TO off; \
    SELECT pg_advisory_xact_lock(CREATE_LOCK); \
    CREATE SCHEMA IF NOT EXISTS pgwarp; \
    CREATE TABLE IF NOT EXISTS pgwarp.progress ( \
        slot text NOT NULL, \
        node text NOT NULL, \
        lsn pg_lsn NOT NULL, \
        updated_at timestamptz NOT NULL DEFAULT now(), \
        PRIMARY KEY (slot, node)); \
    COMMIT";

/// Reads the row, locking it for the transaction.
pub(crate) const LOCK_ROW: &str =
    "SELECT lsn::text FROM pgwarp.progress WHERE slot = $1 AND node = $2 FOR UPDATE";

/// Reads the row.
const READ_ROW: &str = "SELECT lsn::text FROM pgwarp.progress WHERE slot = $1 AND node = $2";

/// Raises the row's LSN.
pub(crate) const UPSERT: &str = "INSERT INTO pgwarp.progress AS p (slot, node, lsn, updated_at) \
    VALUES ($1, $2, $3::text::pg_lsn, now()) \
    ON CONFLICT (slot, node) DO UPDATE \
    SET lsn = GREATEST(p.lsn, EXCLUDED.lsn), updated_at = now()";

/// Creates the schema and table if needed, and the (slot, node) row at `0/0`.
pub(crate) async fn ensure(
    client: &Client,
    slot: &str,
    node: &str,
) -> Result<(), tokio_postgres::Error> {
    let create = CREATE.replace("CREATE_LOCK", &CREATE_LOCK.to_string());
    let mut tries = 0;
    loop {
        match client.batch_execute(&create).await {
            Ok(()) => break,
            Err(err) => {
                // A creator that did not take the advisory lock won the race.
                let exists = err
                    .as_db_error()
                    .is_some_and(|db| matches!(db.code().code(), "23505" | "42P06" | "42P07"));
                let _ = client.batch_execute("ROLLBACK").await;
                tries += 1;
                if !exists || tries > 3 {
                    return Err(err);
                }
            }
        }
    }
    client
        .execute(
            "INSERT INTO pgwarp.progress (slot, node, lsn) VALUES ($1, $2, '0/0') \
             ON CONFLICT (slot, node) DO NOTHING",
            &[&slot, &node],
        )
        .await?;
    Ok(())
}

/// The recorded LSN, as text (parsed by the caller), `None` if there is no row.
pub(crate) async fn read(
    client: &Client,
    slot: &str,
    node: &str,
) -> Result<Option<String>, tokio_postgres::Error> {
    let row = client.query_opt(READ_ROW, &[&slot, &node]).await?;
    row.map(|r| r.try_get::<_, String>(0)).transpose()
}

/// Parses the text of a `pg_lsn`.
pub(crate) fn parse(text: Option<&str>) -> Result<Lsn, String> {
    match text {
        None => Ok(Lsn::INVALID),
        Some(t) => t.parse::<Lsn>().map_err(|e| e.to_string()),
    }
}

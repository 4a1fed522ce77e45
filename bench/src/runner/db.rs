//! Connections and databases the runner owns.
//!
//! [`OwnedDb`] is a database the runner created (a template clone on the source, an empty
//! target database) and drops `WITH (FORCE)` when done, so a failed contender leaves nothing
//! behind for the next one. Queries go over TCP to `127.0.0.1` like every tool under test.

use anyhow::{Context, Result};
use pgwarp_tests::{Endpoint, quote_ident};
use tokio_postgres::{Client, NoTls};

/// Connects with a libpq-style connection string; the connection task is spawned.
pub async fn connect(conn_string: &str) -> Result<Client> {
    let (client, connection) = tokio_postgres::connect(conn_string, NoTls)
        .await
        .with_context(|| format!("could not connect to \"{}\"", redact(conn_string)))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The connection string without a password (for messages).
fn redact(conn_string: &str) -> String {
    conn_string
        .split_whitespace()
        .filter(|kv| !kv.starts_with("password="))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One value of a one-row query, as text.
pub async fn scalar_text(client: &Client, sql: &str) -> Result<String> {
    let rows = client.simple_query(sql).await?;
    for m in rows {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = m {
            return Ok(row.get(0).unwrap_or_default().to_owned());
        }
    }
    anyhow::bail!("query returned no row: {sql}")
}

/// One `i64` of a one-row query.
pub async fn scalar_i64(client: &Client, sql: &str) -> Result<i64> {
    let text = scalar_text(client, sql).await?;
    text.parse()
        .with_context(|| format!("\"{text}\" is not a number (from {sql})"))
}

/// A database created by the runner, dropped `WITH (FORCE)` on drop.
#[derive(Debug)]
pub struct OwnedDb {
    endpoint: Endpoint,
    name: String,
}

impl OwnedDb {
    /// Creates an empty database named `<prefix>_<pid>_<n>`.
    pub fn create(endpoint: &Endpoint, prefix: &str) -> Result<OwnedDb> {
        OwnedDb::create_with(endpoint, prefix, "")
    }

    /// Creates a database with extra `CREATE DATABASE` options (e.g. a template).
    pub fn create_with(endpoint: &Endpoint, prefix: &str, options: &str) -> Result<OwnedDb> {
        let name = pgwarp_tests::unique_name(prefix);
        endpoint
            .execute(
                "postgres",
                &format!("CREATE DATABASE {} {options}", quote_ident(&name)),
            )
            .with_context(|| format!("could not create database \"{name}\""))?;
        Ok(OwnedDb {
            endpoint: endpoint.clone(),
            name,
        })
    }

    /// `host=127.0.0.1 port=P user=postgres dbname=<name>`.
    pub fn conn_string(&self) -> String {
        self.endpoint.conn_string(&self.name)
    }

    /// `postgres://postgres@127.0.0.1:P/<name>` (for tools that take URIs).
    pub fn uri(&self) -> String {
        format!(
            "postgres://{}@{}:{}/{}",
            self.endpoint.user, self.endpoint.host, self.endpoint.port, self.name
        )
    }

    /// Runs statements (blocking helper of the harness).
    pub fn execute(&self, sql: &str) -> Result<()> {
        self.endpoint
            .execute(&self.name, sql)
            .with_context(|| format!("in database \"{}\"", self.name))
    }

    /// An async connection.
    pub async fn connect(&self) -> Result<Client> {
        connect(&self.conn_string()).await
    }
}

impl Drop for OwnedDb {
    fn drop(&mut self) {
        // a logical slot in the database would stop DROP DATABASE
        let _ = self.endpoint.execute(
            "postgres",
            &format!(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                  WHERE database = '{}' AND NOT active",
                self.name.replace('\'', "''")
            ),
        );
        let _ = self.endpoint.execute(
            "postgres",
            &format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(&self.name)
            ),
        );
    }
}

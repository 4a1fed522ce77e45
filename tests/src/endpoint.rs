//! Where a server listens, and the synchronous SQL helpers that tests without a runtime use.
//!
//! Tests connect over TCP to `127.0.0.1:<port>` (the path the engine takes). The harness's own
//! administrative work goes over the unix socket in the server's private directory as
//! `postgres`, which stays `trust` even when a test installs a strict `pg_hba.conf`.
//!
//! The synchronous helpers run each call on a short-lived thread with its own current-thread
//! tokio runtime. That makes them callable both from plain `#[test]` functions and from inside
//! `#[tokio::test]` functions (where building a runtime on the calling thread would panic).

use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use tokio_postgres::types::FromSqlOwned;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::error::{HarnessError, Result};
use crate::toolchain::Toolchain;

/// The address of one test server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Always `127.0.0.1`.
    pub host: String,
    /// The TCP port.
    pub port: u16,
    /// Directory holding the server's unix socket.
    pub socket_dir: PathBuf,
    /// The bootstrap superuser, `postgres`.
    pub user: String,
}

impl Endpoint {
    /// A libpq-style connection string over TCP, e.g.
    /// `host=127.0.0.1 port=5433 user=postgres dbname=app`.
    pub fn conn_string(&self, dbname: &str) -> String {
        format!(
            "host={} port={} user={} dbname={}",
            self.host,
            self.port,
            conn_value(&self.user),
            conn_value(dbname)
        )
    }

    /// A connection string over the unix socket, as the bootstrap superuser.
    pub fn admin_conn_string(&self, dbname: &str) -> String {
        format!(
            "host={} port={} user={} dbname={}",
            conn_value(&self.socket_dir.to_string_lossy()),
            self.port,
            conn_value(&self.user),
            conn_value(dbname)
        )
    }

    /// Opens an async connection over TCP and spawns its connection task on the current tokio
    /// runtime (so it must be called from inside one).
    pub async fn connect(&self, dbname: &str) -> Result<Client> {
        connect(&self.conn_string(dbname), self.port).await
    }

    /// Runs `sql` (one or more statements, simple query protocol) in `dbname`.
    pub fn execute(&self, dbname: &str, sql: &str) -> Result<()> {
        let sql = sql.to_owned();
        self.blocking(dbname, "execute SQL", move |client| async move {
            client.batch_execute(&sql).await
        })
    }

    /// Runs a query returning one row with one column and converts the value.
    pub fn query_scalar<T: FromSqlOwned + Send + 'static>(
        &self,
        dbname: &str,
        sql: &str,
    ) -> Result<T> {
        let sql = sql.to_owned();
        self.blocking(dbname, "run a scalar query", move |client| async move {
            let row = client.query_one(&sql, &[]).await?;
            row.try_get::<_, T>(0)
        })
    }

    /// Runs `sql` with the simple query protocol and returns every row of every statement, each
    /// value in text form (`None` for NULL).
    pub fn query_rows(&self, dbname: &str, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        let sql = sql.to_owned();
        self.blocking(dbname, "run a query", move |client| async move {
            let messages = client.simple_query(&sql).await?;
            Ok(messages
                .into_iter()
                .filter_map(|m| match m {
                    SimpleQueryMessage::Row(row) => Some(
                        (0..row.len())
                            .map(|i| row.get(i).map(str::to_owned))
                            .collect(),
                    ),
                    _ => None,
                })
                .collect())
        })
    }

    /// Feeds `script` to `psql -X -q -At -v ON_ERROR_STOP=1` and returns its stdout. Use it for
    /// scripts with psql meta-commands, or statements that must run outside a transaction
    /// block one after another.
    pub fn psql(&self, dbname: &str, script: &str) -> Result<String> {
        let toolchain = Toolchain::get()?;
        let psql = toolchain.program("psql");
        let mut cmd = if psql.is_file() {
            Command::new(psql)
        } else {
            Command::new("psql")
        };
        cmd.args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-f", "-"])
            .arg("-h")
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-U")
            .arg(&self.user)
            .arg("-d")
            .arg(dbname)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| HarnessError::io("start psql", e))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .map_err(|e| HarnessError::io("write to psql", e))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| HarnessError::io("wait for psql", e))?;
        if !out.status.success() {
            return Err(HarnessError::Command {
                program: "psql".to_owned(),
                action: format!(
                    "run a script in database \"{dbname}\" on port {}",
                    self.port
                ),
                status: out.status,
                output: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `f` with an admin connection to `dbname` on a private thread and runtime.
    pub(crate) fn blocking<T, F, Fut>(&self, dbname: &str, action: &str, f: F) -> Result<T>
    where
        T: Send,
        F: FnOnce(Client) -> Fut + Send,
        Fut: Future<Output = std::result::Result<T, tokio_postgres::Error>>,
    {
        with_client(&self.admin_conn_string(dbname), self.port, action, f)
    }
}

/// Runs `f` with a fresh connection made from `conn_string` (no TLS), on a private thread and
/// runtime; client errors are reported with `action` and `port`.
pub(crate) fn with_client<T, F, Fut>(conn_string: &str, port: u16, action: &str, f: F) -> Result<T>
where
    T: Send,
    F: FnOnce(Client) -> Fut + Send,
    Fut: Future<Output = std::result::Result<T, tokio_postgres::Error>>,
{
    let sql_err = |source| HarnessError::sql(action, port, source);
    block_on(|| async move {
        let (client, connection) = tokio_postgres::connect(conn_string, NoTls)
            .await
            .map_err(sql_err)?;
        let driver = tokio::spawn(connection);
        let result = f(client).await.map_err(sql_err);
        let _ = driver.await;
        result
    })
}

/// Runs the future made by `make` to completion on a new thread with its own current-thread
/// runtime, so it works whether or not the caller is inside a runtime.
pub(crate) fn block_on<T, F, Fut>(make: F) -> Result<T>
where
    T: Send,
    F: FnOnce() -> Fut + Send,
    Fut: Future<Output = Result<T>>,
{
    let outcome = std::thread::scope(|scope| {
        scope
            .spawn(move || -> Result<T> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| HarnessError::io("build a tokio runtime", e))?;
                runtime.block_on(make())
            })
            .join()
    });
    match outcome {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Connects with `conn_string` (no TLS) and spawns the connection task on the current runtime.
pub async fn connect(conn_string: &str, port: u16) -> Result<Client> {
    let (client, connection) = tokio_postgres::connect(conn_string, NoTls)
        .await
        .map_err(|source| HarnessError::sql("connect", port, source))?;
    tokio::spawn(connection);
    Ok(client)
}

/// Quotes a connection-string value when it needs it.
fn conn_value(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c));
    if plain {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

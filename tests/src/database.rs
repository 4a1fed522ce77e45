//! Per-test databases: unique names, dropped when the test is done with them.

use tokio_postgres::Client;
use tokio_postgres::types::FromSqlOwned;

use crate::endpoint::Endpoint;
use crate::error::Result;
use crate::options::quote_ident;

/// A database created for one test. Dropped `WITH (FORCE)` on `Drop` (best effort: a server
/// that is stopped or gone is ignored, it will be removed with its directory anyway).
#[derive(Debug)]
pub struct TestDb {
    name: String,
    endpoint: Endpoint,
}

impl TestDb {
    pub(crate) fn create(endpoint: Endpoint, name: &str) -> Result<TestDb> {
        endpoint.execute(
            "postgres",
            &format!("CREATE DATABASE {}", quote_ident(name)),
        )?;
        Ok(TestDb {
            name: name.to_owned(),
            endpoint,
        })
    }

    /// The database name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server it lives on.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The server's TCP port.
    pub fn port(&self) -> u16 {
        self.endpoint.port
    }

    /// `host=127.0.0.1 port=P user=postgres dbname=<name>`.
    pub fn conn_string(&self) -> String {
        self.endpoint.conn_string(&self.name)
    }

    /// Async connection over TCP; the connection task is spawned on the current runtime.
    pub async fn connect(&self) -> Result<Client> {
        self.endpoint.connect(&self.name).await
    }

    /// Runs one or more statements (simple query protocol, one implicit transaction).
    pub fn execute(&self, sql: &str) -> Result<()> {
        self.endpoint.execute(&self.name, sql)
    }

    /// Runs `sql` with `schema` first on the search path, so unqualified names resolve there.
    pub fn execute_in(&self, schema: &str, sql: &str) -> Result<()> {
        self.execute(&format!(
            "SET search_path TO {}; {sql}",
            quote_ident(schema)
        ))
    }

    /// Creates `schema` and runs `ddl` in it (unqualified names, as [`TestDb::execute_in`]).
    pub fn create_schema(&self, schema: &str, ddl: &str) -> Result<()> {
        self.execute_in(
            schema,
            &format!("CREATE SCHEMA {}; {ddl}", quote_ident(schema)),
        )
    }

    /// One row, one column, converted to `T`.
    pub fn query_scalar<T: FromSqlOwned + Send + 'static>(&self, sql: &str) -> Result<T> {
        self.endpoint.query_scalar(&self.name, sql)
    }

    /// Every row of `sql`, values as text (`None` for NULL).
    pub fn query_rows(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        self.endpoint.query_rows(&self.name, sql)
    }

    /// Runs a psql script (`-X -q -At -v ON_ERROR_STOP=1`), returning stdout.
    pub fn psql(&self, script: &str) -> Result<String> {
        self.endpoint.psql(&self.name, script)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let sql = format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&self.name)
        );
        let _ = self.endpoint.execute("postgres", &sql);
    }
}

//! How a writer gets its connections: injected by the engine.
//!
//! The sink does not know about TLS, passwords, `.pgpass` or service files; the engine does
//! (its `conn` module). So a writer takes a [`Connector`] trait object that opens a fresh,
//! connected [`tokio_postgres::Client`] to one node, with its connection task already spawned.
//! The writer calls it once per lane at start and again after a transient failure.
//! [`NoTlsConnector`] is the plain implementation for tests, benchmarks and local targets.

use std::future::Future;
use std::pin::Pin;

use tokio_postgres::{Client, NoTls};

use crate::error::{BoxError, is_transient_pg};

/// The future a [`Connector`] returns.
pub type ConnectFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Client, ConnectError>> + Send + 'a>>;

/// Opens connections to one node.
pub trait Connector: Send + Sync {
    /// Opens a new connection; the returned client's connection task must already be running.
    fn connect(&self) -> ConnectFuture<'_>;
}

/// Why a connection could not be opened.
#[derive(Debug)]
pub struct ConnectError {
    /// Whether retrying later may succeed (refused, reset, server starting or shutting down).
    pub transient: bool,
    /// The underlying error.
    pub source: BoxError,
}

impl From<tokio_postgres::Error> for ConnectError {
    fn from(err: tokio_postgres::Error) -> Self {
        ConnectError {
            transient: is_transient_pg(&err),
            source: Box::new(err),
        }
    }
}

/// A [`Connector`] for a libpq-style connection string, without TLS.
#[derive(Debug, Clone)]
pub struct NoTlsConnector {
    conn_string: String,
}

impl NoTlsConnector {
    /// Connects with `conn_string` (e.g. `host=127.0.0.1 port=5432 user=postgres dbname=app`).
    pub fn new(conn_string: impl Into<String>) -> NoTlsConnector {
        NoTlsConnector {
            conn_string: conn_string.into(),
        }
    }
}

impl Connector for NoTlsConnector {
    fn connect(&self) -> ConnectFuture<'_> {
        Box::pin(async move {
            let (client, connection) = tokio_postgres::connect(&self.conn_string, NoTls).await?;
            tokio::spawn(async move {
                if let Err(err) = connection.await {
                    tracing::debug!(error = %err, "sink connection ended with an error");
                }
            });
            Ok(client)
        })
    }
}

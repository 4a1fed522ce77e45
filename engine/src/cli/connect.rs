//! The one place CLI commands open a connection to the target.
//!
//! For now this is `tokio_postgres::connect(conninfo, NoTls)`; it will switch to the
//! libpq-compatible settings and TLS of [`crate::conn`] (one function to change). It also
//! reports the address connected to, which a plain PostgreSQL target's topology uses as its
//! only node.

use std::str::FromStr;

use anyhow::Context;
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

use crate::citus::TargetAddr;

/// Connects to the target described by `conninfo` (keyword/value or URI form) and spawns the
/// connection task on the current runtime.
pub async fn connect_target(conninfo: &str) -> anyhow::Result<(Client, TargetAddr)> {
    let config = Config::from_str(conninfo).context("invalid target connection string")?;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let (client, connection) = config
        .connect(NoTls)
        .await
        .with_context(|| format!("could not connect to the target at {host}:{port}"))?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::warn!(error = %err, "target connection ended with an error");
        }
    });
    Ok((client, TargetAddr { host, port }))
}

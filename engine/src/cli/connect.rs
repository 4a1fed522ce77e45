//! The one place CLI commands open a connection to the target.
//!
//! Settings are resolved like libpq ([`crate::conn::ConnConfig`]: conninfo or URI, `PG*`
//! variables, password file, TLS). The address returned is the first configured host, which a
//! plain PostgreSQL target's topology uses as its only node.

use anyhow::Context;
use tokio_postgres::Client;

use crate::citus::TargetAddr;
use crate::conn::{self, ConnConfig};

/// Connects to the target described by `conninfo` (keyword/value or URI form) and spawns the
/// connection task on the current runtime.
pub async fn connect_target(conninfo: &str) -> anyhow::Result<(Client, TargetAddr)> {
    let config = ConnConfig::parse(conninfo).context("invalid target connection string")?;
    let addr = config
        .hosts
        .first()
        .map(|h| TargetAddr {
            host: h.host.to_string(),
            port: h.port,
        })
        .context("target connection string names no host")?;
    let (client, _connection) = conn::connect(&config)
        .await
        .context("could not connect to the target")?;
    Ok((client, addr))
}

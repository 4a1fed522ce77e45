//! Sessions verify reads through: one small pool per server, every session with the same
//! output settings.
//!
//! The checksums compare the *text* of rows, so every session that renders rows (the source's
//! and each node's) must format values identically: [`SESSION_SETTINGS`] is applied right after
//! connecting, before the session is used. A pool is a stack of idle sessions: units of work
//! take one (or open a new one) and give it back when they finish; the number of concurrent
//! units, not the pool, bounds how many sessions are open.

use std::sync::Mutex;

use tokio_postgres::Client;

use crate::conn::{ConnConfig, connect};

use super::error::VerifyError;
use super::sql::SESSION_SETTINGS;

/// An open session and what was learned about its server.
pub struct Session {
    /// The client.
    pub client: Client,
    /// `server_version_num`.
    pub version: u32,
}

/// The sessions of one server.
pub struct Pool {
    /// `source` or `host:port` of the node, for messages.
    pub label: String,
    config: ConnConfig,
    idle: Mutex<Vec<Session>>,
}

impl Pool {
    /// A pool for `config`; nothing is opened yet.
    pub fn new(label: impl Into<String>, config: ConnConfig) -> Pool {
        Pool {
            label: label.into(),
            config,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// An idle session, or a new one.
    pub async fn get(&self) -> Result<Session, VerifyError> {
        let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
        if let Some(s) = idle
            && !s.client.is_closed()
        {
            return Ok(s);
        }
        open(&self.label, &self.config).await
    }

    /// Returns a session after successful use.
    pub fn put(&self, session: Session) {
        if let Ok(mut v) = self.idle.lock() {
            v.push(session);
        }
    }
}

/// Opens a session with the verify output settings.
pub async fn open(label: &str, config: &ConnConfig) -> Result<Session, VerifyError> {
    let (client, _task) = connect(config)
        .await
        .map_err(|source| VerifyError::Connect {
            side: label.to_owned(),
            source,
        })?;
    client
        .batch_execute(SESSION_SETTINGS)
        .await
        .map_err(VerifyError::query(
            "could not set the session's output format",
            label,
        ))?;
    let version: String = client
        .query_one("SELECT current_setting('server_version_num')", &[])
        .await
        .map_err(VerifyError::query(
            "could not read the server version",
            label,
        ))?
        .try_get(0)
        .map_err(VerifyError::query(
            "could not read the server version",
            label,
        ))?;
    Ok(Session {
        client,
        version: version.parse().unwrap_or(0),
    })
}

//! [`connect`]: the one way the engine opens an ordinary (non-replication) connection.
//!
//! It goes through `tokio_postgres` with the settings of a [`ConnConfig`], trying each host in
//! order as libpq does, applying `connect_timeout` per host and the `sslmode` retry rules, and
//! turning failures into [`ConnError`]s that say which server and what to fix. The connection
//! task is spawned on the current runtime; its handle is returned so owners can await it on
//! shutdown.

use std::future::Future;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_postgres::tls::NoTls;
use tokio_postgres::{Client, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::error::ServerError;
use super::socket::{TlsAttempt, with_ssl_fallback};
use super::{ConnConfig, ConnError, Host, HostTarget, tls};

/// Builds the `tokio_postgres` settings for one host of `cfg` and the given TLS attempt,
/// plus the rustls connector when TLS may be used.
///
/// `connect_timeout` is left out: [`connect`] applies it around the whole attempt.
pub fn tokio_postgres_config(
    cfg: &ConnConfig,
    target: &HostTarget,
    attempt: TlsAttempt,
) -> Result<(Config, Option<MakeRustlsConnect>), ConnError> {
    let mut pg = Config::new();
    match &target.host {
        Host::Tcp(name) => pg.host(name),
        Host::Unix(dir) => pg.host_path(dir),
    };
    if let Some(addr) = target.hostaddr {
        pg.hostaddr(addr);
    }
    pg.port(target.port)
        .user(&cfg.user)
        .dbname(&cfg.dbname)
        .application_name(cfg.application_name())
        .keepalives(cfg.keepalives.enabled);
    if let Some(password) = &target.password {
        pg.password(password.expose());
    }
    if let Some(options) = &cfg.options {
        pg.options(options);
    }
    if let Some(idle) = cfg.keepalives.idle {
        pg.keepalives_idle(idle);
    }
    if let Some(interval) = cfg.keepalives.interval {
        pg.keepalives_interval(interval);
    }
    if let Some(count) = cfg.keepalives.count {
        pg.keepalives_retries(count);
    }
    if let Some(timeout) = cfg.tcp_user_timeout {
        pg.tcp_user_timeout(timeout);
    }
    let connector = match attempt {
        TlsAttempt::No => {
            pg.ssl_mode(tokio_postgres::config::SslMode::Disable);
            None
        }
        TlsAttempt::Try | TlsAttempt::Must => {
            pg.ssl_mode(if attempt == TlsAttempt::Try {
                tokio_postgres::config::SslMode::Prefer
            } else {
                tokio_postgres::config::SslMode::Require
            });
            let config = tls::client_config(cfg)?.ok_or_else(|| {
                ConnError::TlsConfig("TLS attempted with sslmode=disable".to_owned())
            })?;
            Some(MakeRustlsConnect::new(Arc::unwrap_or_clone(config)))
        }
    };
    Ok((pg, connector))
}

/// Opens an ordinary connection: each host in turn until one accepts.
///
/// Returns the client and the handle of the spawned connection task (which ends when the
/// client is dropped or the connection fails; failures are logged at `warn`).
pub async fn connect(cfg: &ConnConfig) -> Result<(Client, JoinHandle<()>), ConnError> {
    // fail early on unusable TLS settings rather than once per host
    tls::client_config(cfg)?;
    for_each_host(cfg, |target| async move {
        with_ssl_fallback(cfg, target, |attempt| connect_attempt(cfg, target, attempt)).await
    })
    .await
}

/// Runs `attempt` against each host in order, with `connect_timeout` per host, returning the
/// first success or every host's error.
pub(crate) async fn for_each_host<'a, T, F, Fut>(
    cfg: &'a ConnConfig,
    mut attempt: F,
) -> Result<T, ConnError>
where
    F: FnMut(&'a HostTarget) -> Fut,
    Fut: Future<Output = Result<T, ConnError>>,
{
    let mut errors = Vec::new();
    for target in &cfg.hosts {
        let result = match cfg.connect_timeout {
            Some(limit) => match tokio::time::timeout(limit, attempt(target)).await {
                Ok(result) => result,
                Err(_) => Err(ConnError::Timeout {
                    target: target.describe(),
                    after: limit,
                }),
            },
            None => attempt(target).await,
        };
        match result {
            Ok(value) => return Ok(value),
            Err(err) => {
                tracing::debug!(target = %target.describe(), error = %err, "connection attempt failed");
                errors.push(err);
            }
        }
    }
    if errors.len() == 1
        && let Some(only) = errors.pop()
    {
        return Err(only);
    }
    Err(ConnError::AllHostsFailed(errors))
}

async fn connect_attempt(
    cfg: &ConnConfig,
    target: &HostTarget,
    attempt: TlsAttempt,
) -> Result<(Client, JoinHandle<()>), ConnError> {
    let (pg, connector) = tokio_postgres_config(cfg, target, attempt)?;
    let map = |e: tokio_postgres::Error| from_pg_error(e, cfg, target);
    match connector {
        None => {
            let (client, connection) = pg.connect(NoTls).await.map_err(map)?;
            Ok((client, spawn_connection(connection, target.describe())))
        }
        Some(tls) => {
            let (client, connection) = pg.connect(tls).await.map_err(map)?;
            Ok((client, spawn_connection(connection, target.describe())))
        }
    }
}

fn spawn_connection<F>(connection: F, target: String) -> JoinHandle<()>
where
    F: Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            // The client sees this too, as an error on its next use, and reports it there with
            // context; here it is only a trace. A server error's Display is just "db error", so
            // show its message and SQLSTATE.
            match error.as_db_error() {
                Some(db) => tracing::debug!(
                    %target,
                    error = db.message(),
                    sqlstate = db.code().code(),
                    "connection to server closed with an error"
                ),
                None => {
                    tracing::debug!(%target, %error, "connection to server closed with an error")
                }
            }
        }
    })
}

/// Maps a `tokio_postgres` connection error to a [`ConnError`].
fn from_pg_error(err: tokio_postgres::Error, cfg: &ConnConfig, target: &HostTarget) -> ConnError {
    let described = target.describe();
    if let Some(db) = err.as_db_error() {
        return ConnError::from_startup(&described, &cfg.user, ServerError::from_db_error(db));
    }
    let text = error_chain(&err);
    if text.contains("password missing") {
        return ConnError::PasswordRequired {
            user: cfg.user.clone(),
            target: described,
        };
    }
    if let Some(reason) = text.strip_prefix("error performing TLS handshake: ") {
        return ConnError::Tls {
            target: described,
            reason: reason.to_owned(),
        };
    }
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return ConnError::Unreachable {
                target: described,
                source: std::io::Error::new(io.kind(), io.to_string()),
            };
        }
        source = s.source();
    }
    if err.is_closed() {
        return ConnError::Unreachable {
            target: described,
            source: std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            ),
        };
    }
    ConnError::Protocol {
        target: described,
        reason: text,
    }
}

/// The error's message followed by its sources', joined with `: `.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

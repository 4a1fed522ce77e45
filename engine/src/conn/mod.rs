//! Connection settings shared by the whole engine, and the one way to open a connection.
//!
//! Operators give pgwarp the connection strings they use with `psql`; every connection pgwarp
//! opens (source, target nodes, replication) must then behave as libpq would with the same
//! string and environment: same hosts, same password lookup, same TLS checks. This module is
//! that contract:
//!
//! ```text
//!  "host=... sslmode=..."  ─┐
//!  "postgres://..."         ├─► conninfo ─► ConnConfig ─┬─► connect()        (tokio_postgres)
//!  PG* variables, .pgpass  ─┘   (raw pairs)  (resolved)  └─► socket::open()   (replication client)
//! ```
//!
//! * [`ConnConfig`]: parsed and resolved settings; `Debug`/`Display` redact the password.
//! * [`connect`]: an ordinary `tokio_postgres` client, hosts tried in order.
//! * [`socket`]: a raw byte stream (TCP/Unix, TLS) for pgwarp's own protocol clients.
//! * [`tls`]: the rustls configuration matching `sslmode` / `sslrootcert`.

mod config;
mod connect;
pub mod conninfo;
pub mod env;
mod error;
mod host;
mod password;
pub mod pgpass;
pub mod socket;
mod sslmode;
pub mod tls;

#[cfg(test)]
mod config_tests;

pub use config::{
    ConnConfig, DEFAULT_APPLICATION_NAME, DEFAULT_PORT, DEFAULT_SOCKET_DIR, Keepalives,
};
pub(crate) use connect::for_each_host;
pub use connect::{connect, tokio_postgres_config};
pub use error::{ConnError, ServerError};
pub use host::{Host, HostTarget};
pub use password::Password;
pub use sslmode::{SslMode, SslRootCert};

//! [`Password`], a secret that cannot be printed, and where it comes from.
//!
//! libpq's order: the `password` option, then `PGPASSWORD`, then the password file (see
//! `pgpass.rs`), looked up per host. A `Password` prints as `********` in `Debug` and
//! `Display`, so settings that hold one can be logged and put in errors.

use std::fmt;
use std::path::Path;

use super::pgpass::{self, PgpassKey};
use super::{DEFAULT_SOCKET_DIR, Host, HostTarget};

/// A password that never appears in `Debug` or `Display` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(secret: impl Into<String>) -> Self {
        Password(secret.into())
    }

    /// The secret itself; only for the authentication exchange.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("********")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("********")
    }
}

/// Looks the password for `target` up in the password file, logging (and ignoring) a file
/// libpq would also refuse.
pub(super) fn password_from_file(
    file: &Path,
    target: &HostTarget,
    dbname: &str,
    user: &str,
) -> Option<Password> {
    let host = match &target.host {
        Host::Unix(dir) if dir == Path::new(DEFAULT_SOCKET_DIR) => "localhost".to_owned(),
        Host::Unix(dir) => dir.display().to_string(),
        Host::Tcp(name) => name.clone(),
    };
    let key = PgpassKey {
        host: &host,
        port: target.port,
        dbname,
        user,
    };
    match pgpass::lookup(file, key) {
        Ok(found) => found,
        Err(issue) => {
            tracing::warn!("{issue}");
            None
        }
    }
}

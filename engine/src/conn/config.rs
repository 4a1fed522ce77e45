//! [`ConnConfig`]: a libpq-compatible connection description, resolved once and then used by
//! every connection the engine opens (normal and replication).
//!
//! Resolution follows libpq's order for each setting: the connection string, then the `PG*`
//! environment variable, then the default. Defaults: host = the Unix socket directory
//! `/var/run/postgresql` when it exists, else `localhost`; port 5432; user = the OS user;
//! dbname = the user; sslmode = `prefer`; sslrootcert = `~/.postgresql/root.crt` when it exists.
//! Passwords come from the string, then `PGPASSWORD`, then the password file, per host.
//!
//! The password is held in [`Password`], whose `Debug` and `Display` print `********`:
//! a `ConnConfig` can be logged or put in an error without leaking it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::conninfo::{self, RawOptions};
use super::env::Environment;
use super::host::resolve_hosts;
use super::password::password_from_file;
use super::{ConnError, HostTarget, Password, SslMode, SslRootCert};

/// Default port, as libpq's `DEF_PGPORT`.
pub const DEFAULT_PORT: u16 = 5432;
/// Default Unix socket directory of Debian/Ubuntu builds of PostgreSQL.
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";
/// `application_name` used when none is configured.
pub const DEFAULT_APPLICATION_NAME: &str = "pgwarp";

/// TCP keepalive settings (libpq's `keepalives*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalives {
    /// Whether keepalives are enabled (default true).
    pub enabled: bool,
    /// Idle time before the first probe (`keepalives_idle`); system default when unset.
    pub idle: Option<Duration>,
    /// Time between probes (`keepalives_interval`).
    pub interval: Option<Duration>,
    /// Unanswered probes before the connection is dropped (`keepalives_count`).
    pub count: Option<u32>,
}

/// A resolved connection description. `Debug` and `Display` never show the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnConfig {
    /// Servers to try, in order; at least one.
    pub hosts: Vec<HostTarget>,
    /// Role name.
    pub user: String,
    /// Database name.
    pub dbname: String,
    /// TLS mode.
    pub sslmode: SslMode,
    /// Trusted roots, if any (explicit, `PGSSLROOTCERT`, or an existing `~/.postgresql/root.crt`).
    pub sslrootcert: Option<SslRootCert>,
    /// Whether to send the host name as TLS SNI (libpq `sslsni`, default on).
    pub sslsni: bool,
    /// `connect_timeout`: per host; `None` waits forever.
    pub connect_timeout: Option<Duration>,
    /// `application_name` (or `fallback_application_name`).
    pub application_name: Option<String>,
    /// Command-line options sent to the server at startup (`-c name=value ...`).
    pub options: Option<String>,
    /// TCP keepalives.
    pub keepalives: Keepalives,
    /// `tcp_user_timeout`.
    pub tcp_user_timeout: Option<Duration>,
}

impl ConnConfig {
    /// Parses a connection string or URI, reading `PG*` variables and the password file from
    /// this process's environment.
    pub fn parse(conninfo: &str) -> Result<ConnConfig, ConnError> {
        Self::parse_with_env(conninfo, &super::env::SystemEnv)
    }

    /// As [`ConnConfig::parse`], with an explicit environment (for tests and embedding).
    pub fn parse_with_env(conninfo: &str, env: &dyn Environment) -> Result<ConnConfig, ConnError> {
        let raw = conninfo::parse(conninfo)?;
        Self::from_raw(&raw, env)
    }

    /// The `application_name` to send: the configured one, else `pgwarp`.
    pub fn application_name(&self) -> &str {
        self.application_name
            .as_deref()
            .unwrap_or(DEFAULT_APPLICATION_NAME)
    }

    /// A copy connecting to another database on the same servers (passwords re-read from the
    /// password file are not re-resolved: the same password is used).
    pub fn with_dbname(&self, dbname: &str) -> ConnConfig {
        ConnConfig {
            dbname: dbname.to_owned(),
            ..self.clone()
        }
    }

    fn from_raw(raw: &RawOptions, env: &dyn Environment) -> Result<ConnConfig, ConnError> {
        let get = |key: &str, var: Option<&str>| -> Option<String> {
            raw.iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .or_else(|| var.and_then(|v| env.var(v)))
        };
        let user = match get("user", Some("PGUSER")).filter(|u| !u.is_empty()) {
            Some(user) => user,
            None => env.os_user().ok_or_else(|| {
                ConnError::InvalidConnInfo("could not determine the OS user name".to_owned())
            })?,
        };
        let dbname = get("dbname", Some("PGDATABASE"))
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| user.clone());
        let sslmode = match get("sslmode", Some("PGSSLMODE")).filter(|s| !s.is_empty()) {
            Some(s) => SslMode::parse(&s)?,
            None => SslMode::Prefer,
        };
        let sslrootcert = match get("sslrootcert", Some("PGSSLROOTCERT")).filter(|s| !s.is_empty())
        {
            Some(s) if s == "system" => Some(SslRootCert::System),
            Some(s) => Some(SslRootCert::File(PathBuf::from(s))),
            None => env
                .home_dir()
                .map(|home| home.join(".postgresql").join("root.crt"))
                .filter(|path| env.is_file(path))
                .map(SslRootCert::File),
        };
        if sslrootcert == Some(SslRootCert::System)
            && !matches!(sslmode, SslMode::VerifyFull)
            && get("sslmode", Some("PGSSLMODE")).is_some()
        {
            return Err(ConnError::InvalidConnInfo(format!(
                "weak sslmode \"{}\" may not be used with sslrootcert=system (use \"verify-full\")",
                sslmode.as_str()
            )));
        }
        // libpq: sslrootcert=system makes verify-full the default sslmode
        let sslmode = if sslrootcert == Some(SslRootCert::System) {
            SslMode::VerifyFull
        } else {
            sslmode
        };

        let connect_timeout = match get("connect_timeout", Some("PGCONNECT_TIMEOUT")) {
            Some(s) if !s.is_empty() => {
                let secs = parse_int::<i64>("connect_timeout", &s)?;
                // libpq: zero or negative waits forever; less than 2 seconds is raised to 2
                (secs > 0).then(|| Duration::from_secs(secs.max(2).unsigned_abs()))
            }
            _ => None,
        };
        let keepalives = Keepalives {
            enabled: get("keepalives", None).is_none_or(|v| v != "0"),
            idle: opt_secs("keepalives_idle", get("keepalives_idle", None))?,
            interval: opt_secs("keepalives_interval", get("keepalives_interval", None))?,
            count: get("keepalives_count", None)
                .filter(|s| !s.is_empty())
                .map(|s| parse_int::<u32>("keepalives_count", &s))
                .transpose()?,
        };
        let tcp_user_timeout = get("tcp_user_timeout", None)
            .filter(|s| !s.is_empty())
            .map(|s| parse_int::<u64>("tcp_user_timeout", &s).map(Duration::from_millis))
            .transpose()?
            .filter(|d| !d.is_zero());
        let application_name = get("application_name", Some("PGAPPNAME"))
            .or_else(|| get("fallback_application_name", None))
            .filter(|s| !s.is_empty());
        let options = get("options", Some("PGOPTIONS")).filter(|s| !s.is_empty());
        let sslsni = get("sslsni", None).is_none_or(|v| v != "0");
        if let Some(enc) = get("client_encoding", None)
            && !enc.eq_ignore_ascii_case("utf8")
            && !enc.eq_ignore_ascii_case("utf-8")
        {
            return Err(ConnError::InvalidConnInfo(format!(
                "client_encoding \"{enc}\" is not supported: pgwarp always uses UTF8"
            )));
        }

        let password = get("password", Some("PGPASSWORD"))
            .filter(|p| !p.is_empty())
            .map(Password::new);
        let passfile = get("passfile", Some("PGPASSFILE"))
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| env.home_dir().map(|h| h.join(".pgpass")));
        let hosts = resolve_hosts(
            get("host", Some("PGHOST")),
            get("hostaddr", Some("PGHOSTADDR")),
            get("port", Some("PGPORT")),
            env,
        )?;
        let hosts = hosts
            .into_iter()
            .map(|mut target| {
                target.password = password.clone().or_else(|| {
                    passfile
                        .as_deref()
                        .and_then(|file| password_from_file(file, &target, &dbname, &user))
                });
                target
            })
            .collect();

        Ok(ConnConfig {
            hosts,
            user,
            dbname,
            sslmode,
            sslrootcert,
            sslsni,
            connect_timeout,
            application_name,
            options,
            keepalives,
            tcp_user_timeout,
        })
    }
}

fn parse_int<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ConnError> {
    value.trim().parse().map_err(|_| {
        ConnError::InvalidConnInfo(format!(
            "invalid integer value \"{value}\" for connection option \"{key}\""
        ))
    })
}

fn opt_secs(key: &str, value: Option<String>) -> Result<Option<Duration>, ConnError> {
    value
        .filter(|s| !s.is_empty())
        .map(|s| parse_int::<u64>(key, &s).map(Duration::from_secs))
        .transpose()
}

/// Quotes a value for a keyword/value connection string.
fn quote_value(v: &str) -> String {
    if !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-,:".contains(c))
    {
        return v.to_owned();
    }
    let mut out = String::with_capacity(v.len() + 2);
    out.push('\'');
    for c in v.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

impl fmt::Display for ConnConfig {
    /// A keyword/value string with the password replaced by `********`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hosts: Vec<String> = self.hosts.iter().map(|h| h.host.to_string()).collect();
        let ports: Vec<String> = self.hosts.iter().map(|h| h.port.to_string()).collect();
        write!(
            f,
            "host={} port={}",
            quote_value(&hosts.join(",")),
            quote_value(&ports.join(","))
        )?;
        if self.hosts.iter().any(|h| h.hostaddr.is_some()) {
            let addrs: Vec<String> = self
                .hosts
                .iter()
                .map(|h| h.hostaddr.map(|a| a.to_string()).unwrap_or_default())
                .collect();
            write!(f, " hostaddr={}", quote_value(&addrs.join(",")))?;
        }
        write!(
            f,
            " user={} dbname={}",
            quote_value(&self.user),
            quote_value(&self.dbname)
        )?;
        if self.hosts.iter().any(|h| h.password.is_some()) {
            f.write_str(" password=********")?;
        }
        write!(f, " sslmode={}", self.sslmode.as_str())?;
        match &self.sslrootcert {
            Some(SslRootCert::File(p)) => {
                write!(f, " sslrootcert={}", quote_value(&p.display().to_string()))?
            }
            Some(SslRootCert::System) => f.write_str(" sslrootcert=system")?,
            None => {}
        }
        if let Some(t) = self.connect_timeout {
            write!(f, " connect_timeout={}", t.as_secs())?;
        }
        if let Some(a) = &self.application_name {
            write!(f, " application_name={}", quote_value(a))?;
        }
        if let Some(o) = &self.options {
            write!(f, " options={}", quote_value(o))?;
        }
        Ok(())
    }
}

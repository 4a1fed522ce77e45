//! Where to connect: the hosts of a connection string, each with its port, optional numeric
//! address and password.
//!
//! libpq accepts comma-separated lists in `host`, `hostaddr` and `port`: one port for every
//! host or one per host, an empty element meaning the default. A host starting with `/` is a
//! Unix socket directory (the socket file is `.s.PGSQL.<port>` inside it).

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::env::Environment;
use super::{ConnError, DEFAULT_PORT, DEFAULT_SOCKET_DIR, Password};

/// Where a server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A host name or IP address, reached over TCP.
    Tcp(String),
    /// A directory holding the socket file `.s.PGSQL.<port>`.
    Unix(PathBuf),
}

impl Host {
    fn parse(s: &str) -> Host {
        if s.starts_with('/') {
            Host::Unix(PathBuf::from(s))
        } else {
            Host::Tcp(s.to_owned())
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Tcp(name) => f.write_str(name),
            Host::Unix(dir) => write!(f, "{}", dir.display()),
        }
    }
}

/// One server to try, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostTarget {
    /// The host (name for TLS verification and the password file).
    pub host: Host,
    /// A numeric address to connect to instead of resolving `host` (libpq's `hostaddr`).
    pub hostaddr: Option<IpAddr>,
    /// The port (also names the Unix socket file).
    pub port: u16,
    /// The password for this host: explicit, `PGPASSWORD`, or from the password file.
    pub password: Option<Password>,
}

impl HostTarget {
    /// `host:port` for TCP or the socket file path, for messages.
    pub fn describe(&self) -> String {
        match &self.host {
            Host::Tcp(name) => {
                let shown = self
                    .hostaddr
                    .map_or_else(|| name.clone(), |a| a.to_string());
                if shown.contains(':') {
                    format!("[{shown}]:{}", self.port)
                } else {
                    format!("{shown}:{}", self.port)
                }
            }
            Host::Unix(dir) => self
                .socket_path()
                .map_or_else(|| dir.display().to_string(), |p| p.display().to_string()),
        }
    }

    /// The socket file for a Unix-socket host.
    pub fn socket_path(&self) -> Option<PathBuf> {
        match &self.host {
            Host::Unix(dir) => Some(dir.join(format!(".s.PGSQL.{}", self.port))),
            Host::Tcp(_) => None,
        }
    }
}

/// Splits the comma-separated `host`, `hostaddr` and `port` lists into targets (libpq's rules:
/// one port for all hosts or one per host; an empty element takes the default).
pub(super) fn resolve_hosts(
    host: Option<String>,
    hostaddr: Option<String>,
    port: Option<String>,
    env: &dyn Environment,
) -> Result<Vec<HostTarget>, ConnError> {
    let split = |s: &Option<String>| -> Vec<String> {
        s.as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| s.split(',').map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let hosts = split(&host);
    let addrs = split(&hostaddr);
    let ports = split(&port);
    let count = hosts.len().max(addrs.len()).max(1);
    if !hosts.is_empty() && !addrs.is_empty() && hosts.len() != addrs.len() {
        return Err(ConnError::InvalidConnInfo(format!(
            "could not match {} host names to {} hostaddr values",
            hosts.len(),
            addrs.len()
        )));
    }
    if ports.len() > 1 && ports.len() != count {
        return Err(ConnError::InvalidConnInfo(format!(
            "could not match {} port numbers to {count} hosts",
            ports.len()
        )));
    }
    let default_host = || {
        if env.is_dir(Path::new(DEFAULT_SOCKET_DIR)) {
            Host::Unix(PathBuf::from(DEFAULT_SOCKET_DIR))
        } else {
            Host::Tcp("localhost".to_owned())
        }
    };
    (0..count)
        .map(|i| {
            let addr = match addrs.get(i).map(|a| a.trim()).filter(|a| !a.is_empty()) {
                Some(a) => Some(a.parse::<IpAddr>().map_err(|_| {
                    ConnError::InvalidConnInfo(format!("invalid hostaddr value: \"{a}\""))
                })?),
                None => None,
            };
            let host = match hosts.get(i).map(|h| h.trim()).filter(|h| !h.is_empty()) {
                Some(h) => Host::parse(h),
                None => match addr {
                    Some(a) => Host::Tcp(a.to_string()),
                    None => default_host(),
                },
            };
            let port_text = ports
                .get(i)
                .or(ports.first())
                .map(|p| p.trim())
                .filter(|p| !p.is_empty());
            let port = match port_text {
                Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                    ConnError::InvalidConnInfo(format!("invalid port number: \"{p}\""))
                })?,
                None => DEFAULT_PORT,
            };
            Ok(HostTarget {
                host,
                hostaddr: addr,
                port,
                password: None,
            })
        })
        .collect()
}

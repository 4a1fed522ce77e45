//! Connections to the target's nodes, and the [`Connector`] the sink opens them with.
//!
//! Workers are reached at the host and port `pg_dist_node` names, with the coordinator's user,
//! database, password and TLS settings (what Citus itself does), unless the configuration
//! overrides a node. A plain PostgreSQL target is one node reached with the target's own
//! settings, every host of a multi-host string included.

use std::collections::BTreeMap;

use pgwarp_sink::{ConnectError, ConnectFuture, Connector};

use crate::citus::{Node, TargetAddr, Topology};
use crate::config::Settings;
use crate::conn::{ConnConfig, Host, HostTarget, connect};
use crate::error::Classify;

/// How to reach one node.
#[derive(Debug, Clone)]
pub struct NodeTarget {
    /// `host:port`, used in messages, progress rows and metrics.
    pub label: String,
    /// Connection settings.
    pub config: ConnConfig,
}

/// The connection settings of every node of `topology`, in node order.
pub fn node_targets(
    topology: &Topology,
    target: &ConnConfig,
    overrides: &BTreeMap<(String, u16), ConnConfig>,
) -> Vec<NodeTarget> {
    topology
        .nodes
        .iter()
        .map(|node| node_target(node, target, overrides))
        .collect()
}

/// How to reach one node: its label and connection settings (see [`node_config`]).
pub fn node_target(
    node: &Node,
    target: &ConnConfig,
    overrides: &BTreeMap<(String, u16), ConnConfig>,
) -> NodeTarget {
    NodeTarget {
        label: node.to_string(),
        config: node_config(node, target, overrides),
    }
}

/// The connection settings of one node: the override for its `host:port` if the
/// configuration has one, else the target's settings with the node's host and port.
pub fn node_config(
    node: &Node,
    target: &ConnConfig,
    overrides: &BTreeMap<(String, u16), ConnConfig>,
) -> ConnConfig {
    if let Some(cfg) = overrides.get(&(node.host.clone(), node.port)) {
        return cfg.with_dbname(&target.dbname);
    }
    let is_target = target.hosts.iter().any(|h| {
        h.port == node.port
            && (h.host.to_string() == node.host
                || h.hostaddr.is_some_and(|a| a.to_string() == node.host))
    });
    if is_target {
        return target.clone();
    }
    let password = target.hosts.first().and_then(|h| h.password.clone());
    let host = if node.host.starts_with('/') {
        Host::Unix(node.host.clone().into())
    } else {
        Host::Tcp(node.host.clone())
    };
    ConnConfig {
        hosts: vec![HostTarget {
            host,
            hostaddr: None,
            port: node.port,
            password,
        }],
        ..target.clone()
    }
}

/// Opens sink connections with [`crate::conn::connect`] (TLS, password file, multi-host).
#[derive(Debug, Clone)]
pub struct NodeConnector {
    config: ConnConfig,
}

impl NodeConnector {
    /// A connector for `config`.
    pub fn new(config: ConnConfig) -> NodeConnector {
        NodeConnector { config }
    }
}

impl Connector for NodeConnector {
    fn connect(&self) -> ConnectFuture<'_> {
        Box::pin(async move {
            match connect(&self.config).await {
                Ok((client, _task)) => Ok(client),
                Err(err) => Err(ConnectError {
                    transient: err.is_transient(),
                    source: Box::new(err),
                }),
            }
        })
    }
}

/// The address a plain target's topology names its node by.
pub fn target_addr(settings: &Settings) -> TargetAddr {
    match settings.target.hosts.first() {
        Some(h) => TargetAddr {
            host: match &h.host {
                Host::Tcp(name) => name.clone(),
                Host::Unix(dir) => dir.display().to_string(),
            },
            port: h.port,
        },
        None => TargetAddr {
            host: "localhost".into(),
            port: 5432,
        },
    }
}

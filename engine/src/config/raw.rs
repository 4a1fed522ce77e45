//! The configuration file as written: every field optional, unknown keys rejected.
//!
//! ```toml
//! # pgwarp.toml
//! source = "host=old-db dbname=shop user=migrator"
//! target = "postgres://migrator@citus-coordinator/shop?sslmode=verify-full"
//! tables = ["public.users", "public.orders", "public.products"]   # or: schemas = ["public"]
//! slot = "pgwarp"                 # default "pgwarp"
//! publication = "pgwarp"          # default "pgwarp"
//! parallel = 4                    # snapshot reader connections, default 4
//! spill_dir = "/var/tmp/pgwarp"   # default: $XDG_STATE_HOME/pgwarp, else the temp dir
//! metrics_addr = "127.0.0.1:9187" # default: no metrics endpoint
//! log_format = "text"             # or "json"
//! progress = "auto"               # progress bars: "auto" (on a terminal), "always", "never"
//! node_timeout = "10min"          # a node silent this long counts as lost (reconnect, replay)
//! streamed_apply = "live"         # large in-progress transactions: "live" or "at-commit"
//!
//! [limits]
//! queue_bytes = "16MiB"           # per node: changes waiting to be applied
//! batch_bytes = "8MiB"            # per node: largest batch applied in one transaction
//! transaction_memory = "64MiB"    # streamed transactions kept in memory before spilling
//! snapshot_batch_bytes = "16MiB"  # per snapshot reader: rows gathered for the nodes
//! chunk_bytes = "64MiB"           # table size per snapshot chunk
//!
//! [nodes."10.0.0.7:5432"]         # a worker as pg_dist_node names it
//! conninfo = "host=10.0.0.7 port=5432 sslmode=require"   # instead of the coordinator's settings
//! ```
//!
//! Sizes are integers (bytes) or strings with a unit (`kB`/`KiB`, `MB`/`MiB`, `GB`/`GiB`, all
//! powers of 1024, as PostgreSQL reads them). This struct only mirrors the file; meaning and
//! checks live in [`super::Settings`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Source connection string (keyword/value or URI).
    pub source: Option<String>,
    /// Target connection string: the Citus coordinator or a plain PostgreSQL.
    pub target: Option<String>,
    /// Tables to sync (`name` or `schema.name`).
    pub tables: Option<Vec<String>>,
    /// Schemas whose tables to sync (instead of `tables`).
    pub schemas: Option<Vec<String>>,
    /// Replication slot name.
    pub slot: Option<String>,
    /// Publication name.
    pub publication: Option<String>,
    /// Snapshot reader connections.
    pub parallel: Option<u32>,
    /// Where streamed transactions larger than the memory budget are spilled.
    pub spill_dir: Option<PathBuf>,
    /// `host:port` for the Prometheus endpoint.
    pub metrics_addr: Option<String>,
    /// `text` or `json`.
    pub log_format: Option<String>,
    /// `auto`, `always` or `never`.
    pub progress: Option<String>,
    /// How long a node may leave a connection attempt or a batch unanswered: `"30s"`,
    /// `"10min"`, `"1h"`, or a number of seconds.
    pub node_timeout: Option<RawDuration>,
    /// `live` or `at-commit`: when a large transaction the source streams while in progress
    /// is applied.
    pub streamed_apply: Option<String>,
    /// Memory and batch limits.
    #[serde(default)]
    pub limits: RawLimits,
    /// Per-node connection overrides, keyed by `host:port` as `pg_dist_node` has them.
    #[serde(default)]
    pub nodes: BTreeMap<String, RawNode>,
}

/// `[limits]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Per node: bytes of changes queued for the node's writer.
    pub queue_bytes: Option<RawSize>,
    /// Per node: bytes of changes applied in one transaction at most.
    pub batch_bytes: Option<RawSize>,
    /// Bytes of streamed, uncommitted transactions kept in memory before spilling to disk.
    pub transaction_memory: Option<RawSize>,
    /// Per snapshot reader: bytes of rows gathered for the nodes before waiting for a writer.
    pub snapshot_batch_bytes: Option<RawSize>,
    /// Table bytes per snapshot chunk.
    pub chunk_bytes: Option<RawSize>,
}

/// `[nodes."host:port"]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    /// Connection string used for this node instead of the target's settings.
    pub conninfo: String,
}

/// A duration: seconds, or text with a unit.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum RawDuration {
    /// Seconds.
    Seconds(u64),
    /// `"30s"`, `"10min"`, `"1h"`, `"500ms"`.
    Text(String),
}

/// A size: bytes, or text with a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawSize {
    /// A number of bytes.
    Bytes(u64),
    /// `"64MiB"`, `"512kB"`, `"1GB"`.
    Text(String),
}

/// Written by hand (not `untagged`) so a wrong value gets a message about sizes rather than
/// serde's "did not match any variant"; the TOML error around it shows the key and line.
impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;

        impl serde::de::Visitor<'_> for SizeVisitor {
            type Value = RawSize;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a size: a number of bytes or a string such as \"64MiB\"")
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawSize, E> {
                Ok(RawSize::Bytes(v))
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawSize, E> {
                u64::try_from(v)
                    .map(RawSize::Bytes)
                    .map_err(|_| E::custom(format!("a size cannot be negative: {v}")))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawSize, E> {
                Ok(RawSize::Text(v.to_owned()))
            }
        }

        deserializer.deserialize_any(SizeVisitor)
    }
}

impl RawConfig {
    /// Parses the text of a configuration file.
    pub fn from_toml(text: &str) -> Result<RawConfig, toml::de::Error> {
        toml::from_str(text)
    }

    /// Overlays `top`: every field set there replaces the one here (command line and
    /// environment over the file).
    pub fn overlay(mut self, top: RawConfig) -> RawConfig {
        fn take<T>(dst: &mut Option<T>, src: Option<T>) {
            if src.is_some() {
                *dst = src;
            }
        }
        // a table list on top replaces a schema list below, and the other way round
        if top.tables.is_some() || top.schemas.is_some() {
            self.tables = top.tables;
            self.schemas = top.schemas;
        }
        take(&mut self.source, top.source);
        take(&mut self.target, top.target);
        take(&mut self.slot, top.slot);
        take(&mut self.publication, top.publication);
        take(&mut self.parallel, top.parallel);
        take(&mut self.spill_dir, top.spill_dir);
        take(&mut self.metrics_addr, top.metrics_addr);
        take(&mut self.log_format, top.log_format);
        take(&mut self.progress, top.progress);
        take(&mut self.node_timeout, top.node_timeout);
        take(&mut self.streamed_apply, top.streamed_apply);
        take(&mut self.limits.queue_bytes, top.limits.queue_bytes);
        take(&mut self.limits.batch_bytes, top.limits.batch_bytes);
        take(
            &mut self.limits.transaction_memory,
            top.limits.transaction_memory,
        );
        take(
            &mut self.limits.snapshot_batch_bytes,
            top.limits.snapshot_batch_bytes,
        );
        take(&mut self.limits.chunk_bytes, top.limits.chunk_bytes);
        self.nodes.extend(top.nodes);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_file() {
        let raw = RawConfig::from_toml(
            r#"
            source = "host=a"
            target = "host=b"
            schemas = ["public"]
            parallel = 8
            [limits]
            queue_bytes = "32MiB"
            batch_bytes = 1048576
            [nodes."10.0.0.7:5432"]
            conninfo = "host=10.0.0.7"
            "#,
        )
        .unwrap();
        assert_eq!(raw.source.as_deref(), Some("host=a"));
        assert_eq!(raw.parallel, Some(8));
        assert_eq!(
            raw.limits.queue_bytes,
            Some(RawSize::Text("32MiB".to_owned()))
        );
        assert_eq!(raw.limits.batch_bytes, Some(RawSize::Bytes(1_048_576)));
        assert_eq!(raw.nodes["10.0.0.7:5432"].conninfo, "host=10.0.0.7");
    }

    #[test]
    fn rejects_unknown_keys() {
        let err = RawConfig::from_toml("sorce = \"host=a\"").unwrap_err();
        assert!(err.to_string().contains("unknown field `sorce`"), "{err}");
        let err = RawConfig::from_toml("[limits]\nqueue = 1").unwrap_err();
        assert!(err.to_string().contains("unknown field `queue`"), "{err}");
    }

    #[test]
    fn overlay_replaces_set_fields_only() {
        let file = RawConfig {
            source: Some("host=file".into()),
            target: Some("host=t".into()),
            schemas: Some(vec!["public".into()]),
            ..Default::default()
        };
        let cli = RawConfig {
            source: Some("host=cli".into()),
            tables: Some(vec!["t1".into()]),
            ..Default::default()
        };
        let merged = file.overlay(cli);
        assert_eq!(merged.source.as_deref(), Some("host=cli"));
        assert_eq!(merged.target.as_deref(), Some("host=t"));
        assert_eq!(merged.tables, Some(vec!["t1".to_owned()]));
        assert_eq!(merged.schemas, None);
    }
}

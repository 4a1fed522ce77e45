//! Validated settings: what the engine runs with, every value checked and typed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::conn::ConnConfig;

use super::ConfigError;
use super::raw::{RawConfig, RawDuration, RawSize};

/// Default slot name.
pub const DEFAULT_SLOT: &str = "pgwarp";
/// Default publication name.
pub const DEFAULT_PUBLICATION: &str = "pgwarp";
/// Default snapshot reader connections.
pub const DEFAULT_PARALLEL: usize = 4;

const MIB: u64 = 1024 * 1024;

/// Which tables to sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableScope {
    /// These tables (`name` or `schema.name`, as SQL resolves them).
    Tables(Vec<String>),
    /// Every table of these schemas.
    Schemas(Vec<String>),
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// When progress bars are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// On a terminal only.
    #[default]
    Auto,
    /// Always (to stderr).
    Always,
    /// Never: logs only.
    Never,
}

/// When a large transaction that the source streams while it is still in progress
/// (`streaming = on`, protocol 2 and later) is applied on the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StreamedApply {
    /// As it arrives, in an open transaction on a second connection per node, committed when
    /// the source commits and rolled back when it aborts: no spill and no pause at the commit.
    /// One such transaction at a time; others streamed meanwhile are kept until their commit.
    #[default]
    Live,
    /// Kept (in memory up to `transaction_memory`, then in `spill_dir`) and applied when the
    /// source commits it: the nodes see nothing of it before.
    AtCommit,
}

/// Memory and batch limits (bytes). Memory stays bounded by these, never by table or
/// transaction size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Per node: changes queued for the node writer (a full queue blocks the router). 16 MiB.
    pub queue_bytes: u64,
    /// Per node: largest batch applied in one transaction. 8 MiB.
    pub batch_bytes: u64,
    /// Streamed transactions kept in memory before spilling to `spill_dir`. 64 MiB.
    pub transaction_memory: u64,
    /// Per snapshot reader: rows gathered for the nodes before the reader waits for a writer
    /// (as much again may be queued or being written); a batch's COPY into a shard gets about
    /// this divided by the table's shards. 16 MiB.
    pub snapshot_batch_bytes: u64,
    /// Table bytes per snapshot chunk. 64 MiB.
    pub chunk_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            queue_bytes: 16 * MIB,
            batch_bytes: 8 * MIB,
            transaction_memory: 64 * MIB,
            snapshot_batch_bytes: 16 * MIB,
            chunk_bytes: 64 * MIB,
        }
    }
}

/// Everything the commands run with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The source database.
    pub source: ConnConfig,
    /// The target: Citus coordinator or plain PostgreSQL.
    pub target: ConnConfig,
    /// The tables, when given (`sync` and `check` need them).
    pub scope: Option<TableScope>,
    /// Replication slot name.
    pub slot: String,
    /// Publication name.
    pub publication: String,
    /// Snapshot reader connections.
    pub parallel: usize,
    /// Spill directory for large streamed transactions.
    pub spill_dir: PathBuf,
    /// Prometheus endpoint address.
    pub metrics_addr: Option<SocketAddr>,
    /// Log format.
    pub log_format: LogFormat,
    /// Progress bars.
    pub progress: ProgressMode,
    /// Limits.
    pub limits: Limits,
    /// Per-node connection settings, keyed by (`host`, `port`) as `pg_dist_node` has them.
    pub nodes: BTreeMap<(String, u16), ConnConfig>,
    /// How long a node may leave a connection attempt or a batch unanswered before the
    /// connection counts as lost (it is dropped, and the batch replayed on a new one): what
    /// detects a silent network cut, which TCP keepalives do not while a request is
    /// outstanding. 10 minutes.
    pub node_timeout: Duration,
    /// When streamed (large, in-progress) transactions are applied. Live.
    pub streamed_apply: StreamedApply,
}

/// Default of [`Settings::node_timeout`].
pub const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_secs(600);

impl Settings {
    /// The table scope, or an error naming the missing option.
    pub fn require_scope(&self) -> Result<&TableScope, ConfigError> {
        self.scope.as_ref().ok_or(ConfigError::Missing(
            "no tables chosen: give --tables or --schemas (or tables/schemas in the config file)",
        ))
    }
}

impl RawConfig {
    /// Checks every value and resolves connection strings (with `PG*` variables and the
    /// password file, as libpq does).
    pub fn validate(self) -> Result<Settings, ConfigError> {
        let source = self.source.ok_or(ConfigError::Missing(
            "no source given: use --source, PGWARP_SOURCE or source in the config file",
        ))?;
        let target = self.target.ok_or(ConfigError::Missing(
            "no target given: use --target, PGWARP_TARGET or target in the config file",
        ))?;
        let source = ConnConfig::parse(&source).map_err(|e| ConfigError::Conn {
            which: "source".into(),
            error: e,
        })?;
        let target = ConnConfig::parse(&target).map_err(|e| ConfigError::Conn {
            which: "target".into(),
            error: e,
        })?;
        let scope = match (self.tables, self.schemas) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid(
                    "give either tables or schemas, not both".into(),
                ));
            }
            (Some(t), None) => Some(TableScope::Tables(names("table", t)?)),
            (None, Some(s)) => Some(TableScope::Schemas(names("schema", s)?)),
            (None, None) => None,
        };
        let slot = self.slot.unwrap_or_else(|| DEFAULT_SLOT.to_owned());
        check_slot_name(&slot)?;
        let publication = self
            .publication
            .unwrap_or_else(|| DEFAULT_PUBLICATION.to_owned());
        if publication.is_empty() || publication.len() > 63 {
            return Err(ConfigError::Invalid(format!(
                "publication name \"{publication}\" must be 1 to 63 bytes"
            )));
        }
        let parallel = match self.parallel {
            None => DEFAULT_PARALLEL,
            Some(n @ 1..=64) => n as usize,
            Some(n) => {
                return Err(ConfigError::Invalid(format!(
                    "parallel must be 1 to 64, not {n}"
                )));
            }
        };
        let limits = limits(&self.limits)?;
        let metrics_addr = self
            .metrics_addr
            .map(|a| {
                a.parse::<SocketAddr>().map_err(|_| {
                    ConfigError::Invalid(format!(
                        "metrics_addr \"{a}\" is not an address:port such as 127.0.0.1:9187"
                    ))
                })
            })
            .transpose()?;
        let log_format = match self.log_format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::Invalid(format!(
                    "log_format \"{other}\" is not \"text\" or \"json\""
                )));
            }
        };
        let progress = match self.progress.as_deref() {
            None | Some("auto") => ProgressMode::Auto,
            Some("always") => ProgressMode::Always,
            Some("never") => ProgressMode::Never,
            Some(other) => {
                return Err(ConfigError::Invalid(format!(
                    "progress \"{other}\" is not \"auto\", \"always\" or \"never\""
                )));
            }
        };
        let streamed_apply = match self.streamed_apply.as_deref() {
            None | Some("live") => StreamedApply::Live,
            Some("at-commit") => StreamedApply::AtCommit,
            Some(other) => {
                return Err(ConfigError::Invalid(format!(
                    "streamed_apply \"{other}\" is not \"live\" or \"at-commit\""
                )));
            }
        };
        let node_timeout = match &self.node_timeout {
            None => DEFAULT_NODE_TIMEOUT,
            Some(raw) => match parse_duration(raw) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => {
                    return Err(ConfigError::Invalid(
                        "node_timeout must be more than zero".into(),
                    ));
                }
                Err(reason) => return Err(ConfigError::Invalid(format!("node_timeout: {reason}"))),
            },
        };
        let mut nodes = BTreeMap::new();
        for (key, node) in self.nodes {
            let (host, port) = key
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse::<u16>().ok()?)))
                .ok_or_else(|| {
                    ConfigError::Invalid(format!("node key \"{key}\" is not host:port"))
                })?;
            let cfg = ConnConfig::parse(&node.conninfo).map_err(|e| ConfigError::Conn {
                which: format!("node {key}"),
                error: e,
            })?;
            nodes.insert((host.to_owned(), port), cfg);
        }
        Ok(Settings {
            source,
            target,
            scope,
            spill_dir: self.spill_dir.unwrap_or_else(|| default_spill_dir(&slot)),
            slot,
            publication,
            parallel,
            metrics_addr,
            log_format,
            progress,
            limits,
            nodes,
            node_timeout,
            streamed_apply,
        })
    }
}

fn names(what: &str, list: Vec<String>) -> Result<Vec<String>, ConfigError> {
    let list: Vec<String> = list
        .iter()
        .flat_map(|s| split_sql_list(s))
        .filter(|s| !s.is_empty())
        .collect();
    if list.is_empty() {
        return Err(ConfigError::Invalid(format!("the {what} list is empty")));
    }
    Ok(list)
}

/// Splits `a, "b,c".d` on the commas outside double quotes (SQL identifier quoting, where
/// `""` inside quotes is a quote and toggles twice), trimming each part.
fn split_sql_list(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => parts.push(std::mem::take(&mut current).trim().to_owned()),
            c => current.push(c),
        }
    }
    parts.push(current.trim().to_owned());
    parts
}

/// Slot names: lowercase letters, digits and underscores, at most 63 bytes (PostgreSQL's rule).
fn check_slot_name(slot: &str) -> Result<(), ConfigError> {
    let ok = !slot.is_empty()
        && slot.len() <= 63
        && slot
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid(format!(
            "slot name \"{slot}\" may contain only lowercase letters, digits and underscores \
             (1 to 63 bytes)"
        )))
    }
}

fn limits(raw: &super::raw::RawLimits) -> Result<Limits, ConfigError> {
    let d = Limits::default();
    let get = |name: &str, v: &Option<RawSize>, default: u64, min: u64| -> Result<u64, _> {
        let value = match v {
            None => return Ok(default),
            Some(v) => parse_size(v)
                .map_err(|reason| ConfigError::Invalid(format!("limits.{name}: {reason}")))?,
        };
        if value < min {
            return Err(ConfigError::Invalid(format!(
                "limits.{name} must be at least {min} bytes, not {value}"
            )));
        }
        Ok(value)
    };
    let limits = Limits {
        queue_bytes: get("queue_bytes", &raw.queue_bytes, d.queue_bytes, 64 * 1024)?,
        batch_bytes: get("batch_bytes", &raw.batch_bytes, d.batch_bytes, 16 * 1024)?,
        transaction_memory: get(
            "transaction_memory",
            &raw.transaction_memory,
            d.transaction_memory,
            64 * 1024,
        )?,
        snapshot_batch_bytes: get(
            "snapshot_batch_bytes",
            &raw.snapshot_batch_bytes,
            d.snapshot_batch_bytes,
            16 * 1024,
        )?,
        chunk_bytes: get("chunk_bytes", &raw.chunk_bytes, d.chunk_bytes, 8192)?,
    };
    if limits.batch_bytes > limits.queue_bytes {
        return Err(ConfigError::Invalid(format!(
            "limits.batch_bytes ({}) must not exceed limits.queue_bytes ({})",
            limits.batch_bytes, limits.queue_bytes
        )));
    }
    Ok(limits)
}

/// Parses `1048576`, `512kB`, `64MiB`, `1 GB` (units are powers of 1024, as in PostgreSQL).
pub fn parse_size(raw: &RawSize) -> Result<u64, String> {
    let text = match raw {
        RawSize::Bytes(n) => return Ok(*n),
        RawSize::Text(t) => t.trim(),
    };
    let (n, unit) =
        number_and_unit(text).ok_or_else(|| format!("\"{text}\" is not a size such as 64MiB"))?;
    let factor: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => MIB,
        "g" | "gb" | "gib" => 1024 * MIB,
        _ => return Err(format!("unknown unit in \"{text}\" (use kB, MB or GB)")),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("\"{text}\" is too large"))
}

/// Parses `90`, `30s`, `500ms`, `10min`, `1h` (a bare number is seconds).
pub fn parse_duration(raw: &RawDuration) -> Result<Duration, String> {
    let text = match raw {
        RawDuration::Seconds(n) => return Ok(Duration::from_secs(*n)),
        RawDuration::Text(t) => t.trim(),
    };
    let (n, unit) = number_and_unit(text)
        .ok_or_else(|| format!("\"{text}\" is not a duration such as 30s or 10min"))?;
    let millis: u64 = match unit.as_str() {
        "ms" => 1,
        "" | "s" => 1000,
        "min" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("unknown unit in \"{text}\" (use ms, s, min or h)")),
    };
    n.checked_mul(millis)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("\"{text}\" is too long"))
}

/// Splits `64MiB` into its leading number and its unit (trimmed, lowercased); `None` when the
/// text does not start with a number that fits a `u64`.
fn number_and_unit(text: &str) -> Option<(u64, String)> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    Some((digits.parse().ok()?, unit.trim().to_ascii_lowercase()))
}

/// `$XDG_STATE_HOME/pgwarp/spill-<slot>` when `XDG_STATE_HOME` is set, else
/// `<temp dir>/pgwarp-spill-<slot>`.
fn default_spill_dir(slot: &str) -> PathBuf {
    match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        Some(state) => PathBuf::from(state)
            .join("pgwarp")
            .join(format!("spill-{slot}")),
        None => std::env::temp_dir().join(format!("pgwarp-spill-{slot}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> RawConfig {
        RawConfig {
            source: Some("host=127.0.0.1 user=u dbname=a".into()),
            target: Some("host=127.0.0.1 user=u dbname=b".into()),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_are_documented_values() {
        let s = base().validate().unwrap();
        assert_eq!(s.slot, "pgwarp");
        assert_eq!(s.publication, "pgwarp");
        assert_eq!(s.parallel, 4);
        assert_eq!(s.limits, Limits::default());
        assert_eq!(s.limits.queue_bytes, 16 * MIB);
        assert_eq!(s.scope, None);
        assert!(s.require_scope().is_err());
        assert_eq!(s.streamed_apply, StreamedApply::Live);
    }

    #[test]
    fn streamed_apply_is_live_or_at_commit() {
        let with = |v: &str| {
            let mut raw = base();
            raw.streamed_apply = Some(v.into());
            raw.validate().map(|s| s.streamed_apply)
        };
        assert_eq!(with("live").unwrap(), StreamedApply::Live);
        assert_eq!(with("at-commit").unwrap(), StreamedApply::AtCommit);
        let err = with("later").unwrap_err().to_string();
        assert!(err.contains("streamed_apply \"later\""), "{err}");
    }

    #[test]
    fn sizes_parse_with_units() {
        let t = |s: &str| parse_size(&RawSize::Text(s.into()));
        assert_eq!(t("512kB"), Ok(512 * 1024));
        assert_eq!(t("64MiB"), Ok(64 * MIB));
        assert_eq!(t("1 GB"), Ok(1024 * MIB));
        assert_eq!(t("100"), Ok(100));
        assert!(t("12 parsecs").is_err());
        assert!(t("MB").is_err());
    }

    #[test]
    fn invalid_values_are_rejected_with_the_option_name() {
        let mut raw = base();
        raw.slot = Some("Bad-Slot".into());
        assert!(
            raw.validate()
                .unwrap_err()
                .to_string()
                .contains("slot name")
        );
        let mut raw = base();
        raw.parallel = Some(0);
        assert!(raw.validate().unwrap_err().to_string().contains("parallel"));
        let mut raw = base();
        raw.limits.batch_bytes = Some(RawSize::Text("64MiB".into()));
        let err = raw.validate().unwrap_err().to_string();
        assert!(err.contains("limits.batch_bytes"), "{err}");
        let mut raw = base();
        raw.tables = Some(vec!["a".into()]);
        raw.schemas = Some(vec!["s".into()]);
        assert!(raw.validate().is_err());
    }

    #[test]
    fn commas_inside_quoted_names_do_not_split() {
        assert_eq!(
            split_sql_list(r#"a, "s"."it's a\b.c,d" ,"x""y,z".t"#),
            vec![r#"a"#, r#""s"."it's a\b.c,d""#, r#""x""y,z".t"#]
        );
        assert_eq!(split_sql_list(""), vec![""]);
    }

    #[test]
    fn table_lists_split_on_commas() {
        let mut raw = base();
        raw.tables = Some(vec!["a, s.b".into(), "c".into()]);
        let s = raw.validate().unwrap();
        assert_eq!(
            s.scope,
            Some(TableScope::Tables(vec![
                "a".into(),
                "s.b".into(),
                "c".into()
            ]))
        );
    }

    #[test]
    fn node_overrides_are_keyed_by_host_and_port() {
        let mut raw = base();
        raw.nodes.insert(
            "10.0.0.7:6432".into(),
            super::super::raw::RawNode {
                conninfo: "host=10.0.0.7 port=6432 user=u".into(),
            },
        );
        let s = raw.validate().unwrap();
        assert!(s.nodes.contains_key(&("10.0.0.7".to_owned(), 6432)));
    }
}

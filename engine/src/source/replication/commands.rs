//! The text of replication commands, built from typed options (pure functions, unit-tested).
//!
//! Syntax follows the PostgreSQL docs ("Streaming Replication Protocol"):
//!
//! * `CREATE_REPLICATION_SLOT name [TEMPORARY] LOGICAL pgoutput (SNAPSHOT 'export', ...)` on
//!   PostgreSQL 15+; the older keyword form (`EXPORT_SNAPSHOT` / `NOEXPORT_SNAPSHOT` /
//!   `USE_SNAPSHOT`) below 15.
//! * `START_REPLICATION SLOT name LOGICAL X/Y (proto_version 'N', publication_names '...', ...)`.
//!
//! The pgoutput protocol version defaults to the highest the server speaks: 1 below PG 14,
//! 2 on 14 (streaming of large transactions), 3 on 15 (two-phase), 4 on 16+ (parallel
//! streaming; pgwarp still asks for `streaming 'on'`, as it applies serially).

use std::time::Duration;

use pgwarp_decoder::{Lsn, ProtocolVersion};

use super::super::SourceError;
use super::super::quote::{publication_names_literal, quote_ident};

/// What `CREATE_REPLICATION_SLOT` does with the slot's snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotAction {
    /// Export it for other sessions to import with `SET TRANSACTION SNAPSHOT`; it stays valid
    /// until the next command on this connection or its end.
    Export,
    /// Do not keep it.
    Nothing,
    /// Use it in the current transaction of this connection (which must be open).
    Use,
}

/// Options of `CREATE_REPLICATION_SLOT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateSlotOptions {
    /// Dropped when the connection ends.
    pub temporary: bool,
    /// The snapshot.
    pub snapshot: SnapshotAction,
    /// Decode prepared transactions at PREPARE time (PG 15+).
    pub two_phase: bool,
}

impl Default for CreateSlotOptions {
    fn default() -> Self {
        CreateSlotOptions {
            temporary: false,
            snapshot: SnapshotAction::Export,
            two_phase: false,
        }
    }
}

/// Options of `START_REPLICATION` and of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamOptions {
    /// Publications to stream (at least one).
    pub publications: Vec<String>,
    /// pgoutput protocol version; `None` picks the highest the server supports.
    pub proto_version: Option<ProtocolVersion>,
    /// Column values in binary send format (PG 14+).
    pub binary: bool,
    /// Stream large in-progress transactions (protocol 2+).
    pub streaming: bool,
    /// Forward `pg_logical_emit_message` messages (PG 14+).
    pub messages: bool,
    /// Decode prepared transactions (protocol 3+, slot created with two-phase).
    pub two_phase: bool,
    /// How often to send a standby status update; clamped to a third of the server's
    /// `wal_sender_timeout`.
    pub status_interval: Duration,
}

impl StreamOptions {
    /// Defaults: binary, streaming and messages on, status every second.
    pub fn new<S: Into<String>>(publications: impl IntoIterator<Item = S>) -> Self {
        StreamOptions {
            publications: publications.into_iter().map(Into::into).collect(),
            proto_version: None,
            binary: true,
            streaming: true,
            messages: true,
            two_phase: false,
            status_interval: Duration::from_secs(1),
        }
    }
}

/// The highest pgoutput protocol a server of this version speaks.
pub fn max_proto_version(server_version_num: u32) -> ProtocolVersion {
    match server_version_num {
        v if v >= 160_000 => ProtocolVersion::V4,
        v if v >= 150_000 => ProtocolVersion::V3,
        v if v >= 140_000 => ProtocolVersion::V2,
        _ => ProtocolVersion::V1,
    }
}

fn version_text(server_version_num: u32) -> String {
    let major = server_version_num / 10_000;
    if major >= 10 {
        format!("{major}.{}", server_version_num % 10_000)
    } else {
        format!(
            "{}.{}.{}",
            major,
            (server_version_num / 100) % 100,
            server_version_num % 100
        )
    }
}

fn require(feature: &str, required: u32, server_version_num: u32) -> Result<(), SourceError> {
    if server_version_num >= required * 10_000 {
        Ok(())
    } else {
        Err(SourceError::Unsupported {
            feature: feature.to_owned(),
            required,
            found: version_text(server_version_num),
        })
    }
}

/// `CREATE_REPLICATION_SLOT ...` for a server of `server_version_num`.
pub fn create_slot_command(
    name: &str,
    opts: &CreateSlotOptions,
    server_version_num: u32,
) -> Result<String, SourceError> {
    let temporary = if opts.temporary { " TEMPORARY" } else { "" };
    let mut sql = format!(
        "CREATE_REPLICATION_SLOT {}{temporary} LOGICAL pgoutput",
        quote_ident(name)
    );
    if server_version_num >= 150_000 {
        let snapshot = match opts.snapshot {
            SnapshotAction::Export => "export",
            SnapshotAction::Nothing => "nothing",
            SnapshotAction::Use => "use",
        };
        sql.push_str(&format!(" (SNAPSHOT '{snapshot}'"));
        if opts.two_phase {
            sql.push_str(", TWO_PHASE true");
        }
        sql.push(')');
    } else {
        if opts.two_phase {
            require("a two-phase replication slot", 15, server_version_num)?;
        }
        sql.push_str(match opts.snapshot {
            SnapshotAction::Export => " EXPORT_SNAPSHOT",
            SnapshotAction::Nothing => " NOEXPORT_SNAPSHOT",
            SnapshotAction::Use => " USE_SNAPSHOT",
        });
    }
    Ok(sql)
}

/// `DROP_REPLICATION_SLOT name [WAIT]`.
pub fn drop_slot_command(name: &str, wait: bool) -> String {
    format!(
        "DROP_REPLICATION_SLOT {}{}",
        quote_ident(name),
        if wait { " WAIT" } else { "" }
    )
}

/// `START_REPLICATION SLOT ...` and the protocol version it asks for.
pub fn start_replication_command(
    slot: &str,
    start: Lsn,
    opts: &StreamOptions,
    server_version_num: u32,
) -> Result<(String, ProtocolVersion), SourceError> {
    if opts.publications.is_empty() {
        return Err(SourceError::InvalidName {
            what: "publication",
            name: String::new(),
            reason: "at least one publication is needed to stream".to_owned(),
        });
    }
    let max = max_proto_version(server_version_num);
    let version = opts.proto_version.unwrap_or(max);
    if version.as_u32() > max.as_u32() {
        let required = match version {
            ProtocolVersion::V1 => 10,
            ProtocolVersion::V2 => 14,
            ProtocolVersion::V3 => 15,
            ProtocolVersion::V4 => 16,
        };
        require(
            &format!("pgoutput protocol version {}", version.as_u32()),
            required,
            server_version_num,
        )?;
    }
    let mut sql = format!(
        "START_REPLICATION SLOT {} LOGICAL {start} (proto_version '{}', publication_names {}",
        quote_ident(slot),
        version.as_u32(),
        publication_names_literal(&opts.publications),
    );
    if opts.binary {
        require("binary replication (binary 'true')", 14, server_version_num)?;
        sql.push_str(", binary 'true'");
    }
    if opts.messages {
        require(
            "logical decoding messages (messages 'true')",
            14,
            server_version_num,
        )?;
        sql.push_str(", messages 'true'");
    }
    if opts.streaming {
        if version.as_u32() < 2 {
            return Err(SourceError::Unsupported {
                feature: "streaming of in-progress transactions (protocol version 2)".to_owned(),
                required: 14,
                found: version_text(server_version_num),
            });
        }
        sql.push_str(", streaming 'on'");
    }
    if opts.two_phase {
        if version.as_u32() < 3 {
            return Err(SourceError::Unsupported {
                feature: "two-phase decoding (protocol version 3)".to_owned(),
                required: 15,
                found: version_text(server_version_num),
            });
        }
        sql.push_str(", two_phase 'on'");
    }
    sql.push(')');
    Ok((sql, version))
}

/// Parses `server_version` (`15.4 (Debian 15.4-1)`, `16beta2`, `9.6.24`) into the
/// `server_version_num` form.
pub fn parse_server_version(text: &str) -> Option<u32> {
    let head = text.split_whitespace().next()?;
    let numeric: String = head
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut parts = numeric
        .split('.')
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u32>());
    let major = parts.next()?.ok()?;
    let second = parts.next().transpose().ok()?.unwrap_or(0);
    if major >= 10 {
        Some(major * 10_000 + second)
    } else {
        let third = parts.next().transpose().ok()?.unwrap_or(0);
        Some(major * 10_000 + second * 100 + third)
    }
}

/// Parses a duration GUC as `SHOW` prints it (`60s`, `1min`, `500ms`, `0`), in milliseconds
/// when no unit is given.
pub fn parse_guc_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '-')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: i64 = number.parse().ok()?;
    if value <= 0 {
        return Some(Duration::ZERO);
    }
    let value = value.unsigned_abs();
    Some(match unit.trim() {
        "" | "ms" => Duration::from_millis(value),
        "us" => Duration::from_micros(value),
        "s" => Duration::from_secs(value),
        "min" => Duration::from_secs(value * 60),
        "h" => Duration::from_secs(value * 3600),
        "d" => Duration::from_secs(value * 86_400),
        _ => return None,
    })
}

/// The status interval to use: the configured one, at most a third of `wal_sender_timeout`
/// (zero means the server never times out), and never below 10 ms.
pub fn effective_status_interval(configured: Duration, wal_sender_timeout: Duration) -> Duration {
    let interval = if wal_sender_timeout.is_zero() {
        configured
    } else {
        configured.min(wal_sender_timeout / 3)
    };
    interval.max(Duration::from_millis(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_slot_syntax_by_version() {
        let export = CreateSlotOptions::default();
        assert_eq!(
            create_slot_command("s1", &export, 150_004).unwrap(),
            "CREATE_REPLICATION_SLOT \"s1\" LOGICAL pgoutput (SNAPSHOT 'export')"
        );
        let opts = CreateSlotOptions {
            temporary: true,
            snapshot: SnapshotAction::Nothing,
            two_phase: true,
        };
        assert_eq!(
            create_slot_command("s1", &opts, 160_000).unwrap(),
            "CREATE_REPLICATION_SLOT \"s1\" TEMPORARY LOGICAL pgoutput (SNAPSHOT 'nothing', TWO_PHASE true)"
        );
        let opts = CreateSlotOptions {
            snapshot: SnapshotAction::Use,
            ..export
        };
        assert_eq!(
            create_slot_command("s1", &opts, 140_010).unwrap(),
            "CREATE_REPLICATION_SLOT \"s1\" LOGICAL pgoutput USE_SNAPSHOT"
        );
        let opts = CreateSlotOptions {
            two_phase: true,
            ..export
        };
        assert_eq!(
            create_slot_command("s1", &opts, 140_010)
                .unwrap_err()
                .to_string(),
            "a two-phase replication slot requires PostgreSQL 15 or later, the source server runs 14.10"
        );
        assert_eq!(
            drop_slot_command("s1", true),
            "DROP_REPLICATION_SLOT \"s1\" WAIT"
        );
    }

    #[test]
    fn start_replication_picks_the_highest_protocol() {
        let opts = StreamOptions::new(["pub", "it's"]);
        let lsn: Lsn = "0/16B3748".parse().unwrap();
        let (sql, v) = start_replication_command("s1", lsn, &opts, 150_004).unwrap();
        assert_eq!(v, ProtocolVersion::V3);
        assert_eq!(
            sql,
            "START_REPLICATION SLOT \"s1\" LOGICAL 0/16B3748 (proto_version '3', \
             publication_names '\"pub\",\"it''s\"', binary 'true', messages 'true', streaming 'on')"
        );
        assert_eq!(
            start_replication_command("s1", lsn, &opts, 170_000)
                .unwrap()
                .1,
            ProtocolVersion::V4
        );
        assert_eq!(
            start_replication_command("s1", lsn, &opts, 140_000)
                .unwrap()
                .1,
            ProtocolVersion::V2
        );
        let plain = StreamOptions {
            binary: false,
            messages: false,
            streaming: false,
            ..opts.clone()
        };
        let (sql, v) = start_replication_command("s1", Lsn(0), &plain, 130_000).unwrap();
        assert_eq!(v, ProtocolVersion::V1);
        assert_eq!(
            sql,
            "START_REPLICATION SLOT \"s1\" LOGICAL 0/0 (proto_version '1', publication_names '\"pub\",\"it''s\"')"
        );
        assert!(start_replication_command("s1", lsn, &opts, 130_000).is_err());
        let pinned = StreamOptions {
            proto_version: Some(ProtocolVersion::V1),
            streaming: false,
            ..opts.clone()
        };
        assert!(
            start_replication_command("s1", lsn, &pinned, 160_000)
                .unwrap()
                .0
                .contains("proto_version '1'")
        );
        let too_new = StreamOptions {
            proto_version: Some(ProtocolVersion::V4),
            ..opts.clone()
        };
        assert_eq!(
            start_replication_command("s1", lsn, &too_new, 150_000)
                .unwrap_err()
                .to_string(),
            "pgoutput protocol version 4 requires PostgreSQL 16 or later, the source server runs 15.0"
        );
        let two_phase = StreamOptions {
            two_phase: true,
            ..opts
        };
        assert!(
            start_replication_command("s1", lsn, &two_phase, 150_000)
                .unwrap()
                .0
                .ends_with(", two_phase 'on')")
        );
    }

    #[test]
    fn server_versions() {
        assert_eq!(
            parse_server_version("15.4 (Debian 15.4-1.pgdg120+1)"),
            Some(150_004)
        );
        assert_eq!(parse_server_version("16beta2"), Some(160_000));
        assert_eq!(parse_server_version("9.6.24"), Some(90_624));
        assert_eq!(parse_server_version("garbage"), None);
    }

    #[test]
    fn guc_durations_and_intervals() {
        assert_eq!(parse_guc_duration("60s"), Some(Duration::from_secs(60)));
        assert_eq!(parse_guc_duration("1min"), Some(Duration::from_secs(60)));
        assert_eq!(
            parse_guc_duration("2500ms"),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(parse_guc_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_guc_duration("5 fortnights"), None);
        let second = Duration::from_secs(1);
        assert_eq!(
            effective_status_interval(second, Duration::from_secs(60)),
            second
        );
        assert_eq!(
            effective_status_interval(second, Duration::from_secs(2)),
            Duration::from_nanos(666_666_666)
        );
        assert_eq!(effective_status_interval(second, Duration::ZERO), second);
    }
}

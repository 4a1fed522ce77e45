//! [`SourceError`]: everything that can go wrong on the source side, phrased for the operator.
//!
//! Most source failures are configuration problems the operator must fix on the server
//! (`wal_level`, the `REPLICATION` attribute, a slot left behind by an earlier run, a slot the
//! server invalidated). Each has its own variant with a message that says what to do, built
//! from the SQLSTATE of the server's error in one place ([`SourceError::from_server`]).
//! Everything else keeps the server's message and is classified by its SQLSTATE
//! (`crate::error::classify_sqlstate`): a dropped connection or an admin shutdown (57P01) is
//! transient, so the engine reconnects and resumes from the slot.

use std::io;

use pgwarp_decoder::DecodeError;

use crate::conn::{ConnError, ServerError};
use crate::error::{Classify, ErrorClass, classify_io, classify_pg, classify_sqlstate};

use super::quote::display_ident;

/// Errors of the source side: replication connection, slots, publications.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The connection could not be opened (unreachable, wrong password, TLS, ...).
    #[error(transparent)]
    Connect(ConnError),

    /// The role lacks the `REPLICATION` attribute (SQLSTATE 42501 on a replication connection).
    #[error(
        "role \"{user}\" is not allowed to start replication on the source: grant it with \
         ALTER ROLE {} REPLICATION",
        display_ident(.user)
    )]
    NoReplicationPrivilege {
        /// The role name.
        user: String,
    },

    /// `wal_level` is below `logical` (SQLSTATE 55000 on slot creation, or checked upfront).
    #[error(
        "logical decoding is not enabled on the source server (wal_level is \"{current}\"): \
         set wal_level = logical in postgresql.conf and restart the server"
    )]
    WalLevelNotLogical {
        /// The current `wal_level`, or `unknown`.
        current: String,
    },

    /// A slot with this name already exists (SQLSTATE 42710).
    #[error(
        "replication slot \"{slot}\" already exists: resume with it, or drop it with \
         SELECT pg_drop_replication_slot('{slot}') to start over"
    )]
    SlotExists {
        /// The slot name.
        slot: String,
    },

    /// Another process is consuming the slot (SQLSTATE 55006).
    #[error(
        "replication slot \"{slot}\" is active for PID {}: another consumer is using it; stop \
         it, or end it with SELECT pg_terminate_backend({})",
        pid_text(*.pid), pid_text(*.pid)
    )]
    SlotActive {
        /// The slot name.
        slot: String,
        /// The consumer's backend PID, when the server said.
        pid: Option<i32>,
    },

    /// The slot does not exist (SQLSTATE 42704, or checked upfront).
    #[error(
        "replication slot \"{slot}\" does not exist: it was dropped or never created; \
         run the setup again to create it from a new snapshot"
    )]
    SlotMissing {
        /// The slot name.
        slot: String,
    },

    /// The server invalidated the slot: the WAL it needs is gone.
    #[error(
        "replication slot \"{slot}\" was invalidated: the server removed WAL the slot still \
         needed (see max_slot_wal_keep_size); re-sync is required: drop the slot and start \
         again from a new snapshot"
    )]
    SlotInvalidated {
        /// The slot name.
        slot: String,
    },

    /// No free replication slot (SQLSTATE 53400).
    #[error(
        "all replication slots are in use on the source: drop unused slots or increase \
         max_replication_slots in postgresql.conf and restart the server"
    )]
    OutOfSlots,

    /// Every WAL sender is busy (checked upfront; the server says 53300 at connection).
    #[error(
        "all {max} WAL senders of the source are in use: stop unused replication consumers or \
         increase max_wal_senders in postgresql.conf and restart the server"
    )]
    OutOfWalSenders {
        /// `max_wal_senders`.
        max: i64,
    },

    /// The publication does not exist (SQLSTATE 42704 from pgoutput, or checked upfront).
    #[error(
        "publication \"{publication}\" does not exist on the source: create it with \
         CREATE PUBLICATION {} FOR TABLE ... (or let pgwarp create it)",
        display_ident(.publication)
    )]
    PublicationMissing {
        /// The publication name.
        publication: String,
    },

    /// The publication publishes no table.
    #[error(
        "publication \"{publication}\" contains no tables: add them with \
         ALTER PUBLICATION {} ADD TABLE ...",
        display_ident(.publication)
    )]
    PublicationEmpty {
        /// The publication name.
        publication: String,
    },

    /// A feature the source server version lacks.
    #[error("{feature} requires PostgreSQL {required} or later, the source server runs {found}")]
    Unsupported {
        /// What was asked for.
        feature: String,
        /// First major version with it, e.g. `14`.
        required: u32,
        /// The server's version, e.g. `13.4`.
        found: String,
    },

    /// A slot or publication name pgwarp will not use.
    #[error("invalid {what} name \"{name}\": {reason}")]
    InvalidName {
        /// `replication slot` or `publication`.
        what: &'static str,
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },

    /// Any other server error, with what pgwarp was doing.
    #[error("{context}: {error}")]
    Server {
        /// What was being done, e.g. `could not create replication slot "s"`.
        context: String,
        /// The server's error.
        error: Box<ServerError>,
    },

    /// A query on an ordinary connection failed without a server error.
    #[error("{context}: {source}")]
    Query {
        /// What was being done.
        context: String,
        /// The client error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// Reading from or writing to the server failed.
    #[error("connection to server at {target} lost: {source}")]
    Io {
        /// `host:port` or socket path.
        target: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The server closed the connection.
    #[error("server at {target} closed the connection unexpectedly")]
    Closed {
        /// `host:port` or socket path.
        target: String,
    },

    /// The server sent something out of protocol.
    #[error("protocol error from server at {target}: {reason}")]
    Protocol {
        /// `host:port` or socket path.
        target: String,
        /// What was unexpected.
        reason: String,
    },

    /// A replication message could not be decoded.
    #[error("invalid replication stream data: {0}")]
    Decode(#[from] DecodeError),
}

fn pid_text(pid: Option<i32>) -> String {
    pid.map_or_else(|| "?".to_owned(), |p| p.to_string())
}

/// What the failing operation was about; used to name objects in messages.
#[derive(Debug, Clone, Copy, Default)]
pub struct ErrorContext<'a> {
    /// The role of the connection.
    pub user: Option<&'a str>,
    /// The slot involved.
    pub slot: Option<&'a str>,
    /// The publication involved (when there is exactly one).
    pub publication: Option<&'a str>,
    /// Whether the error came from a replication connection, where 42501 means "no
    /// REPLICATION attribute" rather than a table privilege.
    pub replication: bool,
}

/// The first double-quoted word of a server message (`replication slot "x" ...`).
fn quoted_name(message: &str) -> Option<String> {
    let start = message.find('"')? + 1;
    let len = message[start..].find('"')?;
    Some(message[start..start + len].to_owned())
}

impl SourceError {
    /// Maps a server error to the variant that tells the operator what to do.
    pub fn from_server(error: ServerError, what: &str, ctx: ErrorContext<'_>) -> SourceError {
        let message = error.message.as_str();
        let slot = || {
            quoted_name(message)
                .or(ctx.slot.map(str::to_owned))
                .unwrap_or_default()
        };
        let mentions_invalidation = message
            .contains("can no longer get changes from replication slot")
            || error
                .detail
                .as_deref()
                .is_some_and(|d| d.contains("has been invalidated"));
        match error.code.as_str() {
            "42501" if ctx.replication => {
                return SourceError::NoReplicationPrivilege {
                    user: ctx.user.unwrap_or_default().to_owned(),
                };
            }
            "55000" if message.contains("wal_level") => {
                return SourceError::WalLevelNotLogical {
                    current: "replica".to_owned(),
                };
            }
            "55000" if mentions_invalidation => {
                return SourceError::SlotInvalidated { slot: slot() };
            }
            "42710" if message.contains("replication slot") => {
                return SourceError::SlotExists { slot: slot() };
            }
            "55006" if message.contains("replication slot") => {
                let pid = message.rsplit_once("PID ").and_then(|(_, p)| {
                    p.trim_end_matches(|c: char| !c.is_ascii_digit())
                        .parse()
                        .ok()
                });
                return SourceError::SlotActive { slot: slot(), pid };
            }
            "42704" if message.contains("replication slot") => {
                return SourceError::SlotMissing { slot: slot() };
            }
            "42704" if message.contains("publication") => {
                return SourceError::PublicationMissing {
                    publication: quoted_name(message)
                        .or(ctx.publication.map(str::to_owned))
                        .unwrap_or_default(),
                };
            }
            "53400" if message.contains("replication slots") => return SourceError::OutOfSlots,
            _ => {}
        }
        SourceError::Server {
            context: what.to_owned(),
            error: Box::new(error),
        }
    }

    /// Maps a `tokio_postgres` error of an ordinary connection.
    pub fn from_pg(err: tokio_postgres::Error, what: &str, ctx: ErrorContext<'_>) -> SourceError {
        match err.as_db_error() {
            Some(db) => SourceError::from_server(ServerError::from_db_error(db), what, ctx),
            None => SourceError::Query {
                context: what.to_owned(),
                source: err,
            },
        }
    }
}

impl From<ConnError> for SourceError {
    fn from(err: ConnError) -> SourceError {
        SourceError::Connect(err)
    }
}

impl Classify for SourceError {
    fn class(&self) -> ErrorClass {
        match self {
            SourceError::Connect(e) => e.class(),
            SourceError::Server { error, .. } => classify_sqlstate(&error.code),
            SourceError::Query { source, .. } => classify_pg(source),
            SourceError::Io { source, .. } => classify_io(source),
            SourceError::Closed { .. } => ErrorClass::Transient,
            // another consumer may be about to let go of the slot (e.g. a previous pgwarp
            // process whose connection the server has not noticed is gone yet)
            SourceError::SlotActive { .. } => ErrorClass::Transient,
            SourceError::NoReplicationPrivilege { .. }
            | SourceError::WalLevelNotLogical { .. }
            | SourceError::SlotExists { .. }
            | SourceError::SlotMissing { .. }
            | SourceError::SlotInvalidated { .. }
            | SourceError::OutOfSlots
            | SourceError::OutOfWalSenders { .. }
            | SourceError::PublicationMissing { .. }
            | SourceError::PublicationEmpty { .. }
            | SourceError::Unsupported { .. }
            | SourceError::InvalidName { .. }
            | SourceError::Protocol { .. }
            | SourceError::Decode(_) => ErrorClass::Definite,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: &str, message: &str, detail: Option<&str>) -> ServerError {
        ServerError {
            severity: "ERROR".into(),
            code: code.into(),
            message: message.into(),
            detail: detail.map(str::to_owned),
            hint: None,
        }
    }

    fn map(code: &str, message: &str, detail: Option<&str>) -> SourceError {
        let ctx = ErrorContext {
            user: Some("app"),
            slot: Some("s1"),
            replication: true,
            ..Default::default()
        };
        SourceError::from_server(server(code, message, detail), "doing it", ctx)
    }

    #[test]
    fn server_errors_map_to_actionable_variants() {
        let e = map(
            "55006",
            "replication slot \"s1\" is active for PID 4242",
            None,
        );
        assert_eq!(
            e.to_string(),
            "replication slot \"s1\" is active for PID 4242: another consumer is using it; stop \
             it, or end it with SELECT pg_terminate_backend(4242)"
        );
        assert!(e.is_transient());
        let e = map(
            "55000",
            "logical decoding requires wal_level >= logical",
            None,
        );
        assert!(matches!(e, SourceError::WalLevelNotLogical { .. }));
        assert!(
            e.to_string()
                .ends_with("set wal_level = logical in postgresql.conf and restart the server")
        );
        let e = map(
            "55000",
            "can no longer get changes from replication slot \"s1\"",
            Some("This slot has been invalidated because it exceeded the maximum reserved size."),
        );
        assert!(matches!(&e, SourceError::SlotInvalidated { slot } if slot == "s1"));
        let e = map(
            "42501",
            "must be superuser or replication role to start walsender",
            None,
        );
        assert_eq!(
            e.to_string(),
            "role \"app\" is not allowed to start replication on the source: grant it with \
             ALTER ROLE app REPLICATION"
        );
        let e = map("42710", "replication slot \"s1\" already exists", None);
        assert!(matches!(&e, SourceError::SlotExists { slot } if slot == "s1"));
        let e = map("42704", "publication \"Pub\" does not exist", None);
        assert_eq!(
            e.to_string(),
            "publication \"Pub\" does not exist on the source: create it with CREATE \
             PUBLICATION \"Pub\" FOR TABLE ... (or let pgwarp create it)"
        );
        let e = map(
            "57P01",
            "terminating connection due to administrator command",
            None,
        );
        assert!(e.is_transient());
        assert_eq!(
            e.to_string(),
            "doing it: terminating connection due to administrator command (SQLSTATE 57P01)"
        );
        let e = map("42601", "syntax error", None);
        assert!(!e.is_transient());
    }
}

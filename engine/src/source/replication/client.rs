//! [`ReplicationClient`]: a replication connection in command mode.
//!
//! Commands use the simple-query protocol (the only one a walsender accepts for replication
//! commands). Results are small (a few rows of text), so they are returned as strings. A
//! slot created with an exported snapshot is held by [`ExportedSnapshot`], which owns the
//! connection: the snapshot stays importable exactly as long as that value is alive and no
//! other command has been sent, so the type makes "keep the connection idle until the readers
//! have imported it" the only thing one can do with it.

use std::time::Duration;

use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;

use pgwarp_decoder::Lsn;

use crate::conn::{self, ConnConfig, ConnError, for_each_host};

use super::super::SourceError;
use super::super::error::ErrorContext;
use super::super::quote::{quote_ident, validate_slot_name};
use super::commands::{self, CreateSlotOptions, SnapshotAction, StreamOptions};
use super::snapshot::ExportedSnapshot;
use super::startup::connect_one;
use super::stream::ReplicationStream;
use super::wire::{Backend, Wire, log_notice, server_error};

/// Result of `IDENTIFY_SYSTEM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemIdentity {
    /// The cluster's system identifier.
    pub system_id: String,
    /// Current timeline.
    pub timeline: u32,
    /// Current WAL flush position.
    pub xlogpos: Lsn,
    /// The database connected to.
    pub dbname: Option<String>,
}

/// Result of `CREATE_REPLICATION_SLOT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedSlot {
    /// The slot name.
    pub slot_name: String,
    /// The first LSN from which streaming returns changes not in the snapshot.
    pub consistent_point: Lsn,
    /// The exported snapshot's name (with `SnapshotAction::Export`).
    pub snapshot_name: Option<String>,
    /// The output plugin (`pgoutput`).
    pub output_plugin: Option<String>,
}

/// One row of a simple-query result, columns as text.
pub type TextRow = Vec<Option<String>>;

/// A replication connection (`replication=database`) in command mode.
#[derive(Debug)]
pub struct ReplicationClient {
    pub(super) wire: Wire,
    pub(super) server_version_num: u32,
    pub(super) backend_pid: i32,
    pub(super) user: String,
}

impl ReplicationClient {
    /// Connects, trying each host of `cfg` in order.
    pub async fn connect(cfg: &ConnConfig) -> Result<ReplicationClient, SourceError> {
        conn::tls::client_config(cfg)?;
        let result = for_each_host(cfg, |target| async move {
            conn::socket::with_ssl_fallback(cfg, target, |tls| connect_one(cfg, target, tls)).await
        })
        .await;
        let (wire, startup) = match result {
            Ok(ok) => ok,
            Err(ConnError::Refused { error, .. }) if error.code == "42501" => {
                return Err(SourceError::NoReplicationPrivilege {
                    user: cfg.user.clone(),
                });
            }
            Err(e) => return Err(SourceError::Connect(e)),
        };
        let version_text = startup
            .params
            .iter()
            .find(|(k, _)| k == "server_version")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let mut client = ReplicationClient {
            wire,
            server_version_num: commands::parse_server_version(&version_text).unwrap_or(0),
            backend_pid: startup.backend_pid,
            user: cfg.user.clone(),
        };
        if client.server_version_num == 0 {
            let shown = client.show("server_version_num").await?;
            client.server_version_num =
                shown.trim().parse().map_err(|_| SourceError::Protocol {
                    target: client.wire.target().to_owned(),
                    reason: format!("invalid server_version_num \"{shown}\""),
                })?;
        }
        tracing::debug!(target = %client.wire.target(), pid = client.backend_pid, version = client.server_version_num, "replication connection open");
        Ok(client)
    }

    /// The server's `server_version_num` (e.g. 150004).
    pub fn server_version_num(&self) -> u32 {
        self.server_version_num
    }

    /// The walsender's PID.
    pub fn backend_pid(&self) -> i32 {
        self.backend_pid
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.wire.is_tls()
    }

    /// `host:port` or the socket path.
    pub fn target(&self) -> &str {
        self.wire.target()
    }

    fn ctx<'a>(&'a self, slot: Option<&'a str>) -> ErrorContext<'a> {
        ErrorContext {
            user: Some(&self.user),
            slot,
            publication: None,
            replication: true,
        }
    }

    /// Runs one command with the simple-query protocol and returns its rows as text.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<TextRow>, SourceError> {
        self.simple_query_ctx(sql, "query failed", None).await
    }

    async fn simple_query_ctx(
        &mut self,
        sql: &str,
        what: &str,
        slot: Option<&str>,
    ) -> Result<Vec<TextRow>, SourceError> {
        frontend::query(sql, self.wire.out()).map_err(|e| SourceError::Protocol {
            target: self.wire.target().to_owned(),
            reason: format!("could not encode query: {e}"),
        })?;
        self.wire.flush().await?;
        let mut rows = Vec::new();
        let mut failure = None;
        loop {
            match self.wire.next().await? {
                Backend::Other(Message::DataRow(body)) => {
                    let buf = body.buffer();
                    let mut row = Vec::new();
                    let mut ranges = body.ranges();
                    while let Some(range) =
                        ranges.next().map_err(|e| self.protocol(e.to_string()))?
                    {
                        row.push(match range {
                            Some(r) => Some(
                                String::from_utf8(buf.get(r).unwrap_or_default().to_vec())
                                    .map_err(|_| {
                                        self.protocol("non-UTF-8 text in a result row".to_owned())
                                    })?,
                            ),
                            None => None,
                        });
                    }
                    rows.push(row);
                }
                Backend::Other(
                    Message::RowDescription(_)
                    | Message::CommandComplete(_)
                    | Message::EmptyQueryResponse
                    | Message::ParameterStatus(_),
                ) => {}
                Backend::Other(Message::NoticeResponse(body)) => {
                    log_notice(&body, self.wire.target())
                }
                Backend::Other(Message::ErrorResponse(body)) => {
                    failure = Some(server_error(&body));
                }
                Backend::Other(Message::ReadyForQuery(_)) => break,
                other => {
                    return Err(
                        self.protocol(format!("unexpected {} in reply to a command", other.name()))
                    );
                }
            }
        }
        match failure {
            Some(error) => Err(SourceError::from_server(error, what, self.ctx(slot))),
            None => Ok(rows),
        }
    }

    fn protocol(&self, reason: String) -> SourceError {
        SourceError::Protocol {
            target: self.wire.target().to_owned(),
            reason,
        }
    }

    fn cell<'r>(
        &self,
        rows: &'r [TextRow],
        col: usize,
        what: &str,
    ) -> Result<&'r str, SourceError> {
        rows.first()
            .and_then(|r| r.get(col))
            .and_then(|c| c.as_deref())
            .ok_or_else(|| self.protocol(format!("missing {what} in reply")))
    }

    fn lsn(&self, text: &str) -> Result<Lsn, SourceError> {
        text.parse()
            .map_err(|_| self.protocol(format!("invalid LSN \"{text}\" in reply")))
    }

    /// `IDENTIFY_SYSTEM`.
    pub async fn identify_system(&mut self) -> Result<SystemIdentity, SourceError> {
        let rows = self
            .simple_query_ctx("IDENTIFY_SYSTEM", "IDENTIFY_SYSTEM failed", None)
            .await?;
        let timeline_text = self.cell(&rows, 1, "timeline")?;
        Ok(SystemIdentity {
            system_id: self.cell(&rows, 0, "systemid")?.to_owned(),
            timeline: timeline_text
                .parse()
                .map_err(|_| self.protocol(format!("invalid timeline \"{timeline_text}\"")))?,
            xlogpos: self.lsn(self.cell(&rows, 2, "xlogpos")?)?,
            dbname: rows.first().and_then(|r| r.get(3)).cloned().flatten(),
        })
    }

    /// `SHOW name` (a replication command since PostgreSQL 10).
    pub async fn show(&mut self, name: &str) -> Result<String, SourceError> {
        let sql = format!("SHOW {}", quote_ident(name));
        let rows = self
            .simple_query_ctx(&sql, &format!("could not read setting \"{name}\""), None)
            .await?;
        Ok(self.cell(&rows, 0, name)?.to_owned())
    }

    /// The server's `wal_sender_timeout` (zero when disabled).
    pub async fn wal_sender_timeout(&mut self) -> Result<Duration, SourceError> {
        let text = self.show("wal_sender_timeout").await?;
        commands::parse_guc_duration(&text)
            .ok_or_else(|| self.protocol(format!("invalid wal_sender_timeout \"{text}\"")))
    }

    /// `CREATE_REPLICATION_SLOT name [TEMPORARY] LOGICAL pgoutput (...)`.
    ///
    /// With [`SnapshotAction::Export`] the snapshot is valid only until the next command on
    /// this connection: prefer [`ReplicationClient::create_slot_exporting`], which keeps it.
    pub async fn create_slot(
        &mut self,
        name: &str,
        opts: &CreateSlotOptions,
    ) -> Result<CreatedSlot, SourceError> {
        validate_slot_name(name)?;
        let sql = commands::create_slot_command(name, opts, self.server_version_num)?;
        let what = format!("could not create replication slot \"{name}\"");
        let rows = self.simple_query_ctx(&sql, &what, Some(name)).await?;
        let row = rows
            .first()
            .ok_or_else(|| self.protocol("empty reply to CREATE_REPLICATION_SLOT".to_owned()))?;
        let text = |i: usize| row.get(i).cloned().flatten();
        Ok(CreatedSlot {
            slot_name: text(0).unwrap_or_else(|| name.to_owned()),
            consistent_point: self.lsn(self.cell(&rows, 1, "consistent_point")?)?,
            snapshot_name: text(2),
            output_plugin: text(3),
        })
    }

    /// Creates a slot with an exported snapshot and keeps this connection idle so the snapshot
    /// stays importable until [`ExportedSnapshot::release`] (or drop, which closes it).
    pub async fn create_slot_exporting(
        mut self,
        name: &str,
        temporary: bool,
    ) -> Result<ExportedSnapshot, SourceError> {
        let opts = CreateSlotOptions {
            temporary,
            snapshot: SnapshotAction::Export,
            two_phase: false,
        };
        let slot = self.create_slot(name, &opts).await?;
        if slot.snapshot_name.is_none() {
            return Err(
                self.protocol("CREATE_REPLICATION_SLOT returned no snapshot name".to_owned())
            );
        }
        Ok(ExportedSnapshot::new(self, slot))
    }

    /// `DROP_REPLICATION_SLOT name [WAIT]`; `wait` waits for an active consumer to let go
    /// instead of failing.
    pub async fn drop_slot(&mut self, name: &str, wait: bool) -> Result<(), SourceError> {
        validate_slot_name(name)?;
        let what = format!("could not drop replication slot \"{name}\"");
        self.simple_query_ctx(&commands::drop_slot_command(name, wait), &what, Some(name))
            .await?;
        Ok(())
    }

    /// Starts streaming from `start` (use the slot's consistent point or its
    /// `confirmed_flush_lsn`; the server starts at the later of the two).
    ///
    /// Reads `wal_sender_timeout` first and clamps the status interval to a third of it.
    pub async fn start_replication(
        mut self,
        slot: &str,
        start: Lsn,
        opts: &StreamOptions,
    ) -> Result<ReplicationStream, SourceError> {
        validate_slot_name(slot)?;
        let timeout = self.wal_sender_timeout().await?;
        let interval = commands::effective_status_interval(opts.status_interval, timeout);
        let (sql, version) =
            commands::start_replication_command(slot, start, opts, self.server_version_num)?;
        frontend::query(&sql, self.wire.out())
            .map_err(|e| self.protocol(format!("could not encode query: {e}")))?;
        self.wire.flush().await?;
        let what = format!("could not start replication from slot \"{slot}\"");
        loop {
            match self.wire.next().await? {
                Backend::CopyBothResponse => break,
                Backend::Other(Message::NoticeResponse(body)) => {
                    log_notice(&body, self.wire.target())
                }
                Backend::Other(Message::ParameterStatus(_)) => {}
                Backend::Other(Message::ErrorResponse(body)) => {
                    let error = server_error(&body);
                    // the ReadyForQuery that follows is left for a later command (the client
                    // is consumed here; the connection closes with it)
                    let publication = opts.publications.first().map(String::as_str);
                    let ctx = ErrorContext {
                        publication,
                        ..self.ctx(Some(slot))
                    };
                    return Err(SourceError::from_server(error, &what, ctx));
                }
                other => {
                    return Err(self.protocol(format!(
                        "unexpected {} in reply to START_REPLICATION",
                        other.name()
                    )));
                }
            }
        }
        tracing::info!(%slot, %start, proto_version = version.as_u32(), interval_ms = interval.as_millis() as u64, "replication started");
        Ok(ReplicationStream::new(
            self,
            slot.to_owned(),
            start,
            version,
            interval,
        ))
    }

    /// Ends the connection politely (Terminate).
    pub async fn close(mut self) -> Result<(), SourceError> {
        frontend::terminate(self.wire.out());
        self.wire.flush().await
    }
}

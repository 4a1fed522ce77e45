//! `pgwarp check`: everything that would stop a sync, found before it starts, all at once.
//!
//! A migration that fails an hour in because one table lacks a primary key wastes the hour; one
//! that fails at the first problem makes the operator fix problems one run at a time. So the
//! preflight collects every [`Problem`] it can find and `sync` refuses to start while any
//! remains. Only a problem that hides others (a server that cannot be reached) ends the check
//! early.
//!
//! ```text
//!  source server ── wal_level, free slots and WAL senders, REPLICATION
//!  source tables ── exist, ordinary, primary key / replica identity, generated columns
//!  target tables ── exist, columns and types match, unique key on the replica identity
//!  Citus         ── distribution column hashable and in every unique key, shells without
//!                   local rows, nodes reachable, shards empty (unless resuming)
//! ```

mod privileges;
mod server;
mod tables;
mod target;

use std::fmt;

use serde::Serialize;

use crate::citus::names::quote_ident;
use crate::config::{Settings, TableScope};
use crate::conn::connect;
use crate::pipeline::{PipelineError, catalog, state};

/// What kind of problem (one per check, for tests and scripts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A server cannot be reached.
    Unreachable,
    /// `wal_level` is not `logical`.
    WalLevel,
    /// No free replication slot.
    NoFreeSlot,
    /// No free WAL sender.
    NoFreeWalSender,
    /// The source role may not replicate.
    NoReplicationPrivilege,
    /// A slot of this name exists but no sync state goes with it.
    SlotInUse,
    /// The sync's slot was invalidated by the server: its changes are gone, re-sync.
    SlotInvalidated,
    /// A role lacks a privilege the sync needs (the message says which GRANT fixes it).
    MissingPrivilege,
    /// The table does not exist on the source.
    MissingOnSource,
    /// The table does not exist on the target.
    MissingOnTarget,
    /// Not an ordinary table (partitioned, view, ...).
    NotATable,
    /// No primary key or replica identity index.
    NoReplicaIdentity,
    /// The target has no unique index on the replica identity columns.
    NoUniqueKeyOnTarget,
    /// A source column is missing on the target or has another type.
    ColumnMismatch,
    /// A target column would be left without a value.
    ExtraTargetColumn,
    /// Generated columns that differ between the sides.
    GeneratedColumn,
    /// The distribution column's type cannot be hashed (or the table's metadata is unusable).
    UnroutableTable,
    /// A unique key of a distributed table lacks the distribution column.
    UniqueKeyWithoutDistColumn,
    /// A Citus shell table on the coordinator holds local rows.
    ShellHasLocalRows,
    /// A target table already holds rows.
    TargetNotEmpty,
}

/// One problem: what, where, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The kind.
    pub kind: ProblemKind,
    /// The message (PostgreSQL style).
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The result of a check.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Every problem found.
    pub problems: Vec<Problem>,
    /// Tables checked (`schema.name`).
    pub tables: Vec<String>,
    /// Whether an existing sync would be resumed (its slot and state exist).
    pub resuming: bool,
}

impl Report {
    fn add(&mut self, kind: ProblemKind, message: impl Into<String>) {
        self.problems.push(Problem {
            kind,
            message: message.into(),
        });
    }

    /// Whether nothing was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// Whether a problem of this kind was found.
    pub fn has(&self, kind: ProblemKind) -> bool {
        self.problems.iter().any(|p| p.kind == kind)
    }
}

/// Runs every check for `settings` (its table scope is required).
pub async fn run(settings: &Settings) -> Result<Report, PipelineError> {
    let mut report = Report::default();
    let scope = settings.require_scope()?.clone();
    let source = match connect(&settings.source).await {
        Ok((c, _)) => c,
        Err(e) => {
            report.add(
                ProblemKind::Unreachable,
                format!("cannot connect to the source: {e}"),
            );
            return Ok(report);
        }
    };
    let target = match connect(&settings.target).await {
        Ok((c, _)) => c,
        Err(e) => {
            report.add(
                ProblemKind::Unreachable,
                format!("cannot connect to the target: {e}"),
            );
            return Ok(report);
        }
    };

    // resuming: the state says a sync with this slot got past setup
    let sync_state = if state::exists(&target).await? {
        state::load(&target, &settings.slot).await?
    } else {
        None
    };
    let slot = crate::source::admin::slot_info(&source, &settings.slot).await?;
    report.resuming = slot.is_some()
        && sync_state
            .as_ref()
            .is_some_and(|s| s.phase != state::Phase::Setup);
    server::check(&source, settings, &sync_state, slot.is_some(), &mut report).await?;
    if slot.as_ref().is_some_and(|s| s.is_invalidated()) {
        report.add(
            ProblemKind::SlotInvalidated,
            crate::source::SourceError::SlotInvalidated {
                slot: settings.slot.clone(),
            }
            .to_string(),
        );
    }

    let names = match &scope {
        TableScope::Tables(t) => t.clone(),
        TableScope::Schemas(s) => catalog::tables_in_schemas(&source, s).await?,
    };
    let described = catalog::describe(&source, &names).await?;
    let mut sources = Vec::new();
    for (name, info) in names.iter().zip(described) {
        match info {
            None => report.add(
                ProblemKind::MissingOnSource,
                format!("table \"{name}\" does not exist on the source"),
            ),
            Some(t) => sources.push(t),
        }
    }
    report.tables = sources.iter().map(|t| t.display_name()).collect();
    tables::check_source(&sources, &mut report);
    privileges::source(
        &source,
        &settings.publication,
        &sources,
        report.resuming,
        &mut report,
    )
    .await?;
    privileges::server(&target, "the target", &mut report).await?;

    let qualified: Vec<String> = sources
        .iter()
        .map(|t| format!("{}.{}", quote_ident(&t.schema), quote_ident(&t.name)))
        .collect();
    let on_target = catalog::describe(&target, &qualified).await?;
    let mut pairs = Vec::new();
    for (source_table, target_table) in sources.into_iter().zip(on_target) {
        match target_table {
            None => report.add(
                ProblemKind::MissingOnTarget,
                format!(
                    "table \"{}\" does not exist on the target: create it (and distribute it) \
                     before syncing",
                    source_table.display_name()
                ),
            ),
            Some(t) => {
                tables::compare(&source_table, &t, &mut report);
                pairs.push((source_table, t));
            }
        }
    }
    target::check(settings, &target, &pairs, report.resuming, &mut report).await?;
    Ok(report)
}

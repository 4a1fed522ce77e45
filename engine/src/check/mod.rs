//! `pgwarp check`: everything that would stop a sync, found before it starts, all at once.
//!
//! A migration that fails an hour in because one table lacks a primary key wastes the hour; one
//! that fails at the first problem makes the operator fix problems one run at a time. So the
//! preflight collects every [`Problem`] it can find and `sync` refuses to start while any
//! remains. Only a problem that hides others (a server that cannot be reached) ends the check
//! early.
//!
//! It also sits on every start of `sync`, so it asks what it can at once: the source and the
//! target side by side, every node at the same time, one catalog load and one size query for
//! all tables. The problems still come out in one fixed order (source, target, Citus, nodes in
//! node order), whatever answered first.
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
    // both servers at once; a source that cannot be reached is the one problem reported
    let (source, target) = tokio::join!(connect(&settings.source), connect(&settings.target));
    let source = match source {
        Ok((c, _)) => c,
        Err(e) => {
            report.add(
                ProblemKind::Unreachable,
                format!("cannot connect to the source: {e}"),
            );
            return Ok(report);
        }
    };
    let target = match target {
        Ok((c, _)) => c,
        Err(e) => {
            report.add(
                ProblemKind::Unreachable,
                format!("cannot connect to the target: {e}"),
            );
            return Ok(report);
        }
    };
    tracing::debug!("check: connected");

    // what each side can answer alone, both sides at once (the problems are added in the
    // order of a one-side-after-the-other check)
    let source_side = async {
        let slot = crate::source::admin::slot_info(&source, &settings.slot).await?;
        let names = match &scope {
            TableScope::Tables(t) => t.clone(),
            TableScope::Schemas(s) => catalog::tables_in_schemas(&source, s).await?,
        };
        let described = catalog::describe(&source, &names).await?;
        Ok::<_, PipelineError>((slot, names, described))
    };
    let target_side = async {
        // resuming: the state says a sync with this slot got past setup
        let sync_state = if state::exists(&target).await? {
            state::load(&target, &settings.slot).await?
        } else {
            None
        };
        let mut found = Report::default();
        privileges::server(&target, "the target", &mut found).await?;
        Ok::<_, PipelineError>((sync_state, found))
    };
    let ((slot, names, described), (sync_state, target_privileges)) =
        tokio::try_join!(source_side, target_side)?;
    tracing::debug!("check: state, slot and source tables read");
    report.resuming = slot.is_some()
        && sync_state
            .as_ref()
            .is_some_and(|s| s.phase != state::Phase::Setup);
    let mut sources = Vec::new();
    let mut missing = Vec::new();
    for (name, info) in names.iter().zip(described) {
        match info {
            None => missing.push(name),
            Some(t) => sources.push(t),
        }
    }
    let qualified: Vec<String> = sources
        .iter()
        .map(|t| format!("{}.{}", quote_ident(&t.schema), quote_ident(&t.name)))
        .collect();
    let source_checks = async {
        let mut found = Report::default();
        server::check(&source, settings, &sync_state, slot.is_some(), &mut found).await?;
        if slot.as_ref().is_some_and(|s| s.is_invalidated()) {
            found.add(
                ProblemKind::SlotInvalidated,
                crate::source::SourceError::SlotInvalidated {
                    slot: settings.slot.clone(),
                }
                .to_string(),
            );
        }
        for name in missing {
            found.add(
                ProblemKind::MissingOnSource,
                format!("table \"{name}\" does not exist on the source"),
            );
        }
        tables::check_source(&sources, &mut found);
        privileges::source(
            &source,
            &settings.publication,
            &sources,
            report.resuming,
            &mut found,
        )
        .await?;
        Ok::<_, PipelineError>(found)
    };
    let (source_problems, on_target) =
        tokio::try_join!(source_checks, catalog::describe(&target, &qualified))?;
    report.problems.extend(source_problems.problems);
    report.problems.extend(target_privileges.problems);
    report.tables = sources.iter().map(|t| t.display_name()).collect();
    tracing::debug!("check: source checked, target tables read");
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
    tracing::debug!("check: target tables compared");
    target::check(settings, &target, &pairs, report.resuming, &mut report).await?;
    tracing::debug!("check: citus and nodes checked");
    Ok(report)
}

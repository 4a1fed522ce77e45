//! Two-phase commit messages (protocol 3+, `two_phase` option).
//!
//! A prepared transaction is sent at `PREPARE TRANSACTION` (Begin Prepare, changes, Prepare, or
//! Stream Prepare after streamed segments) and resolved later by Commit Prepared or Rollback
//! Prepared, identified by its GID.

use crate::lsn::Lsn;
use crate::time::PgTimestamp;

/// Begin Prepare (`b`, protocol 3+).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeginPrepare {
    /// LSN of the prepare record.
    pub prepare_lsn: Lsn,
    /// End LSN of the prepared transaction.
    pub end_lsn: Lsn,
    /// Prepare timestamp.
    pub prepare_time: PgTimestamp,
    /// Xid of the transaction.
    pub xid: u32,
    /// Global transaction identifier given to `PREPARE TRANSACTION`.
    pub gid: String,
}

/// Prepare (`P`) and Stream Prepare (`p`), protocol 3+.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepare {
    /// Flags; currently unused (0).
    pub flags: u8,
    /// LSN of the prepare record.
    pub prepare_lsn: Lsn,
    /// End LSN of the prepared transaction.
    pub end_lsn: Lsn,
    /// Prepare timestamp.
    pub prepare_time: PgTimestamp,
    /// Xid of the transaction.
    pub xid: u32,
    /// Global transaction identifier.
    pub gid: String,
}

/// Commit Prepared (`K`, protocol 3+).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitPrepared {
    /// Flags; currently unused (0).
    pub flags: u8,
    /// LSN of the commit prepared record.
    pub commit_lsn: Lsn,
    /// End LSN of the commit prepared transaction.
    pub end_lsn: Lsn,
    /// Commit timestamp.
    pub commit_time: PgTimestamp,
    /// Xid of the transaction.
    pub xid: u32,
    /// Global transaction identifier.
    pub gid: String,
}

/// Rollback Prepared (`r`, protocol 3+).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackPrepared {
    /// Flags; currently unused (0).
    pub flags: u8,
    /// End LSN of the prepared transaction.
    pub prepare_end_lsn: Lsn,
    /// End LSN of the rollback prepared transaction.
    pub rollback_end_lsn: Lsn,
    /// Prepare timestamp.
    pub prepare_time: PgTimestamp,
    /// Rollback timestamp.
    pub rollback_time: PgTimestamp,
    /// Xid of the transaction.
    pub xid: u32,
    /// Global transaction identifier.
    pub gid: String,
}

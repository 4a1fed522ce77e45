//! Messages of streamed in-progress transactions (protocol 2+, `streaming` option).
//!
//! A large transaction is sent in segments while it runs, each between Stream Start and Stream
//! Stop, and ends with Stream Commit, Stream Abort or (with two-phase) Stream Prepare. The
//! changes inside segments carry their (sub)transaction's xid.

use crate::lsn::Lsn;
use crate::time::PgTimestamp;

/// Stream Start (`S`, protocol 2+): the following messages until Stream Stop belong to the
/// in-progress transaction `xid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStart {
    /// Xid of the streamed transaction.
    pub xid: u32,
    /// Whether this is the transaction's first segment.
    pub first_segment: bool,
}

/// Stream Commit (`c`, protocol 2+).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamCommit {
    /// Xid of the streamed transaction.
    pub xid: u32,
    /// Flags; currently unused (0).
    pub flags: u8,
    /// LSN of the commit record.
    pub commit_lsn: Lsn,
    /// End LSN of the transaction.
    pub end_lsn: Lsn,
    /// Commit timestamp.
    pub commit_time: PgTimestamp,
}

/// The extra fields of a Stream Abort sent with `streaming = parallel` (protocol 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortInfo {
    /// LSN of the abort record.
    pub abort_lsn: Lsn,
    /// Abort timestamp.
    pub abort_time: PgTimestamp,
}

/// Stream Abort (`A`, protocol 2+): the transaction, or one of its subtransactions, aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAbort {
    /// Xid of the top-level transaction.
    pub xid: u32,
    /// Xid of the aborted subtransaction (equal to `xid` when the whole transaction aborted).
    pub subxid: u32,
    /// Abort LSN and time: present only with protocol 4 and `streaming = parallel`.
    pub parallel: Option<AbortInfo>,
}

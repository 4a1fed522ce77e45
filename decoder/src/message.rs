//! The pgoutput messages, as typed values.
//!
//! One struct per message of the "Logical Replication Message Formats" chapter of the PostgreSQL
//! protocol documentation (protocol versions 1 to 4), gathered in [`Message`]. Field names follow
//! the documentation. Flag bytes that PostgreSQL documents as "currently unused" are kept raw so
//! that re-encoding a decoded frame gives back the same bytes.
//!
//! The `xid: Option<u32>` on Relation, Type, Insert, Update, Delete, Truncate and logical
//! decoding messages is the transaction id pgoutput adds to those messages inside a streamed
//! transaction (between Stream Start and Stream Stop); it is `None` outside stream segments.

use bytes::Bytes;

use crate::lsn::Lsn;
use crate::time::PgTimestamp;
use crate::tuple::TupleData;

mod streaming;
mod two_phase;

pub use streaming::{AbortInfo, StreamAbort, StreamCommit, StreamStart};
pub use two_phase::{BeginPrepare, CommitPrepared, Prepare, RollbackPrepared};

/// A PostgreSQL object identifier.
pub type Oid = u32;

/// Begin (`B`): the start of a transaction that is sent whole at commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Begin {
    /// The final LSN of the transaction (the commit record's end).
    pub final_lsn: Lsn,
    /// Commit timestamp.
    pub commit_time: PgTimestamp,
    /// Transaction id.
    pub xid: u32,
}

/// Commit (`C`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// Flags; currently unused (0).
    pub flags: u8,
    /// LSN of the commit record.
    pub commit_lsn: Lsn,
    /// End LSN of the transaction: the position to confirm once it is applied.
    pub end_lsn: Lsn,
    /// Commit timestamp.
    pub commit_time: PgTimestamp,
}

/// Origin (`O`): the transaction was replicated into the source from another origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// LSN of the commit on the origin server.
    pub commit_lsn: Lsn,
    /// Name of the origin.
    pub name: String,
}

/// Replica identity setting of a relation (`pg_class.relreplident`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplicaIdentity {
    /// `d`: the primary key.
    Default,
    /// `n`: nothing.
    Nothing,
    /// `f`: all columns.
    Full,
    /// `i`: a chosen unique index.
    Index,
}

impl ReplicaIdentity {
    /// Parses the wire byte.
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            b'd' => ReplicaIdentity::Default,
            b'n' => ReplicaIdentity::Nothing,
            b'f' => ReplicaIdentity::Full,
            b'i' => ReplicaIdentity::Index,
            _ => return None,
        })
    }

    /// The wire byte.
    pub fn to_byte(self) -> u8 {
        match self {
            ReplicaIdentity::Default => b'd',
            ReplicaIdentity::Nothing => b'n',
            ReplicaIdentity::Full => b'f',
            ReplicaIdentity::Index => b'i',
        }
    }
}

/// One column of a [`Relation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// Flags: bit 1 marks a column of the replica identity key.
    pub flags: u8,
    /// Column name.
    pub name: String,
    /// OID of the column's type.
    pub type_id: Oid,
    /// Type modifier (`atttypmod`), -1 if none.
    pub type_modifier: i32,
}

impl RelationColumn {
    /// Flag bit for key columns.
    pub const FLAG_KEY: u8 = 1;

    /// Whether the column is part of the replica identity key.
    pub fn is_key(&self) -> bool {
        self.flags & Self::FLAG_KEY != 0
    }
}

/// Relation (`R`): the shape of a table, sent before its first change in a session and again
/// after any change to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// Xid, inside a stream segment only.
    pub xid: Option<u32>,
    /// OID of the relation.
    pub relation_id: Oid,
    /// Namespace (schema); empty for `pg_catalog`.
    pub namespace: String,
    /// Relation name.
    pub name: String,
    /// Replica identity setting.
    pub replica_identity: ReplicaIdentity,
    /// Published columns, in order.
    pub columns: Vec<RelationColumn>,
}

/// Type (`Y`): a non-builtin type used by a following Relation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Type {
    /// Xid, inside a stream segment only.
    pub xid: Option<u32>,
    /// OID of the type.
    pub type_id: Oid,
    /// Namespace; empty for `pg_catalog`.
    pub namespace: String,
    /// Type name.
    pub name: String,
}

/// Insert (`I`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insert {
    /// Xid, inside a stream segment only.
    pub xid: Option<u32>,
    /// OID of the relation (see the preceding [`Relation`]).
    pub relation_id: Oid,
    /// The new row.
    pub new: TupleData,
}

/// The old row image of an update or delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldTuple {
    /// `K`: only the replica identity key columns are set; the others are NULL.
    Key(TupleData),
    /// `O`: the whole old row (replica identity full).
    Full(TupleData),
}

impl OldTuple {
    /// The row image, whichever kind it is.
    pub fn tuple(&self) -> &TupleData {
        match self {
            OldTuple::Key(t) | OldTuple::Full(t) => t,
        }
    }
}

/// Update (`U`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// Xid, inside a stream segment only.
    pub xid: Option<u32>,
    /// OID of the relation.
    pub relation_id: Oid,
    /// Old key or row: present when the key changed (`K`) or with replica identity full (`O`).
    pub old: Option<OldTuple>,
    /// The new row; unchanged TOASTed columns are [`crate::ColumnRef::UnchangedToast`].
    pub new: TupleData,
}

/// Delete (`D`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    /// Xid, inside a stream segment only.
    pub xid: Option<u32>,
    /// OID of the relation.
    pub relation_id: Oid,
    /// The old key (`K`) or full row (`O`).
    pub old: OldTuple,
}

/// Truncate (`T`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncate {
    /// Xid, inside a stream segment only.
    pub xid: Option<u32>,
    /// Option bits: [`Truncate::CASCADE`], [`Truncate::RESTART_IDENTITY`].
    pub options: u8,
    /// OIDs of the truncated relations.
    pub relation_ids: Vec<Oid>,
}

impl Truncate {
    /// Option bit: `TRUNCATE ... CASCADE`.
    pub const CASCADE: u8 = 1;
    /// Option bit: `TRUNCATE ... RESTART IDENTITY`.
    pub const RESTART_IDENTITY: u8 = 2;

    /// Whether `CASCADE` was given.
    pub fn cascade(&self) -> bool {
        self.options & Self::CASCADE != 0
    }

    /// Whether `RESTART IDENTITY` was given.
    pub fn restart_identity(&self) -> bool {
        self.options & Self::RESTART_IDENTITY != 0
    }
}

/// Logical decoding message (`M`), from `pg_logical_emit_message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalMessage {
    /// Xid, inside a stream segment only.
    pub xid: Option<u32>,
    /// Flags: bit 1 = transactional.
    pub flags: u8,
    /// LSN of the message.
    pub lsn: Lsn,
    /// The prefix given to `pg_logical_emit_message`.
    pub prefix: String,
    /// The content, a zero-copy slice of the frame.
    pub content: Bytes,
}

impl LogicalMessage {
    /// Flag bit: the message was emitted as part of its transaction.
    pub const FLAG_TRANSACTIONAL: u8 = 1;

    /// Whether the message is transactional.
    pub fn transactional(&self) -> bool {
        self.flags & Self::FLAG_TRANSACTIONAL != 0
    }
}

/// Any pgoutput message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `B`
    Begin(Begin),
    /// `C`
    Commit(Commit),
    /// `O`
    Origin(Origin),
    /// `R`
    Relation(Relation),
    /// `Y`
    Type(Type),
    /// `I`
    Insert(Insert),
    /// `U`
    Update(Update),
    /// `D`
    Delete(Delete),
    /// `T`
    Truncate(Truncate),
    /// `M`
    Logical(LogicalMessage),
    /// `S`
    StreamStart(StreamStart),
    /// `E`
    StreamStop,
    /// `c`
    StreamCommit(StreamCommit),
    /// `A`
    StreamAbort(StreamAbort),
    /// `b`
    BeginPrepare(BeginPrepare),
    /// `P`
    Prepare(Prepare),
    /// `K`
    CommitPrepared(CommitPrepared),
    /// `r`
    RollbackPrepared(RollbackPrepared),
    /// `p`
    StreamPrepare(Prepare),
}

impl Message {
    /// The tag byte that starts this message on the wire.
    pub fn tag(&self) -> u8 {
        match self {
            Message::Begin(_) => b'B',
            Message::Commit(_) => b'C',
            Message::Origin(_) => b'O',
            Message::Relation(_) => b'R',
            Message::Type(_) => b'Y',
            Message::Insert(_) => b'I',
            Message::Update(_) => b'U',
            Message::Delete(_) => b'D',
            Message::Truncate(_) => b'T',
            Message::Logical(_) => b'M',
            Message::StreamStart(_) => b'S',
            Message::StreamStop => b'E',
            Message::StreamCommit(_) => b'c',
            Message::StreamAbort(_) => b'A',
            Message::BeginPrepare(_) => b'b',
            Message::Prepare(_) => b'P',
            Message::CommitPrepared(_) => b'K',
            Message::RollbackPrepared(_) => b'r',
            Message::StreamPrepare(_) => b'p',
        }
    }

    /// The lowercase name of the message with tag `tag`, as used in errors (`"insert"`).
    pub fn name_of(tag: u8) -> &'static str {
        match tag {
            b'B' => "begin",
            b'C' => "commit",
            b'O' => "origin",
            b'R' => "relation",
            b'Y' => "type",
            b'I' => "insert",
            b'U' => "update",
            b'D' => "delete",
            b'T' => "truncate",
            b'M' => "logical decoding",
            b'S' => "stream start",
            b'E' => "stream stop",
            b'c' => "stream commit",
            b'A' => "stream abort",
            b'b' => "begin prepare",
            b'P' => "prepare",
            b'K' => "commit prepared",
            b'r' => "rollback prepared",
            b'p' => "stream prepare",
            _ => "pgoutput",
        }
    }

    /// The lowercase name of this message.
    pub fn name(&self) -> &'static str {
        Message::name_of(self.tag())
    }
}

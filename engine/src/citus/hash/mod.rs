//! PostgreSQL's hash functions, reimplemented bit for bit, so that rows can be placed exactly
//! where Citus would place them (ROUTING.md §3).
//!
//! A [`HashKernel`] is chosen **once per table at startup** from the distribution column's type
//! (domains resolved to their base type, enums with their label → OID map taken from the
//! coordinator). Per row it hashes the value in either form the engine sees:
//!
//! * [`HashKernel::hash_binary`]: the type's binary send format, which binary pgoutput and
//!   binary COPY carry (e.g. int8 = 8 bytes big-endian);
//! * [`HashKernel::hash_text`]: the type's text output, as text-mode pgoutput sends it with the
//!   source session settings `DateStyle = ISO, MDY`, `TimeZone = UTC`, `IntervalStyle =
//!   postgres`, `extra_float_digits = 3`, `bytea_output = hex`.
//!
//! Both give the same `i32` (PostgreSQL's `uint32` hash read as `int32`, as Citus does). A type
//! without a kernel is refused at startup ([`HashKernel::for_builtin`] returns `None`), never
//! guessed at run time.
//!
//! ```text
//!  value bytes ─► kernel (parse/fold) ─► hash_bytes / hash_uint32 ─► i32 ─► router
//! ```
//!
//! Only little-endian hosts are supported: PostgreSQL hashes native-order words.

use std::collections::HashMap;
use std::sync::Arc;

mod array;
mod datetime;
mod float;
mod hex;
mod inet;
mod integer;
mod interval;
mod jsonb;
mod lookup3;
mod numeric;
mod text;
mod uuid;

#[cfg(test)]
mod vectors_test;

pub use float::{hashfloat4, hashfloat8};
pub use integer::{hashchar, hashint4, hashint8};
pub use interval::interval_hash;
pub use lookup3::{hash_bytes, hash_uint32};

#[cfg(test)]
pub(crate) use numeric::encode_binary as numeric_encode_binary;

/// A value the kernel cannot hash. Carries no part of the value (logs must not print row data);
/// the caller adds the table and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// Malformed binary send-format value.
    #[error("invalid binary {ty} value: {reason}")]
    Binary {
        /// SQL type name.
        ty: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// Malformed text-format value.
    #[error("invalid input syntax for type {ty}: {reason}")]
    Text {
        /// SQL type name.
        ty: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// An enum label that was not in `pg_enum` when the topology was loaded.
    #[error("enum label not found in the target's pg_enum (was a label added after startup?)")]
    UnknownEnumLabel,
}

impl HashError {
    pub(crate) fn binary(ty: &'static str, reason: &'static str) -> Self {
        HashError::Binary { ty, reason }
    }

    pub(crate) fn text(ty: &'static str, reason: &'static str) -> Self {
        HashError::Text { ty, reason }
    }

    fn as_binary(self) -> Self {
        match self {
            HashError::Text { ty, reason } => HashError::Binary { ty, reason },
            other => other,
        }
    }
}

/// Label → `hashenum` value for one enum type, built from the coordinator's `pg_enum`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnumLabels {
    by_label: HashMap<Box<[u8]>, u32>,
}

impl EnumLabels {
    /// Builds the map from `(label, pg_enum oid)` pairs of the coordinator.
    pub fn new<I, S>(labels: I) -> Self
    where
        I: IntoIterator<Item = (S, u32)>,
        S: AsRef<[u8]>,
    {
        let by_label = labels
            .into_iter()
            .map(|(l, oid)| (Box::from(l.as_ref()), hash_uint32(oid)))
            .collect();
        EnumLabels { by_label }
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.by_label.len()
    }

    /// Whether the type has no labels.
    pub fn is_empty(&self) -> bool {
        self.by_label.is_empty()
    }

    fn hash(&self, label: &[u8]) -> Result<u32, HashError> {
        self.by_label
            .get(label)
            .copied()
            .ok_or(HashError::UnknownEnumLabel)
    }
}

/// The hash function of one distribution column type: PostgreSQL's default hash opclass
/// support function 1 for that type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKernel {
    /// `smallint`: `hashint2`.
    Int2,
    /// `integer`: `hashint4`.
    Int4,
    /// `bigint`: `hashint8`.
    Int8,
    /// `oid`: `hashoid`.
    Oid,
    /// `boolean`: `hashchar` of 0/1.
    Bool,
    /// `"char"`: `hashchar` (sign-extended as on x86-64).
    Char,
    /// `text` and `varchar`: `hashtext`.
    Text,
    /// `character(n)`: `hashbpchar`, trailing blanks ignored.
    Bpchar,
    /// `name`: `hashname`.
    Name,
    /// `bytea`: `hashvarlena`.
    Bytea,
    /// `uuid`: `uuid_hash`.
    Uuid,
    /// `numeric`: `hash_numeric`.
    Numeric,
    /// `date`: `hashint4` of days since 2000-01-01.
    Date,
    /// `time`: `time_hash`.
    Time,
    /// `timetz`: `timetz_hash`.
    TimeTz,
    /// `timestamp`: `timestamp_hash`.
    Timestamp,
    /// `timestamptz`: `timestamp_hash` of the UTC instant.
    Timestamptz,
    /// `real`: `hashfloat4`.
    Float4,
    /// `double precision`: `hashfloat8`.
    Float8,
    /// `interval`: `interval_hash`.
    Interval,
    /// `inet` and `cidr`: `hashinet`.
    Inet,
    /// `macaddr`: `hashmacaddr`.
    MacAddr,
    /// `macaddr8`: `hashmacaddr8`.
    MacAddr8,
    /// `pg_lsn`: `pg_lsn_hash` (= `hashint8`).
    PgLsn,
    /// `jsonb`: `jsonb_hash`.
    Jsonb,
    /// An enum type: `hashenum` of the label's coordinator OID.
    Enum(Arc<EnumLabels>),
    /// An array whose elements use the inner kernel: `hash_array`.
    Array(Arc<HashKernel>),
}

impl HashKernel {
    /// The kernel for a built-in base type OID, or `None` if PostgreSQL has no hash opclass for
    /// it or pgwarp does not implement it (enums and arrays are built with
    /// [`HashKernel::Enum`] / [`HashKernel::Array`] by the topology loader).
    pub fn for_builtin(type_oid: u32) -> Option<HashKernel> {
        Some(match type_oid {
            16 => HashKernel::Bool,
            17 => HashKernel::Bytea,
            18 => HashKernel::Char,
            19 => HashKernel::Name,
            20 => HashKernel::Int8,
            21 => HashKernel::Int2,
            23 => HashKernel::Int4,
            25 | 1043 => HashKernel::Text,
            26 => HashKernel::Oid,
            650 | 869 => HashKernel::Inet,
            700 => HashKernel::Float4,
            701 => HashKernel::Float8,
            774 => HashKernel::MacAddr8,
            829 => HashKernel::MacAddr,
            1042 => HashKernel::Bpchar,
            1082 => HashKernel::Date,
            1083 => HashKernel::Time,
            1114 => HashKernel::Timestamp,
            1184 => HashKernel::Timestamptz,
            1186 => HashKernel::Interval,
            1266 => HashKernel::TimeTz,
            1700 => HashKernel::Numeric,
            2950 => HashKernel::Uuid,
            3220 => HashKernel::PgLsn,
            3802 => HashKernel::Jsonb,
            _ => return None,
        })
    }

    /// A short name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            HashKernel::Int2 => "smallint",
            HashKernel::Int4 => "integer",
            HashKernel::Int8 => "bigint",
            HashKernel::Oid => "oid",
            HashKernel::Bool => "boolean",
            HashKernel::Char => "\"char\"",
            HashKernel::Text => "text",
            HashKernel::Bpchar => "character",
            HashKernel::Name => "name",
            HashKernel::Bytea => "bytea",
            HashKernel::Uuid => "uuid",
            HashKernel::Numeric => "numeric",
            HashKernel::Date => "date",
            HashKernel::Time => "time without time zone",
            HashKernel::TimeTz => "time with time zone",
            HashKernel::Timestamp => "timestamp without time zone",
            HashKernel::Timestamptz => "timestamp with time zone",
            HashKernel::Float4 => "real",
            HashKernel::Float8 => "double precision",
            HashKernel::Interval => "interval",
            HashKernel::Inet => "inet",
            HashKernel::MacAddr => "macaddr",
            HashKernel::MacAddr8 => "macaddr8",
            HashKernel::PgLsn => "pg_lsn",
            HashKernel::Jsonb => "jsonb",
            HashKernel::Enum(_) => "enum",
            HashKernel::Array(_) => "array",
        }
    }

    /// Hashes a value in the type's binary send format (a binary COPY field / binary pgoutput
    /// column, without its length prefix).
    #[inline]
    pub fn hash_binary(&self, b: &[u8]) -> Result<i32, HashError> {
        self.binary_u32(b).map(|h| h as i32)
    }

    /// Hashes a value in the type's text output format.
    #[inline]
    pub fn hash_text(&self, s: &[u8]) -> Result<i32, HashError> {
        self.text_u32(s).map(|h| h as i32)
    }

    fn binary_u32(&self, b: &[u8]) -> Result<u32, HashError> {
        match self {
            HashKernel::Int2 => integer::int2_binary(b),
            HashKernel::Int4 => integer::int4_binary(b),
            HashKernel::Int8 => integer::int8_binary(b),
            HashKernel::Oid => integer::oid_binary(b),
            HashKernel::Bool => integer::bool_binary(b),
            HashKernel::Char => integer::char_binary(b),
            HashKernel::Text => Ok(text::text(b)),
            HashKernel::Bpchar => Ok(text::bpchar(b)),
            HashKernel::Name => Ok(text::name(b)),
            HashKernel::Bytea => Ok(text::text(b)),
            HashKernel::Uuid => uuid::binary(b),
            HashKernel::Numeric => numeric::binary(b),
            HashKernel::Date => datetime::date_binary(b),
            HashKernel::Time => datetime::int64_binary(b, "time without time zone"),
            HashKernel::TimeTz => datetime::timetz_binary(b),
            HashKernel::Timestamp => datetime::int64_binary(b, "timestamp without time zone"),
            HashKernel::Timestamptz => datetime::int64_binary(b, "timestamp with time zone"),
            HashKernel::Float4 => float::float4_binary(b),
            HashKernel::Float8 => float::float8_binary(b),
            HashKernel::Interval => interval::binary(b),
            HashKernel::Inet => inet::inet_binary(b),
            HashKernel::MacAddr => inet::macaddr_binary(b, 6),
            HashKernel::MacAddr8 => inet::macaddr_binary(b, 8),
            HashKernel::PgLsn => datetime::int64_binary(b, "pg_lsn"),
            HashKernel::Jsonb => jsonb::binary(b),
            HashKernel::Enum(labels) => labels.hash(b),
            HashKernel::Array(elem) => array::binary(elem, b),
        }
    }

    fn text_u32(&self, s: &[u8]) -> Result<u32, HashError> {
        match self {
            HashKernel::Int2 => integer::int2_text(s),
            HashKernel::Int4 => integer::int4_text(s),
            HashKernel::Int8 => integer::int8_text(s),
            HashKernel::Oid => integer::oid_text(s),
            HashKernel::Bool => integer::bool_text(s),
            HashKernel::Char => integer::char_text(s),
            HashKernel::Text => Ok(text::text(s)),
            HashKernel::Bpchar => Ok(text::bpchar(s)),
            HashKernel::Name => Ok(text::name(s)),
            HashKernel::Bytea => text::bytea_text(s),
            HashKernel::Uuid => uuid::text(s),
            HashKernel::Numeric => numeric::text(s),
            HashKernel::Date => datetime::date_text(s),
            HashKernel::Time => datetime::time_text(s),
            HashKernel::TimeTz => datetime::timetz_text(s),
            HashKernel::Timestamp => datetime::timestamp_text(s, false),
            HashKernel::Timestamptz => datetime::timestamp_text(s, true),
            HashKernel::Float4 => float::float4_text(s),
            HashKernel::Float8 => float::float8_text(s),
            HashKernel::Interval => interval::text(s),
            HashKernel::Inet => inet::inet_text(s),
            HashKernel::MacAddr => inet::macaddr_text(s, 6),
            HashKernel::MacAddr8 => inet::macaddr_text(s, 8),
            HashKernel::PgLsn => integer::pg_lsn_text(s),
            HashKernel::Jsonb => jsonb::text(s),
            HashKernel::Enum(labels) => labels.hash(s),
            HashKernel::Array(elem) => array::text(elem, s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_hashes_the_label_oid() {
        let k = HashKernel::Enum(Arc::new(EnumLabels::new([
            ("red", 16385u32),
            ("green", 16387),
        ])));
        assert_eq!(k.hash_text(b"green").unwrap(), hash_uint32(16387) as i32);
        assert_eq!(k.hash_binary(b"red").unwrap(), hash_uint32(16385) as i32);
        assert_eq!(k.hash_text(b"blue"), Err(HashError::UnknownEnumLabel));
    }

    #[test]
    fn domains_and_aliases_share_kernels() {
        assert_eq!(HashKernel::for_builtin(1043), Some(HashKernel::Text));
        assert_eq!(HashKernel::for_builtin(650), Some(HashKernel::Inet));
        assert_eq!(
            HashKernel::for_builtin(114),
            None,
            "json has no hash opclass"
        );
        assert_eq!(
            HashKernel::for_builtin(600),
            None,
            "point has no hash opclass"
        );
        assert_eq!(
            HashKernel::for_builtin(790),
            None,
            "money has no hash opclass"
        );
    }
}

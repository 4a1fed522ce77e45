//! Shard table names (Citus `AppendShardIdToName`, ROUTING.md §1.5) and identifier quoting.
//!
//! A shard table is `<relname>_<shardid>` in the Citus table's schema. When that would not fit
//! in PostgreSQL's 63-byte identifiers, Citus clips the name (never inside a multibyte
//! character) and inserts the 8-hex-digit `hash_bytes` of the *whole* name:
//! `<clipped>_<hash>_<shardid>`.
//!
//! **Quoting.** pgwarp always double-quotes identifiers it puts into SQL (`"public"."t_102008"`),
//! doubling embedded quotes. That is valid for every name, independent of the server's keyword
//! list and of case, where `quote_ident`'s "quote only when needed" would need the target's
//! exact keyword list to be safe. The only visible difference from Citus's `shard_name()` output
//! is that the quotes are always there.

use crate::citus::hash::hash_bytes;

/// PostgreSQL's `NAMEDATALEN`: identifiers have at most `NAMEDATALEN - 1` bytes.
const NAMEDATALEN: usize = 64;

/// A relation name that cannot be turned into a shard name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("relation name \"{name}\" is longer than {max} bytes", max = NAMEDATALEN - 1)]
pub struct NameTooLong {
    /// The offending name.
    pub name: String,
}

/// `pg_mbcliplen` for UTF-8: the longest prefix of at most `limit` bytes that does not split a
/// character.
fn clip_utf8(name: &str, limit: usize) -> usize {
    if name.len() <= limit {
        return name.len();
    }
    (0..=limit)
        .rev()
        .find(|&i| name.is_char_boundary(i))
        .unwrap_or(0)
}

/// The shard relation name for `relname` and `shard_id`, as Citus computes it (database
/// encoding UTF-8 or names in ASCII).
pub fn shard_rel_name(relname: &str, shard_id: i64) -> Result<String, NameTooLong> {
    if relname.len() >= NAMEDATALEN {
        return Err(NameTooLong {
            name: relname.to_string(),
        });
    }
    let suffix = format!("_{shard_id}");
    if relname.len() < NAMEDATALEN - suffix.len() {
        return Ok(format!("{relname}{suffix}"));
    }
    let hash = hash_bytes(relname.as_bytes());
    let clip = clip_utf8(relname, NAMEDATALEN - suffix.len() - 10);
    Ok(format!("{}_{hash:08x}{suffix}", &relname[..clip]))
}

pub use pgwarp_sink::quote::{quote_ident, quote_qualified};

#[cfg(test)]
mod tests {
    use super::*;

    /// The examples from the Citus regression outputs (ROUTING.md §1.5).
    #[test]
    fn citus_regression_shard_names() {
        assert_eq!(
            shard_rel_name(
                "abcde_012345678901234567890123456789012345678901234567890123456",
                4160710162
            )
            .unwrap(),
            "abcde_0123456789012345678901234567890123456_f7ff6612_4160710162"
        );
        assert_eq!(
            shard_rel_name(
                "nl_checky_12345678901234567890123456789012345678901234567890",
                225002
            )
            .unwrap(),
            "nl_checky_1234567890123456789012345678901234567_b16df46d_225002"
        );
        assert_eq!(shard_rel_name("orders", 102008).unwrap(), "orders_102008");
    }

    #[test]
    fn boundary_between_plain_and_hashed_names() {
        // 56 + "_102008" (7) = 63 bytes: still plain.
        let n56 = "a".repeat(56);
        assert_eq!(
            shard_rel_name(&n56, 102008).unwrap(),
            format!("{n56}_102008")
        );
        // 57 + 7 = 64: hashed, and the result is at most 63 bytes.
        let n57 = "a".repeat(57);
        let s = shard_rel_name(&n57, 102008).unwrap();
        assert_eq!(s.len(), 63);
        assert!(s.starts_with(&"a".repeat(47)) && s.ends_with("_102008"));
        assert!(shard_rel_name(&"a".repeat(64), 1).is_err());
    }

    #[test]
    fn multibyte_names_are_not_split() {
        // 'é' is two bytes; 30 of them = 60 bytes.
        let name = "é".repeat(30);
        let s = shard_rel_name(&name, 102008).unwrap();
        // limit 64 - 7 - 10 = 47 bytes -> 23 characters (46 bytes).
        assert!(s.starts_with(&"é".repeat(23)));
        assert!(!s.starts_with(&"é".repeat(24)));
        assert!(s.len() <= 63);
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("orders"), "\"orders\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_qualified("Sales", "t_1"), "\"Sales\".\"t_1\"");
    }
}

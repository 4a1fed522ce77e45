//! Citus's shard-table naming rule (`AppendShardIdToName`, ROUTING.md §1.5), implemented here
//! on its own so tests have an oracle independent of the engine's implementation.
//!
//! `name_<shardid>`, unless that would not fit in 63 bytes: then the name is clipped (never
//! inside a multibyte character) to `63 - len("_<shardid>") - 10` bytes and followed by
//! `_<8 hex digits of hash_any(whole name)>_<shardid>`. The hash is PostgreSQL's own
//! `hash_any` over the name's bytes, which is what `hashtext(name)` returns under a
//! deterministic collation; the harness asks a server for it (see `CitusFixture`), so no
//! hash code is shared with the engine either.

use crate::error::{HarnessError, Result};

/// PostgreSQL's `NAMEDATALEN`.
pub const NAMEDATALEN: usize = 64;

/// Does `name` need the hashed long-name form for this shard id?
pub fn needs_hash(name: &str, shardid: i64) -> bool {
    let suffix_len = format!("_{shardid}").len();
    name.len() >= NAMEDATALEN - suffix_len
}

/// The shard table name for `name` and `shardid`. `name_hash` is called only for long names
/// and must return `hash_any` of the name's bytes (e.g. `SELECT hashtext(name)`).
pub fn shard_table_name(
    name: &str,
    shardid: i64,
    name_hash: impl FnOnce(&str) -> Result<u32>,
) -> Result<String> {
    if name.len() >= NAMEDATALEN {
        return Err(HarnessError::UnexpectedResult(format!(
            "relation name \"{name}\" is {} bytes, longer than PostgreSQL allows",
            name.len()
        )));
    }
    let suffix = format!("_{shardid}");
    if !needs_hash(name, shardid) {
        return Ok(format!("{name}{suffix}"));
    }
    let hash = name_hash(name)?;
    let limit = NAMEDATALEN - suffix.len() - 10;
    let clip = clip_len(name, limit);
    Ok(format!("{}_{hash:08x}{suffix}", &name[..clip]))
}

/// `pg_mbcliplen` for UTF-8: the longest prefix of at most `limit` bytes that ends on a
/// character boundary.
fn clip_len(name: &str, limit: usize) -> usize {
    let mut len = 0;
    for ch in name.chars() {
        if len + ch.len_utf8() > limit {
            break;
        }
        len += ch.len_utf8();
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_hash(_: &str) -> Result<u32> {
        panic!("short names must not be hashed")
    }

    #[test]
    fn short_names_get_the_shard_id_appended() {
        assert_eq!(
            shard_table_name("orders", 102008, no_hash).unwrap(),
            "orders_102008"
        );
        // Citus appends while len(name) < 64 - len("_102008") = 57.
        let name = "a".repeat(56);
        assert_eq!(
            shard_table_name(&name, 102008, no_hash).unwrap(),
            format!("{name}_102008")
        );
        assert!(needs_hash(&"a".repeat(57), 102008));
    }

    #[test]
    fn long_names_match_citus_regression_outputs() {
        // ROUTING.md §1.5; the hashes are hashtext() of the names on PostgreSQL 15.
        let name = "abcde_012345678901234567890123456789012345678901234567890123456";
        let got = shard_table_name(name, 4160710162, |_| Ok(0xf7ff6612)).unwrap();
        assert_eq!(
            got,
            "abcde_0123456789012345678901234567890123456_f7ff6612_4160710162"
        );
        let name = "nl_checky_12345678901234567890123456789012345678901234567890";
        let got = shard_table_name(name, 225002, |_| Ok(0xb16df46d)).unwrap();
        assert_eq!(
            got,
            "nl_checky_1234567890123456789012345678901234567_b16df46d_225002"
        );
        assert!(got.len() <= 63);
    }

    #[test]
    fn clipping_never_splits_a_multibyte_character() {
        // 28 two-byte characters plus "x" = 57 bytes: needs the hash form, and the clip limit
        // 64 - 7 - 10 = 47 falls inside the 24th character, so 23 characters (46 bytes) remain.
        let name = format!("{}x", "é".repeat(28));
        let got = shard_table_name(&name, 102008, |_| Ok(0x0000_00ab)).unwrap();
        assert_eq!(got, format!("{}_000000ab_102008", "é".repeat(23)));
    }

    #[test]
    fn names_of_64_bytes_are_refused() {
        assert!(shard_table_name(&"a".repeat(64), 1, no_hash).is_err());
    }
}

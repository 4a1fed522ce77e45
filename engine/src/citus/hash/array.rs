//! `hash_array` (PG `arrayfuncs.c`), ROUTING.md §3.7: `result = 1`, then for each element in
//! storage (row-major) order `result = result * 31 + element_hash`, a NULL element counting as
//! 0. Dimensions and lower bounds are not hashed, so `'{1,2}'` and `'[5:6]={1,2}'` hash alike.
//!
//! Binary form (`array_send`): ndim, has-nulls flag, element type OID (ignored: it is the
//! source's OID), (size, lower bound) per dimension, then each element as int32 length (-1 for
//! NULL) and bytes. Text form (`array_out`): `{1,2}`, `{{1,2},{3,4}}`, `[0:1]={a,b}`, elements
//! double-quoted with backslash escapes where needed, unquoted `NULL` for a null.

use std::borrow::Cow;

use super::{HashError, HashKernel};

const TY: &str = "array";
/// PostgreSQL's MAXDIM.
const MAX_DIMS: i32 = 6;

#[inline]
fn fold(acc: u32, elem: u32) -> u32 {
    acc.wrapping_mul(31).wrapping_add(elem)
}

fn read_i32(b: &[u8], at: &mut usize) -> Result<i32, HashError> {
    let bytes = b
        .get(*at..*at + 4)
        .ok_or(HashError::binary(TY, "truncated"))?;
    *at += 4;
    Ok(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

pub(super) fn binary(elem: &HashKernel, b: &[u8]) -> Result<u32, HashError> {
    let mut at = 0;
    let ndim = read_i32(b, &mut at)?;
    let _flags = read_i32(b, &mut at)?;
    let _elemtype = read_i32(b, &mut at)?;
    if !(0..=MAX_DIMS).contains(&ndim) {
        return Err(HashError::binary(TY, "invalid number of dimensions"));
    }
    let mut count: u64 = if ndim == 0 { 0 } else { 1 };
    for _ in 0..ndim {
        let size = read_i32(b, &mut at)?;
        let _lbound = read_i32(b, &mut at)?;
        let size = u64::try_from(size).map_err(|_| HashError::binary(TY, "negative dimension"))?;
        count = count.saturating_mul(size);
    }
    let mut result = 1u32;
    for _ in 0..count {
        let len = read_i32(b, &mut at)?;
        let h = if len < 0 {
            0
        } else {
            let len = len as usize;
            let v = b
                .get(at..at + len)
                .ok_or(HashError::binary(TY, "truncated element"))?;
            at += len;
            elem.binary_u32(v)?
        };
        result = fold(result, h);
    }
    if at != b.len() {
        return Err(HashError::binary(TY, "trailing bytes"));
    }
    Ok(result)
}

pub(super) fn text(elem: &HashKernel, s: &[u8]) -> Result<u32, HashError> {
    let mut i = 0;
    // Optional dimension decoration: [lo:hi][lo:hi]=
    if s.first() == Some(&b'[') {
        i = s
            .iter()
            .position(|&c| c == b'=')
            .ok_or(HashError::text(TY, "missing '='"))?
            + 1;
    }
    if s.get(i) != Some(&b'{') {
        return Err(HashError::text(TY, "'{' expected"));
    }
    let mut depth = 0usize;
    let mut result = 1u32;
    // Whether the previous token allows a following element (after '{' or ',').
    let mut expect_item = true;
    while i < s.len() {
        match s[i] {
            b'{' => {
                depth += 1;
                if depth > MAX_DIMS as usize {
                    return Err(HashError::text(TY, "too many dimensions"));
                }
                expect_item = true;
                i += 1;
            }
            b'}' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or(HashError::text(TY, "unbalanced braces"))?;
                expect_item = false;
                i += 1;
                if depth == 0 {
                    break;
                }
            }
            b',' => {
                expect_item = true;
                i += 1;
            }
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            _ if !expect_item => return Err(HashError::text(TY, "',' expected")),
            b'"' => {
                let (value, next) = quoted(s, i + 1)?;
                result = fold(result, elem.text_u32(&value)?);
                i = next;
                expect_item = false;
            }
            _ => {
                let end = s[i..]
                    .iter()
                    .position(|&c| c == b',' || c == b'}')
                    .map_or(s.len(), |p| i + p);
                let token = s[i..end].trim_ascii();
                let h = if token.eq_ignore_ascii_case(b"NULL") {
                    0
                } else {
                    elem.text_u32(token)?
                };
                result = fold(result, h);
                i = end;
                expect_item = false;
            }
        }
    }
    if depth != 0 || i != s.len() {
        return Err(HashError::text(TY, "malformed array literal"));
    }
    Ok(result)
}

/// A double-quoted element starting after the quote: the unescaped bytes and the index after
/// the closing quote.
fn quoted(s: &[u8], start: usize) -> Result<(Cow<'_, [u8]>, usize), HashError> {
    let mut i = start;
    let mut owned: Option<Vec<u8>> = None;
    while i < s.len() {
        match s[i] {
            b'"' => {
                let v = owned.map_or(Cow::Borrowed(&s[start..i]), Cow::Owned);
                return Ok((v, i + 1));
            }
            b'\\' => {
                let buf = owned.get_or_insert_with(|| s[start..i].to_vec());
                let c = *s
                    .get(i + 1)
                    .ok_or(HashError::text(TY, "unterminated quoted element"))?;
                buf.push(c);
                i += 2;
            }
            c => {
                if let Some(buf) = owned.as_mut() {
                    buf.push(c);
                }
                i += 1;
            }
        }
    }
    Err(HashError::text(TY, "unterminated quoted element"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::citus::hash::lookup3::hash_bytes;

    fn text_kernel() -> HashKernel {
        HashKernel::Text
    }

    #[test]
    fn fold_matches_definition() {
        let k = text_kernel();
        let want = fold(
            fold(fold(1, hash_bytes(b"a")), hash_bytes(b"b")),
            hash_bytes(b"c"),
        );
        assert_eq!(text(&k, b"{a,b,c}").unwrap(), want);
        assert_eq!(text(&k, b"{\"a\",b,\"c\"}").unwrap(), want);
        assert_eq!(text(&k, b"[0:2]={a,b,c}").unwrap(), want);
        assert_eq!(text(&k, b"{}").unwrap(), 1);
        let with_null = fold(fold(1, hash_bytes(b"a")), 0);
        assert_eq!(text(&k, b"{a,NULL}").unwrap(), with_null);
        assert_ne!(text(&k, b"{a,\"NULL\"}").unwrap(), with_null);
        assert_eq!(
            text(&k, b"{\"a\\\"b\",\"x,y\"}").unwrap(),
            fold(fold(1, hash_bytes(b"a\"b")), hash_bytes(b"x,y"))
        );
        assert_eq!(
            text(&HashKernel::Int4, b"{{1,2},{3,4}}").unwrap(),
            text(&HashKernel::Int4, b"{1,2,3,4}").unwrap()
        );
        assert!(text(&k, b"{a,b").is_err());
        assert!(text(&k, b"{a}}").is_err());
        assert!(text(&k, b"a,b").is_err());
    }

    #[test]
    fn binary_matches_text() {
        let mut b = Vec::new();
        for v in [1i32, 0, 23] {
            b.extend_from_slice(&v.to_be_bytes()); // ndim, flags, elemtype
        }
        b.extend_from_slice(&3i32.to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes());
        for v in [Some(1i32), None, Some(3)] {
            match v {
                Some(v) => {
                    b.extend_from_slice(&4i32.to_be_bytes());
                    b.extend_from_slice(&v.to_be_bytes());
                }
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        assert_eq!(
            binary(&HashKernel::Int4, &b).unwrap(),
            text(&HashKernel::Int4, b"{1,NULL,3}").unwrap()
        );
        let empty = [0u8; 12];
        assert_eq!(binary(&HashKernel::Int4, &empty).unwrap(), 1);
        assert!(binary(&HashKernel::Int4, &b[..b.len() - 1]).is_err());
    }
}

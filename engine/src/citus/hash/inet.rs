//! `hashinet` (inet and cidr) and `hashmacaddr` / `hashmacaddr8`, ROUTING.md §3.3.
//!
//! `hashinet` hashes the stored `inet_struct` prefix: family (2 = `PGSQL_AF_INET`,
//! 3 = `PGSQL_AF_INET6`), mask bits, then the 4 or 16 address bytes as stored (inet keeps host
//! bits). The cidr flag is not hashed. Binary form (`inet_send`): family, bits, is_cidr, address
//! length, address. Text form: `10.1.2.3/24`, `10.1.2.3` (inet with a full mask omits it),
//! `2001:db8::/32`, `::ffff:1.2.3.4`.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::HashError;
use super::integer::fixed;
use super::lookup3::hash_bytes;

const PGSQL_AF_INET: u8 = 2;
const PGSQL_AF_INET6: u8 = 3;

fn hash_inet(family: u8, bits: u8, addr: &[u8]) -> u32 {
    let mut buf = [0u8; 18];
    buf[0] = family;
    buf[1] = bits;
    buf[2..2 + addr.len()].copy_from_slice(addr);
    hash_bytes(&buf[..2 + addr.len()])
}

pub(super) fn inet_binary(b: &[u8]) -> Result<u32, HashError> {
    const TY: &str = "inet";
    let [family, bits, _is_cidr, nb, addr @ ..] = b else {
        return Err(HashError::binary(TY, "too short"));
    };
    let (want_len, max_bits) = match *family {
        PGSQL_AF_INET => (4, 32),
        PGSQL_AF_INET6 => (16, 128),
        _ => return Err(HashError::binary(TY, "invalid address family")),
    };
    if usize::from(*nb) != want_len || addr.len() != want_len || *bits > max_bits {
        return Err(HashError::binary(TY, "invalid address length"));
    }
    Ok(hash_inet(*family, *bits, addr))
}

pub(super) fn inet_text(s: &[u8]) -> Result<u32, HashError> {
    const TY: &str = "inet";
    let text = std::str::from_utf8(s).map_err(|_| HashError::text(TY, "invalid address"))?;
    let (addr, bits) = match text.split_once('/') {
        Some((a, b)) => (
            a,
            Some(
                b.parse::<u8>()
                    .map_err(|_| HashError::text(TY, "invalid mask"))?,
            ),
        ),
        None => (text, None),
    };
    if let Ok(v4) = addr.parse::<Ipv4Addr>() {
        let bits = bits.unwrap_or(32);
        if bits > 32 {
            return Err(HashError::text(TY, "invalid mask"));
        }
        return Ok(hash_inet(PGSQL_AF_INET, bits, &v4.octets()));
    }
    if let Ok(v6) = addr.parse::<Ipv6Addr>() {
        let bits = bits.unwrap_or(128);
        if bits > 128 {
            return Err(HashError::text(TY, "invalid mask"));
        }
        return Ok(hash_inet(PGSQL_AF_INET6, bits, &v6.octets()));
    }
    Err(HashError::text(TY, "invalid address"))
}

pub(super) fn macaddr_binary(b: &[u8], len: usize) -> Result<u32, HashError> {
    match len {
        6 => Ok(hash_bytes(&fixed::<6>(b, "macaddr")?)),
        _ => Ok(hash_bytes(&fixed::<8>(b, "macaddr8")?)),
    }
}

/// `macaddr_out` / `macaddr8_out`: `08:00:2b:01:02:03`; `-` separators are tolerated.
pub(super) fn macaddr_text(s: &[u8], len: usize) -> Result<u32, HashError> {
    let ty = if len == 6 { "macaddr" } else { "macaddr8" };
    let mut out = [0u8; 8];
    let groups: Vec<&[u8]> = s.split(|&c| c == b':' || c == b'-').collect();
    if groups.len() != len {
        return Err(HashError::text(ty, "wrong number of octets"));
    }
    for (o, g) in out.iter_mut().zip(&groups) {
        let g = std::str::from_utf8(g).map_err(|_| HashError::text(ty, "invalid octet"))?;
        if g.len() != 2 {
            return Err(HashError::text(ty, "invalid octet"));
        }
        *o = u8::from_str_radix(g, 16).map_err(|_| HashError::text(ty, "invalid octet"))?;
    }
    Ok(hash_bytes(&out[..len]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(family: u8, bits: u8, cidr: bool, addr: &[u8]) -> Vec<u8> {
        let mut v = vec![family, bits, u8::from(cidr), addr.len() as u8];
        v.extend_from_slice(addr);
        v
    }

    #[test]
    fn text_matches_binary() {
        assert_eq!(
            inet_text(b"10.1.2.3/24").unwrap(),
            inet_binary(&send(2, 24, false, &[10, 1, 2, 3])).unwrap()
        );
        assert_eq!(
            inet_text(b"10.1.2.3").unwrap(),
            inet_binary(&send(2, 32, false, &[10, 1, 2, 3])).unwrap()
        );
        assert_eq!(
            inet_text(b"10.1.2.0/24").unwrap(),
            inet_binary(&send(2, 24, true, &[10, 1, 2, 0])).unwrap()
        );
        let mut one = [0u8; 16];
        one[15] = 1;
        assert_eq!(
            inet_text(b"::1").unwrap(),
            inet_binary(&send(3, 128, false, &one)).unwrap()
        );
        assert_eq!(inet_text(b"::1").unwrap() as i32, 1984372031);
        assert_eq!(inet_text(b"2001:db8::1/64").unwrap() as i32, 1717432752);
        assert!(inet_text(b"10.1.2.3/33").is_err());
        assert!(inet_text(b"10.1.2").is_err());
        assert!(inet_binary(&send(2, 24, false, &[10, 1, 2])).is_err());
    }

    #[test]
    fn macaddr_forms() {
        assert_eq!(
            macaddr_text(b"08:00:2b:01:02:03", 6).unwrap(),
            macaddr_binary(&[8, 0, 0x2b, 1, 2, 3], 6).unwrap()
        );
        assert_eq!(
            macaddr_text(b"08-00-2B-01-02-03", 6).unwrap(),
            macaddr_binary(&[8, 0, 0x2b, 1, 2, 3], 6).unwrap()
        );
        assert!(macaddr_text(b"08:00:2b:01:02", 6).is_err());
    }
}

//! Rewriting type OIDs embedded in binary values, so binary passthrough works for user types.
//!
//! Most binary send formats hold only the value. Two embed type OIDs, which differ between
//! clusters for user-defined types (enums, domains, composites get their OIDs per cluster):
//!
//! * `array_send` writes the element type OID (`enum[]`, `domain[]`, `composite[]`);
//! * `record_send` writes each field's type OID (a composite with an enum field).
//!
//! PostgreSQL 13 and older reject a mismatch in `array_recv` ("wrong element type") and
//! `record_recv`. PostgreSQL 14 relaxed both checks to OIDs in the built-in range (release
//! note: "Allow binary data transfer to be more forgiving of array and record OID mismatches"),
//! and a PostgreSQL 15.18 server was observed loading a source's `mood[]` with a foreign element
//! OID. Citus's own COPY code (`CanUseBinaryCopyFormatForType`) still avoids binary for these
//! types, from the older rule.
//!
//! The choice here is to **rewrite** these OIDs to the target node's, rather than fall back to
//! text COPY for such tables: the node then receives exactly the bytes its own `send` functions
//! would produce, on any server version. A text fallback is not an option for the stream anyway:
//! pgoutput's binary option is one switch for the whole subscription. The OIDs sit at fixed
//! places in the value's structure and an OID is four bytes either way, so the value is copied
//! as it is and patched in place; nothing is decoded. A column whose type embeds no user-type
//! OID (all built-in types, enums, ranges and domains over them) has the [`Shape::Opaque`] shape
//! and is never walked.
//!
//! The structure follows PostgreSQL 15's `array_send`, `record_send`, `range_send` and
//! `multirange_send` (`src/backend/utils/adt/arrayfuncs.c`, `rowtypes.c`, `rangetypes.c`,
//! `multirangetypes.c`).

/// OIDs below this are assigned by `initdb` and equal on every cluster of a major version.
pub(crate) const FIRST_NORMAL_OID: u32 = 16384;

/// Nesting limit for value walks (PostgreSQL's own limit is far lower in practice).
const MAX_DEPTH: usize = 32;

/// Where a type's binary form embeds OIDs, with the target's OIDs to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Nothing to rewrite.
    Opaque,
    /// `array_send`: header with the element type OID, then elements.
    Array { elem_oid: u32, elem: Box<Shape> },
    /// `record_send`: field count, then per field its type OID and value.
    Composite { fields: Vec<(u32, Shape)> },
    /// `range_send`: flags, then the bounds as length-prefixed subtype values.
    Range(Box<Shape>),
    /// `multirange_send`: count, then length-prefixed range values.
    Multirange(Box<Shape>),
}

impl Shape {
    /// Whether values of this shape may need rewriting.
    pub(crate) fn needs_rewrite(&self) -> bool {
        !matches!(self, Shape::Opaque)
    }

    /// Collapses subtrees that only carry built-in OIDs into [`Shape::Opaque`].
    pub(crate) fn simplify(self) -> Shape {
        match self {
            Shape::Opaque => Shape::Opaque,
            Shape::Array { elem_oid, elem } => {
                let elem = elem.simplify();
                if elem_oid < FIRST_NORMAL_OID && !elem.needs_rewrite() {
                    Shape::Opaque
                } else {
                    Shape::Array {
                        elem_oid,
                        elem: Box::new(elem),
                    }
                }
            }
            Shape::Composite { fields } => {
                let fields: Vec<(u32, Shape)> =
                    fields.into_iter().map(|(o, s)| (o, s.simplify())).collect();
                if fields
                    .iter()
                    .all(|(o, s)| *o < FIRST_NORMAL_OID && !s.needs_rewrite())
                {
                    // Field OIDs are still checked by count on receipt; all built-in, no change.
                    Shape::Opaque
                } else {
                    Shape::Composite { fields }
                }
            }
            Shape::Range(s) => match s.simplify() {
                Shape::Opaque => Shape::Opaque,
                s => Shape::Range(Box::new(s)),
            },
            Shape::Multirange(s) => match s.simplify() {
                Shape::Opaque => Shape::Opaque,
                s => Shape::Multirange(Box::new(s)),
            },
        }
    }
}

/// Rewrites the OIDs embedded in one binary value in place.
pub(crate) fn rewrite(value: &mut [u8], shape: &Shape) -> Result<(), String> {
    walk(value, shape, 0)
}

fn read_i32(buf: &[u8], at: usize, what: &str) -> Result<i32, String> {
    buf.get(at..at + 4)
        .and_then(|b| b.first_chunk::<4>())
        .map(|b| i32::from_be_bytes(*b))
        .ok_or_else(|| format!("value ends inside {what}"))
}

fn write_oid(buf: &mut [u8], at: usize, oid: u32) -> Result<(), String> {
    buf.get_mut(at..at + 4)
        .ok_or_else(|| "value ends inside a type oid".to_string())?
        .copy_from_slice(&oid.to_be_bytes());
    Ok(())
}

/// Walks `count` length-prefixed values starting at `pos`, rewriting each; returns the end.
fn walk_items(
    buf: &mut [u8],
    mut pos: usize,
    count: usize,
    shape: &Shape,
    depth: usize,
) -> Result<usize, String> {
    for _ in 0..count {
        let len = read_i32(buf, pos, "an element length")?;
        pos += 4;
        if len < 0 {
            continue;
        }
        let end = pos + len as usize;
        let item = buf
            .get_mut(pos..end)
            .ok_or_else(|| "element longer than the value".to_string())?;
        walk(item, shape, depth + 1)?;
        pos = end;
    }
    Ok(pos)
}

fn walk(buf: &mut [u8], shape: &Shape, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err("value nested too deeply".into());
    }
    match shape {
        Shape::Opaque => Ok(()),
        Shape::Array { elem_oid, elem } => {
            let ndim = read_i32(buf, 0, "the array header")?;
            if !(0..=6).contains(&ndim) {
                return Err(format!("array has {ndim} dimensions"));
            }
            read_i32(buf, 4, "the array header")?;
            write_oid(buf, 8, *elem_oid)?;
            if !elem.needs_rewrite() {
                return Ok(());
            }
            let mut count: usize = if ndim == 0 { 0 } else { 1 };
            for d in 0..ndim as usize {
                let n = read_i32(buf, 12 + 8 * d, "the array dimensions")?;
                let n = usize::try_from(n).map_err(|_| "negative array dimension".to_string())?;
                count = count
                    .checked_mul(n)
                    .filter(|&c| c <= buf.len() / 4)
                    .ok_or_else(|| "array dimensions exceed the value".to_string())?;
            }
            let end = walk_items(buf, 12 + 8 * ndim as usize, count, elem, depth)?;
            check_end(buf, end)
        }
        Shape::Composite { fields } => {
            let n = read_i32(buf, 0, "the field count")?;
            if usize::try_from(n).ok() != Some(fields.len()) {
                return Err(format!(
                    "composite value has {n} fields, the target type has {}",
                    fields.len()
                ));
            }
            let mut pos = 4;
            for (oid, shape) in fields {
                write_oid(buf, pos, *oid)?;
                pos = walk_items(buf, pos + 4, 1, shape, depth)?;
            }
            check_end(buf, pos)
        }
        Shape::Range(sub) => {
            const EMPTY: u8 = 0x01;
            const LB_INF: u8 = 0x08;
            const UB_INF: u8 = 0x10;
            const LB_NULL: u8 = 0x20;
            const UB_NULL: u8 = 0x40;
            let flags = *buf.first().ok_or("empty range value")?;
            let bounds = usize::from(flags & (EMPTY | LB_INF | LB_NULL) == 0)
                + usize::from(flags & (EMPTY | UB_INF | UB_NULL) == 0);
            let end = walk_items(buf, 1, bounds, sub, depth)?;
            check_end(buf, end)
        }
        Shape::Multirange(range) => {
            let n = read_i32(buf, 0, "the range count")?;
            let n = usize::try_from(n).map_err(|_| "negative range count".to_string())?;
            if n > buf.len() / 4 {
                return Err("range count exceeds the value".into());
            }
            let end = walk_items(buf, 4, n, range, depth)?;
            check_end(buf, end)
        }
    }
}

fn check_end(buf: &[u8], end: usize) -> Result<(), String> {
    if end == buf.len() {
        Ok(())
    } else {
        Err(format!(
            "{} unexpected bytes after the value",
            buf.len().saturating_sub(end)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be(v: &[i32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_be_bytes()).collect()
    }

    #[test]
    fn rewrites_an_enum_array() {
        // 1-D array of 2 enum labels (binary enum = label text), one NULL, source oid 40000.
        let mut v = be(&[1, 1, 40000, 3, 1]);
        v.extend(be(&[2]));
        v.extend(b"ok");
        v.extend(be(&[-1]));
        v.extend(be(&[3]));
        v.extend(b"bad");
        let shape = Shape::Array {
            elem_oid: 50000,
            elem: Box::new(Shape::Opaque),
        }
        .simplify();
        rewrite(&mut v, &shape).unwrap();
        assert_eq!(&v[8..12], &50000u32.to_be_bytes());
        assert_eq!(
            &v[12..],
            &{
                let mut w = be(&[3, 1, 2]);
                w.extend(b"ok");
                w.extend(be(&[-1, 3]));
                w.extend(b"bad");
                w
            }[..]
        );
    }

    #[test]
    fn rewrites_nested_composites() {
        // composite (int4, myenum) inside an array of that composite type.
        let field = {
            let mut f = be(&[2, 23, 4, 7, 40001, 1]);
            f.push(b'x');
            f
        };
        let mut v = be(&[1, 0, 40002, 1, 1, field.len() as i32]);
        v.extend(&field);
        let shape = Shape::Array {
            elem_oid: 50002,
            elem: Box::new(Shape::Composite {
                fields: vec![(23, Shape::Opaque), (50001, Shape::Opaque)],
            }),
        }
        .simplify();
        rewrite(&mut v, &shape).unwrap();
        let mut want = be(&[1, 0, 50002, 1, 1, field.len() as i32]);
        let mut f = be(&[2, 23, 4, 7, 50001, 1]);
        f.push(b'x');
        want.extend(f);
        assert_eq!(v, want);
    }

    #[test]
    fn builtin_only_shapes_are_opaque() {
        let s = Shape::Array {
            elem_oid: 23,
            elem: Box::new(Shape::Opaque),
        };
        assert_eq!(s.simplify(), Shape::Opaque);
        let s = Shape::Composite {
            fields: vec![(23, Shape::Opaque), (25, Shape::Opaque)],
        };
        assert_eq!(s.simplify(), Shape::Opaque);
        let s = Shape::Range(Box::new(Shape::Opaque));
        assert_eq!(s.simplify(), Shape::Opaque);
    }

    #[test]
    fn rejects_malformed_values_without_panicking() {
        let shape = Shape::Composite {
            fields: vec![(50001, Shape::Opaque)],
        };
        assert_eq!(
            rewrite(&mut be(&[2, 23, -1, 23, -1]), &shape).unwrap_err(),
            "composite value has 2 fields, the target type has 1"
        );
        assert!(rewrite(&mut be(&[1, 23, 100]), &shape).is_err());
        assert!(rewrite(&mut be(&[1, 23]), &shape).is_err());
        let arr = Shape::Array {
            elem_oid: 50000,
            elem: Box::new(shape),
        };
        assert!(rewrite(&mut be(&[1, 0, 1, i32::MAX, 1]), &arr).is_err());
        assert!(rewrite(&mut be(&[7, 0, 1]), &arr).is_err());
        assert!(rewrite(&mut [0u8; 3], &arr).is_err());
        let range = Shape::Range(Box::new(Shape::Composite { fields: vec![] }));
        assert!(rewrite(&mut [0x18], &range).is_ok());
        assert!(rewrite(&mut [0x00, 0, 0], &range).is_err());
    }
}

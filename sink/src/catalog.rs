//! Reading a node's catalog: column types of a shard, as [`Shape`]s for OID rewriting.
//!
//! Types are matched to the source by structure, not by OID: the node's shard table has the
//! same columns (by name) as the source table, each of the same type (same definition, other
//! OID). Walking the node's `pg_type` from each column gives the OIDs the node's receive
//! functions expect at each embedded position.

use std::collections::HashMap;

use tokio_postgres::Client;

use crate::oid_rewrite::Shape;
use crate::target::ShardTarget;

/// One `pg_type` row, as far as binary structure goes.
#[derive(Debug, Clone)]
struct TypeInfo {
    typtype: u8,
    elem: u32,
    base: u32,
    relid: u32,
    is_array: bool,
    range_sub: Option<u32>,
    /// For a multirange: its range type.
    multirange_sub: Option<u32>,
}

/// What can go wrong loading shapes, before the caller adds node context.
#[derive(Debug)]
pub(crate) enum CatalogError {
    /// A query failed.
    Query(tokio_postgres::Error),
    /// A column of the table is not on the shard.
    MissingColumn(String),
    /// A type could not be resolved.
    Type(String),
}

/// The shape of every column of `shard` (in the table's column order), simplified.
pub(crate) async fn load_shapes(
    client: &Client,
    shard: &ShardTarget,
) -> Result<Vec<Shape>, CatalogError> {
    let rows = client
        .query(
            "SELECT attname::text, atttypid FROM pg_attribute \
             WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped",
            &[&shard.quoted_name()],
        )
        .await
        .map_err(CatalogError::Query)?;
    let mut by_name = HashMap::new();
    for r in &rows {
        let name: String = r.try_get(0).map_err(CatalogError::Query)?;
        let oid: u32 = r.try_get(1).map_err(CatalogError::Query)?;
        by_name.insert(name, oid);
    }
    let mut oids = Vec::new();
    for c in shard.table().columns() {
        let oid = by_name
            .get(c)
            .ok_or_else(|| CatalogError::MissingColumn(c.clone()))?;
        oids.push(*oid);
    }
    let mut types: HashMap<u32, TypeInfo> = HashMap::new();
    let mut fields: HashMap<u32, Vec<u32>> = HashMap::new();
    let mut todo: Vec<u32> = oids.clone();
    // Breadth-first closure over element, base, field and range subtypes; each round is one
    // query, and nesting is shallow in practice.
    for _ in 0..32 {
        todo.retain(|o| !types.contains_key(o));
        todo.sort_unstable();
        todo.dedup();
        if todo.is_empty() {
            break;
        }
        let rows = client
            .query(
                "SELECT t.oid, t.typtype::text, t.typelem, t.typbasetype, t.typrelid, \
                        t.typsubscript = 'array_subscript_handler'::regproc, \
                        r.rngsubtype, m.rngtypid \
                 FROM pg_type t \
                 LEFT JOIN pg_range r ON r.rngtypid = t.oid \
                 LEFT JOIN pg_range m ON m.rngmultitypid = t.oid \
                 WHERE t.oid = ANY($1)",
                &[&todo],
            )
            .await
            .map_err(CatalogError::Query)?;
        let mut next = Vec::new();
        let mut relids = Vec::new();
        for r in &rows {
            let get_oid = |i| r.try_get::<_, u32>(i).map_err(CatalogError::Query);
            let oid = get_oid(0)?;
            let typtype: String = r.try_get(1).map_err(CatalogError::Query)?;
            let info = TypeInfo {
                typtype: typtype.bytes().next().unwrap_or(b'b'),
                elem: get_oid(2)?,
                base: get_oid(3)?,
                relid: get_oid(4)?,
                is_array: r.try_get(5).map_err(CatalogError::Query)?,
                range_sub: r.try_get(6).map_err(CatalogError::Query)?,
                multirange_sub: r.try_get(7).map_err(CatalogError::Query)?,
            };
            match info.typtype {
                b'd' => next.push(info.base),
                b'c' => relids.push(info.relid),
                b'r' => next.extend(info.range_sub),
                b'm' => next.extend(info.multirange_sub),
                _ if info.is_array && info.elem != 0 => next.push(info.elem),
                _ => {}
            }
            types.insert(oid, info);
        }
        if !relids.is_empty() {
            let rows = client
                .query(
                    "SELECT t.oid, a.atttypid FROM pg_type t \
                     JOIN pg_attribute a ON a.attrelid = t.typrelid \
                     WHERE t.typrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped \
                     ORDER BY t.oid, a.attnum",
                    &[&relids],
                )
                .await
                .map_err(CatalogError::Query)?;
            for r in &rows {
                let t: u32 = r.try_get(0).map_err(CatalogError::Query)?;
                let a: u32 = r.try_get(1).map_err(CatalogError::Query)?;
                fields.entry(t).or_default().push(a);
                next.push(a);
            }
        }
        todo = next;
    }
    oids.iter()
        .map(|&o| shape_of(o, &types, &fields, 0).map(Shape::simplify))
        .collect()
}

fn shape_of(
    oid: u32,
    types: &HashMap<u32, TypeInfo>,
    fields: &HashMap<u32, Vec<u32>>,
    depth: usize,
) -> Result<Shape, CatalogError> {
    if depth > 32 {
        return Err(CatalogError::Type(format!("type {oid} nests too deeply")));
    }
    let info = types
        .get(&oid)
        .ok_or_else(|| CatalogError::Type(format!("type {oid} not found")))?;
    let sub = |o| shape_of(o, types, fields, depth + 1);
    Ok(match info.typtype {
        b'd' => sub(info.base)?,
        b'c' => Shape::Composite {
            fields: fields
                .get(&oid)
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|&a| Ok((a, sub(a)?)))
                .collect::<Result<_, CatalogError>>()?,
        },
        b'r' => match info.range_sub {
            Some(s) => Shape::Range(Box::new(sub(s)?)),
            None => Shape::Opaque,
        },
        b'm' => match info.multirange_sub {
            Some(s) => Shape::Multirange(Box::new(sub(s)?)),
            None => Shape::Opaque,
        },
        _ if info.is_array && info.elem != 0 => Shape::Array {
            elem_oid: info.elem,
            elem: Box::new(sub(info.elem)?),
        },
        _ => Shape::Opaque,
    })
}

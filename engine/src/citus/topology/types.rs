//! Choosing the [`HashKernel`] of a distribution column from `pg_type` (ROUTING.md §2.1, §3.3).
//!
//! PostgreSQL's type cache takes the default hash opclass of the column type after replacing a
//! domain by its base type; enums use `hashenum` (the label's OID), arrays `hash_array` over
//! their element type. Everything else must be a built-in type with a kernel in
//! [`HashKernel::for_builtin`]; composite, range, extension types (citext, PostGIS, ...) and
//! types without a hash opclass (json, point, money, xml) are refused here, at startup.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio_postgres::Client;

use crate::citus::error::CitusError;
use crate::citus::hash::{EnumLabels, HashKernel};

/// A `pg_type` row.
#[derive(Debug, Clone)]
pub(super) struct TypeRow {
    pub typtype: String,
    pub basetype: u32,
    pub elem: u32,
    pub category: String,
    pub typlen: i16,
    pub name: String,
}

/// The type rows reachable from some roots (through domains and array elements) and the enum
/// labels of the enums among them.
#[derive(Debug, Default)]
pub(super) struct TypeCatalog {
    pub types: HashMap<u32, TypeRow>,
    pub enums: HashMap<u32, Vec<(String, u32)>>,
}

/// `int2vector` and `oidvector` look like arrays but have their own (or no) hash functions.
const VECTOR_TYPES: [u32; 2] = [22, 30];
/// Domain chains longer than this are a catalog loop.
const MAX_DEPTH: usize = 32;

impl TypeCatalog {
    /// Reads every type reachable from `roots`, one round trip per level, then the enum labels.
    pub async fn load(client: &Client, roots: &[u32]) -> Result<TypeCatalog, CitusError> {
        let mut cat = TypeCatalog::default();
        let mut pending: Vec<u32> = roots.to_vec();
        let mut seen: HashSet<u32> = HashSet::new();
        for _ in 0..MAX_DEPTH {
            pending.retain(|oid| *oid != 0 && seen.insert(*oid));
            if pending.is_empty() {
                break;
            }
            let rows = client
                .query(
                    "SELECT t.oid, t.typtype::text, t.typbasetype, t.typelem, t.typcategory::text, \
                            t.typlen, format_type(t.oid, NULL) \
                     FROM pg_type t WHERE t.oid = ANY($1::oid[])",
                    &[&pending],
                )
                .await
                .map_err(CitusError::query("reading pg_type"))?;
            pending.clear();
            for r in rows {
                let oid: u32 = r.try_get(0).map_err(CitusError::query("reading pg_type"))?;
                let row = TypeRow {
                    typtype: r.try_get(1).map_err(CitusError::query("reading pg_type"))?,
                    basetype: r.try_get(2).map_err(CitusError::query("reading pg_type"))?,
                    elem: r.try_get(3).map_err(CitusError::query("reading pg_type"))?,
                    category: r.try_get(4).map_err(CitusError::query("reading pg_type"))?,
                    typlen: r.try_get(5).map_err(CitusError::query("reading pg_type"))?,
                    name: r.try_get(6).map_err(CitusError::query("reading pg_type"))?,
                };
                if row.typtype == "d" {
                    pending.push(row.basetype);
                } else if is_array(oid, &row) {
                    pending.push(row.elem);
                }
                cat.types.insert(oid, row);
            }
        }
        let enum_oids: Vec<u32> = cat
            .types
            .iter()
            .filter(|(_, t)| t.typtype == "e")
            .map(|(oid, _)| *oid)
            .collect();
        if !enum_oids.is_empty() {
            let rows = client
                .query(
                    "SELECT enumtypid, oid, enumlabel::text FROM pg_enum \
                     WHERE enumtypid = ANY($1::oid[]) ORDER BY enumtypid, enumsortorder",
                    &[&enum_oids],
                )
                .await
                .map_err(CitusError::query("reading pg_enum"))?;
            for r in rows {
                let typ: u32 = r.try_get(0).map_err(CitusError::query("reading pg_enum"))?;
                let oid: u32 = r.try_get(1).map_err(CitusError::query("reading pg_enum"))?;
                let label: String = r.try_get(2).map_err(CitusError::query("reading pg_enum"))?;
                cat.enums.entry(typ).or_default().push((label, oid));
            }
        }
        Ok(cat)
    }

    /// The kernel of type `oid`, its base type (domains resolved) and the enum types it
    /// depends on; `Err` holds the reason the type cannot be hashed.
    pub fn kernel(&self, oid: u32) -> Result<(HashKernel, u32, Vec<u32>), String> {
        let mut enums = Vec::new();
        let base = self.base(oid)?;
        let kernel = self.kernel_of_base(base, &mut enums, true)?;
        Ok((kernel, base, enums))
    }

    fn row(&self, oid: u32) -> Result<&TypeRow, String> {
        self.types
            .get(&oid)
            .ok_or_else(|| format!("type {oid} not found in pg_type"))
    }

    /// Resolves domains to their base type.
    fn base(&self, mut oid: u32) -> Result<u32, String> {
        for _ in 0..MAX_DEPTH {
            let row = self.row(oid)?;
            if row.typtype != "d" {
                return Ok(oid);
            }
            oid = row.basetype;
        }
        Err("domain chain too long".into())
    }

    fn kernel_of_base(
        &self,
        oid: u32,
        enums: &mut Vec<u32>,
        top: bool,
    ) -> Result<HashKernel, String> {
        let row = self.row(oid)?;
        match row.typtype.as_str() {
            "e" => {
                let labels = self.enums.get(&oid).map(Vec::as_slice).unwrap_or_default();
                enums.push(oid);
                Ok(HashKernel::Enum(Arc::new(EnumLabels::new(
                    labels.iter().map(|(l, o)| (l, *o)),
                ))))
            }
            "b" if is_array(oid, row) => {
                if !top {
                    return Err("nested array types are not supported".into());
                }
                let elem = self.base(row.elem)?;
                let inner = self
                    .kernel_of_base(elem, enums, false)
                    .map_err(|e| format!("array element type: {e}"))?;
                Ok(HashKernel::Array(Arc::new(inner)))
            }
            "b" => HashKernel::for_builtin(oid).ok_or_else(|| {
                format!(
                    "type {} has no hash function that pgwarp implements",
                    row.name
                )
            }),
            "c" => Err("composite types are not supported".into()),
            "r" | "m" => Err("range types are not supported".into()),
            _ => Err(format!("type {} cannot be hashed", row.name)),
        }
    }
}

fn is_array(oid: u32, row: &TypeRow) -> bool {
    row.category == "A" && row.elem != 0 && row.typlen == -1 && !VECTOR_TYPES.contains(&oid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(typtype: &str, base: u32, elem: u32, cat: &str, len: i16, name: &str) -> TypeRow {
        TypeRow {
            typtype: typtype.into(),
            basetype: base,
            elem,
            category: cat.into(),
            typlen: len,
            name: name.into(),
        }
    }

    fn catalog() -> TypeCatalog {
        let mut c = TypeCatalog::default();
        c.types.insert(20, t("b", 0, 0, "N", 8, "bigint"));
        c.types.insert(25, t("b", 0, 0, "S", -1, "text"));
        c.types.insert(1009, t("b", 0, 25, "A", -1, "text[]"));
        c.types.insert(114, t("b", 0, 0, "U", -1, "json"));
        c.types.insert(30, t("b", 0, 26, "A", -1, "oidvector"));
        c.types.insert(90001, t("d", 90002, 0, "N", 8, "outer_dom"));
        c.types.insert(90002, t("d", 20, 0, "N", 8, "inner_dom"));
        c.types.insert(90003, t("e", 0, 0, "E", 4, "mood"));
        c.types.insert(90004, t("b", 0, 90003, "A", -1, "mood[]"));
        c.types.insert(90005, t("c", 0, 0, "C", -1, "pair"));
        c.types.insert(90006, t("r", 0, 0, "R", -1, "int4range"));
        c.enums
            .insert(90003, vec![("sad".into(), 70001), ("happy".into(), 70002)]);
        c
    }

    #[test]
    fn domains_resolve_to_the_base_kernel() {
        let (k, base, enums) = catalog().kernel(90001).unwrap();
        assert_eq!((k, base, enums), (HashKernel::Int8, 20, vec![]));
    }

    #[test]
    fn enums_and_arrays() {
        let c = catalog();
        let (k, _, enums) = c.kernel(90003).unwrap();
        assert_eq!(enums, [90003]);
        assert_eq!(
            k.hash_text(b"happy").unwrap(),
            crate::citus::hash::hash_uint32(70002) as i32
        );
        let (k, _, enums) = c.kernel(90004).unwrap();
        assert_eq!(enums, [90003]);
        assert!(matches!(k, HashKernel::Array(_)));
        assert_eq!(
            c.kernel(1009).unwrap().0,
            HashKernel::Array(Arc::new(HashKernel::Text))
        );
    }

    #[test]
    fn unhashable_types_are_refused_with_a_reason() {
        let c = catalog();
        assert!(c.kernel(114).unwrap_err().contains("json"));
        assert!(c.kernel(30).unwrap_err().contains("oidvector"));
        assert!(c.kernel(90005).unwrap_err().contains("composite"));
        assert!(c.kernel(90006).unwrap_err().contains("range"));
        assert!(c.kernel(4242).is_err());
    }
}

//! Parsing `pg_dist_partition.partkey`, the `nodeToString()` text of the distribution column's
//! `Var` (ROUTING.md §1.4), e.g.
//!
//! ```text
//! {VAR :varno 1 :varattno 3 :vartype 25 :vartypmod -1 :varcollid 100 :varlevelsup 0
//!  :varnullingrels (b) :varnosyn 1 :varattnosyn 3 :location -1}
//! ```
//!
//! Real Citus resolves it with `column_to_column_name()`; pgwarp parses it itself so that it
//! also works on a Citus-shaped catalog without Citus's functions. Only the four fields routing
//! needs are read; unknown fields (PG 16's `:varnullingrels (b)`, future ones) are skipped.

/// The fields of the distribution column's `Var`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartKey {
    /// Attribute number in the Citus table (`pg_attribute.attnum`).
    pub varattno: i16,
    /// Column type OID; Citus takes the hash function from it.
    pub vartype: u32,
    /// Column typmod.
    pub vartypmod: i32,
    /// Column collation; Citus hashes with it.
    pub varcollid: u32,
}

/// A `partkey` that is not a parseable `Var`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse distribution key: {reason}")]
pub struct PartKeyError {
    /// What is wrong.
    pub reason: String,
}

fn err(reason: impl Into<String>) -> PartKeyError {
    PartKeyError {
        reason: reason.into(),
    }
}

/// Parses the `Var` text.
pub fn parse(text: &str) -> Result<PartKey, PartKeyError> {
    let body = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| err("not a node"))?;
    let mut tokens = body.split_ascii_whitespace();
    if tokens.next() != Some("VAR") {
        return Err(err("not a VAR node"));
    }
    let (mut attno, mut typ, mut typmod, mut coll) = (None, None, None, None);
    while let Some(tok) = tokens.next() {
        let field = match tok {
            ":varattno" => &mut attno,
            ":vartype" => &mut typ,
            ":vartypmod" => &mut typmod,
            ":varcollid" => &mut coll,
            _ => continue,
        };
        let value = tokens
            .next()
            .ok_or_else(|| err(format!("{tok} has no value")))?;
        let value: i64 = value
            .parse()
            .map_err(|_| err(format!("{tok} is not a number")))?;
        *field = Some(value);
    }
    let get = |v: Option<i64>, name: &str| v.ok_or_else(|| err(format!("missing :{name}")));
    let varattno = get(attno, "varattno")?;
    let vartype = get(typ, "vartype")?;
    let vartypmod = get(typmod, "vartypmod")?;
    let varcollid = get(coll, "varcollid")?;
    Ok(PartKey {
        varattno: i16::try_from(varattno)
            .ok()
            .filter(|&a| a > 0)
            .ok_or_else(|| err("varattno out of range"))?,
        vartype: u32::try_from(vartype).map_err(|_| err("vartype out of range"))?,
        vartypmod: i32::try_from(vartypmod).map_err(|_| err("vartypmod out of range"))?,
        varcollid: u32::try_from(varcollid).map_err(|_| err("varcollid out of range"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg15_var_from_catalog_sample() {
        let k = parse("{VAR :varno 1 :varattno 1 :vartype 20 :vartypmod -1 :varcollid 0 :varlevelsup 0 :varnosyn 1 :varattnosyn 1 :location -1}").unwrap();
        assert_eq!(
            k,
            PartKey {
                varattno: 1,
                vartype: 20,
                vartypmod: -1,
                varcollid: 0
            }
        );
    }

    #[test]
    fn pg16_var_with_nullingrels() {
        let k = parse("{VAR :varno 1 :varattno 3 :vartype 25 :vartypmod -1 :varcollid 100 :varnullingrels (b) :varlevelsup 0 :varnosyn 1 :varattnosyn 3 :location -1}").unwrap();
        assert_eq!(
            k,
            PartKey {
                varattno: 3,
                vartype: 25,
                vartypmod: -1,
                varcollid: 100
            }
        );
        let k = parse("{VAR :varno 1 :varattno 2 :vartype 1700 :vartypmod 655366 :varcollid 0 :varnullingrels (b 1 2) :varlevelsup 0}").unwrap();
        assert_eq!(k.vartypmod, 655366);
    }

    #[test]
    fn malformed_keys() {
        assert!(parse("").is_err());
        assert!(parse("{CONST :consttype 23}").is_err());
        assert!(parse("{VAR :varno 1 :vartype 20 :vartypmod -1 :varcollid 0}").is_err());
        assert!(parse("{VAR :varattno x :vartype 20 :vartypmod -1 :varcollid 0}").is_err());
        assert!(parse("{VAR :varattno 0 :vartype 20 :vartypmod -1 :varcollid 0}").is_err());
    }
}

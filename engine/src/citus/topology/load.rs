//! Reading the topology from the target's catalog.
//!
//! All reads run in one `REPEATABLE READ, READ ONLY` transaction, so the shards, placements,
//! nodes and the change digest all come from one snapshot of `pg_dist_*` (a shard move
//! committing halfway through loading cannot produce a mixed view). One round trip per kind of
//! row, independent of the number of tables: catalog detection, relations, partitions, columns,
//! types (one per domain/array level), enum labels, shards with placements, nodes, digest.
//!
//! Only catalog *tables* are read, never Citus's functions (`column_to_column_name`,
//! `shard_name`, ...): the same code then works on a real Citus and on a Citus-shaped
//! PostgreSQL whose `pg_dist_*` tables are plain tables (found in `pg_catalog` or, failing that,
//! through the `search_path`).

use std::collections::HashMap;

use tokio_postgres::Client;

use crate::citus::error::CitusError;
use crate::citus::names::quote_ident;
use crate::citus::partkey::{self, PartKey};
use crate::citus::watch::digest_sql;

use super::build::{self, HashColumn, NodeRow, NodeSet, PartitionRow, RelRow, ShardRow};
use super::types::TypeCatalog;
use super::{CitusCatalog, DistColumn, TableKind, Topology};

/// The address the topology is read from: the Citus coordinator or the plain PostgreSQL
/// target. Plain tables are routed to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetAddr {
    /// Host name, IP address, or Unix socket directory.
    pub host: String,
    /// Port.
    pub port: u16,
}

macro_rules! get {
    ($row:expr, $idx:expr, $what:expr) => {
        $row.try_get($idx).map_err(CitusError::query($what))?
    };
}

impl Topology {
    /// Loads the topology for `tables` (names as SQL would resolve them on the target: `orders`,
    /// `sales.orders`, `"Mixed"`). `target` is the address `client` is connected to.
    ///
    /// `client` must not be inside a transaction: the reads run in their own.
    pub async fn load(
        client: &Client,
        target: &TargetAddr,
        tables: &[&str],
    ) -> Result<Topology, CitusError> {
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
            .map_err(CitusError::query("starting the catalog snapshot"))?;
        let result = load_in_snapshot(client, target, tables).await;
        let end = client
            .batch_execute(if result.is_ok() { "COMMIT" } else { "ROLLBACK" })
            .await;
        let topology = result?;
        end.map_err(CitusError::query("ending the catalog snapshot"))?;
        Ok(topology)
    }
}

struct Detected {
    catalog: Option<CitusCatalog>,
    utf8: bool,
}

async fn detect(client: &Client) -> Result<Detected, CitusError> {
    const WHAT: &str = "detecting the Citus catalog";
    let row = client
        .query_one(
            "WITH cat AS ( \
               SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
               WHERE c.oid = coalesce(to_regclass('pg_catalog.pg_dist_partition'), \
                                      to_regclass('pg_dist_partition'))) \
             SELECT (SELECT nspname::text FROM cat), \
                    (SELECT to_regclass(quote_ident(nspname) || '.pg_dist_schema') IS NOT NULL FROM cat), \
                    to_regprocedure('lock_shard_metadata(integer,bigint[])') IS NOT NULL, \
                    current_setting('server_encoding')",
            &[],
        )
        .await
        .map_err(CitusError::query(WHAT))?;
    let schema: Option<String> = get!(row, 0, WHAT);
    let has_dist_schema: Option<bool> = get!(row, 1, WHAT);
    let has_lock: bool = get!(row, 2, WHAT);
    let encoding: String = get!(row, 3, WHAT);
    Ok(Detected {
        catalog: schema.map(|schema| CitusCatalog {
            schema,
            has_lock_shard_metadata: has_lock,
            has_dist_schema: has_dist_schema.unwrap_or(false),
        }),
        utf8: encoding.eq_ignore_ascii_case("UTF8"),
    })
}

async fn relations(client: &Client, names: &[&str], utf8: bool) -> Result<Vec<RelRow>, CitusError> {
    const WHAT: &str = "resolving table names";
    let rows = client
        .query(
            "SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text \
             FROM unnest($1::text[]) WITH ORDINALITY AS t(name, ord) \
             LEFT JOIN pg_class c ON c.oid = to_regclass(t.name) \
             LEFT JOIN pg_namespace n ON n.oid = c.relnamespace \
             ORDER BY t.ord",
            &[&names],
        )
        .await
        .map_err(CitusError::query(WHAT))?;
    let mut out = Vec::with_capacity(names.len());
    for (row, name) in rows.iter().zip(names) {
        let oid: Option<u32> = get!(row, 0, WHAT);
        let (Some(oid), Some(schema), Some(rel), Some(relkind)) = (
            oid,
            get!(row, 1, WHAT),
            get!(row, 2, WHAT),
            get!(row, 3, WHAT),
        ) else {
            return Err(CitusError::TableNotFound((*name).to_string()));
        };
        let (schema, rel, relkind): (String, String, String) = (schema, rel, relkind);
        if !matches!(relkind.as_str(), "r" | "p" | "f") {
            return Err(CitusError::NotATable {
                table: format!("{schema}.{rel}"),
                relkind,
            });
        }
        if !utf8 && !rel.is_ascii() {
            return Err(CitusError::Catalog(format!(
                "table \"{schema}.{rel}\": non-ASCII table names need a UTF8 server encoding"
            )));
        }
        out.push(RelRow {
            oid,
            schema,
            name: rel,
        });
    }
    Ok(out)
}

async fn partitions(
    client: &Client,
    cat: &CitusCatalog,
    oids: &[u32],
) -> Result<HashMap<u32, PartitionRow>, CitusError> {
    const WHAT: &str = "reading pg_dist_partition";
    let q = quote_ident(&cat.schema);
    let tenant = if cat.has_dist_schema {
        format!("p.colocationid IN (SELECT colocationid FROM {q}.pg_dist_schema)")
    } else {
        "false".to_string()
    };
    let sql = format!(
        "SELECT p.logicalrelid::oid, p.partmethod::text, p.partkey, p.colocationid, p.repmodel::text, {tenant} \
         FROM {q}.pg_dist_partition p WHERE p.logicalrelid::oid = ANY($1::oid[])"
    );
    let rows = client
        .query(&sql, &[&oids])
        .await
        .map_err(CitusError::query(WHAT))?;
    let mut out = HashMap::new();
    for r in rows {
        let oid: u32 = get!(r, 0, WHAT);
        out.insert(
            oid,
            PartitionRow {
                partmethod: get!(r, 1, WHAT),
                partkey: get!(r, 2, WHAT),
                colocation_id: get!(r, 3, WHAT),
                repmodel: get!(r, 4, WHAT),
                tenant: get!(r, 5, WHAT),
            },
        );
    }
    Ok(out)
}

/// A distribution column as `pg_attribute` has it.
struct AttrRow {
    name: String,
    type_oid: u32,
    typmod: i32,
    collation: u32,
    dropped: bool,
    type_name: String,
    /// `None`: the key's collation does not exist.
    deterministic: Option<bool>,
}

async fn attributes(
    client: &Client,
    keys: &[(u32, PartKey)],
) -> Result<HashMap<u32, AttrRow>, CitusError> {
    const WHAT: &str = "reading distribution columns";
    let rels: Vec<u32> = keys.iter().map(|(r, _)| *r).collect();
    let atts: Vec<i16> = keys.iter().map(|(_, k)| k.varattno).collect();
    let colls: Vec<u32> = keys.iter().map(|(_, k)| k.varcollid).collect();
    let rows = client
        .query(
            "SELECT k.rel, a.attname::text, a.atttypid, a.atttypmod, a.attcollation, a.attisdropped, \
                    format_type(a.atttypid, a.atttypmod), \
                    CASE WHEN k.coll = 0 THEN true ELSE co.collisdeterministic END \
             FROM unnest($1::oid[], $2::int2[], $3::oid[]) AS k(rel, att, coll) \
             JOIN pg_attribute a ON a.attrelid = k.rel AND a.attnum = k.att \
             LEFT JOIN pg_collation co ON co.oid = k.coll",
            &[&rels, &atts, &colls],
        )
        .await
        .map_err(CitusError::query(WHAT))?;
    let mut out = HashMap::new();
    for r in rows {
        let rel: u32 = get!(r, 0, WHAT);
        out.insert(
            rel,
            AttrRow {
                name: get!(r, 1, WHAT),
                type_oid: get!(r, 2, WHAT),
                typmod: get!(r, 3, WHAT),
                collation: get!(r, 4, WHAT),
                dropped: get!(r, 5, WHAT),
                type_name: get!(r, 6, WHAT),
                deterministic: get!(r, 7, WHAT),
            },
        );
    }
    Ok(out)
}

async fn shards(
    client: &Client,
    cat: &CitusCatalog,
    oids: &[u32],
) -> Result<HashMap<u32, Vec<ShardRow>>, CitusError> {
    const WHAT: &str = "reading pg_dist_shard and pg_dist_placement";
    let q = quote_ident(&cat.schema);
    let sql = format!(
        "SELECT s.logicalrelid::oid, s.shardid, s.shardminvalue, s.shardmaxvalue, pl.groupid \
         FROM {q}.pg_dist_shard s LEFT JOIN {q}.pg_dist_placement pl ON pl.shardid = s.shardid \
         WHERE s.logicalrelid::oid = ANY($1::oid[]) \
         ORDER BY 1, 2, pl.placementid"
    );
    let rows = client
        .query(&sql, &[&oids])
        .await
        .map_err(CitusError::query(WHAT))?;
    let mut out: HashMap<u32, Vec<ShardRow>> = HashMap::new();
    for r in rows {
        let rel: u32 = get!(r, 0, WHAT);
        let shard_id: i64 = get!(r, 1, WHAT);
        let group: Option<i32> = get!(r, 4, WHAT);
        let list = out.entry(rel).or_default();
        if list.last().is_none_or(|s| s.shard_id != shard_id) {
            list.push(ShardRow {
                shard_id,
                min: get!(r, 2, WHAT),
                max: get!(r, 3, WHAT),
                groups: Vec::new(),
            });
        }
        if let (Some(g), Some(s)) = (group, list.last_mut()) {
            s.groups.push(g);
        }
    }
    Ok(out)
}

async fn nodes(client: &Client, cat: &CitusCatalog) -> Result<Vec<NodeRow>, CitusError> {
    const WHAT: &str = "reading pg_dist_node";
    let q = quote_ident(&cat.schema);
    let sql = format!(
        "SELECT nodeid, groupid, nodename, nodeport, isactive, noderole::text, nodecluster::text \
         FROM {q}.pg_dist_node ORDER BY nodeid"
    );
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(CitusError::query(WHAT))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(NodeRow {
            node_id: get!(r, 0, WHAT),
            group_id: get!(r, 1, WHAT),
            host: get!(r, 2, WHAT),
            port: get!(r, 3, WHAT),
            active: get!(r, 4, WHAT),
            role: get!(r, 5, WHAT),
            cluster: get!(r, 6, WHAT),
        });
    }
    Ok(out)
}

/// Resolves a hash table's distribution column: attribute, collation, type kernel.
fn hash_column(
    table: &str,
    key: &PartKey,
    attr: Option<&AttrRow>,
    types: &TypeCatalog,
) -> Result<HashColumn, CitusError> {
    let col_err = |reason: &str| CitusError::DistColumn {
        table: table.to_string(),
        attnum: key.varattno,
        reason: reason.to_string(),
    };
    let attr = attr.ok_or_else(|| col_err("does not exist"))?;
    if attr.dropped {
        return Err(col_err("is dropped"));
    }
    if attr.type_oid != key.vartype
        || attr.typmod != key.vartypmod
        || attr.collation != key.varcollid
    {
        return Err(col_err(
            "has a type, typmod or collation different from the distribution key",
        ));
    }
    match attr.deterministic {
        Some(true) => {}
        Some(false) => {
            return Err(CitusError::NonDeterministicCollation {
                table: table.to_string(),
                column: attr.name.clone(),
                collation: key.varcollid,
            });
        }
        None => return Err(col_err("has a collation that does not exist")),
    }
    let (kernel, base, enum_types) =
        types
            .kernel(key.vartype)
            .map_err(|reason| CitusError::UnsupportedType {
                table: table.to_string(),
                column: attr.name.clone(),
                type_name: attr.type_name.clone(),
                reason,
            })?;
    Ok(HashColumn {
        column: DistColumn {
            name: attr.name.clone(),
            attnum: key.varattno,
            type_oid: key.vartype,
            type_name: attr.type_name.clone(),
            base_type_oid: base,
            typmod: key.vartypmod,
            collation: key.varcollid,
        },
        kernel,
        enum_types,
    })
}

async fn load_in_snapshot(
    client: &Client,
    target: &TargetAddr,
    names: &[&str],
) -> Result<Topology, CitusError> {
    let detected = detect(client).await?;
    let rels = relations(client, names, detected.utf8).await?;
    let oids: Vec<u32> = rels.iter().map(|r| r.oid).collect();

    let Some(cat) = detected.catalog else {
        let mut nodes = NodeSet::default();
        let tables: Vec<_> = rels
            .into_iter()
            .map(|r| build::plain_table(r, &mut nodes, target))
            .collect();
        let digest = read_digest(client, None, &oids, &[]).await?;
        return Ok(Topology {
            citus: None,
            nodes: nodes.nodes,
            tables,
            digest,
        });
    };

    let parts = partitions(client, &cat, &oids).await?;
    let mut keys = Vec::new();
    for rel in &rels {
        if let Some(p) = parts.get(&rel.oid)
            && build::classify(&display(rel), p)? == TableKind::Hash
        {
            let text = p.partkey.as_deref().ok_or_else(|| CitusError::BadShards {
                table: display(rel),
                reason: "hash-distributed table has no partition key".into(),
            })?;
            let key = partkey::parse(text).map_err(|source| CitusError::PartKey {
                table: display(rel),
                source,
            })?;
            keys.push((rel.oid, key));
        }
    }
    let attrs = attributes(client, &keys).await?;
    let type_roots: Vec<u32> = keys.iter().map(|(_, k)| k.vartype).collect();
    let types = TypeCatalog::load(client, &type_roots).await?;
    let mut shard_rows = shards(client, &cat, &oids).await?;
    let mut node_set = NodeSet::new(nodes(client, &cat).await?)?;

    let mut tables = Vec::with_capacity(rels.len());
    for rel in rels {
        let Some(p) = parts.get(&rel.oid) else {
            tables.push(build::plain_table(rel, &mut node_set, target));
            continue;
        };
        let hash = match keys.iter().find(|(oid, _)| *oid == rel.oid) {
            Some((_, key)) => Some(hash_column(
                &display(&rel),
                key,
                attrs.get(&rel.oid),
                &types,
            )?),
            None => None,
        };
        let rows = shard_rows.remove(&rel.oid).unwrap_or_default();
        tables.push(build::citus_table(rel, p, hash, rows, &node_set)?);
    }
    let enum_types: Vec<u32> = tables
        .iter()
        .flat_map(|t| t.enum_types.iter().copied())
        .collect();
    let digest = read_digest(client, Some(&cat), &oids, &enum_types).await?;
    Ok(Topology {
        citus: Some(cat),
        nodes: node_set.nodes,
        tables,
        digest,
    })
}

fn display(rel: &RelRow) -> String {
    format!("{}.{}", rel.schema, rel.name)
}

pub(crate) async fn read_digest(
    client: &Client,
    cat: Option<&CitusCatalog>,
    tables: &[u32],
    enum_types: &[u32],
) -> Result<String, CitusError> {
    const WHAT: &str = "reading the topology digest";
    let row = client
        .query_one(&digest_sql(cat), &[&tables, &enum_types])
        .await
        .map_err(CitusError::query(WHAT))?;
    Ok(get!(row, 0, WHAT))
}

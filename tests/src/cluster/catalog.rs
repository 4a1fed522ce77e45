//! The fake Citus catalog: the `pg_dist_*` tables with Citus 13.2's exact column names, types
//! and order (ROUTING.md §1.1), created in `pg_catalog` of the test database, plus SQL
//! versions of the Citus functions an engine reads them with.
//!
//! Superusers may create objects in `pg_catalog` once they `SET allow_system_table_mods = on`:
//! since PostgreSQL 12 that setting is `SUSET`, so it is set for the creating session only and
//! the server needs no special configuration. Queries then find the tables both unqualified
//! (`FROM pg_dist_partition`) and qualified (`pg_catalog.pg_dist_partition`), exactly as on a
//! real coordinator. The catalog is created on every node, like Citus MX (the default since
//! Citus 11), with each node's own `pg_dist_local_group`; a `citus` row is added to
//! `pg_extension` (version `13.2-1`) so Citus detection by extension works too.
//!
//! Functions provided (all in `pg_catalog`):
//! * `column_to_column_name(regclass, text)`, `shard_name(regclass, bigint, bool = true)`:
//!   used by the one-query catalog load of ROUTING.md §1.7.
//! * `worker_hash(anyelement)`: the value's PostgreSQL hash through the type's default hash
//!   function, obtained as `hash_array(ARRAY[v]) - 31` (`hash_array` starts at 1 and computes
//!   `31 * 1 + h` for one element), i.e. PostgreSQL's own code, not a re-implementation.
//! * `get_shard_id_for_distribution_column(regclass, anyelement)` and `(regclass)`.
//! * `lock_shard_metadata(int, bigint[])`, `lock_shard_resources(int, bigint[])`: transaction
//!   advisory locks per shard id (share for modes up to 5, exclusive above), so the writer's
//!   §4.6 protocol runs and `CitusFixture::split_shard` blocks it like a real split.
//! * `citus_version()`.
//!
//! `pgwarp_append_shard_id(name, shardid)` is the naming rule again in SQL, for index and
//! sequence names of shard tables; tests compare it with the Rust oracle.

use std::fmt::Write as _;

use crate::cluster::layout::{Layout, SchemaRef};
use crate::options::quote_literal;

/// Creates the catalog tables and functions. Run once per database, as a superuser.
pub const CATALOG_DDL: &str = r#"
SET allow_system_table_mods = on;
CREATE TYPE pg_catalog.noderole AS ENUM ('primary', 'secondary', 'unavailable');

CREATE TABLE pg_catalog.pg_dist_partition (
    logicalrelid regclass NOT NULL,
    partmethod "char" NOT NULL,
    partkey text,
    colocationid integer NOT NULL DEFAULT 0,
    repmodel "char" NOT NULL DEFAULT 'c',
    autoconverted boolean DEFAULT false
);
CREATE UNIQUE INDEX pg_dist_partition_logical_relid_index
    ON pg_catalog.pg_dist_partition (logicalrelid);
CREATE INDEX pg_dist_partition_colocationid_index ON pg_catalog.pg_dist_partition (colocationid);

CREATE SEQUENCE pg_catalog.pg_dist_shardid_seq MINVALUE 102008 NO CYCLE;
CREATE TABLE pg_catalog.pg_dist_shard (
    logicalrelid regclass NOT NULL,
    shardid bigint NOT NULL,
    shardstorage "char" NOT NULL,
    shardminvalue text,
    shardmaxvalue text
);
CREATE UNIQUE INDEX pg_dist_shard_shardid_index ON pg_catalog.pg_dist_shard (shardid);
CREATE INDEX pg_dist_shard_logical_relid_index ON pg_catalog.pg_dist_shard (logicalrelid);

CREATE SEQUENCE pg_catalog.pg_dist_placement_placementid_seq NO CYCLE;
CREATE TABLE pg_catalog.pg_dist_placement (
    placementid bigint NOT NULL DEFAULT nextval('pg_catalog.pg_dist_placement_placementid_seq'),
    shardid bigint NOT NULL,
    shardstate integer NOT NULL,
    shardlength bigint NOT NULL,
    groupid integer NOT NULL
);
CREATE UNIQUE INDEX pg_dist_placement_placementid_index
    ON pg_catalog.pg_dist_placement (placementid);
CREATE UNIQUE INDEX placement_shardid_groupid_unique_index
    ON pg_catalog.pg_dist_placement (shardid, groupid);
CREATE INDEX pg_dist_placement_groupid_index ON pg_catalog.pg_dist_placement (groupid);

CREATE SEQUENCE pg_catalog.pg_dist_node_nodeid_seq NO CYCLE;
CREATE SEQUENCE pg_catalog.pg_dist_groupid_seq MINVALUE 0 NO CYCLE;
CREATE TABLE pg_catalog.pg_dist_node (
    nodeid integer NOT NULL DEFAULT nextval('pg_catalog.pg_dist_node_nodeid_seq'),
    groupid integer NOT NULL DEFAULT nextval('pg_catalog.pg_dist_groupid_seq'),
    nodename text NOT NULL,
    nodeport integer NOT NULL DEFAULT 5432,
    noderack text NOT NULL DEFAULT 'default',
    hasmetadata boolean NOT NULL DEFAULT false,
    isactive boolean NOT NULL DEFAULT true,
    noderole pg_catalog.noderole NOT NULL DEFAULT 'primary',
    nodecluster name NOT NULL DEFAULT 'default',
    metadatasynced boolean DEFAULT false,
    shouldhaveshards boolean NOT NULL DEFAULT true,
    nodeisclone boolean NOT NULL DEFAULT false,
    nodeprimarynodeid integer NOT NULL DEFAULT 0,
    CONSTRAINT pg_dist_node_pkey PRIMARY KEY (nodeid),
    CONSTRAINT pg_dist_node_nodename_nodeport_key UNIQUE (nodename, nodeport),
    CONSTRAINT primaries_are_only_allowed_in_the_default_cluster
        CHECK (NOT (nodecluster <> 'default' AND noderole = 'primary'))
);

CREATE TABLE pg_catalog.pg_dist_colocation (
    colocationid integer NOT NULL,
    shardcount integer NOT NULL,
    replicationfactor integer NOT NULL,
    distributioncolumntype oid NOT NULL,
    distributioncolumncollation oid NOT NULL,
    CONSTRAINT pg_dist_colocation_pkey PRIMARY KEY (colocationid)
);

CREATE TABLE pg_catalog.pg_dist_schema (
    schemaid oid NOT NULL,
    colocationid integer NOT NULL,
    CONSTRAINT pg_dist_schema_pkey PRIMARY KEY (schemaid),
    CONSTRAINT pg_dist_schema_unique_colocationid_index UNIQUE (colocationid)
);

CREATE TABLE pg_catalog.pg_dist_local_group (groupid integer NOT NULL);

CREATE TABLE pg_catalog.pg_dist_cleanup (
    record_id bigint NOT NULL,
    operation_id bigint NOT NULL,
    object_type integer NOT NULL,
    object_name text NOT NULL,
    node_group_id integer NOT NULL,
    policy_type integer NOT NULL
);

GRANT SELECT ON pg_catalog.pg_dist_partition, pg_catalog.pg_dist_shard,
    pg_catalog.pg_dist_placement, pg_catalog.pg_dist_node, pg_catalog.pg_dist_colocation,
    pg_catalog.pg_dist_schema, pg_catalog.pg_dist_local_group, pg_catalog.pg_dist_cleanup
    TO PUBLIC;

INSERT INTO pg_catalog.pg_extension
    (oid, extname, extowner, extnamespace, extrelocatable, extversion)
    SELECT (SELECT max(oid)::int8 + 1 FROM pg_catalog.pg_extension)::oid, 'citus', 10,
           'pg_catalog'::regnamespace, false, '13.2-1'
    WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'citus');

CREATE FUNCTION pg_catalog.citus_version() RETURNS text LANGUAGE sql IMMUTABLE
AS $f$ SELECT 'Citus 13.2.2 (pgwarp-tests fake catalog) on PostgreSQL ' || current_setting('server_version') $f$;

CREATE FUNCTION pg_catalog.pgwarp_append_shard_id(name text, shardid bigint)
RETURNS text LANGUAGE plpgsql IMMUTABLE STRICT AS $f$
DECLARE
    sep text := '_' || shardid;
    clip text := '';
    ch text;
BEGIN
    IF octet_length(name) >= 64 THEN
        RAISE EXCEPTION 'name "%" is too long for a shard name', name;
    END IF;
    IF octet_length(name) < 64 - octet_length(sep) THEN
        RETURN name || sep;
    END IF;
    FOREACH ch IN ARRAY regexp_split_to_array(name, '') LOOP
        EXIT WHEN octet_length(clip) + octet_length(ch) > 64 - octet_length(sep) - 10;
        clip := clip || ch;
    END LOOP;
    RETURN clip || '_' || lpad(to_hex(hashtext(name)), 8, '0') || sep;
END
$f$;

CREATE FUNCTION pg_catalog.shard_name(object_name regclass, shard_id bigint,
                                      skip_qualify_public boolean DEFAULT true)
RETURNS text LANGUAGE sql STABLE STRICT AS $f$
    SELECT CASE WHEN skip_qualify_public AND n.nspname = 'public'
                THEN quote_ident(pg_catalog.pgwarp_append_shard_id(c.relname, shard_id))
                ELSE quote_ident(n.nspname) || '.'
                     || quote_ident(pg_catalog.pgwarp_append_shard_id(c.relname, shard_id))
           END
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = object_name
$f$;

CREATE FUNCTION pg_catalog.column_to_column_name(table_name regclass, column_var_text text)
RETURNS text LANGUAGE sql STABLE STRICT AS $f$
    SELECT attname::text FROM pg_catalog.pg_attribute
    WHERE attrelid = table_name
      AND attnum = substring(column_var_text FROM ':varattno (-?[0-9]+)')::int2
$f$;

CREATE FUNCTION pg_catalog.worker_hash(value anyelement)
RETURNS integer LANGUAGE sql IMMUTABLE STRICT AS $f$
    SELECT (CASE WHEN h < -2147483648 THEN h + 4294967296 ELSE h END)::integer
    FROM (SELECT pg_catalog.hash_array(ARRAY[value])::bigint - 31 AS h) AS x
$f$;

CREATE FUNCTION pg_catalog.get_shard_id_for_distribution_column(table_name regclass)
RETURNS bigint LANGUAGE plpgsql STABLE AS $f$
DECLARE
    result bigint;
BEGIN
    SELECT s.shardid INTO result
    FROM pg_catalog.pg_dist_partition p JOIN pg_catalog.pg_dist_shard s USING (logicalrelid)
    WHERE p.logicalrelid = table_name AND p.partmethod = 'n';
    IF result IS NULL THEN
        RAISE EXCEPTION 'distribution value cannot be NULL for tables other than reference tables.';
    END IF;
    RETURN result;
END
$f$;

CREATE FUNCTION pg_catalog.get_shard_id_for_distribution_column(table_name regclass,
                                                                distribution_value anyelement)
RETURNS bigint LANGUAGE plpgsql STABLE AS $f$
DECLARE
    p record;
    h integer;
    result bigint;
BEGIN
    SELECT * INTO p FROM pg_catalog.pg_dist_partition WHERE logicalrelid = table_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'relation % is not a distributed table', table_name;
    END IF;
    IF p.partmethod = 'n' THEN
        RETURN pg_catalog.get_shard_id_for_distribution_column(table_name);
    END IF;
    IF distribution_value IS NULL THEN
        RAISE EXCEPTION 'distribution value cannot be NULL for tables other than reference tables.';
    END IF;
    -- Like Citus: output function, then the column type's input function, without typmod.
    -- Name the type by schema and typname: `character` (what regtype and format_type print
    -- for bpchar) means char(1) in a cast and would truncate the value.
    EXECUTE format('SELECT pg_catalog.worker_hash(($1)::text::%s)',
                   (SELECT format('%I.%I', n.nspname, t.typname)
                    FROM pg_catalog.pg_type t
                    JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
                    WHERE t.oid = substring(p.partkey FROM ':vartype ([0-9]+)')::oid))
        INTO h USING distribution_value;
    SELECT shardid INTO result FROM pg_catalog.pg_dist_shard
    WHERE logicalrelid = table_name
      AND h BETWEEN shardminvalue::integer AND shardmaxvalue::integer;
    RETURN result;
END
$f$;

CREATE FUNCTION pg_catalog.lock_shard_metadata(lock_mode integer, shard_id bigint[])
RETURNS void LANGUAGE plpgsql AS $f$
DECLARE
    s bigint;
BEGIN
    FOREACH s IN ARRAY shard_id LOOP
        IF lock_mode <= 5 THEN
            PERFORM pg_catalog.pg_advisory_xact_lock_shared(28759, s::integer);
        ELSE
            PERFORM pg_catalog.pg_advisory_xact_lock(28759, s::integer);
        END IF;
    END LOOP;
END
$f$;

CREATE FUNCTION pg_catalog.lock_shard_resources(lock_mode integer, shard_id bigint[])
RETURNS void LANGUAGE plpgsql AS $f$
DECLARE
    s bigint;
BEGIN
    FOREACH s IN ARRAY shard_id LOOP
        IF lock_mode <= 5 THEN
            PERFORM pg_catalog.pg_advisory_xact_lock_shared(28760, s::integer);
        ELSE
            PERFORM pg_catalog.pg_advisory_xact_lock(28760, s::integer);
        END IF;
    END LOOP;
END
$f$;
RESET allow_system_table_mods;
"#;

/// Session-local helper used while creating shard tables: renames the table created in the
/// scratch schema `pgwarp_scratch`, its indexes and owned sequences with the shard id, and
/// moves it to its real schema.
pub const SHARDIFY_FUNCTION: &str = r#"
CREATE FUNCTION pg_temp.pgwarp_shardify(rel text, shard_rel text, shard_id bigint, target text)
RETURNS void LANGUAGE plpgsql AS $f$
DECLARE
    relid oid := format('pgwarp_scratch.%I', rel)::regclass;
    r record;
BEGIN
    FOR r IN SELECT c.relname FROM pg_catalog.pg_index i
             JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
             WHERE i.indrelid = relid LOOP
        EXECUTE format('ALTER INDEX pgwarp_scratch.%I RENAME TO %I', r.relname,
                       pg_catalog.pgwarp_append_shard_id(r.relname, shard_id));
    END LOOP;
    FOR r IN SELECT s.relname FROM pg_catalog.pg_depend d
             JOIN pg_catalog.pg_class s ON s.oid = d.objid
             WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.refobjid = relid
               AND d.deptype IN ('a', 'i') AND s.relkind = 'S' LOOP
        EXECUTE format('ALTER SEQUENCE pgwarp_scratch.%I RENAME TO %I', r.relname,
                       pg_catalog.pgwarp_append_shard_id(r.relname, shard_id));
    END LOOP;
    -- Move under a unique temporary name, then rename in the target schema: renaming there
    -- lets PostgreSQL pick a free name for the table's array type, which for long shard names
    -- (clipped to 63 bytes) would otherwise collide with a sibling shard's on SET SCHEMA.
    EXECUTE format('ALTER TABLE pgwarp_scratch.%I RENAME TO %I', rel, 'pgwarp_tmp_' || shard_id);
    EXECUTE format('ALTER TABLE pgwarp_scratch.%I SET SCHEMA %I', 'pgwarp_tmp_' || shard_id, target);
    EXECUTE format('ALTER TABLE %I.%I RENAME TO %I', target, 'pgwarp_tmp_' || shard_id, shard_rel);
END
$f$;
"#;

/// The distribution column of a hash table as the coordinator stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DistColumn {
    /// `pg_attribute.attnum`.
    pub attnum: i16,
    /// `atttypid`.
    pub typid: u32,
    /// `atttypmod`.
    pub typmod: i32,
    /// `attcollation`.
    pub collation: u32,
}

impl DistColumn {
    /// Citus's PG 15 `partkey` text: `nodeToString()` of the column's `Var`.
    pub fn partkey(&self) -> String {
        format!(
            "{{VAR :varno 1 :varattno {a} :vartype {t} :vartypmod {m} :varcollid {c} \
             :varlevelsup 0 :varnosyn 1 :varattnosyn {a} :location -1}}",
            a = self.attnum,
            t = self.typid,
            m = self.typmod,
            c = self.collation
        )
    }
}

/// One `pg_dist_node` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    /// nodeid.
    pub nodeid: i32,
    /// groupid (0 = coordinator).
    pub groupid: i32,
    /// nodename.
    pub nodename: String,
    /// nodeport.
    pub nodeport: u16,
    /// false for the coordinator, as in a real cluster.
    pub shouldhaveshards: bool,
}

/// The catalog rows for `layout`, for a node whose own group is `local_group`.
/// `qualified` maps a table index to its schema-qualified, quoted name; `schema_name` maps a
/// tenant schema to its real name; `dist` holds the distribution column of hash tables.
pub fn catalog_rows(
    layout: &Layout,
    nodes: &[NodeRow],
    local_group: i32,
    qualified: &dyn Fn(usize) -> String,
    schema_name: &dyn Fn(&SchemaRef) -> String,
    dist: &dyn Fn(usize) -> Option<DistColumn>,
) -> String {
    let mut sql = String::from("SET allow_system_table_mods = on;\n");
    let _ = writeln!(
        sql,
        "INSERT INTO pg_catalog.pg_dist_local_group VALUES ({local_group});"
    );
    for n in nodes {
        let _ = writeln!(
            sql,
            "INSERT INTO pg_catalog.pg_dist_node (nodeid, groupid, nodename, nodeport, noderack, \
             hasmetadata, isactive, noderole, nodecluster, metadatasynced, shouldhaveshards, \
             nodeisclone, nodeprimarynodeid) VALUES ({}, {}, {}, {}, 'default', true, true, \
             'primary', 'default', true, {}, false, 0);",
            n.nodeid,
            n.groupid,
            quote_literal(&n.nodename),
            n.nodeport,
            n.shouldhaveshards
        );
    }
    for c in &layout.colocations {
        let (typ, coll) = c
            .hash_table
            .and_then(dist)
            .map_or((0, 0), |d| (d.typid, d.collation));
        let _ = writeln!(
            sql,
            "INSERT INTO pg_catalog.pg_dist_colocation VALUES ({}, {}, {}, {typ}, {coll});",
            c.colocationid, c.shardcount, c.replicationfactor
        );
    }
    for (schema, colocationid) in &layout.tenant_schemas {
        let name = schema_name(&SchemaRef::Tenant(schema.clone()));
        let _ = writeln!(
            sql,
            "INSERT INTO pg_catalog.pg_dist_schema VALUES ({}::regnamespace, {colocationid});",
            quote_literal(&crate::quote_ident(&name))
        );
    }
    for (i, t) in layout.tables.iter().enumerate() {
        let partkey = dist(i).map_or_else(|| "NULL".to_owned(), |d| quote_literal(&d.partkey()));
        let _ = writeln!(
            sql,
            "INSERT INTO pg_catalog.pg_dist_partition VALUES ({}::regclass, '{}', {partkey}, {}, \
             '{}', false);",
            quote_literal(&qualified(i)),
            t.partmethod,
            t.colocationid,
            t.repmodel
        );
    }
    for s in &layout.shards {
        let (min, max) = s.range.map_or_else(
            || ("NULL".to_owned(), "NULL".to_owned()),
            |(lo, hi)| (format!("'{lo}'"), format!("'{hi}'")),
        );
        let _ = writeln!(
            sql,
            "INSERT INTO pg_catalog.pg_dist_shard VALUES ({}::regclass, {}, 't', {min}, {max});",
            quote_literal(&qualified(s.table)),
            s.shardid
        );
    }
    for p in &layout.placements {
        let _ = writeln!(
            sql,
            "INSERT INTO pg_catalog.pg_dist_placement VALUES ({}, {}, 1, 0, {});",
            p.placementid, p.shardid, p.groupid
        );
    }
    sequences_after(&mut sql, layout, nodes);
    sql.push_str("RESET allow_system_table_mods;\n");
    sql
}

/// Moves the id sequences past the ids in use, as Citus's own inserts would have.
fn sequences_after(sql: &mut String, layout: &Layout, nodes: &[NodeRow]) {
    let shard = layout.shards.iter().map(|s| s.shardid).max();
    let placement = layout.placements.iter().map(|p| p.placementid).max();
    let node = nodes.iter().map(|n| i64::from(n.nodeid)).max();
    let group = nodes.iter().map(|n| i64::from(n.groupid)).max();
    for (seq, value) in [
        ("pg_dist_shardid_seq", shard),
        ("pg_dist_placement_placementid_seq", placement),
        ("pg_dist_node_nodeid_seq", node),
        ("pg_dist_groupid_seq", group),
    ] {
        if let Some(v) = value {
            let _ = writeln!(sql, "SELECT pg_catalog.setval('pg_catalog.{seq}', {v});");
        }
    }
}

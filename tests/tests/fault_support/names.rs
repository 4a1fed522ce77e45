//! A schema full of hostile names: every identifier here breaks SQL that forgets to quote,
//! quotes with the wrong rule, splits on `.` or `,`, folds case, or cuts bytes instead of
//! characters. The same DDL is used on the source and (through the cluster spec) on the
//! target, so a sync must carry rows between them without ever writing a name unquoted.

use pgwarp_tests::cluster::ClusterSpec;

/// Hash-distributed: double quotes, a space, mixed case, multibyte; distribution column
/// `user` (reserved), key columns `user` and `select` (reserved).
pub const ITEMS: &str = "Order \"Items\" Größe";
/// Reference table named by a reserved word, with a comma and a dot in column names.
pub const REFERENCE: &str = "order";
/// 61 bytes of 3-byte characters plus ASCII: Citus clips it inside the character run and
/// hashes it (the shard name is `<45 bytes>_<hash>_<shardid>`).
pub fn long_name() -> String {
    format!("{}x", "表".repeat(20))
}
/// 56 bytes of 2-byte characters: `_<6-digit shard id>` still fits in 63 bytes, no hash.
pub fn boundary_name() -> String {
    "é".repeat(28)
}
/// A single quote, a backslash, a dot and a comma in a table name.
pub const ODD: &str = "it's a\\b.c,d";
/// Logical name of the tenant schema (schema-based sharding); the fixture prefixes it.
pub const TENANT: &str = "Sch\"ema. Größe";
/// The tenant schema's table: a reserved word.
pub const TENANT_TABLE: &str = "user";

fn q(ident: &str) -> String {
    pgwarp_tests::quote_ident(ident)
}

fn items_ddl() -> String {
    format!(
        "CREATE TABLE {} (\"user\" bigint NOT NULL, \"select\" int NOT NULL, \
         \"Qty \"\"x\"\"\" int, \"it's\" text, \"back\\slash\" text, \"表\" text, \
         \"MixedCase\" text, \"a,b.c\" numeric(12,2), PRIMARY KEY (\"user\", \"select\"))",
        q(ITEMS)
    )
}

fn reference_ddl() -> String {
    format!(
        "CREATE TABLE {} (\"Id\" int PRIMARY KEY, \"from\" text, \"a,b\" text, \"x.y\" int)",
        q(REFERENCE)
    )
}

fn long_ddl() -> String {
    format!(
        "CREATE TABLE {} (\"ключ\" bigint PRIMARY KEY, \"значение\" text)",
        q(&long_name())
    )
}

fn boundary_ddl() -> String {
    format!(
        "CREATE TABLE {} (\"ID\" bigint PRIMARY KEY, v text)",
        q(&boundary_name())
    )
}

fn odd_ddl() -> String {
    format!(
        "CREATE TABLE {} (\"k\"\"ey\" text PRIMARY KEY, \"Ω\" int)",
        q(ODD)
    )
}

fn tenant_ddl() -> String {
    format!(
        "CREATE TABLE {} (\"Id\" int PRIMARY KEY, \"Wert \"\"1\"\"\" text)",
        q(TENANT_TABLE)
    )
}

/// Every table in the fixture's own schema: `(name, ddl)`.
pub fn main_tables() -> Vec<(String, String)> {
    vec![
        (ITEMS.to_owned(), items_ddl()),
        (REFERENCE.to_owned(), reference_ddl()),
        (long_name(), long_ddl()),
        (boundary_name(), boundary_ddl()),
        (ODD.to_owned(), odd_ddl()),
    ]
}

/// The cluster spec: hash tables (4 shards), a reference table, and the tenant table.
pub fn spec() -> ClusterSpec {
    ClusterSpec::new()
        .distributed(ITEMS, &items_ddl(), "user", 4)
        .reference(REFERENCE, &reference_ddl())
        .distributed(&long_name(), &long_ddl(), "ключ", 4)
        .distributed(&boundary_name(), &boundary_ddl(), "ID", 2)
        .distributed(ODD, &odd_ddl(), "k\"ey", 3)
        .tenant(TENANT, TENANT_TABLE, &tenant_ddl())
}

/// DDL of the fixture-schema tables (unqualified, run with the schema on the search path).
pub fn main_ddl() -> String {
    main_tables()
        .into_iter()
        .map(|(_, ddl)| ddl + ";\n")
        .collect()
}

/// DDL creating the tenant schema `physical` and its table on the source.
pub fn tenant_source_ddl(physical: &str) -> String {
    format!(
        "CREATE SCHEMA {s}; SET search_path TO {s}; {ddl};",
        s = q(physical),
        ddl = tenant_ddl()
    )
}

/// Rows with hostile values too (quotes, backslashes, multibyte, NULLs).
pub fn initial_rows() -> String {
    format!(
        "INSERT INTO {items} SELECT g % 37, g, g * 2, 'it''s ' || g, 'C:\\dir\\' || g, '表' || g,
                CASE WHEN g % 5 = 0 THEN NULL ELSE 'Größe \"' || g || '\"' END, g / 3.0
           FROM generate_series(1, 400) g;
         INSERT INTO {reference} SELECT g, 'from ' || g, 'a,b' || g, g FROM generate_series(1, 30) g;
         INSERT INTO {long} SELECT g, repeat('значение', g % 4) FROM generate_series(1, 300) g;
         INSERT INTO {boundary} SELECT g, 'v' || g FROM generate_series(1, 100) g;
         INSERT INTO {odd} SELECT 'key ''' || g || '\\', g FROM generate_series(1, 80) g;",
        items = q(ITEMS),
        reference = q(REFERENCE),
        long = q(&long_name()),
        boundary = q(&boundary_name()),
        odd = q(ODD),
    )
}

/// Initial tenant rows (`physical` is the tenant schema's name).
pub fn tenant_rows(physical: &str) -> String {
    format!(
        "INSERT INTO {}.{} SELECT g, 'Wert ' || g FROM generate_series(1, 50) g;",
        q(physical),
        q(TENANT_TABLE)
    )
}

/// Changes made while streaming: inserts, updates (one moving rows between shards by
/// changing the distribution column), deletes, and a truncate of the reference table.
pub fn stream_changes(physical: &str) -> String {
    format!(
        "INSERT INTO {items} SELECT 1000 + g, g, 1, 'new', NULL, '新', 'x', 1.5
           FROM generate_series(1, 100) g;
         UPDATE {items} SET \"Qty \"\"x\"\"\" = -1, \"表\" = '更新' WHERE \"select\" % 7 = 0;
         UPDATE {items} SET \"user\" = \"user\" + 5000 WHERE \"select\" % 11 = 0;
         DELETE FROM {items} WHERE \"select\" % 13 = 0;
         BEGIN;
         TRUNCATE {reference};
         INSERT INTO {reference} SELECT g, 'after truncate', NULL, -g FROM generate_series(1, 10) g;
         COMMIT;
         UPDATE {long} SET \"значение\" = 'обновлено' WHERE \"ключ\" % 3 = 0;
         DELETE FROM {long} WHERE \"ключ\" > 250;
         UPDATE {boundary} SET \"ID\" = \"ID\" + 1000 WHERE \"ID\" <= 10;
         DELETE FROM {odd} WHERE \"Ω\" % 4 = 0;
         UPDATE {odd} SET \"k\"\"ey\" = \"k\"\"ey\" || ' moved' WHERE \"Ω\" % 5 = 0;
         INSERT INTO {tenant} VALUES (51, 'neu'), (52, NULL);
         UPDATE {tenant} SET \"Wert \"\"1\"\"\" = 'geändert' WHERE \"Id\" < 10;
         DELETE FROM {tenant} WHERE \"Id\" BETWEEN 40 AND 45;",
        items = q(ITEMS),
        reference = q(REFERENCE),
        long = q(&long_name()),
        boundary = q(&boundary_name()),
        odd = q(ODD),
        tenant = format!("{}.{}", q(physical), q(TENANT_TABLE)),
    )
}

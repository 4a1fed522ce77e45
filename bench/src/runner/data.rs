//! The benchmark's data: the storefront schema, pgbench's tables, and the template database
//! every contender's source is cloned from.
//!
//! Everything is generated server-side from `generate_series` with fixed formulas, so two runs
//! at the same scale hold byte-identical tables, and every contender starts from a clone of the
//! same template (`CREATE DATABASE ... TEMPLATE`, file copy). The tables live in one schema
//! (`storefront` in the template); a clone that feeds a Citus-shaped fixture renames it to the
//! fixture's schema, because the engine maps tables by name.
//!
//! | table              | Citus shape                          | rows at scale 1 |
//! |--------------------|--------------------------------------|-----------------|
//! | `users`            | distributed by `user_id`, 32 shards  | 200k            |
//! | `orders`           | colocated with `users` by `user_id`  | 1M              |
//! | `products`         | reference table                      | 10k             |
//! | `pgbench_accounts` | distributed by `aid`, 32 shards      | 1M (`-s 10`)    |
//! | `pgbench_branches` | reference table                      | 10              |
//! | `pgbench_tellers`  | reference table                      | 100             |
//! | `bench_marker`     | reference table                      | 1               |
//!
//! `pgbench_history` is dropped after `pgbench -i`: it is empty and has no primary key.
//! `bench_marker` is the runner's own: each load ends by raising its value, and a contender has
//! caught up with the load once every placement of it shows the new value.

use std::process::Command;

use anyhow::{Context, Result, bail};
use pgwarp_tests::cluster::ClusterSpec;
use pgwarp_tests::{PgServer, quote_ident};

use super::db::OwnedDb;

/// The schema of the tables in the template database.
pub const TEMPLATE_SCHEMA: &str = "storefront";
/// The template database on the source server.
pub const TEMPLATE_DB: &str = "storefront_template";
/// Citus's default shard count, used for both hash-distributed colocation groups.
pub const SHARD_COUNT: u32 = 32;

/// `CREATE TABLE` statements (unqualified), in creation order, with how Citus holds them.
pub const TABLES: &[TableDef] = &[
    TableDef {
        name: "users",
        shape: Shape::Hash("user_id"),
        ddl: "CREATE TABLE users (user_id bigint PRIMARY KEY, email text NOT NULL, \
              name text NOT NULL, country text NOT NULL, created_at timestamptz NOT NULL, \
              balance numeric(12,2) NOT NULL, profile jsonb NOT NULL)",
    },
    TableDef {
        name: "orders",
        shape: Shape::Colocated("user_id", "users"),
        ddl: "CREATE TABLE orders (user_id bigint NOT NULL, order_id bigint NOT NULL, \
              product_id int NOT NULL, quantity int NOT NULL, status text NOT NULL, \
              total numeric(12,2) NOT NULL, created_at timestamptz NOT NULL, \
              updated_at timestamptz, details jsonb NOT NULL, PRIMARY KEY (user_id, order_id))",
    },
    TableDef {
        name: "products",
        shape: Shape::Reference,
        ddl: "CREATE TABLE products (product_id int PRIMARY KEY, sku text NOT NULL, \
              name text NOT NULL, price numeric(10,2) NOT NULL, stock int NOT NULL, \
              attrs jsonb NOT NULL, updated_at timestamptz NOT NULL)",
    },
    TableDef {
        name: "pgbench_accounts",
        shape: Shape::Hash("aid"),
        ddl: "CREATE TABLE pgbench_accounts (aid int NOT NULL PRIMARY KEY, bid int, \
              abalance int, filler char(84)) WITH (fillfactor = 100)",
    },
    TableDef {
        name: "pgbench_branches",
        shape: Shape::Reference,
        ddl: "CREATE TABLE pgbench_branches (bid int NOT NULL PRIMARY KEY, bbalance int, \
              filler char(88)) WITH (fillfactor = 100)",
    },
    TableDef {
        name: "pgbench_tellers",
        shape: Shape::Reference,
        ddl: "CREATE TABLE pgbench_tellers (tid int NOT NULL PRIMARY KEY, bid int, \
              tbalance int, filler char(84)) WITH (fillfactor = 100)",
    },
    TableDef {
        name: "bench_marker",
        shape: Shape::Reference,
        ddl: "CREATE TABLE bench_marker (id int PRIMARY KEY, v bigint NOT NULL)",
    },
];

/// One table of the benchmark.
#[derive(Debug, Clone, Copy)]
pub struct TableDef {
    /// Unqualified name.
    pub name: &'static str,
    /// How the Citus target holds it.
    pub shape: Shape,
    /// `CREATE TABLE`, unqualified.
    pub ddl: &'static str,
}

/// How a table is distributed.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// Hash-distributed by the column, its own colocation group.
    Hash(&'static str),
    /// Hash-distributed by the column, colocated with the table.
    Colocated(&'static str, &'static str),
    /// Reference table.
    Reference,
}

impl Shape {
    /// The distribution column, for hash tables.
    pub fn column(self) -> Option<&'static str> {
        match self {
            Shape::Hash(c) | Shape::Colocated(c, _) => Some(c),
            Shape::Reference => None,
        }
    }
}

/// Row counts of the generated data.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Sizes {
    /// `users` rows.
    pub users: i64,
    /// `orders` rows.
    pub orders: i64,
    /// `products` rows.
    pub products: i64,
    /// `pgbench -i -s` scale (100k accounts each).
    pub pgbench_scale: i64,
}

impl Sizes {
    /// The default sizes (1M orders, 200k users, 10k products, pgbench scale 10) times
    /// `scale`.
    pub fn at(scale: f64) -> Sizes {
        let n = |base: f64, min: i64| ((base * scale).round() as i64).max(min);
        Sizes {
            users: n(200_000.0, 100),
            orders: n(1_000_000.0, 100),
            products: n(10_000.0, 10),
            pgbench_scale: n(10.0, 1),
        }
    }
}

/// The cluster spec of the benchmark tables (unqualified DDL; the fixture picks the schema).
pub fn cluster_spec() -> ClusterSpec {
    let mut spec = ClusterSpec::new();
    for t in TABLES {
        spec = match t.shape {
            Shape::Hash(col) => spec.distributed(t.name, t.ddl, col, SHARD_COUNT),
            Shape::Colocated(col, with) => spec.distributed_colocated(t.name, t.ddl, col, with),
            Shape::Reference => spec.reference(t.name, t.ddl),
        };
    }
    spec
}

/// Every table's DDL, for a plain target (run with the schema on the search path).
pub fn plain_ddl() -> String {
    TABLES.iter().map(|t| format!("{};\n", t.ddl)).collect()
}

/// `"schema"."table"` for every benchmark table.
pub fn qualified_tables(schema: &str) -> Vec<String> {
    TABLES
        .iter()
        .map(|t| format!("{}.{}", quote_ident(schema), quote_ident(t.name)))
        .collect()
}

/// The storefront tables' data and the load procedures (schema `bench`).
fn storefront_sql(sizes: &Sizes, seed: i64) -> String {
    let Sizes {
        users,
        orders,
        products,
        ..
    } = *sizes;
    let tables: String = TABLES
        .iter()
        .filter(|t| !t.name.starts_with("pgbench_"))
        .map(|t| format!("{};\n", t.ddl))
        .collect();
    format!(
        "CREATE SCHEMA {TEMPLATE_SCHEMA};
         SET search_path = {TEMPLATE_SCHEMA};
         {tables}
         INSERT INTO users
           SELECT g, 'user' || g || '@example.com', 'User ' || substr(md5(g::text), 1, 12),
                  (ARRAY['US','DE','FR','JP','BR','IN','GB','NL'])[1 + g % 8],
                  '2020-01-01 00:00:00+00'::timestamptz + g * interval '7 minutes',
                  ((g * 7919) % 1000000) / 100.0,
                  jsonb_build_object('tier', g % 5, 'newsletter', g % 3 = 0,
                                     'tags', jsonb_build_array('t' || g % 7, 't' || g % 11))
             FROM generate_series(1, {users}) g;
         INSERT INTO products
           SELECT g, 'SKU-' || lpad(g::text, 8, '0'), 'Product ' || substr(md5('p' || g), 1, 10),
                  1 + ((g * 37) % 50000) / 100.0, (g * 13) % 1000,
                  jsonb_build_object('color', (ARRAY['red','green','blue','black','white'])[1 + g % 5],
                                     'weight_g', g % 2000),
                  '2023-01-01 00:00:00+00'::timestamptz + g * interval '1 minute'
             FROM generate_series(1, {products}) g;
         INSERT INTO orders SELECT * FROM bench.order_rows(1, {orders}, {users}, {products});
         INSERT INTO bench_marker VALUES (1, 0);
         CREATE TABLE bench.config AS
           SELECT {users}::bigint AS n_users, {orders}::bigint AS n_orders,
                  {products}::int AS n_products, {seed}::bigint AS seed;
         {procedures}",
        procedures = crate::runner::workload::PROCEDURES,
    )
}

/// The generator of `orders` rows (also used by the loads): order ids `first ..= last`.
const ORDER_ROWS_FUNCTION: &str = "
CREATE SCHEMA bench;
CREATE FUNCTION bench.order_rows(first bigint, last bigint, n_users bigint, n_products bigint)
RETURNS TABLE (user_id bigint, order_id bigint, product_id int, quantity int, status text,
               total numeric, created_at timestamptz, updated_at timestamptz, details jsonb)
LANGUAGE sql IMMUTABLE AS $$
  SELECT 1 + (g * 7919) % n_users, g, (1 + (g * 31) % n_products)::int, (1 + g % 5)::int,
         (ARRAY['new','paid','shipped','delivered','returned'])[1 + g % 5],
         1 + ((g * 997) % 100000) / 100.0,
         '2022-01-01 00:00:00+00'::timestamptz + (g % 100000000) * interval '30 seconds',
         CASE WHEN g % 3 = 0 THEN '2022-01-02 00:00:00+00'::timestamptz
                                  + (g % 100000000) * interval '30 seconds' END,
         jsonb_build_object('channel', (ARRAY['web','app','store'])[1 + g % 3],
                            'coupon', CASE WHEN g % 10 = 0 THEN 'SAVE10' END,
                            'items', g % 5 + 1)
    FROM generate_series(first, last) g
$$;
";

/// Builds the template database on the source server: storefront data, pgbench's tables
/// (`pgbench -i -I dtGvp -s N` into the same schema), then `VACUUM ANALYZE` and a checkpoint.
pub fn build_template(source: &PgServer, sizes: &Sizes, seed: i64) -> Result<()> {
    source
        .execute("postgres", &format!("CREATE DATABASE {TEMPLATE_DB}"))
        .context("could not create the template database")?;
    source
        .execute(TEMPLATE_DB, ORDER_ROWS_FUNCTION)
        .context("could not create the order generator")?;
    source
        .execute(TEMPLATE_DB, &storefront_sql(sizes, seed))
        .context("could not generate the storefront data")?;
    let pgbench = source.bin_dir().join("pgbench");
    let output = Command::new(&pgbench)
        .args(["-i", "-I", "dtGvp", "-q", "-s"])
        .arg(sizes.pgbench_scale.to_string())
        .args(["-h", source.host(), "-p"])
        .arg(source.port().to_string())
        .args(["-U", "postgres", TEMPLATE_DB])
        .env("PGOPTIONS", format!("-c search_path={TEMPLATE_SCHEMA}"))
        .output()
        .with_context(|| format!("could not run {}", pgbench.display()))?;
    if !output.status.success() {
        bail!(
            "pgbench -i failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    source.execute(
        TEMPLATE_DB,
        &format!("DROP TABLE {TEMPLATE_SCHEMA}.pgbench_history"),
    )?;
    source.execute(TEMPLATE_DB, "VACUUM ANALYZE")?;
    source.execute("postgres", "CHECKPOINT")?;
    Ok(())
}

/// A clone of the template on the source server, dropped with the value.
#[derive(Debug)]
pub struct SourceDb {
    /// The database (dropped on drop).
    pub db: OwnedDb,
    /// The schema holding the tables.
    pub schema: String,
}

impl SourceDb {
    /// Clones the template (file copy) and, when `schema` differs, renames the data schema.
    pub fn clone_template(source: &PgServer, prefix: &str, schema: &str) -> Result<SourceDb> {
        let db = OwnedDb::create_with(
            source.endpoint(),
            prefix,
            &format!("TEMPLATE {TEMPLATE_DB} STRATEGY = FILE_COPY"),
        )
        .context("could not clone the template database")?;
        if schema != TEMPLATE_SCHEMA {
            db.execute(&format!(
                "ALTER SCHEMA {TEMPLATE_SCHEMA} RENAME TO {}",
                quote_ident(schema)
            ))?;
        }
        Ok(SourceDb {
            db,
            schema: schema.to_owned(),
        })
    }

    /// The qualified names of every benchmark table.
    pub fn tables(&self) -> Vec<String> {
        qualified_tables(&self.schema)
    }

    /// The connection string.
    pub fn conn_string(&self) -> String {
        self.db.conn_string()
    }
}

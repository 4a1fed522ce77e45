//! The declarative description of a Citus cluster's tables.
//!
//! Tables are created in the order they are declared, exactly as a user would run
//! `create_distributed_table` and friends one after another; that order decides shard ids,
//! placement ids and colocation ids, like it does in Citus.
//!
//! DDL is written with **unqualified** names (`CREATE TABLE users (...)`): the harness runs it
//! with `search_path` set to the fixture's schema (or the tenant schema), on the coordinator and
//! on every node that holds a shard. Tables of one colocation group are created together per
//! shard, so a foreign key between colocated tables (or a `PARTITION OF` a colocated parent)
//! works; references to tables of other groups do not.

/// How one table is distributed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableKind {
    /// `create_distributed_table(t, column, shard_count => n, colocate_with => 'none')`.
    Hash {
        /// Distribution column.
        column: String,
        /// Number of shards.
        shard_count: u32,
    },
    /// `create_distributed_table(t, column, colocate_with => other)`.
    HashColocated {
        /// Distribution column.
        column: String,
        /// A hash table declared earlier.
        with: String,
    },
    /// `create_reference_table(t)`.
    Reference,
    /// `create_distributed_table(t, NULL, colocate_with => 'none' | other)`.
    SingleShard {
        /// An earlier single-shard table to colocate with.
        with: Option<String>,
    },
    /// A table in a schema-based-sharding tenant schema (`pg_dist_schema`).
    Tenant {
        /// The tenant schema's logical name (see `CitusFixture::tenant_schema`).
        schema: String,
    },
    /// `citus_add_local_table_to_metadata(t)`.
    CitusLocal,
}

/// One table of a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    /// Table name (unqualified).
    pub name: String,
    /// Its `CREATE TABLE` statement (unqualified names), possibly followed by more statements
    /// about the same table (`CREATE INDEX ...`).
    pub ddl: String,
    /// How it is distributed.
    pub kind: TableKind,
}

/// A cluster's tables, built with chained calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterSpec {
    pub(crate) tables: Vec<TableSpec>,
    pub(crate) prelude: Vec<String>,
}

impl ClusterSpec {
    /// An empty spec.
    pub fn new() -> ClusterSpec {
        ClusterSpec::default()
    }

    /// SQL run first on every node in the fixture's schema (types, extensions, functions the
    /// tables need).
    pub fn prelude(mut self, sql: &str) -> Self {
        self.prelude.push(sql.to_owned());
        self
    }

    /// A hash-distributed table with its own colocation group.
    pub fn distributed(mut self, name: &str, ddl: &str, column: &str, shard_count: u32) -> Self {
        let kind = TableKind::Hash {
            column: column.to_owned(),
            shard_count,
        };
        self.push(name, ddl, kind);
        self
    }

    /// A hash-distributed table colocated with the earlier table `with`.
    pub fn distributed_colocated(
        mut self,
        name: &str,
        ddl: &str,
        column: &str,
        with: &str,
    ) -> Self {
        let kind = TableKind::HashColocated {
            column: column.to_owned(),
            with: with.to_owned(),
        };
        self.push(name, ddl, kind);
        self
    }

    /// A reference table (one shard, a placement on every node including the coordinator).
    pub fn reference(mut self, name: &str, ddl: &str) -> Self {
        self.push(name, ddl, TableKind::Reference);
        self
    }

    /// A single-shard distributed table with its own colocation group.
    pub fn single_shard(mut self, name: &str, ddl: &str) -> Self {
        self.push(name, ddl, TableKind::SingleShard { with: None });
        self
    }

    /// A single-shard table colocated with the earlier single-shard table `with`.
    pub fn single_shard_colocated(mut self, name: &str, ddl: &str, with: &str) -> Self {
        self.push(
            name,
            ddl,
            TableKind::SingleShard {
                with: Some(with.to_owned()),
            },
        );
        self
    }

    /// A table in the tenant schema `schema` (schema-based sharding). All tables of one tenant
    /// schema share a colocation group and node.
    pub fn tenant(mut self, schema: &str, name: &str, ddl: &str) -> Self {
        self.push(
            name,
            ddl,
            TableKind::Tenant {
                schema: schema.to_owned(),
            },
        );
        self
    }

    /// A Citus local table (its one shard lives on the coordinator).
    pub fn citus_local(mut self, name: &str, ddl: &str) -> Self {
        self.push(name, ddl, TableKind::CitusLocal);
        self
    }

    fn push(&mut self, name: &str, ddl: &str, kind: TableKind) {
        self.tables.push(TableSpec {
            name: name.to_owned(),
            ddl: ddl.to_owned(),
            kind,
        });
    }

    /// The tables, in declaration order.
    pub fn tables(&self) -> &[TableSpec] {
        &self.tables
    }

    /// The tenant schemas' logical names, in order of first use.
    pub fn tenant_schemas(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for t in &self.tables {
            if let TableKind::Tenant { schema } = &t.kind
                && !out.contains(schema)
            {
                out.push(schema.clone());
            }
        }
        out
    }

    /// The declared table called `name` (unqualified).
    pub fn table(&self, name: &str) -> Option<&TableSpec> {
        self.tables.iter().find(|t| t.name == name)
    }
}

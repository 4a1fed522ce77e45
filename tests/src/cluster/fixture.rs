//! A spec instantiated on a cluster: where things are, and how tests read them back.
//!
//! Tests must use [`CitusFixture::schema`] (and [`CitusFixture::tenant_schema`]) for every
//! name, in both modes: the fake mode uses a fresh database per fixture, the real mode shares
//! one database and separates fixtures by schema, and using a unique schema in both modes makes
//! a hard-coded `public` fail here rather than only against a real cluster. The source database
//! of a migration test should use the same schema name, as the engine maps tables by name.
//!
//! The read-back helpers (`shards`, `count`, `rows`, `placement_counts`) read `pg_dist_*` on the
//! coordinator and then the shard tables on the nodes directly, naming shard tables with the
//! harness's own implementation of the Citus naming rule.

use tokio_postgres::types::FromSqlOwned;

use crate::cluster::shard_name::shard_table_name;
use crate::cluster::spec::{ClusterSpec, TableKind};
use crate::database::TestDb;
use crate::endpoint::with_client;
use crate::error::{HarnessError, Result};
use crate::options::{quote_ident, quote_literal};

/// One node of a fixture's cluster, as listed in `pg_dist_node`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixtureNode {
    /// `pg_dist_node.nodeid`.
    pub nodeid: i32,
    /// `pg_dist_node.groupid` (0 = coordinator).
    pub groupid: i32,
    /// `nodename`.
    pub host: String,
    /// `nodeport`.
    pub port: u16,
    /// Connection string to the fixture's database on this node.
    pub conn_string: String,
}

impl FixtureNode {
    /// Every row of `sql` on this node, values as text.
    pub fn query_rows(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        let sql = sql.to_owned();
        with_client(
            &self.conn_string,
            self.port,
            "query a cluster node",
            |c| async move {
                let messages = c.simple_query(&sql).await?;
                Ok(messages
                    .into_iter()
                    .filter_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                            (0..row.len())
                                .map(|i| row.get(i).map(str::to_owned))
                                .collect(),
                        ),
                        _ => None,
                    })
                    .collect())
            },
        )
    }

    /// Runs statements on this node.
    pub fn execute(&self, sql: &str) -> Result<()> {
        let sql = sql.to_owned();
        with_client(
            &self.conn_string,
            self.port,
            "run SQL on a cluster node",
            |c| async move { c.batch_execute(&sql).await },
        )
    }

    /// One value from this node.
    pub fn query_scalar<T: FromSqlOwned + Send + 'static>(&self, sql: &str) -> Result<T> {
        let sql = sql.to_owned();
        with_client(
            &self.conn_string,
            self.port,
            "query a cluster node",
            |c| async move { c.query_one(&sql, &[]).await?.try_get::<_, T>(0) },
        )
    }
}

/// One shard of a table with its placements, read from the coordinator's catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    /// Shard id.
    pub shardid: i64,
    /// Hash range; None for reference, single-shard and Citus local tables.
    pub range: Option<(i32, i32)>,
    /// The shard table, quoted and schema-qualified (`"s"."users_102008"`).
    pub shard_table: String,
    /// Groups holding a placement, ascending.
    pub groups: Vec<i32>,
}

/// Whether a fixture runs against the harness's servers or a real Citus cluster.
#[derive(Debug)]
pub(crate) enum FixtureMode {
    /// The harness built the catalog; one database per node, dropped with the fixture.
    Fake {
        /// The per-node databases (coordinator first).
        _databases: Vec<TestDb>,
    },
    /// A real Citus cluster: the fixture's schemas are dropped with the fixture.
    Real,
}

/// A [`ClusterSpec`] created on a cluster.
#[derive(Debug)]
pub struct CitusFixture {
    pub(crate) mode: FixtureMode,
    pub(crate) database: String,
    pub(crate) schema: String,
    pub(crate) tenants: Vec<(String, String)>,
    /// Coordinator first, then workers in group order.
    pub(crate) nodes: Vec<FixtureNode>,
    pub(crate) spec: ClusterSpec,
}

impl CitusFixture {
    /// Whether this is a real Citus cluster (`$PGWARP_TEST_CITUS_COORDINATOR`).
    pub fn is_real(&self) -> bool {
        matches!(self.mode, FixtureMode::Real)
    }

    /// The database name (the same on every node).
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The schema holding the spec's tables (except tenant tables). Unique per fixture.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The real name of the tenant schema declared as `logical` in the spec.
    pub fn tenant_schema(&self, logical: &str) -> Result<&str> {
        self.tenants
            .iter()
            .find(|(l, _)| l == logical)
            .map(|(_, physical)| physical.as_str())
            .ok_or_else(|| HarnessError::InvalidSpec(format!("no tenant schema \"{logical}\"")))
    }

    /// The schema of a spec table.
    pub fn schema_of(&self, table: &str) -> Result<&str> {
        match &self.spec_table(table)?.kind {
            TableKind::Tenant { schema } => self.tenant_schema(schema),
            _ => Ok(&self.schema),
        }
    }

    /// `"schema"."table"` for a spec table.
    pub fn qualified(&self, table: &str) -> Result<String> {
        Ok(format!(
            "{}.{}",
            quote_ident(self.schema_of(table)?),
            quote_ident(table)
        ))
    }

    /// The spec this fixture was built from.
    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    /// Coordinator first, then the workers in group order.
    pub fn nodes(&self) -> &[FixtureNode] {
        &self.nodes
    }

    /// The coordinator.
    pub fn coordinator(&self) -> &FixtureNode {
        &self.nodes[0]
    }

    /// The workers, in group order.
    pub fn workers(&self) -> &[FixtureNode] {
        &self.nodes[1..]
    }

    /// Connection string to the fixture's database on the coordinator.
    pub fn coordinator_conn_string(&self) -> &str {
        &self.nodes[0].conn_string
    }

    /// Connection strings to the fixture's database on each worker, in group order.
    pub fn worker_conn_strings(&self) -> Vec<String> {
        self.workers()
            .iter()
            .map(|n| n.conn_string.clone())
            .collect()
    }

    /// The node of group `groupid`.
    pub fn node_of_group(&self, groupid: i32) -> Result<&FixtureNode> {
        self.nodes
            .iter()
            .find(|n| n.groupid == groupid)
            .ok_or_else(|| {
                HarnessError::UnexpectedResult(format!("no node with group id {groupid}"))
            })
    }

    pub(crate) fn spec_table(&self, table: &str) -> Result<&crate::cluster::spec::TableSpec> {
        self.spec
            .table(table)
            .ok_or_else(|| HarnessError::InvalidSpec(format!("no table \"{table}\" in the spec")))
    }

    /// The shard table name (unquoted, unqualified) of `table` and `shardid`, by the harness's
    /// own implementation of the Citus rule, asking the coordinator for `hashtext` only when
    /// the name is long enough to need it.
    pub fn shard_table_name(&self, table: &str, shardid: i64) -> Result<String> {
        shard_table_name(table, shardid, |name| {
            let hash: i32 = self
                .coordinator()
                .query_scalar(&format!("SELECT hashtext({})", quote_literal(name)))?;
            Ok(hash as u32)
        })
    }

    /// The shard table of `table` and `shardid`, quoted and schema-qualified.
    pub fn shard_table(&self, table: &str, shardid: i64) -> Result<String> {
        let schema = self.schema_of(table)?;
        let name = self.shard_table_name(table, shardid)?;
        Ok(format!("{}.{}", quote_ident(schema), quote_ident(&name)))
    }

    /// The shards of `table` with their placements, ordered by hash range then shard id.
    pub fn shards(&self, table: &str) -> Result<Vec<ShardInfo>> {
        let rows = self.coordinator().query_rows(&format!(
            "SELECT s.shardid, s.shardminvalue, s.shardmaxvalue, \
                    string_agg(p.groupid::text, ',' ORDER BY p.groupid) \
             FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid) \
             WHERE s.logicalrelid = {}::regclass \
             GROUP BY 1, 2, 3 ORDER BY s.shardminvalue::int NULLS LAST, s.shardid",
            quote_literal(&self.qualified(table)?)
        ))?;
        rows.into_iter()
            .map(|r| {
                let field = |i: usize| r.get(i).cloned().flatten();
                let shardid = parse::<i64>(field(0), "shardid")?;
                let range = match (field(1), field(2)) {
                    (Some(lo), Some(hi)) => {
                        Some((parse(Some(lo), "min")?, parse(Some(hi), "max")?))
                    }
                    _ => None,
                };
                let groups = field(3)
                    .unwrap_or_default()
                    .split(',')
                    .map(|g| parse(Some(g.to_owned()), "groupid"))
                    .collect::<Result<Vec<i32>>>()?;
                Ok(ShardInfo {
                    shardid,
                    range,
                    shard_table: self.shard_table(table, shardid)?,
                    groups,
                })
            })
            .collect()
    }

    /// Rows of `table` in the cluster: the sum over its shards of `count(*)` on the shard's
    /// first placement (so a reference table counts once).
    pub fn count(&self, table: &str) -> Result<i64> {
        let mut total = 0;
        for shard in self.shards(table)? {
            let node = self.node_of_group(shard.groups[0])?;
            total +=
                node.query_scalar::<i64>(&format!("SELECT count(*) FROM {}", shard.shard_table))?;
        }
        Ok(total)
    }

    /// `(shardid, groupid, count(*))` for every placement of `table`: reference tables must show
    /// the same count in every group.
    pub fn placement_counts(&self, table: &str) -> Result<Vec<(i64, i32, i64)>> {
        let mut out = Vec::new();
        for shard in self.shards(table)? {
            for &group in &shard.groups {
                let node = self.node_of_group(group)?;
                let n = node
                    .query_scalar::<i64>(&format!("SELECT count(*) FROM {}", shard.shard_table))?;
                out.push((shard.shardid, group, n));
            }
        }
        Ok(out)
    }

    /// Every row of `table` in the cluster (`SELECT *` of each shard's first placement), as
    /// text, sorted: compare it with the same read of the source for row-for-row equality.
    pub fn rows(&self, table: &str) -> Result<Vec<Vec<Option<String>>>> {
        let mut out = Vec::new();
        for shard in self.shards(table)? {
            let node = self.node_of_group(shard.groups[0])?;
            out.extend(node.query_rows(&format!("SELECT * FROM {}", shard.shard_table))?);
        }
        out.sort();
        Ok(out)
    }

    /// The rows of one shard on one group.
    pub fn shard_rows(
        &self,
        table: &str,
        shardid: i64,
        groupid: i32,
    ) -> Result<Vec<Vec<Option<String>>>> {
        let shard_table = self.shard_table(table, shardid)?;
        let mut rows = self
            .node_of_group(groupid)?
            .query_rows(&format!("SELECT * FROM {shard_table}"))?;
        rows.sort();
        Ok(rows)
    }

    /// The shard Citus routes `value_sql` (an SQL expression, e.g. `'42'::bigint`) to, from the
    /// coordinator's `get_shard_id_for_distribution_column` (real Citus, or the fake catalog's
    /// version built on PostgreSQL's own hash functions).
    pub fn shard_id_for(&self, table: &str, value_sql: &str) -> Result<i64> {
        self.coordinator().query_scalar(&format!(
            "SELECT pg_catalog.get_shard_id_for_distribution_column({}::regclass, {value_sql})",
            quote_literal(&self.qualified(table)?)
        ))
    }
}

impl Drop for CitusFixture {
    fn drop(&mut self) {
        if let FixtureMode::Real = self.mode {
            let mut schemas = vec![quote_ident(&self.schema)];
            schemas.extend(self.tenants.iter().map(|(_, s)| quote_ident(s)));
            let _ = self.coordinator().execute(&format!(
                "DROP SCHEMA IF EXISTS {} CASCADE",
                schemas.join(", ")
            ));
        }
    }
}

fn parse<T: std::str::FromStr>(value: Option<String>, what: &str) -> Result<T> {
    let text = value.unwrap_or_default();
    text.parse().map_err(|_| {
        HarnessError::UnexpectedResult(format!("catalog value {what} = \"{text}\" is not a number"))
    })
}

//! Putting rows into a fixture's shards the way Citus would route them, without the engine:
//! the reference against which tests compare what the engine wrote, and a quick way to give a
//! test pre-existing data (e.g. rows for `split_shard` to move).

use crate::cluster::fixture::CitusFixture;
use crate::cluster::spec::TableKind;
use crate::endpoint::with_client;
use crate::error::Result;
use crate::options::{quote_ident, quote_literal};

impl CitusFixture {
    /// Inserts the rows of `select_sql` (which must produce `table`'s non-generated columns, in
    /// order; it runs with the fixture's schema on the `search_path`) into
    /// the shards of `table`: for hash tables each row goes to the shard whose range holds
    /// `worker_hash(distribution column)`, evaluated on the shard's node; other tables get
    /// every row in every placement. Returns the number of rows inserted, counting each row
    /// once.
    pub fn insert_routed(&self, table: &str, select_sql: &str) -> Result<u64> {
        let column = match &self.spec_table(table)?.kind {
            TableKind::Hash { column, .. } | TableKind::HashColocated { column, .. } => {
                Some(column.clone())
            }
            _ => None,
        };
        let qualified = self.qualified(table)?;
        let columns: String = self.coordinator().query_scalar(&format!(
            "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute \
             WHERE attrelid = {}::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = ''",
            quote_literal(&qualified)
        ))?;
        let search_path = format!(
            "SET search_path = {}, {}",
            quote_ident(self.schema_of(table)?),
            quote_ident(self.schema())
        );
        let mut total = 0;
        for shard in self.shards(table)? {
            let insert = format!(
                "INSERT INTO {} ({columns}) SELECT {columns} FROM ({select_sql}) AS src ({columns})",
                shard.shard_table
            );
            let (sql, groups) = match (&column, shard.range) {
                (Some(col), Some((lo, hi))) => (
                    format!(
                        "{insert} WHERE pg_catalog.worker_hash(src.{}) BETWEEN {lo} AND {hi}",
                        quote_ident(col)
                    ),
                    vec![shard.groups[0]],
                ),
                _ => (insert, shard.groups.clone()),
            };
            for (i, group) in groups.iter().enumerate() {
                let node = self.node_of_group(*group)?;
                let (set, stmt) = (search_path.clone(), sql.clone());
                let n = with_client(
                    &node.conn_string,
                    node.port,
                    "insert routed rows",
                    |c| async move {
                        c.batch_execute(&set).await?;
                        c.execute(stmt.as_str(), &[]).await
                    },
                )?;
                if i == 0 {
                    total += n;
                }
            }
        }
        Ok(total)
    }
}

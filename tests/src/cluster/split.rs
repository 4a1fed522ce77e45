//! `split_shard`: replaces one hash shard (and its colocated siblings) by two, as
//! `citus_split_shard_by_split_points(shardid, ARRAY[p], ...)` does: ranges `[min, p]` and
//! `[p + 1, max]`, new shard ids (per table, consecutive), both children on the parent's node,
//! the parent's rows moved by hash, the parent shard table dropped.
//!
//! In the fake cluster it runs in one transaction per node, opened on every node with
//! `lock_shard_metadata(7, old shards)` first, so a writer following ROUTING.md §4.6 (share lock,
//! then re-validate) either finishes before the split or sees the new shards afterwards. The
//! node holding the data commits first.

use std::fmt::Write as _;

use tokio_postgres::NoTls;

use crate::cluster::catalog::SHARDIFY_FUNCTION;
use crate::cluster::fake::{is_hash, shard_round_sql};
use crate::cluster::fixture::{CitusFixture, FixtureMode};
use crate::endpoint::block_on;
use crate::error::{HarnessError, Result};
use crate::options::quote_literal;

/// Copies the rows of `from` whose distribution column hashes into `[lo, hi]` into `to`.
const MOVE_ROWS_FUNCTION: &str = r#"
CREATE FUNCTION pg_temp.pgwarp_move_rows(from_rel regclass, to_rel regclass, col text,
                                         lo integer, hi integer)
RETURNS void LANGUAGE plpgsql AS $f$
DECLARE
    cols text;
BEGIN
    SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO cols
    FROM pg_catalog.pg_attribute
    WHERE attrelid = from_rel AND attnum > 0 AND NOT attisdropped AND attgenerated = '';
    EXECUTE format('INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM %s '
                   'WHERE pg_catalog.worker_hash(%I) BETWEEN %s AND %s',
                   to_rel, cols, cols, from_rel, col, lo, hi);
END
$f$;
"#;

struct Sibling {
    table: String,
    old: i64,
    low: i64,
    high: i64,
    column: String,
}

impl CitusFixture {
    /// Splits shard `shardid` of hash table `table` at `split_point` (the lower child keeps
    /// `[min, split_point]`), for all its colocated tables. Returns the new shard ids of `table`
    /// (lower, upper).
    pub fn split_shard(&self, table: &str, shardid: i64, split_point: i32) -> Result<(i64, i64)> {
        if !is_hash(&self.spec, table) {
            return Err(HarnessError::InvalidSpec(format!(
                "table \"{table}\" is not hash-distributed: only hash shards can be split"
            )));
        }
        let shard = self
            .shards(table)?
            .into_iter()
            .find(|s| s.shardid == shardid)
            .ok_or_else(|| {
                HarnessError::InvalidSpec(format!("table \"{table}\" has no shard {shardid}"))
            })?;
        let Some((min, max)) = shard.range else {
            return Err(HarnessError::UnexpectedResult(format!(
                "shard {shardid} has no hash range"
            )));
        };
        if split_point < min || split_point >= max {
            return Err(HarnessError::InvalidSpec(format!(
                "split point {split_point} is not within [{min}, {max}) of shard {shardid}"
            )));
        }
        let group = shard.groups[0];
        match self.mode {
            FixtureMode::Real => self.split_real(table, shardid, split_point, (min, max), group),
            FixtureMode::Fake { .. } => {
                self.split_fake(table, shardid, split_point, (min, max), group)
            }
        }
    }

    fn split_real(
        &self,
        table: &str,
        shardid: i64,
        p: i32,
        (min, max): (i32, i32),
        group: i32,
    ) -> Result<(i64, i64)> {
        let nodeid = self.node_of_group(group)?.nodeid;
        self.coordinator().execute(&format!(
            "SELECT citus_split_shard_by_split_points({shardid}, ARRAY[{}], ARRAY[{nodeid}, {nodeid}], \
             shard_transfer_mode => 'block_writes')",
            quote_literal(&p.to_string())
        ))?;
        let find = |lo: i64, hi: i64| -> Result<i64> {
            self.coordinator().query_scalar(&format!(
                "SELECT shardid FROM pg_dist_shard WHERE logicalrelid = {}::regclass \
                 AND shardminvalue = '{lo}' AND shardmaxvalue = '{hi}'",
                quote_literal(&self.qualified(table)?)
            ))
        };
        Ok((
            find(min.into(), p.into())?,
            find(i64::from(p) + 1, max.into())?,
        ))
    }

    fn split_fake(
        &self,
        table: &str,
        shardid: i64,
        p: i32,
        (min, max): (i32, i32),
        group: i32,
    ) -> Result<(i64, i64)> {
        // The colocated siblings of the shard, in creation (shard id) order.
        let rows = self.coordinator().query_rows(&format!(
            "SELECT c.relname, s.shardid, column_to_column_name(s.logicalrelid, d.partkey) \
             FROM pg_dist_shard s JOIN pg_dist_partition d USING (logicalrelid) \
             JOIN pg_class c ON c.oid = s.logicalrelid \
             WHERE d.colocationid = (SELECT colocationid FROM pg_dist_partition \
                                     WHERE logicalrelid = {}::regclass) \
               AND s.shardminvalue = '{min}' AND s.shardmaxvalue = '{max}' ORDER BY s.shardid",
            quote_literal(&self.qualified(table)?)
        ))?;
        let next_shard: i64 = self
            .coordinator()
            .query_scalar("SELECT max(shardid) + 1 FROM pg_dist_shard")?;
        let next_placement: i64 = self
            .coordinator()
            .query_scalar("SELECT max(placementid) + 1 FROM pg_dist_placement")?;
        let mut siblings = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let get = |k: usize| row.get(k).cloned().flatten().unwrap_or_default();
            let low = next_shard + 2 * i as i64;
            siblings.push(Sibling {
                table: get(0),
                old: get(1)
                    .parse()
                    .map_err(|_| HarnessError::UnexpectedResult("bad shard id".into()))?,
                low,
                high: low + 1,
                column: get(2),
            });
        }
        let me = siblings
            .iter()
            .find(|s| s.old == shardid)
            .map(|s| (s.low, s.high))
            .ok_or_else(|| {
                HarnessError::UnexpectedResult(format!(
                    "shard {shardid} not found among its colocated shards"
                ))
            })?;

        let data_sql = self.split_data_sql(&siblings, p, (min, max))?;
        let catalog_sql =
            self.split_catalog_sql(&siblings, p, (min, max), group, next_placement)?;
        let old_ids: Vec<String> = siblings.iter().map(|s| s.old.to_string()).collect();
        let lock = format!(
            "BEGIN; SELECT pg_catalog.lock_shard_metadata(7, ARRAY[{}]::bigint[])",
            old_ids.join(",")
        );
        let nodes: Vec<(String, u16, bool)> = self
            .nodes
            .iter()
            .map(|n| (n.conn_string.clone(), n.port, n.groupid == group))
            .collect();

        block_on(|| async move {
            let err = |port: u16| move |e| HarnessError::sql("split a shard", port, e);
            let mut clients = Vec::new();
            for (conn, port, holds_data) in &nodes {
                let (client, connection) = tokio_postgres::connect(conn, NoTls)
                    .await
                    .map_err(err(*port))?;
                tokio::spawn(connection);
                client.batch_execute(&lock).await.map_err(err(*port))?;
                clients.push((client, *port, *holds_data));
            }
            for (client, port, holds_data) in &clients {
                if *holds_data {
                    client.batch_execute(&data_sql).await.map_err(err(*port))?;
                }
                client
                    .batch_execute(&catalog_sql)
                    .await
                    .map_err(err(*port))?;
            }
            clients.sort_by_key(|(_, _, holds_data)| !*holds_data);
            for (client, port, _) in &clients {
                client.batch_execute("COMMIT").await.map_err(err(*port))?;
            }
            Ok(())
        })?;
        Ok(me)
    }

    /// On the node holding the shards: create the children, move the rows, drop the parents.
    fn split_data_sql(
        &self,
        siblings: &[Sibling],
        p: i32,
        (min, max): (i32, i32),
    ) -> Result<String> {
        let mut sql = String::from(SHARDIFY_FUNCTION);
        sql.push_str(MOVE_ROWS_FUNCTION);
        for child in [0, 1] {
            let members: Vec<(String, i64, String)> = siblings
                .iter()
                .map(|s| {
                    let id = if child == 0 { s.low } else { s.high };
                    Ok((s.table.clone(), id, self.shard_table_name(&s.table, id)?))
                })
                .collect::<Result<_>>()?;
            let refs: Vec<(&str, i64, &str)> = members
                .iter()
                .map(|(t, id, n)| (t.as_str(), *id, n.as_str()))
                .collect();
            sql.push_str(&shard_round_sql(self, &refs)?);
        }
        let mut parents = Vec::new();
        for s in siblings {
            let old = self.shard_table(&s.table, s.old)?;
            // Partition shards receive their rows through their parent shard.
            let _ = writeln!(
                sql,
                "SELECT pg_temp.pgwarp_move_rows({o}::regclass, {lo}::regclass, {c}, {min}, {p}), \
                        pg_temp.pgwarp_move_rows({o}::regclass, {hi}::regclass, {c}, {p1}, {max}) \
                 FROM pg_class WHERE oid = {o}::regclass AND NOT relispartition;",
                o = quote_literal(&old),
                lo = quote_literal(&self.shard_table(&s.table, s.low)?),
                hi = quote_literal(&self.shard_table(&s.table, s.high)?),
                c = quote_literal(&s.column),
                p1 = i64::from(p) + 1,
            );
            parents.push(old);
        }
        let _ = writeln!(sql, "DROP TABLE {};", parents.join(", "));
        Ok(sql)
    }

    /// On every node: swap the catalog rows.
    fn split_catalog_sql(
        &self,
        siblings: &[Sibling],
        p: i32,
        (min, max): (i32, i32),
        group: i32,
        next_placement: i64,
    ) -> Result<String> {
        let mut sql = String::new();
        let mut placement = next_placement;
        for s in siblings {
            let rel = quote_literal(&self.qualified(&s.table)?);
            let _ = writeln!(
                sql,
                "DELETE FROM pg_catalog.pg_dist_placement WHERE shardid = {old};\n\
                 DELETE FROM pg_catalog.pg_dist_shard WHERE shardid = {old};\n\
                 INSERT INTO pg_catalog.pg_dist_shard VALUES ({rel}::regclass, {lo}, 't', '{min}', '{p}'), \
                 ({rel}::regclass, {hi}, 't', '{p1}', '{max}');\n\
                 INSERT INTO pg_catalog.pg_dist_placement VALUES ({pl0}, {lo}, 1, 0, {group}), \
                 ({pl1}, {hi}, 1, 0, {group});",
                old = s.old,
                lo = s.low,
                hi = s.high,
                p1 = i64::from(p) + 1,
                pl0 = placement,
                pl1 = placement + 1,
            );
            placement += 2;
        }
        let _ = writeln!(
            sql,
            "SELECT pg_catalog.setval('pg_catalog.pg_dist_shardid_seq', \
                    (SELECT max(shardid) FROM pg_catalog.pg_dist_shard)), \
                    pg_catalog.setval('pg_catalog.pg_dist_placement_placementid_seq', \
                    (SELECT max(placementid) FROM pg_catalog.pg_dist_placement));"
        );
        Ok(sql)
    }
}

//! Node writers on a Citus-shaped cluster: changes from a real slot are routed to worker shard
//! tables (as the engine's router does, here with the cluster's own
//! `get_shard_id_for_distribution_column`) and applied by one writer per worker. Updates that
//! change the distribution column move rows between shards: within a node in one update
//! (`moved_from`, unchanged TOAST values taken from the old row), across nodes as a delete on
//! one node's batch and an insert on the other's. `TRUNCATE` reaches every shard on every node.

mod sink_support;

use std::collections::HashMap;
use std::sync::Arc;

use pgwarp_decoder::{ColumnRef, Lsn, Message, TupleData};
use pgwarp_sink::{
    Change, NodeBatch, NodeWriter, Row, Shard, ShardTarget, TargetTable, WriterConfig,
};
use pgwarp_tests::cluster::{CitusCluster, CitusFixture, ClusterSpec};
use sink_support::{Source, Txn, connector};

const USERS: &str = "CREATE TABLE users (user_id bigint PRIMARY KEY, name text, bio text)";

/// The routing the engine would do, from the fixture's catalog.
struct Router {
    /// shard id -> (group, shard target)
    shards: HashMap<i64, (i32, Shard)>,
    /// user_id -> shard id
    placement: HashMap<i64, i64>,
}

impl Router {
    fn new(f: &CitusFixture, ids: &[i64]) -> Router {
        let t = Arc::new(
            TargetTable::new(
                "users",
                vec!["user_id".into(), "name".into(), "bio".into()],
                vec![0],
                true,
            )
            .unwrap(),
        );
        let mut shards = HashMap::new();
        for s in f.shards("users").unwrap() {
            let name = f.shard_table_name("users", s.shardid).unwrap();
            let target = Arc::new(ShardTarget::new(t.clone(), f.schema(), &name));
            assert_eq!(target.quoted_name(), s.shard_table);
            shards.insert(s.shardid, (s.groups[0], target));
        }
        let list: Vec<String> = ids.iter().map(i64::to_string).collect();
        let placement = f
            .coordinator()
            .query_rows(&format!(
                "SELECT v, pg_catalog.get_shard_id_for_distribution_column('{}'::regclass, v) \
                 FROM unnest('{{{}}}'::bigint[]) v",
                f.qualified("users").unwrap(),
                list.join(",")
            ))
            .unwrap()
            .into_iter()
            .map(|r| {
                let v = |i: usize| r[i].as_deref().unwrap().parse::<i64>().unwrap();
                (v(0), v(1))
            })
            .collect();
        Router { shards, placement }
    }

    fn route(&self, tuple: &TupleData) -> (i32, Shard) {
        let id = match tuple.get(0) {
            Some(ColumnRef::Binary(b)) => i64::from_be_bytes(b.try_into().unwrap()),
            other => panic!("expected a binary bigint, got {other:?}"),
        };
        let shardid = self.placement[&id];
        self.shards[&shardid].clone()
    }

    fn all_on(&self, group: i32) -> Vec<Shard> {
        let mut v: Vec<&(i32, Shard)> = self.shards.values().filter(|(g, _)| *g == group).collect();
        v.sort_by(|a, b| a.1.quoted_name().cmp(b.1.quoted_name()));
        v.into_iter().map(|(_, s)| s.clone()).collect()
    }

    /// Routes a transaction's changes into per-group change lists.
    fn split(&self, txns: &[Txn], groups: &[i32], out: &mut HashMap<i32, Vec<Change>>) {
        for t in txns {
            for m in &t.messages {
                match m {
                    Message::Insert(i) => {
                        let (g, shard) = self.route(&i.new);
                        out.entry(g).or_default().push(Change::Insert {
                            shard,
                            row: Row::Tuple(i.new.clone()),
                        });
                    }
                    Message::Update(u) => {
                        let old = u.old.as_ref().map(|o| o.tuple().clone());
                        let (g_new, new_shard) = self.route(&u.new);
                        let (g_old, old_shard) = self.route(old.as_ref().unwrap_or(&u.new));
                        let new = Row::Tuple(u.new.clone());
                        let old_key = old.map(Row::Tuple);
                        if old_shard.quoted_name() == new_shard.quoted_name() {
                            out.entry(g_new).or_default().push(Change::Update {
                                shard: new_shard,
                                old_key,
                                new,
                                moved_from: None,
                            });
                        } else if g_old == g_new {
                            out.entry(g_new).or_default().push(Change::Update {
                                shard: new_shard,
                                old_key,
                                new,
                                moved_from: Some(old_shard),
                            });
                        } else {
                            assert!(
                                !u.new.iter().any(|c| c.is_unchanged_toast()),
                                "test setup: cross-node move with toast"
                            );
                            out.entry(g_old).or_default().push(Change::Delete {
                                shard: old_shard,
                                key: old_key.unwrap(),
                            });
                            out.entry(g_new).or_default().push(Change::Insert {
                                shard: new_shard,
                                row: new,
                            });
                        }
                    }
                    Message::Delete(d) => {
                        let (g, shard) = self.route(d.old.tuple());
                        out.entry(g).or_default().push(Change::Delete {
                            shard,
                            key: Row::Tuple(d.old.tuple().clone()),
                        });
                    }
                    Message::Truncate(_) => {
                        for &g in groups {
                            out.entry(g).or_default().push(Change::Truncate {
                                shards: self.all_on(g),
                                cascade: false,
                                restart_identity: false,
                            });
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

fn sorted(mut rows: Vec<Vec<Option<String>>>) -> Vec<Vec<Option<String>>> {
    rows.sort();
    rows
}

/// Every row sits in the shard Citus routes it to.
fn assert_placed(f: &CitusFixture) {
    for s in f.shards("users").unwrap() {
        let node = f.node_of_group(s.groups[0]).unwrap();
        let misplaced: i64 = node
            .query_scalar(&format!(
                "SELECT count(*) FROM {} WHERE pg_catalog.get_shard_id_for_distribution_column('{}'::regclass, user_id) <> {}",
                s.shard_table,
                f.qualified("users").unwrap(),
                s.shardid
            ))
            .unwrap();
        assert_eq!(misplaced, 0, "rows misplaced in {}", s.shard_table);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_changing_distribution_column_moves_row_between_shards_and_nodes() {
    let cluster = CitusCluster::shared_or_start(2).unwrap();
    let f = cluster
        .create(&ClusterSpec::new().distributed("users", USERS, "user_id", 8))
        .unwrap();
    let schema = f.schema().to_owned();
    let source = Source::new(
        "sink_citus_src",
        &format!(
            "CREATE SCHEMA \"{schema}\"; SET search_path TO \"{schema}\"; {USERS}; \
             ALTER TABLE users ALTER COLUMN bio SET STORAGE EXTERNAL"
        ),
        true,
    );
    let q = |sql: &str| format!("SET search_path TO \"{schema}\"; {sql}");
    let ids: Vec<i64> = (1..=40).chain(1001..=1040).chain(2001..=2040).collect();
    let router = Router::new(&f, &ids);
    let groups: Vec<i32> = f.workers().iter().map(|n| n.groupid).collect();
    let group_of = |id: i64| router.shards[&router.placement[&id]].0;
    // ids whose +2000 move stays on the node (one update with moved_from), and ids whose
    // +1000 move changes node (delete + insert across writers)
    let same_node: Vec<String> = (21..=40)
        .filter(|&i| group_of(i) == group_of(i + 2000))
        .map(|i| i.to_string())
        .collect();
    let cross_node: Vec<String> = (11..=20)
        .filter(|&i| group_of(i) != group_of(i + 1000))
        .map(|i| i.to_string())
        .collect();
    assert!(!same_node.is_empty() && !cross_node.is_empty());

    let mut writers = Vec::new();
    for &g in &groups {
        let node = f.node_of_group(g).unwrap();
        let w = NodeWriter::connect(
            connector(&node.conn_string),
            WriterConfig::new(&source.slot, format!("{}:{}", node.host, node.port)),
        )
        .await
        .unwrap();
        writers.push((g, w));
    }

    // The initial rows land first, so later moves find them on the target.
    source.exec(&q("INSERT INTO users SELECT g, 'n' || g, \
         CASE WHEN g > 20 THEN repeat(md5(g::text), 100) ELSE 'short' END \
         FROM generate_series(1, 40) g"));
    apply_pending(&source, &router, &mut writers).await;
    source.exec(&q("UPDATE users SET name = 'renamed' WHERE user_id <= 10"));
    source.exec(&q(&format!(
        "UPDATE users SET user_id = user_id + 1000 WHERE user_id IN ({})",
        cross_node.join(",")
    )));
    source.exec(&q(&format!(
        "UPDATE users SET user_id = user_id + 2000, name = 'moved' WHERE user_id IN ({})",
        same_node.join(",")
    )));
    source.exec(&q("DELETE FROM users WHERE user_id IN (1, 2, 3)"));
    let (moved, _, _) = apply_pending(&source, &router, &mut writers).await;
    assert_eq!(
        moved as usize,
        same_node.len(),
        "same-node moves with unchanged bio"
    );
    assert_eq!(
        f.rows("users").unwrap(),
        sorted(source.rows(&q("SELECT * FROM users")))
    );
    assert_eq!(f.count("users").unwrap(), 37);
    assert_placed(&f);

    // TRUNCATE goes to every shard of every node, then new rows land after it.
    source.exec(&q("TRUNCATE users"));
    source.exec(&q(
        "INSERT INTO users VALUES (5, 'after', NULL), (6, 'after', NULL)",
    ));
    let (_, truncates, last) = apply_pending(&source, &router, &mut writers).await;
    assert_eq!(truncates as usize, groups.len(), "one truncate per node");
    assert_eq!(
        f.rows("users").unwrap(),
        sorted(source.rows(&q("SELECT * FROM users")))
    );
    assert_eq!(f.count("users").unwrap(), 2);
    for n in f.workers() {
        let lsn: String = n
            .query_scalar(&format!(
                "SELECT lsn::text FROM pgwarp.progress WHERE slot = '{}'",
                source.slot
            ))
            .unwrap();
        assert_eq!(lsn.parse::<Lsn>().unwrap(), last);
    }
    source.finish();
}

/// Applies what the slot has, one batch per node; returns rows moved with capture, truncates
/// and the last commit LSN.
async fn apply_pending(
    source: &Source,
    router: &Router,
    writers: &mut [(i32, NodeWriter)],
) -> (u64, u64, Lsn) {
    let txns = source.changes().await;
    let last = txns.last().unwrap().commit_lsn;
    let groups: Vec<i32> = writers.iter().map(|(g, _)| *g).collect();
    let mut per_group = HashMap::new();
    router.split(&txns, &groups, &mut per_group);
    let (mut moved, mut truncates) = (0, 0);
    for (g, w) in writers.iter_mut() {
        let batch = NodeBatch::complete(per_group.remove(g).unwrap_or_default(), last);
        let r = w.apply(&batch).await.unwrap();
        moved += r.counts.moved;
        truncates += r.counts.truncates;
        assert_eq!(w.committed_lsn(), last);
    }
    (moved, truncates, last)
}

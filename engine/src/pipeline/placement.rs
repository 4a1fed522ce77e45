//! Guarding a sync against shard moves and splits (ROUTING.md §4.6).
//!
//! pgwarp writes rows straight into the worker shard tables and records exactly-once progress
//! per node. Both rest on the placements the sync started with. When a shard moves to another
//! node (`citus_move_shard_placement`, the rebalancer) or is split (new shard ids and ranges):
//!
//! * rows written to the old placement after the move switched over are lost: Citus drops the
//!   old shard table later, and it is no longer in the metadata anyway;
//! * the new node's progress row says nothing about the moved shard: the shard's changes the
//!   old node had not applied yet would be skipped there, or ones it had applied replayed.
//!
//! So the placements of every synced table (shard id, hash range, nodes) are recorded when a
//! sync starts (`pgwarp.placements` on the target), compared on every restart, and watched
//! while it runs by reloading the topology every [`WATCH_INTERVAL`]. Any difference stops the
//! sync with [`PipelineError::PlacementChanged`], which names the shards, and the same check
//! refuses to resume it. The sync cannot be continued: between a move's switch and the next
//! check, rows may already have gone to the old placement. Closing that window needs Citus's
//! shard metadata lock in every node transaction ([`crate::citus::lock`]), which the writers
//! do not take yet; until then the runbook says to keep the rebalancer off during a sync.
//!
//! A plain PostgreSQL target has one node and no shards to move: nothing is watched there.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use crate::citus::{TableKind, Topology, TopologyStatus, TopologyWatch};
use crate::config::Settings;
use crate::conn::connect;

use super::error::PipelineError;
use super::nodes::target_addr;
use super::routes::RouteMap;
use super::{Prepared, state};

/// How often a running sync reloads the topology to compare placements.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// Differences named in an error before the rest is counted.
const NAMED: usize = 3;

/// Where one shard lives: its hash range and its nodes (`host:port`, sorted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// `min..max` of a hash shard, `-` for a shard without a range.
    pub range: String,
    /// The nodes holding a placement, comma-separated.
    pub nodes: String,
}

/// Every shard of the synced tables, by (stored table name, shard id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placements(pub BTreeMap<(String, i64), Place>);

impl Placements {
    /// The placements a run routes with: its topology as loaded when it was prepared.
    pub fn of_prepared(prepared: &Prepared) -> Placements {
        let labels: Vec<String> = prepared.nodes.iter().map(|n| n.label.clone()).collect();
        let tables = prepared.routes.tables.iter().map(|t| (&t.name, &t.citus));
        collect(tables, &labels)
    }

    /// The placements in `topology`, loaded for the tables of `routes` (in the same order).
    pub fn of_topology(routes: &RouteMap, topology: &Topology) -> Placements {
        let labels: Vec<String> = topology.nodes.iter().map(ToString::to_string).collect();
        let tables = routes
            .tables
            .iter()
            .map(|t| &t.name)
            .zip(topology.tables.iter());
        collect(tables, &labels)
    }

    /// Whether nothing here can move: no table is a Citus table.
    pub fn is_static(routes: &RouteMap) -> bool {
        routes
            .tables
            .iter()
            .all(|t| t.citus.kind == TableKind::Plain)
    }
}

fn collect<'a>(
    tables: impl Iterator<Item = (&'a String, &'a crate::citus::CitusTable)>,
    labels: &[String],
) -> Placements {
    let mut out = BTreeMap::new();
    for (name, table) in tables {
        for shard in &table.shards {
            let mut nodes: Vec<&str> = shard
                .placements
                .iter()
                .map(|&i| labels.get(i).map_or("?", String::as_str))
                .collect();
            nodes.sort_unstable();
            let range = match shard.range {
                Some((lo, hi)) => format!("{lo}..{hi}"),
                None => "-".to_owned(),
            };
            out.insert(
                (name.clone(), shard.shard_id),
                Place {
                    range,
                    nodes: nodes.join(","),
                },
            );
        }
    }
    Placements(out)
}

/// What changed from `then` to `now`, in words; `None` when nothing did.
pub fn difference(then: &Placements, now: &Placements) -> Option<String> {
    let mut parts = Vec::new();
    for ((table, shard), was) in &then.0 {
        match now.0.get(&(table.clone(), *shard)) {
            None => parts.push(format!(
                "shard {shard} of table \"{table}\" is gone (split, or the table was recreated)"
            )),
            Some(is) if is.nodes != was.nodes => parts.push(format!(
                "shard {shard} of table \"{table}\" moved from {} to {}",
                was.nodes, is.nodes
            )),
            Some(is) if is.range != was.range => parts.push(format!(
                "the hash range of shard {shard} of table \"{table}\" changed from {} to {}",
                was.range, is.range
            )),
            Some(_) => {}
        }
    }
    for ((table, shard), is) in &now.0 {
        if !then.0.contains_key(&(table.clone(), *shard)) {
            parts.push(format!(
                "shard {shard} of table \"{table}\" is new (on {})",
                is.nodes
            ));
        }
    }
    if parts.is_empty() {
        return None;
    }
    let more = parts.len().saturating_sub(NAMED);
    parts.truncate(NAMED);
    let mut text = parts.join("; ");
    if more > 0 {
        text.push_str(&format!("; and {more} more change(s)"));
    }
    Some(text)
}

/// Records the placements a sync starts with (replacing any earlier record of the slot).
pub async fn record(client: &mut Client, slot: &str, p: &Placements) -> Result<(), PipelineError> {
    let (mut tables, mut shards, mut ranges, mut nodes) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((table, shard), place) in &p.0 {
        tables.push(table.as_str());
        shards.push(*shard);
        ranges.push(place.range.as_str());
        nodes.push(place.nodes.as_str());
    }
    let what = "record the shard placements";
    let tx = client.transaction().await.map_err(state::q(what))?;
    tx.execute("DELETE FROM pgwarp.placements WHERE slot = $1", &[&slot])
        .await
        .map_err(state::q(what))?;
    tx.execute(
        "INSERT INTO pgwarp.placements (slot, table_name, shard_id, shard_range, nodes) \
         SELECT $1, * FROM unnest($2::text[], $3::int8[], $4::text[], $5::text[])",
        &[&slot, &tables, &shards, &ranges, &nodes],
    )
    .await
    .map_err(state::q(what))?;
    tx.commit().await.map_err(state::q(what))
}

/// The placements recorded for `slot` (empty for a sync started by a pgwarp that did not
/// record them).
pub async fn recorded(client: &Client, slot: &str) -> Result<Placements, PipelineError> {
    let what = "read the recorded shard placements";
    let rows = client
        .query(
            "SELECT table_name, shard_id, shard_range, nodes FROM pgwarp.placements \
              WHERE slot = $1",
            &[&slot],
        )
        .await
        .map_err(state::q(what))?;
    let mut out = BTreeMap::new();
    for row in rows {
        let get = |i: usize| row.try_get::<_, String>(i).map_err(state::q(what));
        let shard: i64 = row.try_get(1).map_err(state::q(what))?;
        out.insert(
            (get(0)?, shard),
            Place {
                range: get(2)?,
                nodes: get(3)?,
            },
        );
    }
    Ok(Placements(out))
}

/// On a restart: the placements must be those the sync started with. A sync whose state has
/// no record yet gets one now.
pub async fn verify_on_resume(
    client: &mut Client,
    slot: &str,
    now: &Placements,
) -> Result<(), PipelineError> {
    let then = recorded(client, slot).await?;
    if then.0.is_empty() {
        return record(client, slot, now).await;
    }
    match difference(&then, now) {
        Some(detail) => Err(PipelineError::PlacementChanged { detail }),
        None => Ok(()),
    }
}

/// What a [`Guard`] compares against, and how it looks.
struct Watched {
    start: Placements,
    settings: Settings,
    routes: Arc<RouteMap>,
}

impl Watched {
    /// The placement change since the start, if any, as the error to stop with: one digest
    /// query ([`TopologyWatch::check`]) while nothing routing depends on changed; the topology
    /// is reloaded and its placements compared only when the digest moved (also for changes
    /// that leave placements alone, like a node added: then `watch` follows the new digest).
    async fn changed(
        &self,
        client: &Client,
        watch: &mut TopologyWatch,
    ) -> Result<Option<PipelineError>, PipelineError> {
        if watch.check(client).await? == TopologyStatus::Unchanged {
            return Ok(None);
        }
        let topology = watch.reload(client, &target_addr(&self.settings)).await?;
        let now = Placements::of_topology(&self.routes, &topology);
        *watch = TopologyWatch::new(&topology);
        Ok(difference(&self.start, &now).map(|detail| PipelineError::PlacementChanged { detail }))
    }
}

/// Watches the placements while a sync runs; see [`Guard::finish`].
pub struct Guard {
    done: CancellationToken,
    task: JoinHandle<Option<PipelineError>>,
    watched: Arc<Watched>,
    watch: TopologyWatch,
}

impl Guard {
    /// Starts watching `prepared`'s placements; on a change it cancels `sync` (the run's
    /// token: the pipeline stops as on Ctrl-C) and keeps the error for [`Guard::finish`].
    /// `None` for a target without Citus tables.
    pub fn spawn(prepared: &Prepared, sync: CancellationToken) -> Option<Guard> {
        if Placements::is_static(&prepared.routes) {
            return None;
        }
        let watched = Arc::new(Watched {
            start: Placements::of_prepared(prepared),
            settings: prepared.settings.clone(),
            routes: prepared.routes.clone(),
        });
        let done = CancellationToken::new();
        let (w, stop, mut watch) = (watched.clone(), done.clone(), prepared.watch.clone());
        let task = tokio::spawn(async move {
            let mut client: Option<Client> = None;
            loop {
                tokio::select! {
                    () = stop.cancelled() => return None,
                    () = sync.cancelled() => return None,
                    () = tokio::time::sleep(WATCH_INTERVAL) => {}
                }
                let checked = async {
                    if client.is_none() {
                        client = Some(connect(&w.settings.target).await?.0);
                    }
                    match &client {
                        Some(c) => w.changed(c, &mut watch).await,
                        None => Ok(None),
                    }
                }
                .await;
                match checked {
                    Ok(None) => {}
                    Ok(Some(moved)) => {
                        tracing::error!(error = %moved, "shard placements changed: stopping");
                        sync.cancel();
                        return Some(moved);
                    }
                    // the pipeline reports an unreachable target itself; connect again next time
                    Err(e) => {
                        client = None;
                        tracing::debug!(error = %e, "could not check the shard placements");
                    }
                }
            }
        });
        Some(Guard {
            done,
            task,
            watched,
            watch: prepared.watch.clone(),
        })
    }

    /// Stops watching; the placement change it saw, if it saw one. With `failed` (the run
    /// ended in an error) the placements are checked once more: a write into a shard that a
    /// split just dropped fails before the next periodic check, and the split is the cause to
    /// report.
    pub async fn finish(mut self, failed: bool) -> Option<PipelineError> {
        self.done.cancel();
        if let Some(seen) = self.task.await.ok().flatten() {
            return Some(seen);
        }
        if !failed {
            return None;
        }
        let (client, _c) = connect(&self.watched.settings.target).await.ok()?;
        self.watched
            .changed(&client, &mut self.watch)
            .await
            .ok()
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placements(rows: &[(&str, i64, &str, &str)]) -> Placements {
        Placements(
            rows.iter()
                .map(|(t, s, r, n)| {
                    (
                        ((*t).to_owned(), *s),
                        Place {
                            range: (*r).to_owned(),
                            nodes: (*n).to_owned(),
                        },
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn differences_name_moves_splits_and_new_shards() {
        let then = placements(&[
            ("public.users", 1, "-2147483648..-1", "a:1"),
            ("public.users", 2, "0..2147483647", "b:1"),
            ("public.products", 3, "-", "a:1,b:1"),
        ]);
        assert_eq!(difference(&then, &then.clone()), None);
        let moved = placements(&[
            ("public.users", 1, "-2147483648..-1", "b:1"),
            ("public.users", 2, "0..2147483647", "b:1"),
            ("public.products", 3, "-", "a:1,b:1"),
        ]);
        assert_eq!(
            difference(&then, &moved).as_deref(),
            Some("shard 1 of table \"public.users\" moved from a:1 to b:1")
        );
        let split = placements(&[
            ("public.users", 1, "-2147483648..-1", "a:1"),
            ("public.users", 4, "0..1000", "b:1"),
            ("public.users", 5, "1001..2147483647", "b:1"),
            ("public.products", 3, "-", "a:1,b:1"),
        ]);
        assert_eq!(
            difference(&then, &split).as_deref(),
            Some(
                "shard 2 of table \"public.users\" is gone (split, or the table was recreated); \
                 shard 4 of table \"public.users\" is new (on b:1); \
                 shard 5 of table \"public.users\" is new (on b:1)"
            )
        );
        let mut many = split.clone();
        many.0.remove(&("public.products".to_owned(), 3));
        assert!(
            difference(&then, &many)
                .unwrap()
                .ends_with("; and 1 more change(s)")
        );
    }
}

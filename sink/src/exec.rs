//! Running one attempt of a plan on a connection: the transaction around it, the progress row
//! locked at its start and upserted at its commit, and the staging tables it needs. The
//! plan's writes themselves (COPYs and set-based statements, pipelined) are in `write`.

use std::collections::HashMap;
use std::sync::Arc;

use pgwarp_decoder::Lsn;
use tokio_postgres::{Client, Statement};

use crate::catalog::{CatalogError, load_shapes};
use crate::change::NodeBatch;
use crate::error::SinkError;
use crate::oid_rewrite::Shape;
use crate::open::OpenState;
use crate::plan::{Plan, Step};
use crate::progress;
use crate::row::RowFormat;
use crate::sql;
use crate::target::{Shard, TargetTable, table_id};
use crate::write;

/// A live connection and what was prepared on it.
pub(crate) struct Conn {
    pub(crate) client: Client,
    pub(crate) pid: i32,
    pub(crate) statements: HashMap<String, Statement>,
    pub(crate) stages: HashMap<usize, (Arc<TargetTable>, String)>,
    pub(crate) shapes: HashMap<usize, (Arc<TargetTable>, Arc<[Shape]>)>,
    pub(crate) next_stage: u32,
    /// The transaction kept open on this connection, if any (see `open`).
    pub(crate) open: Option<OpenState>,
}

/// What every statement of one attempt needs for itself and its error messages.
pub(crate) struct Ctx<'a> {
    pub(crate) node: &'a str,
    pub(crate) slot: &'a str,
    pub(crate) key: &'a str,
    pub(crate) lsn: Lsn,
    pub(crate) frame: usize,
}

impl Ctx<'_> {
    pub(crate) fn node_err(
        &self,
        what: &'static str,
    ) -> impl FnOnce(tokio_postgres::Error) -> SinkError + '_ {
        move |source| SinkError::Node {
            node: self.node.to_owned(),
            lsn: self.lsn,
            what,
            source,
        }
    }

    pub(crate) fn shard_err<'s>(
        &'s self,
        shard: &'s Shard,
        what: &'static str,
    ) -> impl FnOnce(tokio_postgres::Error) -> SinkError + 's {
        move |source| SinkError::Shard {
            node: self.node.to_owned(),
            shard: shard.quoted_name().to_owned(),
            table: shard.table().name().to_owned(),
            lsn: self.lsn,
            what,
            source,
        }
    }
}

impl Conn {
    /// A fresh connection with nothing prepared yet.
    pub(crate) fn new(client: Client, pid: i32) -> Conn {
        Conn {
            client,
            pid,
            statements: HashMap::new(),
            stages: HashMap::new(),
            shapes: HashMap::new(),
            next_stage: 0,
            open: None,
        }
    }

    pub(crate) async fn prepare(&mut self, text: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self.statements.get(text) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(text).await?;
        self.statements.insert(text.to_owned(), s.clone());
        Ok(s)
    }

    /// The staging table of `shard`'s table on this connection, created on first use.
    async fn stage(&mut self, shard: &Shard, cx: &Ctx<'_>) -> Result<String, SinkError> {
        let id = table_id(shard.table());
        if let Some((_, name)) = self.stages.get(&id) {
            return Ok(name.clone());
        }
        let name = format!("pg_temp.pgwarp_stage_{}", self.next_stage);
        self.next_stage += 1;
        self.client
            .batch_execute(&sql::create_stage(&name, shard))
            .await
            .map_err(cx.shard_err(shard, "create a staging table for"))?;
        self.stages
            .insert(id, (shard.table().clone(), name.clone()));
        if let Some(open) = &mut self.open {
            // created inside the open transaction: gone if it rolls back
            open.created_stages.push(id);
        }
        Ok(name)
    }

    /// Per-column OID rewrite shapes for `shard`'s table; empty when nothing needs rewriting.
    async fn shapes(&mut self, shard: &Shard, cx: &Ctx<'_>) -> Result<Arc<[Shape]>, SinkError> {
        let id = table_id(shard.table());
        if let Some((_, s)) = self.shapes.get(&id) {
            return Ok(s.clone());
        }
        let table = shard.table();
        let shapes = load_shapes(&self.client, shard)
            .await
            .map_err(|e| match e {
                CatalogError::Query(source) => {
                    cx.shard_err(shard, "read the column types of")(source)
                }
                CatalogError::MissingColumn(c) => SinkError::InvalidTable {
                    table: table.name().to_owned(),
                    reason: format!(
                        "column \"{c}\" is missing from shard {shard} on node {}",
                        cx.node
                    ),
                },
                CatalogError::Type(reason) => SinkError::InvalidTable {
                    table: table.name().to_owned(),
                    reason: format!("{reason} on node {}", cx.node),
                },
            })?;
        let shapes: Arc<[Shape]> = if shapes.iter().any(Shape::needs_rewrite) {
            shapes.into()
        } else {
            Arc::from(Vec::new())
        };
        self.shapes.insert(id, (table.clone(), shapes.clone()));
        Ok(shapes)
    }
}

/// What a plan needs on the connection before its statements run: the staging table of each
/// staged table and the OID rewrite shapes of binary rows.
pub(crate) struct Prepared {
    stage_names: Vec<String>,
    shapes: HashMap<usize, Arc<[Shape]>>,
    no_shapes: Arc<[Shape]>,
}

impl Prepared {
    pub(crate) fn shapes_of(&self, t: &Arc<TargetTable>) -> Arc<[Shape]> {
        self.shapes
            .get(&table_id(t))
            .cloned()
            .unwrap_or_else(|| self.no_shapes.clone())
    }

    /// The staging tables the plan writes.
    pub(crate) fn stage_names(&self) -> &[String] {
        &self.stage_names
    }
}

/// Creates (once per connection) the staging tables and loads the type shapes a plan needs.
/// Outside a transaction, so that a rollback never loses them; inside an open transaction a
/// new staging table is recorded there, to be forgotten if the transaction rolls back.
pub(crate) async fn prepare(
    conn: &mut Conn,
    cx: &Ctx<'_>,
    plan: &Plan,
) -> Result<Prepared, SinkError> {
    let mut stage_names = Vec::with_capacity(plan.stages.len());
    let mut shapes: HashMap<usize, Arc<[Shape]>> = HashMap::new();
    for st in &plan.stages {
        stage_names.push(conn.stage(&st.sample, cx).await?);
        if st.format == RowFormat::Binary {
            shapes.insert(table_id(&st.table), conn.shapes(&st.sample, cx).await?);
        }
    }
    for step in &plan.steps {
        if let Step::Copy {
            shard,
            format: RowFormat::Binary,
            ..
        } = step
            && !shapes.contains_key(&table_id(shard.table()))
        {
            shapes.insert(table_id(shard.table()), conn.shapes(shard, cx).await?);
        }
    }
    Ok(Prepared {
        stage_names,
        shapes,
        no_shapes: Arc::from(Vec::new()),
    })
}

/// Locks this key's progress row (inside a transaction) and returns the recorded LSN.
pub(crate) async fn lock_progress(conn: &mut Conn, cx: &Ctx<'_>) -> Result<Lsn, SinkError> {
    let lock = conn
        .prepare(progress::LOCK_ROW)
        .await
        .map_err(cx.node_err("prepare the progress check"))?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&cx.slot, &cx.key];
    let row = conn
        .client
        .query_opt(&lock, &params)
        .await
        .map_err(cx.node_err("lock the progress row"))?;
    parse_recorded(cx, row)
}

fn parse_recorded(cx: &Ctx<'_>, row: Option<tokio_postgres::Row>) -> Result<Lsn, SinkError> {
    let text: Option<String> = row
        .map(|r| r.try_get(0))
        .transpose()
        .map_err(cx.node_err("read the progress row"))?;
    progress::parse(text.as_deref()).map_err(|reason| SinkError::Progress {
        node: cx.node.to_owned(),
        slot: cx.slot.to_owned(),
        reason,
    })
}

/// Records `cx.lsn` in the progress row (when valid) and commits.
pub(crate) async fn commit(conn: &mut Conn, cx: &Ctx<'_>) -> Result<(), SinkError> {
    if cx.lsn.is_valid() {
        let upsert = conn
            .prepare(progress::UPSERT)
            .await
            .map_err(cx.node_err("prepare the progress update"))?;
        let client = &conn.client;
        let lsn = cx.lsn.to_string();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&cx.slot, &cx.key, &lsn];
        tokio::try_join!(
            client.execute(&upsert, &params),
            client.batch_execute("COMMIT"),
        )
        .map_err(cx.node_err("record progress and commit"))?;
    } else {
        conn.client
            .batch_execute("COMMIT")
            .await
            .map_err(cx.node_err("commit"))?;
    }
    Ok(())
}

/// Runs one attempt of a plan on a connection, in one transaction with the progress row.
pub(crate) async fn run(
    conn: &mut Conn,
    cx: &Ctx<'_>,
    plan: &Plan,
    batch: &NodeBatch,
) -> Result<(bool, Lsn), SinkError> {
    let prepared = prepare(conn, cx, plan).await?;
    let lock = conn
        .prepare(progress::LOCK_ROW)
        .await
        .map_err(cx.node_err("prepare the progress check"))?;
    let client = &conn.client;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&cx.slot, &cx.key];
    let (_, row) = tokio::try_join!(
        client.batch_execute("BEGIN"),
        client.query_opt(&lock, &params),
    )
    .map_err(cx.node_err("begin and lock the progress row"))?;
    let recorded = parse_recorded(cx, row)?;
    if let Some(at) = batch.skip_at()
        && recorded >= at
    {
        client
            .batch_execute("ROLLBACK")
            .await
            .map_err(cx.node_err("roll back"))?;
        return Ok((true, recorded));
    }
    write::write(conn, cx, plan, &prepared).await?;
    commit(conn, cx).await?;
    Ok((false, recorded.max(cx.lsn)))
}

//! Running one attempt of a plan on a connection: the transaction, the COPY streams and the
//! pipelined set-based statements.
//!
//! Statements of consecutive set-based steps are prepared (once per connection, cached by their
//! text) and then sent together: tokio-postgres pipelines requests issued at once, the server
//! runs them in order and answers in order, so a run of N statements costs one round trip. A
//! COPY needs the connection to itself and goes alone.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, future::try_join_all, pin_mut};
use pgwarp_decoder::Lsn;
use tokio_postgres::{Client, Statement};

use crate::catalog::{CatalogError, load_shapes};
use crate::change::NodeBatch;
use crate::copy_format::{Encoder, put_header, put_trailer};
use crate::error::SinkError;
use crate::image::Image;
use crate::oid_rewrite::Shape;
use crate::open::OpenState;
use crate::plan::{Plan, SqlOp, StageRows, Step};
use crate::progress;
use crate::row::RowFormat;
use crate::sql;
use crate::target::{Shard, TargetTable, table_id};

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

    fn shard_err<'s>(
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

    async fn prepare(&mut self, text: &str) -> Result<Statement, tokio_postgres::Error> {
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
    fn shapes_of(&self, t: &Arc<TargetTable>) -> Arc<[Shape]> {
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
    write(conn, cx, plan, &prepared).await?;
    commit(conn, cx).await?;
    Ok((false, recorded.max(cx.lsn)))
}

/// One request of a plan's write phase, with its statement prepared.
enum Request<'p> {
    /// COPY of a table's staged rows into its staging table.
    Stage {
        st: &'p StageRows,
        stmt: Statement,
        shapes: Arc<[Shape]>,
    },
    /// COPY of rows (and forwarded bulk tuples) into a shard.
    Copy {
        shard: &'p Shard,
        format: RowFormat,
        rows: &'p [Image],
        /// Rows split out of bulk tuples whose values need OID rewriting.
        split: Vec<Image>,
        /// Bulk tuples forwarded untouched.
        forward: &'p [(Bytes, u64)],
        stmt: Statement,
        shapes: Arc<[Shape]>,
    },
    /// A `TRUNCATE` (simple query).
    Truncate { first: &'p Shard, text: String },
    /// A set-based statement over a staged group.
    Sql {
        shard: &'p Shard,
        op: &'p SqlOp,
        group: i32,
        expect: Option<u64>,
        stmt: Statement,
    },
}

/// Runs a plan's statements inside the transaction already open on the connection: the
/// staging COPYs, then the steps in order.
///
/// Every statement is prepared first (once per connection; cached afterwards), then all of
/// them are issued at once: tokio-postgres sends requests in the order they are first polled,
/// the server runs them in that order, and a COPY's data follows as soon as the server accepts
/// it. So a batch costs about one round trip per COPY rather than two plus one per run of
/// statements, and the node never waits for pgwarp between two statements. Affected row counts
/// are checked once every request has answered; on any error the transaction is abandoned by
/// the caller (a COPY cut short is failed with `CopyFail` when its sink is dropped).
pub(crate) async fn write(
    conn: &mut Conn,
    cx: &Ctx<'_>,
    plan: &Plan,
    prepared: &Prepared,
) -> Result<(), SinkError> {
    let requests = requests(conn, cx, plan, prepared).await?;
    let client = &conn.client;
    // `try_join_all` polls each future first in order (a vector below 30, a FIFO queue above),
    // so the requests go out in plan order
    let affected = try_join_all(requests.iter().map(|r| send(client, cx, r))).await?;
    for (r, affected) in requests.iter().zip(affected) {
        if let Request::Sql {
            shard,
            op,
            expect: Some(expected),
            ..
        } = r
            && affected < *expected
        {
            return Err(SinkError::Diverged {
                node: cx.node.to_owned(),
                shard: shard.quoted_name().to_owned(),
                table: shard.table().name().to_owned(),
                lsn: cx.lsn,
                what: op.noun(),
                expected: *expected,
                affected,
            });
        }
    }
    Ok(())
}

/// Prepares every statement of a plan's write phase, in plan order.
async fn requests<'p>(
    conn: &mut Conn,
    cx: &Ctx<'_>,
    plan: &'p Plan,
    prepared: &Prepared,
) -> Result<Vec<Request<'p>>, SinkError> {
    let mut out = Vec::with_capacity(plan.stages.len() + plan.steps.len());
    for (st, name) in plan.stages.iter().zip(&prepared.stage_names) {
        let stmt = conn
            .prepare(&sql::copy_into_stage(name, st.format))
            .await
            .map_err(cx.shard_err(&st.sample, "prepare staging copy for"))?;
        out.push(Request::Stage {
            st,
            stmt,
            shapes: prepared.shapes_of(&st.table),
        });
    }
    for step in &plan.steps {
        let request = match step {
            Step::Copy {
                shard,
                format,
                rows,
                chunks,
            } => {
                let stmt = conn
                    .prepare(&sql::copy_into_shard(shard, *format))
                    .await
                    .map_err(cx.shard_err(shard, "prepare copy into"))?;
                let shapes = prepared.shapes_of(shard.table());
                // bulk tuples go out untouched unless values need OID rewriting
                let mut split = Vec::new();
                let forward: &[(Bytes, u64)] = if shapes.is_empty() {
                    chunks
                } else {
                    for (data, n) in chunks {
                        split.extend(
                            crate::segment::split_rows(shard, data, *n)?
                                .into_iter()
                                .map(Image::Row),
                        );
                    }
                    &[]
                };
                Request::Copy {
                    shard,
                    format: *format,
                    rows,
                    split,
                    forward,
                    stmt,
                    shapes,
                }
            }
            Step::Truncate {
                shards,
                cascade,
                restart_identity,
            } => {
                let Some(first) = shards.first() else {
                    continue;
                };
                Request::Truncate {
                    first,
                    text: sql::truncate(shards.iter().map(|s| &**s), *cascade, *restart_identity),
                }
            }
            Step::Sql {
                shard,
                op,
                group,
                expect,
            } => {
                let stage = conn
                    .stages
                    .get(&table_id(shard.table()))
                    .map(|(_, n)| n.clone())
                    .ok_or_else(|| SinkError::Config("staging table missing for a step".into()))?;
                let stmt = conn
                    .prepare(&sql::statement(op, shard, &stage))
                    .await
                    .map_err(cx.shard_err(shard, op.what()))?;
                Request::Sql {
                    shard,
                    op,
                    group: *group,
                    expect: *expect,
                    stmt,
                }
            }
        };
        out.push(request);
    }
    Ok(out)
}

/// Issues one request and waits for its answer: rows affected (0 for a `TRUNCATE`).
async fn send(client: &Client, cx: &Ctx<'_>, request: &Request<'_>) -> Result<u64, SinkError> {
    match request {
        Request::Stage { st, stmt, shapes } => {
            let enc = Encoder {
                format: st.format,
                table: &st.table,
                shapes,
                node: cx.node,
            };
            copy(
                client,
                stmt,
                st.format,
                cx.frame,
                st.rows.iter(),
                |buf, r| enc.staged(buf, r),
                &[],
            )
            .await
            .map_err(|e| e.into_sink(cx.shard_err(&st.sample, "stage rows for")))
        }
        Request::Copy {
            shard,
            format,
            rows,
            split,
            forward,
            stmt,
            shapes,
        } => {
            let enc = Encoder {
                format: *format,
                table: shard.table(),
                shapes,
                node: cx.node,
            };
            copy(
                client,
                stmt,
                *format,
                cx.frame,
                rows.iter().chain(split),
                |buf, r| enc.row(buf, r),
                forward,
            )
            .await
            .map_err(|e| e.into_sink(cx.shard_err(shard, "copy rows into")))
        }
        Request::Truncate { first, text } => {
            client
                .batch_execute(text)
                .await
                .map_err(cx.shard_err(first, "truncate"))?;
            Ok(0)
        }
        Request::Sql {
            shard,
            op,
            group,
            stmt,
            ..
        } => {
            let group: &(dyn tokio_postgres::types::ToSql + Sync) = group;
            client
                .execute(stmt, &[group])
                .await
                .map_err(cx.shard_err(shard, op.what()))
        }
    }
}

/// Why a COPY failed: the server or connection, or a row that could not be encoded.
enum CopyError {
    Pg(tokio_postgres::Error),
    Encode(SinkError),
}

impl CopyError {
    fn into_sink(self, pg: impl FnOnce(tokio_postgres::Error) -> SinkError) -> SinkError {
        match self {
            CopyError::Pg(e) => pg(e),
            CopyError::Encode(e) => e,
        }
    }
}

/// Streams rows through `COPY ... FROM STDIN` in frames of about `frame` bytes, then forwards
/// `chunks` (ready binary tuples) in frames cut from them without copying. Always awaits
/// `finish()` on success (dropping the sink, on an encoding error, aborts the COPY).
async fn copy<R>(
    client: &Client,
    stmt: &Statement,
    format: RowFormat,
    frame: usize,
    rows: impl Iterator<Item = R>,
    mut encode: impl FnMut(&mut BytesMut, R) -> Result<(), SinkError>,
    chunks: &[(Bytes, u64)],
) -> Result<u64, CopyError> {
    let sink = client
        .copy_in::<_, Bytes>(stmt)
        .await
        .map_err(CopyError::Pg)?;
    pin_mut!(sink);
    let mut buf = BytesMut::with_capacity(frame + frame / 4);
    put_header(&mut buf, format);
    for row in rows {
        encode(&mut buf, row).map_err(CopyError::Encode)?;
        if buf.len() >= frame {
            sink.send(buf.split().freeze())
                .await
                .map_err(CopyError::Pg)?;
            buf.reserve(frame + frame / 4);
        }
    }
    for (data, _) in chunks {
        if !buf.is_empty() {
            sink.send(buf.split().freeze())
                .await
                .map_err(CopyError::Pg)?;
        }
        for at in (0..data.len()).step_by(frame) {
            let piece = data.slice(at..data.len().min(at + frame));
            sink.send(piece).await.map_err(CopyError::Pg)?;
        }
    }
    put_trailer(&mut buf, format);
    sink.send(buf.freeze()).await.map_err(CopyError::Pg)?;
    sink.as_mut().finish().await.map_err(CopyError::Pg)
}

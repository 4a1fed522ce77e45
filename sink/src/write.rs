//! The write phase of a plan, inside the transaction `exec` opened: staging COPYs, COPYs into
//! shards, `TRUNCATE`s and set-based statements over staged rows, all sent pipelined.
//!
//! Every statement is prepared first (once per connection, cached by its text), then every
//! request is issued at once: tokio-postgres sends requests in the order they are first
//! polled, the server runs them in that order and answers in order, and a COPY's data follows
//! as soon as the server accepts it. A batch costs about one round trip per COPY, and the node
//! never waits for pgwarp between two statements.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, future::try_join_all, pin_mut};
use tokio_postgres::{Client, Statement};

use crate::copy_format::{Encoder, put_header, put_trailer};
use crate::error::SinkError;
use crate::exec::{Conn, Ctx, Prepared};
use crate::image::Image;
use crate::oid_rewrite::Shape;
use crate::plan::{Plan, SqlOp, StageRows, Step};
use crate::row::RowFormat;
use crate::sql;
use crate::target::{Shard, table_id};

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
/// staging COPYs, then the steps in order, pipelined (see the module doc). Affected row counts
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
    for (st, name) in plan.stages.iter().zip(prepared.stage_names()) {
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

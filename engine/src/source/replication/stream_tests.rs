//! The stream's wire behaviour against a scripted server on a socket pair, with tokio's clock
//! paused (timers fire when the runtime is idle, so the tests never wait for real time).
//! PostgreSQL itself is exercised by the `source_*` integration tests; these pin the bytes.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use pgwarp_decoder::{Lsn, ProtocolVersion, ReplicationMessage, StandbyStatusUpdate};

use super::client::ReplicationClient;
use super::stream::ReplicationStream;
use super::wire::{Backend, Wire};
use crate::conn::socket::Socket;
use crate::source::SourceError;

fn pair() -> (ReplicationStream, UnixStream) {
    let (ours, server) = UnixStream::pair().unwrap();
    let client = ReplicationClient {
        wire: Wire::new(Socket::Unix(ours), "test-server".to_owned()),
        server_version_num: 150_000,
        backend_pid: 42,
        user: "tester".to_owned(),
    };
    let stream = ReplicationStream::new(
        client,
        "s1".to_owned(),
        Lsn(0x100),
        ProtocolVersion::V3,
        Duration::from_secs(1),
    );
    (stream, server)
}

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn keepalive(wal_end: u64, reply: bool) -> Vec<u8> {
    let mut body = vec![b'k'];
    body.extend_from_slice(&wal_end.to_be_bytes());
    body.extend_from_slice(&7i64.to_be_bytes());
    body.push(u8::from(reply));
    frame(b'd', &body)
}

fn xlog(start: u64, data: &[u8]) -> Vec<u8> {
    let mut body = vec![b'w'];
    body.extend_from_slice(&start.to_be_bytes());
    body.extend_from_slice(&(start + 1000).to_be_bytes());
    body.extend_from_slice(&7i64.to_be_bytes());
    body.extend_from_slice(data);
    frame(b'd', &body)
}

/// Reads one CopyData standby status update from the client (failing, in virtual time, if
/// none comes within a minute).
async fn read_status(server: &mut UnixStream) -> StandbyStatusUpdate {
    let mut header = [0u8; 5];
    tokio::time::timeout(Duration::from_secs(60), server.read_exact(&mut header))
        .await
        .expect("a status update")
        .unwrap();
    assert_eq!(header[0], b'd');
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    let mut body = vec![0u8; len - 4];
    server.read_exact(&mut body).await.unwrap();
    StandbyStatusUpdate::decode(&body).unwrap()
}

#[tokio::test(start_paused = true)]
async fn keepalive_requesting_a_reply_is_answered_before_it_is_returned() {
    let (mut stream, mut server) = pair();
    stream.set_durable(Lsn(0x5000));
    stream.feedback().set_written(Lsn(0x6000));
    server.write_all(&keepalive(0x9000, true)).await.unwrap();
    let got = stream.next().await.unwrap().unwrap();
    assert!(
        matches!(got, ReplicationMessage::PrimaryKeepalive(k) if k.wal_end == Lsn(0x9000) && k.reply_requested)
    );
    // the reply is already on the wire, and confirms only what was declared durable
    let status = read_status(&mut server).await;
    assert_eq!(
        (status.write_lsn, status.flush_lsn, status.apply_lsn),
        (Lsn(0x6000), Lsn(0x5000), Lsn(0x5000))
    );
    assert!(!status.reply_requested);
}

#[tokio::test(start_paused = true)]
async fn status_updates_go_out_every_interval_while_idle_and_while_busy() {
    let (mut stream, mut server) = pair();
    stream.set_durable(Lsn(0x10));
    // idle: the next call waits, and the timer (virtual time) sends an update
    let pending = tokio::time::timeout(Duration::from_millis(2500), stream.next()).await;
    assert!(
        pending.is_err(),
        "no data was sent, so next() must still be waiting"
    );
    assert_eq!(read_status(&mut server).await.flush_lsn, Lsn(0x10));
    assert_eq!(read_status(&mut server).await.flush_lsn, Lsn(0x10));
    // busy: with messages always waiting in the buffer (no wait for the socket, so the
    // timer branch is never polled), updates still go out on time
    stream.set_durable(Lsn(0x20));
    let burst: Vec<u8> = (0..30u64).flat_map(|i| xlog(0x1000 + i, b"B")).collect();
    server.write_all(&burst).await.unwrap();
    for _ in 0..30 {
        assert!(matches!(
            stream.next().await.unwrap(),
            Some(ReplicationMessage::XLogData(_))
        ));
        tokio::time::advance(Duration::from_millis(100)).await;
    }
    let status = read_status(&mut server).await;
    assert_eq!(status.flush_lsn, Lsn(0x20));
    assert!(stream.last_reported().is_some());
}

#[tokio::test(start_paused = true)]
async fn cancelled_next_loses_no_bytes() {
    let (mut stream, mut server) = pair();
    let message = xlog(0x2000, b"payload");
    let (head, tail) = message.split_at(10);
    server.write_all(head).await.unwrap();
    // a cancelled call (the timeout wins) leaves the partial message buffered
    assert!(
        tokio::time::timeout(Duration::from_millis(10), stream.next())
            .await
            .is_err()
    );
    server.write_all(tail).await.unwrap();
    match stream.next().await.unwrap().unwrap() {
        ReplicationMessage::XLogData(w) => {
            assert_eq!(w.wal_start, Lsn(0x2000));
            assert_eq!(w.data.as_ref(), b"payload");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn server_error_inside_the_stream_is_typed() {
    let (mut stream, mut server) = pair();
    let mut body = Vec::new();
    for (tag, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "57P01"),
        (b'M', "terminating connection due to administrator command"),
    ] {
        body.push(tag);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    server.write_all(&frame(b'E', &body)).await.unwrap();
    let err = stream.next().await.unwrap_err();
    match &err {
        SourceError::Server { error, .. } => assert_eq!(error.code, "57P01"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(crate::error::Classify::is_transient(&err));
}

#[tokio::test(start_paused = true)]
async fn stop_sends_a_final_update_and_copy_done_then_waits_for_ready() {
    let (stream, mut server) = pair();
    stream.set_durable(Lsn(0x77));
    let server_side = tokio::spawn(async move {
        let status = read_status(&mut server).await;
        let mut done = [0u8; 5];
        server.read_exact(&mut done).await.unwrap();
        assert_eq!(done, [b'c', 0, 0, 0, 4]);
        // data still in flight, then the end of COPY and of the command
        let mut reply = xlog(0x3000, b"late");
        reply.extend(frame(b'c', b""));
        reply.extend(frame(b'C', b"START_REPLICATION\0"));
        reply.extend(frame(b'Z', b"I"));
        server.write_all(&reply).await.unwrap();
        status
    });
    let client = stream.stop().await.unwrap();
    assert_eq!(client.backend_pid(), 42);
    assert_eq!(server_side.await.unwrap().flush_lsn, Lsn(0x77));
}

#[tokio::test]
async fn frames_are_cut_from_one_buffer_without_copying() {
    let (ours, mut server) = UnixStream::pair().unwrap();
    let mut wire = Wire::new(Socket::Unix(ours), "test".to_owned());
    let mut bytes = BytesMut::new();
    bytes.put_slice(&frame(b'd', b"first"));
    bytes.put_slice(&frame(b'd', b"second"));
    bytes.put_slice(&frame(b'W', &[0, 0, 0]));
    server.write_all(&bytes).await.unwrap();
    let mut payloads: Vec<Bytes> = Vec::new();
    while payloads.len() < 2 {
        match wire.next().await.unwrap() {
            Backend::CopyData(p) => payloads.push(p),
            other => panic!("unexpected {}", other.name()),
        }
    }
    assert_eq!(
        (payloads[0].as_ref(), payloads[1].as_ref()),
        (&b"first"[..], &b"second"[..])
    );
    // the second payload starts right after the first one's bytes and the next header
    assert_eq!(
        payloads[1].as_ptr() as usize,
        payloads[0].as_ptr() as usize + 5 + 5
    );
    assert!(matches!(
        wire.next().await.unwrap(),
        Backend::CopyBothResponse
    ));

    server.write_all(&[b'd', 0, 0, 0, 2]).await.unwrap();
    let err = wire.next().await.err().unwrap();
    assert_eq!(
        err.to_string(),
        "protocol error from server at test: invalid length 2 of message type 'd'"
    );
}

#[tokio::test(start_paused = true)]
async fn server_shutdown_with_bare_command_complete_ends_the_stream() {
    // A walsender that shuts down (WalSndDone) may send CommandComplete without CopyDone.
    let (mut stream, mut server) = pair();
    let mut script = xlog(0x200, b"B");
    script.extend(frame(b'C', b"START_STREAMING\0"));
    server.write_all(&script).await.unwrap();
    match stream.next().await.unwrap() {
        Some(ReplicationMessage::XLogData(w)) => assert_eq!(w.wal_start, Lsn(0x200)),
        other => panic!("expected XLogData, got {other:?}"),
    }
    assert!(stream.next().await.unwrap().is_none());
    assert!(stream.next().await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn next_batch_takes_what_was_received_and_stops_at_a_reply_request() {
    let (mut stream, mut server) = pair();
    stream.set_durable(Lsn(0x50));
    let mut burst: Vec<u8> = (0..5u64).flat_map(|i| xlog(0x1000 + i, b"B")).collect();
    burst.extend(keepalive(0x2000, true));
    burst.extend(xlog(0x3000, b"after"));
    server.write_all(&burst).await.unwrap();
    // let the bytes arrive, then one call takes every message up to the reply request
    tokio::task::yield_now().await;
    let mut batch = Vec::new();
    stream.next_batch(&mut batch, 1 << 20).await.unwrap();
    let starts: Vec<u64> = batch
        .iter()
        .map(|m| match m {
            ReplicationMessage::XLogData(w) => w.wal_start.0,
            ReplicationMessage::PrimaryKeepalive(k) => k.wal_end.0,
        })
        .collect();
    assert_eq!(starts, [0x1000, 0x1001, 0x1002, 0x1003, 0x1004]);
    // the next call answers the keepalive first, then returns it and what follows
    batch.clear();
    stream.next_batch(&mut batch, 1 << 20).await.unwrap();
    assert_eq!(read_status(&mut server).await.flush_lsn, Lsn(0x50));
    assert!(
        matches!(&batch[0], ReplicationMessage::PrimaryKeepalive(k) if k.wal_end == Lsn(0x2000))
    );
    assert!(matches!(&batch[1], ReplicationMessage::XLogData(w) if w.wal_start == Lsn(0x3000)));
    assert_eq!(batch.len(), 2);
    // a small limit cuts the batch after the message that crosses it
    server
        .write_all(
            &(0..4u64)
                .flat_map(|i| xlog(0x4000 + i, b"C"))
                .collect::<Vec<u8>>(),
        )
        .await
        .unwrap();
    tokio::task::yield_now().await;
    batch.clear();
    stream.next_batch(&mut batch, 1).await.unwrap();
    assert_eq!(batch.len(), 1);
    // the end of the stream leaves the batch empty
    server.write_all(&frame(b'c', &[])).await.unwrap();
    for _ in 0..3 {
        batch.clear();
        stream.next_batch(&mut batch, 1 << 20).await.unwrap();
    }
    assert!(batch.is_empty());
}

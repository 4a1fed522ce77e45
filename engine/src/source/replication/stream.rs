//! [`ReplicationStream`]: the CopyBoth phase of `START_REPLICATION`, with keepalives and
//! feedback handled inside.
//!
//! One task owns the stream (STYLE rule 5) and calls [`ReplicationStream::next`] in a loop;
//! the same call drives the feedback timer, so there is no second task touching the socket.
//! Decoding pgoutput is left to the caller, which should hand the payloads to CPU workers
//! rather than decode on this task.
//!
//! Feedback. A standby status update goes out
//! * at least every `status_interval` (clamped to a third of `wal_sender_timeout`, so the
//!   server never times us out even if a keepalive request is missed), whether data is
//!   flowing or not;
//! * immediately when a keepalive asks for a reply;
//! * on [`ReplicationStream::send_status`] and before a clean stop.
//!
//! Each carries the positions of the [`FeedbackHandle`]: the flush position is exactly what the
//! caller declared durable, never a position seen on the wire.
//!
//! Cancellation. [`ReplicationStream::next`] and [`ReplicationStream::send_status`] are
//! cancellation-safe: if the future is dropped (e.g. the other branch of a `select!` on a
//! `CancellationToken` wins), no received byte is lost (partial messages stay buffered) and no
//! sent byte is duplicated (unsent output stays queued and goes first on the next call). The
//! intended shutdown is:
//!
//! ```text
//! loop {
//!     tokio::select! {
//!         _ = cancel.cancelled() => break,
//!         m = stream.next() => handle(m?),
//!     }
//! }
//! let client = stream.stop().await?;   // final status update, CopyDone, wait for the server
//! ```
//!
//! [`ReplicationStream::stop`] is not meant to be cancelled; dropping it (or the stream)
//! closes the connection, which is also safe for the slot: the server keeps the last flush
//! position it was sent, and the next start resumes from there.

use std::pin::Pin;
use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use tokio::time::{Instant, Sleep};

use pgwarp_decoder::{Lsn, PgTimestamp, ProtocolVersion, ReplicationMessage, StandbyStatusUpdate};

use super::super::SourceError;
use super::super::error::ErrorContext;
use super::client::ReplicationClient;
use super::feedback::{FeedbackHandle, ReportedPositions};
use super::wire::{Backend, log_notice, server_error};

/// Payload bytes of a message, for batch sizes.
pub fn message_bytes(m: &ReplicationMessage) -> usize {
    match m {
        ReplicationMessage::XLogData(w) => w.data.len() + 64,
        ReplicationMessage::PrimaryKeepalive(_) => 64,
    }
}

/// What `handle` decided.
enum Handled {
    Return(ReplicationMessage),
    Continue,
}

/// A logical replication stream in progress.
#[derive(Debug)]
pub struct ReplicationStream {
    client: ReplicationClient,
    slot: String,
    start: Lsn,
    version: ProtocolVersion,
    interval: Duration,
    next_status: Instant,
    /// Fires at `next_status`; kept across calls so the timer is re-armed once per status
    /// update, not once per wait for data.
    timer: Pin<Box<Sleep>>,
    feedback: FeedbackHandle,
    last_sent: Option<ReportedPositions>,
    /// A keepalive whose reply is being sent, returned once the reply is out.
    pending: Option<ReplicationMessage>,
    ended: bool,
}

impl ReplicationStream {
    pub(super) fn new(
        client: ReplicationClient,
        slot: String,
        start: Lsn,
        version: ProtocolVersion,
        interval: Duration,
    ) -> Self {
        ReplicationStream {
            client,
            slot,
            start,
            version,
            interval,
            next_status: Instant::now() + interval,
            timer: Box::pin(tokio::time::sleep(interval)),
            feedback: FeedbackHandle::new(),
            last_sent: None,
            pending: None,
            ended: false,
        }
    }

    /// A handle for declaring durable (and written/applied) positions from other tasks.
    pub fn feedback(&self) -> FeedbackHandle {
        self.feedback.clone()
    }

    /// Shorthand for `self.feedback().set_durable(lsn)`.
    pub fn set_durable(&self, lsn: Lsn) {
        self.feedback.set_durable(lsn);
    }

    /// The pgoutput protocol version in use (for the decoder).
    pub fn proto_version(&self) -> ProtocolVersion {
        self.version
    }

    /// The interval between status updates actually used.
    pub fn status_interval(&self) -> Duration {
        self.interval
    }

    /// The position streaming was requested from.
    pub fn start_lsn(&self) -> Lsn {
        self.start
    }

    /// The slot being streamed.
    pub fn slot(&self) -> &str {
        &self.slot
    }

    /// The positions in the last status update sent.
    pub fn last_reported(&self) -> Option<ReportedPositions> {
        self.last_sent
    }

    /// The walsender's PID.
    pub fn backend_pid(&self) -> i32 {
        self.client.backend_pid
    }

    fn queue_status(&mut self, reply_requested: bool) {
        let positions = self.feedback.snapshot();
        let update = StandbyStatusUpdate {
            write_lsn: positions.write,
            flush_lsn: positions.flush,
            apply_lsn: positions.apply,
            client_time: PgTimestamp::now(),
            reply_requested,
        };
        let mut payload = BytesMut::with_capacity(StandbyStatusUpdate::LEN);
        update.encode(&mut payload);
        let out = self.client.wire.out();
        // a CopyData message: tag, length, payload
        out.reserve(5 + payload.len());
        out.extend_from_slice(b"d");
        out.extend_from_slice(&((4 + payload.len()) as u32).to_be_bytes());
        out.extend_from_slice(&payload);
        self.last_sent = Some(positions);
        self.next_status = Instant::now() + self.interval;
        self.timer.as_mut().reset(self.next_status);
    }

    /// Sends a status update now (with the current positions). Cancellation-safe.
    pub async fn send_status(&mut self, reply_requested: bool) -> Result<(), SourceError> {
        self.queue_status(reply_requested);
        self.client.wire.flush().await
    }

    /// The next XLogData or keepalive; `None` once the server has ended the stream.
    ///
    /// Keepalives are answered here (immediately when the server asks) and also returned,
    /// so the caller can see the server's WAL end. Cancellation-safe (see the module docs).
    pub async fn next(&mut self) -> Result<Option<ReplicationMessage>, SourceError> {
        loop {
            if self.client.wire.has_pending_output() {
                self.client.wire.flush().await?;
            }
            if let Some(message) = self.pending.take() {
                return Ok(Some(message));
            }
            if self.ended {
                return Ok(None);
            }
            if Instant::now() >= self.next_status {
                self.queue_status(false);
                continue;
            }
            if let Some(message) = self.client.wire.try_next()? {
                match self.handle(message)? {
                    Handled::Return(m) => return Ok(Some(m)),
                    Handled::Continue => {}
                }
                continue;
            }
            tokio::select! {
                biased;
                filled = self.client.wire.fill() => filled?,
                () = self.timer.as_mut() => self.queue_status(false),
            }
        }
    }

    /// The next messages: waits for one as [`ReplicationStream::next`] does, then takes every
    /// further message already received, without waiting, until about `max_bytes` of payload.
    /// Appends them to `out` (left empty once the server has ended the stream).
    ///
    /// One call per read of the socket instead of one per message: the caller hands the whole
    /// batch on at once. Cancellation-safe like `next` (after the wait nothing awaits, so a
    /// dropped future has taken nothing).
    pub async fn next_batch(
        &mut self,
        out: &mut Vec<ReplicationMessage>,
        max_bytes: usize,
    ) -> Result<(), SourceError> {
        let Some(first) = self.next().await? else {
            return Ok(());
        };
        let mut bytes = message_bytes(&first);
        out.push(first);
        while bytes < max_bytes {
            match self.next_buffered()? {
                Some(m) => {
                    bytes += message_bytes(&m);
                    out.push(m);
                }
                None => break,
            }
        }
        Ok(())
    }

    /// The next message if one is complete in the read buffer, without any I/O. Stops at a
    /// keepalive that asked for a reply (the reply goes out first, in `next`). Status updates
    /// due meanwhile go out at the next call of `next`: a batch is cut within `max_bytes`, far
    /// less than an interval's worth of data.
    fn next_buffered(&mut self) -> Result<Option<ReplicationMessage>, SourceError> {
        loop {
            if self.pending.is_some() || self.ended {
                return Ok(None);
            }
            let Some(message) = self.client.wire.try_next()? else {
                return Ok(None);
            };
            match self.handle(message)? {
                Handled::Return(m) => return Ok(Some(m)),
                Handled::Continue => {}
            }
        }
    }

    /// Handles one backend message without waiting: anything that must be sent is queued and
    /// goes out at the top of the loop in `next`.
    fn handle(&mut self, message: Backend) -> Result<Handled, SourceError> {
        match message {
            Backend::CopyData(payload) => {
                let decoded = ReplicationMessage::decode(&payload)?;
                if let ReplicationMessage::PrimaryKeepalive(k) = &decoded
                    && k.reply_requested
                {
                    // reply first, then return the keepalive (kept in `pending` meanwhile, so a
                    // cancelled flush loses nothing)
                    self.queue_status(false);
                    self.pending = Some(decoded);
                    return Ok(Handled::Continue);
                }
                Ok(Handled::Return(decoded))
            }
            // The server ends streaming with CopyDone, or, when it shuts down (`WalSndDone`),
            // may go straight to CommandComplete: either way the stream is over.
            Backend::Other(Message::CopyDone | Message::CommandComplete(_)) => {
                self.ended = true;
                Ok(Handled::Continue)
            }
            Backend::Other(Message::ErrorResponse(body)) => Err(self.server_error(&body)),
            Backend::Other(Message::NoticeResponse(body)) => {
                log_notice(&body, self.client.wire.target());
                Ok(Handled::Continue)
            }
            Backend::Other(Message::ParameterStatus(_)) => Ok(Handled::Continue),
            other => Err(SourceError::Protocol {
                target: self.client.wire.target().to_owned(),
                reason: format!("unexpected {} during replication", other.name()),
            }),
        }
    }

    fn server_error(
        &self,
        body: &postgres_protocol::message::backend::ErrorResponseBody,
    ) -> SourceError {
        let error = server_error(body);
        let ctx = ErrorContext {
            user: Some(&self.client.user),
            slot: Some(&self.slot),
            publication: None,
            replication: true,
        };
        SourceError::from_server(
            error,
            &format!("replication from slot \"{}\" failed", self.slot),
            ctx,
        )
    }

    /// Ends streaming cleanly: a last status update with the current positions, CopyDone,
    /// then waits for the server to finish (messages still in flight are discarded; they are
    /// after the flush position and will be sent again on the next start). Returns the
    /// connection in command mode.
    pub async fn stop(mut self) -> Result<ReplicationClient, SourceError> {
        self.queue_status(false);
        frontend::copy_done(self.client.wire.out());
        self.client.wire.flush().await?;
        loop {
            match self.client.wire.next().await? {
                Backend::CopyData(_)
                | Backend::Other(
                    Message::CopyDone | Message::CommandComplete(_) | Message::ParameterStatus(_),
                ) => {}
                // a result set may precede the end (timeline information on physical slots)
                Backend::Other(Message::RowDescription(_) | Message::DataRow(_)) => {}
                Backend::Other(Message::NoticeResponse(body)) => {
                    log_notice(&body, self.client.wire.target())
                }
                Backend::Other(Message::ReadyForQuery(_)) => return Ok(self.client),
                Backend::Other(Message::ErrorResponse(body)) => {
                    return Err(self.server_error(&body));
                }
                other => {
                    return Err(SourceError::Protocol {
                        target: self.client.wire.target().to_owned(),
                        reason: format!("unexpected {} while stopping replication", other.name()),
                    });
                }
            }
        }
    }
}

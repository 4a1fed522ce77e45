//! Message framing over the socket, built so that every read and write is cancellation-safe.
//!
//! Reads go into one `BytesMut`; a complete message is cut off the front with
//! `split_to(len).freeze()`, so a CopyData payload handed to the decoder is a slice of the
//! read buffer, never a copy. Writes are encoded into an output `BytesMut` and drained with
//! `write_buf`, which advances the buffer by what the socket took: if a future is dropped
//! midway, the unsent rest stays queued and goes out first on the next call. No await point
//! can lose or duplicate a byte.
//!
//! CopyData (`d`) and CopyBothResponse (`W`, which `postgres-protocol` does not know) are
//! framed here; every other backend message is parsed by `postgres-protocol`.

use bytes::{Buf, Bytes, BytesMut};
use postgres_protocol::message::backend::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::conn::ServerError;
use crate::conn::socket::Socket;

use super::super::SourceError;

/// How much to ask the socket for at a time.
const READ_CHUNK: usize = 256 * 1024;
/// Largest message accepted: the protocol's length is a signed 32-bit integer.
const MAX_MESSAGE_LEN: usize = i32::MAX as usize;

/// A backend message.
pub(crate) enum Backend {
    /// CopyData: the payload, a slice of the read buffer.
    CopyData(Bytes),
    /// CopyBothResponse: streaming replication has started.
    CopyBothResponse,
    /// Anything else.
    Other(Message),
}

impl Backend {
    /// The message's protocol name, for error messages.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Backend::CopyData(_) => "CopyData",
            Backend::CopyBothResponse => "CopyBothResponse",
            Backend::Other(m) => match m {
                Message::AuthenticationOk => "AuthenticationOk",
                Message::BackendKeyData(_) => "BackendKeyData",
                Message::CommandComplete(_) => "CommandComplete",
                Message::CopyDone => "CopyDone",
                Message::CopyInResponse(_) => "CopyInResponse",
                Message::CopyOutResponse(_) => "CopyOutResponse",
                Message::DataRow(_) => "DataRow",
                Message::EmptyQueryResponse => "EmptyQueryResponse",
                Message::ErrorResponse(_) => "ErrorResponse",
                Message::NoticeResponse(_) => "NoticeResponse",
                Message::NotificationResponse(_) => "NotificationResponse",
                Message::ParameterStatus(_) => "ParameterStatus",
                Message::ReadyForQuery(_) => "ReadyForQuery",
                Message::RowDescription(_) => "RowDescription",
                _ => "message",
            },
        }
    }
}

/// A framed connection to a server.
#[derive(Debug)]
pub(crate) struct Wire {
    socket: Socket,
    read: BytesMut,
    write: BytesMut,
    target: String,
}

impl Wire {
    pub(crate) fn new(socket: Socket, target: String) -> Self {
        Wire {
            socket,
            read: BytesMut::with_capacity(READ_CHUNK),
            write: BytesMut::with_capacity(1024),
            target,
        }
    }

    /// `host:port` or the socket path, for messages.
    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    /// Whether the connection is encrypted.
    pub(crate) fn is_tls(&self) -> bool {
        self.socket.is_tls()
    }

    /// The output buffer, for the `postgres-protocol` frontend encoders.
    pub(crate) fn out(&mut self) -> &mut BytesMut {
        &mut self.write
    }

    /// Whether output is waiting to be sent.
    pub(crate) fn has_pending_output(&self) -> bool {
        !self.write.is_empty()
    }

    fn io_error(&self, source: std::io::Error) -> SourceError {
        SourceError::Io {
            target: self.target.clone(),
            source,
        }
    }

    fn protocol(&self, reason: String) -> SourceError {
        SourceError::Protocol {
            target: self.target.clone(),
            reason,
        }
    }

    /// Sends all queued output. Cancellation-safe: what was not sent stays queued.
    pub(crate) async fn flush(&mut self) -> Result<(), SourceError> {
        while !self.write.is_empty() {
            let n = self
                .socket
                .write_buf(&mut self.write)
                .await
                .map_err(|e| self.io_error(e))?;
            if n == 0 {
                return Err(SourceError::Closed {
                    target: self.target.clone(),
                });
            }
        }
        self.socket.flush().await.map_err(|e| self.io_error(e))
    }

    /// Cuts the next complete message off the read buffer, if there is one.
    pub(crate) fn try_next(&mut self) -> Result<Option<Backend>, SourceError> {
        if self.read.len() < 5 {
            return Ok(None);
        }
        let tag = self.read[0];
        let len =
            u32::from_be_bytes([self.read[1], self.read[2], self.read[3], self.read[4]]) as usize;
        if !(4..=MAX_MESSAGE_LEN).contains(&len) {
            return Err(self.protocol(format!(
                "invalid length {len} of message type {:?}",
                char::from(tag)
            )));
        }
        let total = len + 1;
        if self.read.len() < total {
            self.read.reserve(total - self.read.len());
            return Ok(None);
        }
        match tag {
            b'd' => {
                let mut frame = self.read.split_to(total);
                frame.advance(5);
                Ok(Some(Backend::CopyData(frame.freeze())))
            }
            b'W' => {
                self.read.advance(total);
                Ok(Some(Backend::CopyBothResponse))
            }
            _ => match Message::parse(&mut self.read) {
                Ok(Some(message)) => Ok(Some(Backend::Other(message))),
                Ok(None) => Err(self.protocol("incomplete message after length check".to_owned())),
                Err(e) => {
                    Err(self.protocol(format!("malformed message type {:?}: {e}", char::from(tag))))
                }
            },
        }
    }

    /// Reads more bytes from the socket. Cancellation-safe (`read_buf` either appends or
    /// does nothing).
    pub(crate) async fn fill(&mut self) -> Result<(), SourceError> {
        if self.read.capacity() - self.read.len() < READ_CHUNK / 4 {
            self.read.reserve(READ_CHUNK);
        }
        let n = self
            .socket
            .read_buf(&mut self.read)
            .await
            .map_err(|e| self.io_error(e))?;
        if n == 0 {
            return Err(SourceError::Closed {
                target: self.target.clone(),
            });
        }
        Ok(())
    }

    /// Reads the next message, waiting for the socket as needed. Cancellation-safe.
    pub(crate) async fn next(&mut self) -> Result<Backend, SourceError> {
        loop {
            if let Some(message) = self.try_next()? {
                return Ok(message);
            }
            self.fill().await?;
        }
    }
}

/// Reads the fields of an `ErrorResponse` body.
pub(crate) fn server_error(
    body: &postgres_protocol::message::backend::ErrorResponseBody,
) -> ServerError {
    ServerError::from_fields(body.fields())
}

/// Logs a `NoticeResponse` (warnings from the server, e.g. about a slot).
pub(crate) fn log_notice(
    body: &postgres_protocol::message::backend::NoticeResponseBody,
    target: &str,
) {
    let notice = ServerError::from_fields(body.fields());
    tracing::info!(%target, severity = %notice.severity, code = %notice.code, "server notice: {}", notice.message);
}

//! Opening the byte stream to a server: TCP (with keepalives) or a Unix socket, then the
//! `SSLRequest` exchange and the TLS handshake when the settings call for it.
//!
//! pgwarp's replication client speaks the protocol itself on top of [`Socket`]; ordinary
//! connections go through `tokio_postgres` (see `connect.rs`), which opens its own sockets
//! from the same settings. Both apply libpq's `sslmode` retry rules through
//! [`with_ssl_fallback`]: `allow` tries plain first and TLS if the server refuses, `prefer`
//! tries TLS and falls back to plain if the server has no TLS or the handshake fails, unless a
//! root certificate is configured: then a failed handshake is an error (libpq would go on in
//! plain text). Unix sockets never use TLS (libpq ignores `sslmode` there).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::client::TlsStream;

use super::{ConnConfig, ConnError, Host, HostTarget, SslMode, tls};

/// Whether an attempt uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsAttempt {
    /// Plain connection.
    No,
    /// Ask for TLS; continue in plain if the server answers `N`.
    Try,
    /// TLS or fail.
    Must,
}

/// Runs `attempt` with the TLS choices `sslmode` allows for `target`, in libpq's order.
pub async fn with_ssl_fallback<T, F, Fut>(
    cfg: &ConnConfig,
    target: &HostTarget,
    mut attempt: F,
) -> Result<T, ConnError>
where
    F: FnMut(TlsAttempt) -> Fut,
    Fut: Future<Output = Result<T, ConnError>>,
{
    if matches!(target.host, Host::Unix(_)) {
        return attempt(TlsAttempt::No).await;
    }
    match cfg.sslmode {
        SslMode::Disable => attempt(TlsAttempt::No).await,
        SslMode::Allow => match attempt(TlsAttempt::No).await {
            Err(ConnError::Refused { .. } | ConnError::AuthFailed { .. }) => {
                attempt(TlsAttempt::Must).await
            }
            other => other,
        },
        // Stricter than libpq: with a root certificate configured, a certificate that fails
        // verification is an error, not a reason to go on without TLS (docs/security.md).
        SslMode::Prefer => match attempt(TlsAttempt::Try).await {
            Err(ConnError::Tls { .. }) if tls::verification(cfg) == tls::Verification::None => {
                attempt(TlsAttempt::No).await
            }
            other => other,
        },
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
            attempt(TlsAttempt::Must).await
        }
    }
}

/// A connected byte stream to a server.
#[derive(Debug)]
pub enum Socket {
    /// Plain TCP.
    Tcp(TcpStream),
    /// Unix domain socket.
    Unix(UnixStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Socket {
    /// Whether the stream is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, Socket::Tls(_))
    }
}

/// Opens a socket to `target` and negotiates TLS as `tls` says.
///
/// `tls_config` must be `Some` unless `tls` is [`TlsAttempt::No`]. No timeout is applied here:
/// callers wrap the whole connection attempt (socket, TLS and authentication) in
/// `connect_timeout`, as libpq does.
pub async fn open(
    cfg: &ConnConfig,
    target: &HostTarget,
    tls: TlsAttempt,
    tls_config: Option<&Arc<ClientConfig>>,
) -> Result<Socket, ConnError> {
    let described = target.describe();
    let unreachable = |source: io::Error| ConnError::Unreachable {
        target: described.clone(),
        source,
    };
    let tcp = match &target.host {
        Host::Unix(_) => {
            let path = target.socket_path().unwrap_or_default();
            let stream = UnixStream::connect(&path).await.map_err(unreachable)?;
            return Ok(Socket::Unix(stream));
        }
        Host::Tcp(name) => {
            let stream = match target.hostaddr {
                Some(addr) => TcpStream::connect(SocketAddr::new(addr, target.port)).await,
                None => connect_any(name, target.port).await,
            }
            .map_err(unreachable)?;
            configure_tcp(&stream, cfg).map_err(unreachable)?;
            stream
        }
    };
    if tls == TlsAttempt::No {
        return Ok(Socket::Tcp(tcp));
    }
    let Some(config) = tls_config else {
        return Err(ConnError::TlsConfig(
            "TLS requested without a TLS configuration".to_owned(),
        ));
    };
    negotiate_tls(tcp, target, tls, config).await
}

/// Tries every address `name` resolves to, returning the last error if none accepts.
async fn connect_any(name: &str, port: u16) -> io::Result<TcpStream> {
    let mut last = io::Error::new(
        io::ErrorKind::NotFound,
        format!("could not resolve host \"{name}\""),
    );
    for addr in tokio::net::lookup_host((name, port)).await? {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn configure_tcp(stream: &TcpStream, cfg: &ConnConfig) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let sock = socket2::SockRef::from(stream);
    if cfg.keepalives.enabled {
        let mut ka = socket2::TcpKeepalive::new();
        if let Some(idle) = cfg.keepalives.idle {
            ka = ka.with_time(idle);
        }
        if let Some(interval) = cfg.keepalives.interval {
            ka = ka.with_interval(interval);
        }
        if let Some(count) = cfg.keepalives.count {
            ka = ka.with_retries(count);
        }
        sock.set_tcp_keepalive(&ka)?;
    }
    #[cfg(target_os = "linux")]
    if let Some(timeout) = cfg.tcp_user_timeout {
        sock.set_tcp_user_timeout(Some(timeout))?;
    }
    Ok(())
}

async fn negotiate_tls(
    mut tcp: TcpStream,
    target: &HostTarget,
    tls: TlsAttempt,
    config: &Arc<ClientConfig>,
) -> Result<Socket, ConnError> {
    let described = target.describe();
    let io_err = |source: io::Error| ConnError::Unreachable {
        target: described.clone(),
        source,
    };
    let mut buf = BytesMut::new();
    frontend::ssl_request(&mut buf);
    tcp.write_all(&buf).await.map_err(io_err)?;
    let answer = tcp.read_u8().await.map_err(io_err)?;
    match answer {
        b'S' => {}
        b'N' if tls == TlsAttempt::Try => return Ok(Socket::Tcp(tcp)),
        b'N' => {
            return Err(ConnError::Tls {
                target: described,
                reason: "server does not support SSL, but SSL was required".to_owned(),
            });
        }
        other => {
            return Err(ConnError::Protocol {
                target: described,
                reason: format!("unexpected response to SSLRequest: byte {other:#04x}"),
            });
        }
    }
    let name = match &target.host {
        Host::Tcp(name) => tls::server_name(name)?,
        Host::Unix(_) => {
            return Err(ConnError::TlsConfig("TLS over a Unix socket".to_owned()));
        }
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
    let stream = connector
        .connect(name, tcp)
        .await
        .map_err(|e| ConnError::Tls {
            target: described.clone(),
            reason: e.to_string(),
        })?;
    Ok(Socket::Tls(Box::new(stream)))
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_flush(cx),
            Socket::Unix(s) => Pin::new(s).poll_flush(cx),
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

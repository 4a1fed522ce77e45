//! A minimal HTTP/1.1 responder for the metrics page.
//!
//! Reads the request head (bounded: 8 KiB, 5 seconds), answers `GET /metrics` and `GET /` with
//! the rendered metrics, anything else with 404 or 405, and closes the connection. Each
//! connection runs in its own task; the listener stops when the [`MetricsServer`] is dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::pipeline::PipelineError;
use crate::pipeline::stats::Stats;

/// The running endpoint; stops when dropped.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` and serves `stats` until the returned value is dropped.
pub async fn serve(addr: SocketAddr, stats: Arc<Stats>) -> Result<MetricsServer, PipelineError> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        PipelineError::Internal(format!("could not listen for metrics on {addr}: {e}"))
    })?;
    let addr = listener.local_addr().unwrap_or(addr);
    tracing::info!(%addr, "serving metrics at /metrics");
    let task = tokio::spawn(async move {
        loop {
            let Ok((conn, _)) = listener.accept().await else {
                continue;
            };
            let stats = stats.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), respond(conn, &stats)).await;
            });
        }
    });
    Ok(MetricsServer { addr, task })
}

async fn respond(mut conn: TcpStream, stats: &Stats) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, body) = match (method, path) {
        ("GET", "/metrics" | "/") => ("200 OK", super::render(stats)),
        ("GET", _) => ("404 Not Found", "not found\n".to_owned()),
        _ => ("405 Method Not Allowed", "only GET\n".to_owned()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(response.as_bytes()).await?;
    conn.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_metrics_and_404() {
        let stats = Arc::new(Stats::new(&["s.t".into()], &["n:1".into()]));
        let server = serve("127.0.0.1:0".parse().unwrap(), stats).await.unwrap();
        let page = get(server.local_addr(), "/metrics").await;
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
        assert!(page.contains("pgwarp_phase 0"));
        let missing = get(server.local_addr(), "/nope").await;
        assert!(missing.starts_with("HTTP/1.1 404"));
    }
}

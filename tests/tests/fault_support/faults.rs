//! Fault injectors: a lock that holds pgwarp's writes at a known point, terminating pgwarp's
//! sessions, and a TCP proxy that can be frozen (it stops forwarding but keeps every
//! connection open, which is what a network cut looks like to both ends until a timeout).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use pgwarp_tests::Endpoint;

/// Terminates every session whose `application_name` is pgwarp's, in `dbname` or replicating
/// (walsenders); returns how many.
pub fn terminate_pgwarp(endpoint: &Endpoint, dbname: &str) -> i64 {
    endpoint
        .query_scalar::<i64>(
            dbname,
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'pgwarp' AND pid <> pg_backend_pid()) t",
        )
        .unwrap_or_else(|e| panic!("could not terminate pgwarp's sessions: {e}"))
}

/// pgwarp's sessions on a server waiting for a lock (in any database).
pub fn pgwarp_sessions_waiting_on_a_lock(endpoint: &Endpoint) -> i64 {
    endpoint
        .query_scalar::<i64>(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity \
             WHERE application_name = 'pgwarp' AND wait_event_type = 'Lock'",
        )
        .unwrap_or(0)
}

/// A session holding a lock in an open transaction until released or until its server goes
/// away (a restart ends it).
pub struct LockHolder {
    release: Option<mpsc::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl LockHolder {
    /// Runs `BEGIN; <lock_sql>` on `conn_string` and keeps the transaction open.
    pub fn hold(conn_string: &str, lock_sql: &str) -> LockHolder {
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let conn_string = conn_string.to_owned();
        let sql = format!("BEGIN; {lock_sql}");
        let handle = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let connected = tokio_postgres::connect(&conn_string, tokio_postgres::NoTls).await;
                let (client, connection) = match connected {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let conn_task = tokio::spawn(connection);
                let locked = client.batch_execute(&sql).await.map_err(|e| e.to_string());
                let _ = ready_tx.send(locked);
                // wait for the release (or the test's end) without blocking the runtime
                let _ = tokio::task::spawn_blocking(move || release_rx.recv()).await;
                let _ = client.batch_execute("ROLLBACK").await;
                drop(client);
                let _ = conn_task.await;
            });
        });
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("could not take the lock: {e}"),
            Err(_) => panic!("the lock holder thread ended"),
        }
        LockHolder {
            release: Some(release_tx),
            handle: Some(handle),
        }
    }

    /// Rolls the transaction back (a no-op if its server went away).
    pub fn release(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        if let Some(tx) = self.release.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        self.finish();
    }
}

#[derive(Default)]
struct ProxyState {
    frozen: AtomicBool,
    stop: AtomicBool,
    connections: AtomicUsize,
    sockets: Mutex<Vec<TcpStream>>,
}

/// A TCP proxy on 127.0.0.1 in front of one server. Frozen, it moves no bytes in either
/// direction and opens no upstream connection, yet closes nothing: to pgwarp the server has
/// gone silent, as behind a cut cable.
pub struct Proxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Starts forwarding to `upstream`.
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(ProxyState::default());
        let s = state.clone();
        let accept = std::thread::spawn(move || {
            while !s.stop.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let s = s.clone();
                        std::thread::spawn(move || serve(client, upstream, &s));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => break,
                }
            }
        });
        Proxy {
            addr,
            state,
            accept: Some(accept),
        }
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::Acquire)
    }

    /// Stops moving bytes (connections stay open).
    pub fn freeze(&self) {
        self.state.frozen.store(true, Ordering::Release);
    }

    /// Moves bytes again.
    pub fn thaw(&self) {
        self.state.frozen.store(false, Ordering::Release);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Release);
        self.thaw();
        if let Ok(sockets) = self.state.sockets.lock() {
            for s in sockets.iter() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn serve(client: TcpStream, upstream: SocketAddr, state: &Arc<ProxyState>) {
    state.connections.fetch_add(1, Ordering::AcqRel);
    // a frozen proxy does not even reach the server
    while state.frozen.load(Ordering::Acquire) {
        if state.stop.load(Ordering::Acquire) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let Ok(server) = TcpStream::connect(upstream) else {
        return;
    };
    let pairs = [
        (client.try_clone(), server.try_clone()),
        (server.try_clone(), client.try_clone()),
    ];
    if let Ok(mut sockets) = state.sockets.lock() {
        sockets.extend(client.try_clone());
        sockets.extend(server.try_clone());
    }
    let mut pumps = Vec::new();
    for (from, to) in pairs {
        let (Ok(from), Ok(to)) = (from, to) else {
            return;
        };
        let state = state.clone();
        pumps.push(std::thread::spawn(move || pump(from, to, &state)));
    }
    for p in pumps {
        let _ = p.join();
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, state: &ProxyState) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(20)));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if state.stop.load(Ordering::Acquire) {
            break;
        }
        if state.frozen.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

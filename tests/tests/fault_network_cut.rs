//! A network cut between pgwarp and a worker, longer than the TCP keepalive: pgwarp reaches
//! the worker through a proxy of this test (a `[nodes]` override in the config), and the proxy
//! freezes: it stops moving bytes in both directions and opens nothing new, yet closes no
//! connection, so to pgwarp the worker has gone silent as behind a cut cable. The connection's
//! keepalives are short (1 s idle, 1 s interval, 2 probes), which cannot help while a request
//! is outstanding; `node_timeout` (5 s here) must. pgwarp reports the silent node by name while
//! the cut lasts, retries, and converges once the proxy forwards again.

mod fault_support;

use std::net::SocketAddr;
use std::time::Duration;

use fault_support::faults::Proxy;
use fault_support::flow::{converge_and_stop, load_scenario};
use fault_support::load::{self, Load};
use fault_support::process::child_main;
use fault_support::scenario::wait_for;
use pgwarp_tests::sync_config::toml_string;

#[test]
#[ignore = "entry point of the pgwarp child processes, not a test"]
fn child_entry() {
    child_main();
}

#[test]
fn silent_network_cut_to_a_worker_is_detected_within_node_timeout() {
    let sc = load_scenario(5000);
    let worker = sc.fixture.node_of_group(2).unwrap().clone();
    let upstream: SocketAddr = format!("{}:{}", worker.host, worker.port).parse().unwrap();
    let proxy = Proxy::start(upstream);
    let conninfo = format!(
        "host=127.0.0.1 port={} user=postgres keepalives_idle=1 keepalives_interval=1 \
         keepalives_count=2",
        proxy.port()
    );
    let extra = format!(
        "node_timeout = \"5s\"\n[nodes.\"{}:{}\"]\nconninfo = {}\n",
        worker.host,
        worker.port,
        toml_string(&conninfo)
    );
    let config = sc.config_file(&load::TABLES, &extra);
    let mut sync = sc.spawn_sync(&config, &[], "info");
    wait_for("the snapshot", &mut sync, Duration::from_secs(600), |_| {
        sc.phase().as_deref() == Some("streaming")
    });
    sc.wait_caught_up(&mut sync, Duration::from_secs(600));
    assert!(proxy.connections() > 0, "pgwarp did not use the proxy");

    // streaming under load, changes flowing to the worker through the proxy
    let load = Load::start(&sc.source.conn_string(), &sc.schema);
    load.advance(10);
    sc.wait_caught_up(&mut sync, Duration::from_secs(600));
    let seen = sync.stderr().len();
    proxy.freeze();
    let label = format!("{}:{}", worker.host, worker.port);
    let reports = |running: &fault_support::process::Running| {
        running.stderr()[seen..]
            .lines()
            .filter(|l| {
                l.contains("WARN") && l.contains(&label) && l.contains("did not answer within 5s")
            })
            .count()
    };
    // detected, and detected again on the retry: the cut outlasts several timeouts
    wait_for(
        "pgwarp to report the silent worker twice",
        &mut sync,
        Duration::from_secs(300),
        |running| reports(running) >= 2,
    );
    proxy.thaw();
    load.advance(10);
    load.stop();
    converge_and_stop(&sc, sync);
}

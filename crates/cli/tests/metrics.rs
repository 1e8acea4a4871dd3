//! `p2pf node --metrics`: the endpoint answers as documented, and a real Prometheus server
//! (Debian's `prometheus`, installed by `crates/cli/ci-setup.sh`) scrapes a running node;
//! the series are read back through Prometheus's HTTP API.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Node, WAIT};
use serde_json::Value;

/// One HTTP/1.1 request on a fresh connection; the status code and the body.
fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header block");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (status, head.to_owned(), body.to_owned())
}

fn metrics_addr(ready: &Value) -> SocketAddr {
    let url = ready["metrics_url"].as_str().expect("metrics_url");
    url.trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .parse()
        .expect("addr")
}

#[test]
fn the_metrics_endpoint_serves_openmetrics_text_and_refuses_other_requests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Node::start(&dir.path().join("a"), &["--metrics", "127.0.0.1:0"]);
    let ready = a.wait_for("ready");
    let addr = metrics_addr(&ready);

    let (status, head, body) = http(addr, "GET", "/metrics");
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(body.contains("# TYPE p2pf_connections gauge"), "{body}");
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
    assert_eq!(http(addr, "HEAD", "/metrics").0, 200);
    assert_eq!(http(addr, "GET", "/").0, 404);
    let (status, head, _) = http(addr, "POST", "/metrics");
    assert_eq!(status, 405);
    assert!(
        head.to_ascii_lowercase().contains("allow: get, head"),
        "{head}"
    );

    // A port already in use is a usage error naming the flag, exit code 2.
    let mut b = Node::start(&dir.path().join("b"), &["--metrics", &addr.to_string()]);
    assert_eq!(b.wait_exit(), Some(2));
}

/// A free loopback port (bound, then released for the server to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A Prometheus server, killed when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts one scraping `target` every second, its storage in `dir`.
    fn start(dir: &std::path::Path, target: SocketAddr) -> Option<Self> {
        if Command::new("prometheus")
            .arg("--version")
            .output()
            .is_err()
        {
            assert!(
                std::env::var_os("CI").is_none(),
                "prometheus is not installed (crates/cli/ci-setup.sh installs it)"
            );
            eprintln!("skipping: prometheus is not installed (crates/cli/ci-setup.sh)");
            return None;
        }
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: p2pf\n    static_configs:\n      \
                 - targets: [\"{target}\"]\n"
            ),
        )
        .expect("config");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts");
        Some(Self { child, addr })
    }

    /// The value of the instant query `query`'s single sample, once there is one.
    fn query(&self, query: &str) -> Option<f64> {
        let path = format!("/api/v1/query?query={}", encode_query(query));
        let Ok(mut s) = TcpStream::connect(self.addr) else {
            return None;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .ok()?;
        let mut raw = String::new();
        s.read_to_string(&mut raw).ok()?;
        let body = raw.split_once("\r\n\r\n")?.1;
        // Chunked or not, the JSON document is the part between the outer braces.
        let json = &body[body.find('{')?..=body.rfind('}')?];
        let v: Value = serde_json::from_str(json).ok()?;
        let result = v["data"]["result"].as_array()?;
        if result.len() != 1 {
            return None;
        }
        result[0]["value"][1].as_str()?.parse().ok()
    }

    /// Polls `query` until `accept` takes its value (bounded by [`WAIT`]).
    fn wait_for(&self, query: &str, accept: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + WAIT;
        let mut last = None;
        while Instant::now() < deadline {
            last = self.query(query);
            if let Some(v) = last.filter(|v| accept(*v)) {
                return v;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("Prometheus never answered {query} acceptably (last: {last:?})");
    }
}

/// Percent-encodes a PromQL query for a URL.
fn encode_query(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn prometheus_scrapes_a_running_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Node::start(
        &dir.path().join("a"),
        &["--metrics", "127.0.0.1:0", "--tool", "reverse"],
    );
    let ready_a = a.wait_for("ready");
    let words = ready_a["addresses"][0]["words"].as_str().expect("words");
    let b = Node::start(&dir.path().join("b"), &["--bootstrap", words]);
    b.wait_for("ready");
    a.wait_for("connected");
    let Some(prom) = Prometheus::start(dir.path(), metrics_addr(&ready_a)) else {
        return;
    };

    // The target is up, and the node's series are in Prometheus as the node reported them.
    assert_eq!(prom.wait_for(r#"up{job="p2pf"}"#, |v| v == 1.0), 1.0);
    assert_eq!(
        prom.wait_for("p2pf_connected_peers", |v| v >= 1.0),
        1.0,
        "node b is a's one peer"
    );
    assert_eq!(
        prom.wait_for(r#"p2pf_connections{path="quic"}"#, |v| v >= 1.0),
        1.0
    );
    assert!(
        prom.wait_for(
            r#"p2pf_connections_established_total{direction="inbound",path="quic"}"#,
            |v| v >= 1.0
        ) >= 1.0
    );
    assert!(prom.wait_for(r#"p2pf_transport_bytes_total{direction="in"}"#, |v| v > 0.0) > 0.0);
    assert!(prom.wait_for("p2pf_dht_routing_table_peers", |v| v >= 1.0) >= 1.0);
    // A counter moves between scrapes: the published tool's DHT puts are counted.
    assert!(
        prom.wait_for(
            r#"sum(p2pf_dht_operations_total{op="put",outcome="ok"})"#,
            |v| v >= 1.0
        ) >= 1.0
    );
}

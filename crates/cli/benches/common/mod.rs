//! What the CLI's benchmark suites share: `p2pf node` processes.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// A `p2pf node --json` process, killed when dropped.
pub struct NodeProcess {
    /// The process.
    pub child: Child,
    /// Its `ready` JSON event (peer id, listen and contact addresses).
    pub ready: Value,
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `p2pf node --json --listen 127.0.0.1:0 --data-dir DATA EXTRA…` and waits for its
/// `ready` event.
pub fn start_node(data: &std::path::Path, extra: &[&str]) -> NodeProcess {
    let mut child = Command::new(env!("CARGO_BIN_EXE_p2pf"))
        .args(["node", "--json", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("p2pf starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let ready = loop {
        let line = lines.next().expect("a ready line").expect("stdout");
        let v: Value = serde_json::from_str(&line).expect("JSON");
        if v["event"] == "ready" {
            break v;
        }
    };
    // Keep draining stdout so the node never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    NodeProcess { child, ready }
}

/// `<peer id>@<first contact address>` of a node's `ready` event, as `--bootstrap` takes it.
pub fn addr_of(ready: &Value) -> String {
    format!(
        "{}@{}",
        ready["peer_id"].as_str().expect("id"),
        ready["addresses"][0]["addr"].as_str().expect("addr")
    )
}

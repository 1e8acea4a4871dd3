//! What the `p2pf` integration tests share: the built binary, and `p2pf node --json`
//! processes whose stdout lines arrive on a channel.
#![allow(dead_code)] // each test binary uses its own part

use std::io::{BufRead as _, BufReader};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Hang guard for one expected line or exit: every wait is on the process itself.
pub(crate) const WAIT: Duration = Duration::from_secs(60);

pub(crate) fn p2pf() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_p2pf"));
    c.env_remove("RUST_LOG").env_remove("P2PF_DATA_DIR");
    c
}

pub(crate) fn run(args: &[&str]) -> Output {
    p2pf().args(args).output().expect("p2pf runs")
}

pub(crate) fn json_line(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().expect("a line on stdout");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A running `p2pf node --json`: its stdout lines arrive on a channel.
pub(crate) struct Node {
    pub(crate) child: Child,
    pub(crate) lines: mpsc::Receiver<Value>,
}

impl Node {
    pub(crate) fn start(data: &std::path::Path, extra: &[&str]) -> Self {
        let mut cmd = p2pf();
        cmd.args(["node", "--json", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args(extra);
        Self::spawn(cmd)
    }

    /// Any `p2pf` command whose stdout is JSON lines.
    pub(crate) fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            // The harness captures it and shows it when a test fails.
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node starts");
        let stdout: ChildStdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    panic!("node printed a line that is not JSON: {line}");
                };
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        Self { child, lines }
    }

    /// The next line whose `event` is `event`; earlier lines are skipped.
    pub(crate) fn wait_for(&self, event: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no '{event}' line from the node: {e}"));
            if v["event"] == event {
                return v;
            }
        }
    }

    pub(crate) fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    pub(crate) fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the node did not exit within {WAIT:?}");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

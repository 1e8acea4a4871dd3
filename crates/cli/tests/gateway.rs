//! `p2pf node --mcp-http`: an ordinary MCP client (the official Python SDK, installed by
//! `crates/mcp/ci-setup.sh` into `target/mcp-interop/venv`) lists the network's tools
//! through one node's gateway and calls a tool another node process provides.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Node;
use serde_json::{Value, json};

fn python() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/mcp-interop/venv/bin/python");
    if p.exists() {
        return Some(p);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} is missing: run `bash crates/mcp/ci-setup.sh`",
        p.display()
    );
    eprintln!("skipping: the Python MCP SDK is not installed (bash crates/mcp/ci-setup.sh)");
    None
}

#[test]
fn an_ordinary_mcp_client_calls_a_network_tool_through_the_gateway() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = Node::start(&dir.path().join("a"), &["--mcp-http", "127.0.0.1:0"]);
    let ready_a = gateway.wait_for("ready");
    let url = ready_a["mcp_url"].as_str().expect("mcp_url").to_owned();
    assert!(url.ends_with("/mcp"), "{url}");
    let words = ready_a["addresses"][0]["words"].as_str().expect("words");
    let provider = Node::start(
        &dir.path().join("b"),
        &["--bootstrap", words, "--tool", "reverse"],
    );
    let b_id = provider.wait_for("ready")["peer_id"]
        .as_str()
        .expect("id")
        .to_owned();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/mcp_http_client.py");
    let out = Command::new(python)
        .arg(script)
        .args([&url, "any.reverse", r#"{"text":"gateway"}"#])
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "client failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(text.lines().last().expect("a line")).expect("JSON");
    let tools: Vec<&str> = v["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(tools.contains(&"any.reverse"), "{tools:?}");
    // And the provider's own name for it: its peer id's prefix, then the tool.
    assert!(
        tools.iter().any(|t| t
            .strip_suffix(".reverse")
            .is_some_and(|p| p != "any" && b_id.starts_with(p))),
        "{tools:?} should name {b_id}"
    );
    assert_eq!(v["is_error"], false);
    assert_eq!(v["result"]["reversed"], json!("yawetag"));
    assert_eq!(v["result"]["served_by"], json!(b_id));
}

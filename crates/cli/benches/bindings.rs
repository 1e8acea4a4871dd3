//! `cargo xtask bench bindings`: what the language bindings add to a remote tool call.
//!
//! One provider, a `p2pf node --tool echo` process on loopback, answers every call. Each
//! binding's caller (a Node.js process with `bindings/js`, a Python process with the
//! venv's `p2p_foundation`) joins it and times `callPeer`/`call_peer` of `echo` in a loop;
//! the same call from Rust (a `P2PNode` in this process) is timed right before each, in
//! the same run, as its baseline:
//!
//! - `js.call_us_p50` beside `rust.call_us_p50`,
//! - `python.call_us_p50` beside `rust.call_us_p50`
//!
//! (issue 16's target: a ratio of at most 1.5). The bindings' tool chains must be set up
//! first (`bash bindings/js/ci-setup.sh`, `bash bindings/python/ci-setup.sh`); a binding
//! that is not is left out with a note, except with CI=true, where that fails. A full run
//! first rebuilds both bindings with the release profile (`npm run build:release`,
//! `maturin develop --release`), as the Rust side is, so the figures compare optimised
//! code; a smoke run uses the debug builds the setup scripts made.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{NodeProcess, addr_of, start_node};
use p2p_foundation::P2PNode;
use p2p_foundation_benchkit::{Better, Suite, percentile};
use serde_json::json;

/// The JavaScript caller: joins `argv[1]`, calls `echo` at `argv[2]` `argv[3]` times after
/// a warm-up, prints the median in microseconds.
const JS_CALLER: &str = r#"
const { Node } = require('.')
async function main() {
  const [seed, peer, n] = process.argv.slice(1)
  const node = await Node.start({ listen: '127.0.0.1:0', bootstrap: [seed], mdns: false })
  for (let i = 0; i < 3; i++) await node.callPeer(peer, 'echo', { i })
  const us = []
  for (let i = 0; i < Number(n); i++) {
    const t = process.hrtime.bigint()
    await node.callPeer(peer, 'echo', { i })
    us.push(Number(process.hrtime.bigint() - t) / 1e3)
  }
  us.sort((a, b) => a - b)
  console.log(us[Math.round((us.length - 1) / 2)])
  await node.shutdown()
}
main().catch((e) => { console.error(e); process.exit(1) })
"#;

/// The Python caller, the same loop.
const PY_CALLER: &str = r#"
import asyncio, sys, time
from p2p_foundation import Node

async def main():
    seed, peer, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    node = await Node.start(listen="127.0.0.1:0", bootstrap=[seed], mdns=False)
    for i in range(3):
        await node.call_peer(peer, "echo", {"i": i})
    us = []
    for i in range(n):
        t = time.perf_counter_ns()
        await node.call_peer(peer, "echo", {"i": i})
        us.append((time.perf_counter_ns() - t) / 1e3)
    us.sort()
    print(us[round((len(us) - 1) / 2)])
    await node.shutdown()

asyncio.run(asyncio.wait_for(main(), 120))
"#;

/// The `p2pf node --tool echo` provider, killed when dropped.
struct Provider {
    _process: NodeProcess,
    peer: String,
    seed: String,
}

fn start_provider(data: &Path) -> Provider {
    let process = start_node(data, &["--no-mdns", "--tool", "echo"]);
    Provider {
        peer: process.ready["peer_id"]
            .as_str()
            .expect("peer_id")
            .to_owned(),
        seed: addr_of(&process.ready),
        _process: process,
    }
}

/// The median of `n` warm calls of the provider's `echo` from a Rust node, in µs.
async fn rust_p50(provider: &Provider, n: usize) -> f64 {
    let node = P2PNode::new()
        .listen_on("127.0.0.1:0")
        .bootstrap_addrs([&provider.seed])
        .mdns(false)
        .build()
        .await
        .expect("node");
    let peer = provider.peer.parse().expect("peer id");
    for i in 0..3 {
        node.call_peer(peer, "echo", json!({ "i": i }))
            .await
            .expect("call");
    }
    let mut us = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        node.call_peer(peer, "echo", json!({ "i": i }))
            .await
            .expect("call");
        us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    node.shutdown().await;
    percentile(&mut us, 50.0)
}

/// Runs a binding's caller and parses the median it prints, in µs.
fn binding_p50(mut cmd: Command, provider: &Provider, n: usize) -> f64 {
    let out = cmd
        .args([&provider.seed, &provider.peer, &n.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .expect("the caller runs");
    assert!(out.status.success(), "the caller failed: {:?}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("the caller printed {text:?}: {e}"))
}

/// Rebuilds both bindings with the release profile (a full run), in place of the debug
/// builds of the setup scripts. A binding whose tool chain is missing is skipped here and
/// left out below.
fn build_release(repo: &Path, js_dir: &Path, python: &Path) {
    let venv = repo.join("target/python-binding/venv");
    let builds = [
        ("js", js_dir.join("node_modules").is_dir(), {
            let mut c = Command::new("npm");
            c.args(["run", "--silent", "build:release"])
                .current_dir(js_dir);
            p2p_foundation_benchkit::with_js_node(&mut c, repo);
            c
        }),
        ("python", python.is_file(), {
            let mut c = Command::new(venv.join("bin/maturin"));
            c.args(["develop", "--release", "--quiet"])
                .env("VIRTUAL_ENV", &venv)
                .current_dir(repo.join("bindings/python"));
            c
        }),
    ];
    for (name, ready, mut cmd) in builds {
        if !ready {
            continue;
        }
        let start = Instant::now();
        let status = cmd.status().expect("the binding's build tool runs");
        assert!(
            status.success(),
            "release build of the {name} binding failed"
        );
        eprintln!(
            "{name} binding built (release) in {:.0} s",
            start.elapsed().as_secs_f64()
        );
    }
    // The builds loaded the cores: measure once they are idle again.
    if let Err(e) = p2p_foundation_benchkit::wait_for_idle(Duration::from_secs(300)) {
        panic!("after the release builds: {e}");
    }
}

/// A binding's caller command if the binding is built; `None` with a note, or a panic with
/// CI=true, if it is not.
fn caller(name: &str, built: bool, why: &str, cmd: impl FnOnce() -> Command) -> Option<Command> {
    if built {
        return Some(cmd());
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the {name} binding is not built ({why})"
    );
    println!("{name}: left out, the binding is not built ({why})");
    None
}

fn main() {
    let mut suite = Suite::new("bindings");
    let n: usize = suite.scale(500, 5);
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let js_dir = repo.join("bindings/js");
    let python = repo.join("target/python-binding/venv/bin/python");
    if suite.is_full() {
        build_release(&repo, &js_dir, &python);
    }
    let addon_built = std::fs::read_dir(&js_dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().ends_with(".node"))
        })
        .unwrap_or(false);
    let callers = [
        (
            "js",
            caller(
                "js",
                addon_built,
                "run bash bindings/js/ci-setup.sh",
                || {
                    let mut c = Command::new("node");
                    c.args(["-e", JS_CALLER]).current_dir(&js_dir);
                    p2p_foundation_benchkit::with_js_node(&mut c, &repo);
                    c
                },
            ),
        ),
        (
            "python",
            caller(
                "python",
                python.is_file(),
                "run bash bindings/python/ci-setup.sh",
                || {
                    let mut c = Command::new(&python);
                    c.args(["-c", PY_CALLER]);
                    c
                },
            ),
        ),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let provider = start_provider(dir.path());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for (name, cmd) in callers {
        let Some(cmd) = cmd else { continue };
        let rust = rt.block_on(rust_p50(&provider, n));
        let binding = binding_p50(cmd, &provider, n);
        suite.record_vs(
            &format!("{name}.call_us_p50"),
            binding,
            "µs",
            Better::Lower,
            "rust.call_us_p50",
            rust,
        );
    }
    drop(provider);
    suite.finish();
}

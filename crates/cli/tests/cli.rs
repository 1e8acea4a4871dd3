//! The built `p2pf` binary, driven as a user or a script would: every command's output
//! (text and `--json`), bad input and its exit codes, two `p2pf node` processes joined by
//! three words and stopped by signals, and the whole `p2pf demo`.

mod common;

use std::time::{Duration, Instant};

use common::{Node, WAIT, json_line, p2pf, run, stderr};
use serde_json::Value;

#[test]
fn help_lists_exit_codes_and_an_example_per_command() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Exit codes:"), "{text}");
    for cmd in [
        &["id"][..],
        &["node"],
        &["demo"],
        &["words", "encode"],
        &["words", "decode"],
        &["ping"],
        &["dht", "put"],
        &["dht", "get"],
        &["dht", "providers"],
        &["nat"],
        &["pub"],
        &["sub"],
        &["mcp", "list"],
        &["mcp", "call"],
    ] {
        let mut args = cmd.to_vec();
        args.push("--help");
        let out = run(&args);
        assert!(out.status.success(), "{cmd:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("Example"),
            "{cmd:?} --help has no example:\n{text}"
        );
        assert!(text.contains("p2pf "), "{cmd:?}");
    }
    let out = run(&["no-such-command", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(json_line(&out)["error"]["kind"], "usage");
}

#[test]
fn a_configuration_file_sets_what_the_flags_set_and_flags_win() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("p2pf.toml");
    std::fs::write(
        &cfg,
        "log_format = \"json\"\n[node]\nlisten = \"127.0.0.1:0\"\ntools = [\"echo\"]\n",
    )
    .expect("write config");
    let cfg_arg = cfg.to_str().expect("utf-8 path");
    let mut a = Node::spawn({
        let mut c = p2pf();
        c.args(["node", "--json", "--config", cfg_arg, "--data-dir"])
            .arg(dir.path().join("a"));
        c
    });
    let ready = a.wait_for("ready");
    let listen: std::net::SocketAddr = ready["listen"]
        .as_str()
        .expect("listen")
        .parse()
        .expect("addr");
    assert_eq!(
        listen.ip().to_string(),
        "127.0.0.1",
        "listen came from the file"
    );
    let words = words_of(&ready);

    // [client] bootstrap stands in for --bootstrap; the node offers the file's tool; a
    // flag wins over the file (--peer-timeout 2 over peer_timeout = 1 is accepted).
    let client_cfg = dir.path().join("client.toml");
    std::fs::write(
        &client_cfg,
        format!("[client]\nbootstrap = [\"{words}\"]\npeer_timeout = 1\n"),
    )
    .expect("write config");
    let client_arg = client_cfg.to_str().expect("utf-8 path");
    let out = run(&[
        "mcp",
        "call",
        "echo",
        "--args",
        r#"{"n":1}"#,
        "--config",
        client_arg,
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json_line(&out)["structured"]["echo"]["n"], 1);
    // --bootstrap given on the command line replaces the file's list: a dead address fails.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .to_string();
    let out = run(&[
        "dht",
        "get",
        "k",
        "--config",
        client_arg,
        "--bootstrap",
        &dead,
        "--dial-timeout",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));

    // No bootstrap anywhere, a typo in a key, a missing file: each a clear error.
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "").expect("write");
    let out = run(&["dht", "get", "k", "--config", empty.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("give --bootstrap"),
        "{}",
        stderr(&out)
    );
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[node]\nlisen = \"127.0.0.1:0\"\n").expect("write");
    let out = run(&["node", "--config", typo.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("lisen"), "{}", stderr(&out));
    let out = run(&["id", "--config", "/nonexistent/p2pf.toml"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));

    a.signal("-TERM");
    assert_eq!(a.wait_exit(), Some(0));
}

#[test]
fn words_round_trip_and_bad_words_are_a_usage_error() {
    let out = run(&["words", "encode", "127.0.0.1:9000", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json_line(&out);
    assert_eq!(v["addr"], "127.0.0.1:9000");
    assert_eq!(v["count"], 3);
    let words = v["words"].as_str().expect("words").to_owned();

    // Text output, words as separate arguments, upper case.
    let upper = words.to_uppercase();
    let parts: Vec<&str> = upper.split('.').collect();
    let mut args = vec!["words", "decode"];
    args.extend(parts);
    let out = run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "127.0.0.1:9000"
    );

    // IPv6 takes six words.
    let out = run(&["words", "encode", "[::1]:443", "--json"]);
    assert_eq!(json_line(&out)["count"], 6);

    let out = run(&["words", "decode", "qqqq.wwww.zzzz", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not in the dictionary"),
        "{}",
        stderr(&out)
    );
    let v = json_line(&out);
    assert_eq!(v["error"]["kind"], "usage");
    assert_eq!(v["error"]["exit_code"], 2);

    let out = run(&["words", "encode", "not-an-address"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn id_is_created_owner_only_and_stays_the_same() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("node");
    let data = data.to_str().expect("utf-8 path");
    let first = json_line(&run(&["id", "--data-dir", data, "--json"]));
    assert_eq!(first["created"], true);
    let id = first["peer_id"].as_str().expect("peer id").to_owned();
    assert_eq!(id.len(), 52, "{id}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let key = first["key_file"].as_str().expect("key file");
        let mode = std::fs::metadata(key).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The environment variable names the same directory; text output starts with the id.
    let out = p2pf()
        .arg("id")
        .env("P2PF_DATA_DIR", data)
        .output()
        .expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().next(), Some(id.as_str()));

    // A key file others can read is refused with the local-file exit code.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let key = std::path::Path::new(data).join("identity.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let out = run(&["id", "--data-dir", data]);
        assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    }
}

#[test]
fn a_bootstrap_node_restarted_on_its_port_is_reconnected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Node::start(&dir.path().join("a"), &[]);
    let ready_a = a.wait_for("ready");
    let a_id = ready_a["peer_id"].as_str().expect("id").to_owned();
    let a_addr = ready_a["addresses"][0]["addr"]
        .as_str()
        .expect("addr")
        .to_owned();
    let b = Node::start(&dir.path().join("b"), &["--bootstrap", &a_addr]);
    b.wait_for("ready");
    a.signal("-TERM");
    assert_eq!(b.wait_for("disconnected")["peer"], a_id.as_str());
    drop(a);
    // The same data directory (identity) and port; a knows nobody, so b must dial it.
    let mut cmd = p2pf();
    cmd.args(["node", "--json", "--listen", &a_addr, "--data-dir"])
        .arg(dir.path().join("a"));
    let a2 = Node::spawn(cmd);
    assert_eq!(a2.wait_for("ready")["peer_id"], a_id.as_str());
    let back = b.wait_for("reconnected");
    assert_eq!(back["peer"], a_id.as_str());
    assert_eq!(back["addr"], a_addr.as_str());
    assert!(
        back["after_ms"].as_u64().expect("after_ms") >= 500,
        "{back}"
    );
    assert_eq!(a2.wait_for("connected")["outbound"], false, "b dialled a");
}

#[test]
fn two_nodes_join_by_three_words_and_stop_cleanly_on_signals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut a = Node::start(&dir.path().join("a"), &[]);
    let ready_a = a.wait_for("ready");
    let a_id = ready_a["peer_id"].as_str().expect("id").to_owned();
    let words = ready_a["addresses"][0]["words"]
        .as_str()
        .expect("words")
        .to_owned();
    assert_eq!(words.split('.').count(), 3, "{words}");

    // B knows only A's three words.
    let mut b = Node::start(&dir.path().join("b"), &["--bootstrap", &words]);
    let ready_b = b.wait_for("ready");
    assert_eq!(ready_b["bootstrap_peers"], 1);
    assert!(ready_b["routing_table"].as_u64().expect("table") >= 1);
    let b_id = ready_b["peer_id"].as_str().expect("id").to_owned();
    let seen = a.wait_for("connected");
    assert_eq!(seen["peer"], b_id.as_str());
    assert_eq!(seen["outbound"], false);

    b.signal("-TERM");
    assert_eq!(b.wait_for("stopped")["signal"], "SIGTERM");
    assert_eq!(b.wait_exit(), Some(0));
    // A sees B leave at once (B closed its connections on the way out).
    assert_eq!(a.wait_for("disconnected")["peer"], b_id.as_str());

    // B restarted from its data directory keeps its identity, and can pin A's id.
    let pinned = format!(
        "{a_id}@{}",
        ready_a["addresses"][0]["addr"].as_str().expect("addr")
    );
    let b2 = Node::start(&dir.path().join("b"), &["--bootstrap", &pinned]);
    assert_eq!(b2.wait_for("ready")["peer_id"], b_id.as_str());
    drop(b2);

    a.signal("-INT");
    assert_eq!(a.wait_for("stopped")["signal"], "SIGINT");
    assert_eq!(a.wait_exit(), Some(0));
}

#[test]
fn an_unreachable_bootstrap_peer_is_exit_code_3_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A port nobody listens on: bound, read, released.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .to_string();
    let started = Instant::now();
    let out = p2pf()
        .args([
            "node",
            "--listen",
            "127.0.0.1:0",
            "--dial-timeout",
            "2",
            "--json",
        ])
        .args(["--bootstrap", &dead, "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(30));
    let err = stderr(&out);
    assert!(
        err.contains("could not reach any of 1 bootstrap peer"),
        "{err}"
    );
    assert!(err.contains(&dead), "{err}");
    assert_eq!(json_line(&out)["error"]["kind"], "unreachable");

    // Malformed peers never start a node.
    let out = run(&["node", "--bootstrap", "nobody@127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not a peer id"), "{}", stderr(&out));
}

#[test]
fn demo_runs_every_step_on_a_real_loopback_network() {
    let out = run(&["demo", "--json"]);
    assert!(
        out.status.success(),
        "demo failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    let v = json_line(&out);
    assert_eq!(v["ok"], true);
    let nodes = v["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 8);
    let mut ports = std::collections::BTreeSet::new();
    for n in nodes {
        let addr: std::net::SocketAddr = n["addr"].as_str().expect("addr").parse().expect("addr");
        assert!(addr.ip().is_loopback());
        ports.insert(addr.port());
        assert_eq!(n["words"].as_str().expect("words").split('.').count(), 3);
    }
    assert_eq!(ports.len(), 8, "each node has its own endpoint");
    let steps: Vec<&str> = v["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            assert_eq!(s["ok"], true, "{s}");
            assert!(s["ms"].as_f64().expect("ms") >= 0.0);
            s["step"].as_str().expect("name")
        })
        .collect();
    assert_eq!(
        steps,
        [
            "start nodes",
            "bootstrap by words",
            "register MCP tool",
            "discover via DHT",
            "call tool",
            "failover call",
            "gossip to all",
            "shut down"
        ]
    );
    let failover = &v["steps"][5]["detail"];
    assert!(
        failover.as_str().expect("detail").contains("1 failover"),
        "{failover}"
    );

    // More nodes than the transport's per-IP handshake burst allows by default.
    let out = run(&["demo", "--nodes", "16", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json_line(&out);
    assert_eq!(v["ok"], true);
    assert_eq!(v["nodes"].as_array().expect("nodes").len(), 16);

    // The text form ends with the table.
    let out = run(&["demo"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .last()
            .expect("a line")
            .contains("every step worked"),
        "{text}"
    );
}

/// The words of a running node's first address.
fn words_of(ready: &Value) -> String {
    ready["addresses"][0]["words"]
        .as_str()
        .expect("words")
        .to_owned()
}

#[test]
fn one_shot_commands_ping_dht_pubsub_and_mcp_against_node_processes() {
    // Each short-lived client stays in the nodes' routing tables after it exits; a 1 s
    // peer timeout keeps the requests other clients then send it short.
    let run = |args: &[&str]| {
        p2pf()
            .args(args)
            .args(["--peer-timeout", "1"])
            .output()
            .expect("p2pf runs")
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut a = Node::start(
        &dir.path().join("a"),
        &["--tool", "reverse", "--tool", "echo"],
    );
    let ready_a = a.wait_for("ready");
    let (a_id, a_words) = (
        ready_a["peer_id"].as_str().expect("id").to_owned(),
        words_of(&ready_a),
    );
    let b = Node::start(
        &dir.path().join("b"),
        &["--tool", "reverse", "--bootstrap", &a_words],
    );
    let ready_b = b.wait_for("ready");
    let (b_id, b_words) = (
        ready_b["peer_id"].as_str().expect("id").to_owned(),
        words_of(&ready_b),
    );

    // ping by words: the proven id, QUIC, a round-trip time.
    let out = p2pf()
        .args(["ping", &a_words, "--json"])
        .output()
        .expect("p2pf runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let pong = json_line(&out);
    assert_eq!(pong["peer_id"], a_id.as_str());
    assert_eq!(pong["path"], "quic");
    assert!(pong["rtt_ms"].as_f64().expect("rtt") > 0.0);
    // A saw the ping come from loopback, on the client's own port.
    let reflexive: std::net::SocketAddr = pong["reflexive"]
        .as_str()
        .expect("reflexive")
        .parse()
        .expect("an address");
    assert!(reflexive.ip().is_loopback(), "{reflexive}");

    // Both nodes observe the client's QUIC socket at the same loopback address; one IP
    // address among the observers cannot tell the mapping behaviour.
    let out = run(&[
        "nat",
        "--bootstrap",
        &a_words,
        "--bootstrap",
        &b_words,
        "--wait",
        "2",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let nat = json_line(&out);
    let observers: Vec<&str> = nat["observations"]
        .as_array()
        .expect("observations")
        .iter()
        .filter_map(|o| o["observer"].as_str())
        .collect();
    assert!(
        observers.contains(&a_id.as_str()) && observers.contains(&b_id.as_str()),
        "{nat}"
    );
    assert_eq!(nat["mapping"], "unknown", "{nat}");
    let local: std::net::SocketAddr = nat["local"].as_str().expect("local").parse().expect("addr");
    assert_eq!(
        nat["reflexive"],
        format!("127.0.0.1:{}", local.port()).as_str(),
        "{nat}"
    );

    // A record put through A is got through B; a missing one is exit code 4.
    let out = run(&[
        "dht",
        "put",
        "cli/greeting",
        "hello dht",
        "--bootstrap",
        &a_words,
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(json_line(&out)["stored_on"].as_u64().expect("stored") >= 1);
    let out = run(&[
        "dht",
        "get",
        "cli/greeting",
        "--bootstrap",
        &b_words,
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json_line(&out)["records"][0]["value"], "hello dht");
    let out = run(&["dht", "get", "cli/nothing", "--bootstrap", &b_words]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("no record under 'cli/nothing'"));

    // The MCP registry announces each tool as a provider record: both nodes offer reverse.
    let out = run(&[
        "dht",
        "providers",
        "p2pf/mcp/tool/reverse",
        "--bootstrap",
        &a_words,
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut providers: Vec<String> = json_line(&out)["providers"]
        .as_array()
        .expect("providers")
        .iter()
        .filter_map(|p| p["peer_id"].as_str().map(str::to_owned))
        .collect();
    providers.sort();
    let mut both = vec![a_id.clone(), b_id.clone()];
    both.sort();
    assert_eq!(providers, both);
    let out = run(&["dht", "providers", "cli/nothing", "--bootstrap", &b_words]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("no node provides 'cli/nothing'"));

    // Both providers are listed; a call is answered by one of them.
    let out = run(&[
        "mcp",
        "list",
        "--tool",
        "reverse",
        "--bootstrap",
        &b_words,
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut providers: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("JSON")["provider"]
                .as_str()
                .expect("p")
                .to_owned()
        })
        .collect();
    providers.sort();
    let mut expected = vec![a_id.clone(), b_id.clone()];
    expected.sort();
    assert_eq!(providers, expected);
    let call = |via: &str| {
        run(&[
            "mcp",
            "call",
            "reverse",
            "--args",
            r#"{"text":"abc"}"#,
            "--bootstrap",
            via,
            "--json",
        ])
    };
    let out = call(&a_words);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json_line(&out)["structured"]["reversed"], "cba");

    // Bad input: JSON that is not an object, a tool nobody offers.
    let out = run(&[
        "mcp",
        "call",
        "reverse",
        "--args",
        "[1]",
        "--bootstrap",
        &a_words,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not an object"), "{}", stderr(&out));
    let out = run(&["mcp", "call", "nosuch", "--bootstrap", &a_words, "--json"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert_eq!(json_line(&out)["error"]["kind"], "not_found");

    // pub/sub: a subscriber through B gets the line published through A, confirmed.
    let mut sub_cmd = p2pf();
    sub_cmd.args([
        "sub",
        "cli/news",
        "--count",
        "1",
        "--json",
        "--bootstrap",
        &b_words,
    ]);
    sub_cmd.args(["--peer-timeout", "1"]);
    let mut sub = Node::spawn(sub_cmd);
    let subscribed = sub.wait_for("subscribed");
    let sub_id = subscribed["peer_id"].as_str().expect("id").to_owned();
    let out = run(&[
        "pub",
        "cli/news",
        "hello",
        "gossip",
        "--bootstrap",
        &a_words,
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json_line(&out)["confirmed_by"], 1);
    let deadline = Instant::now() + WAIT;
    let got = loop {
        let v = sub
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("a message line");
        if v.get("data").is_some() {
            break v;
        }
    };
    assert_eq!(got["data"], "hello gossip");
    assert_ne!(got["author"], sub_id.as_str());
    assert_eq!(sub.wait_exit(), Some(0));

    // The provider process A is killed outright (no goodbye): calls through B still work,
    // served by B, the router failing over if it tries A first.
    let _ = a.child.kill();
    let _ = a.child.wait();
    let out = call(&b_words);
    assert!(out.status.success(), "{}", stderr(&out));
    let answer = json_line(&out);
    assert_eq!(answer["provider"], b_id.as_str());
    assert_eq!(answer["structured"]["served_by"], b_id.as_str());
    drop(b);
}

#[test]
fn twenty_node_processes_share_the_dht_and_an_mcp_call_fails_over_when_a_provider_is_killed() {
    const NODES: usize = 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let oneshot = |args: &[&str]| {
        p2pf()
            .args(args)
            .args(["--peer-timeout", "1", "--json"])
            .output()
            .expect("p2pf runs")
    };
    // Node 0 and node 19 offer `reverse`. Node i joins by the three words of node
    // (i - 1) / 2, a binary tree: every process shares 127.0.0.1, and the transport
    // limits handshakes per source IP (burst 40), which 19 joins at one node would exceed.
    let mut nodes = vec![Node::start(&dir.path().join("0"), &["--tool", "reverse"])];
    let first = nodes[0].wait_for("ready");
    let mut ready = vec![first];
    for i in 1..NODES {
        let seed = words_of(&ready[(i - 1) / 2]);
        let mut extra = vec!["--bootstrap", seed.as_str()];
        if i == NODES - 1 {
            extra.extend(["--tool", "reverse"]);
        }
        let n = Node::start(&dir.path().join(i.to_string()), &extra);
        let r = n.wait_for("ready");
        assert_eq!(r["bootstrap_peers"], 1, "node {i}");
        ready.push(r);
        nodes.push(n);
    }
    let words: Vec<String> = ready.iter().map(words_of).collect();
    let id = |i: usize| ready[i]["peer_id"].as_str().expect("id").to_owned();

    let out = oneshot(&[
        "dht",
        "put",
        "twenty/key",
        "value 20",
        "--bootstrap",
        &words[5],
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = oneshot(&["dht", "get", "twenty/key", "--bootstrap", &words[17]]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json_line(&out)["records"][0]["value"], "value 20");

    let call = |via: &str| {
        oneshot(&[
            "mcp",
            "call",
            "reverse",
            "--args",
            r#"{"text":"xyz"}"#,
            "--bootstrap",
            via,
        ])
    };
    let out = call(&words[10]);
    assert!(out.status.success(), "{}", stderr(&out));
    let answer = json_line(&out);
    assert_eq!(answer["structured"]["reversed"], "zyx");
    assert!([id(0), id(NODES - 1)].contains(&answer["provider"].as_str().expect("p").to_owned()));

    // The provider process node 0 is killed outright; the call goes to node 19.
    let _ = nodes[0].child.kill();
    let _ = nodes[0].child.wait();
    let out = call(&words[12]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json_line(&out)["provider"], id(NODES - 1).as_str());

    // Every other node stops cleanly on SIGTERM.
    for n in &mut nodes[1..] {
        n.signal("-TERM");
    }
    for (i, n) in nodes.iter_mut().enumerate().skip(1) {
        assert_eq!(n.wait_exit(), Some(0), "node {i}");
    }
}

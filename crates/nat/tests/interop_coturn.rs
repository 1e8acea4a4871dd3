//! Interoperability with coturn (a STUN/TURN implementation nobody here wrote):
//! our client against its `turnserver`, its `turnutils_stunclient` against our server.
//! `ci-setup.sh` installs coturn; without it the tests skip loudly unless `CI=true`.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use p2p_foundation_nat::{RetransmitConfig, StunServer, stun_binding};
use tokio::net::UdpSocket;
use tokio::process::Command;
use tokio::time::timeout;

const HANG_GUARD: Duration = Duration::from_secs(60);

fn tool_available(name: &str, test: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{name} not found with CI=true: run crates/nat/ci-setup.sh (installs coturn)");
        }
        eprintln!(
            "SKIPPED {test}: {name} not installed (apt-get install coturn, or run crates/nat/ci-setup.sh)"
        );
    }
    found
}

async fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    s.local_addr().expect("addr").port()
}

#[tokio::test]
async fn our_client_against_coturn_server() {
    if !tool_available("turnserver", "our_client_against_coturn_server") {
        return;
    }
    let port = free_udp_port().await;
    let dir = std::env::temp_dir().join(format!("p2pf-nat-coturn-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let log_path = dir.join("turnserver.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut server = Command::new("turnserver")
        .args([
            "-S",
            "-L",
            "127.0.0.1",
            "--no-cli",
            "-n",
            "--simple-log",
            "--no-tls",
            "--no-dtls",
        ])
        .args(["-p", &port.to_string(), "--log-file", "stdout"])
        .arg("--db")
        .arg(dir.join("turndb"))
        .stdout(Stdio::from(log.try_clone().expect("log handle")))
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("turnserver starts");
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    // The server may still be starting: retransmissions (bounded) cover that.
    let cfg = RetransmitConfig {
        rto: Duration::from_millis(200),
        max_sends: 7,
        last_wait_multiplier: 16,
    };
    let server_addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let answer = timeout(HANG_GUARD, stun_binding(&client, server_addr, cfg))
        .await
        .expect("hang guard");
    // turnserver's own output names its cause when it did not answer (a port in use, a
    // missing file, a user it cannot switch to).
    let out = match answer {
        Ok(out) => out,
        Err(e) => {
            let _ = server.kill().await;
            panic!(
                "coturn did not answer the binding request: {e}\nturnserver output ({}):\n{}",
                log_path.display(),
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
    };
    assert_eq!(out.mapped, client.local_addr().expect("addr"));
    let _ = server.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn coturn_client_against_our_server() {
    if !tool_available("turnutils_stunclient", "coturn_client_against_our_server") {
        return;
    }
    let server = StunServer::bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let output = timeout(
        HANG_GUARD,
        Command::new("turnutils_stunclient")
            .args(["-p", &server.local_addr().port().to_string(), "127.0.0.1"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("hang guard")
    .expect("turnutils_stunclient runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "stunclient failed ({}): stdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let reflexive = stdout
        .lines()
        .find_map(|l| l.split("UDP reflexive addr: ").nth(1))
        .unwrap_or_else(|| panic!("no reflexive address in coturn's output: {stdout}"));
    let reflexive: SocketAddr = reflexive.trim().parse().expect("coturn printed an address");
    assert_eq!(reflexive.ip(), std::net::Ipv4Addr::LOCALHOST);
    assert_ne!(reflexive.port(), 0);
    assert!(
        server.answered() >= 1,
        "our server answered coturn's request"
    );
}

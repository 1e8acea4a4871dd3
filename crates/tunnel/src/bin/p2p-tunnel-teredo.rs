//! `p2p-tunnel-teredo`: a Teredo client on a TUN device ([`TeredoTun`]): qualifies with a
//! Teredo server, brings up the device with the Teredo address, prints `up ADDR dev=NAME`
//! and moves packets until killed (or until the device or socket fails: it prints the error
//! and exits 1). Stop it with a signal: the device goes with the process.
//!
//! Usage: `p2p-tunnel-teredo SERVER_IPV4 [DEVICE_NAME]`. Needs `CAP_NET_ADMIN`.

use std::io::Write;
use std::net::Ipv4Addr;
use std::time::{SystemTime, UNIX_EPOCH};

use p2p_foundation_tunnel::endpoint::TeredoTun;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(server) = args.next().and_then(|a| a.parse::<Ipv4Addr>().ok()) else {
        eprintln!("usage: p2p-tunnel-teredo SERVER_IPV4 [DEVICE_NAME]");
        std::process::exit(2);
    };
    let name = args.next().unwrap_or_else(|| "p2pteredo%d".into());
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id());
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            println!("failed: runtime: {e}");
            std::process::exit(1);
        }
    };
    let e = rt.block_on(async {
        let tun = match TeredoTun::qualify_and_open(server, &name, seed).await {
            Ok(t) => t,
            Err(e) => return e,
        };
        println!("up {} dev={}", tun.local_v6(), tun.name());
        let _ = std::io::stdout().flush();
        tun.run().await
    });
    println!("failed: {e}");
    std::process::exit(1);
}

#!/usr/bin/env bash
# p2p-foundation-tunnel: scapy (independent 6in4 peer) in a venv under target/, miredo-server
# (independent Teredo server), iproute2, nftables and procps for the namespace tests.
# Idempotent, non-interactive.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/../../target/tunnel-venv/venv"
if ! dpkg-query -W iproute2 nftables procps miredo-server python3-venv python3-pip >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq iproute2 nftables procps miredo-server python3-venv python3-pip >/dev/null
fi
if ! "$venv/bin/python" -c 'import scapy' >/dev/null 2>&1; then
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'scapy==2.8.*'
fi
# The Debian package may start a system miredo-server; the tests start their own.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now miredo-server >/dev/null 2>&1 || true; fi

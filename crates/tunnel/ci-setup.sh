#!/usr/bin/env bash
# p2p-foundation-tunnel: scapy (independent 6in4 peer) in a venv under target/, and iproute2 for
# the namespace test. Idempotent, non-interactive.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/../../target/tunnel-venv/venv"
if ! dpkg-query -W iproute2 python3-venv python3-pip >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq iproute2 python3-venv python3-pip >/dev/null
fi
if ! "$venv/bin/python" -c 'import scapy' >/dev/null 2>&1; then
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'scapy==2.8.*'
fi

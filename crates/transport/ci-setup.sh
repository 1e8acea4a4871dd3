#!/usr/bin/env bash
# p2p-foundation-transport: the network-namespace test needs `ip` (iproute2) and `nft` (nftables).
set -euo pipefail
if command -v ip >/dev/null 2>&1 && command -v nft >/dev/null 2>&1; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q iproute2 nftables

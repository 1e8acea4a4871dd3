#!/usr/bin/env bash
# p2p-foundation-nat: coturn (STUN interop peer: turnserver, turnutils_stunclient) and the
# tools the NAT lab tests use (iproute2, nftables). Idempotent, non-interactive.
set -euo pipefail
if ! dpkg-query -W coturn iproute2 nftables procps >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq coturn iproute2 nftables procps >/dev/null
fi
# The Debian package starts a system turnserver on 3478; the tests start their own.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now coturn >/dev/null 2>&1 || true; fi

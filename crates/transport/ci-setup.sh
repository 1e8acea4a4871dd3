#!/usr/bin/env bash
# p2p-foundation-transport: the network-namespace test needs `ip` (iproute2) and `nft` (nftables).
# Idempotent, non-interactive; checks its postconditions.
set -euo pipefail
source "$(dirname "$0")/../../.ci/lib.sh"
ci_apt_install iproute2 nftables
ci_need_cmd ip "iproute2"
ci_need_run "nftables userspace" nft --version

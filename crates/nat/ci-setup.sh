#!/usr/bin/env bash
# p2p-foundation-nat: coturn (STUN interop peer: turnserver, turnutils_stunclient) and the
# tools the NAT lab tests use (iproute2, nftables, sysctl). Idempotent, non-interactive;
# checks its postconditions.
set -euo pipefail
source "$(dirname "$0")/../../.ci/lib.sh"
ci_apt_install coturn iproute2 nftables procps
# The Debian package may start a system turnserver on 3478; the tests start their own.
ci_disable_service coturn
ci_need_cmd turnserver "package coturn"
ci_need_cmd turnutils_stunclient "package coturn"
ci_need_run "coturn's server binary" turnserver --version
for cmd in ip nft sysctl; do ci_need_cmd "$cmd" "packages iproute2, nftables, procps"; done
echo "nat interop tools ready: turnserver $(turnserver --version 2>&1 | head -n1)"

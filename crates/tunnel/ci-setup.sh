#!/usr/bin/env bash
# p2p-foundation-tunnel: scapy (independent 6in4 peer) in a venv under target/, miredo-server
# (independent Teredo server) with the `miredo` system user it drops privileges to, iproute2,
# nftables and procps for the namespace tests. Idempotent, non-interactive; checks its
# postconditions.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../../.ci/lib.sh"
venv="$here/../../target/tunnel-venv/venv"

# miredo-server runs as the `miredo` user, which Debian's `miredo` (client) package creates,
# not `miredo-server`: install both.
ci_apt_install iproute2 nftables procps iputils-ping miredo miredo-server
# The packages may start a system Teredo client and server; the tests start their own server.
ci_disable_service miredo
ci_disable_service miredo-server
ci_need_user miredo "created by package miredo; miredo-server refuses to start without it"
ci_need_run "the Teredo server" miredo-server -V
ci_need_run "the Teredo client package" miredo -V
for cmd in ip nft sysctl ping; do ci_need_cmd "$cmd" "packages iproute2, nftables, procps, iputils-ping"; done
# The overlay's TUN tests (crates/tunnel/tests/overlay_tun.rs, the facade's overlay lab).
if [ ! -c /dev/net/tun ]; then
    modprobe tun 2>/dev/null || true
fi
[ -c /dev/net/tun ] || ci_fail "/dev/net/tun is missing: the kernel needs the tun module for the overlay tests"

if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    ci_apt_install python3-venv python3-pip
fi
if ! "$venv/bin/python" -c 'import scapy' >/dev/null 2>&1; then
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv" || ci_fail "python3 -m venv $venv failed"
    "$venv/bin/pip" install -q 'scapy==2.8.*' || ci_fail "pip install scapy failed (is PyPI reachable?)"
fi
version="$("$venv/bin/python" -c 'import scapy; print(scapy.VERSION)' 2>&1)" \
    || ci_fail "scapy does not import in $venv: $version"
case "$version" in 2.8.*) ;; *) ci_fail "scapy $version in $venv, want 2.8.*" ;; esac
echo "tunnel interop tools ready: $(miredo-server -V 2>&1 | head -n1), scapy $version"

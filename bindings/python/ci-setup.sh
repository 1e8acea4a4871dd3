#!/usr/bin/env bash
# Builds the Python binding into a venv the tests use (idempotent, non-interactive), and
# checks it: target/python-binding/venv holds pinned maturin and pytest and the binding,
# installed by `maturin develop` (a debug build sharing the workspace's target dir).
# `cargo xtask ci` runs its pytest suite there; with CI=true it fails if the venv is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
source .ci/lib.sh
venv=target/python-binding/venv
maturin_version=1.16.0
pytest_version=9.2.0
root="$PWD"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"

if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    ci_apt_install python3-venv python3-pip
fi
ci_need_cmd python3 "the binding is a CPython extension module"
version() { "$venv/bin/python" -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null || true; }
if [ "$(version maturin)" != "$maturin_version" ] || [ "$(version pytest)" != "$pytest_version" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv" || ci_fail "python3 -m venv $venv failed"
    "$venv/bin/pip" install -q --disable-pip-version-check "maturin==$maturin_version" "pytest==$pytest_version" \
        || ci_fail "pip install maturin==$maturin_version pytest==$pytest_version failed (is PyPI reachable?)"
fi

start=$(date +%s)
# The same VIRTUAL_ENV as `cargo xtask ci` gives maturin (PyO3's build script reruns when
# it changes, and the crate would then be rebuilt there).
(cd bindings/python && VIRTUAL_ENV="$root/$venv" "$root/$venv/bin/maturin" develop --quiet) \
    || ci_fail "maturin develop of bindings/python failed (see above)"
echo "binding built in $(( $(date +%s) - start )) s"

# Postconditions: the tools run and the binding imports from the venv, with its stubs.
[ "$(version maturin)" = "$maturin_version" ] || ci_fail "maturin in $venv is not $maturin_version"
[ "$(version pytest)" = "$pytest_version" ] || ci_fail "pytest in $venv is not $pytest_version"
got="$("$venv/bin/python" -c 'import os, p2p_foundation as p; d = os.path.dirname(p.__file__); assert os.path.isfile(os.path.join(d, "py.typed")) and os.path.isfile(os.path.join(d, "_native.pyi")), "stubs missing"; print(p.Node.__name__)' 2>&1)" \
    || ci_fail "p2p_foundation does not import in $venv: $got"
[ "$got" = "Node" ] || ci_fail "p2p_foundation in $venv has no Node: $got"
echo "python binding ready in $venv: maturin $maturin_version, pytest $pytest_version"

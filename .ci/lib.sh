# Shared by .ci/run and crates/*/ci-setup.sh (sourced, not run). Installs what the tests use on
# a fresh Debian machine and checks each postcondition with a message that names the fix, so a
# missing user or program fails here, before a test, with its cause.
#
#   ci_apt_install PKG...       install the Debian packages that are not fully installed
#   ci_need_cmd CMD WHY         CMD is on PATH
#   ci_need_run WHY CMD ARG...  CMD ARG... exits 0 (its output is shown when it does not)
#   ci_need_user USER WHY       the system user USER exists
#   ci_disable_service NAME     stop and disable a service a package started (tests start their own)

ci_fail() {
    echo "ci-setup: FAILED: $*" >&2
    exit 1
}

ci_package_installed() {
    # `dpkg-query -W` also succeeds for removed packages whose config files remain ("rc").
    [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" = "ii " ]
}

ci_apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        ci_package_installed "$pkg" || missing+=("$pkg")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    echo "ci-setup: apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || ci_fail "apt-get update failed (is a Debian mirror reachable?)"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || ci_fail "apt-get install ${missing[*]} failed"
    for pkg in "${missing[@]}"; do
        ci_package_installed "$pkg" || ci_fail "package $pkg is still not installed after apt-get install"
    done
}

ci_need_cmd() {
    command -v "$1" >/dev/null 2>&1 || ci_fail "$1 is not on PATH ($2)"
}

ci_need_run() {
    local why="$1" out
    shift
    if ! out="$("$@" 2>&1)"; then
        ci_fail "\`$*\` does not run ($why); it printed: $out"
    fi
}

ci_need_user() {
    getent passwd "$1" >/dev/null || ci_fail "system user $1 does not exist ($2)"
}

ci_disable_service() {
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl disable --now "$1" >/dev/null 2>&1 || true
    fi
}

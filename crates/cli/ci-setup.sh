#!/usr/bin/env bash
# p2p-foundation-cli: a real Prometheus server (Debian package `prometheus`), which the test
# `prometheus_scrapes_a_running_node` starts on loopback to scrape `p2pf node --metrics` and
# read the series back through its HTTP API. Idempotent, non-interactive; checks that the
# server runs. The package's own service is stopped: the test starts its own instance.
set -euo pipefail
source "$(dirname "$0")/../../.ci/lib.sh"
ci_apt_install prometheus
ci_disable_service prometheus
ci_need_cmd prometheus "Debian package prometheus"
ci_need_run "the Prometheus server" prometheus --version
ci_need_run "promtool (checks the test's scrape configuration format)" promtool --version

#!/usr/bin/env bash
# p2p-foundation-words: the Debian word lists and Python that tools/build-dictionary.py reads,
# so the test `dictionary_script_rebuilds_the_committed_file` can check the committed
# dictionary is reproducible. Idempotent, non-interactive.
set -euo pipefail
if ! dpkg-query -W wamerican-small wamerican wamerican-large python3 >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq wamerican-small wamerican wamerican-large python3 >/dev/null
fi

#!/usr/bin/env bash
# p2p-foundation-words: the Debian word lists and Python that tools/build-dictionary.py reads,
# so the test `dictionary_script_rebuilds_the_committed_file` can check the committed
# dictionary is reproducible. Idempotent, non-interactive; checks its postconditions.
set -euo pipefail
source "$(dirname "$0")/../../.ci/lib.sh"
ci_apt_install wamerican-small wamerican wamerican-large
command -v python3 >/dev/null 2>&1 || ci_apt_install python3
ci_need_run "the dictionary script's interpreter" python3 --version
for list in american-english-small american-english american-english-large; do
    [ -s "/usr/share/dict/$list" ] || ci_fail "/usr/share/dict/$list is missing (packages wamerican*)"
done

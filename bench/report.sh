#!/usr/bin/env bash
# Benchmark report: hotbackup beside Redis 7 and PostgreSQL 15 on this machine, in one run.
#
#   sudo bench/report.sh                 # everything, 3 runs per figure (about 40 minutes)
#   sudo bench/report.sh --runs 5        # more runs
#   sudo bench/report.sh --quick         # small sizes, short runs: checks the script (minutes)
#   sudo bench/report.sh --only lag,stall
#   bench/report.sh --data bench/report/data.json   # re-render REPORT.md from saved samples
#
# Writes bench/REPORT.md, bench/report/*.svg and bench/report/data.json. Run it on a quiet
# machine: every figure is a median of several runs, but other load skews them all.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ " $* " != *" --data "* ]]; then
    need=()
    command -v redis-server >/dev/null || need+=(redis-server)
    command -v redis-benchmark >/dev/null || need+=(redis-tools)
    [ -x /usr/lib/postgresql/15/bin/postgres ] || need+=(postgresql-15)
    command -v pgbench >/dev/null || need+=(postgresql-client-15)
    /usr/bin/python3 -c 'import redis' 2>/dev/null || need+=(python3-redis)
    if [ ${#need[@]} -gt 0 ]; then
        [ "$(id -u)" = 0 ] || { echo "needs ${need[*]} (run as root to install them)" >&2; exit 1; }
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    fi
    cargo build --release --locked -q --bin hotbackup --example store_load
fi
exec /usr/bin/python3 bench/report.py "$@"

#!/usr/bin/env bash
# Runs hotbackup's whole test suite: unit tests, integration tests against the real binary
# (redis crate, redis-cli, redis-benchmark, redis-py's Sentinel client, ioredis's pub/sub-driven
# Sentinel client), the kill -9 crash test, the disk-full tests (tmpfs:
# needs root) and the fuzz corpus replay; then the two-host system test (tests/system/two-hosts.sh:
# two systemd hosts in nspawn containers, the .deb, failover scripts), which needs root,
# systemd-nspawn, debootstrap and overlayfs: without them it is SKIPPED and says why, unless
# HB_SYSTEM_TEST=1 (CI sets it), which makes a skip a failure. HB_SYSTEM_TEST=0 leaves it out.
# Installs redis-tools and python3-redis first when missing and we may (root with apt-get), and
# ioredis with npm (Node.js and npm from Debian when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-cli >/dev/null || ! command -v redis-benchmark >/dev/null \
    || ! /usr/bin/python3 -c "import redis" 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "== installing redis-tools (redis-cli, redis-benchmark) and python3-redis (redis-py)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-tools python3 python3-redis >/dev/null
    else
        echo "redis-cli, redis-benchmark and redis-py are needed: install Debian's redis-tools and python3-redis" >&2
        exit 1
    fi
fi

# ioredis (tests/clients/ioredis, from its lock file): the pub/sub-driven Sentinel client of
# tests/sentinel.rs. Needs Node.js and npm; Debian's are installed when missing and we may.
if [ ! -d tests/clients/ioredis/node_modules/ioredis ]; then
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "== installing nodejs and npm (for ioredis)"
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
        else
            echo "Node.js and npm are needed for the ioredis test: install Debian's nodejs and npm" >&2
            exit 1
        fi
    fi
    echo "== installing ioredis (npm ci in tests/clients/ioredis)"
    npm ci --prefix tests/clients/ioredis --no-audit --no-fund --silent
fi

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy"
cargo clippy --locked --all-targets -- -D warnings
echo "== cargo test"
cargo test --locked -- --test-threads="${HB_TEST_THREADS:-2}"

echo "== system test: two systemd hosts (tests/system/two-hosts.sh)"
if [ "${HB_SYSTEM_TEST:-auto}" = 0 ]; then
    echo "== system test SKIPPED: HB_SYSTEM_TEST=0"
    exit 0
fi
set +e
tests/system/two-hosts.sh
rc=$?
set -e
if [ "$rc" = 77 ]; then
    if [ "${HB_SYSTEM_TEST:-auto}" = 1 ]; then
        echo "== system test could not run, and HB_SYSTEM_TEST=1 requires it (reason above)" >&2
        exit 1
    fi
    echo "== system test SKIPPED (reason above): only the unit and integration tests ran"
    exit 0
fi
exit "$rc"

#!/usr/bin/env bash
# Single-node benchmark: hotbackup (durability fsync) beside Redis 7 with appendonly yes and
# appendfsync always / everysec, run side by side in this script on this machine.
#
#   bench/single-node.sh [RUNS]        (default RUNS=5; figures are medians of RUNS runs)
#
# Prints, per test, requests/s of each and the ratios, then the RSS of each server after
# loading 1M keys of 100 bytes. Needs redis-server and redis-tools (installed when missing and
# running as root). Everything listens on loopback only and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${1:-5}
N50=${N50:-200000}     # requests per run with 50 clients
N1=${N1:-20000}        # requests per run with 1 client
LOAD=${LOAD:-1000000}  # keys loaded for the memory figure
P_HB=7391; P_ALWAYS=7392; P_EVERYSEC=7393

if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
    else
        echo "needs redis-server and redis-tools" >&2; exit 1
    fi
fi

cargo build --release --locked -q
BIN=$PWD/target/release/hotbackup
WORK=$(mktemp -d /var/tmp/hb-bench.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

. bench/lib.sh   # wait_port, median (the script runs from the repository root)

start_servers() {
    rm -rf "$WORK"/hb "$WORK"/always "$WORK"/everysec
    mkdir -p "$WORK"/hb "$WORK"/always "$WORK"/everysec
    cat >"$WORK/hb/hb.toml" <<EOF
data_dir = "$WORK/hb/data"
[client]
listen = "127.0.0.1:$P_HB"
maxclients = 10000
[durability]
mode = "fsync"
[log]
level = "warn"
EOF
    "$BIN" serve --config "$WORK/hb/hb.toml" 2>"$WORK/hb/log" &
    PIDS+=($!); HB_PID=$!
    redis-server --port $P_ALWAYS --bind 127.0.0.1 --save '' --appendonly yes --appendfsync always \
        --dir "$WORK/always" --daemonize no >"$WORK/always/log" 2>&1 &
    PIDS+=($!); ALWAYS_PID=$!
    redis-server --port $P_EVERYSEC --bind 127.0.0.1 --save '' --appendonly yes --appendfsync everysec \
        --dir "$WORK/everysec" --daemonize no >"$WORK/everysec/log" 2>&1 &
    PIDS+=($!); EVERYSEC_PID=$!
    wait_port $P_HB; wait_port $P_ALWAYS; wait_port $P_EVERYSEC
}

stop_servers() {
    kill "$HB_PID" "$ALWAYS_PID" "$EVERYSEC_PID" 2>/dev/null || true
    wait "$HB_PID" "$ALWAYS_PID" "$EVERYSEC_PID" 2>/dev/null || true
    PIDS=()
}

# rps PORT TEST CLIENTS REQUESTS -> requests per second
rps() {
    redis-benchmark -p "$1" -t "$2" -c "$3" -n "$4" -r 100000 -d 100 --csv -q 2>/dev/null |
        awk -F'","' -v t="$(echo "$2" | tr a-z A-Z)" '$1 ~ "\""t {print $2; exit}'
}


declare -A R
TESTS=("set 50 $N50" "get 50 $N50" "set 1 $N1" "get 1 $N1")
start_servers
for run in $(seq 1 "$RUNS"); do
    for t in "${TESTS[@]}"; do
        set -- $t
        for who in hb always everysec; do
            case $who in hb) p=$P_HB;; always) p=$P_ALWAYS;; everysec) p=$P_EVERYSEC;; esac
            R["$who $1 $2"]+="$(rps "$p" "$1" "$2" "$3") "
        done
    done
    echo "run $run/$RUNS done" >&2
done

printf '\n%-14s %12s %14s %8s %16s %8s\n' "test" "hotbackup" "redis-always" "ratio" "redis-everysec" "ratio"
for t in "${TESTS[@]}"; do
    set -- $t
    hb=$(echo ${R["hb $1 $2"]} | tr ' ' '\n' | median)
    al=$(echo ${R["always $1 $2"]} | tr ' ' '\n' | median)
    ev=$(echo ${R["everysec $1 $2"]} | tr ' ' '\n' | median)
    printf '%-14s %12.0f %14.0f %7.2fx %16.0f %7.2fx\n' "$(echo "$1" | tr a-z A-Z) c=$2" "$hb" "$al" \
        "$(echo "$hb / $al" | bc -l)" "$ev" "$(echo "$hb / $ev" | bc -l)"
done
echo "(requests/s, median of $RUNS runs; redis-benchmark -d 100 -r 100000; hotbackup durability=fsync)"

# Memory: RSS after loading LOAD distinct keys of 100 bytes through redis-cli --pipe.
stop_servers
start_servers
python3 - "$LOAD" >"$WORK/load.resp" <<'PY'
import sys
n = int(sys.argv[1]); v = b"v" * 100
out = sys.stdout.buffer
for i in range(n):
    k = b"key:%010d" % i
    out.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$100\r\n%s\r\n" % (len(k), k, v))
PY
echo
printf '%-16s %10s %10s\n' "server" "keys" "RSS MiB"
for who in hb always everysec; do
    case $who in hb) p=$P_HB; pid=$HB_PID;; always) p=$P_ALWAYS; pid=$ALWAYS_PID;; everysec) p=$P_EVERYSEC; pid=$EVERYSEC_PID;; esac
    redis-cli -p $p --pipe <"$WORK/load.resp" >/dev/null
    keys=$(redis-cli -p $p DBSIZE)
    rss=$(ps -o rss= -p "$pid")
    printf '%-16s %10s %10.1f\n' "$who" "$keys" "$(echo "$rss / 1024" | bc -l)"
done
echo "(RSS after loading $LOAD keys of 100 bytes)"
stop_servers

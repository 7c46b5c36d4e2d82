#!/usr/bin/env bash
# Worst waits under a sustained write load: hotbackup (durability fsync, checkpoints every
# 10 s) beside Redis 7 with appendonly yes / appendfsync always, run side by side here.
#
#   bench/loop-stall.sh [RUNS]        (default RUNS=3; figures are medians of RUNS runs)
#
# Each run starts a fresh server, writes with redis-benchmark (SET, 50 clients, 600,000
# requests over 1M random keys of 200 bytes) and meanwhile sends a PING every 2 ms from
# another client. A PING needs no fsync: its worst wait is how long the server's loop was
# held (checkpoints, store commits, AOF rewrites). Prints SET/s, the SET latency's p99 and
# max, and the PING's p99.9 and max, for both and the ratio. Needs redis-server, redis-tools
# and python3-redis (installed when missing and running as root). Loopback only; everything
# it starts is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${1:-3}
P_HB=7394; P_REDIS=7395

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-benchmark >/dev/null || need+=(redis-tools)
/usr/bin/python3 -c 'import redis' 2>/dev/null || need+=(python3-redis)
if [ ${#need[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { echo "needs ${need[*]}" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

cargo build --release --locked -q --bin hotbackup
BIN=$PWD/target/release/hotbackup
WORK=$(mktemp -d /var/tmp/hb-stall.XXXXXX)
PID=
cleanup() {
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

. bench/lib.sh   # wait_port, median (the script runs from the repository root)

start() {
    rm -rf "$WORK/$1"; mkdir -p "$WORK/$1"
    if [ "$1" = hb ]; then
        cat >"$WORK/hb/hb.toml" <<EOT
data_dir = "$WORK/hb/data"
[client]
listen = "127.0.0.1:$P_HB"
maxclients = 10000
[durability]
mode = "fsync"
checkpoint_interval = "10s"
[log]
level = "warn"
EOT
        "$BIN" serve --config "$WORK/hb/hb.toml" 2>"$WORK/hb/log" &
        PID=$!; wait_port $P_HB
    else
        redis-server --port $P_REDIS --bind 127.0.0.1 --save '' --appendonly yes \
            --appendfsync always --dir "$WORK/redis" --daemonize no >"$WORK/redis/log" 2>&1 &
        PID=$!; wait_port $P_REDIS
    fi
}

stop() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=; }

# one PORT -> "set_rps set_p99 set_max ping_p999 ping_max"
one() {
    /usr/bin/python3 - "$1" >"$WORK/ping" <<'PY' &
import signal, sys, time, redis
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
r = redis.Redis(port=int(sys.argv[1]))
lat, end = [], time.time() + 600
while not stop and time.time() < end:
    t = time.perf_counter()
    r.ping()
    lat.append((time.perf_counter() - t) * 1000)
    time.sleep(0.002)
lat.sort()
print(f"{lat[int(len(lat) * 0.999)]:.1f} {lat[-1]:.1f}")
PY
    local probe=$!
    local out
    out=$(redis-benchmark -p "$1" -c 50 -n 600000 -t set -r 1000000 -d 200 2>/dev/null | tr '\r' '\n')
    kill -TERM "$probe" 2>/dev/null || true
    wait "$probe" 2>/dev/null || true
    local rps p99 max
    rps=$(echo "$out" | awk '/throughput summary/ {print $3; exit}')
    read -r p99 max < <(echo "$out" | awk '/latency summary/ {getline; getline; print $5, $6; exit}')
    echo "$rps $p99 $max $(cat "$WORK/ping")"
}


declare -A R
for run in $(seq 1 "$RUNS"); do
    for who in hb redis; do
        start $who
        port=$P_HB; [ $who = redis ] && port=$P_REDIS
        R[$who]+="$(one $port)"$'\n'
        stop
    done
    echo "run $run/$RUNS done" >&2
done

col() { echo "${R[$1]}" | awk -v c="$2" 'NF {print $c}' | median; }
printf '\n%-22s %12s %12s %8s\n' "" "hotbackup" "redis-always" "ratio"
i=1
for name in "SET/s" "SET p99 ms" "SET max ms" "PING p99.9 ms" "PING max ms"; do
    hb=$(col hb $i); rd=$(col redis $i)
    printf '%-22s %12.1f %12.1f %7.2fx\n' "$name" "$hb" "$rd" "$(echo "$hb / $rd" | bc -l)"
    i=$((i + 1))
done
echo "(medians of $RUNS runs; redis-benchmark -c 50 -n 600000 -t set -r 1000000 -d 200; PING every 2 ms)"

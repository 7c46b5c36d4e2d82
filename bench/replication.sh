#!/usr/bin/env bash
# Replication benchmark: a hotbackup master+slave pair beside a Redis 7 master+replica pair,
# in this script, on this machine, on loopback.
#
#   bench/replication.sh [RUNS]      (default RUNS=3; throughput figures are medians)
#   N_FULL=5000000 bench/replication.sh    # full-sync size (items of 200 bytes; default 1M)
#   N_CATCHUP=1000000                      # writes made while the slave is stopped
#   SECTIONS="3 4" bench/replication.sh    # run only some of the sections below
#
# Prints:
#   1. durable write throughput with one slave (hotbackup sync=async and sync=durable; Redis
#      appendfsync always + replica), redis-benchmark SET, 50 clients;
#   2. replication lag p50/p99 (time from the master's ack to the value readable on the slave)
#      under a moderate background load (redis-benchmark, 10 clients);
#   3. catch-up after the slave was stopped (SIGSTOP) while N_CATCHUP writes were made, and the
#      master's RSS before / after that stall;
#   4. full sync of N_FULL items of 200 bytes vs Redis's full sync of the same data, and vs the
#      disk's limit (the same bytes written with dd ... conv=fdatasync).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${1:-3}
N_FULL=${N_FULL:-1000000}
N_CATCHUP=${N_CATCHUP:-1000000}
N_TPUT=${N_TPUT:-200000}
HM=7401; HS=7402; HML=7411; HSL=7412   # hotbackup client and link ports
RM=7421; RS=7422                        # redis master and replica

if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
    else
        echo "needs redis-server and redis-tools" >&2; exit 1
    fi
fi
cargo build --release --locked -q
BIN=${HB_BIN:-$PWD/target/release/hotbackup}   # HB_BIN: another build to compare
WORK=$(mktemp -d /var/tmp/hb-repl-bench.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
head -c 32 /dev/urandom | base64 >"$WORK/pair.key"; chmod 600 "$WORK/pair.key"

want() { [[ " ${SECTIONS:-1 2 3 4} " == *" $1 "* ]]; }
. bench/lib.sh   # wait_port, median (the script runs from the repository root)
info_field() { redis-cli -p "$1" INFO replication | tr -d '\r' | awk -F: -v k="$2" '$1==k {print $2}'; }
now() { date +%s.%N; }
rss_mib() { echo "scale=1; $(ps -o rss= -p "$1") / 1024" | bc; }
rps() { redis-benchmark -p "$1" -t set -c "${3:-50}" -n "$2" -r 100000 -d 100 --csv -q 2>/dev/null | awk -F'","' '$1 ~ "SET" {print $2; exit}'; }

hb_config() { # role client link peer_link sync   (store cache: $CACHE, default 256MiB; $MCACHE: the master's)
    {
        echo "role = \"$1\""
        echo "data_dir = \"$WORK/hb-$1\""
        echo "[client]"
        echo "listen = \"127.0.0.1:$2\""
        echo "[link]"
        echo "listen = \"127.0.0.1:$3\""
        echo "peers = [\"127.0.0.1:$4\"]"
        echo "key_file = \"$WORK/pair.key\""
        echo "sync = \"$5\""
        echo "sync_timeout = \"10s\""
        echo "max_retained_bytes = \"8GiB\""
        echo "[store]"
        if [ "$1" = master ]; then echo "cache_size = \"${MCACHE:-${CACHE:-256MiB}}\""; else echo "cache_size = \"${CACHE:-256MiB}\""; fi
        echo "[log]"
        echo "level = \"warn\""
    } >"$WORK/$1.toml"
}

start_hb() { # sync  [keep data]
    [ "${2:-}" = keep ] || rm -rf "$WORK/hb-master" "$WORK/hb-slave"
    hb_config slave $HS $HSL $HML "$1"; hb_config master $HM $HML $HSL "$1"
    "$BIN" serve --config "$WORK/slave.toml" 2>>"$WORK/hb-slave.log" & HB_S=$!; PIDS+=($HB_S)
    "$BIN" serve --config "$WORK/master.toml" 2>>"$WORK/hb-master.log" & HB_M=$!; PIDS+=($HB_M)
    wait_port $HM; wait_port $HS
    for _ in $(seq 1 400); do redis-cli -p $HM INFO replication | grep -q "state=streaming" && return 0; sleep 0.05; done
    echo "hotbackup pair did not start streaming" >&2; tail "$WORK"/hb-*.log >&2; exit 1
}
stop_hb() { kill -CONT $HB_S 2>/dev/null || true; kill $HB_M $HB_S 2>/dev/null || true; wait $HB_M $HB_S 2>/dev/null || true; }
hb_caught_up() { [ "$(info_field $HS slave_repl_offset)" = "$(info_field $HM durable_lsn)" ]; }

start_redis() { # master appendfsync
    rm -rf "$WORK/rm" "$WORK/rs"; mkdir -p "$WORK/rm" "$WORK/rs"
    redis-server --port $RM --bind 127.0.0.1 --save '' --appendonly yes --appendfsync "$1" --dir "$WORK/rm" >"$WORK/rm.log" 2>&1 & R_M=$!; PIDS+=($R_M)
    wait_port $RM
    start_replica
}
start_replica() {
    redis-server --port $RS --bind 127.0.0.1 --save '' --appendonly yes --appendfsync always --dir "$WORK/rs" --replicaof 127.0.0.1 $RM >"$WORK/rs.log" 2>&1 & R_S=$!; PIDS+=($R_S)
    wait_port $RS
    for _ in $(seq 1 2000); do [ "$(info_field $RS master_link_status)" = up ] && return 0; sleep 0.05; done
    echo "redis replica did not come up" >&2; exit 1
}
stop_redis() {
    kill -CONT $R_S 2>/dev/null || true; kill $R_M $R_S 2>/dev/null || true
    # A Redis replica still writing its first AOF after a full sync refuses SIGTERM.
    for _ in $(seq 1 100); do kill -0 $R_M 2>/dev/null || kill -0 $R_S 2>/dev/null || break; sleep 0.05; done
    kill -9 $R_M $R_S 2>/dev/null || true
    wait $R_M $R_S 2>/dev/null || true
}
redis_caught_up() { [ "$(info_field $RS slave_repl_offset)" = "$(info_field $RM master_repl_offset)" ] && [ "$(info_field $RS master_sync_in_progress)" = 0 ]; }

wait_until() { # seconds command...
    local limit=$1; shift
    local t0; t0=$(now)
    while ! "$@"; do
        if [ "$(echo "$(now) - $t0 > $limit" | bc)" = 1 ]; then echo "timed out waiting for $*" >&2; return 1; fi
        sleep 0.02
    done
}

if want 1; then
echo "== 1. durable write throughput with one slave (SET, 50 clients, $N_TPUT requests, median of $RUNS)"
declare -A T
for run in $(seq 1 "$RUNS"); do
    start_hb async; T[hb_async]+="$(rps $HM $N_TPUT) "; stop_hb
    start_hb durable; T[hb_durable]+="$(rps $HM $N_TPUT) "; stop_hb
    start_redis always; T[redis]+="$(rps $RM $N_TPUT) "; stop_redis
done
ha=$(echo ${T[hb_async]} | tr ' ' '\n' | median)
hd=$(echo ${T[hb_durable]} | tr ' ' '\n' | median)
ra=$(echo ${T[redis]} | tr ' ' '\n' | median)
printf '  hotbackup sync=async     %9.0f/s  (%.2fx Redis)\n' "$ha" "$(echo "$ha/$ra" | bc -l)"
printf '  hotbackup sync=durable   %9.0f/s  (%.2fx Redis, %.2fx our async)\n' "$hd" "$(echo "$hd/$ra" | bc -l)" "$(echo "$hd/$ha" | bc -l)"
printf '  Redis always + replica   %9.0f/s\n' "$ra"

fi
if want 2; then
echo "== 2. replication lag under load (10 background clients), 500 probes"
start_hb async
redis-benchmark -p $HM -t set -c 10 -n 100000000 -r 100000 -d 100 -q >/dev/null 2>&1 & BG=$!
sleep 1; hl=$(python3 bench/lagprobe.py $HM $HS 500 10); kill $BG 2>/dev/null || true; wait $BG 2>/dev/null || true
stop_hb
start_redis always
redis-benchmark -p $RM -t set -c 10 -n 100000000 -r 100000 -d 100 -q >/dev/null 2>&1 & BG=$!
sleep 1; rl=$(python3 bench/lagprobe.py $RM $RS 500 10); kill $BG 2>/dev/null || true; wait $BG 2>/dev/null || true
stop_redis
echo "  hotbackup  p50/p99/max ms: $hl"
echo "  Redis      p50/p99/max ms: $rl"

fi
if want 3; then
echo "== 3. catch-up after the slave was stopped for $N_CATCHUP writes; master RSS"
# A small store cache on the master (64 MiB), warmed first with the same key space, so that the
# RSS compared below is the cost of the stalled slave, not of a cache filling up. The slave has
# the default cache (256 MiB; Redis holds the whole data set in memory).
MCACHE=64MiB start_hb async
redis-benchmark -p $HM -t set -c 50 -P 16 -n "$N_CATCHUP" -r 1000000 -d 100 -q >/dev/null 2>&1
wait_until 600 hb_caught_up
before=$(rss_mib $HB_M); kill -STOP $HB_S
redis-benchmark -p $HM -t set -c 50 -P 16 -n $((N_CATCHUP / 2)) -r 1000000 -d 100 -q >/dev/null 2>&1
half=$(rss_mib $HB_M)
redis-benchmark -p $HM -t set -c 50 -P 16 -n $((N_CATCHUP / 2)) -r 1000000 -d 100 -q >/dev/null 2>&1
during=$(rss_mib $HB_M); t0=$(now); kill -CONT $HB_S
wait_until 600 hb_caught_up; hc=$(echo "$(now) - $t0" | bc)
stop_hb
start_redis always
redis-benchmark -p $RM -t set -c 50 -P 16 -n "$N_CATCHUP" -r 1000000 -d 100 -q >/dev/null 2>&1
wait_until 600 redis_caught_up
kill -STOP $R_S
redis-benchmark -p $RM -t set -c 50 -P 16 -n "$N_CATCHUP" -r 1000000 -d 100 -q >/dev/null 2>&1
t0=$(now); kill -CONT $R_S
wait_until 600 redis_caught_up; rc=$(echo "$(now) - $t0" | bc)
stop_redis
printf '  hotbackup catch-up %.2f s; Redis %.2f s (%.2fx)\n' "$hc" "$rc" "$(echo "$hc/$rc" | bc -l)"
echo "  hotbackup master RSS (store cache 64 MiB): $before MiB before the stall, $half MiB after $((N_CATCHUP / 2)) writes, $during MiB after $N_CATCHUP writes with the slave stopped"

fi
if want 4; then
echo "== 4. full sync of $N_FULL items of 200 bytes"
python3 - "$N_FULL" >"$WORK/full.resp" <<'PY'
import sys
n = int(sys.argv[1]); v = b"v" * 200
out = sys.stdout.buffer
for i in range(n):
    k = b"item:%012d" % i
    out.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$200\r\n%s\r\n" % (len(k), k, v))
PY
rm -rf "$WORK/hb-master" "$WORK/hb-slave"
hb_config slave $HS $HSL $HML async; hb_config master $HM $HML $HSL async
"$BIN" serve --config "$WORK/master.toml" 2>>"$WORK/hb-master.log" & HB_M=$!; PIDS+=($HB_M); wait_port $HM
redis-cli -p $HM --pipe <"$WORK/full.resp" >/dev/null
redis-cli -p $HM SAVE >/dev/null
t0=$(now)
"$BIN" serve --config "$WORK/slave.toml" 2>>"$WORK/hb-slave.log" & HB_S=$!; PIDS+=($HB_S); wait_port $HS
wait_until 3600 hb_caught_up; hf=$(echo "$(now) - $t0" | bc)
stop_hb
rm -rf "$WORK/rm" "$WORK/rs"; mkdir -p "$WORK/rm" "$WORK/rs"
redis-server --port $RM --bind 127.0.0.1 --save '' --appendonly yes --appendfsync always --dir "$WORK/rm" >"$WORK/rm.log" 2>&1 & R_M=$!; PIDS+=($R_M)
wait_port $RM
redis-cli -p $RM --pipe <"$WORK/full.resp" >/dev/null
t0=$(now)
start_replica
wait_until 3600 redis_caught_up; rf=$(echo "$(now) - $t0" | bc)
stop_redis
bytes=$(stat -c %s "$WORK/full.resp")
t0=$(now); dd if=/dev/zero of="$WORK/dd.out" bs=1M count=$((bytes / 1048576 + 1)) conv=fdatasync status=none; dl=$(echo "$(now) - $t0" | bc); rm -f "$WORK/dd.out"
printf '  hotbackup %.2f s; Redis %.2f s (%.2fx); dd of the same %d MiB with fdatasync %.2f s\n' \
    "$hf" "$rf" "$(echo "$hf/$rf" | bc -l)" $((bytes / 1048576)) "$dl"
fi

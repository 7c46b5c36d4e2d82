# Helpers shared by the benchmark scripts in bench/ (sourced, not run).

# wait_port PORT: until a server answers PING on PORT (at most 20 s; else exit 1).
wait_port() {
    for _ in $(seq 1 400); do
        redis-cli -p "$1" PING >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "server on port $1 did not come up" >&2; exit 1
}

# median: the median of the numbers on stdin, one per line.
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

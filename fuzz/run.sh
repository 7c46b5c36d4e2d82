#!/usr/bin/env bash
# Runs each fuzz target for a bounded time and prints executions and findings.
#
#   fuzz/run.sh [SECONDS] [TARGET...]   default 60 s per target, every target
#
# Targets: resp_request, resp_value (RESP parsers); link_frame_preauth, link_frame_auth,
# link_msg (the hot-backup link); journal_segment, tape, savefile (files); config.
# The bodies of all but the RESP ones are in src/fuzzing.rs (input layouts in its doc).
#
# Environment: FUZZ_SANITIZER=address|none (default address), FUZZ_JOBS (default 1).
# Needs cargo-fuzz (`cargo install cargo-fuzz`). The toolchain here is stable; cargo fuzz
# passes -Z flags to rustc, which stable accepts with RUSTC_BOOTSTRAP=1 (set below).
#
# libFuzzer reads the committed seeds in fuzz/corpus/<target> and writes what it discovers to
# fuzz/corpus-work/<target> (not committed), so the seed corpus stays small and reviewed.
# A crash is saved as fuzz/artifacts/<target>/crash-*; make it a regression test: copy it into
# fuzz/corpus/<target>/ as crash_<what>, which `cargo test` replays (tests/resp_corpus.rs for
# the RESP targets, tests/fuzz_corpus.rs for the others), and fix it.
set -euo pipefail

secs="${1:-60}"
sanitizer="${FUZZ_SANITIZER:-address}"
jobs="${FUZZ_JOBS:-1}"
fuzz_dir="$(cd "$(dirname "$0")" && pwd)"
cd "$fuzz_dir/.."
export RUSTC_BOOTSTRAP=1

all=(resp_request resp_value link_frame_preauth link_frame_auth link_msg journal_segment tape
    savefile config)
if [ $# -gt 1 ]; then
    targets=("${@:2}")
else
    targets=("${all[@]}")
fi
failed=0
summary=()
for t in "${targets[@]}"; do
    work="$fuzz_dir/corpus-work/$t"
    arts="$fuzz_dir/artifacts/$t"
    log="$fuzz_dir/artifacts/$t.log"
    mkdir -p "$work" "$arts"
    crashes_before=$(find "$arts" -type f | wc -l)

    # The RESP dictionary helps the RESP targets only; the file targets need longer inputs.
    dict=()
    case "$t" in
    resp_*) dict=(-dict="$fuzz_dir/resp.dict") ;;
    esac
    max_len=4096
    case "$t" in
    journal_segment | tape | savefile | config) max_len=16384 ;;
    esac

    echo "== $t: ${secs}s, sanitizer=$sanitizer, jobs=$jobs (log: $log)"
    # -a: debug assertions (and overflow checks) on, so arithmetic overflow is a finding too.
    set +e
    cargo fuzz run -a --sanitizer "$sanitizer" "$t" "$work" "$fuzz_dir/corpus/$t" -- \
        -max_total_time="$secs" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
        "${dict[@]}" -print_final_stats=1 \
        $([ "$jobs" -gt 1 ] && echo "-fork=$jobs") >"$log" 2>&1
    rc=$?
    set -e

    # With -fork each child prints its own stats: sum them.
    execs=$( (grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" || true) |
        awk '{s+=$NF} END {print s+0}')
    cov=$( (grep -o 'cov: [0-9]*' "$log" || true) | tail -1)
    corpus=$(find "$work" -type f | wc -l)
    crashes_after=$(find "$arts" -type f | wc -l)
    new=$((crashes_after - crashes_before))
    echo "   executions: ${execs:-?}  ${cov:-}  work corpus: $corpus files  exit: $rc"
    if [ "$new" -gt 0 ] || [ "$rc" -ne 0 ]; then
        echo "   FINDINGS: $new new artifact(s) in $arts"
        grep -E 'panicked|ERROR: |SUMMARY' "$log" | head -5 | sed 's/^/   /' || true
        failed=1
        summary+=("$(printf '%-20s %12s execs  %-10s findings: %s' "$t" "${execs:-?}" "${cov:-}" "$new")")
    else
        echo "   findings: none"
        summary+=("$(printf '%-20s %12s execs  %-10s findings: none' "$t" "${execs:-?}" "${cov:-}")")
    fi
done
echo "== summary (${secs}s per target)"
printf '   %s\n' "${summary[@]}"
exit "$failed"

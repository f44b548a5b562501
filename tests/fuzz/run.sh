#!/usr/bin/env bash
# run.sh -- build revd's libFuzzer targets with clang and run each for a bounded time.
#
#   tests/fuzz/run.sh [SECONDS] [TARGET...]
#
# SECONDS per target (default 60) is passed as -max_total_time. TARGETs default to all
# (request get_path index config response redis_value crl api). Builds in build-fuzz/ (or $REVD_FUZZ_BUILD).
# Each target starts from the committed seeds in tests/fuzz/corpus/fuzz_TARGET/ and writes
# what it finds to a scratch corpus in the build directory, never to the seeds. Crash
# reproducers go to tests/fuzz/crashes/ (not committed; see .gitignore). Exits 1 if any
# target crashed, leaked or timed out; its log is printed.
set -euo pipefail

secs=${1:-60}
[[ $secs =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2; }
shift || true
targets=("$@")
((${#targets[@]})) || targets=(request get_path index config response redis_value crl api)

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${REVD_FUZZ_BUILD:-$root/build-fuzz}
crashes=$here/crashes

command -v clang >/dev/null || { echo "run.sh: clang is needed for libFuzzer" >&2; exit 2; }
cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DREVD_FUZZ=ON -DREVD_SANITIZE=OFF -DREVD_WERROR=ON >/dev/null
make -C "$build" -j"$(nproc)" "${targets[@]/#/fuzz_}" >/dev/null

mkdir -p "$crashes"
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
for t in "${targets[@]}"; do
    exe=$build/tests/fuzz/fuzz_$t
    seeds=$here/corpus/fuzz_$t
    scratch=$build/fuzz-corpus/fuzz_$t
    log=$build/fuzz_$t.log
    mkdir -p "$scratch"
    dict=()
    [[ -f $here/$t.dict ]] && dict=(-dict="$here/$t.dict")
    echo "fuzz_$t: ${secs}s"
    if "$exe" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
        -print_final_stats=1 -artifact_prefix="$crashes/fuzz_$t-" "${dict[@]}" \
        "$scratch" "$seeds" >"$log" 2>&1; then
        grep -E '^stat::(number_of_executed_units|new_units_added):' "$log" | sed 's/^/    /'
    else
        status=1
        echo "fuzz_$t: FAILED; log $log; reproducer in $crashes/" >&2
        grep -A40 -E 'ERROR:|check failed|runtime error' "$log" | head -60 >&2 || tail -40 "$log" >&2
    fi
done
exit $status

# bench/lib.sh -- what the benchmark drivers' run.sh scripts (bench/api, bench/crl,
# bench/redis) share: logging, the Release build, the machine record, the record of the
# source the binary came from, and running the Python driver under a time bound.
#
# Sourced after the script has set PROG, HERE, ROOT, OUT (the results directory, made
# here), SKIP_BUILD (0 or 1) and PYARGS (the driver's options).

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { echo "$PROG: $*" >&2; exit 1; }

# Makes OUT absolute and present; sets REVD, building build-release/revd unless
# SKIP_BUILD.
bench_prepare() {
    mkdir -p "$OUT"
    OUT=$(cd -- "$OUT" && pwd -P)
    REVD=$ROOT/build-release/revd
    if ((!SKIP_BUILD)); then
        log "building revd (Release) in build-release/"
        timeout 600 cmake -S "$ROOT" -B "$ROOT/build-release" -DCMAKE_BUILD_TYPE=Release \
            -DREVD_TESTS=OFF >"$OUT/build.log" 2>&1 ||
            { tail -20 "$OUT/build.log"; die "cmake failed"; }
        timeout 1800 cmake --build "$ROOT/build-release" -j"$(nproc)" --target revd \
            >>"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; die "build failed"; }
    fi
    [[ -x $REVD ]] || die "$REVD not found (drop --skip-build)"
}

# The machine record's first lines: when, and on what.
bench_machine_head() {
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nproc: $(nproc)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "kernel: $(uname -srm)"
    echo "openssl: $(openssl version)"
}

# Its last lines: the binary and where it came from, the load, the options.
bench_machine_tail() {
    local cache=$ROOT/build-release/CMakeCache.txt
    echo "compiler: $(grep -m1 'CMAKE_C_COMPILER:' "$cache" | cut -d= -f2) $(cc --version | head -1)"
    echo "build type: $(grep -m1 'CMAKE_BUILD_TYPE:' "$cache" | cut -d= -f2)"
    echo "revd: $("$REVD" version 2>&1 | head -1)"
    echo "revd commit: $(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo '?')$(
        git -C "$ROOT" diff --quiet HEAD -- src CMakeLists.txt 2>/dev/null &&
            [[ -z $(git -C "$ROOT" ls-files --others --exclude-standard -- src) ]] ||
            echo ' + uncommitted changes in src/ (saved in src.diff)')$( ((SKIP_BUILD)) &&
            echo ' (at run time: --skip-build, the binary may be older)')"
    echo "revd binary: $REVD, built $(stat -c %y "$REVD" | cut -d. -f1), sha256 $(sha256sum "$REVD" | cut -c1-16)"
    echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "busiest processes at start (%cpu over their lifetime, elapsed, command):"
    ps -eo pcpu=,etime=,comm= --sort=-pcpu | head -5 | sed 's/^/    /'
    echo "options: ${PYARGS[*]:-(defaults)}"
}

# What was measured: the tree the binary was built from (others may be editing src/).
bench_src_diff() {
    {
        git -C "$ROOT" diff HEAD -- src CMakeLists.txt 2>/dev/null || true
        git -C "$ROOT" ls-files --others --exclude-standard -- src 2>/dev/null |
            while read -r f; do git -C "$ROOT" diff --no-index /dev/null "$f" 2>/dev/null || true; done
    } >"$OUT/src.diff"
    [[ -s $OUT/src.diff ]] || rm -f "$OUT/src.diff"
}

# Runs DRIVER.py in the foreground for at most SECONDS (each of its own commands has a
# timeout too), its output in run.log; then the load at the end. Exits with its status.
bench_run_driver() {
    local seconds=$1 driver=$2 status
    set +e
    (cd "$ROOT" && timeout --foreground -k 30 "$seconds" \
        python3 "$HERE/$driver" --revd "$REVD" --out "$OUT" "${PYARGS[@]}") 2>&1 |
        tee "$OUT/run.log"
    status=${PIPESTATUS[0]}
    set -e
    {
        echo "loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg)"
        echo "busiest processes at end:"
        ps -eo pcpu=,etime=,comm= --sort=-pcpu | head -5 | sed 's/^/    /'
    } | tee -a "$OUT/machine.txt"
    log "results in $OUT"
    exit "$status"
}

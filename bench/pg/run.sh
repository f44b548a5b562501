#!/usr/bin/env bash
# bench/pg/run.sh -- revd with its PostgreSQL store at one million certificates.
#
#   (a) lookups per second: revd answering only cache misses (distinct serials: a lookup
#       and a signature each, wrk), and PostgreSQL alone running revd's SELECT (pgbench,
#       1 and 2 connections, plain and pipelined);
#   (b) `revd import --index` of a synthetic one-million-line index.txt;
#   (c) commit -> revoked served: 200 revocations by SQL UPDATE, each polled over a
#       keep-alive connection until revd answers revoked (median, p90, p99, max).
#
# Starts its own PostgreSQL (the integration tests' pg_harness: initdb in a temporary
# directory, 127.0.0.1, trust, fsync off) and a Release revd from build-release/. Every
# measurement is repeated (--reps, default 3). Results: bench/pg/results/<date>-<time>/
# (machine.txt, results.jsonl, summary.md, run.log). See bench/pg/RESULTS.md.
#
# All traffic goes to 127.0.0.1; every run is bounded in time. Only processes this script
# starts are stopped, by pid.
set -euo pipefail

PROG=${0##*/}
HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd -- "$HERE/../.." && pwd -P)

usage() {
    cat >&2 <<EOF
usage: $PROG [options]
  --quick            a smoke run (< 1 min): 100000 rows, 1 repetition, 3 s points
  --rows N           certificates in the table (default 1000000)
  --reps N           repetitions of every measurement (default 3)
  --duration S       seconds per wrk / pgbench point (default 10)
  --conns N          wrk connections for (a) (default 64)
  --threads N        wrk threads for (a) (default 2)
  --workers N|auto   revd event loops (default auto: one per core)
  --distinct N       distinct serials per measured wrk run (default 400000)
  --revocations N    revocations per run in (c) (default 200)
  --parts LIST       any of a,b,c (default a,b,c)
  --skip-build       use the existing build-release/revd
  --out DIR          results directory (default bench/pg/results/<date>-<time>)
  --keep             keep the temporary directory
  -h, --help         this text
EOF
    exit 2
}

PYARGS=() SKIP_BUILD=0 OUT=""
while (($#)); do
    case $1 in
        --quick) PYARGS+=(--rows 100000 --reps 1 --duration 3 --warmup 1 --distinct 60000
                          --warm-distinct 20000 --revocations 20); shift ;;
        --rows|--reps|--duration|--conns|--threads|--workers|--distinct|--revocations|--parts)
            PYARGS+=("$1" "$2"); shift 2 ;;
        --keep) PYARGS+=(--keep); shift ;;
        --skip-build) SKIP_BUILD=1; shift ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) usage ;;
        *) echo "$PROG: unknown option $1" >&2; usage ;;
    esac
done

for tool in wrk pgbench psql openssl python3 cmake make; do
    command -v "$tool" >/dev/null || { echo "$PROG: $tool is required" >&2; exit 1; }
done

STAMP=$(date +%Y%m%d-%H%M%S)
OUT=${OUT:-$HERE/results/$STAMP}
mkdir -p "$OUT"
OUT=$(cd -- "$OUT" && pwd -P)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { echo "$PROG: $*" >&2; exit 1; }

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nproc: $(nproc)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "kernel: $(uname -srm)"
    echo "postgresql: $(pgbench --version | awk '{print $3}') (pgbench); server from pg_harness"
    echo "wrk: $(wrk -v 2>&1 | head -1 | awk '{print $2}')"
    echo "revd commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || echo ' + uncommitted changes in src/')"
    echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "busiest processes at start (%cpu over their lifetime, elapsed, command):"
    ps -eo pcpu=,etime=,comm= --sort=-pcpu | head -5 | sed 's/^/    /'
    echo "options: ${PYARGS[*]:-(defaults)}"
} | tee "$OUT/machine.txt"

REVD=$ROOT/build-release/revd
if ((!SKIP_BUILD)); then
    log "building revd (Release) in build-release/"
    cmake -S "$ROOT" -B "$ROOT/build-release" -DCMAKE_BUILD_TYPE=Release -DREVD_TESTS=OFF \
        >"$OUT/build.log" 2>&1 || { tail -20 "$OUT/build.log"; die "cmake failed"; }
    make -C "$ROOT/build-release" -j"$(nproc)" revd >>"$OUT/build.log" 2>&1 ||
        { tail -30 "$OUT/build.log"; die "build failed"; }
fi
[[ -x $REVD ]] || die "$REVD not found (drop --skip-build)"

# The driver runs in the foreground; bounded: each of its steps has a timeout.
timeout --foreground -k 30 7200 \
    python3 "$HERE/pgbench_revd.py" --revd "$REVD" --out "$OUT" "${PYARGS[@]}" 2>&1 |
    tee "$OUT/run.log"
status=${PIPESTATUS[0]}
echo "loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/machine.txt"
log "results in $OUT"
exit "$status"

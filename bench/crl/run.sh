#!/usr/bin/env bash
# bench/crl/run.sh -- revd's CRL builds: `revd crl` at 10k, 100k and 1M revoked entries.
#
#   full     full CRL: the log's read and "built and signed" ms, CRL bytes, the process's
#            wall time and peak RSS (/usr/bin/time -v), and the same process with the
#            issuer's `crl = no` as the memory baseline; index.txt and PostgreSQL stores,
#            EC P-256 CA (and RSA-2048 at 1M)
#   delta    a delta CRL after one more revocation, on a full CRL of 100k and 1M entries
#   limits   openssl speed -seconds 3 ecdsap256 (rsa2048); openssl crl DER -> DER of revd's
#            CRL; openssl ca -gencrl on the same index.txt (bounded by --gencrl-timeout)
#   trace    strace -tt -T on one 1M full build: what follows the build (publish, --out)
#   pgscan   PostgreSQL alone on revd's scan at 1M (psql), and two variants
#   mem      valgrind massif on the 1M full build: what is live at the peak
#   profile  perf record -e cpu-clock on the 1M full build: where the CPU goes
#
# Starts its own PostgreSQL (tests/integration/pg_harness.py: 127.0.0.1, a temp directory,
# fsync off; restarted with shared_buffers=512MB as bench/pg does) and uses a Release revd
# from build-release/. Every timed run is repeated (--reps, default 3). Results:
# bench/crl/results/<date>-<time>/ (machine.txt, results.jsonl, summary.md, run.log, and
# logs/ with every command's raw output). See bench/crl/RESULTS.md.
#
# All traffic goes to 127.0.0.1; every command has a timeout. Only processes this script
# starts are stopped, by pid.
set -euo pipefail

PROG=${0##*/}
HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd -- "$HERE/../.." && pwd -P)

usage() {
    cat >&2 <<EOF
usage: $PROG [options]
  --quick               a smoke run (< 1 min): 1000 and 10000 entries, delta at 10000,
                        1 repetition, 1 s openssl speed, no trace, pgscan, massif or perf,
                        no RSA
  --sizes LIST          revoked entries for the full CRLs (default 10000,100000,1000000)
  --delta-sizes LIST    entries in the base CRL for the delta runs (default 100000,1000000)
  --stores LIST         index,pg (default both)
  --reps N              repetitions of every timed run (default 3)
  --parts LIST          any of full,delta,limits,trace,pgscan,mem,profile (default all)
  --no-rsa              skip the RSA-2048 CA at the largest size
  --speed-seconds S     openssl speed -seconds (default 3)
  --gencrl-timeout S    bound on each openssl ca -gencrl (default 600)
  --skip-build          use the existing build-release/revd
  --out DIR             results directory (default bench/crl/results/<date>-<time>)
  --keep                keep the temporary directory (CAs, index files, CRLs)
  -h, --help            this text
EOF
    exit 2
}

PYARGS=() SKIP_BUILD=0 OUT="" RSA=1
while (($#)); do
    case $1 in
        --quick) PYARGS+=(--sizes 1000,10000 --delta-sizes 10000 --reps 1 --speed-seconds 1
                          --parts full,delta,limits); RSA=0; shift ;;
        --sizes|--delta-sizes|--stores|--reps|--parts|--speed-seconds|--gencrl-timeout)
            PYARGS+=("$1" "$2"); shift 2 ;;
        --no-rsa) RSA=0; shift ;;
        --keep) PYARGS+=(--keep); shift ;;
        --skip-build) SKIP_BUILD=1; shift ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) usage ;;
        *) echo "$PROG: unknown option $1" >&2; usage ;;
    esac
done
((RSA)) && PYARGS+=(--rsa)

for tool in openssl psql python3 cmake make /usr/bin/time timeout; do
    command -v "$tool" >/dev/null || { echo "$PROG: $tool is required" >&2; exit 1; }
done

STAMP=$(date +%Y%m%d-%H%M%S)
OUT=${OUT:-$HERE/results/$STAMP}
mkdir -p "$OUT"
OUT=$(cd -- "$OUT" && pwd -P)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { echo "$PROG: $*" >&2; exit 1; }

REVD=$ROOT/build-release/revd
if ((!SKIP_BUILD)); then
    log "building revd (Release) in build-release/"
    cmake -S "$ROOT" -B "$ROOT/build-release" -DCMAKE_BUILD_TYPE=Release -DREVD_TESTS=OFF \
        >"$OUT/build.log" 2>&1 || { tail -20 "$OUT/build.log"; die "cmake failed"; }
    make -C "$ROOT/build-release" -j"$(nproc)" revd >>"$OUT/build.log" 2>&1 ||
        { tail -30 "$OUT/build.log"; die "build failed"; }
fi
[[ -x $REVD ]] || die "$REVD not found (drop --skip-build)"

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nproc: $(nproc)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "kernel: $(uname -srm)"
    echo "filesystem of the temp dir: $(df -T "${TMPDIR:-/tmp}" | awk 'NR == 2 {print $2, $1}')"
    echo "openssl: $(openssl version)"
    echo "postgresql: $(psql --version | awk '{print $3}') (psql); server from pg_harness"
    echo "valgrind: $(valgrind --version 2>/dev/null || echo none)"
    echo "perf: $(perf --version 2>/dev/null || echo none)"
    echo "python: $(python3 --version 2>&1 | awk '{print $2}')"
    echo "compiler: $(grep -m1 'CMAKE_C_COMPILER:' "$ROOT/build-release/CMakeCache.txt" | cut -d= -f2) $(cc --version | head -1)"
    echo "build type: $(grep -m1 'CMAKE_BUILD_TYPE:' "$ROOT/build-release/CMakeCache.txt" | cut -d= -f2)"
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
} | tee "$OUT/machine.txt"
# what was measured: the tree the binary was built from (others may be editing src/)
{
    git -C "$ROOT" diff HEAD -- src CMakeLists.txt 2>/dev/null || true
    git -C "$ROOT" ls-files --others --exclude-standard -- src 2>/dev/null |
        while read -r f; do git -C "$ROOT" diff --no-index /dev/null "$f" 2>/dev/null || true; done
} >"$OUT/src.diff"
[[ -s $OUT/src.diff ]] || rm -f "$OUT/src.diff"

# The driver runs in the foreground; bounded: each of its commands has a timeout too.
set +e
(cd "$ROOT" && timeout --foreground -k 30 10800 \
    python3 "$HERE/crlbench.py" --revd "$REVD" --out "$OUT" "${PYARGS[@]}") 2>&1 |
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

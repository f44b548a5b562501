#!/usr/bin/env bash
# bench/api/run.sh -- revd's revocation API ([api], POST /v1/revoke over mutual TLS).
#
#   keepalive  N sequential revocations over ONE kept-alive mTLS connection: the client's
#              wall time per call and the live_ms revd reports (p50/p90/p99/max)
#   newconn    the same with a new TLS connection per call (handshake included), TLS 1.3
#              as negotiated by default, and once with the client limited to TLS 1.2
#   visible    two revd instances on one database (A with [api], B without): from A's 200
#              until B answers revoked to an OCSP GET (polled every 1 ms, given up at 2 s);
#              and A's own first OCSP answer after its 200
#   db         the database floor: revd's UPDATE, and its whole transaction, in one psql
#              session with \timing
#   cli        `revd revoke --dsn ...`, one process per call; and `revd version`
#   handshake  bare TLS handshakes (client certificate) to the API port: Python and
#              `openssl s_time -new`, with revd's CPU per handshake
#
# Starts its own PostgreSQL (tests/integration/pg_harness.py: initdb in a temp directory,
# 127.0.0.1, trust, fsync=off and synchronous_commit=off; --durable turns both on) and two
# Release revds from build-release/. Results: bench/api/results/<date>-<time>/
# (machine.txt, results.jsonl, summary.md, run.log, logs/). See bench/api/RESULTS.md.
#
# All traffic goes to 127.0.0.1; every command and HTTP call has a timeout and every loop
# is bounded. Only processes this script starts are stopped, by pid.
set -euo pipefail

PROG=${0##*/}
HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd -- "$HERE/../.." && pwd -P)

usage() {
    cat >&2 <<EOF
usage: $PROG [options]
  --quick              a smoke run (< 30 s after the build): 50 calls, 1 repetition, 30
                       new connections, 30 polled revocations, 1 s of handshakes
  --n N                calls per kept-alive repetition (default 300)
  --n-newconn N        calls per new-connection repetition (default 300)
  --reps N             repetitions of keepalive and newconn (default 3)
  --n-visible N        revocations polled on the other instance (default 100)
  --n-own N            revocations whose first OCSP answer is asked of A itself (default 30)
  --n-db N             statements / transactions for the database floor (default 300)
  --n-cli N            revd revoke CLI calls (default 100)
  --hs-seconds S       seconds of handshakes, Python and openssl s_time each (default 5)
  --workers N          revd event loops per instance (default 2)
  --parts LIST         any of keepalive,newconn,visible,db,cli,handshake (default all)
  --durable            PostgreSQL with fsync=on, synchronous_commit=on, full_page_writes=on
  --skip-build         use the existing build-release/revd
  --out DIR            results directory (default bench/api/results/<date>-<time>)
  --keep               keep the temporary directory (PKI, TLS files, configurations)
  -h, --help           this text
Put --quick first: later options override it.
EOF
    exit 2
}

PYARGS=() SKIP_BUILD=0 OUT=""
while (($#)); do
    case $1 in
        --quick) PYARGS+=(--n 50 --n-newconn 30 --reps 1 --n-visible 30 --n-own 10 --n-db 50
                          --n-cli 20 --n-version 10 --hs-seconds 1); shift ;;
        --n|--n-newconn|--reps|--n-visible|--n-own|--n-db|--n-cli|--hs-seconds|--workers|--parts)
            (($# >= 2)) || usage; PYARGS+=("$1" "$2"); shift 2 ;;
        --durable|--keep) PYARGS+=("$1"); shift ;;
        --skip-build) SKIP_BUILD=1; shift ;;
        --out) (($# >= 2)) || usage; OUT=$2; shift 2 ;;
        -h|--help) usage ;;
        *) echo "$PROG: unknown option $1" >&2; usage ;;
    esac
done

for tool in openssl psql python3 cmake timeout; do
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
    timeout 600 cmake -S "$ROOT" -B "$ROOT/build-release" -DCMAKE_BUILD_TYPE=Release \
        -DREVD_TESTS=OFF >"$OUT/build.log" 2>&1 || { tail -20 "$OUT/build.log"; die "cmake failed"; }
    timeout 1800 cmake --build "$ROOT/build-release" -j"$(nproc)" --target revd \
        >>"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; die "build failed"; }
fi
[[ -x $REVD ]] || die "$REVD not found (drop --skip-build)"

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nproc: $(nproc)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "kernel: $(uname -srm)"
    echo "openssl: $(openssl version)"
    echo "postgresql: $(psql --version | awk '{print $3}') (psql); server from pg_harness"
    echo "python: $(python3 --version 2>&1 | awk '{print $2}'), $(python3 -c 'import ssl; print(ssl.OPENSSL_VERSION)')"
    echo "compiler: $(grep -m1 'CMAKE_C_COMPILER:' "$ROOT/build-release/CMakeCache.txt" | cut -d= -f2) $(cc --version | head -1)"
    echo "build type: $(grep -m1 'CMAKE_BUILD_TYPE:' "$ROOT/build-release/CMakeCache.txt" | cut -d= -f2)"
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
(cd "$ROOT" && timeout --foreground -k 30 900 \
    python3 "$HERE/apibench.py" --revd "$REVD" --out "$OUT" "${PYARGS[@]}") 2>&1 |
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

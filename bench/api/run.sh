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
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_prepare
{
    bench_machine_head
    echo "postgresql: $(psql --version | awk '{print $3}') (psql); server from pg_harness"
    echo "python: $(python3 --version 2>&1 | awk '{print $2}'), $(python3 -c 'import ssl; print(ssl.OPENSSL_VERSION)')"
    bench_machine_tail
} | tee "$OUT/machine.txt"
bench_src_diff
bench_run_driver 900 apibench.py

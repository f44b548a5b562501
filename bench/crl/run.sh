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
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_prepare
{
    bench_machine_head
    echo "filesystem of the temp dir: $(df -T "${TMPDIR:-/tmp}" | awk 'NR == 2 {print $2, $1}')"
    echo "postgresql: $(psql --version | awk '{print $3}') (psql); server from pg_harness"
    echo "valgrind: $(valgrind --version 2>/dev/null || echo none)"
    echo "perf: $(perf --version 2>/dev/null || echo none)"
    echo "python: $(python3 --version 2>&1 | awk '{print $2}')"
    bench_machine_tail
} | tee "$OUT/machine.txt"
bench_src_diff
bench_run_driver 10800 crlbench.py

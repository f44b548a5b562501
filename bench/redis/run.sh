#!/usr/bin/env bash
# bench/redis/run.sh -- revd with its Redis tier (L2) and pre-signer. See bench/redis/RESULTS.md.
#
#   1 cached   cached answers/s, revd (Redis tier configured) vs nginx, same DER bytes, GET
#              and POST, all cores: bench/run.sh --parts cached --layouts shared
#   2 l2       the cost of an L1 miss served from Redis (cache_entries = 16, Redis filled by
#              the pre-signer) against L1 hits and against L1 miss + PostgreSQL + signature
#   3 presign  pre-signing rate from an empty Redis (N certificates) vs openssl speed
#   4 million  time to pre-sign one million certificates; Redis bytes per key
#   4b recheck the pre-signer's steady state: back-to-back rounds over a million fresh answers
#   5 l1mem    revd RSS per answer with one million answers in L1
#
# Starts its own redis-server (127.0.0.1, free port, --save '' --appendonly no) and
# PostgreSQL (part 2), and a Release revd from build-release/. Every measurement is
# repeated (--reps, default 3). Results: bench/redis/results/<date>-<time>/ (machine.txt,
# results.jsonl, summary.md, run.log; part 1's bench/run.sh files in cached/).
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
  --quick              a smoke run (< 2 min): 20 000 certificates for 2 and 3, 50 000 for 4
                       and 5, 1 repetition, 2 s points, 2 s openssl speed, no idle wait,
                       bench/run.sh --quick for 1
  --reps N             repetitions of every measurement (default 3)
  --n N                certificates for parts 2 and 3 (default 100000)
  --million N          certificates for parts 4 and 5 (default 1000000)
  --duration S         seconds per measured wrk point in 2 (default 10)
  --warmup S           seconds of warm-up before each point in 2 (default 2)
  --conns N            wrk connections in 2 and 5 (default 64)
  --threads N          wrk threads in 2 and 5 (default 2)
  --speed-seconds S    openssl speed -seconds (default 5)
  --idle-wait S        before each point or round, wait up to S s for other processes'
                       load to drop below 15% of a core (default 15)
  --mem-reps N         repetitions of 5 (default 1: a fill from Redis takes minutes)
  --l1-sources LIST    where 5's answers come from: redis,sign (default both)
  --l2-variants LIST   2's revds (default l1-hit,l2-hit,l2-hit-nocert,miss-pg-sign,miss-index-sign)
  --cached-conns "A B" connection counts for 1 (default "64")
  --cached-args "..."  more options for bench/run.sh in 1
  --parts LIST         any of cached,l2,presign,million,recheck,l1mem (default all;
                       recheck and l1mem use the answers million leaves in Redis, or
                       pre-sign them first)
  --skip-build         use the existing build-release/revd
  --out DIR            results directory (default bench/redis/results/<date>-<time>)
  --keep               keep the temporary directory
  -h, --help           this text
EOF
    exit 2
}

PYARGS=() SKIP_BUILD=0 OUT=""
while (($#)); do
    case $1 in
        --quick) PYARGS+=(--quick --n 20000 --million 50000 --reps 1 --duration 2 --warmup 1
                          --speed-seconds 2 --idle-wait 0 --cached-conns 64); shift ;;
        --reps|--n|--million|--duration|--warmup|--conns|--threads|--speed-seconds|--idle-wait|\
        --mem-reps|--l1-sources|--l2-variants|--cached-conns|--cached-args|--parts)
            PYARGS+=("$1" "$2"); shift 2 ;;
        --keep) PYARGS+=(--keep); shift ;;
        --skip-build) SKIP_BUILD=1; shift ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) usage ;;
        *) echo "$PROG: unknown option $1" >&2; usage ;;
    esac
done

for tool in wrk nginx redis-server redis-cli pgbench psql openssl curl python3 cmake make taskset ss; do
    command -v "$tool" >/dev/null || { echo "$PROG: $tool is required" >&2; exit 1; }
done

STAMP=$(date +%Y%m%d-%H%M%S)
OUT=${OUT:-$HERE/results/$STAMP}
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_prepare
{
    bench_machine_head
    echo "redis-server: $(redis-server --version | awk '{print $3}')"
    echo "postgresql: $(pgbench --version | awk '{print $3}') (pgbench); server from pg_harness"
    echo "wrk: $(wrk -v 2>&1 | head -1 | awk '{print $2}')"
    bench_machine_tail
} | tee "$OUT/machine.txt"
bench_src_diff
bench_run_driver 7200 redisbench.py

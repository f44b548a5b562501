#!/usr/bin/env bash
# bench/run.sh -- revd benchmark harness. See bench/README.md.
#
#   (a) cached (pre-signed) answers: revd vs nginx serving the same DER bytes as a static
#       file, GET and POST, HTTP/1.1 keep-alive, wrk, two CPU layouts, several connection
#       counts, repeated; median and range.
#   (b) live signing (revd --nonce sign, a distinct nonce per request) vs `openssl speed`,
#       for ECDSA P-256, RSA-2048 and Ed25519 responder keys.
#   (c) profile of the cached path: syscalls, context switches and CPU per request
#       (perf stat, software events) for both servers, and instructions per request with
#       the top functions by self cost (valgrind --tool=callgrind, one worker).
#
# All traffic goes to 127.0.0.1; every load run is bounded in time (wrk -d, timeouts).
# Only processes this script starts are stopped, by pid.
set -euo pipefail

PROG=${0##*/}
BENCH_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd -- "$BENCH_DIR/.." && pwd -P)
PY=(python3 "$BENCH_DIR/ocspbench.py")

usage() {
    cat >&2 <<EOF
usage: $PROG [options]
  --quick              short run (< 2 min on an idle machine): 2 s points, 1 s warm-up,
                       1 repetition, 64 connections, 1 s openssl speed, 1 s profile runs,
                       perf stat in the split layout only, no idle wait, no retries
  --duration S         seconds per measured point (default 10)
  --warmup S           seconds of warm-up before each point (default 2)
  --reps N             repetitions of every point (default 3)
  --conns "A B"        connection counts for the cached path (default "16 64")
  --sign-conns "A"     connection counts for live signing (default "64")
  --speed-seconds S    openssl speed -seconds (default 5)
  --cg-seconds S       wrk duration of each perf/callgrind run in (c) (default 5)
  --nonce-reqs N       distinct nonce'd requests generated for (b) (default 20000)
  --parts LIST         any of cached,sign,profile (default all three)
  --layouts LIST       any of split,shared (default both)
  --keys LIST          responder key types for (b): any of ec,rsa,ed25519 (default all)
  --server-cpu C       the server's CPU in the split layout (default 1)
  --client-cpu C       wrk's CPU in the split layout (default 0)
  --idle-wait S        before each point, wait up to S s for other processes' CPU load
                       to drop below 15% of a core (default 30; quick: 0)
  --retries N          measure a point again, up to N times, when other processes used
                       more than 10% of a core during it; the least disturbed run is kept
                       (default 2; quick: 0)
  --skip-build         use the existing build-release/revd
  --revd-config FILE   also pass --config FILE to every revd serve (an INI file read
                       before the flags, e.g. a [redis] section: bench/redis/ uses it)
  --out DIR            results directory (default bench/results/<date>-<time>)
  --keep               keep the temporary directory (PKIs, logs, callgrind files)
  -h, --help           this text
EOF
    exit 2
}

DURATION=10 WARMUP=2 REPS=3 CONNS="16 64" SIGN_CONNS="64" SPEED_SECONDS=5 CG_SECONDS=5
NONCE_REQS=20000 PARTS="cached,sign,profile" LAYOUTS="split,shared" SERVER_CPU=1 CLIENT_CPU=0
SKIP_BUILD=0 OUT="" KEEP=0 REVD_CONFIG=() KEYS="ec,rsa,ed25519" PROFILE_WARMUP=1 SIGN_WARMUP="" IDLE_WAIT=30 RETRIES=2 PERF_LAYOUTS=""
while (($#)); do
    case $1 in
        --quick) DURATION=2 WARMUP=1 REPS=1 CONNS="64" SIGN_CONNS="64" SPEED_SECONDS=1 CG_SECONDS=1
                 PROFILE_WARMUP=0 SIGN_WARMUP=0 NONCE_REQS=5000 IDLE_WAIT=0 RETRIES=0
                 PERF_LAYOUTS="split"; shift ;;
        --idle-wait) IDLE_WAIT=$2; shift 2 ;;
        --retries) RETRIES=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --reps) REPS=$2; shift 2 ;;
        --conns) CONNS=$2; shift 2 ;;
        --sign-conns) SIGN_CONNS=$2; shift 2 ;;
        --speed-seconds) SPEED_SECONDS=$2; shift 2 ;;
        --cg-seconds) CG_SECONDS=$2; shift 2 ;;
        --nonce-reqs) NONCE_REQS=$2; shift 2 ;;
        --parts) PARTS=$2; shift 2 ;;
        --layouts) LAYOUTS=$2; shift 2 ;;
        --keys) KEYS=$2; shift 2 ;;
        --server-cpu) SERVER_CPU=$2; shift 2 ;;
        --client-cpu) CLIENT_CPU=$2; shift 2 ;;
        --skip-build) SKIP_BUILD=1; shift ;;
        --revd-config) REVD_CONFIG=(--config "$(realpath "$2")"); shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) usage ;;
        *) echo "$PROG: unknown option $1" >&2; usage ;;
    esac
done
SIGN_WARMUP=${SIGN_WARMUP:-$WARMUP}
PERF_LAYOUTS=${PERF_LAYOUTS:-$LAYOUTS}
has_part() { [[ ",$PARTS," == *",$1,"* ]]; }
has_layout() { [[ ",$LAYOUTS," == *",$1,"* ]]; }

for tool in wrk nginx openssl curl taskset python3 ss cmake make; do
    command -v "$tool" >/dev/null || { echo "$PROG: $tool is required" >&2; exit 1; }
done
NGINX=$(command -v nginx)
NCPU=$(nproc)
((NCPU >= 2)) || { echo "$PROG: needs at least 2 CPUs for the pinned layouts" >&2; exit 1; }
SHARED_CPUS="0-$((NCPU - 1))"

STAMP=$(date +%Y%m%d-%H%M%S)
OUT=${OUT:-$BENCH_DIR/results/$STAMP}
mkdir -p "$OUT"
OUT=$(cd -- "$OUT" && pwd -P)
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
WORK=$(mktemp -d /tmp/revd-bench.XXXXXX)
chmod 755 "$WORK" # nginx workers (user nobody) read the static file from here

PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    if ((KEEP)); then echo "temporary files kept in $WORK"; else rm -rf -- "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { echo "$PROG: $*" >&2; exit 1; }

# Stops one process this script started, by pid: TERM, then KILL after 10 s.
stop_pid() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    local keep=() p
    for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# The listening sockets on PORT must all belong to PID (revd uses SO_REUSEPORT: another
# process on the same port would silently take part of the connections).
check_port_owner() {
    local port=$1 pid=$2 others
    others=$(ss -Hltnp "sport = :$port" | grep -v "pid=$pid," || true)
    [[ -z $others ]] || die "port $port is shared with another process: $others"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---------------------------------------------------------------- machine
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nproc: $NCPU"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "kernel: $(uname -srm)"
    echo "openssl: $(openssl version)"
    echo "nginx: $("$NGINX" -v 2>&1 | cut -d/ -f2)"
    echo "wrk: $(wrk -v 2>&1 | head -1 | awk '{print $2}')"
    echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "busiest processes at start (%cpu over their lifetime, elapsed, command):"
    ps -eo pcpu=,etime=,comm= --sort=-pcpu | head -4 | sed 's/^/    /'
    ((${#REVD_CONFIG[@]})) && echo "revd config file (read before the flags): ${REVD_CONFIG[1]}: $(grep -v '^ *\(#\|$\)' "${REVD_CONFIG[1]}" | tr '\n' ' ')"
    echo "options: idle-wait=${IDLE_WAIT}s retries=$RETRIES duration=${DURATION}s warmup=${WARMUP}s reps=$REPS conns=[$CONNS] sign-conns=[$SIGN_CONNS] speed=${SPEED_SECONDS}s layouts=$LAYOUTS split=server:$SERVER_CPU/client:$CLIENT_CPU"
} | tee "$OUT/machine.txt"

# ---------------------------------------------------------------- build
REVD=$ROOT/build-release/revd
if ((!SKIP_BUILD)); then
    log "building revd (Release) in build-release/"
    cmake -S "$ROOT" -B "$ROOT/build-release" -DCMAKE_BUILD_TYPE=Release -DREVD_TESTS=OFF \
        >"$OUT/build.log" 2>&1 || { tail -20 "$OUT/build.log"; die "cmake failed"; }
    make -C "$ROOT/build-release" -j"$NCPU" revd >>"$OUT/build.log" 2>&1 ||
        { tail -30 "$OUT/build.log"; die "build failed"; }
fi
[[ -x $REVD ]] || die "$REVD not found (drop --skip-build)"
# what was measured: the tree the binary was built from (others may be editing src/)
{
    echo "revd source: commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(
        git -C "$ROOT" diff --quiet HEAD -- src CMakeLists.txt 2>/dev/null ||
            echo " + uncommitted changes in src/ (saved in src.diff)")$( ((SKIP_BUILD)) && echo ' (at run time: --skip-build, the binary may be older)')"
    echo "revd binary: $REVD, built $(stat -c %y "$REVD" | cut -d. -f1), sha256 $(sha256sum "$REVD" | cut -c1-16)"
} | tee -a "$OUT/machine.txt"
git -C "$ROOT" diff --quiet HEAD -- src CMakeLists.txt 2>/dev/null ||
    git -C "$ROOT" diff HEAD -- src CMakeLists.txt >"$OUT/src.diff" 2>/dev/null || true

# ---------------------------------------------------------------- PKIs and requests
# make_pki KEYTYPE: WORK/pki-KEYTYPE with 10 leaves; REQ_<type> is a request for the first
# good leaf, without nonce.
make_pki() {
    local kt=$1 dir=$WORK/pki-$1
    [[ -f $dir/manifest.tsv ]] && return 0
    log "making the $kt PKI"
    bash "$ROOT/scripts/mkpki.sh" "$dir" --leaves 10 --key-type "$kt" --quiet
    local serial
    serial=$(awk -F'\t' '$3 == "good" { print $2; exit }' "$dir/manifest.tsv")
    [[ -n $serial ]] || die "no good leaf in $dir/manifest.tsv"
    openssl ocsp -issuer "$dir/issuing.pem" -serial "0x$serial" -no_nonce -reqout "$dir/req.der" \
        >/dev/null 2>&1 || die "openssl ocsp -reqout failed"
}

# ensure_nonce_reqs KEYTYPE: WORK/pki-KEYTYPE/nonce-reqs.bin (NONCE_REQS requests, each
# with its own nonce), nonce1.der and nonce2.der (the first and the last of them).
ensure_nonce_reqs() {
    local dir=$WORK/pki-$1 reclen
    [[ -f $dir/nonce-reqs.bin ]] && return 0
    reclen=$("${PY[@]}" nonce-reqs "$dir/req.der" "$dir/nonce-reqs.bin" "$NONCE_REQS")
    head -c "$reclen" "$dir/nonce-reqs.bin" >"$dir/nonce1.der"
    tail -c "$reclen" "$dir/nonce-reqs.bin" >"$dir/nonce2.der"
}

# start_revd PKIDIR CPUS WORKERS LOG [extra args...]: sets REVD_PID, REVD_PORT.
start_revd() {
    local dir=$1 cpus=$2 workers=$3 logf=$4
    shift 4
    taskset -c "$cpus" "$REVD" serve "${REVD_CONFIG[@]}" -index "$dir/index.txt" -CA "$dir/issuing.pem" \
        -rsigner "$dir/ocsp.pem" -rkey "$dir/ocsp.key" --listen 127.0.0.1:0 \
        --workers "$workers" --log-level warn "$@" >"$logf" 2>&1 &
    REVD_PID=$!
    PIDS+=("$REVD_PID")
    wait_revd_port "$logf" 100
}

# revd at --log-level warn does not log its port: read it from the socket table.
wait_revd_port() {
    local logf=$1 tries=$2
    REVD_PORT=""
    for _ in $(seq "$tries"); do
        kill -0 "$REVD_PID" 2>/dev/null || { cat "$logf" >&2; die "revd exited"; }
        REVD_PORT=$(ss -Hltnp | awk -v p="pid=$REVD_PID," 'index($0, p) { sub(/.*:/, "", $4); print $4; exit }')
        [[ -n $REVD_PORT ]] && break
        sleep 0.1
    done
    [[ -n $REVD_PORT ]] || die "revd did not start listening (see $logf)"
    check_port_owner "$REVD_PORT" "$REVD_PID"
}

# start_nginx CPUS WORKERS DERFILE CACHE_CONTROL EXPIRES [master on|off]: sets NGINX_PID,
# NGINX_PORT, NGINX_PIDS (master and workers) and NGINX_DIR.
start_nginx() {
    local cpus=$1 workers=$2 der=$3 cc=$4 expires=$5 master=${6:-on} user_line=""
    NGINX_DIR=$(mktemp -d "$WORK/nginx.XXXXXX")
    chmod 755 "$NGINX_DIR"
    mkdir -p "$NGINX_DIR/html"
    cp "$der" "$NGINX_DIR/html/resp.der"
    chmod 644 "$NGINX_DIR/html/resp.der"
    NGINX_PORT=$(free_port)
    if (($(id -u) == 0)); then
        user_line="user $(id -un nobody) $(id -gn nobody);"
    fi
    sed -e "s#@PREFIX@#$NGINX_DIR#g; s#@PORT@#$NGINX_PORT#g; s#@WORKERS@#$workers#g" \
        -e "s#@ROOT@#$NGINX_DIR/html#g; s#@USER_LINE@#$user_line#; s#@CACHE_CONTROL@#$cc#" \
        -e "s#@EXPIRES@#$expires#; s#^master_process on;#master_process $master;#" \
        "$BENCH_DIR/nginx.conf.in" >"$NGINX_DIR/nginx.conf"
    taskset -c "$cpus" ${NGINX_WRAP:-} "$NGINX" -p "$NGINX_DIR/" -c "$NGINX_DIR/nginx.conf" \
        -e "$NGINX_DIR/error.log" >"$NGINX_DIR/stdout.log" 2>&1 &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    for _ in $(seq "${NGINX_TRIES:-100}"); do
        kill -0 "$NGINX_PID" 2>/dev/null || { cat "$NGINX_DIR/error.log" >&2; die "nginx exited"; }
        curl -s -o /dev/null "http://127.0.0.1:$NGINX_PORT/" && break
        sleep 0.1
    done
    check_port_owner "$NGINX_PORT" "$NGINX_PID"
    NGINX_PIDS=$NGINX_PID
    local c
    for c in $(pgrep -P "$NGINX_PID" || true); do NGINX_PIDS+=",$c"; done
}

# fetch URL OUTPREFIX [curl args...]: OUTPREFIX.body, OUTPREFIX.hdr; prints the
# response size on the wire (status line + headers + body).
fetch() {
    local url=$1 o=$2
    shift 2
    curl -sS --max-time 10 -D "$o.hdr" -o "$o.body" "$@" "$url" ||
        die "request to $url failed"
    grep -q '^HTTP/1.1 200' "$o.hdr" || { cat "$o.hdr" >&2; die "$url: not 200"; }
    echo $(($(stat -c %s "$o.hdr") + $(stat -c %s "$o.body")))
}

layout_vars() {
    case $1 in
        split) SRV_CPUS=$SERVER_CPU; SRV_WORKERS=1; WRK_CPUS=$CLIENT_CPU; WRK_THREADS=1 ;;
        shared) SRV_CPUS=$SHARED_CPUS; SRV_WORKERS=$NCPU; WRK_CPUS=$SHARED_CPUS; WRK_THREADS=$NCPU ;;
    esac
}

# ---------------------------------------------------------------- (a) cached answers
run_cached() {
    make_pki ec
    local dir=$WORK/pki-ec req=$WORK/pki-ec/req.der path layout rep c m srv order
    path=$("${PY[@]}" urlpath "$req")
    for layout in split shared; do
        has_layout "$layout" || continue
        layout_vars "$layout"
        log "(a) cached answers, layout $layout: servers on CPU $SRV_CPUS ($SRV_WORKERS workers), wrk -t$WRK_THREADS on CPU $WRK_CPUS"
        start_revd "$dir" "$SRV_CPUS" "$SRV_WORKERS" "$WORK/revd-cached-$layout.log"
        local rurl="http://127.0.0.1:$REVD_PORT"
        local rg rp
        rg=$(fetch "$rurl/$path" "$WORK/revd-get")
        rp=$(fetch "$rurl/" "$WORK/revd-post" --data-binary "@$req" -H "Content-Type: application/ocsp-request")
        cmp -s "$WORK/revd-get.body" "$WORK/revd-post.body" || die "revd: GET and POST answers differ"
        openssl ocsp -respin "$WORK/revd-get.body" -noverify -resp_text 2>/dev/null |
            grep -q "Cert Status: good" || die "revd's answer is not 'good'"
        local cc ex
        cc=$(grep -i '^Cache-Control:' "$WORK/revd-get.hdr" | cut -d' ' -f2- | tr -d '\r')
        ex=$(grep -i '^Expires:' "$WORK/revd-get.hdr" | cut -d' ' -f2- | tr -d '\r')
        start_nginx "$SRV_CPUS" "$SRV_WORKERS" "$WORK/revd-get.body" "$cc" "$ex"
        local nurl="http://127.0.0.1:$NGINX_PORT" ng np
        ng=$(fetch "$nurl/$path" "$WORK/nginx-get")
        np=$(fetch "$nurl/" "$WORK/nginx-post" --data-binary "@$req" -H "Content-Type: application/ocsp-request")
        cmp -s "$WORK/nginx-get.body" "$WORK/revd-get.body" || die "nginx GET: not revd's bytes"
        cmp -s "$WORK/nginx-post.body" "$WORK/revd-get.body" || die "nginx POST: not revd's bytes"
        cp "$WORK/revd-get.hdr" "$OUT/revd-response-headers.txt"
        cp "$WORK/nginx-get.hdr" "$OUT/nginx-response-headers.txt"
        log "    response on the wire: revd $rg bytes, nginx $ng bytes (body $(stat -c %s "$WORK/revd-get.body"))"
        for rep in $(seq "$REPS"); do
            for c in $CONNS; do
                for m in GET POST; do
                    # alternate the order, so that drifting background load hits both
                    if ((rep % 2)); then order="revd nginx"; else order="nginx revd"; fi
                    for srv in $order; do
                        local url pids exp script=() env=()
                        if [[ $srv == revd ]]; then
                            url=$rurl pids=$REVD_PID
                            [[ $m == GET ]] && exp=$rg || exp=$rp
                        else
                            url=$nurl pids=$NGINX_PIDS
                            [[ $m == GET ]] && exp=$ng || exp=$np
                        fi
                        if [[ $m == GET ]]; then
                            url=$url/$path
                        else
                            url=$url/
                            script=(--script "$BENCH_DIR/post.lua")
                            env=(--env "BENCH_REQ_DER=$req")
                        fi
                        "${PY[@]}" point --out "$RESULTS" --idle-wait "$IDLE_WAIT" --retries "$RETRIES" \
                            --label "{\"kind\":\"cached\",\"layout\":\"$layout\",\"server\":\"$srv\",\"method\":\"$m\",\"conns\":$c,\"rep\":$rep}" \
                            --url "$url" "${script[@]}" "${env[@]}" --wrk-cpus "$WRK_CPUS" \
                            --threads "$WRK_THREADS" --conns "$c" --duration "$DURATION" \
                            --warmup "$WARMUP" --server-pids "$pids" --expect-bytes "$exp"
                    done
                done
            done
        done
        stop_pid "$REVD_PID"
        stop_pid "$NGINX_PID"
    done
}

# ---------------------------------------------------------------- (b) live signing
run_sign() {
    local kt alg layout rep c
    for kt in ec rsa ed25519; do
        [[ ",$KEYS," == *",$kt,"* ]] || continue
        case $kt in ec) alg=ecdsap256 ;; rsa) alg=rsa2048 ;; ed25519) alg=ed25519 ;; esac
        make_pki "$kt"
        local dir=$WORK/pki-$kt
        ensure_nonce_reqs "$kt"
        for layout in split shared; do
            has_layout "$layout" || continue
            layout_vars "$layout"
            log "(b) live signing, $kt key, layout $layout: revd on CPU $SRV_CPUS ($SRV_WORKERS workers), wrk -t$WRK_THREADS on CPU $WRK_CPUS"
            start_revd "$dir" "$SRV_CPUS" "$SRV_WORKERS" "$WORK/revd-sign-$kt-$layout.log" --nonce sign
            local url="http://127.0.0.1:$REVD_PORT/" s1
            s1=$(fetch "$url" "$WORK/sign1" --data-binary "@$dir/nonce1.der" -H "Content-Type: application/ocsp-request")
            fetch "$url" "$WORK/sign2" --data-binary "@$dir/nonce2.der" -H "Content-Type: application/ocsp-request" >/dev/null
            cmp -s "$WORK/sign1.body" "$WORK/sign2.body" && die "two nonces got the same answer: not signed live"
            "${PY[@]}" has-nonce "$dir/nonce1.der" "$WORK/sign1.body" || die "revd did not echo the nonce"
            "${PY[@]}" has-nonce "$dir/nonce2.der" "$WORK/sign2.body" || die "revd did not echo the nonce"
            openssl ocsp -reqin "$dir/nonce1.der" -respin "$WORK/sign1.body" -issuer "$dir/issuing.pem" \
                -VAfile "$dir/ocsp.pem" -no_cert_checks >"$WORK/sign1.verify" 2>&1 ||
                { cat "$WORK/sign1.verify" >&2; die "the live-signed answer does not verify"; }
            local multi=1
            [[ $layout == shared ]] && multi=$NCPU
            # each repetition: revd's live signing, then openssl speed on the same CPUs, so
            # that the two figures of a pair see the same state of the machine
            for rep in $(seq "$REPS"); do
                for c in $SIGN_CONNS; do
                    "${PY[@]}" point --out "$RESULTS" --idle-wait "$IDLE_WAIT" --retries "$RETRIES" \
                        --label "{\"kind\":\"sign\",\"key\":\"$kt\",\"layout\":\"$layout\",\"conns\":$c,\"rep\":$rep}" \
                        --url "$url" --script "$BENCH_DIR/nonce.lua" \
                        --env "BENCH_NONCE_REQS=$dir/nonce-reqs.bin" --wrk-cpus "$WRK_CPUS" \
                        --threads "$WRK_THREADS" --conns "$c" --duration "$DURATION" \
                        --warmup "$SIGN_WARMUP" --server-pids "$REVD_PID" --expect-bytes "$s1"
                done
                "${PY[@]}" speed --out "$RESULTS" --idle-wait "$IDLE_WAIT" \
                    --label "{\"kind\":\"speed\",\"key\":\"$kt\",\"layout\":\"$layout\",\"rep\":$rep}" \
                    --alg "$alg" --cpus "$SRV_CPUS" --multi "$multi" --seconds "$SPEED_SECONDS"
            done
            stop_pid "$REVD_PID"
        done
    done
}

# ---------------------------------------------------------------- (c) profile
PERF_EVENTS="task-clock,context-switches,raw_syscalls:sys_enter"
for s in read readv recvfrom write writev sendto epoll_wait epoll_pwait epoll_ctl \
    pread64 openat newfstatat statx close setsockopt futex ioctl getpid mmap munmap madvise brk; do
    PERF_EVENTS+=",syscalls:sys_enter_$s"
done

# perf_point LAYOUT SERVER METHOD URL PIDS CONNS [point args...]: one run with perf stat
# attached to the server's processes.
perf_point() {
    local lay=$1 srv=$2 m=$3 url=$4 pids=$5 c=$6
    shift 6
    "${PY[@]}" point --out "$RESULTS" --idle-wait "$IDLE_WAIT" --retries "$RETRIES" \
        --label "{\"kind\":\"perf\",\"layout\":\"$lay\",\"server\":\"$srv\",\"method\":\"$m\",\"conns\":$c,\"rep\":1}" \
        --url "$url" --wrk-cpus "$WRK_CPUS" --threads "$WRK_THREADS" --conns "$c" \
        --duration "$CG_SECONDS" --warmup "$PROFILE_WARMUP" --server-pids "$pids" \
        --perf-events "$PERF_EVENTS" "$@"
}

run_profile() {
    make_pki ec
    local dir=$WORK/pki-ec req=$WORK/pki-ec/req.der path c layout
    path=$("${PY[@]}" urlpath "$req")
    c=${CONNS##* } # the largest connection count
    ensure_nonce_reqs ec
    local cc ex
    # 1. perf stat (software counters and syscall tracepoints) on each server under wrk
    if command -v perf >/dev/null && perf stat -e raw_syscalls:sys_enter true >/dev/null 2>&1; then
        for layout in split shared; do
            [[ ",$PERF_LAYOUTS," == *",$layout,"* ]] || continue
            layout_vars "$layout"
            log "(c) perf stat: syscalls and context switches per request (layout $layout, $c connections)"
            start_revd "$dir" "$SRV_CPUS" "$SRV_WORKERS" "$WORK/revd-perf-$layout.log"
            fetch "http://127.0.0.1:$REVD_PORT/$path" "$WORK/perf-revd" >/dev/null
            cc=$(grep -i '^Cache-Control:' "$WORK/perf-revd.hdr" | cut -d' ' -f2- | tr -d '\r')
            ex=$(grep -i '^Expires:' "$WORK/perf-revd.hdr" | cut -d' ' -f2- | tr -d '\r')
            start_nginx "$SRV_CPUS" "$SRV_WORKERS" "$WORK/perf-revd.body" "$cc" "$ex"
            local post=(--script "$BENCH_DIR/post.lua" --env "BENCH_REQ_DER=$req")
            perf_point "$layout" revd GET "http://127.0.0.1:$REVD_PORT/$path" "$REVD_PID" "$c"
            perf_point "$layout" nginx GET "http://127.0.0.1:$NGINX_PORT/$path" "$NGINX_PIDS" "$c"
            perf_point "$layout" revd POST "http://127.0.0.1:$REVD_PORT/" "$REVD_PID" "$c" "${post[@]}"
            perf_point "$layout" nginx POST "http://127.0.0.1:$NGINX_PORT/" "$NGINX_PIDS" "$c" "${post[@]}"
            stop_pid "$NGINX_PID"
            stop_pid "$REVD_PID"
            start_revd "$dir" "$SRV_CPUS" "$SRV_WORKERS" "$WORK/revd-perf-sign-$layout.log" --nonce sign
            perf_point "$layout" "revd live ECDSA" POST "http://127.0.0.1:$REVD_PORT/" "$REVD_PID" "$c" \
                --script "$BENCH_DIR/nonce.lua" --env "BENCH_NONCE_REQS=$dir/nonce-reqs.bin"
            stop_pid "$REVD_PID"
        done
    else
        log "(c) perf stat with tracepoints is not available: skipped"
    fi
    # the answer revd serves, for nginx under callgrind
    layout_vars split
    start_revd "$dir" "$SRV_CPUS" 1 "$WORK/revd-cg-body.log"
    fetch "http://127.0.0.1:$REVD_PORT/$path" "$WORK/perf-revd" >/dev/null
    cc=$(grep -i '^Cache-Control:' "$WORK/perf-revd.hdr" | cut -d' ' -f2- | tr -d '\r')
    ex=$(grep -i '^Expires:' "$WORK/perf-revd.hdr" | cut -d' ' -f2- | tr -d '\r')
    stop_pid "$REVD_PID"
    # 2. callgrind: instructions per request and top functions by self cost
    if ! command -v valgrind >/dev/null || ! command -v callgrind_control >/dev/null; then
        log "(c) valgrind/callgrind not available: skipped"
        return 0
    fi
    local cgc=16
    log "(c) callgrind: revd --workers 1 and nginx (one process), wrk -t1 -c$cgc -d${CG_SECONDS}s per method"
    cg_revd "$dir" cached
    profile_one revd "$REVD_PID" "http://127.0.0.1:$REVD_PORT" "$path" "$req" "$WORK/cg-revd.$REVD_PID" $cgc GET POST
    stop_pid "$REVD_PID"
    # nginx: one process (master_process off), same static file
    NGINX_WRAP="valgrind --tool=callgrind --callgrind-out-file=$WORK/cg-nginx.%p" NGINX_TRIES=600 \
        start_nginx "$SRV_CPUS" 1 "$WORK/perf-revd.body" "$cc" "$ex" off
    profile_one nginx "$NGINX_PID" "http://127.0.0.1:$NGINX_PORT" "$path" "$req" "$WORK/cg-nginx.$NGINX_PID" $cgc GET POST
    stop_pid "$NGINX_PID"
    # revd signing live (ECDSA P-256): where the time goes besides the signature
    cg_revd "$dir" sign --nonce sign
    profile_one revd "$REVD_PID" "http://127.0.0.1:$REVD_PORT" "$path" "$req" "$WORK/cg-revd-sign.$REVD_PID" $cgc SIGN
    stop_pid "$REVD_PID"
}

# inclusive costs reported besides the top functions by self cost
CG_REVD_FUNCS=llhttp_execute,http_route,ocsp_get_path_decode,handle_ocsp,ocsp_request_decode,ocsp_issuers_find,cache_get,http_respond_entry,snprintf,uv_try_write,uv_timer_start,uv_timer_stop
CG_NGINX_FUNCS=ngx_http_process_request_line,ngx_http_process_request_headers,ngx_http_process_request,ngx_http_core_run_phases,ngx_http_static_handler,ngx_http_internal_redirect,ngx_http_discard_request_body,ngx_open_cached_file,ngx_http_output_filter,ngx_http_finalize_request,ngx_http_set_keepalive
CG_SIGN_FUNCS=llhttp_execute,http_route,uv_queue_work,sign_work,ocsp_response_build,EVP_MD_CTX_copy_ex,EVP_DigestSign,EVP_MD_CTX_free,sign_done

# cg_revd PKIDIR TAG [revd args...]: revd --workers 1 under callgrind, on the server CPU.
cg_revd() {
    local dir=$1 tag=$2 prefix=$WORK/cg-revd
    shift 2
    [[ $tag == sign ]] && prefix=$WORK/cg-revd-sign
    taskset -c "$SRV_CPUS" valgrind --tool=callgrind --callgrind-out-file="$prefix.%p" \
        "$REVD" serve "${REVD_CONFIG[@]}" -index "$dir/index.txt" -CA "$dir/issuing.pem" \
        -rsigner "$dir/ocsp.pem" -rkey "$dir/ocsp.key" --listen 127.0.0.1:0 --workers 1 --log-level warn "$@" \
        >"$WORK/revd-cg-$tag.log" 2>&1 &
    REVD_PID=$!
    PIDS+=("$REVD_PID")
    wait_revd_port "$WORK/revd-cg-$tag.log" 600
}

# profile_one NAME PID BASEURL PATH REQ CGPREFIX CONNS MODE...: for each mode (GET, POST,
# SIGN = POST with a distinct nonce each time), zero the counters, load with wrk, dump;
# then the top functions per request.
profile_one() {
    local name=$1 pid=$2 base=$3 path=$4 req=$5 prefix=$6 c=$7 m
    shift 7
    curl -s -o /dev/null --max-time 60 "$base/$path"
    curl -s -o /dev/null --max-time 60 --data-binary "@$req" "$base/"
    for m in "$@"; do
        callgrind_control -z "$pid" >/dev/null
        local wout wrk=(taskset -c "$WRK_CPUS" wrk -t1 -c"$c" -d"${CG_SECONDS}s" --timeout 10s)
        case $m in
            GET) wout=$("${wrk[@]}" "$base/$path") ;;
            POST) wout=$(BENCH_REQ_DER=$req "${wrk[@]}" -s "$BENCH_DIR/post.lua" "$base/") ;;
            SIGN) wout=$(BENCH_NONCE_REQS=$WORK/pki-ec/nonce-reqs.bin "${wrk[@]}" -s "$BENCH_DIR/nonce.lua" "$base/") ;;
        esac
        callgrind_control -d "$pid" >/dev/null
        local reqs file
        reqs=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' <<<"$wout")
        if grep -q "Non-2xx" <<<"$wout"; then log "    $name $m under callgrind: non-2xx answers!"; fi
        file=$(ls -t "$prefix".* 2>/dev/null | head -1)
        [[ -n $file ]] || die "no callgrind dump for $name"
        cp "$file" "$OUT/callgrind-$name-$m.out"
        local extra=()
        case $name-$m in
            revd-SIGN) extra=(--count-calls http_route --inclusive "$CG_SIGN_FUNCS") ;;
            revd-*) extra=(--count-calls http_route --inclusive "$CG_REVD_FUNCS") ;;
            nginx-*) extra=(--inclusive "$CG_NGINX_FUNCS") ;;
        esac
        "${PY[@]}" cgtop "$OUT/callgrind-$name-$m.out" --requests "${reqs:-1}" "${extra[@]}" --top 10 \
            --json "$OUT/callgrind-$name-$m.json" | tee -a "$OUT/callgrind.txt"
    done
}

START=$(date +%s)
# the PKIs first, in parallel, before any measurement
NEED=()
if has_part cached || has_part profile; then NEED+=(ec); fi
if has_part sign; then
    for kt in ec rsa ed25519; do [[ ",$KEYS," == *",$kt,"* ]] && NEED+=("$kt"); done
fi
declare -A MK=()
for kt in $(printf '%s\n' "${NEED[@]}" | sort -u); do
    make_pki "$kt" &
    MK[$kt]=$!
done
for kt in "${!MK[@]}"; do wait "${MK[$kt]}" || die "making the $kt PKI failed"; done
has_part cached && run_cached
has_part sign && run_sign
has_part profile && run_profile

log "done in $(($(date +%s) - START)) s; results in $OUT"
{
    echo "loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "busiest processes at end:"
    ps -eo pcpu=,etime=,comm= --sort=-pcpu | head -4 | sed 's/^/    /'
} | tee -a "$OUT/machine.txt"
echo
"${PY[@]}" summary "$RESULTS" --markdown "$OUT/summary.md"
[[ -f $OUT/callgrind.txt ]] && { echo "### (c) callgrind"; cat "$OUT/callgrind.txt"; }
exit 0

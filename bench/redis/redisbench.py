#!/usr/bin/env python3
"""revd's Redis tier under load (called by bench/redis/run.sh; Python 3 standard library).

Starts its own redis-server (tests/integration/redis_harness.py: 127.0.0.1, a free port,
--save '' --appendonly no) and, for part 2, its own PostgreSQL (pg_harness, as bench/pg
does), and measures:

  1 cached: answers/s of one revd on all cores against nginx serving the same DER bytes,
    GET and POST: bench/run.sh --parts cached --layouts shared, with
    --revd-config naming an INI file with this Redis in [redis] (and the pre-signer on);
  2 l2: the cost of an L1 miss served from Redis. wrk over distinct serials
    (bench/pg/distinct.lua) against revds that differ in one thing each:
      l1-hit          cache large and warmed: every request an L1 hit
      l2-hit          cache_entries = 16, Redis filled by the pre-signer: every request an
                      L1 miss answered from Redis
      l2-hit-nocert   the same with answers that do not carry the responder certificate
                      (include_signer_cert = no; its own key prefix): a diagnostic
      miss-pg-sign    cache_entries = 16, no Redis: PostgreSQL lookup + signature
      miss-index-sign cache_entries = 16, no Redis, the same serials in an index.txt
    every one on the same N certificates, revd CPU per request from /proc, and Redis's,
    PostgreSQL's, wrk's and the machine's;
  3 presign: pre-signing rate (answers in Redis over time, and the stats hash) from an
    empty Redis for N certificates (index.txt), against `openssl speed -seconds S
    ecdsap256` (one process, no -multi: the pre-signer is one thread) right after;
  4 million: the same for one million certificates: revd start -> "round done", and
    Redis used_memory per key;
  4b recheck: the pre-signer's steady state, rounds over those answers back to back
    (interval = 100ms) when none is due: one GETRANGE each, nothing signed;
  5 l1mem: revd's RSS before and after one million distinct answers are in its L1
    (cache_entries = 1100000), filled from Redis (the answers of part 4), and for
    comparison filled by live signing (no Redis).

Every measurement is repeated (--reps). Results: OUT/results.jsonl, OUT/summary.md, the
run's log; part 1 in OUT/cached/ (run.sh's own files). Only 127.0.0.1 is used; every load
run is bounded (wrk -d and a timeout around it; every wait has a deadline); only
processes started here are stopped, by pid.
"""

import argparse
import calendar
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.join(BENCH, "pg"))
sys.path.insert(0, BENCH)

import ocspbench as ob  # noqa: E402  wait_idle, cmd_speed, proc_cpu (several pids)
import pgbench_revd as pb  # noqa: E402  serial_hex, Requests, wrk, CPU accounting, PostgreSQL

args = None
log = pb.log
DISTINCT_LUA = os.path.join(BENCH, "pg", "distinct.lua")
ONCE_LUA = os.path.join(HERE, "once.lua")


def record(kind, **kw):
    pb.record(kind, **kw)  # adds the load average


def write_index(path, n):
    """n certificates of serial_hex(1..n), every 100th revoked: bench/pg's data set."""
    with open(path, "w") as f:
        for i in range(1, n + 1):
            s = pb.serial_hex(i).upper()
            if i % 100 == 0:
                f.write("R\t271231235959Z\t250101000000Z,keyCompromise\t%s\tunknown\t"
                        "/O=bench/CN=leaf%d\n" % (s, i))
            else:
                f.write("V\t271231235959Z\t\t%s\tunknown\t/O=bench/CN=leaf%d\n" % (s, i))


def med(vals, fmt="%.0f"):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    if len(vals) == 1:
        return fmt % vals[0]
    return (fmt + " (" + fmt + " - " + fmt + ")") % (statistics.median(vals), min(vals),
                                                     max(vals))


def rss_kb(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[k] = int(v.split()[0])
    return out


def info(rs, section):
    text = rs.command("INFO", section).decode()
    out = {}
    for line in text.splitlines():
        if ":" in line and not line.startswith("#"):
            k, v = line.split(":", 1)
            out[k] = v
    return out


# ---------------------------------------------------------------- revd

def conf_text(pki, *, index=None, dsn=None, redis=None, prefix=None, presign=True,
              cache=None, nocert=False, workers="auto", interval=None):
    s = "[server]\nworkers = %s\nlog_level = info\n\n" % workers
    if cache:
        s += "[ocsp]\ncache_entries = %d\n\n" % cache
    if dsn:
        s += "[postgres]\ndsn = %s\n\n" % dsn
    if redis:
        s += "[redis]\naddress = %s\n" % redis
        if prefix:
            s += "prefix = %s\n" % prefix
        s += "\n[presign]\nenabled = %s\n" % ("yes" if presign else "no")
        if interval:
            s += "interval = %s\n" % interval
        s += "\n"
    s += ("[issuer bench]\nca = %s\nsigner_cert = %s\nsigner_key = %s\n"
          % (pki.issuing, pki.ocsp_cert, pki.ocsp_key))
    s += ("index = %s\n" % index) if index else "store = postgres\n"
    if nocert:
        s += "include_signer_cert = no\n"
    return s


class Revd:
    """build-release/revd serve --config FILE --listen 127.0.0.1:0 (revd_harness.Revd)."""

    def __init__(self, harness, work, name, text, probe=None, ready_timeout=120):
        self.conf = os.path.join(work, name + ".conf")
        with open(self.conf, "w") as f:
            f.write(text)
        self.r = harness.Revd(["--config", self.conf, "--listen", "127.0.0.1:0"], work, name)
        self.r.argv[0] = args.revd
        self.t_spawn = time.time()
        self.r.start(wait_ready=False)
        self.r.wait_ready(timeout=ready_timeout)
        self.pid = self.r.proc.pid
        self.url = self.r.url()
        if probe is not None:  # until the store is ready, revd answers tryLater
            deadline = time.monotonic() + 30
            while True:
                st, _, body = harness.ocsp_post(self.r.port, probe)
                if st == 200 and harness.OcspResp(body).status == 0:
                    break
                if time.monotonic() > deadline or not self.r.alive():
                    raise RuntimeError("revd %s never answered:\n%s" % (name, self.r.stderr()))
                time.sleep(0.05)

    def stderr(self):
        return self.r.stderr()

    def stop(self):
        return self.r.stop()


def log_time(line):
    """Epoch seconds of a revd log line (2026-11-23T18:03:59.423Z ...)."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z", line)
    if not m:
        return None
    t = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
    return t + (float("0." + m.group(2)) if m.group(2) else 0.0)


# ---------------------------------------------------------------- wrk

def wrk_once(url, reqfile, reclen, threads, conns, limit_s, work):
    """One pass over every request of reqfile (once.lua); returns (seconds, wrk output)."""
    done = tempfile.mkdtemp(prefix="done-", dir=work)
    env = dict(os.environ, BENCH_PG_REQS=reqfile, BENCH_PG_RECLEN=str(reclen),
               BENCH_PG_THREADS=str(threads), BENCH_DONE_DIR=done)
    cmd = ["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % limit_s, "--latency",
           "--timeout", "5s", "-s", ONCE_LUA, url]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                         universal_newlines=True)
    try:
        while len(os.listdir(done)) < threads and p.poll() is None:
            if time.monotonic() - t0 > limit_s + 30:
                break
            time.sleep(0.05)
        secs = time.monotonic() - t0
        if p.poll() is None:
            p.send_signal(signal.SIGINT)  # wrk prints its summary and exits
        out, _ = p.communicate(timeout=60)
    except BaseException:
        p.kill()
        p.wait()
        raise
    finally:
        shutil.rmtree(done, ignore_errors=True)
    answers = sum(int(x) for x in re.findall(r"^answers: (\d+)", out, re.M))
    slices = sum(int(x) for x in re.findall(r"^slice: (\d+)", out, re.M))
    bad = sum(int(x) for x in re.findall(r"^bad answers: (\d+)", out, re.M))
    if answers < slices or bad:
        raise RuntimeError("wrk pass incomplete (%d answers for %d requests, %d bad):\n%s"
                           % (answers, slices, bad, out))
    return secs, dict(answers=answers, requests=slices, bad=bad, cmd=" ".join(cmd))


def cpu_snapshot(revd_pid, redis_pid, pg):
    return dict(revd=pb.proc_cpu(revd_pid), redis=pb.proc_cpu(redis_pid) if redis_pid else 0.0,
                pg=pg and pb.pg_cpu(pg), wrk=(lambda t: t.children_user + t.children_system)(
                    os.times()), machine=pb.total_cpu(), t=time.monotonic())


def cpu_delta(a, b):
    d = dict(revd=b["revd"] - a["revd"], redis=b["redis"] - a["redis"], wrk=b["wrk"] - a["wrk"],
             machine=b["machine"] - a["machine"], wall=b["t"] - a["t"])
    d["postgres"] = (sum(v - (a["pg"] or {}).get(k, 0.0) for k, v in b["pg"].items())
                     if b["pg"] else 0.0)
    d["other"] = d["machine"] - d["revd"] - d["redis"] - d["wrk"] - d["postgres"]
    return d


# ---------------------------------------------------------------- part 1

def part_cached(rs, pki, work):
    """bench/run.sh --parts cached, revd configured with this Redis."""
    ini = os.path.join(work, "run-sh-redis.ini")
    with open(ini, "w") as f:
        f.write("# bench/redis: the Redis tier configured for bench/run.sh's revd\n"
                "[redis]\naddress = %s\n\n[presign]\nenabled = yes\n" % rs.address)
    out = os.path.join(args.out, "cached")
    cmd = ["bash", os.path.join(BENCH, "run.sh")]
    if args.quick:
        cmd.append("--quick")
    cmd += ["--skip-build", "--parts", "cached", "--layouts", "shared",
            "--revd-config", ini, "--out", out]
    if not args.quick:
        cmd += ["--reps", str(args.reps), "--conns", args.cached_conns,
                "--idle-wait", str(args.idle_wait)]
    cmd += args.cached_args.split()
    keys0 = rs.command("DBSIZE")
    log("(1) " + " ".join(cmd))
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, timeout=7200)
    with open(os.path.join(args.out, "cached.log"), "w") as f:
        f.write(r.stdout)
    sys.stdout.write("".join("    " + l.strip() + "\n" for l in r.stdout.splitlines()
                             if "req/s  " in l or "run.sh:" in l))
    if r.returncode != 0:
        raise RuntimeError("bench/run.sh failed:\n" + r.stdout[-3000:])
    # evidence that revd used the Redis tier: its answers and pre-signer statistics
    answers = len(rs.keys("revd:o:*"))
    stats = rs.keys("revd:presign:stats:*")
    record("cached", cmd=" ".join(cmd), out=out, redis_keys_before=keys0,
           redis_answer_keys_after=answers, presign_stats_keys=stats)
    log("(1) Redis after run.sh: %d answer keys (revd:o:*), pre-signer stats: %s"
        % (answers, ", ".join(stats) or "none"))
    rs.flushall()


# ---------------------------------------------------------------- part 2

def fill_redis(harness, work, rs, pki, name, text, n, timeout):
    """A revd with the pre-signer on, until its round is done; returns seconds."""
    r = Revd(harness, work, name, text)
    try:
        deadline = time.monotonic() + timeout
        while "round done" not in r.stderr():
            if time.monotonic() > deadline or not r.r.alive():
                raise RuntimeError("pre-signer %s: no round done in %d s:\n%s"
                                   % (name, timeout, r.stderr()[-2000:]))
            time.sleep(0.1)
        line = [l for l in r.stderr().splitlines() if "round done" in l][0]
        return log_time(line) - r.t_spawn
    finally:
        r.stop()


def part_l2(harness, rs, pki, work):
    import pg_harness
    n = args.n
    pg = pg_harness.PgServer("revd-redisbench-pg")
    revds = {}
    try:
        log("(2) PostgreSQL: initdb and start (pg_harness), %d certificates" % n)
        pg.start()
        pb.pg_restart(pg, "-c shared_buffers=256MB -c max_connections=50")
        dsn = pb.new_db(pg, "bench", pki)
        t_load, size = pb.load_rows(pg, dsn, n)
        pb.prewarm(pg, dsn)
        index = os.path.join(work, "index-l2.txt")
        write_index(index, n)
        log("(2) loaded %d rows in %.1f s (%s); index.txt of the same serials written"
            % (n, t_load, size))
        reqs = pb.Requests(harness, pki)
        reqfile = os.path.join(work, "l2-reqs.bin")
        reclen = reqs.write(reqfile, 1, n)
        probe = reqs.der(n)
        fills = {}
        for name, prefix, nocert in (("fill", None, False), ("fill-nocert", "revdnc:", True)):
            fills[name] = fill_redis(harness, work, rs, pki, "l2-" + name, conf_text(
                pki, dsn=dsn, redis=rs.address, prefix=prefix, nocert=nocert), n,
                timeout=max(120, n // 1000))
            log("(2) pre-signer (PostgreSQL store, %s): %d answers in Redis, round done %.1f s "
                "after revd started" % (name, n, fills[name]))
        record("l2-fill", n=n, seconds=fills, redis_keys=rs.command("DBSIZE"),
               pg_load_seconds=t_load, pg_size=size)
        big = max(16, 2 * n)
        variants = [
            ("l1-hit", conf_text(pki, dsn=dsn, redis=rs.address, presign=False, cache=big)),
            ("l2-hit", conf_text(pki, dsn=dsn, redis=rs.address, presign=False, cache=16)),
            ("l2-hit-nocert", conf_text(pki, dsn=dsn, redis=rs.address, prefix="revdnc:",
                                        presign=False, cache=16, nocert=True)),
            ("miss-pg-sign", conf_text(pki, dsn=dsn, cache=16)),
            ("miss-index-sign", conf_text(pki, index=index, cache=16)),
        ]
        variants = [v for v in variants if v[0] in args.l2_variants.split(",")]
        for name, text in variants:
            revds[name] = Revd(harness, work, "l2-" + name, text, probe=probe)
        if "l1-hit" in revds:
            secs, w = wrk_once(revds["l1-hit"].url, reqfile, reclen, args.threads, args.conns,
                               600, work)
            log("(2) l1-hit: L1 warmed with %d answers in %.1f s (from Redis)"
                % (w["answers"], secs))
            record("l2-warm", seconds=secs, **w)
        env = dict(BENCH_PG_REQS=reqfile, BENCH_PG_RECLEN=str(reclen))
        for rep in range(args.reps):
            order = variants[rep % len(variants):] + variants[:rep % len(variants)]
            for name, _ in order:
                r = revds[name]
                waited = ob.wait_idle(args.idle_wait)
                # Redis GETs and PostgreSQL lookups are counted over warm-up + run (an idle
                # backend flushes its statistics within 1 s: read before and 1.5 s after)
                h0 = int(info(rs, "stats")["keyspace_hits"])
                s0 = pb.pkey_scans(pg, dsn)
                w0 = pb.wrk(r.url, DISTINCT_LUA, env, args.conns, args.threads, args.warmup)
                c0 = cpu_snapshot(r.pid, rs.proc.pid, pg)
                w = pb.wrk(r.url, DISTINCT_LUA, env, args.conns, args.threads, args.duration)
                c1 = cpu_snapshot(r.pid, rs.proc.pid, pg)
                h1 = int(info(rs, "stats")["keyspace_hits"])
                time.sleep(1.5)
                s1 = pb.pkey_scans(pg, dsn)
                d = cpu_delta(c0, c1)
                nreq = max(w["requests"], 1)
                nall = max(w["requests"] + w0["requests"], 1)
                us = {k: 1e6 * v / nreq for k, v in d.items() if k != "wall"}
                rec = dict(variant=name, rep=rep, rps=w["rps"], requests=w["requests"],
                           latency_ms=w["latency_ms"], bad=w["bad"], wraps=w["wraps"],
                           socket_errors=w["socket_errors"], cpu_s=d, cpu_us_per_request=us,
                           redis_hits_per_request=(h1 - h0) / nall,
                           pg_lookups_per_request=(s1 - s0) / nall, idle_wait_s=waited,
                           cmd=w["cmd"], cores_busy_revd=d["revd"] / d["wall"],
                           other_cores=d["other"] / d["wall"])
                record("l2", **rec)
                log("(2) rep %d %-16s %8.0f req/s  p50 %6.2f ms p99 %6.2f ms  revd %6.1f us/req"
                    "  redis %5.1f  postgres %5.1f  other %.2f cores  (Redis GETs/req %.2f, PG "
                    "lookups/req %.2f, bad %d)"
                    % (rep + 1, name, w["rps"], w["latency_ms"].get("50", 0),
                       w["latency_ms"].get("99", 0), us["revd"], us["redis"], us["postgres"],
                       rec["other_cores"], rec["redis_hits_per_request"],
                       rec["pg_lookups_per_request"], w["bad"]))
    finally:
        for r in revds.values():
            r.stop()
        pg.stop()
    rs.flushall()


# ---------------------------------------------------------------- parts 3 and 4

def presign_round(harness, rs, pki, work, index, n, kind, rep):
    """Empty Redis, a fresh revd with the pre-signer: samples until its round is done."""
    import redis_harness
    rs.flushall()
    waited = ob.wait_idle(args.idle_wait)
    mem0 = info(rs, "memory")
    cursor_key = "revd:presign:cursor:" + redis_harness.issuer_tag(pki.issuing)
    r = Revd(harness, work, "%s-%d" % (kind, rep), conf_text(
        pki, index=index, redis=rs.address, interval="24h"))
    samples = []
    stats_key = None
    deadline = time.monotonic() + max(120, n / 1000.0)
    try:
        last_stats = 0
        while True:
            now = time.monotonic()
            keys = rs.command("DBSIZE")
            s = dict(t=time.time(), keys=keys, revd_cpu=pb.proc_cpu(r.pid),
                     redis_cpu=pb.proc_cpu(rs.proc.pid), machine=pb.total_cpu())
            if stats_key is None and keys < 1000:
                found = rs.keys("revd:presign:stats:*")
                stats_key = found[0] if found else None
            if stats_key and now - last_stats >= 0.5:
                last_stats = now
                s["stats"] = rs.hgetall(stats_key)
            samples.append(s)
            if "round done" in r.stderr():
                break
            if now > deadline or not r.r.alive():
                raise RuntimeError("no round done within the deadline:\n" + r.stderr()[-2000:])
            time.sleep(0.1)
        text = r.stderr()
        t_done = log_time([l for l in text.splitlines() if "round done" in l][0])
        t_ready = log_time([l for l in text.splitlines() if "ready" in l][0])
        status = subprocess.run([args.revd, "presign", "--redis", rs.address, "status"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                universal_newlines=True, timeout=30).stdout
        rss = rss_kb(r.pid)
    finally:
        r.stop()
    extra = sum(1 for k in (cursor_key, stats_key) if k and rs.command("EXISTS", k))
    answers = rs.command("DBSIZE") - extra
    mem1 = info(rs, "memory")
    # the steady rate: from 10% to 90% of the answers, interpolated between samples
    target = n

    def when(frac):
        goal = frac * target
        for a, b in zip(samples, samples[1:]):
            if a["keys"] < goal <= b["keys"]:
                f = (goal - a["keys"]) / max(b["keys"] - a["keys"], 1)
                return a, b, a["t"] + f * (b["t"] - a["t"])
        return None, None, None
    a10, _, t10 = when(0.1)
    _, b90, t90 = when(0.9)
    rate = 0.8 * target / (t90 - t10) if t10 and t90 and t90 > t10 else None
    win = dict(revd=b90["revd_cpu"] - a10["revd_cpu"], redis=b90["redis_cpu"] - a10["redis_cpu"],
               machine=b90["machine"] - a10["machine"], wall=b90["t"] - a10["t"],
               keys=b90["keys"] - a10["keys"]) if a10 and b90 else None
    sps = [float(s["stats"]["signed_per_sec"]) for s in samples if "stats" in s]
    used = int(mem1["used_memory"]) - int(mem0["used_memory"])
    rec = dict(rep=rep, n=n, answers=answers, seconds_start_to_done=t_done - r.t_spawn,
               seconds_ready_to_done=t_done - t_ready, seconds_start_to_ready=t_ready - r.t_spawn,
               rate_10_90=rate, rate_overall=answers / (t_done - t_ready),
               stats_signed_per_sec_max=max(sps) if sps else None,
               window_cpu=win, revd_us_per_answer=win and 1e6 * win["revd"] / max(win["keys"], 1),
               redis_us_per_answer=win and 1e6 * win["redis"] / max(win["keys"], 1),
               other_cores=win and (win["machine"] - win["revd"] - win["redis"]) / win["wall"],
               revd_cores=win and win["revd"] / win["wall"],
               redis_used_memory_before=int(mem0["used_memory"]),
               redis_used_memory_after=int(mem1["used_memory"]),
               redis_bytes_per_key=used / max(answers, 1),
               redis_dataset_bytes_per_key=(int(mem1["used_memory_dataset"]) -
                                            int(mem0.get("used_memory_dataset", 0)))
               / max(answers, 1),
               revd_rss_kb_after=rss, presign_status=status, idle_wait_s=waited,
               samples=[dict(t=round(s["t"] - r.t_spawn, 2), keys=s["keys"]) for s in samples])
    if answers != n:
        raise RuntimeError("%d answers in Redis, expected %d" % (answers, n))
    return rec


def speed(rep, kind):
    a = argparse.Namespace(
        out=os.path.join(args.out, "results.jsonl"),
        label=json.dumps(dict(kind="speed", part=kind, rep=rep, key="ec")), alg="ecdsap256",
        cpus="0-%d" % (os.cpu_count() - 1), multi=1, seconds=args.speed_seconds,
        idle_wait=0)
    pb.RESULTS.flush()
    ob.cmd_speed(a)
    with open(a.out) as f:
        last = [json.loads(l) for l in f if l.strip()][-1]
    return last


def part_presign(harness, rs, pki, work, kind, n):
    index = os.path.join(work, "index-%d.txt" % n)
    if not os.path.exists(index):
        t0 = time.monotonic()
        write_index(index, n)
        log("(%s) wrote a %d-line index.txt (%.1f MB) in %.1f s"
            % (kind, n, os.path.getsize(index) / 1e6, time.monotonic() - t0))
    for rep in range(args.reps):
        rec = presign_round(harness, rs, pki, work, index, n, kind, rep)
        sp = speed(rep, kind)
        rec["openssl_speed_sign_per_s"] = sp["sign_per_s"]
        rec["speed_other_cpu_s"] = sp["other_cpu_s"]
        rec["ratio_to_openssl"] = rec["rate_10_90"] / sp["sign_per_s"] if rec["rate_10_90"] else None
        record(kind, **rec)
        log("(%s) rep %d: %d answers; start -> round done %.1f s (index load %.1f s); %s "
            "answers/s (10%%-90%%), overall %.0f/s, stats hash max %s/s; openssl speed %.0f "
            "sign/s -> %.0f%%; revd %.1f us/answer (%.2f cores), redis %.1f us/answer; Redis "
            "%.0f bytes/key; other load %.2f cores"
            % (kind, rep + 1, rec["answers"], rec["seconds_start_to_done"],
               rec["seconds_start_to_ready"], "%.0f" % rec["rate_10_90"] if rec["rate_10_90"]
               else "-", rec["rate_overall"], rec["stats_signed_per_sec_max"],
               sp["sign_per_s"], 100 * (rec["ratio_to_openssl"] or 0),
               rec["revd_us_per_answer"] or 0, rec["revd_cores"] or 0,
               rec["redis_us_per_answer"] or 0, rec["redis_bytes_per_key"],
               rec["other_cores"] or 0))
    return index


def part_recheck(harness, rs, pki, work, index, n):
    """The pre-signer's steady state: rounds over n answers that are all fresh (nothing to
    sign, one GETRANGE per answer), back to back (interval = 100ms). Quiet rounds are not
    logged at info: the rate comes from the stats hash (rounds, checked; every 2 s)."""
    if rs.command("DBSIZE") < n:
        log("(recheck) filling Redis with %d answers first" % n)
        presign_round(harness, rs, pki, work, index, n, "recheck-fill", 0)
    ob.wait_idle(args.idle_wait)
    r = Revd(harness, work, "recheck", conf_text(pki, index=index, redis=rs.address,
                                                   interval="100ms"))
    samples = []
    try:
        deadline = time.monotonic() + 30
        key = None
        while key is None:
            found = [k for k in rs.keys("revd:presign:stats:*") if "/%d/" % r.pid in k]
            key = found[0] if found else None
            if time.monotonic() > deadline or not r.r.alive():
                raise RuntimeError("recheck: no statistics:\n" + r.stderr()[-2000:])
            time.sleep(0.2)
        # sample for at least --reps + 1 rounds (bounded)
        deadline = time.monotonic() + 60 + (args.reps + 1) * n / 20000.0
        while True:
            st = rs.hgetall(key)
            s = dict(t=time.monotonic(), rounds=int(st["rounds"]), checked=int(st["checked"]),
                     signed=int(st["signed"]), revd=pb.proc_cpu(r.pid),
                     redis=pb.proc_cpu(rs.proc.pid), machine=pb.total_cpu())
            if not samples or s["checked"] != samples[-1]["checked"]:
                samples.append(s)
            if samples[-1]["rounds"] - samples[0]["rounds"] >= args.reps + 1 and \
                    len(samples) >= 3:
                break
            if time.monotonic() > deadline or not r.r.alive():
                raise RuntimeError("recheck: %d rounds not done in time" % (args.reps + 1))
            time.sleep(0.1)
    finally:
        r.stop()
    a, b = samples[0], samples[-1]
    checks = b["checked"] - a["checked"]
    wall = b["t"] - a["t"]
    rate = checks / wall
    rec = dict(n=n, rounds=b["rounds"] - a["rounds"], checks=checks, seconds=wall,
               checks_per_s=rate, seconds_per_round=n / rate,
               signed=b["signed"] - a["signed"],
               revd_us_per_check=1e6 * (b["revd"] - a["revd"]) / checks,
               redis_us_per_check=1e6 * (b["redis"] - a["redis"]) / checks,
               revd_cores=(b["revd"] - a["revd"]) / wall,
               redis_cores=(b["redis"] - a["redis"]) / wall,
               other_cores=(b["machine"] - a["machine"] - (b["revd"] - a["revd"])
                            - (b["redis"] - a["redis"])) / wall,
               samples=[dict(t=round(x["t"] - a["t"], 2), rounds=x["rounds"],
                             checked=x["checked"]) for x in samples])
    record("recheck", **rec)
    log("(recheck) %d rounds over %d fresh answers in %.1f s: %.0f checks/s, %.1f s per round, "
        "%d signed; revd %.2f us per check (%.2f cores), Redis %.2f us (%.2f cores); other "
        "load %.2f cores" % (rec["rounds"], n, wall, rate, rec["seconds_per_round"],
                             rec["signed"], rec["revd_us_per_check"], rec["revd_cores"],
                             rec["redis_us_per_check"], rec["redis_cores"], rec["other_cores"]))


# ---------------------------------------------------------------- part 5

def part_l1mem(harness, rs, pki, work, index, n):
    """RSS of revd before and after n distinct answers are in its L1."""
    reqs = pb.Requests(harness, pki)
    first = max(1, n // 10)
    f1 = os.path.join(work, "mem-first.bin")
    f2 = os.path.join(work, "mem-rest.bin")
    f3 = os.path.join(work, "mem-check.bin")
    reclen = reqs.write(f1, 1, first)
    reqs.write(f2, first + 1, n - first)
    reqs.write(f3, 1, min(n, 20000))
    cache = n + n // 10
    redis_answers = rs.command("DBSIZE")
    sources = args.l1_sources.split(",")
    if "redis" in sources and redis_answers < n:
        log("(5) filling Redis with %d answers first" % n)
        presign_round(harness, rs, pki, work, index, n, "l1mem-fill", 0)
    for rep in range(args.mem_reps):
        for source in sources:
            text = (conf_text(pki, index=index, redis=rs.address, presign=False, cache=cache)
                    if source == "redis" else conf_text(pki, index=index, cache=cache))
            ob.wait_idle(args.idle_wait)
            r = Revd(harness, work, "mem-%s-%d" % (source, rep), text)
            try:
                time.sleep(1.0)
                rss0 = rss_kb(r.pid)
                h0 = int(info(rs, "stats")["keyspace_hits"])
                c0 = cpu_snapshot(r.pid, rs.proc.pid, None)
                s1, w1 = wrk_once(r.url, f1, reclen, args.threads, args.conns, 900, work)
                time.sleep(1.0)
                rss1 = rss_kb(r.pid)
                s2, w2 = wrk_once(r.url, f2, reclen, args.threads, args.conns, 1800, work)
                c1 = cpu_snapshot(r.pid, rs.proc.pid, None)
                time.sleep(1.0)
                rss2 = rss_kb(r.pid)
                h1 = int(info(rs, "stats")["keyspace_hits"])
                # the first 20 000 again: L1 hits now (no Redis GET, no signature)
                s3, w3 = wrk_once(r.url, f3, reclen, args.threads, args.conns, 300, work)
                h2 = int(info(rs, "stats")["keyspace_hits"])
                time.sleep(0.5)
                rss3 = rss_kb(r.pid)
            finally:
                r.stop()
            d = cpu_delta(c0, c1)
            per = 1024.0 * (rss2["VmRSS"] - rss0["VmRSS"]) / n
            slope = 1024.0 * (rss2["VmRSS"] - rss1["VmRSS"]) / (n - first)
            rec = dict(source=source, rep=rep, n=n, cache_entries=cache, rss_kb=[rss0, rss1, rss2,
                                                                               rss3],
                       bytes_per_answer=per, bytes_per_answer_marginal=slope,
                       fill_seconds=s1 + s2, fill_rate=n / (s1 + s2),
                       revd_cpu_us_per_fill=1e6 * d["revd"] / n,
                       redis_gets_per_answer=(h1 - h0) / n,
                       check_redis_gets=h2 - h1, check_requests=w3["answers"],
                       check_rate=w3["answers"] / s3, passes=[w1, w2, w3])
            record("l1mem", **rec)
            log("(5) rep %d, answers from %s: RSS %.1f -> %.1f MB (%d -> %d answers in L1): "
                "%.0f bytes/answer (marginal, after the first %d: %.0f); filled at %.0f/s "
                "(revd %.0f us CPU each, Redis GETs per answer %.2f); check pass over %d: "
                "%d Redis GETs, %.0f req/s"
                % (rep + 1, source, rss0["VmRSS"] / 1024, rss2["VmRSS"] / 1024, 0, n, per,
                   first, slope, rec["fill_rate"], rec["revd_cpu_us_per_fill"],
                   rec["redis_gets_per_answer"], w3["answers"], h2 - h1, rec["check_rate"]))


# ---------------------------------------------------------------- summary

def summary(path):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    out = []
    c = [r for r in rows if r["kind"] == "cached"]
    if c:
        out.append("## 1. Cached answers: revd (Redis tier configured) vs nginx, same DER bytes\n")
        out.append("`%s`\n" % c[0]["cmd"].replace(ROOT + "/", ""))
        out.append("Redis after the run: %d answer keys, pre-signer statistics %s (evidence "
                   "that the measured revd ran with the tier).\n"
                   % (c[0]["redis_answer_keys_after"],
                      ", ".join(c[0]["presign_stats_keys"]) or "none"))
        sm = os.path.join(c[0]["out"], "summary.md")
        if os.path.exists(sm):
            out.append(open(sm).read().replace("### (a)", "###"))
    l2 = [r for r in rows if r["kind"] == "l2"]
    if l2:
        fill = [r for r in rows if r["kind"] == "l2-fill"]
        warm = [r for r in rows if r["kind"] == "l2-warm"]
        n = fill[0]["n"] if fill else "?"
        out.append("## 2. An L1 miss served from Redis, %s certificates (PostgreSQL store)\n" % n)
        out.append("`%s` (bench/pg/distinct.lua: each wrk thread its own slice of the %s "
                   "serials; wraps counted). Every revd: 2 event loops, not pinned; wrk, "
                   "Redis and PostgreSQL on the same 2 vCPUs. Medians (min - max) of %d "
                   "repetitions, variants in rotating order. CPU = CPU seconds during the "
                   "measured run / requests.\n" % (l2[0]["cmd"], n, args.reps))
        if fill:
            out.append("Redis filled by the pre-signer from PostgreSQL: %s.%s\n" % (
                ", ".join("%s %.1f s" % kv for kv in fill[0]["seconds"].items()),
                (" L1 of l1-hit warmed in %.1f s (%d answers from Redis)."
                 % (warm[0]["seconds"], warm[0]["answers"])) if warm else ""))
        out.append("| variant | requests/s | p50 ms | p90 ms | p99 ms | revd CPU µs/req | revd "
                   "cores | Redis µs/req | PostgreSQL µs/req | wrk µs/req | other processes, "
                   "cores | Redis GETs/req | PG lookups/req | bad |")
        out.append("|" + " --- |" * 14)
        names = list(dict.fromkeys(r["variant"] for r in l2))
        base = {}
        for v in names:
            rs_ = [r for r in l2 if r["variant"] == v]
            cpu = lambda k: [r["cpu_us_per_request"][k] for r in rs_]  # noqa: E731
            base[v] = (statistics.median(cpu("revd")),
                       statistics.median(r["latency_ms"].get("50", 0) for r in rs_),
                       statistics.median(a + b + c for a, b, c in zip(
                           cpu("revd"), cpu("redis"), cpu("postgres"))))
            out.append("| %s | %s | %s | %s | %s | **%s** | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                v, med([r["rps"] for r in rs_]),
                med([r["latency_ms"].get("50") for r in rs_], "%.2f"),
                med([r["latency_ms"].get("90") for r in rs_], "%.2f"),
                med([r["latency_ms"].get("99") for r in rs_], "%.2f"),
                med(cpu("revd"), "%.1f"), med([r["cores_busy_revd"] for r in rs_], "%.2f"),
                med(cpu("redis"), "%.1f"), med(cpu("postgres"), "%.1f"),
                med(cpu("wrk"), "%.1f"), med([r["other_cores"] for r in rs_], "%.2f"),
                med([r["redis_hits_per_request"] for r in rs_], "%.2f"),
                med([r["pg_lookups_per_request"] for r in rs_], "%.2f"),
                ",".join(str(r["bad"]) for r in rs_)))
        if "l1-hit" in base:
            out.append("\nAgainst l1-hit (medians): revd CPU per request added, p50 latency "
                       "added, and revd + Redis + PostgreSQL CPU added:\n")
            out.append("| variant | revd CPU µs/req added | p50 ms added | revd+Redis+PG µs/req added |")
            out.append("| --- | --- | --- | --- |")
            for v in names:
                if v == "l1-hit":
                    continue
                out.append("| %s | %+.1f | %+.2f | %+.1f |" % (
                    v, base[v][0] - base["l1-hit"][0], base[v][1] - base["l1-hit"][1],
                    base[v][2] - base["l1-hit"][2]))
        out.append("")
    for kind, title in (("presign", "3. Pre-signing rate against openssl speed"),
                        ("million", "4. Pre-signing one million certificates")):
        p = [r for r in rows if r["kind"] == kind]
        if not p:
            continue
        out.append("## %s (%d certificates, index.txt, empty Redis)\n" % (title, p[0]["n"]))
        out.append("Rate = answers in Redis (DBSIZE, sampled every 0.1 s) from 10%% to 90%% "
                   "of N; openssl = `openssl speed -seconds %d ecdsap256` (one process, no "
                   "-multi) right after each round. CPU over the same 10-90%% window.\n"
                   % args.speed_seconds)
        out.append("| rep | start -> round done s | of which index load s | answers/s (10-90%) "
                   "| overall /s | stats hash signed_per_sec max | openssl sign/s | "
                   "**rate/openssl** | revd µs/answer (cores) | Redis µs/answer | other load "
                   "cores | Redis bytes/key | load avg |")
        out.append("|" + " --- |" * 13)
        for r in p:
            out.append("| %d | %.1f | %.1f | %s | %.0f | %s | %.0f | **%s** | %.1f (%.2f) | "
                       "%.1f | %.2f | %.0f | %s |" % (
                           r["rep"] + 1, r["seconds_start_to_done"], r["seconds_start_to_ready"],
                           "%.0f" % r["rate_10_90"] if r["rate_10_90"] else "-",
                           r["rate_overall"], r["stats_signed_per_sec_max"],
                           r["openssl_speed_sign_per_s"],
                           "%.0f%%" % (100 * r["ratio_to_openssl"]) if r["ratio_to_openssl"]
                           else "-", r["revd_us_per_answer"] or 0, r["revd_cores"] or 0,
                           r["redis_us_per_answer"] or 0, r["other_cores"] or 0,
                           r["redis_bytes_per_key"], r["loadavg"]))
        out.append("\nMedian: %s answers/s, %s%% of openssl speed; start -> round done %s s; "
                   "Redis %s bytes per key (used_memory), %s (used_memory_dataset).\n" % (
                       med([r["rate_10_90"] for r in p]),
                       med([100 * r["ratio_to_openssl"] for r in p if r["ratio_to_openssl"]]),
                       med([r["seconds_start_to_done"] for r in p], "%.1f"),
                       med([r["redis_bytes_per_key"] for r in p]),
                       med([r["redis_dataset_bytes_per_key"] for r in p])))
    rc = [r for r in rows if r["kind"] == "recheck"]
    if rc:
        r = rc[0]
        out.append("## 4b. The pre-signer's steady state: rounds over %d fresh answers\n" % r["n"])
        out.append("interval = 100ms, so rounds run back to back; every answer is fresh (nothing "
                   "signed): one GETRANGE per answer, 500 per pipeline.\n")
        out.append("From the stats hash (rounds, checked), sampled while the rounds ran.\n")
        out.append("| rounds | answers checked | seconds | answers checked/s | seconds per "
                   "round | signed | revd µs/check (cores) | Redis µs/check (cores) | other "
                   "load cores |")
        out.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        out.append("| %d | %d | %.1f | %.0f | %.1f | %d | %.2f (%.2f) | %.2f (%.2f) | %.2f |\n" % (
            r["rounds"], r["checks"], r["seconds"], r["checks_per_s"], r["seconds_per_round"],
            r["signed"], r["revd_us_per_check"], r["revd_cores"], r["redis_us_per_check"],
            r["redis_cores"], r["other_cores"]))
    m = [r for r in rows if r["kind"] == "l1mem"]
    if m:
        out.append("## 5. Memory per answer in revd's L1 (%d distinct answers, cache_entries = "
                   "%d)\n" % (m[0]["n"], m[0]["cache_entries"]))
        out.append("RSS = VmRSS of revd 1 s after start (index loaded), after the first 10%, "
                   "after all; each answer requested once (bench/redis/once.lua); then the "
                   "first 20 000 again as a check that they are L1 hits (Redis GETs = 0).\n")
        out.append("| rep | answers from | RSS before MB | RSS after MB | **bytes/answer** | "
                   "marginal bytes/answer (last 90%) | fill rate /s | revd CPU µs per fill | "
                   "Redis GETs/answer | check: Redis GETs, req/s |")
        out.append("|" + " --- |" * 10)
        for r in m:
            out.append("| %d | %s | %.1f | %.1f | **%.0f** | %.0f | %.0f | %.1f | %.2f | %d, %.0f |"
                       % (r["rep"] + 1, r["source"], r["rss_kb"][0]["VmRSS"] / 1024,
                          r["rss_kb"][2]["VmRSS"] / 1024, r["bytes_per_answer"],
                          r["bytes_per_answer_marginal"], r["fill_rate"],
                          r["revd_cpu_us_per_fill"], r["redis_gets_per_answer"],
                          r["check_redis_gets"], r["check_rate"]))
        out.append("")
    sp = [r for r in rows if r["kind"] == "speed"]
    if sp:
        out.append("openssl speed runs: %s\n" % ", ".join(
            "%s %.0f" % (r["part"], r["sign_per_s"]) for r in sp))
    return "\n".join(out)


# ---------------------------------------------------------------- main

def main():
    global args
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--revd", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--parts", default="cached,l2,presign,million,recheck,l1mem")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--n", type=int, default=100000, help="certificates for parts 2 and 3")
    ap.add_argument("--million", type=int, default=1000000, help="certificates for 4 and 5")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--speed-seconds", type=int, default=5)
    ap.add_argument("--idle-wait", type=float, default=15)
    ap.add_argument("--mem-reps", type=int, default=1)
    ap.add_argument("--l1-sources", default="redis,sign")
    ap.add_argument("--l2-variants",
                    default="l1-hit,l2-hit,l2-hit-nocert,miss-pg-sign,miss-index-sign")
    ap.add_argument("--cached-conns", default="64")
    ap.add_argument("--cached-args", default="")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    args.revd = os.path.abspath(args.revd)
    args.out = os.path.abspath(args.out)
    os.environ["REVD_BIN"] = args.revd
    import revd_harness as harness
    import redis_harness

    os.makedirs(args.out, exist_ok=True)
    pb.args = argparse.Namespace(revd=args.revd)  # for pgbench_revd.revd_cli (new_db)
    pb.RESULTS = open(os.path.join(args.out, "results.jsonl"), "a")
    work = tempfile.mkdtemp(prefix="revd-redisbench-")
    os.chmod(work, 0o755)
    rs = redis_harness.RedisServer("revd-redisbench")
    parts = args.parts.split(",")
    try:
        rs.start()
        ver = info(rs, "server")["redis_version"]
        log("redis-server %s on %s (pid %d, --save '' --appendonly no)"
            % (ver, rs.address, rs.proc.pid))
        pki = harness.make_pki(levels=2, leaves=3, key_type="ec", dest=os.path.join(work, "pki"))
        key = subprocess.run(["openssl", "pkey", "-in", pki.ocsp_key, "-noout", "-text"],
                             stdout=subprocess.PIPE, universal_newlines=True).stdout
        curve = re.search(r"NIST CURVE: (\S+)", key)
        record("setup", redis_version=ver, responder_key=curve.group(1) if curve else "?",
               parts=parts, options=vars(args))
        log("delegated responder key: %s" % (("ECDSA " + curve.group(1)) if curve else "?"))
        if "cached" in parts:
            part_cached(rs, pki, work)
        if "l2" in parts:
            part_l2(harness, rs, pki, work)
        if "presign" in parts:
            part_presign(harness, rs, pki, work, "presign", args.n)
        index = None
        if "million" in parts or "l1mem" in parts:
            index = part_presign(harness, rs, pki, work, "million", args.million) \
                if "million" in parts else None
        if "recheck" in parts:
            if index is None:
                index = os.path.join(work, "index-%d.txt" % args.million)
                write_index(index, args.million)
            part_recheck(harness, rs, pki, work, index, args.million)
        if "l1mem" in parts:
            if index is None:
                index = os.path.join(work, "index-%d.txt" % args.million)
                write_index(index, args.million)
            part_l1mem(harness, rs, pki, work, index, args.million)
        pb.RESULTS.close()
        text = summary(os.path.join(args.out, "results.jsonl"))
        with open(os.path.join(args.out, "summary.md"), "w") as f:
            f.write(text + "\n")
        print("\n" + text, flush=True)
    finally:
        rs.stop()
        if args.keep:
            log("kept " + work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    main()

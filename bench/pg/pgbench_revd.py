#!/usr/bin/env python3
"""revd's PostgreSQL store under load (called by bench/pg/run.sh; Python 3 stdlib only).

Starts its own PostgreSQL the way the integration tests do (tests/integration/pg_harness.py:
initdb into a temporary directory, 127.0.0.1 only, trust authentication, fsync off), then
restarts it once with a larger shared_buffers so the 1M-row table and its index stay in
memory. Loads one million synthetic certificates and measures:

  (a) lookups per second: revd answering only cache misses (every request a distinct
      serial: a lookup plus a signature each), driven by wrk; and the raw PostgreSQL rate
      for revd's own SELECT with pgbench (-M prepared, 1 and 2 connections, and a
      pipelined script: pgbench's \\startpipeline, 16 lookups per pipeline);
  (b) `revd import --index` of a synthetic one-million-line index.txt;
  (c) commit -> revoked-served latency: a revocation committed by a plain SQL UPDATE (a
      minimal wire-protocol client: the commit time is when the server's ReadyForQuery
      arrives), then revd polled over one keep-alive HTTP connection until it answers
      revoked.

Every measurement is repeated (--reps); results go to OUT/results.jsonl, and the summary
(median, min-max) to stdout and OUT/summary.md. Only 127.0.0.1 is used; every loop is
bounded; only processes started here are stopped (by pid).

Serial i (1..rows) is '4' || substr(md5(i::text), 2): 16 octets, positive, distinct.
"""

import argparse
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

args = None  # parsed options
RESULTS = None  # the results.jsonl file


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def record(kind, **kw):
    kw["kind"] = kind
    kw["loadavg"] = open("/proc/loadavg").read().split()[0]
    RESULTS.write(json.dumps(kw) + "\n")
    RESULTS.flush()


def serial_hex(i):
    return "4" + hashlib.md5(str(i).encode()).hexdigest()[1:]


SQL_SERIAL = "decode('4' || substr(md5(%s::text), 2), 'hex')"

# revd's lookup, as src/db/pg.c prepares it.
LOOKUP_SQL = ("SELECT extract(epoch FROM not_after)::bigint, "
              "extract(epoch FROM revoked_at)::bigint, "
              "reason, extract(epoch FROM invalidity_date)::bigint "
              "FROM certificates WHERE issuer_id = 1 AND serial = %s")


# ---------------------------------------------------------------- PostgreSQL

class Wire:
    """The least of PostgreSQL's frontend protocol: trust authentication, simple queries."""

    def __init__(self, port, user, db, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        params = b"user\0" + user.encode() + b"\0database\0" + db.encode() + b"\0\0"
        self.sock.sendall(struct.pack("!iI", 8 + len(params), 196608) + params)
        self._until_ready()

    def _msg(self):
        while len(self.buf) < 5 or len(self.buf) < 1 + struct.unpack("!i", self.buf[1:5])[0]:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("PostgreSQL closed the connection")
            self.buf += chunk
        n = struct.unpack("!i", self.buf[1:5])[0]
        t, body, self.buf = self.buf[:1], self.buf[5:1 + n], self.buf[1 + n:]
        return t, body

    def _until_ready(self):
        rows, err = [], None
        while True:
            t, body = self._msg()
            if t == b"R" and struct.unpack("!i", body[:4])[0] != 0:
                raise RuntimeError("PostgreSQL asks for a password: trust expected")
            if t == b"E":
                err = body.replace(b"\0", b" ").decode(errors="replace")
            if t == b"D":
                ncol = struct.unpack("!h", body[:2])[0]
                pos, row = 2, []
                for _ in range(ncol):
                    ln = struct.unpack("!i", body[pos:pos + 4])[0]
                    pos += 4
                    row.append(None if ln < 0 else body[pos:pos + ln].decode())
                    pos += max(ln, 0)
                rows.append(row)
            if t == b"Z":
                if err:
                    raise RuntimeError(err)
                return rows

    def query(self, sql):
        q = sql.encode() + b"\0"
        self.sock.sendall(b"Q" + struct.pack("!i", 4 + len(q)) + q)
        return self._until_ready()

    def close(self):
        try:
            self.sock.sendall(b"X" + struct.pack("!i", 4))
            self.sock.close()
        except OSError:
            pass


def pg_restart(pg, extra):
    """pg_harness starts with shared_buffers=64MB and max_connections=30: start the same
    server again (same data directory and port) with the bench's settings."""
    pg._run("pg_ctl", "stop", "-D", pg.datadir, "-m", "fast", "-w", "-t", "60", timeout=90)
    opts = ("-c listen_addresses=127.0.0.1 -p %d -c unix_socket_directories=%s -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off %s" % (pg.port, pg.sockdir, extra))
    pg._run("pg_ctl", "start", "-D", pg.datadir, "-l", pg.logfile, "-o", opts, "-w", "-t", "60",
            timeout=90)
    if not pg._wait_ready(30):
        raise RuntimeError("PostgreSQL did not come back:\n" + pg.log_tail())


def revd_cli(*a):
    r = subprocess.run([args.revd] + list(a), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=3600)
    if r.returncode != 0:
        raise RuntimeError("revd %s failed:\n%s%s" % (" ".join(a), r.stdout, r.stderr))
    return r.stdout + r.stderr


def new_db(pg, name, pki):
    dsn = pg.create_database(name)
    revd_cli("db", "migrate", "--dsn", dsn)
    revd_cli("db", "add-issuer", "--dsn", dsn, "--name", "bench", "--cert", pki.issuing)
    return dsn


def load_rows(pg, dsn, rows):
    """rows certificates for issuer 1, 1% of them revoked (keyCompromise), one transaction
    with revd.bulk = 'on' (no per-row notification, as the schema asks of bulk loads)."""
    t0 = time.monotonic()
    pg.psql(dsn, "BEGIN; SET LOCAL revd.bulk = 'on'; "
                 "INSERT INTO certificates (issuer_id, serial, not_before, not_after, revoked_at, "
                 "reason) SELECT 1, " + SQL_SERIAL % "i" + ", now() - interval '1 day', "
                 "now() + interval '1 year', CASE WHEN i % 100 = 0 THEN now() - interval "
                 "'1 hour' END, CASE WHEN i % 100 = 0 THEN 1 END "
                 "FROM generate_series(1, " + str(rows) + ") AS i; COMMIT", timeout=3600)
    t_insert = time.monotonic() - t0
    pg.psql(dsn, "VACUUM ANALYZE certificates", timeout=3600)
    size = pg.psql(dsn, "SELECT pg_size_pretty(pg_total_relation_size('certificates'))")
    return t_insert, size


def prewarm(pg, dsn):
    try:
        pg.psql(dsn, "CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        return pg.psql(dsn, "SELECT pg_prewarm('certificates') + pg_prewarm('certificates_pkey')")
    except AssertionError:
        return pg.psql(dsn, "SELECT count(*) FROM certificates")


def pkey_scans(pg, dsn):
    return int(pg.psql(dsn, "SELECT pg_stat_clear_snapshot(); SELECT idx_scan FROM "
                            "pg_stat_user_indexes WHERE indexrelname = 'certificates_pkey'")
               .splitlines()[-1])


# ---------------------------------------------------------------- revd

def start_revd(harness, workdir, dsn, pki, name, log_level="info"):
    conf = os.path.join(workdir, name + ".conf")
    with open(conf, "w") as f:
        f.write("[server]\nworkers = %s\nlog_level = %s\n\n[postgres]\ndsn = %s\n\n"
                "[issuer bench]\nca = %s\nsigner_cert = %s\nsigner_key = %s\nstore = postgres\n"
                % (args.workers, log_level, dsn, pki.issuing, pki.ocsp_cert, pki.ocsp_key))
    r = harness.Revd(["--config", conf, "--listen", "127.0.0.1:0"], workdir, name)
    r.argv[0] = args.revd
    r.start()
    # Until the change feed has matched the issuer, revd answers tryLater.
    req = harness.ocsp_request(pki.issuing, serial_hex(args.rows))
    deadline = time.monotonic() + 30
    while True:
        st, _, body = harness.ocsp_post(r.port, req)
        if st == 200 and harness.OcspResp(body).status == 0:
            return r
        if time.monotonic() > deadline or not r.alive():
            raise RuntimeError("revd never answered from the database:\n" + r.stderr())
        time.sleep(0.02)


class Requests:
    """Pre-built POST bodies: OCSPRequest DER for serials i in [first, first+n), fixed
    length (every serial is 16 octets)."""

    def __init__(self, harness, pki):
        self.template = harness.ocsp_request(pki.issuing, serial_hex(1))
        tail = bytes.fromhex(serial_hex(1))
        assert self.template.endswith(tail) and len(tail) == 16
        self.prefix = self.template[:-16]

    def der(self, i):
        return self.prefix + bytes.fromhex(serial_hex(i))

    def write(self, path, first, n):
        with open(path, "wb") as f:
            for i in range(first, first + n):
                f.write(self.der(i))
        return len(self.template)


def wrk(url, lua, env, conns, threads, duration):
    e = dict(os.environ, **env)
    e["BENCH_PG_THREADS"] = str(threads)
    cmd = ["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % duration, "--latency",
           "--timeout", "5s", "-s", lua, url]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, timeout=duration + 120, env=e)
    out = r.stdout
    if r.returncode != 0:
        raise RuntimeError("wrk failed:\n" + out)
    m = re.search(r"(\d+) requests in ([0-9.]+)(m?s)", out)
    n, secs = int(m.group(1)), float(m.group(2)) * (60 if m.group(3) == "m" else 1)
    lat = {}
    for p in ("50", "90", "99"):
        mm = re.search(r"^\s+%s(?:\.000)?%%\s+([0-9.]+)(us|ms|s)" % p, out, re.M)
        if mm:
            lat[p] = float(mm.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[mm.group(2)]
    bad = sum(int(x) for x in re.findall(r"^bad answers: (\d+)", out, re.M))
    wraps = sum(int(x) for x in re.findall(r"^wraps: (\d+)", out, re.M))
    errors = re.search(r"Socket errors: .*|Non-2xx.*", out)
    return dict(requests=n, seconds=secs, rps=n / secs, latency_ms=lat, bad=bad, wraps=wraps,
                socket_errors=errors.group(0) if errors else None, cmd=" ".join(cmd), out=out)


# ---------------------------------------------------------------- CPU accounting

TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid):
    """utime + stime of a process, seconds (0 if it is gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def pg_cpu(pg):
    """{pid: cpu seconds} of the postmaster's children (the backends, among them revd's)."""
    master = pg._postmaster_pid()
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master:
            out[int(d)] = (int(fields[11]) + int(fields[12])) / TICK
    return out


def total_cpu():
    """All CPUs' busy time (everything on the machine, other users included), seconds."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return (sum(v[:8]) - idle) / TICK


# ---------------------------------------------------------------- (a)

def part_a(harness, pg, dsn, pki, work):
    # Raw PostgreSQL: revd's SELECT with pgbench.
    one = os.path.join(work, "lookup.sql")
    with open(one, "w") as f:
        f.write("\\set i random(1, %d)\n%s;\n" % (args.rows, LOOKUP_SQL % (SQL_SERIAL % ":i")))
    pipe = os.path.join(work, "lookup-pipeline.sql")
    with open(pipe, "w") as f:
        for k in range(args.pipeline):
            f.write("\\set i%d random(1, %d)\n" % (k, args.rows))
        f.write("\\startpipeline\n")
        for k in range(args.pipeline):
            f.write("%s;\n" % (LOOKUP_SQL % (SQL_SERIAL % (":i%d" % k))))
        f.write("\\endpipeline\n")
    base = ["pgbench", "-n", "-M", "prepared", "-h", "127.0.0.1", "-p", str(pg.port),
            "-U", pg.user, "-T", str(args.duration)]
    variants = [("pgbench c1", ["-c", "1", "-j", "1", "-f", one], 1),
                ("pgbench c2", ["-c", "2", "-j", "2", "-f", one], 1),
                ("pgbench c1 pipelined x%d" % args.pipeline, ["-c", "1", "-j", "1", "-f", pipe],
                 args.pipeline),
                ("pgbench c2 pipelined x%d" % args.pipeline, ["-c", "2", "-j", "2", "-f", pipe],
                 args.pipeline)]
    dbname = dsn.split("dbname=")[1].split()[0]
    for rep in range(args.reps):
        for name, extra, per_tx in variants:
            cmd = base + extra + [dbname]
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               universal_newlines=True, timeout=args.duration + 120)
            m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", r.stdout)
            if r.returncode != 0 or not m:
                raise RuntimeError("pgbench failed:\n%s\n%s" % (" ".join(cmd), r.stdout))
            lat = re.search(r"latency average = ([0-9.]+) ms", r.stdout)
            rate = float(m.group(1)) * per_tx
            record("a-pgbench", variant=name, rep=rep, lookups_per_s=rate,
                   latency_avg_ms=float(lat.group(1)) if lat else None, cmd=" ".join(cmd))
            log("(a) %s rep %d: %.0f lookups/s" % (name, rep + 1, rate))

    # revd: every request a distinct serial, so every one is a lookup and a signature.
    reqs = Requests(harness, pki)
    per_rep = args.distinct
    measured = os.path.join(work, "distinct.bin")
    warm = os.path.join(work, "warm.bin")
    reclen = reqs.write(measured, 1, per_rep)
    reqs.write(warm, per_rep + 1, args.warm_distinct)
    lua = os.path.join(HERE, "distinct.lua")
    for rep in range(args.reps):
        r = start_revd(harness, work, dsn, pki, "revd-a%d" % rep)
        try:
            scans0 = pkey_scans(pg, dsn)
            env = dict(BENCH_PG_REQS=warm, BENCH_PG_RECLEN=str(reclen))
            w0 = wrk(r.url(), lua, env, args.conns, args.threads, args.warmup)
            env["BENCH_PG_REQS"] = measured
            cpu0 = (proc_cpu(r.proc.pid), pg_cpu(pg), os.times(), total_cpu())
            w = wrk(r.url(), lua, env, args.conns, args.threads, args.duration)
            cpu1 = (proc_cpu(r.proc.pid), pg_cpu(pg), os.times(), total_cpu())
        finally:
            r.stop()
        time.sleep(0.5)  # revd's connections closed: their backends' statistics flushed
        scans = pkey_scans(pg, dsn) - scans0
        cpu = dict(revd=cpu1[0] - cpu0[0],
                   postgres=sum(v - cpu0[1].get(k, 0.0) for k, v in cpu1[1].items()),
                   wrk=(cpu1[2].children_user + cpu1[2].children_system)
                   - (cpu0[2].children_user + cpu0[2].children_system),
                   machine=cpu1[3] - cpu0[3])
        cpu["other"] = cpu["machine"] - cpu["revd"] - cpu["postgres"] - cpu["wrk"]
        per_req_us = {k: v / w["requests"] * 1e6 for k, v in cpu.items()}
        total = w0["requests"] + w["requests"] + 1
        record("a-revd", rep=rep, misses_per_s=w["rps"], requests=w["requests"],
               seconds=w["seconds"], latency_ms=w["latency_ms"], bad_answers=w["bad"],
               wraps=w["wraps"], warmup_wraps=w0["wraps"], warmup_bad=w0["bad"],
               socket_errors=w["socket_errors"], pkey_scans=scans,
               requests_incl_warmup=total, cmd=w["cmd"], conns=args.conns,
               cpu_seconds=cpu, cpu_us_per_request=per_req_us,
               threads=args.threads, workers=args.workers)
        log("(a) revd misses rep %d: %.0f/s (%d requests, %d not successful, %d wraps; "
            "warm-up: %d requests, %d wraps; PK index scans %d for %d requests; latency %s)"
            % (rep + 1, w["rps"], w["requests"], w["bad"], w["wraps"], w0["requests"],
               w0["wraps"], scans, total, w["latency_ms"]))
        log("(a) CPU during the measured run (s): %s; per request (us): %s"
            % (", ".join("%s %.2f" % kv for kv in cpu.items()),
               ", ".join("%s %.0f" % kv for kv in per_req_us.items())))
        if w["wraps"] or w0["wraps"]:
            log("WARNING: a wrk thread ran out of distinct serials (some requests were cache "
                "hits): raise --distinct / --warm-distinct")
    for p in (measured, warm):
        os.unlink(p)


# ---------------------------------------------------------------- (b)

def part_b(harness, pg, pki, work):
    index = os.path.join(work, "index-1m.txt")
    t0 = time.monotonic()
    with open(index, "w") as f:
        for i in range(1, args.rows + 1):
            s = serial_hex(i).upper()
            if i % 100 == 0:
                f.write("R\t271231235959Z\t250101000000Z,keyCompromise\t%s\tunknown\t"
                        "/O=bench/CN=leaf%d\n" % (s, i))
            else:
                f.write("V\t271231235959Z\t\t%s\tunknown\t/O=bench/CN=leaf%d\n" % (s, i))
    log("(b) wrote %d-line index.txt (%.1f MB) in %.1f s" % (args.rows, os.path.getsize(index)
                                                              / 1e6, time.monotonic() - t0))
    help_text = subprocess.run([args.revd, "import", "--help"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, universal_newlines=True).stdout
    if "--index" not in help_text:
        record("b-import", skipped="revd import --index is not available")
        log("(b) skipped: revd import --index is not available")
        return
    for rep in range(args.reps):
        dsn = new_db(pg, "import%d" % rep, pki)
        cmd = [args.revd, "import", "--dsn", dsn, "--issuer", "bench", "--index", index]
        t0 = time.monotonic()
        out = revd_cli(*cmd[1:])
        wall = time.monotonic() - t0
        rows = int(pg.psql(dsn, "SELECT count(*) FROM certificates"))
        revoked = int(pg.psql(dsn, "SELECT count(*) FROM certificates "
                                   "WHERE revoked_at IS NOT NULL"))
        m = re.search(r"in ([0-9.]+) s", out)
        record("b-import", rep=rep, seconds=wall, rows_per_s=rows / wall, rows=rows,
               revoked=revoked, revd_says=out.strip(), cmd=" ".join(cmd).replace(dsn, "'DSN'"),
               revd_seconds=float(m.group(1)) if m else None)
        log("(b) import rep %d: %d rows (%d revoked) in %.1f s = %.0f rows/s; revd: %s"
            % (rep + 1, rows, revoked, wall, rows / wall, out.strip()))
        if rows != args.rows or revoked != args.rows // 100:
            raise RuntimeError("import: %d rows, %d revoked, want %d, %d"
                               % (rows, revoked, args.rows, args.rows // 100))
        pg.psql(pg.dsn("postgres"), 'DROP DATABASE "import%d"' % rep)
    os.unlink(index)


# ---------------------------------------------------------------- (c)

def part_c(harness, pg, dsn, pki, work):
    reqs = Requests(harness, pki)
    dbname = dsn.split("dbname=")[1].split()[0]
    # Serials near the end of the range: not used by (a), and not revoked already.
    pool = [i for i in range(args.rows - 1000 - 2 * args.reps * args.revocations,
                             args.rows - 1000) if i % 100]
    for rep in range(args.reps):
        r = start_revd(harness, work, dsn, pki, "revd-c%d" % rep)
        db = Wire(pg.port, pg.user, dbname)
        conn = http.client.HTTPConnection("127.0.0.1", r.port, timeout=10)
        hdrs = {"Content-Type": "application/ocsp-request"}

        def ask(der):
            conn.request("POST", "/", der, hdrs)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise RuntimeError("HTTP %d" % resp.status)
            o = harness.OcspResp(body)
            if o.status != 0:
                return "status%d" % o.status, body
            return o.singles[0]["status"], body

        lat, polls, serials = [], [], []
        try:
            for i in pool[rep * args.revocations:(rep + 1) * args.revocations]:
                der = reqs.der(i)
                s1, b1 = ask(der)
                s2, b2 = ask(der)
                if (s1, s2) != ("good", "good") or b1 != b2:
                    raise RuntimeError("serial %d: %s/%s, cached=%s" % (i, s1, s2, b1 == b2))
                db.query("UPDATE certificates SET revoked_at = now(), reason = 1 WHERE "
                         "issuer_id = 1 AND serial = '\\x%s'" % serial_hex(i))
                t_commit = time.monotonic()
                n = 0
                while True:
                    n += 1
                    st, _ = ask(der)
                    if st == "revoked":
                        break
                    if time.monotonic() - t_commit > 10:
                        raise RuntimeError("serial %d not revoked after 10 s" % i)
                lat.append((time.monotonic() - t_commit) * 1000)
                polls.append(n)
                serials.append(serial_hex(i))
            # The last one once more, as a real client checks it: openssl ocsp verifies
            # the signature up to the root and prints the status.
            out = subprocess.run(
                ["openssl", "ocsp", "-issuer", pki.issuing, "-CAfile", pki.root,
                 "-verify_other", pki.chain, "-url", "http://127.0.0.1:%d/" % r.port,
                 "-serial", "0x" + serials[-1], "-no_nonce"],
                capture_output=True, text=True, timeout=30)
            said = (out.stdout + out.stderr).strip()
            if "Response verify OK" not in said or ": revoked" not in said:
                raise RuntimeError("openssl ocsp did not verify a revoked answer:\n" + said)
            record("c-openssl", rep=rep, serial=serials[-1], output=said)
            log("(c) rep %d: openssl ocsp on the 1M-row database: %s"
                % (rep + 1, " / ".join(l for l in said.splitlines() if l and l[0] != "\t")))
        finally:
            conn.close()
            db.close()
            time.sleep(0.2)
            text = r.stderr()
            r.stop()
        lags = [float(x) for x in re.findall(r"cached answers dropped ([0-9.]+) ms after", text)]
        q = quantiles(lat)
        record("c-latency", rep=rep, n=len(lat), ms=q, polls_median=statistics.median(polls),
               revd_logged_trigger_to_invalidation_ms=quantiles(lags), samples_ms=lat,
               revd_logged_samples_ms=lags)
        log("(c) rep %d: %d revocations, commit -> revoked served: median %.2f ms, p90 %.2f, "
            "p99 %.2f, max %.2f (revd's own trigger -> invalidation: median %.2f ms, max %.2f)"
            % (rep + 1, len(lat), q["median"], q["p90"], q["p99"], q["max"],
               quantiles(lags)["median"], quantiles(lags)["max"]))


def quantiles(xs):
    if not xs:
        return dict(median=float("nan"), p90=float("nan"), p99=float("nan"), max=float("nan"))
    s = sorted(xs)

    def q(p):  # nearest rank
        return s[min(len(s) - 1, max(0, int(round(p * len(s) + 0.5)) - 1))]
    return dict(median=statistics.median(s), p90=q(0.90), p99=q(0.99), max=s[-1], min=s[0])


# ---------------------------------------------------------------- summary

def med_spread(vals, fmt="%.0f"):
    if not vals:
        return "-"
    return (fmt + " (" + fmt + " - " + fmt + ")") % (statistics.median(vals), min(vals), max(vals))


def summary(path):
    rows = [json.loads(l) for l in open(path)]
    out = []
    pg_rows = [r for r in rows if r["kind"] == "a-pgbench"]
    rv = [r for r in rows if r["kind"] == "a-revd"]
    if pg_rows or rv:
        out.append("### (a) lookups per second, %s certificates in the table\n" % args.rows)
        out.append("| what | per second: median (min - max) of %d | notes |" % args.reps)
        out.append("| --- | --- | --- |")
        if rv:
            out.append("| revd, distinct serials (cache misses: lookup + ECDSA P-256 signature) "
                       "| %s | wrk -t%d -c%d, %d s; p50 latency %s ms, p99 %s ms; "
                       "unsuccessful answers: %s; PK index scans / requests (incl. warm-up; "
                       "1.000 = every request a miss): %s |"
                       % (med_spread([r["misses_per_s"] for r in rv]), rv[0]["threads"],
                          rv[0]["conns"], args.duration,
                          med_spread([r["latency_ms"].get("50", 0) for r in rv], "%.2f"),
                          med_spread([r["latency_ms"].get("99", 0) for r in rv], "%.2f"),
                          ", ".join(str(r["bad_answers"]) for r in rv),
                          ", ".join("%.3f" % (r["pkey_scans"] / r["requests_incl_warmup"])
                                    for r in rv)))
        for v in dict.fromkeys(r["variant"] for r in pg_rows):
            vs = [r for r in pg_rows if r["variant"] == v]
            out.append("| PostgreSQL alone, revd's SELECT, %s | %s | avg latency per "
                       "transaction %s ms |" % (v, med_spread([r["lookups_per_s"] for r in vs]),
                                                med_spread([r["latency_avg_ms"] for r in vs],
                                                           "%.3f")))
        if rv:
            keys = ["revd", "postgres", "wrk", "other", "machine"]
            out.append("\nCPU time per request during the measured revd runs, microseconds "
                       "(median of %d; 'machine' is every CPU's busy time, 'other' what is "
                       "left: other users of the shared machine, the kernel's softirq work "
                       "not charged to a process, ...):\n" % len(rv))
            out.append("| " + " | ".join(keys) + " |")
            out.append("|" + " --- |" * len(keys))
            out.append("| " + " | ".join("%.0f" % statistics.median(
                r["cpu_us_per_request"][k] for r in rv) for k in keys) + " |")
        out.append("")
    imp = [r for r in rows if r["kind"] == "b-import"]
    if imp:
        out.append("### (b) revd import --index, %d-line index.txt\n" % args.rows)
        if "skipped" in imp[0]:
            out.append("skipped: " + imp[0]["skipped"] + "\n")
        else:
            out.append("| rows per second: median (min - max) | wall seconds | revd says |")
            out.append("| --- | --- | --- |")
            out.append("| %s | %s | %s |\n" % (med_spread([r["rows_per_s"] for r in imp]),
                                               med_spread([r["seconds"] for r in imp], "%.1f"),
                                               "; ".join(r["revd_says"] for r in imp)))
    lc = [r for r in rows if r["kind"] == "c-latency"]
    if lc:
        out.append("### (c) commit -> revoked served, %d revocations per run\n"
                   % args.revocations)
        out.append("| run | n | median ms | p90 ms | p99 ms | max ms | revd's log: trigger -> "
                   "invalidation, median / max ms |")
        out.append("| --- | --- | --- | --- | --- | --- | --- |")
        for r in lc:
            q = r["ms"]
            g = r["revd_logged_trigger_to_invalidation_ms"]
            out.append("| %d | %d | %.2f | %.2f | %.2f | %.2f | %.2f / %.2f |"
                       % (r["rep"] + 1, r["n"], q["median"], q["p90"], q["p99"], q["max"],
                          g["median"], g["max"]))
        allv = [x for r in lc for x in r["samples_ms"]]
        qa = quantiles(allv)
        out.append("| all | %d | %.2f | %.2f | %.2f | %.2f | |" % (len(allv), qa["median"],
                                                                 qa["p90"], qa["p99"], qa["max"]))
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------- main

def main():
    global args, RESULTS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--revd", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rows", type=int, default=1000000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", default="auto")
    ap.add_argument("--distinct", type=int, default=400000,
                    help="distinct serials for the measured wrk run")
    ap.add_argument("--warm-distinct", type=int, default=100000)
    ap.add_argument("--pipeline", type=int, default=16)
    ap.add_argument("--revocations", type=int, default=200)
    ap.add_argument("--shared-buffers", default="512MB")
    ap.add_argument("--parts", default="a,b,c")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    args.revd = os.path.abspath(args.revd)
    if args.rows < args.distinct + args.warm_distinct + 1000 + 2 * args.reps * args.revocations:
        ap.error("--rows too small for --distinct + --warm-distinct + the revocations")
    os.environ["REVD_BIN"] = args.revd
    import pg_harness
    import revd_harness as harness

    os.makedirs(args.out, exist_ok=True)
    RESULTS = open(os.path.join(args.out, "results.jsonl"), "a")
    work = tempfile.mkdtemp(prefix="revd-pgbench-")
    pg = pg_harness.PgServer("revd-pgbench")
    try:
        log("PostgreSQL: initdb and start (pg_harness)")
        pg.start()
        pg_restart(pg, "-c shared_buffers=%s -c max_connections=50" % args.shared_buffers)
        version = pg.psql(pg.dsn(), "SHOW server_version")
        pki = harness.make_pki(levels=2, leaves=3, key_type="ec",
                               dest=os.path.join(work, "pki"))
        dsn = new_db(pg, "bench", pki)
        log("loading %d certificates" % args.rows)
        t_load, size = load_rows(pg, dsn, args.rows)
        log("loaded in %.1f s (%.0f rows/s, INSERT ... SELECT generate_series); table + "
            "indexes: %s" % (t_load, args.rows / t_load, size))
        record("load", rows=args.rows, seconds=t_load, size=size, postgres=version,
               shared_buffers=args.shared_buffers)
        log("prewarm: %s pages" % prewarm(pg, dsn))
        parts = args.parts.split(",")
        if "a" in parts:
            part_a(harness, pg, dsn, pki, work)
        if "c" in parts:
            part_c(harness, pg, dsn, pki, work)
        if "b" in parts:
            part_b(harness, pg, pki, work)
        RESULTS.close()
        text = ("PostgreSQL %s (pg_harness settings, shared_buffers=%s); load of %d rows: "
                "%.1f s; table + indexes %s\n\n" % (version, args.shared_buffers, args.rows,
                                                     t_load, size)) + \
            summary(os.path.join(args.out, "results.jsonl"))
        with open(os.path.join(args.out, "summary.md"), "w") as f:
            f.write(text)
        print("\n" + text, flush=True)
    finally:
        pg.stop()
        if args.keep:
            log("kept " + work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    main()

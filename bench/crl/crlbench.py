#!/usr/bin/env python3
"""revd's CRL builds: time, size and memory (called by bench/crl/run.sh; Python 3 stdlib only).

Parts (--parts, any of full,delta,limits,trace,pgscan,mem,profile):

  full     `revd crl` building one full CRL (`[crl] deltas = no`) at each --sizes N revoked
           entries, from an index.txt (N R lines + N/10 V lines, EC P-256 CA made with
           openssl req) and from PostgreSQL (the same N + N/10 rows loaded with one
           INSERT ... SELECT FROM generate_series); RSA-2048 at the largest N from the
           index.txt (--rsa). Each run is `/usr/bin/time -v revd crl --config C --out D`
           with a fresh CRL state (a new [crl] dir; for PostgreSQL the crls and crl_series
           rows deleted), so that the full CRL is due. Recorded: the log's "read" and
           "built and signed" ms, entries, bytes, the process's wall time, CPU and maximum
           RSS; and the same process with `crl = no` (it loads the issuer's store, then
           stops with "no issuer publishes CRLs") as the memory baseline.
  delta    with a full CRL of N entries and its delta in place (`deltas = yes`,
           `delta_interval = 10s`), one more certificate revoked (index.txt rewritten /
           `revd revoke`), 11 s of waiting so the delta is due, and `revd crl` again: the
           delta's read and build times and entries (1). Each repetition starts from a
           fresh full CRL and undoes its revocation afterwards.
  limits   `openssl speed -seconds S ecdsap256` (and rsa2048 with --rsa);
           `openssl crl -inform DER -in revd.crl -outform DER -out /dev/null` on revd's
           CRL at each N; `openssl ca -gencrl` on the same index.txt at each N (bounded by
           --gencrl-timeout).
  trace    strace -f --seccomp-bpf -tt -T on one full build at the largest N: the time
           from the build's log line to the publication, the publication ([crl] dir or
           the INSERT into crls), the --out file, exit.
  pgscan   PostgreSQL alone, with psql, on revd's scan at the largest N: revd's keyset
           batches inside the server, one ordered query, one in heap order; and one
           batch's EXPLAIN (ANALYZE, BUFFERS).
  mem      valgrind --tool=massif on the full build at the largest N (index and
           PostgreSQL): what is live at the peak.
  profile  perf record -e cpu-clock on the same runs: where the process's CPU goes.

Checks: every CRL verifies with `openssl crl -verify -CAfile`; the revokedCertificates
of the index.txt CRL, the PostgreSQL CRL and the openssl ca -gencrl CRL at the same N are
byte-for-byte equal (sha256 over the DER), and their entry count is N.

Results: OUT/results.jsonl (one record per run), OUT/logs/*.log (every command's raw
stderr and stdout, /usr/bin/time -v included), OUT/summary.md. Only 127.0.0.1 is used
(PostgreSQL from tests/integration/pg_harness.py); every command has a timeout; only
processes started here are stopped, by pid.
"""

import argparse
import calendar
import hashlib
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
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

args = None
RESULTS = None
LOGDIR = None

EXPIRY = "351231235959Z"  # 2035-12-31 23:59:59 UTC
REVOKED_AT = "251101000000Z"  # 2025-11-01 00:00:00 UTC
EXTRA_REVOKED_AT = "251201000000Z"
# reason by i % 4, the same in index.txt and in SQL: none, keyCompromise (1),
# superseded (4), cessationOfOperation (5)
INDEX_REASONS = ["", ",keyCompromise", ",superseded", ",cessationOfOperation"]
SQL_REASONS = "(ARRAY[NULL, 1, 4, 5]::smallint[])[i % 4 + 1]"
RUN_TIMEOUT = 900


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def record(kind, **kw):
    kw["kind"] = kind
    kw["loadavg"] = open("/proc/loadavg").read().split()[0]
    RESULTS.write(json.dumps(kw) + "\n")
    RESULTS.flush()
    return kw


def serial_hex(i):
    """Certificate i's serial: 16 octets, positive, distinct (as bench/pg uses)."""
    return "4" + hashlib.md5(str(i).encode()).hexdigest()[1:]


def valid_count(n):
    return max(1000, n // 10)


def human(n):
    return "%dM" % (n // 1000000) if n % 1000000 == 0 else (
        "%dk" % (n // 1000) if n % 1000 == 0 else str(n))


# ---------------------------------------------------------------- running commands

TIME_FIELDS = {
    "Maximum resident set size (kbytes)": "rss_kb",
    "User time (seconds)": "user_s",
    "System time (seconds)": "sys_s",
    "Elapsed (wall clock) time (h:mm:ss or m:ss)": "elapsed",
    "Exit status": "exit_status",
}


def parse_time_v(text):
    out = {}
    for line in text.splitlines():
        line = line.strip()
        for key, name in TIME_FIELDS.items():
            if line.startswith(key + ":"):
                v = line[len(key) + 1:].strip()
                if name == "elapsed":
                    parts = [float(p) for p in v.split(":")]
                    s = 0.0
                    for p in parts:
                        s = s * 60 + p
                    out["elapsed_s"] = s
                elif name in ("rss_kb", "exit_status"):
                    out[name] = int(v)
                else:
                    out[name] = float(v)
    return out


def timed(label, argv, timeout=RUN_TIMEOUT, ok_codes=(0,), env=None):
    """Runs argv under /usr/bin/time -v; keeps stdout+stderr in LOGDIR/label.log. Returns
    (fields of time -v, stdout, stderr, wall seconds from Python, t0 epoch)."""
    full = ["/usr/bin/time", "-v"] + argv
    t0 = time.time()
    m0 = time.monotonic()
    try:
        r = subprocess.run(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, timeout=timeout, env=env)
        timed_out = False
    except subprocess.TimeoutExpired as e:
        r = subprocess.CompletedProcess(full, -9, e.stdout or "", e.stderr or "")
        if isinstance(r.stdout, bytes):
            r.stdout = r.stdout.decode(errors="replace")
        if isinstance(r.stderr, bytes):
            r.stderr = r.stderr.decode(errors="replace")
        timed_out = True
    wall = time.monotonic() - m0
    with open(os.path.join(LOGDIR, label + ".log"), "w") as f:
        f.write("$ %s\n# exit %s%s, %.3f s\n--- stdout\n%s--- stderr\n%s" % (
            " ".join(full), r.returncode, " (timed out)" if timed_out else "", wall,
            r.stdout, r.stderr))
    tv = parse_time_v(r.stderr)
    tv["timed_out"] = timed_out
    if not timed_out and r.returncode not in ok_codes:
        raise RuntimeError("%s exited %d (see %s.log):\n%s" % (
            " ".join(argv), r.returncode, label, r.stderr[-3000:]))
    return tv, r.stdout, r.stderr, wall, t0


def run(argv, timeout=600, check=True, **kw):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError("%s failed (%d):\n%s%s" % (" ".join(argv), r.returncode, r.stdout,
                                                     r.stderr))
    return r.stdout + r.stderr


# ---------------------------------------------------------------- revd's log

LOG_TS = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})Z ")
CRL_LINE = re.compile(r"CRL (\S+): (full|delta) number (\d+), (\d+) entries, (\d+) bytes; "
                      r"read in ([\d.]+) ms, built and signed in ([\d.]+) ms")


def log_time(line):
    m = LOG_TS.match(line)
    if not m:
        return None
    y, mo, d, h, mi, s, ms = (int(x) for x in m.groups())
    return calendar.timegm((y, mo, d, h, mi, s)) + ms / 1000.0


def parse_revd_log(stderr, t0):
    """The CRL lines, and the times (s after the process started) of the log's milestones."""
    out = {"crls": []}
    for line in stderr.splitlines():
        t = log_time(line)
        m = CRL_LINE.search(line)
        if m:
            out["crls"].append({
                "series": m.group(1), "type": m.group(2), "number": int(m.group(3)),
                "entries": int(m.group(4)), "bytes": int(m.group(5)),
                "read_ms": float(m.group(6)), "build_ms": float(m.group(7)),
                "logged_at_s": round(t - t0, 4) if t else None})
        elif t is not None and " status from " in line and "store_ready_s" not in out:
            out["store_ready_s"] = round(t - t0, 4)
        elif t is not None and re.search(r"issuer \S+: \d+ CRL", line):
            out["publisher_ready_s"] = round(t - t0, 4)
    return out


# ---------------------------------------------------------------- DER (just enough)

def der_tlv(b, i):
    """(tag, content start, content end) of the TLV at i."""
    tag = b[i]
    n = b[i + 1]
    j = i + 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(b[j:j + k], "big")
        j += k
    return tag, j, j + n


def crl_entries_digest(path):
    """(number of revokedCertificates entries, sha256 of their DER) of a DER CRL."""
    b = open(path, "rb").read()
    _, s, _ = der_tlv(b, 0)  # CertificateList
    _, i, tbs_end = der_tlv(b, s)  # tbsCertList contents
    fields = []
    while i < tbs_end:
        tag, cs, ce = der_tlv(b, i)
        fields.append((tag, i, cs, ce))
        i = ce
    # [version] sig issuer thisUpdate [nextUpdate] [revoked] [0]ext
    k = 0
    if fields[k][0] == 0x02:
        k += 1
    k += 3  # signature, issuer, thisUpdate
    if k < len(fields) and fields[k][0] in (0x17, 0x18):
        k += 1
    if k >= len(fields) or fields[k][0] != 0x30:
        return 0, hashlib.sha256(b"").hexdigest()
    tag, start, cs, ce = fields[k]
    n = 0
    j = cs
    while j < ce:
        j = der_tlv(b, j)[2]
        n += 1
    return n, hashlib.sha256(b[start:ce]).hexdigest()


def openssl_verify(crl, ca):
    r = subprocess.run(["openssl", "crl", "-inform", "DER", "-in", crl, "-noout", "-verify",
                        "-CAfile", ca], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, timeout=600)
    return "verify OK" in r.stdout


# ---------------------------------------------------------------- data

def make_ca(work, kind):
    d = os.path.join(work, "ca-" + kind)
    os.makedirs(d)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if kind == "ec" else \
        ["-newkey", "rsa:2048"]
    run(["openssl", "req", "-x509"] + key + [
        "-nodes", "-keyout", os.path.join(d, "ca.key"), "-out", os.path.join(d, "ca.pem"),
        "-subj", "/O=revd bench/CN=revd CRL bench CA " + kind, "-days", "3650",
        "-addext", "basicConstraints=critical,CA:true",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    return {"dir": d, "cert": os.path.join(d, "ca.pem"), "key": os.path.join(d, "ca.key"),
            "kind": kind}


def index_lines(n, valid):
    for i in range(1, n + valid + 1):
        s = serial_hex(i).upper()
        if i <= n:
            yield "R\t%s\t%s%s\t%s\tunknown\t/CN=leaf %d\n" % (EXPIRY, REVOKED_AT,
                                                              INDEX_REASONS[i % 4], s, i)
        else:
            yield "V\t%s\t\t%s\tunknown\t/CN=leaf %d\n" % (EXPIRY, s, i)


def make_index(work, n):
    path = os.path.join(work, "index-%d.txt" % n)
    with open(path, "w") as f:
        f.writelines(index_lines(n, valid_count(n)))
    with open(path + ".attr", "w") as f:
        f.write("unique_subject = no\n")
    return path


def revoke_in_index(data, i):
    """index.txt bytes with certificate i (a V line) revoked, keyCompromise."""
    s = serial_hex(i).upper().encode()
    old = b"V\t" + EXPIRY.encode() + b"\t\t" + s + b"\t"
    new = (b"R\t" + EXPIRY.encode() + b"\t" + EXTRA_REVOKED_AT.encode() + b",keyCompromise\t"
           + s + b"\t")
    if data.count(old) != 1:
        raise RuntimeError("certificate %d is not a V line of the index" % i)
    return data.replace(old, new)


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def pg_restart(pg, extra):
    """pg_harness starts with shared_buffers=64MB: the same server again with the bench's
    settings (as bench/pg does)."""
    pg._run("pg_ctl", "stop", "-D", pg.datadir, "-m", "fast", "-w", "-t", "60", timeout=90)
    opts = ("-c listen_addresses=127.0.0.1 -p %d -c unix_socket_directories=%s -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off %s" % (pg.port, pg.sockdir, extra))
    pg._run("pg_ctl", "start", "-D", pg.datadir, "-l", pg.logfile, "-o", opts, "-w", "-t", "60",
            timeout=90)
    if not pg._wait_ready(30):
        raise RuntimeError("PostgreSQL did not come back:\n" + pg.log_tail())


def make_pg_db(pg, n, ca):
    dsn = pg.create_database("crl%d" % n)
    run([args.revd, "db", "migrate", "--dsn", dsn])
    run([args.revd, "db", "add-issuer", "--dsn", dsn, "--name", "bench", "--cert", ca["cert"]])
    valid = valid_count(n)
    sql = ("BEGIN; SET LOCAL revd.bulk = 'on'; "
           "INSERT INTO certificates (issuer_id, serial, not_before, not_after, revoked_at, "
           "reason) SELECT (SELECT id FROM issuers WHERE name = 'bench'), "
           "decode('4' || substr(md5(i::text), 2), 'hex'), "
           "timestamptz '2025-10-01 00:00:00+00', timestamptz '2035-12-31 23:59:59+00', "
           "CASE WHEN i <= %d THEN timestamptz '2025-11-01 00:00:00+00' END, "
           "CASE WHEN i <= %d THEN %s END "
           "FROM generate_series(1, %d) AS i; COMMIT" % (n, n, SQL_REASONS, n + valid))
    t0 = time.monotonic()
    pg.psql(dsn, sql, timeout=3600)
    t_load = time.monotonic() - t0
    pg.psql(dsn, "VACUUM ANALYZE certificates", timeout=3600)
    size = pg.psql(dsn, "SELECT pg_size_pretty(pg_total_relation_size('certificates'))")
    try:
        pg.psql(dsn, "CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        pg.psql(dsn, "SELECT pg_prewarm('certificates') + "
                     "pg_prewarm('certificates_revoked_serial')")
    except AssertionError:
        pass
    revoked = int(pg.psql(dsn, "SELECT count(*) FROM certificates WHERE revoked_at IS NOT NULL"))
    if revoked != n:
        raise RuntimeError("expected %d revoked rows, found %d" % (n, revoked))
    record("pg_load", n=n, rows=n + valid, seconds=round(t_load, 3), size=size,
           sql=sql)
    log("PostgreSQL crl%d: %d rows (%d revoked) in %.1f s, table + indexes %s" % (
        n, n + valid, n, t_load, size))
    return dsn


def pg_reset_crls(pg, dsn):
    pg.psql(dsn, "DELETE FROM crls; DELETE FROM crl_series")


# ---------------------------------------------------------------- revd crl

def write_conf(path, store, ca, source, state_dir, crl=True, deltas=False):
    with open(path, "w") as f:
        f.write("[server]\nlog_level = info\n\n")
        if store == "pg":
            f.write("[postgres]\ndsn = %s\n\n" % source)
        f.write("[crl]\n")
        if store == "index":
            f.write("dir = %s\n" % state_dir)
        f.write("deltas = %s\n" % ("yes" if deltas else "no"))
        if deltas:
            f.write("delta_interval = 10s\n")
        f.write("\n[issuer bench]\nca = %s\nsigner_key = %s\n" % (ca["cert"], ca["key"]))
        if store == "index":
            f.write("index = %s\n" % source)
        else:
            f.write("store = postgres\n")
        f.write("crl = %s\n" % ("yes" if crl else "no"))
    return path


def revd_crl(label, conf, out, ok_codes=(0,), wrapper=None):
    os.makedirs(out, exist_ok=True)
    argv = [args.revd, "crl", "--config", conf, "--out", out]
    if wrapper:
        argv = wrapper + argv
    tv, so, se, wall, t0 = timed(label, argv, ok_codes=ok_codes)
    info = parse_revd_log(se, t0)
    info.update(tv)
    info["wall_s"] = round(wall, 4)
    return info


def fresh_state(work, tag):
    d = tempfile.mkdtemp(prefix="state-%s-" % tag, dir=work)
    return d


class Source:
    """One data set: an index file or a PostgreSQL database, at n revoked entries."""

    def __init__(self, store, n, ca, path_or_dsn, pg=None):
        self.store, self.n, self.ca, self.src, self.pg = store, n, ca, path_or_dsn, pg

    def tag(self):
        return "%s-%s-%s" % (self.store, self.ca["kind"], human(self.n))

    def reset(self, work):
        if self.store == "pg":
            pg_reset_crls(self.pg, self.src)
            return None
        return fresh_state(work, self.tag())


def full_runs(src, work, reps):
    """reps full builds and reps baselines (crl = no), alternating."""
    tag = src.tag()
    out = os.path.join(work, "out-" + tag)
    for rep in range(1, reps + 1):
        state = src.reset(work)
        conf = write_conf(os.path.join(work, "%s-full.conf" % tag), src.store, src.ca, src.src,
                          state)
        info = revd_crl("full-%s-r%d" % (tag, rep), conf, out)
        crl = [c for c in info["crls"] if c["type"] == "full"]
        if len(crl) != 1 or crl[0]["entries"] != src.n:
            raise RuntimeError("%s: expected one full CRL of %d entries, got %r" % (
                tag, src.n, info["crls"]))
        c = crl[0]
        rec = record("full", store=src.store, key=src.ca["kind"], n=src.n, rep=rep,
                     read_ms=c["read_ms"], build_ms=c["build_ms"], bytes=c["bytes"],
                     entries=c["entries"], logged_at_s=c["logged_at_s"],
                     store_ready_s=info.get("store_ready_s"),
                     publisher_ready_s=info.get("publisher_ready_s"), wall_s=info["wall_s"],
                     elapsed_s=info.get("elapsed_s"), user_s=info.get("user_s"),
                     sys_s=info.get("sys_s"), rss_kb=info.get("rss_kb"))
        log("full %s rep %d: read %.1f ms, built and signed %.1f ms, %d bytes, wall %.2f s, "
            "RSS %.1f MB" % (tag, rep, c["read_ms"], c["build_ms"], c["bytes"], rec["wall_s"],
                             rec["rss_kb"] / 1024.0))
        if src.store == "index" and state:
            shutil.rmtree(state, ignore_errors=True)
        # the baseline: the same process and data, with the issuer's CRLs off
        bconf = write_conf(os.path.join(work, "%s-base.conf" % tag), src.store, src.ca, src.src,
                           os.path.join(work, "unused-state"), crl=False)
        b = revd_crl("baseline-%s-r%d" % (tag, rep), bconf, out, ok_codes=(2,))
        record("baseline", store=src.store, key=src.ca["kind"], n=src.n, rep=rep,
               store_ready_s=b.get("store_ready_s"), wall_s=b["wall_s"],
               user_s=b.get("user_s"), sys_s=b.get("sys_s"), rss_kb=b.get("rss_kb"))
        log("baseline %s rep %d (crl = no): wall %.2f s, RSS %.1f MB" % (
            tag, rep, b["wall_s"], b["rss_kb"] / 1024.0))
    crl_file = os.path.join(out, "bench.crl")
    keep = os.path.join(work, "crl-%s.der" % tag)
    shutil.copyfile(crl_file, keep)
    verified = openssl_verify(keep, src.ca["cert"])
    entries, digest = crl_entries_digest(keep)
    r = subprocess.run(["openssl", "crl", "-inform", "DER", "-in", keep, "-noout", "-text"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    head = b"\n".join(r.stdout.splitlines()[:40]).decode(errors="replace")
    with open(os.path.join(LOGDIR, "crl-%s.txt" % tag), "w") as f:
        f.write("$ openssl crl -inform DER -in crl-%s.der -noout -text | head -40\n%s\n" % (tag,
                                                                                          head))
    stored = None
    if src.store == "pg":
        # how PostgreSQL keeps the published CRL (bytea: pglz-compressed, TOASTed)
        stored = int(src.pg.psql(src.src, "SELECT pg_column_size(der) FROM crls WHERE "
                                          "delta_base IS NULL ORDER BY number DESC LIMIT 1"))
    record("check", store=src.store, key=src.ca["kind"], n=src.n, verify_ok=verified,
           entries=entries, entries_sha256=digest, bytes=os.path.getsize(keep),
           pg_column_size=stored)
    log("check %s: openssl crl -verify %s, %d entries, revokedCertificates sha256 %s" % (
        tag, "OK" if verified else "FAILED", entries, digest[:16]))
    if not verified or entries != src.n:
        raise RuntimeError("%s: the CRL does not verify or has %d entries" % (tag, entries))
    return keep


def delta_runs(src, work, reps):
    tag = src.tag()
    out = os.path.join(work, "out-delta-" + tag)
    cur_index = None
    original = None
    if src.store == "index":
        cur_index = os.path.join(work, "index-%d-cur.txt" % src.n)
        original = open(src.src, "rb").read()
        write_atomic(cur_index, original)
    for rep in range(1, reps + 1):
        state = src.reset(work)
        conf = write_conf(os.path.join(work, "%s-delta.conf" % tag), src.store, src.ca,
                          cur_index or src.src, state, deltas=True)
        a = revd_crl("delta-base-%s-r%d" % (tag, rep), conf, out)
        types = [c["type"] for c in a["crls"]]
        if types != ["full", "delta"] or a["crls"][1]["entries"] != 0:
            raise RuntimeError("%s: expected a full CRL and an empty delta, got %r" % (
                tag, a["crls"]))
        f, d0 = a["crls"]
        record("full+delta", store=src.store, key=src.ca["kind"], n=src.n, rep=rep,
               full_read_ms=f["read_ms"], full_build_ms=f["build_ms"], full_bytes=f["bytes"],
               delta_read_ms=d0["read_ms"], delta_build_ms=d0["build_ms"],
               delta_bytes=d0["bytes"], full_logged_at_s=f["logged_at_s"],
               delta_logged_at_s=d0["logged_at_s"], store_ready_s=a.get("store_ready_s"),
               wall_s=a["wall_s"], user_s=a.get("user_s"), sys_s=a.get("sys_s"),
               rss_kb=a.get("rss_kb"))
        delta_made = time.time()
        # one more revocation: certificate n + rep (a V line / a row without revoked_at)
        extra = src.n + rep
        if src.store == "index":
            write_atomic(cur_index, revoke_in_index(original, extra))
        else:
            run([args.revd, "revoke", "--dsn", src.src, "--issuer", "bench", "--serial",
                 serial_hex(extra), "--reason", "keyCompromise"], timeout=60)
        # the delta is due 10 s (delta_interval) after the last one
        wait = delta_made + 11.0 - time.time()
        if wait > 0:
            time.sleep(wait)
        b = revd_crl("delta-%s-r%d" % (tag, rep), conf, out)
        types = [c["type"] for c in b["crls"]]
        if types != ["delta"] or b["crls"][0]["entries"] != 1:
            raise RuntimeError("%s: expected one delta CRL of 1 entry, got %r" % (tag, b["crls"]))
        d = b["crls"][0]
        dfile = os.path.join(out, "bench-delta.crl")
        entries, _ = crl_entries_digest(dfile)
        verified = openssl_verify(dfile, src.ca["cert"])
        rec = record("delta", store=src.store, key=src.ca["kind"], n=src.n, rep=rep,
                     read_ms=d["read_ms"], build_ms=d["build_ms"], bytes=d["bytes"],
                     entries=d["entries"], entries_in_file=entries, verify_ok=verified,
                     logged_at_s=d["logged_at_s"], store_ready_s=b.get("store_ready_s"),
                     publisher_ready_s=b.get("publisher_ready_s"), wall_s=b["wall_s"],
                     user_s=b.get("user_s"), sys_s=b.get("sys_s"), rss_kb=b.get("rss_kb"))
        log("delta %s rep %d: %d entry, read %.1f ms, built and signed %.1f ms, %d bytes, "
            "wall %.2f s, RSS %.1f MB (full+delta run before it: wall %.2f s, RSS %.1f MB)" % (
                tag, rep, d["entries"], d["read_ms"], d["build_ms"], d["bytes"],
                rec["wall_s"], rec["rss_kb"] / 1024.0, a["wall_s"], a["rss_kb"] / 1024.0))
        if not verified or entries != 1:
            raise RuntimeError("%s: the delta does not verify or lists %d entries" % (tag,
                                                                                      entries))
        # undo the revocation, so that every repetition starts from n entries
        if src.store == "index":
            write_atomic(cur_index, original)
            shutil.rmtree(state, ignore_errors=True)
        else:
            src.pg.psql(src.src, "UPDATE certificates SET revoked_at = NULL, reason = NULL "
                                 "WHERE serial = decode('%s', 'hex')" % serial_hex(extra))
    if cur_index:
        os.unlink(cur_index)


# ---------------------------------------------------------------- limits

SPEED_LINE = {
    "ecdsap256": re.compile(r"256 bits ecdsa \(nistp256\)\s+([\d.]+)s\s+([\d.]+)s\s+([\d.]+)\s+([\d.]+)"),
    "rsa2048": re.compile(r"rsa 2048 bits\s+([\d.]+)s\s+([\d.]+)s\s+([\d.]+)\s+([\d.]+)"),
}


def openssl_speed(alg, rep):
    label = "openssl-speed-%s-r%d" % (alg, rep)
    r = subprocess.run(["openssl", "speed", "-seconds", str(args.speed_seconds), alg],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                       timeout=args.speed_seconds * 4 + 60)
    with open(os.path.join(LOGDIR, label + ".log"), "w") as f:
        f.write("$ openssl speed -seconds %d %s\n%s" % (args.speed_seconds, alg, r.stdout))
    m = None
    for line in r.stdout.splitlines():
        mm = SPEED_LINE[alg].search(line)
        if mm:
            m = mm
    if m is None:
        raise RuntimeError("cannot read openssl speed's output:\n" + r.stdout)
    sign_s = float(m.group(3))
    record("speed", alg=alg, rep=rep, sign_per_s=sign_s, us_per_sign=1e6 / sign_s,
           seconds=args.speed_seconds)
    log("openssl speed %s rep %d: %.0f sign/s (%.1f µs)" % (alg, rep, sign_s, 1e6 / sign_s))


def openssl_ca_conf(work, ca, index, n):
    d = os.path.join(work, "openssl-ca-%d" % n)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "crlnumber"), "w") as f:
        f.write("01\n")
    conf = os.path.join(d, "ca.cnf")
    with open(conf, "w") as f:
        f.write("[ ca ]\ndefault_ca = bench\n\n[ bench ]\ndatabase = %s\ncertificate = %s\n"
                "private_key = %s\ncrlnumber = %s/crlnumber\ndefault_md = sha256\n"
                "default_crl_days = 7\ncrl_extensions = crl_ext\nunique_subject = no\n\n"
                "[ crl_ext ]\nauthorityKeyIdentifier = keyid:always\n" % (
                    index, ca["cert"], ca["key"], d))
    return conf, d


def limits(work, ca, sizes, crls, indexes):
    for rep in range(1, args.reps + 1):
        openssl_speed("ecdsap256", rep)
        if args.rsa:
            openssl_speed("rsa2048", rep)
    for n in sizes:
        crl = crls.get(n)
        if crl is None:
            continue
        for rep in range(1, args.reps + 1):
            tv, _, _, wall, _ = timed("openssl-crl-%s-r%d" % (human(n), rep),
                                      ["openssl", "crl", "-inform", "DER", "-in", crl,
                                       "-outform", "DER", "-out", "/dev/null"])
            record("openssl_crl", n=n, rep=rep, wall_s=round(wall, 4),
                   elapsed_s=tv.get("elapsed_s"), user_s=tv.get("user_s"),
                   sys_s=tv.get("sys_s"), rss_kb=tv.get("rss_kb"), bytes=os.path.getsize(crl))
            log("openssl crl DER->DER %s rep %d: %.3f s, RSS %.1f MB" % (
                human(n), rep, wall, tv["rss_kb"] / 1024.0))
    for n in sizes:
        index = indexes.get(n)
        if index is None:
            continue
        conf, d = openssl_ca_conf(work, ca, index, n)
        gave_up = False
        for rep in range(1, args.reps + 1):
            if gave_up:
                break
            with open(os.path.join(d, "crlnumber"), "w") as f:
                f.write("01\n")
            pem = os.path.join(d, "gencrl.pem")
            tv, _, _, wall, _ = timed("openssl-ca-gencrl-%s-r%d" % (human(n), rep),
                                      ["openssl", "ca", "-config", conf, "-gencrl", "-out", pem],
                                      timeout=args.gencrl_timeout)
            if tv["timed_out"]:
                record("gencrl", n=n, rep=rep, timed_out=True, timeout_s=args.gencrl_timeout)
                log("openssl ca -gencrl %s rep %d: no CRL within %d s (timed out)" % (
                    human(n), rep, args.gencrl_timeout))
                gave_up = True
                continue
            der = os.path.join(d, "gencrl.der")
            run(["openssl", "crl", "-in", pem, "-outform", "DER", "-out", der])
            entries, digest = crl_entries_digest(der)
            record("gencrl", n=n, rep=rep, timed_out=False, wall_s=round(wall, 4),
                   elapsed_s=tv.get("elapsed_s"), user_s=tv.get("user_s"),
                   sys_s=tv.get("sys_s"), rss_kb=tv.get("rss_kb"), der_bytes=os.path.getsize(der),
                   pem_bytes=os.path.getsize(pem), entries=entries, entries_sha256=digest)
            log("openssl ca -gencrl %s rep %d: %.2f s, RSS %.1f MB, %d entries, %d bytes DER" % (
                human(n), rep, wall, tv["rss_kb"] / 1024.0, entries, os.path.getsize(der)))


# ---------------------------------------------------------------- mem, profile

def parse_massif(text):
    """ms_print's peak snapshot: (total heap bytes, its top-level allocation sites with the
    callers one level up)."""
    lines = text.splitlines()
    peak = None
    for line in lines:
        m = re.search(r"(\d+) \(peak\)", line)
        if m and "Detailed snapshots" in line:
            peak = int(m.group(1))
    if peak is None:
        return None, []
    for k, line in enumerate(lines):
        m = re.match(r"^\s*%d\s+[\d,]+\s+([\d,]+)\s+[\d,]+" % peak, line)
        if not m:
            continue
        total = int(m.group(1).replace(",", ""))
        sites = []
        for l2 in lines[k + 1:]:
            if re.match(r"^-{10}", l2) or re.match(r"^\s+\d+\s+[\d,]+\s+[\d,]+", l2):
                break
            mm = re.match(r"^->\s*([\d.]+)% \(([\d,]+)B\) (?:0x[0-9A-F]+: )?(\S+)", l2)
            if mm:
                if mm.group(3) != "in":  # "in 1+ places, all below ms_print's threshold"
                    sites.append({"bytes": int(mm.group(2).replace(",", "")),
                                  "where": mm.group(3)})
                continue
            mm = re.match(r"^\| ->\s*([\d.]+)% \(([\d,]+)B\) (?:0x[0-9A-F]+: )?(\S+)", l2)
            if mm and sites and mm.group(3) != "in":
                sites[-1].setdefault("from", []).append(
                    {"bytes": int(mm.group(2).replace(",", "")), "where": mm.group(3)})
        return total, sites
    return None, []


def massif(src, work):
    tag = src.tag()
    state = src.reset(work)
    conf = write_conf(os.path.join(work, "%s-massif.conf" % tag), src.store, src.ca, src.src,
                      state)
    mfile = os.path.join(work, "massif-%s.out" % tag)
    info = revd_crl("massif-%s" % tag, conf, os.path.join(work, "out-massif"),
                    wrapper=["valgrind", "--tool=massif", "--massif-out-file=" + mfile])
    text = run(["ms_print", "--threshold=1", mfile])
    with open(os.path.join(LOGDIR, "massif-%s.txt" % tag), "w") as f:
        f.write(text)
    total, sites = parse_massif(text)
    if total is not None:
        record("massif", store=src.store, key=src.ca["kind"], n=src.n, peak_heap_bytes=total,
               sites=sites, crls=info["crls"], rss_kb=info.get("rss_kb"))
        log("massif %s: peak heap %.1f MB: %s" % (tag, total / 1e6, ", ".join(
            "%s %.1f MB" % (s["where"], s["bytes"] / 1e6) for s in sites)))
    else:
        log("massif %s: no peak snapshot in ms_print's output" % tag)
    if src.store == "index" and state:
        shutil.rmtree(state, ignore_errors=True)


def profile(src, work):
    tag = src.tag()
    state = src.reset(work)
    conf = write_conf(os.path.join(work, "%s-perf.conf" % tag), src.store, src.ca, src.src,
                      state)
    pdata = os.path.join(work, "perf-%s.data" % tag)
    revd_crl("perf-%s" % tag, conf, os.path.join(work, "out-perf"),
             wrapper=["perf", "record", "-q", "-e", "cpu-clock", "-F", "4000", "-g",
                      "-o", pdata, "--"])
    text = run(["perf", "report", "-i", pdata, "--no-children", "--sort", "dso,symbol",
                "--stdio", "-g", "none", "--percent-limit", "0.5"], timeout=300)
    with open(os.path.join(LOGDIR, "perf-%s.txt" % tag), "w") as f:
        f.write(text)
    top = []
    for line in text.splitlines():
        m = re.match(r"^\s+([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(\S+)", line)
        if m:
            top.append({"pct": float(m.group(1)), "dso": m.group(2), "sym": m.group(4)})
    record("profile", store=src.store, key=src.ca["kind"], n=src.n, top=top[:25])
    log("perf %s: %s" % (tag, ", ".join("%s %.1f%%" % (t["sym"], t["pct"]) for t in top[:8])))
    if src.store == "index" and state:
        shutil.rmtree(state, ignore_errors=True)


STRACE_LINE = re.compile(r"^\d+\s+(\d\d):(\d\d):(\d\d\.\d+) (\w+)\((.*)\) += (-?\d+|\?)"
                         r"(?:.*<([\d.]+)>)?")


def parse_strace_timeline(text, store, state_dir, out_dir):
    """The full run's tail, from strace -tt -T: the CRL's log line, the first syscall of the
    publication (index: a file in [crl] dir; PostgreSQL: the INSERT's bytes, the first
    send of 1 MB or more), the --out file's open and rename, exit. Seconds between them."""
    ev = []
    for line in text.splitlines():
        m = STRACE_LINE.match(line)
        if not m:
            continue
        t = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
        dur = float(m.group(7)) if m.group(7) else 0.0
        ev.append((t, m.group(4), m.group(5), m.group(6), dur))
    t_log = t_pub = t_out0 = t_out1 = t_exit = None
    fsync_s = 0.0
    for t, call, a, ret, dur in ev:
        if t_log is None:
            if call == "write" and a.startswith("2,") and " full number" in a:
                t_log = t + dur
            continue
        if t_pub is None:
            if store == "index" and call == "openat" and state_dir in a:
                t_pub = t
            elif store == "pg" and call == "sendto":
                size = int(a.rsplit(",", 4)[-4].strip()) if a.count(",") >= 5 else 0
                if size >= 1000000:
                    t_pub = t
            continue
        if call == "fsync" and t_out0 is None:
            fsync_s += dur
        if t_out0 is None and call == "openat" and out_dir in a:
            t_out0 = t
        elif t_out0 is not None and t_out1 is None and call == "rename" and out_dir in a:
            t_out1 = t + dur
        elif call == "exit_group":
            t_exit = t
    if None in (t_log, t_pub, t_out0, t_out1, t_exit):
        return None
    return {"after_build_to_publish_s": round(t_pub - t_log, 4),
            "publish_s": round(t_out0 - t_pub, 4), "publish_fsync_s": round(fsync_s, 4),
            "write_out_s": round(t_out1 - t_out0, 4), "free_and_exit_s": round(t_exit - t_out1, 4)}


def trace(src, work):
    tag = src.tag()
    state = src.reset(work)
    conf = write_conf(os.path.join(work, "%s-strace.conf" % tag), src.store, src.ca, src.src,
                      state)
    out = os.path.join(work, "out-strace-%s" % tag)
    stfile = os.path.join(LOGDIR, "strace-%s.txt" % tag)
    info = revd_crl("strace-%s" % tag, conf, out,
                    wrapper=["strace", "-f", "--seccomp-bpf", "-tt", "-T", "-s", "200", "-e",
                             "trace=openat,write,fsync,rename,sendto,exit_group", "-o", stfile])
    tl = parse_strace_timeline(open(stfile).read(), src.store, state or "\0", out)
    if tl is None:
        log("trace %s: cannot find the milestones in strace's output" % tag)
        return
    c = info["crls"][0]
    record("trace", store=src.store, key=src.ca["kind"], n=src.n, read_ms=c["read_ms"],
           build_ms=c["build_ms"], wall_s=info["wall_s"],
           publisher_ready_s=info.get("publisher_ready_s"), **tl)
    log("trace %s: built -> publication %.3f s, publication %.3f s (fsync %.3f s), --out "
        "%.3f s, free and exit %.3f s" % (tag, tl["after_build_to_publish_s"], tl["publish_s"],
                                          tl["publish_fsync_s"], tl["write_out_s"],
                                          tl["free_and_exit_s"]))
    if src.store == "index" and state:
        shutil.rmtree(state, ignore_errors=True)


# What revd's scan asks of PostgreSQL (src/db/pg.c pg_scan_locked), and two variants.
PG_SCAN_COLS = ("encode(serial, 'hex'), extract(epoch FROM not_after)::bigint, "
                "extract(epoch FROM revoked_at)::bigint, reason, "
                "extract(epoch FROM invalidity_date)::bigint, change_seq")
PG_SCAN_WHERE = ("issuer_id = (SELECT id FROM issuers WHERE name = 'bench') AND "
                 "not_after > now() - interval '1 day' AND revoked_at IS NOT NULL")
PG_SCANS = [
    ("keyset", "revd's batches (4096 rows, serial > last, ORDER BY serial) run inside the "
               "server by a PL/pgSQL loop that only counts them: the index scan and heap "
               "fetches, no output",
     "DO $$ DECLARE after bytea := ''::bytea; n int; last bytea; BEGIN LOOP "
     "SELECT count(*), (array_agg(s ORDER BY s DESC))[1] INTO n, last FROM (SELECT serial AS "
     "s, " + PG_SCAN_COLS + " FROM certificates WHERE " + PG_SCAN_WHERE + " AND serial > after "
     "ORDER BY serial LIMIT 4096) x; EXIT WHEN n < 4096; after := last; END LOOP; END $$"),
    ("ordered", "one query, ORDER BY serial (index scan), every row to psql -o /dev/null",
     "SELECT " + PG_SCAN_COLS + " FROM certificates WHERE " + PG_SCAN_WHERE + " ORDER BY serial"),
    ("heap-order", "one query, no ORDER BY (sequential scan; revd sorts the entries anyway), "
                   "every row to psql -o /dev/null",
     "SELECT " + PG_SCAN_COLS + " FROM certificates WHERE " + PG_SCAN_WHERE),
]


def pgscan(pg, dsn, n):
    with open(os.path.join(LOGDIR, "pgscan-%s.log" % human(n)), "w") as f:
        # one of revd's batches, from the middle of the serials
        batch = ("SELECT " + PG_SCAN_COLS + " FROM certificates WHERE " + PG_SCAN_WHERE +
                 " AND serial > decode('4800', 'hex') ORDER BY serial LIMIT 4096")
        f.write("-- one batch\nEXPLAIN (ANALYZE, BUFFERS) %s;\n%s\n" % (
            batch, pg.psql(dsn, "EXPLAIN (ANALYZE, BUFFERS) " + batch)))
        for name, what, sql in PG_SCANS:
            plan = pg.psql(dsn, "EXPLAIN " + sql) if not sql.startswith("DO") else "(PL/pgSQL)"
            f.write("-- %s: %s\n%s;\n%s\n" % (name, what, sql, plan))
            for rep in range(1, args.reps + 1):
                t0 = time.monotonic()
                subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                                "-o", "/dev/null", "-d", dsn, "-c", sql], check=True,
                               stdout=subprocess.DEVNULL, timeout=600)
                wall = time.monotonic() - t0
                f.write("rep %d: %.3f s\n" % (rep, wall))
                record("pgscan", n=n, variant=name, what=what, rep=rep, wall_s=round(wall, 4))
                log("PostgreSQL scan %s, %s rows, rep %d: %.3f s" % (name, human(n), rep, wall))


# ---------------------------------------------------------------- summary

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def rng(xs, fmt):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    m = statistics.median(xs)
    if len(xs) == 1:
        return fmt % m
    return (fmt + " (" + fmt + "-" + fmt + ")") % (m, min(xs), max(xs))


def summary(path):
    recs = [json.loads(l) for l in open(path)]
    by = {}
    for r in recs:
        by.setdefault(r["kind"], []).append(r)
    out = []
    w = out.append

    def group(kind, *keys):
        g = {}
        for r in by.get(kind, []):
            g.setdefault(tuple(r.get(k) for k in keys), []).append(r)
        return g

    fulls = group("full", "store", "key", "n")
    bases = group("baseline", "store", "key", "n")
    speeds = group("speed", "alg")
    sign_us = {alg: med([r["us_per_sign"] for r in rs]) for (alg,), rs in speeds.items()}
    if fulls:
        w("### Full CRL: build time, size, memory (median of %s runs; min-max)\n" %
          "/".join(sorted({str(len(v)) for v in fulls.values()})))
        w("| store | key | revoked N | read ms | built and signed ms | ns per entry (built) "
          "| CRL bytes | bytes/entry | `revd crl` wall s | peak RSS MB | baseline RSS MB "
          "(`crl = no`) | CRL's own MB | its bytes per entry |")
        w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for (store, key, n), rs in sorted(fulls.items(), key=lambda kv: (kv[0][0], kv[0][1],
                                                                         kv[0][2])):
            bs = bases.get((store, key, n), [])
            rss = med([r["rss_kb"] for r in rs])
            brss = med([r["rss_kb"] for r in bs])
            own = rss - brss if rss is not None and brss is not None else None
            w("| %s | %s | %s | %s | %s | %.0f | %d | %.1f | %s | %s | %s | %s | %s |" % (
                store, key, "{:,}".format(n).replace(",", " "),
                rng([r["read_ms"] for r in rs], "%.1f"), rng([r["build_ms"] for r in rs], "%.1f"),
                med([r["build_ms"] for r in rs]) * 1e6 / n,
                med([r["bytes"] for r in rs]), med([r["bytes"] for r in rs]) / n,
                rng([r["wall_s"] for r in rs], "%.2f"),
                rng([r["rss_kb"] / 1024.0 for r in rs], "%.1f"),
                rng([r["rss_kb"] / 1024.0 for r in bs], "%.1f"),
                "%.1f" % (own / 1024.0) if own is not None else "-",
                "%.0f" % (own * 1024.0 / n) if own is not None else "-"))
        w("")
        w("### Where the wall time of a full `revd crl` run goes (medians, seconds)\n")
        w("| store | key | N | start to store open (log) | store open to read start | read | "
          "built and signed | after: parse+verify+PEM copy, publish (write+fsync), write --out, "
          "exit | total wall | user + sys CPU | baseline wall (`crl = no`) |")
        w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for (store, key, n), rs in sorted(fulls.items()):
            bs = bases.get((store, key, n), [])
            ready = med([r["publisher_ready_s"] for r in rs])
            logged = med([r["logged_at_s"] for r in rs])
            rd = med([r["read_ms"] for r in rs]) / 1e3
            bd = med([r["build_ms"] for r in rs]) / 1e3
            wall = med([r["wall_s"] for r in rs])
            pre = logged - rd - bd - ready if ready is not None and logged is not None else None
            w("| %s | %s | %s | %s | %s | %.3f | %.3f | %s | %.2f | %.2f | %s |" % (
                store, key, human(n), "%.3f" % ready if ready is not None else "-",
                "%.3f" % pre if pre is not None else "-", rd, bd,
                "%.3f" % (wall - logged) if logged is not None else "-", wall,
                med([r["user_s"] + r["sys_s"] for r in rs]),
                "%.2f" % med([r["wall_s"] for r in bs]) if bs else "-"))
        w("")
    if "ecdsap256" in sign_us and fulls:
        w("One ECDSA P-256 signature (`openssl speed`): %.1f µs%s. The signature is that "
          "share of \"built and signed\": %s.\n" % (
              sign_us["ecdsap256"],
              "; RSA-2048: %.0f µs" % sign_us["rsa2048"] if "rsa2048" in sign_us else "",
              ", ".join("%s %s %.2f%%" % (s, human(n), sign_us["ecdsap256" if k == "ec" else
                                                               "rsa2048"] / 10.0 /
                                          med([r["build_ms"] for r in rs]))
                        for (s, k, n), rs in sorted(fulls.items())
                        if ("ecdsap256" if k == "ec" else "rsa2048") in sign_us)))
    fd = group("full+delta", "store", "key", "n")
    ds = group("delta", "store", "key", "n")
    if ds:
        w("### Delta CRL after one revocation (median; min-max)\n")
        w("| store | N in the base | delta entries | delta read ms | delta built and signed ms "
          "| delta bytes | `revd crl` wall s: start to store open / store open to read start "
          "(loading the published full CRL) / after the build / total | peak RSS MB | the run "
          "that made the base: full read / built ms, empty delta read / built ms, wall s, peak "
          "RSS MB |")
        w("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for (store, key, n), rs in sorted(ds.items()):
            a = fd.get((store, key, n), [])
            ready = med([r["publisher_ready_s"] for r in rs])
            logged = med([r["logged_at_s"] for r in rs])
            pre = logged - (med([r["read_ms"] for r in rs]) +
                            med([r["build_ms"] for r in rs])) / 1e3 - ready
            wall = med([r["wall_s"] for r in rs])
            w("| %s | %s | %s | %s | %s | %s | %.2f / %.2f / %.2f / %s | %s | %s / %s, %s / %s, "
              "%s, %s |" % (
                store, human(n), "/".join(str(r["entries"]) for r in rs),
                rng([r["read_ms"] for r in rs], "%.1f"), rng([r["build_ms"] for r in rs], "%.1f"),
                rng([r["bytes"] for r in rs], "%d"), ready, pre, wall - logged,
                rng([r["wall_s"] for r in rs], "%.2f"),
                rng([r["rss_kb"] / 1024.0 for r in rs], "%.1f"),
                rng([r["full_read_ms"] for r in a], "%.1f"),
                rng([r["full_build_ms"] for r in a], "%.1f"),
                rng([r["delta_read_ms"] for r in a], "%.1f"),
                rng([r["delta_build_ms"] for r in a], "%.1f"),
                rng([r["wall_s"] for r in a], "%.2f"),
                rng([r["rss_kb"] / 1024.0 for r in a], "%.1f")))
        w("")
    if speeds or "openssl_crl" in by or "gencrl" in by:
        w("### Limits\n")
        for (alg,), rs in sorted(speeds.items()):
            w("- `openssl speed -seconds %d %s`: %s sign/s, %.1f µs per signature (%d runs)" % (
                rs[0]["seconds"], alg, rng([r["sign_per_s"] for r in rs], "%.0f"),
                med([r["us_per_sign"] for r in rs]), len(rs)))
        oc = group("openssl_crl", "n")
        gc = group("gencrl", "n")
        rf = {n: rs for (s, k, n), rs in fulls.items() if s == "index" and k == "ec"}
        if oc or gc:
            w("")
            w("| N | revd: read + built and signed ms (index, EC) | revd `crl` whole process s "
              "(index, EC; includes loading index.txt) | `openssl crl` DER in, DER out s | its RSS "
              "MB | `openssl ca -gencrl` s (same index.txt) | its RSS MB |")
            w("| --- | --- | --- | --- | --- | --- | --- |")
            for n in sorted(set(k[0] for k in oc) | set(k[0] for k in gc)):
                o = oc.get((n,), [])
                g = [r for r in gc.get((n,), []) if not r.get("timed_out")]
                gto = [r for r in gc.get((n,), []) if r.get("timed_out")]
                r_ = rf.get(n, [])
                w("| %s | %s | %s | %s | %s | %s | %s |" % (
                    human(n),
                    "%.1f" % (med([x["read_ms"] for x in r_]) + med([x["build_ms"] for x in r_]))
                    if r_ else "-",
                    rng([x["wall_s"] for x in r_], "%.2f"),
                    rng([x["wall_s"] for x in o], "%.3f"),
                    rng([x["rss_kb"] / 1024.0 for x in o], "%.1f"),
                    rng([x["wall_s"] for x in g], "%.2f") if g else (
                        "timed out after %d s" % gto[0]["timeout_s"] if gto else "-"),
                    rng([x["rss_kb"] / 1024.0 for x in g], "%.1f")))
        w("")
    checks = by.get("check", [])
    gens = [r for r in by.get("gencrl", []) if not r.get("timed_out")]
    if checks:
        w("### Checks\n")
        for c in checks:
            same = [g for g in gens if g["n"] == c["n"]]
            others = [o for o in checks if o["n"] == c["n"] and o is not c and o["key"] == c["key"]]
            w("- %s %s %s: `openssl crl -verify` %s; %d entries; revokedCertificates sha256 %s%s%s"
              % (c["store"], c["key"], human(c["n"]), "OK" if c["verify_ok"] else "FAILED",
                 c["entries"], c["entries_sha256"][:16],
                 "".join("; equal to %s's: %s" % (o["store"], "yes" if o["entries_sha256"] ==
                                                  c["entries_sha256"] else "NO")
                         for o in others),
                 "; equal to openssl ca -gencrl's: %s" % (
                     "yes" if same[0]["entries_sha256"] == c["entries_sha256"] else "NO")
                 if same and c["key"] == "ec" else "") +
              ("; stored in PostgreSQL as %d bytes (pg_column_size)" % c["pg_column_size"]
               if c.get("pg_column_size") else ""))
        w("")
    tr = group("trace", "store", "key", "n")
    if tr:
        w("### After the build: strace -tt -T timeline of one full run (seconds)\n")
        w("| store | N | read + built and signed (log) | built -> first byte of the publication "
          "(re-parse and verify the new CRL, PEM copy, ETag) | publication ([crl] dir: write + "
          "fsync + rename; PostgreSQL: INSERT of the DER, until commit) | of which fsync | write "
          "the --out file | free and exit |")
        w("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for (store, key, n), rs in sorted(tr.items()):
            r = rs[0]
            w("| %s | %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f |" % (
                store, human(n), (r["read_ms"] + r["build_ms"]) / 1e3,
                r["after_build_to_publish_s"], r["publish_s"], r["publish_fsync_s"],
                r["write_out_s"], r["free_and_exit_s"]))
        w("")
    ps = group("pgscan", "n", "variant")
    if ps:
        w("### PostgreSQL's side of the read (psql, %s runs)\n" % "/".join(
            sorted({str(len(v)) for v in ps.values()})))
        w("| N | variant | seconds |")
        w("| --- | --- | --- |")
        for (n, variant), rs in sorted(ps.items()):
            w("| %s | %s: %s | %s |" % (human(n), variant, rs[0]["what"],
                                        rng([r["wall_s"] for r in rs], "%.3f")))
        for (store, key, n), rs in sorted(fulls.items()):
            if store == "pg" and any(k[0] == n for k in ps):
                w("| %s | revd's read phase (log), for comparison | %s |" % (
                    human(n), rng([r["read_ms"] / 1e3 for r in rs], "%.3f")))
        w("")
    for m in by.get("massif", []):
        w("### Heap at the peak (massif), %s %s %s: %.1f MB\n" % (
            m["store"], m["key"], human(m["n"]), m["peak_heap_bytes"] / 1e6))
        for s in m["sites"]:
            w("- %s: %.1f MB%s" % (s["where"], s["bytes"] / 1e6, "".join(
                "; %s %.1f MB" % (f["where"], f["bytes"] / 1e6) for f in s.get("from", [])
                if len(s.get("from", [])) > 1)))
        w("")
    for p in by.get("profile", []):
        w("### CPU profile (perf, cpu-clock), %s %s %s: top symbols by self time\n" % (
            p["store"], p["key"], human(p["n"])))
        w(", ".join("`%s` %.1f%%" % (t["sym"], t["pct"]) for t in p["top"][:20]))
        w("")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- main

def main():
    global args, RESULTS, LOGDIR
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--revd", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--delta-sizes", default="100000,1000000")
    ap.add_argument("--stores", default="index,pg")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--parts", default="full,delta,limits,trace,pgscan,mem,profile")
    ap.add_argument("--rsa", action="store_true", help="RSA-2048 at the largest size too")
    ap.add_argument("--speed-seconds", type=int, default=3)
    ap.add_argument("--gencrl-timeout", type=int, default=600)
    ap.add_argument("--shared-buffers", default="512MB")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--summary-only", action="store_true",
                    help="print the summary of OUT/results.jsonl again")
    args = ap.parse_args()
    if args.summary_only:
        text = summary(os.path.join(args.out, "results.jsonl"))
        print(text)
        return
    args.revd = os.path.abspath(args.revd)
    sizes = [int(x) for x in args.sizes.split(",") if x]
    dsizes = [int(x) for x in args.delta_sizes.split(",") if x]
    stores = args.stores.split(",")
    parts = args.parts.split(",")
    os.makedirs(args.out, exist_ok=True)
    LOGDIR = os.path.join(args.out, "logs")
    os.makedirs(LOGDIR, exist_ok=True)
    RESULTS = open(os.path.join(args.out, "results.jsonl"), "a")
    work = tempfile.mkdtemp(prefix="revd-crlbench-")
    pg = None
    try:
        ec = make_ca(work, "ec")
        rsa = make_ca(work, "rsa") if args.rsa else None
        need = sorted(set(sizes) | (set(dsizes) if "delta" in parts else set()))
        indexes = {}
        if "index" in stores or "limits" in parts:
            for n in need:
                t0 = time.monotonic()
                indexes[n] = make_index(work, n)
                log("index.txt %s: %d revoked + %d valid lines, %.1f MB, made in %.1f s" % (
                    human(n), n, valid_count(n), os.path.getsize(indexes[n]) / 1e6,
                    time.monotonic() - t0))
        dsns = {}
        if "pg" in stores:
            import pg_harness
            pg = pg_harness.PgServer("revd-crlbench")
            log("PostgreSQL: initdb and start (pg_harness), then shared_buffers=%s" %
                args.shared_buffers)
            pg.start()
            pg_restart(pg, "-c shared_buffers=%s -c max_connections=50" % args.shared_buffers)
            record("postgres", version=pg.psql(pg.dsn(), "SHOW server_version"),
                   shared_buffers=args.shared_buffers)
            for n in need:
                dsns[n] = make_pg_db(pg, n, ec)
        sources = []
        for n in sizes:
            if "index" in stores:
                sources.append(Source("index", n, ec, indexes[n]))
            if "pg" in stores:
                sources.append(Source("pg", n, ec, dsns[n], pg))
        if rsa is not None and "index" in stores:
            sources.append(Source("index", max(sizes), rsa, indexes[max(sizes)]))
        crls = {}
        if "full" in parts:
            for src in sources:
                keep = full_runs(src, work, args.reps)
                if src.store == "index" and src.ca is ec:
                    crls[src.n] = keep
        if "delta" in parts:
            for n in dsizes:
                if "index" in stores:
                    delta_runs(Source("index", n, ec, indexes[n]), work, args.reps)
                if "pg" in stores:
                    delta_runs(Source("pg", n, ec, dsns[n], pg), work, args.reps)
        if "limits" in parts:
            limits(work, ec, sizes, crls, {n: indexes[n] for n in sizes if n in indexes})
        big = max(sizes)
        if "mem" in parts:
            if shutil.which("valgrind") and shutil.which("ms_print"):
                for store in stores:
                    massif(Source(store, big, ec, indexes[big] if store == "index" else
                                  dsns[big], pg), work)
            else:
                log("mem: valgrind not found, skipped")
        if "trace" in parts:
            if shutil.which("strace"):
                for store in stores:
                    trace(Source(store, big, ec, indexes[big] if store == "index" else
                                 dsns[big], pg), work)
            else:
                log("trace: strace not found, skipped")
        if "pgscan" in parts and "pg" in stores:
            pgscan(pg, dsns[big], big)
        if "profile" in parts:
            if shutil.which("perf"):
                for store in stores:
                    try:
                        profile(Source(store, big, ec, indexes[big] if store == "index" else
                                       dsns[big], pg), work)
                    except RuntimeError as e:
                        log("profile %s: perf failed, skipped: %s" % (store, str(e)[:300]))
            else:
                log("profile: perf not found, skipped")
        RESULTS.close()
        text = summary(os.path.join(args.out, "results.jsonl"))
        with open(os.path.join(args.out, "summary.md"), "w") as f:
            f.write(text)
        print("\n" + text, flush=True)
    finally:
        if pg is not None:
            pg.stop()
        if args.keep:
            log("kept " + work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    main()

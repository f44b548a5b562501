#!/usr/bin/env python3
"""revd's revocation API: call latency, time until another instance serves the change, and
the limits it is measured against (called by bench/api/run.sh; Python 3 stdlib only).

Setup: a throw-away PKI (scripts/mkpki.sh: issuing CA and OCSP signer, EC P-256), the
API's TLS material made with the openssl CLI (a server root and a leaf for IP 127.0.0.1;
a client CA and one client whose subjectAltName dNSName is in `allow`; all EC P-256), a
PostgreSQL server (tests/integration/pg_harness.py: initdb in a temp dir, 127.0.0.1,
trust, fsync=off and synchronous_commit=off unless --durable), `revd db migrate`, `revd db
add-issuer`, and every certificate the run revokes inserted up front with ONE
INSERT ... SELECT FROM generate_series (SET LOCAL revd.bulk = 'on'). Serials are
10000001, 10000002, ... (hex); each measurement revokes its own fresh serials.

Two revd instances on that database: A (`revd serve --config a.conf`) with [api] on
127.0.0.1:0 and B (the same configuration without [api]); both pick their ports with :0
and the ports are read from their logs.

Parts (--parts, any of keepalive,newconn,visible,db,cli,handshake):

  keepalive  --n sequential POST /v1/revoke over ONE kept-alive mTLS connection (after 3
             GET /v1/status to warm up): the client's wall time per call (request written
             to answer read) and the live_ms A reports; every answer must be 200 with
             "live": true. Repeated --reps times on fresh serials and a fresh connection.
             Also revd A's CPU (utime + stime from /proc) per call.
  newconn    the same with a NEW TLS connection per call (a full handshake, no session
             resumption): total time, and the part until the client's handshake is done.
  visible    --n-visible times: B's cached "good" answer is warmed (one GET), the serial
             is revoked through A (keep-alive), and from the moment the 200 has been read
             B is polled with OCSP GETs over a kept-alive plain HTTP connection (no sleep
             before the first poll, then 1 ms between polls, given up after 2 s) until B
             answers revoked: the time from A's 200 until B's revoked answer, and the
             number of polls. The OCSP request is built here (SHA-1 CertID, no nonce) and
             checked byte-for-byte against `openssl ocsp -issuer CA -serial 0x.. -no_nonce
             -reqout`; the first revoked answer is checked with `openssl ocsp -respin
             -VAfile`. Then --n-own times the same against A itself (its own 200 promises
             it serves the change): the first GET to A right after the 200.
  db         the database floor, one psql session (`psql -f`, `\\timing on`), --n-db
             serials each: (1) the UPDATE revd runs, alone, autocommitted; (2) revd's whole
             transaction: BEGIN; SELECT ... FOR UPDATE; UPDATE ... RETURNING; COMMIT
             (psql's per-statement times added up per transaction). Also the psql
             process's wall time divided by the count.
  cli        `revd revoke --dsn DSN --issuer bench --serial X --reason keyCompromise`, one
             process per call (--n-cli), wall time; and `revd version` (process start and
             exit alone).
  handshake  TLS handshakes to A's API port with the client certificate, sequential, for
             --hs-seconds: handshakes/s on the client side, revd A's CPU per handshake;
             and `openssl s_time -new` for the same time when it works.

Results: OUT/results.jsonl (one record per measurement, raw samples included),
OUT/summary.md, OUT/logs/ (revd A and B's logs, psql scripts and output, A's /metrics at
the end). Only 127.0.0.1 is used; every subprocess and every HTTP call has a timeout, every
loop is bounded; only processes started here are stopped, by pid.
"""

import argparse
import base64
import ctypes
import hashlib
import http.client
import json
import math
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

args = None
OUT = None
LOGDIR = None
ISSUER = "bench"
CLIENT_DNS = "bench-client.example"
SERIAL_BASE = 0x10000000
HTTP_TIMEOUT = 10
POLL_GIVE_UP = 2.0
POLL_SLEEP = 0.001
ROW_COLUMNS = ("revoked_at IS NOT NULL, reason, floor(extract(epoch FROM revoked_at))::bigint,"
               " floor(extract(epoch FROM invalidity_date))::bigint,"
               " floor(extract(epoch FROM not_after))::bigint, change_seq, issuer_id")


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def record(kind, **kw):
    kw = dict(kind=kind, **kw)
    kw.setdefault("loadavg", loadavg())
    with open(os.path.join(OUT, "results.jsonl"), "a") as f:
        f.write(json.dumps(kw) + "\n")
    return kw


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def run(cmd, timeout=60, check=True, input=None, name=None):
    """Runs cmd (bounded); its output goes to logs/NAME.log when name is given."""
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                           input=input)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError("timed out after %ss: %s" % (timeout, " ".join(cmd))) from e
    if name:
        with open(os.path.join(LOGDIR, name + ".log"), "ab") as f:
            f.write(("$ %s\n" % " ".join(cmd)).encode() + r.stdout + r.stderr +
                    ("[exit %d]\n" % r.returncode).encode())
    if check and r.returncode != 0:
        raise RuntimeError("%s failed (%d):\n%s%s" % (" ".join(cmd), r.returncode,
                                                      r.stdout.decode(errors="replace"),
                                                      r.stderr.decode(errors="replace")))
    return r


# ---------------------------------------------------------------- statistics

def pct(sorted_vals, p):
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_vals:
        return None
    k = max(1, math.ceil(p / 100.0 * len(sorted_vals)))
    return sorted_vals[min(k, len(sorted_vals)) - 1]


def dist(vals, nd=3):
    v = sorted(x for x in vals if x is not None)
    if not v:
        return dict(n=0)
    r = lambda x: round(x, nd)
    return dict(n=len(v), min=r(v[0]), p50=r(pct(v, 50)), p90=r(pct(v, 90)), p99=r(pct(v, 99)),
                max=r(v[-1]), mean=r(statistics.fmean(v)))


def proc_cpu_ms(pid):
    """CPU time of a process, all threads, in ms: the sum of /proc/PID/task/*/schedstat
    (ns on the CPU; threads that exited in between are lost, revd's persist), or utime +
    stime from /proc/PID/stat (10 ms ticks) when schedstat is missing."""
    total, ok = 0, False
    try:
        for t in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/schedstat" % (pid, t)) as f:
                    total += int(f.read().split()[0])
                    ok = True
            except (OSError, ValueError, IndexError):
                pass
    except OSError:
        pass
    if ok:
        return total / 1e6
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000.0 / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- DER (requests, answers)

def der_read(b, i=0):
    """(tag, content, end) of the TLV at b[i:]."""
    tag = b[i]
    n = b[i + 1]
    j = i + 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(b[j:j + k], "big")
        j += k
    return tag, b[j:j + n], j + n


def der_children(b):
    out, i = [], 0
    while i < len(b):
        t, c, i2 = der_read(b, i)
        out.append((t, c, b[i:i2]))
        i = i2
    return out


def der_len(n):
    if n < 0x80:
        return bytes([n])
    s = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(s)]) + s


def tlv(tag, content):
    return bytes([tag]) + der_len(len(content)) + content


def pem_der(path):
    with open(path) as f:
        text = f.read()
    m = re.search(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", text, re.S)
    return base64.b64decode("".join(m.group(1).split()))


class OcspRequests:
    """OCSPRequest DER for serials of one issuer: SHA-1 CertID, no nonce (what `openssl
    ocsp -issuer CA -serial S -no_nonce -reqout` writes)."""

    def __init__(self, ca_pem):
        tbs = der_children(der_children(der_read(pem_der(ca_pem))[1])[0][1])
        i = 1 if tbs[0][0] == 0xA0 else 0
        subject = tbs[i + 4][2]
        spki = der_children(tbs[i + 5][1])
        key_bits = spki[1][1][1:]  # the BIT STRING's content without its unused-bits octet
        self.name_hash = hashlib.sha1(subject).digest()
        self.key_hash = hashlib.sha1(key_bits).digest()

    def der(self, serial_hex):
        n = int(serial_hex, 16)
        s = n.to_bytes(n.bit_length() // 8 + 1, "big")  # a leading 00 when the top bit is set
        alg = tlv(0x30, tlv(0x06, bytes.fromhex("2b0e03021a")) + b"\x05\x00")
        certid = tlv(0x30, alg + tlv(0x04, self.name_hash) + tlv(0x04, self.key_hash) +
                     tlv(0x02, s))
        return tlv(0x30, tlv(0x30, tlv(0x30, tlv(0x30, certid))))

    @staticmethod
    def get_path(der):
        return "/" + urllib.parse.quote(base64.b64encode(der).decode(), safe="")


def ocsp_status(body):
    """good / revoked / unknown, or the responseStatus name when not successful."""
    tag, c, _ = der_read(body)
    kids = der_children(c)
    st = kids[0][1][0]
    if st != 0:
        return {1: "malformedRequest", 2: "internalError", 3: "tryLater", 5: "sigRequired",
                6: "unauthorized"}.get(st, "status%d" % st)
    rb = der_children(der_children(kids[1][1])[0][1])
    basic = der_children(der_read(rb[1][1])[1])
    tbs = der_children(basic[0][1])
    i = 1 if tbs[0][0] == 0xA0 else 0
    single = der_children(der_children(tbs[i + 2][1])[0][1])
    return {0x80: "good", 0xA1: "revoked", 0x82: "unknown"}.get(single[1][0], "?")


# ---------------------------------------------------------------- the API's TLS material

def make_tls(d):
    """Server root -> leaf (IP 127.0.0.1); client CA -> client (DNS CLIENT_DNS). EC P-256."""
    os.makedirs(d)
    p = lambda n: os.path.join(d, n)

    def key(name):
        run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", p(name + ".key")], name="tls")
        return p(name + ".key")

    def root(name, cn):
        run(["openssl", "req", "-x509", "-new", "-key", key(name), "-subj",
             "/O=revd API bench/CN=" + cn, "-days", "30", "-sha256",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", p(name + ".pem")],
            name="tls")

    def leaf(name, cn, ca, serial, ext):
        with open(p(name + ".ext"), "w") as f:
            f.write("[v3]\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always\n"
                    "basicConstraints = critical, CA:FALSE\n"
                    "keyUsage = critical, digitalSignature\n" + ext)
        run(["openssl", "req", "-new", "-key", key(name), "-subj", "/O=revd API bench/CN=" + cn,
             "-out", p(name + ".csr")], name="tls")
        run(["openssl", "x509", "-req", "-in", p(name + ".csr"), "-CA", p(ca + ".pem"),
             "-CAkey", p(ca + ".key"), "-set_serial", serial, "-days", "30", "-sha256",
             "-extfile", p(name + ".ext"), "-extensions", "v3", "-out", p(name + ".pem")],
            name="tls")

    root("server-root", "API server root")
    leaf("server", "127.0.0.1", "server-root", "0x5001",
         "extendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1\n")
    root("client-ca", "API client CA")
    leaf("client", "bench client", "client-ca", "0x5002",
         "extendedKeyUsage = clientAuth\nsubjectAltName = DNS:%s\n" % CLIENT_DNS)
    return dict(server_root=p("server-root.pem"), server_cert=p("server.pem"),
                server_key=p("server.key"), client_ca=p("client-ca.pem"),
                client_cert=p("client.pem"), client_key=p("client.key"))


def client_context(tls):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(tls["server_root"])
    ctx.load_cert_chain(tls["client_cert"], tls["client_key"])
    return ctx


# ---------------------------------------------------------------- revd

def _die_with_parent():
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Revd:
    def __init__(self, name, conf_text, workdir):
        self.name = name
        self.conf = os.path.join(workdir, name + ".conf")
        with open(self.conf, "w") as f:
            f.write(conf_text)
        self.log = os.path.join(LOGDIR, "revd-%s.log" % name)
        self.proc = None
        self.port = self.api_port = None

    def start(self, want_api, timeout=15):
        self._f = open(self.log, "wb")
        self.proc = subprocess.Popen([args.revd, "serve", "--config", self.conf],
                                     stdin=subprocess.DEVNULL, stdout=self._f, stderr=self._f,
                                     preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.text()
            m = re.search(r"(?<!api: )listening on 127\.0\.0\.1:(\d+) \(", text)
            a = re.search(r"api: listening on 127\.0\.0\.1:(\d+) ", text)
            if m and (a or not want_api):
                self.port = int(m.group(1))
                self.api_port = int(a.group(1)) if a else None
                return self
            if self.proc.poll() is not None:
                raise RuntimeError("revd %s exited (%s):\n%s" % (self.name, self.proc.returncode,
                                                                  text))
            time.sleep(0.02)
        raise RuntimeError("revd %s did not log its ports within %ds:\n%s" % (
            self.name, timeout, self.text()))

    def text(self):
        with open(self.log, "rb") as f:
            return f.read().decode(errors="replace")

    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._f.close()
        return self.proc.returncode


def revd_conf(pki, dsn, tls=None):
    text = ("[server]\nlisten = 127.0.0.1:0\nworkers = %d\nlog_level = %s\n\n[postgres]\n"
            "dsn = %s\n\n[issuer %s]\nca = %s\nsigner_cert = %s\nsigner_key = %s\n"
            "store = postgres\n" % (args.workers, args.log_level, dsn, ISSUER,
                                    os.path.join(pki, "issuing.pem"),
                                    os.path.join(pki, "ocsp.pem"), os.path.join(pki, "ocsp.key")))
    if tls:
        text += ("\n[api]\nlisten = 127.0.0.1:0\ncert = %s\nkey = %s\nclient_ca = %s\n"
                 "allow = %s\nlive_timeout = 5s\n" % (tls["server_cert"], tls["server_key"],
                                                      tls["client_ca"], CLIENT_DNS))
    return text


class Ocsp:
    """OCSP GETs to one revd over a kept-alive plain HTTP connection."""

    def __init__(self, port):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT)

    def get(self, path):
        self.conn.request("GET", path)
        r = self.conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise RuntimeError("OCSP GET to port %d: HTTP %d %r" % (self.port, r.status,
                                                                     body[:200]))
        return body

    def status(self, path):
        return ocsp_status(self.get(path))

    def close(self):
        self.conn.close()


class Serials:
    def __init__(self, total):
        self.total = total
        self.next = 1

    def take(self, n):
        if self.next + n - 1 > self.total:
            raise RuntimeError("out of serials: %d asked, %d left" % (
                n, self.total - self.next + 1))
        out = ["%X" % (SERIAL_BASE + i) for i in range(self.next, self.next + n)]
        self.next += n
        return out


def revoke_body(serial):
    return json.dumps(dict(issuer=ISSUER, serial=serial, reason="keyCompromise")).encode()


HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


def api_call(conn, serial):
    """(HTTP status, JSON or None, raw) of one POST /v1/revoke on conn."""
    conn.request("POST", "/v1/revoke", body=revoke_body(serial), headers=HEADERS)
    r = conn.getresponse()
    raw = r.read()
    try:
        j = json.loads(raw.decode())
    except ValueError:
        j = None
    return r.status, j, raw


def check_write(st, j, raw, serial, failures):
    ok = st == 200 and isinstance(j, dict) and j.get("live") is True and \
        j.get("status") == "revoked" and int(j.get("serial", "0"), 16) == int(serial, 16)
    if not ok and len(failures) < 20:
        failures.append("%s: HTTP %d %r" % (serial, st, raw[:300]))
    return ok


# ---------------------------------------------------------------- parts

def part_keepalive(ctx, a, serials):
    for rep in range(1, args.reps + 1):
        todo = serials.take(args.n)
        conn = http.client.HTTPSConnection("127.0.0.1", a.api_port, context=ctx,
                                           timeout=HTTP_TIMEOUT)
        for _ in range(3):  # warm-up: the handshake and a database round trip, not counted
            conn.request("GET", "/v1/status?issuer=%s&serial=%s" % (ISSUER, todo[0]))
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                raise RuntimeError("GET /v1/status: HTTP %d" % r.status)
        sock0 = conn.sock
        wall, live, fails, reconnects = [], [], [], 0
        cpu0 = proc_cpu_ms(a.pid())
        t_all = time.perf_counter()
        for s in todo:
            if conn.sock is not sock0:
                reconnects += 1
                sock0 = conn.sock
            t0 = time.perf_counter()
            st, j, raw = api_call(conn, s)
            dt = (time.perf_counter() - t0) * 1000
            if check_write(st, j, raw, s, fails):
                wall.append(dt)
                live.append(float(j["live_ms"]))
            if conn.sock is None:
                reconnects += 1
        t_all = time.perf_counter() - t_all
        cpu = proc_cpu_ms(a.pid()) - cpu0
        conn.close()
        rec = record("keepalive", rep=rep, n=len(todo), ok=len(wall), failures=fails,
                     reconnects=reconnects, wall_ms=dist(wall), live_ms=dist(live, 4),
                     live_zero=sum(1 for x in live if x == 0),
                     calls_per_s=round(len(todo) / t_all, 1),
                     revd_cpu_ms_per_call=round(cpu / len(todo), 3),
                     samples_wall_ms=[round(x, 3) for x in wall],
                     samples_live_ms=live)
        log("keepalive rep %d: %d/%d 200 live, wall p50 %.2f p90 %.2f p99 %.2f max %.2f ms; "
            "live_ms p50 %s p99 %s max %s; %.0f calls/s; revd A CPU %.3f ms/call; "
            "reconnects %d" % (rep, len(wall), len(todo), rec["wall_ms"].get("p50", -1),
                               rec["wall_ms"].get("p90", -1), rec["wall_ms"].get("p99", -1),
                               rec["wall_ms"].get("max", -1), rec["live_ms"].get("p50"),
                               rec["live_ms"].get("p99"), rec["live_ms"].get("max"),
                               rec["calls_per_s"], rec["revd_cpu_ms_per_call"], reconnects))
        for f in fails[:5]:
            log("  FAILED " + f)


def part_newconn(ctx, a, serials, tls):
    """A new TLS connection per call: TLS 1.3 (what the client and revd negotiate by
    default), --reps times, then once with the client limited to TLS 1.2."""
    ctx12 = client_context(tls)
    ctx12.maximum_version = ssl.TLSVersion.TLSv1_2
    runs = [(rep, "default", ctx) for rep in range(1, args.reps + 1)] + [(1, "TLSv1.2", ctx12)]
    for rep, label, c in runs:
        todo = serials.take(args.n_newconn)
        total, hs, req, live, fails, versions = [], [], [], [], [], set()
        cpu0 = proc_cpu_ms(a.pid())
        for s in todo:
            t0 = time.perf_counter()
            conn = http.client.HTTPSConnection("127.0.0.1", a.api_port, context=c,
                                               timeout=HTTP_TIMEOUT)
            conn.connect()
            t1 = time.perf_counter()
            versions.add(conn.sock.version())
            st, j, raw = api_call(conn, s)
            conn.close()
            t2 = time.perf_counter()
            if check_write(st, j, raw, s, fails):
                total.append((t2 - t0) * 1000)
                hs.append((t1 - t0) * 1000)
                req.append((t2 - t1) * 1000)
                live.append(float(j["live_ms"]))
        cpu = proc_cpu_ms(a.pid()) - cpu0
        rec = record("newconn", rep=rep, client_max_tls=label, n=len(todo), ok=len(total),
                     failures=fails, tls_versions=sorted(versions), total_ms=dist(total),
                     handshake_ms=dist(hs), request_ms=dist(req), live_ms=dist(live, 4),
                     over_40ms=sum(1 for x in req if x >= 40),
                     revd_cpu_ms_per_call=round(cpu / len(todo), 3),
                     samples_total_ms=[round(x, 3) for x in total],
                     samples_handshake_ms=[round(x, 3) for x in hs])
        log("newconn %s rep %d: %d/%d 200 live, total p50 %.2f p90 %.2f p99 %.2f max %.2f ms "
            "(client handshake p50 %.2f ms, request after it p50 %.2f ms, %d requests >= 40 "
            "ms); revd A CPU %.3f ms/call; %s" % (
                label, rep, len(total), len(todo), rec["total_ms"].get("p50", -1),
                rec["total_ms"].get("p90", -1), rec["total_ms"].get("p99", -1),
                rec["total_ms"].get("max", -1), rec["handshake_ms"].get("p50", -1),
                rec["request_ms"].get("p50", -1), rec["over_40ms"],
                rec["revd_cpu_ms_per_call"], ",".join(sorted(versions))))
        for f in fails[:5]:
            log("  FAILED " + f)


def check_request_bytes(reqs, pki, serial, tmp):
    f = os.path.join(tmp, "openssl-req.der")
    run(["openssl", "ocsp", "-issuer", os.path.join(pki, "issuing.pem"), "-serial",
         "0x" + serial, "-no_nonce", "-reqout", f], name="openssl-ocsp")
    with open(f, "rb") as g:
        theirs = g.read()
    if theirs != reqs.der(serial):
        raise RuntimeError("the OCSP request built here differs from openssl ocsp -reqout's:\n"
                           "%s\n%s" % (theirs.hex(), reqs.der(serial).hex()))


def check_answer_openssl(pki, serial, body, tmp, want):
    f = os.path.join(tmp, "resp-%s.der" % serial)
    with open(f, "wb") as g:
        g.write(body)
    r = run(["openssl", "ocsp", "-respin", f, "-issuer", os.path.join(pki, "issuing.pem"),
             "-serial", "0x" + serial, "-VAfile", os.path.join(pki, "ocsp.pem"), "-resp_text"],
            name="openssl-ocsp", check=False)
    out = (r.stdout + r.stderr).decode(errors="replace")
    ok = r.returncode == 0 and "Response verify OK" in out and \
        re.search(r"0x%s: %s" % (serial, want), out, re.I) is not None
    if not ok:
        raise RuntimeError("openssl ocsp -respin does not confirm %s for %s:\n%s" % (
            want, serial, out))


def part_visible(ctx, a, b, serials, pki, tmp):
    reqs = OcspRequests(os.path.join(pki, "issuing.pem"))
    todo = serials.take(args.n_visible)
    check_request_bytes(reqs, pki, todo[0], tmp)
    api = http.client.HTTPSConnection("127.0.0.1", a.api_port, context=ctx, timeout=HTTP_TIMEOUT)
    ob = Ocsp(b.port)
    delays, polls, first, lost, fails, warm_ms = [], [], 0, [], [], []
    checked = False
    for s in todo:
        path = reqs.get_path(reqs.der(s))
        t0 = time.perf_counter()
        if ob.status(path) != "good":  # B caches its "good" answer
            raise RuntimeError("B does not answer good for %s before the revocation" % s)
        warm_ms.append((time.perf_counter() - t0) * 1000)
        st, j, raw = api_call(api, s)
        t_ok = time.perf_counter()
        if not check_write(st, j, raw, s, fails):
            continue
        k, seen, body = 0, None, None
        while True:  # bounded: POLL_GIVE_UP
            k += 1
            body = ob.get(path)
            now = time.perf_counter()
            if ocsp_status(body) == "revoked":
                seen = (now - t_ok) * 1000
                break
            if now - t_ok > POLL_GIVE_UP:
                break
            time.sleep(POLL_SLEEP)
        if seen is None:
            lost.append(s)
            continue
        delays.append(seen)
        polls.append(k)
        first += k == 1
        if not checked:
            check_answer_openssl(pki, s, body, tmp, "revoked")
            checked = True
    api.close()
    ob.close()
    rec = record("visible", n=len(todo), ok=len(delays), failures=fails, not_seen_in_2s=lost,
                 first_poll_revoked=first, delay_ms=dist(delays), polls=dist(polls, 0),
                 b_cached_get_ms=dist(warm_ms),
                 samples_delay_ms=[round(x, 3) for x in delays], samples_polls=polls)
    log("visible on B: %d/%d, from A's 200 to B's revoked answer p50 %.3f p99 %.3f max %.3f ms; "
        "revoked at the first poll %d times; not seen within 2 s: %d; B's cached GET p50 "
        "%.3f ms" % (len(delays), len(todo), rec["delay_ms"].get("p50", -1),
                     rec["delay_ms"].get("p99", -1), rec["delay_ms"].get("max", -1), first,
                     len(lost), rec["b_cached_get_ms"].get("p50", -1)))

    # A itself: the first OCSP answer right after its own 200.
    todo = serials.take(args.n_own)
    api = http.client.HTTPSConnection("127.0.0.1", a.api_port, context=ctx, timeout=HTTP_TIMEOUT)
    oa = Ocsp(a.port)
    got, fails, after = [], [], []
    for s in todo:
        path = reqs.get_path(reqs.der(s))
        if oa.status(path) != "good":
            raise RuntimeError("A does not answer good for %s before the revocation" % s)
        st, j, raw = api_call(api, s)
        t_ok = time.perf_counter()
        if not check_write(st, j, raw, s, fails):
            continue
        got.append(oa.status(path))
        after.append((time.perf_counter() - t_ok) * 1000)
    api.close()
    oa.close()
    rec = record("own_instance", n=len(todo), ok=len(got), failures=fails,
                 first_answer_revoked=got.count("revoked"),
                 first_answers={k: got.count(k) for k in set(got)}, answer_ms=dist(after))
    log("A itself: first OCSP answer after its 200: revoked %d of %d" % (got.count("revoked"),
                                                                         len(got)))


def psql_timed(pg, dsn, name, statements, per_txn):
    """Runs the statements in one psql session with \\timing; returns (per-transaction
    times in ms, wall seconds of the psql process)."""
    script = os.path.join(LOGDIR, name + ".sql")
    with open(script, "w") as f:
        f.write("\\timing on\n" + "".join(s + "\n" for s in statements))
    cmd = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-f", script]
    t0 = time.perf_counter()
    r = run(cmd, timeout=300, name=name)
    wall = time.perf_counter() - t0
    times = [float(x) for x in re.findall(rb"^Time: ([\d.]+) ms", r.stdout, re.M)]
    if len(times) != len(statements):
        raise RuntimeError("%s: %d timings for %d statements" % (name, len(times),
                                                                 len(statements)))
    txn = [sum(times[i:i + per_txn]) for i in range(0, len(times), per_txn)]
    return txn, wall, times


def part_db(pg, dsn, serials):
    where = ("WHERE issuer_id = (SELECT id FROM issuers WHERE name = '%s') AND serial = "
             "'\\x%%s'::bytea" % ISSUER)
    upd = ("UPDATE certificates SET reason = 1, invalidity_date = to_timestamp(NULL::bigint), "
           "revoked_at = coalesce(to_timestamp(NULL::bigint), date_trunc('second', now())) "
           + where + " RETURNING " + ROW_COLUMNS + ";")
    sel = "SELECT " + ROW_COLUMNS + " FROM certificates " + where + " FOR UPDATE;"
    hexs = lambda s: "%0*x" % (len(s) + len(s) % 2, int(s, 16))

    todo = serials.take(args.n_db)
    txn, wall, _ = psql_timed(pg, dsn, "db-update-only", [upd % hexs(s) for s in todo], 1)
    rec = record("db_update", n=len(todo), statement=upd % "SERIAL", per_update_ms=dist(txn),
                 psql_wall_ms_per_update=round(wall * 1000 / len(todo), 3),
                 samples_ms=[round(x, 3) for x in txn])
    log("database floor, UPDATE autocommitted: p50 %.3f p99 %.3f max %.3f ms (psql \\timing); "
        "psql wall %.3f ms per update" % (rec["per_update_ms"]["p50"],
                                          rec["per_update_ms"]["p99"],
                                          rec["per_update_ms"]["max"],
                                          rec["psql_wall_ms_per_update"]))
    todo = serials.take(args.n_db)
    stmts = []
    for s in todo:
        stmts += ["BEGIN;", sel % hexs(s), upd % hexs(s), "COMMIT;"]
    txn, wall, times = psql_timed(pg, dsn, "db-revd-transaction", stmts, 4)
    commit = times[3::4]
    rec = record("db_txn", n=len(todo), statements=["BEGIN;", sel % "SERIAL", upd % "SERIAL",
                                                    "COMMIT;"],
                 per_txn_ms=dist(txn), commit_ms=dist(commit),
                 psql_wall_ms_per_txn=round(wall * 1000 / len(todo), 3),
                 samples_ms=[round(x, 3) for x in txn])
    log("database floor, revd's transaction (BEGIN, SELECT FOR UPDATE, UPDATE, COMMIT): p50 "
        "%.3f p99 %.3f max %.3f ms; COMMIT alone p50 %.3f ms; psql wall %.3f ms per "
        "transaction" % (rec["per_txn_ms"]["p50"], rec["per_txn_ms"]["p99"],
                         rec["per_txn_ms"]["max"], rec["commit_ms"]["p50"],
                         rec["psql_wall_ms_per_txn"]))
    n = int(pg.psql(dsn, "SELECT count(*) FROM certificates WHERE revoked_at IS NOT NULL"))
    log("revoked rows in the database now: %d" % n)


def part_cli(dsn, serials):
    todo = serials.take(args.n_cli)
    wall, fails = [], []
    for s in todo:
        t0 = time.perf_counter()
        r = run([args.revd, "revoke", "--dsn", dsn, "--issuer", ISSUER, "--serial", s,
                 "--reason", "keyCompromise"], timeout=30, check=False)
        dt = (time.perf_counter() - t0) * 1000
        if r.returncode == 0:
            wall.append(dt)
        elif len(fails) < 20:
            fails.append("%s: exit %d %s" % (s, r.returncode, r.stderr[:300]))
    with open(os.path.join(LOGDIR, "cli-last.log"), "wb") as f:
        f.write(r.stdout + r.stderr)
    ver = []
    for _ in range(args.n_version):
        t0 = time.perf_counter()
        run([args.revd, "version"], timeout=30)
        ver.append((time.perf_counter() - t0) * 1000)
    rec = record("cli", n=len(todo), ok=len(wall), failures=fails,
                 command="revd revoke --dsn DSN --issuer %s --serial X --reason keyCompromise"
                 % ISSUER, wall_ms=dist(wall), revd_version_ms=dist(ver),
                 samples_ms=[round(x, 3) for x in wall])
    log("revd revoke CLI: %d/%d, p50 %.2f p90 %.2f p99 %.2f max %.2f ms; `revd version` p50 "
        "%.2f ms" % (len(wall), len(todo), rec["wall_ms"].get("p50", -1),
                     rec["wall_ms"].get("p90", -1), rec["wall_ms"].get("p99", -1),
                     rec["wall_ms"].get("max", -1), rec["revd_version_ms"]["p50"]))
    for f in fails[:5]:
        log("  FAILED " + f)


def part_handshake(ctx, a, tls):
    times = []
    cpu0 = proc_cpu_ms(a.pid())
    t_end = time.perf_counter() + args.hs_seconds
    t_start = time.perf_counter()
    versions = set()
    while time.perf_counter() < t_end and len(times) < 100000:
        t0 = time.perf_counter()
        with socket.create_connection(("127.0.0.1", a.api_port), timeout=HTTP_TIMEOUT) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                versions.add(s.version())
                times.append((time.perf_counter() - t0) * 1000)
    elapsed = time.perf_counter() - t_start
    time.sleep(0.2)  # let revd finish the last ones before reading its CPU
    cpu = proc_cpu_ms(a.pid()) - cpu0
    rec = dict(n=len(times), seconds=round(elapsed, 3),
               handshakes_per_s=round(len(times) / elapsed, 1), handshake_ms=dist(times),
               revd_cpu_ms_per_handshake=round(cpu / max(1, len(times)), 3),
               tls_versions=sorted(versions))
    log("TLS handshakes (Python, sequential, client certificate): %d in %.1f s = %.0f/s, p50 "
        "%.2f ms; revd A CPU %.3f ms per handshake (%s)" % (
            len(times), elapsed, rec["handshakes_per_s"], rec["handshake_ms"]["p50"],
            rec["revd_cpu_ms_per_handshake"], ",".join(sorted(versions))))
    # openssl s_time: full handshakes for the same time (it reports connections/s).
    cmd = ["openssl", "s_time", "-connect", "127.0.0.1:%d" % a.api_port, "-new", "-time",
           str(int(max(1, args.hs_seconds))), "-cert", tls["client_cert"], "-key",
           tls["client_key"], "-CAfile", tls["server_root"], "-verify", "2"]
    cpu0 = proc_cpu_ms(a.pid())
    r = run(cmd, timeout=args.hs_seconds + 30, check=False, name="s_time")
    cpu = proc_cpu_ms(a.pid()) - cpu0
    out = r.stdout.decode(errors="replace")
    m = re.search(r"(\d+) connections in ([\d.]+)s; ([\d.]+) connections/user sec", out)
    m2 = re.search(r"(\d+) connections in (\d+) real seconds", out)
    if r.returncode == 0 and m and m2:
        rec["s_time"] = dict(command=" ".join(cmd), connections=int(m.group(1)),
                             real_seconds=int(m2.group(2)),
                             per_real_s=round(int(m.group(1)) / max(1, int(m2.group(2))), 1),
                             per_user_s=float(m.group(3)),
                             revd_cpu_ms_per_handshake=round(cpu / max(1, int(m.group(1))), 3))
        log("openssl s_time -new: %s connections in %s real s (%.0f/s); revd A CPU %.3f ms "
            "per handshake" % (m.group(1), m2.group(2), rec["s_time"]["per_real_s"],
                               rec["s_time"]["revd_cpu_ms_per_handshake"]))
    else:
        rec["s_time"] = dict(command=" ".join(cmd), failed="exit %d: %s" % (
            r.returncode, (out + r.stderr.decode(errors="replace"))[-400:]))
        log("openssl s_time did not give a figure (see logs/s_time.log)")
    # The same against `openssl s_server` with the same certificates and client
    # verification: what OpenSSL alone costs per handshake (its CPU, one process).
    port = free_port()
    srv_cmd = ["openssl", "s_server", "-accept", "127.0.0.1:%d" % port, "-cert",
               tls["server_cert"], "-key", tls["server_key"], "-CAfile", tls["client_ca"],
               "-Verify", "2", "-www", "-quiet"]
    srv_log = open(os.path.join(LOGDIR, "s_server.log"), "wb")
    srv = subprocess.Popen(srv_cmd, stdin=subprocess.DEVNULL, stdout=srv_log, stderr=srv_log,
                           preexec_fn=_die_with_parent)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or srv.poll() is not None:
                    raise RuntimeError("openssl s_server did not listen on %d" % port)
                time.sleep(0.05)
        cmd2 = cmd[:]
        cmd2[3] = "127.0.0.1:%d" % port
        cpu0 = proc_cpu_ms(srv.pid)
        r = run(cmd2, timeout=args.hs_seconds + 30, check=False, name="s_time-s_server")
        cpu = proc_cpu_ms(srv.pid) - cpu0
        out = r.stdout.decode(errors="replace")
        m = re.search(r"(\d+) connections in ([\d.]+)s; ([\d.]+) connections/user sec", out)
        m2 = re.search(r"(\d+) connections in (\d+) real seconds", out)
        if r.returncode == 0 and m and m2:
            rec["s_server"] = dict(command=" ".join(srv_cmd), client=" ".join(cmd2),
                                   connections=int(m.group(1)), real_seconds=int(m2.group(2)),
                                   per_real_s=round(int(m.group(1)) / max(1, int(m2.group(2))), 1),
                                   cpu_ms_per_handshake=round(cpu / max(1, int(m.group(1))), 3))
            log("openssl s_time -new against openssl s_server (same certificates, -Verify 2): "
                "%s connections in %s real s (%.0f/s); s_server CPU %.3f ms per handshake" % (
                    m.group(1), m2.group(2), rec["s_server"]["per_real_s"],
                    rec["s_server"]["cpu_ms_per_handshake"]))
        else:
            rec["s_server"] = dict(command=" ".join(srv_cmd), failed="exit %d: %s" % (
                r.returncode, (out + r.stderr.decode(errors="replace"))[-400:]))
            log("s_time against s_server did not give a figure (see logs/s_time-s_server.log)")
    finally:
        srv.terminate()
        try:
            srv.wait(timeout=5)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv.wait(timeout=5)
        srv_log.close()
        # s_server prints its verification of every client: keep the start and the counts.
        path = os.path.join(LOGDIR, "s_server.log")
        with open(path, errors="replace") as f:
            lines = f.read().splitlines()
        counts = {}
        for l in lines:
            counts[l] = counts.get(l, 0) + 1
        with open(path, "w") as f:
            f.write("$ %s\n%s\n... (%d lines; each distinct line with its count:)\n%s\n" % (
                " ".join(srv_cmd), "\n".join(lines[:12]), len(lines),
                "\n".join("%7d %s" % (n, l) for l, n in sorted(counts.items(),
                                                               key=lambda x: -x[1])[:20])))
    record("handshake", **rec)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- summary

def fmt(d, keys=("p50", "p90", "p99", "max")):
    if not d or not d.get("n"):
        return " | ".join("-" for _ in keys)
    return " | ".join("%g" % d[k] for k in keys)


def summary(path):
    recs = [json.loads(l) for l in open(path) if l.strip()]
    by = {}
    for r in recs:
        by.setdefault(r["kind"], []).append(r)
    L = ["# revd revocation API: summary", ""]
    meta = by.get("meta", [{}])[0]
    if meta:
        L += ["revd `%s`, %s; PostgreSQL %s; %d revd workers; loadavg at start %s" % (
            meta.get("revd_version", "?"), meta.get("pg_settings", ""),
            meta.get("pg_version", "?"), meta.get("workers", 0), meta.get("loadavg", "?")), ""]
    L += ["Times in ms (nearest-rank percentiles). Pooled: all repetitions' samples together.",
          "", "| what | n | p50 | p90 | p99 | max | note |", "| --- | --- | --- | --- | --- | --- | --- |"]

    def pooled(kind, key):
        s = []
        for r in by.get(kind, []):
            s += r.get(key, [])
        return dist(s)

    for r in by.get("keepalive", []):
        L.append("| API, one kept-alive connection, rep %d | %d | %s | %s calls/s; revd A CPU %s ms/call; %d failed, %d reconnects |" % (
            r["rep"], r["wall_ms"].get("n", 0), fmt(r["wall_ms"]), r["calls_per_s"],
            r["revd_cpu_ms_per_call"], r["n"] - r["ok"], r["reconnects"]))
    if len(by.get("keepalive", [])) > 1:
        d = pooled("keepalive", "samples_wall_ms")
        L.append("| **API, kept-alive, pooled** | %d | %s | |" % (d.get("n", 0), fmt(d)))
    for r in by.get("keepalive", []):
        L.append("| live_ms reported (kept-alive), rep %d | %d | %s | %d of them 0 (heard before the commit's reply) |" % (
            r["rep"], r["live_ms"].get("n", 0), fmt(r["live_ms"]), r["live_zero"]))
    nc = [r for r in by.get("newconn", []) if r.get("client_max_tls", "default") == "default"]
    for r in by.get("newconn", []):
        L.append("| API, new TLS connection per call, %s, rep %d | %d | %s | client handshake p50 %s ms, the request after it p50 %s ms (%s of them >= 40 ms); revd A CPU %s ms/call |" % (
            ",".join(r["tls_versions"]), r["rep"], r["total_ms"].get("n", 0),
            fmt(r["total_ms"]), r["handshake_ms"].get("p50"),
            r.get("request_ms", {}).get("p50"), r.get("over_40ms", "?"),
            r["revd_cpu_ms_per_call"]))
    if len(nc) > 1:
        d = dist([x for r in nc for x in r["samples_total_ms"]])
        L.append("| **API, new connection per call, %s, pooled** | %d | %s | |" % (
            ",".join(nc[0]["tls_versions"]), d.get("n", 0), fmt(d)))
    for r in by.get("visible", []):
        L.append("| A's 200 -> B answers revoked | %d | %s | revoked at the first poll %d times; not seen in 2 s: %d; B's cached GET p50 %s ms |" % (
            r["delay_ms"].get("n", 0), fmt(r["delay_ms"]), r["first_poll_revoked"],
            len(r["not_seen_in_2s"]), r["b_cached_get_ms"].get("p50")))
    for r in by.get("own_instance", []):
        L.append("| A's 200 -> A's own first OCSP answer | %d | %s | revoked: %d of %d |" % (
            r["answer_ms"].get("n", 0), fmt(r["answer_ms"]), r["first_answer_revoked"], r["ok"]))
    for r in by.get("db_update", []):
        L.append("| limit: database, the UPDATE alone, autocommit (psql \\timing) | %d | %s | psql wall %s ms per update |" % (
            r["per_update_ms"]["n"], fmt(r["per_update_ms"]), r["psql_wall_ms_per_update"]))
    for r in by.get("db_txn", []):
        L.append("| limit: database, revd's transaction (BEGIN, SELECT FOR UPDATE, UPDATE, COMMIT) | %d | %s | COMMIT p50 %s ms; psql wall %s ms per transaction |" % (
            r["per_txn_ms"]["n"], fmt(r["per_txn_ms"]), r["commit_ms"]["p50"],
            r["psql_wall_ms_per_txn"]))
    for r in by.get("cli", []):
        L.append("| limit: `revd revoke` CLI, process per call | %d | %s | `revd version` p50 %s ms |" % (
            r["wall_ms"].get("n", 0), fmt(r["wall_ms"]), r["revd_version_ms"]["p50"]))
    for r in by.get("handshake", []):
        st = r.get("s_time", {})
        note = ("openssl s_time -new: %s/s (real), revd CPU %s ms/handshake" % (
            st["per_real_s"], st["revd_cpu_ms_per_handshake"]) if "per_real_s" in st
            else "openssl s_time: no figure")
        L.append("| limit: TLS handshake with client certificate (Python, sequential) | %d | %s | %s/s; revd A CPU %s ms/handshake; %s |" % (
            r["handshake_ms"]["n"], fmt(r["handshake_ms"]), r["handshakes_per_s"],
            r["revd_cpu_ms_per_handshake"], note))
        sv = r.get("s_server", {})
        if "per_real_s" in sv:
            L.append("| limit: `openssl s_server` (same certificates, -Verify 2) under `openssl s_time -new` | %d | - | - | - | - | %s/s (real); s_server CPU %s ms/handshake |" % (
                sv["connections"], sv["per_real_s"], sv["cpu_ms_per_handshake"]))
    probs = by.get("problems", [])
    if probs:
        L += ["", "## Problems seen", ""] + ["- " + p for r in probs for p in r["lines"]]
    text = "\n".join(L) + "\n"
    with open(os.path.join(os.path.dirname(path), "summary.md"), "w") as f:
        f.write(text)
    return text


# ---------------------------------------------------------------- main

def main():
    global args, OUT, LOGDIR
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--revd", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--parts", default="keepalive,newconn,visible,db,cli,handshake")
    ap.add_argument("--n", type=int, default=300, help="calls per keep-alive repetition")
    ap.add_argument("--n-newconn", type=int, default=300)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--n-visible", type=int, default=100)
    ap.add_argument("--n-own", type=int, default=30)
    ap.add_argument("--n-db", type=int, default=300)
    ap.add_argument("--n-cli", type=int, default=100)
    ap.add_argument("--n-version", type=int, default=30)
    ap.add_argument("--hs-seconds", type=float, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--log-level", default="info")
    ap.add_argument("--durable", action="store_true",
                    help="PostgreSQL with fsync=on, synchronous_commit=on")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--summary-only", action="store_true")
    args = ap.parse_args()
    OUT = os.path.abspath(args.out)
    LOGDIR = os.path.join(OUT, "logs")
    os.makedirs(LOGDIR, exist_ok=True)
    if args.summary_only:
        print(summary(os.path.join(OUT, "results.jsonl")))
        return 0
    parts = set(args.parts.split(","))
    unknown = parts - {"keepalive", "newconn", "visible", "db", "cli", "handshake"}
    if unknown:
        ap.error("unknown parts: %s" % ",".join(sorted(unknown)))
    need = 5  # spare
    need += args.n * args.reps * ("keepalive" in parts)
    need += args.n_newconn * (args.reps + 1) * ("newconn" in parts)
    need += (args.n_visible + args.n_own) * ("visible" in parts)
    need += 2 * args.n_db * ("db" in parts) + args.n_cli * ("cli" in parts)

    from pg_harness import PgServer
    tmp = tempfile.mkdtemp(prefix="revd-apibench-")
    pg = None
    revds = []
    status = 0
    try:
        log("PKI: scripts/mkpki.sh (EC P-256) and the API's TLS certificates")
        pki = os.path.join(tmp, "pki")
        run([os.path.join(ROOT, "scripts", "mkpki.sh"), pki, "--leaves", "2", "--quiet"],
            timeout=300, name="mkpki")
        tls = make_tls(os.path.join(tmp, "tls"))
        ctx = client_context(tls)

        log("PostgreSQL (pg_harness)%s" % (" with fsync=on, synchronous_commit=on"
                                           if args.durable else ""))
        pg = PgServer("revd-apibench").start()
        settings = "fsync=off, synchronous_commit=off, full_page_writes=off (pg_harness)"
        if args.durable:
            pg._run("pg_ctl", "stop", "-D", pg.datadir, "-m", "fast", "-w", "-t", "60",
                    timeout=90)
            opts = ("-c listen_addresses=127.0.0.1 -p %d -c unix_socket_directories=%s "
                    "-c fsync=on -c synchronous_commit=on -c full_page_writes=on "
                    "-c max_connections=30 -c shared_buffers=64MB" % (pg.port, pg.sockdir))
            pg._run("pg_ctl", "start", "-D", pg.datadir, "-l", pg.logfile, "-o", opts, "-w",
                    "-t", "60", timeout=90)
            if not pg._wait_ready(30):
                raise RuntimeError("PostgreSQL did not come back:\n" + pg.log_tail())
            settings = "fsync=on, synchronous_commit=on, full_page_writes=on (--durable)"
        dsn = pg.create_database("apibench")
        run([args.revd, "db", "migrate", "--dsn", dsn], name="setup")
        run([args.revd, "db", "add-issuer", "--dsn", dsn, "--name", ISSUER, "--cert",
             os.path.join(pki, "issuing.pem")], name="setup")
        insert = ("BEGIN; SET LOCAL revd.bulk = 'on'; INSERT INTO certificates (issuer_id, "
                  "serial, not_before, not_after) SELECT (SELECT id FROM issuers WHERE name = "
                  "'%s'), decode(lpad(to_hex(%d + i), 8, '0'), 'hex'), now() - interval "
                  "'1 day', now() + interval '1 year' FROM generate_series(1, %d) AS i; COMMIT"
                  % (ISSUER, SERIAL_BASE, need))
        t0 = time.monotonic()
        pg.psql(dsn, insert, timeout=120)
        pg.psql(dsn, "VACUUM ANALYZE certificates", timeout=120)
        log("inserted %d certificates in %.2f s (one INSERT ... generate_series)" % (
            need, time.monotonic() - t0))
        pg_version = pg.psql(dsn, "SHOW server_version")
        settings += "; server says: " + ", ".join(
            "%s=%s" % (k, pg.psql(dsn, "SHOW " + k))
            for k in ("fsync", "synchronous_commit", "full_page_writes", "shared_buffers"))
        rv = run([args.revd, "version"], timeout=30).stdout.decode().strip()
        record("meta", revd=args.revd, revd_version=rv, pg_version=pg_version,
               pg_settings=settings, workers=args.workers, insert_sql=insert,
               options=vars(args), python=sys.version.split()[0],
               ssl=ssl.OPENSSL_VERSION)
        serials = Serials(need)

        a = Revd("A", revd_conf(pki, dsn, tls), tmp)
        revds.append(a)
        a.start(want_api=True)
        b = Revd("B", revd_conf(pki, dsn), tmp)
        revds.append(b)
        b.start(want_api=False)
        log("revd A: pid %d, OCSP 127.0.0.1:%d, API 127.0.0.1:%d; revd B: pid %d, OCSP "
            "127.0.0.1:%d" % (a.pid(), a.port, a.api_port, b.pid(), b.port))
        reqs = OcspRequests(os.path.join(pki, "issuing.pem"))
        probe = reqs.get_path(reqs.der("%X" % (SERIAL_BASE + need)))  # the spare last one
        for r in (a, b):
            o = Ocsp(r.port)
            deadline = time.monotonic() + 10
            while o.status(probe) != "good":
                if time.monotonic() > deadline:
                    raise RuntimeError("revd %s never answered good from the database" % r.name)
                time.sleep(0.02)
            o.close()

        if "keepalive" in parts:
            part_keepalive(ctx, a, serials)
        if "newconn" in parts:
            part_newconn(ctx, a, serials, tls)
        if "visible" in parts:
            part_visible(ctx, a, b, serials, pki, tmp)
        if "db" in parts:
            part_db(pg, dsn, serials)
        if "cli" in parts:
            part_cli(dsn, serials)
        if "handshake" in parts:
            part_handshake(ctx, a, tls)

        # A's /metrics (the API's own histograms) and anything revd logged above info.
        try:
            c = http.client.HTTPConnection("127.0.0.1", a.port, timeout=HTTP_TIMEOUT)
            c.request("GET", "/metrics")
            with open(os.path.join(LOGDIR, "metrics-A.txt"), "wb") as f:
                f.write(c.getresponse().read())
            c.close()
        except OSError as e:
            log("GET /metrics failed: %r" % e)
        problems = []
        for r in revds:
            if not r.alive():
                problems.append("revd %s exited during the run (%s)" % (r.name,
                                                                        r.proc.returncode))
            lines = [l for l in r.text().splitlines()
                     if re.search(r"\b(warn|warning|error|fatal)\b", l, re.I)]
            if lines:
                problems.append("revd %s logged %d warning/error lines, e.g.: %s" % (
                    r.name, len(lines), " / ".join(lines[:3])))
        if problems:
            record("problems", lines=problems)
            for p in problems:
                log("PROBLEM: " + p)
    except Exception as e:
        log("FAILED: %s" % e)
        status = 1
    finally:
        for r in revds:
            rc = r.stop()
            if rc not in (0, None):
                log("revd %s exited with %s on SIGTERM" % (r.name, rc))
        if pg is not None:
            pg.stop()
        if args.keep:
            log("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if os.path.exists(os.path.join(OUT, "results.jsonl")):
        print(summary(os.path.join(OUT, "results.jsonl")))
    return status


if __name__ == "__main__":
    sys.exit(main())

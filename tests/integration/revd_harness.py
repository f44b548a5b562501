"""Shared harness for revd's integration tests.

Starts revd as a real subprocess on 127.0.0.1 port 0, reads the port from its
"listening on" log line, keeps its stderr in a file (printed when a test fails),
checks after each test that the process is still alive (and, when asked, still
answers), and always kills it at teardown.  Also: the test PKIs (scripts/mkpki.sh,
cached under the build tree and serialised with a lock), a tiny DER encoder and
decoder to build and take apart OCSP requests and responses, and wrappers around
`openssl ocsp` and raw HTTP.

Environment (set by tests/integration/CMakeLists.txt; defaults suit a manual run
from the source tree):
  REVD_BIN         path of the revd binary      (default: <src>/build/revd)
  REVD_SOURCE_DIR  the source tree              (default: two levels up)
  REVD_PKI_CACHE   where PKIs are cached        (default: /tmp/revd-itest-pki-<uid>)
"""

import base64
import calendar
import ctypes
import fcntl
import hashlib
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("REVD_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
REVD_BIN = os.environ.get("REVD_BIN") or os.path.join(SOURCE_DIR, "build", "revd")
PKI_CACHE = os.environ.get("REVD_PKI_CACHE") or os.path.join(
    tempfile.gettempdir(), "revd-itest-pki-%d" % os.getuid())
MKPKI = os.path.join(SOURCE_DIR, "scripts", "mkpki.sh")

READY_TIMEOUT = 5.0
MALFORMED = bytes.fromhex("3003 0a01 01".replace(" ", ""))
UNAUTHORIZED = bytes.fromhex("30030a0106")

# The PKI most tests share: 2 levels (root -> issuing CA), 24 leaves so that every
# special case of mkpki.sh is present, followed by good leaves again.
MAIN_PKI = dict(levels=2, leaves=24, key_type="ec")


def log(msg):
    """Test output that ctest -V (and a failing run) shows."""
    sys.stderr.write("    [itest] %s\n" % msg)
    sys.stderr.flush()


# ---------------------------------------------------------------- test PKIs

class Pki:
    """A directory made by scripts/mkpki.sh, with its manifest and index parsed."""

    def __init__(self, path):
        self.path = path
        self.levels = int(re.search(r"levels=(\d+)", self.read("args.txt")).group(1))
        self.root = self.p("root.pem")
        self.chain = self.p("chain.pem")
        self.issuing = self.p("issuing.pem")
        self.issuing_key = self.p("issuing.key")
        self.ocsp_cert = self.p("ocsp.pem")
        self.ocsp_key = self.p("ocsp.key")
        self.index = self.p("index.txt")
        self.unissued = self.read("unissued_serial.txt").strip()
        self.leaves = []
        lines = self.read("manifest.tsv").splitlines()
        for line in lines[1:]:
            name, serial, status, reason, inval, cert = line.split("\t")
            self.leaves.append(dict(name=name, serial=serial, status=status,
                                    reason=None if reason == "-" else reason,
                                    invalidity=None if inval == "-" else inval,
                                    cert=self.p(cert),
                                    key=self.p(cert[:-4] + ".key")))

    def p(self, *parts):
        return os.path.join(self.path, *parts)

    def read(self, name):
        with open(self.p(name)) as f:
            return f.read()

    def ca_dir(self, level):
        return self.p("ca%d" % level)

    def leaf(self, status, n=0):
        """The n-th leaf with this manifest status."""
        return [l for l in self.leaves if l["status"] == status][n]

    def leaf_by_reason(self, reason, invalidity=False):
        for l in self.leaves:
            if l["status"] == "revoked" and l["reason"] == reason and \
                    bool(l["invalidity"]) == invalidity:
                return l
        raise KeyError(reason)


def make_pki(levels=2, leaves=24, key_type="ec", dest=None):
    """Returns a Pki; cached under PKI_CACHE unless dest is given (a fresh one)."""
    if dest is None:
        os.makedirs(PKI_CACHE, exist_ok=True)
        name = "%s-l%d-n%d" % (key_type, levels, leaves)
        dest = os.path.join(os.path.realpath(PKI_CACHE), name)  # mkpki resolves it too
        lock_path = os.path.join(PKI_CACHE, name + ".lock")
    else:
        lock_path = None
    args = ["bash", MKPKI, dest, "--leaves", str(leaves), "--levels", str(levels),
            "--key-type", key_type, "--quiet"]
    lock = open(lock_path, "w") if lock_path else None
    try:
        if lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # parallel ctest runs share the cache
        if not os.path.exists(os.path.join(dest, "args.txt")) and os.path.isdir(dest) \
                and lock:
            # A run that was killed half way: mkpki refuses a non-empty dir.
            shutil.rmtree(dest)
        t0 = time.monotonic()
        r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=300)
        if r.returncode != 0:
            raise RuntimeError("mkpki.sh failed (%d):\n%s" % (r.returncode,
                                                               r.stdout.decode(errors="replace")))
        dt = time.monotonic() - t0
        if dt > 1.0:
            log("mkpki %s levels=%d leaves=%d: %.1fs" % (key_type, levels, leaves, dt))
    finally:
        if lock:
            lock.close()
    return Pki(dest)


def main_pki():
    return make_pki(**MAIN_PKI)


def copy_pki(pki, dest):
    """Copies a PKI to dest and points every openssl.cnf at the copy, so that
    `openssl ca -config dest/caK/openssl.cnf` changes the copy, not the cache."""
    shutil.copytree(pki.path, dest, symlinks=True)
    for k in range(1, pki.levels + 1):
        cnf = os.path.join(dest, "ca%d" % k, "openssl.cnf")
        with open(cnf) as f:
            text = f.read()
        # mkpki writes absolute paths (dir = OUTDIR/caK, and a comment): all of them move.
        new = text.replace(pki.path, dest)
        want = "dir              = %s\n" % os.path.join(dest, "ca%d" % k)
        assert want in new, "no dir= line for the copy in %s" % cnf
        assert pki.path + os.sep not in new, "openssl.cnf still names the original PKI"
        with open(cnf, "w") as f:
            f.write(new)
    return Pki(dest)


def read_index(path):
    """index.txt -> {SERIAL_HEX: dict(flag, expiry, revtime, reason, arg)}"""
    out = {}
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            flag, expiry, rev, serial, _file, _subj = line.split("\t")
            d = dict(flag=flag, expiry=expiry, revtime=None, reason=None, arg=None)
            if rev:
                parts = rev.split(",")
                d["revtime"] = parts[0]
                d["reason"] = parts[1] if len(parts) > 1 else None
                d["arg"] = parts[2] if len(parts) > 2 else None
            out[serial.upper()] = d
    return out


# index.txt reason -> the reason code name `openssl ocsp` prints
INDEX_REASON_TO_OCSP = {
    "unspecified": "unspecified", "keyCompromise": "keyCompromise",
    "CACompromise": "cACompromise", "affiliationChanged": "affiliationChanged",
    "superseded": "superseded", "cessationOfOperation": "cessationOfOperation",
    "certificateHold": "certificateHold", "holdInstruction": "certificateHold",
    "keyTime": "keyCompromise", "CAkeyTime": "cACompromise",
}


def asn1_time(s):
    """YYMMDDHHMMSSZ or YYYYMMDDHHMMSSZ -> unix seconds."""
    s = s.rstrip("Z")
    if len(s) == 12:
        yy = int(s[:2])
        s = ("20" if yy < 50 else "19") + s
    return calendar.timegm(time.strptime(s, "%Y%m%d%H%M%S"))


def openssl_time(s):
    """'Nov 23 15:07:41 2026 GMT' (as openssl prints) -> unix seconds."""
    s = " ".join(s.split())
    return calendar.timegm(time.strptime(s, "%b %d %H:%M:%S %Y GMT"))


def http_time(s):
    return calendar.timegm(time.strptime(s.strip(), "%a, %d %b %Y %H:%M:%S GMT"))


# ---------------------------------------------------------------- DER

def der_len(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def tlv(tag, content):
    return bytes([tag]) + der_len(len(content)) + content


def seq(*items):
    return tlv(0x30, b"".join(items))


def octets(b):
    return tlv(0x04, b)


def der_null():
    return b"\x05\x00"


def der_int(v):
    """v: int, or bytes already in two's complement (as in a CertID)."""
    if isinstance(v, (bytes, bytearray)):
        return tlv(0x02, bytes(v))
    if v == 0:
        return tlv(0x02, b"\x00")
    b = v.to_bytes((v.bit_length() + 8) // 8, "big", signed=True)
    return tlv(0x02, b)


def der_oid(dotted):
    parts = [int(x) for x in dotted.split(".")]
    body = [40 * parts[0] + parts[1]] + parts[2:]
    out = bytearray()
    for v in body:
        enc = [v & 0x7F]
        v >>= 7
        while v:
            enc.append(0x80 | (v & 0x7F))
            v >>= 7
        out += bytes(reversed(enc))
    return tlv(0x06, bytes(out))


def ctx(n, content, constructed=True):
    return tlv((0xA0 if constructed else 0x80) | n, content)


def der_read(buf, pos=0):
    """One TLV at pos: (tag, content, end). Definite lengths only."""
    tag = buf[pos]
    n = buf[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0:
            raise ValueError("indefinite length")
        n = int.from_bytes(buf[pos:pos + k], "big")
        pos += k
    if pos + n > len(buf):
        raise ValueError("truncated")
    return tag, buf[pos:pos + n], pos + n


def der_children(content):
    """[(tag, content, full_tlv_bytes)] of a constructed value's contents."""
    out, pos = [], 0
    while pos < len(content):
        tag, c, end = der_read(content, pos)
        out.append((tag, c, content[pos:end]))
        pos = end
    return out


def oid_to_str(content):
    vals, v = [], 0
    for b in content:
        v = (v << 7) | (b & 0x7F)
        if not b & 0x80:
            vals.append(v)
            v = 0
    first = vals[0]
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(x) for x in head + vals[1:])


def pem_to_der(path, index=0):
    with open(path) as f:
        text = f.read()
    blocks = re.findall(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", text, re.S)
    return base64.b64decode("".join(blocks[index].split()))


OID_SHA1 = "1.3.14.3.2.26"
OID_SHA256 = "2.16.840.1.101.3.4.2.1"
OID_NONCE = "1.3.6.1.5.5.7.48.1.2"
OID_BASIC = "1.3.6.1.5.5.7.48.1.1"
OID_EXT_REVOKE = "1.3.6.1.5.5.7.48.1.9"
HASHES = {"sha1": (OID_SHA1, hashlib.sha1), "sha256": (OID_SHA256, hashlib.sha256)}


def issuer_hashes(ca_pem, hash_name="sha1"):
    """(issuerNameHash, issuerKeyHash) of a CA certificate (RFC 6960 4.1.1)."""
    cert = pem_to_der(ca_pem)
    _, cert_c, _ = der_read(cert)
    tbs = der_children(der_children(cert_c)[0][1])
    off = 1 if tbs[0][0] == 0xA0 else 0
    subject = tbs[off + 4][2]
    spki = der_children(tbs[off + 5][1])
    bitstring = spki[1][1]
    assert spki[1][0] == 0x03 and bitstring[0] == 0
    h = HASHES[hash_name][1]
    return h(subject).digest(), h(bitstring[1:]).digest()


def serial_bytes(hexstr):
    """A positive serial (hex as in index.txt) as DER INTEGER contents."""
    v = int(hexstr, 16)
    return v.to_bytes((v.bit_length() + 8) // 8, "big")


def certid(ca_pem, serial_hex, hash_name="sha1", null_params=True):
    nh, kh = issuer_hashes(ca_pem, hash_name)
    alg = seq(der_oid(HASHES[hash_name][0]), der_null()) if null_params else \
        seq(der_oid(HASHES[hash_name][0]))
    return seq(alg, octets(nh), octets(kh), der_int(serial_bytes(serial_hex)))


def nonce_ext(nonce):
    return seq(der_oid(OID_NONCE), octets(octets(nonce)))


def ocsp_request(ca_pem, serials, hash_name="sha1", nonce=None, raw_exts=None):
    """An OCSPRequest DER for the serials (hex strings) of one issuer."""
    if isinstance(serials, str):
        serials = [serials]
    reqs = b"".join(seq(certid(ca_pem, s, hash_name)) for s in serials)
    tbs = [seq(reqs)]
    exts = list(raw_exts or [])
    if nonce is not None:
        exts.append(nonce_ext(nonce))
    if exts:
        tbs.append(ctx(2, seq(*exts)))
    return seq(seq(*tbs))


class OcspResp:
    """A decoded OCSPResponse, enough for the tests' assertions."""

    STATUS = {0x80: "good", 0xA1: "revoked", 0x82: "unknown"}

    def __init__(self, der):
        self.der = der
        tag, c, end = der_read(der)
        assert tag == 0x30 and end == len(der), "not one SEQUENCE"
        kids = der_children(c)
        assert kids[0][0] == 0x0A
        self.status = kids[0][1][0]
        self.singles = []
        self.extensions = {}
        if self.status != 0:
            return
        rb = der_children(der_children(kids[1][1])[0][1])
        assert oid_to_str(rb[0][1]) == OID_BASIC
        basic = der_children(der_read(rb[1][1])[1])
        tbs = der_children(basic[0][1])
        i = 1 if tbs[0][0] == 0xA0 else 0
        self.responder_id = tbs[i]
        self.produced_at = asn1_time(tbs[i + 1][1].decode())
        for s in der_children(tbs[i + 2][1]):
            parts = der_children(s[1])
            cid = der_children(parts[0][1])
            nu = [p for p in parts[3:] if p[0] == 0xA0]
            self.singles.append(dict(serial=cid[3][1].hex().upper(),
                                     hash_oid=oid_to_str(der_children(cid[0][1])[0][1]),
                                     status=self.STATUS.get(parts[1][0], "?"),
                                     this_update=asn1_time(parts[2][1].decode()),
                                     next_update=asn1_time(der_read(nu[0][1])[1].decode())
                                     if nu else None))
        for t in tbs[i + 3:]:
            if t[0] == 0xA1:
                for e in der_children(der_children(t[1])[0][1]):
                    ec = der_children(e[1])
                    self.extensions[oid_to_str(ec[0][1])] = ec[-1][1]
        self.n_certs = 0
        for t in basic[3:]:
            if t[0] == 0xA0:
                self.n_certs = len(der_children(der_children(t[1])[0][1]))

    def nonce(self):
        v = self.extensions.get(OID_NONCE)
        if v is None:
            return None
        tag, c, _ = der_read(v)
        assert tag == 0x04
        return c


# ---------------------------------------------------------------- HTTP

def http_request(port, method, path, body=None, headers=None, timeout=10, host="127.0.0.1"):
    """One request on a fresh connection: (status, {lower-name: value}, body)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        hdrs = dict(headers or {})
        if body is not None:
            hdrs.setdefault("Content-Type", "application/ocsp-request")
            hdrs.setdefault("Content-Length", str(len(body)))
        for k, v in hdrs.items():
            conn.putheader(k, v)
        conn.endheaders(body)
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        conn.close()


def ocsp_post(port, der, path="/", **kw):
    return http_request(port, "POST", path, der, **kw)


def b64_path(der):
    return base64.b64encode(der).decode()


class RawConn:
    """A plain TCP client that reads HTTP/1.1 responses itself (raw-socket tests)."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.timeout = timeout

    def send(self, data):
        self.sock.sendall(data)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("timed out waiting for the server")
        self.sock.settimeout(left)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed by the server")
        self.buf += chunk

    def read_response(self, head=False, timeout=None):
        """(status, headers: {lower: [values]}, body). head=True: expect no body."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\r\n\r\n" not in self.buf:
            self._fill(deadline)
        head_bytes, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head_bytes.decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/1\.[01] (\d{3}) ", lines[0] + " ")
        if not m:
            raise AssertionError("bad status line %r" % lines[0])
        status = int(m.group(1))
        headers = {}
        for l in lines[1:]:
            k, v = l.split(":", 1)
            headers.setdefault(k.strip().lower(), []).append(v.strip())
        body = b""
        if not head and status not in (204, 304) and status >= 200:
            n = int(headers.get("content-length", ["0"])[0])
            while len(self.buf) < n:
                self._fill(deadline)
            body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body

    def wait_closed(self, timeout=2.0):
        """True if the server closes (EOF or reset) within timeout, with no more data."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
            if not chunk:
                return True
            self.buf += chunk


def simple_request(method, path, body=b"", headers=None, version="HTTP/1.1", host=True):
    lines = ["%s %s %s" % (method, path, version)]
    if host:
        lines.append("Host: 127.0.0.1")
    for k, v in (headers or []):
        lines.append("%s: %s" % (k, v))
    if body and not any(k.lower() in ("content-length", "transfer-encoding")
                        for k, _ in (headers or [])):
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def post_request(der, path="/", extra=None, version="HTTP/1.1"):
    return simple_request("POST", path, der, [("Content-Type", "application/ocsp-request")]
                          + list(extra or []), version=version)


# ---------------------------------------------------------------- openssl

def run(args, timeout=30, **kw):
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout, **kw)


def parse_ocsp_status_output(out):
    """`openssl ocsp` status lines -> {name: {status, reason, revocation_time, ...}}."""
    res, cur = {}, None
    for line in out.splitlines():
        m = re.match(r"^(\S.*): (good|revoked|unknown)\s*$", line)
        if m:
            cur = dict(status=m.group(2), reason=None, revocation_time=None,
                       this_update=None, next_update=None)
            res[m.group(1)] = cur
            continue
        m = re.match(r"^\s+(This Update|Next Update|Reason|Revocation Time): (.*?)\s*$", line)
        if m and cur is not None:
            key = m.group(1).lower().replace(" ", "_")
            cur[key] = m.group(2)
    return res


# ---------------------------------------------------------------- revd

def _die_with_parent():
    """In the child before exec: SIGKILL revd if the test process dies (a ctest timeout
    kills the test, and must not leave servers behind)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: teardown still kills it
        pass


class Revd:
    """One revd process. Use RevdTestCase.start_revd, which cleans up."""

    def __init__(self, argv, workdir, name="revd", env=None):
        self.argv = [REVD_BIN, "serve"] + list(argv)
        self.env = env
        self.workdir = workdir
        self.name = name
        self.stderr_path = os.path.join(workdir, "%s.stderr" % name)
        self.proc = None
        self.port = None
        self.addrs = []

    def start(self, wait_ready=True):
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=self._err, stderr=self._err, cwd=self.workdir,
                                     preexec_fn=_die_with_parent,
                                     env=dict(os.environ, **self.env) if self.env else None)
        if wait_ready:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.stderr()
            addrs = re.findall(r"listening on (\S+):(\d+) ", text)
            if addrs:
                self.addrs = [(h.strip("[]"), int(p)) for h, p in addrs]
                self.port = self.addrs[0][1]
                return
            if self.proc.poll() is not None:
                raise AssertionError("revd exited with %s before listening:\n%s"
                                     % (self.proc.returncode, text))
            time.sleep(0.02)
        raise AssertionError("revd did not log 'listening on' within %.0fs:\n%s"
                             % (timeout, self.stderr()))

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def stop(self, timeout=5.0):
        """SIGTERM, then SIGKILL after timeout. Returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._err.close()
        return self.proc.returncode

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


class RevdTestCase(unittest.TestCase):
    """Base class: a temp dir per test, revd processes that are checked and killed."""

    maxDiff = 4000

    def run(self, result=None):
        if result is None:
            result = self.defaultTestResult()
        self.tmp = tempfile.mkdtemp(prefix="revd-itest-")
        self._revds = []
        before = len(result.failures) + len(result.errors)
        try:
            return super().run(result)
        finally:
            for r in self._revds:
                r.kill()
            if len(result.failures) + len(result.errors) > before:
                for r in self._revds:
                    sys.stderr.write("\n----- stderr of %s (%s) -----\n%s-----\n"
                                     % (r.name, " ".join(r.argv), r.stderr()))
            shutil.rmtree(self.tmp, ignore_errors=True)

    def tearDown(self):
        problems = []
        for r in self._revds:
            if r.expect_alive and r.proc is not None and not r.alive():
                problems.append("%s died during the test (exit %s)" % (r.name, r.proc.returncode))
            elif r.expect_alive and r.probe is not None and r.alive():
                try:
                    st, h, body = ocsp_post(r.port, r.probe, timeout=5)
                    if st != 200 or not body.startswith(b"\x30") or OcspResp(body).status != 0:
                        problems.append("%s no longer answers a normal request: HTTP %d %r"
                                        % (r.name, st, body[:16]))
                except Exception as e:  # noqa: BLE001 - any failure is the finding
                    problems.append("%s no longer answers a normal request: %r" % (r.name, e))
        for r in self._revds:
            r.stop()
        if problems:
            self.fail("; ".join(problems))

    def start_revd(self, args=(), config=None, listen=True, expect_alive=True, probe=None,
                   name=None, env=None):
        """Starts revd with args (after --config FILE if config is given) and returns it
        once it listens. probe: an OCSP request DER that must still be answered at the end."""
        argv = []
        if config is not None:
            path = os.path.join(self.tmp, "revd-%d.conf" % len(self._revds))
            with open(path, "w") as f:
                f.write(config)
            argv += ["--config", path]
        argv += list(args)
        if listen:
            argv += ["--listen", "127.0.0.1:0"]
        r = Revd(argv, self.tmp, name or "revd%d" % len(self._revds), env=env)
        r.expect_alive = expect_alive
        r.probe = probe
        self._revds.append(r)
        r.start()
        return r

    def run_revd_fail(self, args=(), config=None, timeout=10):
        """Runs revd expecting it to refuse to start: (exit code, stderr)."""
        argv = [REVD_BIN, "serve"]
        if config is not None:
            path = os.path.join(self.tmp, "bad.conf")
            with open(path, "w") as f:
                f.write(config)
            argv += ["--config", path]
        argv += list(args)
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, cwd=self.tmp, preexec_fn=_die_with_parent)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate(timeout=5)
            self.fail("revd %s did not exit within %ds (it should have refused to start);"
                      " stderr:\n%s" % (" ".join(args), timeout, err.decode(errors="replace")))
        return p.returncode, err.decode(errors="replace")

    # -- revd invocations for a PKI

    @staticmethod
    def pki_args(pki, delegated=True, level=None):
        d = pki.path if level is None else pki.ca_dir(level)
        ca = pki.issuing if level is None else os.path.join(d, "ca.pem")
        index = pki.index if level is None else os.path.join(d, "index.txt")
        args = ["-index", index, "-CA", ca]
        if delegated:
            cert = pki.ocsp_cert if level is None else os.path.join(d, "ocsp.pem")
            key = pki.ocsp_key if level is None else os.path.join(d, "ocsp.key")
            args += ["-rsigner", cert, "-rkey", key]
        else:
            args += ["-rkey", pki.issuing_key if level is None else os.path.join(d, "ca.key")]
        return args

    def start_for_pki(self, pki, extra=(), delegated=True, **kw):
        probe = kw.pop("probe", None)
        if probe is None:
            probe = ocsp_request(pki.issuing, pki.leaf("good")["serial"])
        return self.start_revd(self.pki_args(pki, delegated) + list(extra), probe=probe, **kw)

    # -- openssl ocsp

    def openssl_ocsp(self, revd, pki, serials=(), certs=(), issuer=None, extra=(),
                     verify=True, path="/", expect_rc=0):
        """Runs `openssl ocsp` against revd; returns (stdout, stderr)."""
        args = ["openssl", "ocsp", "-url", revd.url(path), "-timeout", "10",
                "-issuer", issuer or pki.issuing]
        args += list(extra)  # before -serial/-cert: -sha256 applies to the ids after it
        for s in serials:
            args += ["-serial", "0x" + s]
        for c in certs:
            args += ["-cert", c]
        if verify:
            args += ["-CAfile", pki.root, "-verify_other", pki.chain]
        else:
            args += ["-noverify"]
        r = run(args)
        out, err = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
        if expect_rc is not None:
            self.assertEqual(r.returncode, expect_rc,
                             "openssl ocsp %s exited %d\nstdout:\n%s\nstderr:\n%s"
                             % (" ".join(args), r.returncode, out, err))
        return out, err

    def assert_verified(self, err):
        self.assertIn("Response verify OK", err)
        self.assertNotIn("Response Verify Failure", err)

    def assert_malformed_response(self, status, headers, body):
        """The unsigned malformedRequest answer, with no caching."""
        self.assertEqual(status, 200)
        self.assertEqual(body, MALFORMED)
        ct = headers.get("content-type")
        ct = ct[0] if isinstance(ct, list) else ct
        self.assertEqual(ct, "application/ocsp-response")
        cc = headers.get("cache-control")
        cc = cc[0] if isinstance(cc, list) else (cc or "")
        self.assertTrue("no-cache" in cc or "no-store" in cc, "Cache-Control: %r" % cc)
        self.assertNotIn("etag", headers)


def main():
    unittest.main(verbosity=2)

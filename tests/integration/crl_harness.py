"""Helpers for the CRL integration tests (test_crl.py, test_crl_pg.py).

A strict-enough reader of X.509 v2 CRLs (numbers, Delta CRL Indicator, AKI, Freshest
CRL and Issuing Distribution Point URIs as raw bytes, entries with reason code and
invalidity date), so that tests can check exactly what revd encoded; wrappers around
the openssl CLI, which is the judge of whether a CRL is valid and what it means to a
relying party (`openssl crl -verify`, `openssl verify -crl_check`); fetching CRLs over
HTTP; leaf certificates with a CRL distribution point; and rewriting index.txt the way
a careful CA does (a new file renamed over the old one).
"""

import base64
import glob
import os
import re
import subprocess
import time

from revd_harness import (asn1_time, der_children, der_read, http_request, oid_to_str,
                          pem_to_der, run)

OID_AKI = "2.5.29.35"
OID_CRL_NUMBER = "2.5.29.20"
OID_DELTA_INDICATOR = "2.5.29.27"
OID_IDP = "2.5.29.28"
OID_FRESHEST = "2.5.29.46"
OID_REASON = "2.5.29.21"
OID_INVALIDITY = "2.5.29.24"

# index.txt reason field -> (CRLReason code (RFC 5280 §5.3.1), the third field is an
# invalidity date)
INDEX_REASONS = {"unspecified": (0, False), "keyCompromise": (1, False),
                 "CACompromise": (2, False), "affiliationChanged": (3, False),
                 "superseded": (4, False), "cessationOfOperation": (5, False),
                 "certificateHold": (6, False), "holdInstruction": (6, False),
                 "keyTime": (1, True), "CAkeyTime": (2, True)}

DER_CONTENT_TYPE = "application/pkix-crl"

LIBFAKETIME = (glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1") +
               glob.glob("/usr/lib/faketime/libfaketimeMT.so.1") +
               glob.glob("/usr/local/lib/faketime/libfaketimeMT.so.1"))


def faketime_env(offset):
    """The environment for a revd process whose wall clock is offset ("+90m") by
    libfaketime. In the sanitizer build ASan wants to be loaded first; libfaketime only
    wraps the clock functions, so its going first is harmless."""
    return dict(os.environ, LD_PRELOAD=LIBFAKETIME[0], FAKETIME=offset,
                FAKETIME_DONT_FAKE_MONOTONIC="1",
                ASAN_OPTIONS=":".join(filter(None, [os.environ.get("ASAN_OPTIONS"),
                                                    "verify_asan_link_order=0"])))


def _int(content):
    return int.from_bytes(content, "big", signed=True)


def _uris(tlv_content):
    """Every uniformResourceIdentifier ([6] IMPLICIT IA5String, tag 0x86) inside a
    constructed value, as raw bytes, depth first."""
    out = []
    for t, c, _ in der_children(tlv_content):
        if t == 0x86:
            out.append(bytes(c))
        elif t & 0x20:  # constructed: look inside
            out.extend(_uris(c))
    return out


def _extensions(content):
    """Extensions SEQUENCE contents -> {oid: (critical, extnValue contents)}; an OID
    that appears twice is an error (RFC 5280 §4.2)."""
    exts = {}
    for t, c, _ in der_children(content):
        assert t == 0x30, "an Extension is not a SEQUENCE"
        parts = der_children(c)
        oid = oid_to_str(parts[0][1])
        critical = False
        if parts[1][0] == 0x01:
            assert parts[1][1] == b"\xff", "DER encodes a BOOLEAN TRUE as ff, FALSE is left out"
            critical = True
            value = parts[2]
        else:
            value = parts[1]
        assert value[0] == 0x04, "extnValue is not an OCTET STRING"
        assert oid not in exts, "extension %s twice" % oid
        exts[oid] = (critical, bytes(value[1]))
    return exts


class Crl:
    """A decoded CRL. Times are unix seconds; serials are ints."""

    def __init__(self, der):
        self.der = bytes(der)
        tag, c, end = der_read(self.der)
        assert tag == 0x30 and end == len(self.der), "not one SEQUENCE"
        tbs_t, sigalg_t, sig_t = der_children(c)
        assert sig_t[0] == 0x03
        tbs = der_children(tbs_t[1])
        i = 0
        self.version = None
        if tbs[0][0] == 0x02:
            self.version = _int(tbs[0][1])
            i = 1
        self.sigalg = tbs[i][2]
        assert self.sigalg == sigalg_t[2], "the two signature algorithms differ"
        self.issuer_der = tbs[i + 1][2]
        self.this_update = asn1_time(tbs[i + 2][1].decode())
        self.this_update_tag = tbs[i + 2][0]
        i += 3
        self.next_update = None
        if i < len(tbs) and tbs[i][0] in (0x17, 0x18):
            self.next_update = asn1_time(tbs[i][1].decode())
            i += 1
        self.entries = {}
        self.entry_order = []
        if i < len(tbs) and tbs[i][0] == 0x30:
            for t, ec, _ in der_children(tbs[i][1]):
                parts = der_children(ec)
                assert parts[0][0] == 0x02
                serial = _int(parts[0][1])
                assert serial not in self.entries, "serial %X listed twice" % serial
                e = dict(serial=serial, revoked_at=asn1_time(parts[1][1].decode()),
                         reason=None, invalidity=None, exts={})
                if len(parts) > 2:
                    e["exts"] = _extensions(parts[2][1])
                    if OID_REASON in e["exts"]:
                        rt, rc, _ = der_read(e["exts"][OID_REASON][1])
                        assert rt == 0x0A, "reasonCode is not an ENUMERATED"
                        e["reason"] = _int(rc)
                    if OID_INVALIDITY in e["exts"]:
                        it, ic, _ = der_read(e["exts"][OID_INVALIDITY][1])
                        assert it == 0x18, "invalidityDate is not a GeneralizedTime"
                        e["invalidity"] = asn1_time(ic.decode())
                self.entries[serial] = e
                self.entry_order.append(serial)
            i += 1
        self.exts = {}
        if i < len(tbs) and tbs[i][0] == 0xA0:
            _, inner, _ = der_read(tbs[i][1])
            self.exts = _extensions(inner)
            i += 1
        assert i == len(tbs), "unexpected fields at the end of the TBSCertList"

    def ext(self, oid):
        return self.exts.get(oid)

    @property
    def number(self):
        e = self.ext(OID_CRL_NUMBER)
        if e is None:
            return None
        t, c, _ = der_read(e[1])
        assert t == 0x02
        return _int(c)

    @property
    def delta_base(self):
        """The Delta CRL Indicator's number, None for a full CRL."""
        e = self.ext(OID_DELTA_INDICATOR)
        if e is None:
            return None
        t, c, _ = der_read(e[1])
        assert t == 0x02
        return _int(c)

    @property
    def is_delta(self):
        return self.delta_base is not None

    @property
    def aki_keyid(self):
        e = self.ext(OID_AKI)
        if e is None:
            return None
        _, c, _ = der_read(e[1])
        for t, v, _ in der_children(c):
            if t == 0x80:
                return bytes(v)
        return None

    @property
    def freshest_uris(self):
        e = self.ext(OID_FRESHEST)
        return None if e is None else _uris(der_read(e[1])[1])

    @property
    def idp_uris(self):
        e = self.ext(OID_IDP)
        return None if e is None else _uris(der_read(e[1])[1])


def pem_of(der):
    b64 = base64.b64encode(der).decode()
    return ("-----BEGIN X509 CRL-----\n%s\n-----END X509 CRL-----\n"
            % "\n".join(b64[i:i + 64] for i in range(0, len(b64), 64)))


def pem_crl_to_der(text):
    if isinstance(text, bytes):
        text = text.decode()
    m = re.search(r"-----BEGIN X509 CRL-----(.*?)-----END X509 CRL-----", text, re.S)
    assert m, "no PEM X509 CRL block"
    return base64.b64decode("".join(m.group(1).split()))


def write_pem(path, der):
    with open(path, "w") as f:
        f.write(pem_of(der))
    return path


def cert_serial(pem_path):
    r = run(["openssl", "x509", "-in", pem_path, "-noout", "-serial"])
    assert r.returncode == 0, r.stderr.decode()
    return int(r.stdout.decode().strip().split("=", 1)[1], 16)


def cert_ski(pem_path):
    """The certificate's subject key identifier, bytes."""
    r = run(["openssl", "x509", "-in", pem_path, "-noout", "-ext", "subjectKeyIdentifier"])
    assert r.returncode == 0, r.stderr.decode()
    hexes = re.findall(r"^\s+([0-9A-F:]+)\s*$", r.stdout.decode(), re.M)
    return bytes.fromhex(hexes[-1].replace(":", ""))


def cert_subject_der(pem_path):
    cert = pem_to_der(pem_path)
    _, c, _ = der_read(cert)
    tbs = der_children(der_children(c)[0][1])
    off = 1 if tbs[0][0] == 0xA0 else 0
    return tbs[off + 4][2]


# ---------------------------------------------------------------- openssl as the judge

def openssl_crl_text(der):
    r = run(["openssl", "crl", "-inform", "DER", "-noout", "-text"], input=der)
    assert r.returncode == 0, "openssl crl cannot read the CRL:\n" + r.stderr.decode()
    return r.stdout.decode()


def openssl_crl_verify(der, cafile, inform="DER"):
    """`openssl crl -verify -CAfile cafile`: (ok, output)."""
    r = run(["openssl", "crl", "-inform", inform, "-noout", "-verify", "-CAfile", cafile],
            input=der)
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    return r.returncode == 0 and "verify OK" in out, out


def openssl_verify(cafile, cert, crl_files, deltas=False):
    """`openssl verify -crl_check` of cert with the given CRL files (PEM):
    (returncode, error code or None, output)."""
    args = ["openssl", "verify", "-crl_check"]
    if deltas:
        args += ["-use_deltas", "-extended_crl"]
    args += ["-CAfile", cafile]
    for f in crl_files:
        args += ["-CRLfile", f]
    args.append(cert)
    r = run(args)
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    m = re.search(r"error (\d+) at 0 depth lookup", out)
    if r.returncode == 0:
        assert re.search(r": OK\s*$", out, re.M), out
    return r.returncode, int(m.group(1)) if m else None, out


# ---------------------------------------------------------------- HTTP

def get_crl(port, name, headers=None, method="GET"):
    """GET /crl/NAME: (status, {lower: value}, body)."""
    return http_request(port, method, "/crl/" + name, headers=headers)


def fetch_crl(tc, port, name):
    """The current CRL NAME over HTTP, decoded; fails the test unless it is a 200 with
    the right content type."""
    st, h, body = get_crl(port, name)
    tc.assertEqual(st, 200, "GET /crl/%s: %d %r" % (name, st, body[:200]))
    if name.endswith(".crl"):
        tc.assertEqual(h.get("content-type"), DER_CONTENT_TYPE)
        return Crl(body)
    return Crl(pem_crl_to_der(body))


def max_age(headers):
    m = re.search(r"max-age=(\d+)", headers.get("cache-control", ""))
    return int(m.group(1)) if m else None


def wait_until(tc, what, fn, timeout, interval=0.1, describe=None):
    """Polls fn() until it returns something true; returns (value, seconds). Fails the
    test after timeout with the last value (and describe(), if given)."""
    t0 = time.monotonic()
    last = None
    while True:
        last = fn()
        if last:
            return last, time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            tc.fail("%s: not within %.1f s (last: %r)%s"
                    % (what, timeout, last, "; " + describe() if describe else ""))
        time.sleep(interval)


# ---------------------------------------------------------------- the CA's side

def rewrite_index(path, fn):
    """Rewrites index.txt as a CA does: fn(list of field lists) -> list of field lists;
    a new file, renamed over the old one."""
    real = os.path.realpath(path)
    with open(real) as f:
        rows = [l.rstrip("\n").split("\t") for l in f if l.strip()]
    rows = fn(rows)
    tmp = real + ".new"
    with open(tmp, "w") as f:
        f.write("".join("\t".join(r) + "\n" for r in rows))
    os.rename(tmp, real)


def index_time(t):
    return time.strftime("%y%m%d%H%M%SZ", time.gmtime(t))


def revoke_rows(changes):
    """fn for rewrite_index: changes = {SERIAL_HEX: revocation field or None (valid)}."""
    def fn(rows):
        for r in rows:
            if r[3].upper() in changes:
                v = changes[r[3].upper()]
                r[0], r[2] = ("V", "") if v is None else ("R", v)
        return rows
    return fn


def make_leaf(workdir, name, serial, ca_cert, ca_key, cdp_uri=None, key=None):
    """A leaf certificate issued by ca_cert/ca_key with the given serial (int) and, if
    given, a CRL distribution point; returns (cert path, index.txt row fields)."""
    if key is None:
        key = os.path.join(workdir, "leafkey.pem")
        if not os.path.exists(key):
            r = run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                     "ec_paramgen_curve:P-256", "-out", key])
            assert r.returncode == 0, r.stderr.decode()
    csr = os.path.join(workdir, name + ".csr")
    cert = os.path.join(workdir, name + ".pem")
    ext = os.path.join(workdir, name + ".ext")
    with open(ext, "w") as f:
        f.write("[v3]\nbasicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature\n"
                "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always\n")
        if cdp_uri:
            f.write("crlDistributionPoints = URI:%s\n" % cdp_uri)
    subj = "/O=revd test PKI/CN=%s.revd.test" % name
    r = run(["openssl", "req", "-new", "-key", key, "-subj", subj, "-out", csr])
    assert r.returncode == 0, r.stderr.decode()
    r = run(["openssl", "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key,
             "-set_serial", "0x%X" % serial, "-days", "365", "-extfile", ext,
             "-extensions", "v3", "-out", cert])
    assert r.returncode == 0, r.stderr.decode()
    r = run(["openssl", "x509", "-in", cert, "-noout", "-enddate"])
    end = r.stdout.decode().strip().split("=", 1)[1]
    not_after = time.strftime("%y%m%d%H%M%SZ",
                              time.strptime(" ".join(end.split()), "%b %d %H:%M:%S %Y GMT"))
    row = ["V", not_after, "", "%X" % serial, "unknown", subj]
    return cert, row


def run_revd_cli(bin_path, args, timeout=60, env=None):
    """(returncode, stdout, stderr) of a revd subcommand."""
    r = subprocess.run([bin_path] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, env=env)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


"""Helpers for the tests of revd's mTLS revocation API (test_api.py, and the API case of
test_nginx_stapling.py).

make_api_pki(dir) makes, with the openssl CLI, every certificate the tests present or
trust: the API server's chain (a root, an intermediate, a leaf for IP 127.0.0.1), the
client CA with its clients and a CRL revoking one of them, and a client from another CA.
ApiClient talks HTTPS to the API with Python's ssl module (TLS 1.3 by default, TLS 1.2
on request); tls_refused() makes one attempt and says whether any HTTP answer came back.
api_section() writes the [api] section of revd's configuration."""

import http.client
import json
import os
import re
import socket
import ssl
import time

from revd_harness import run

# The identities in `allow` (api_section's default), and what each client presents.
ALLOWED_DNS = "ca-service.example"
ALLOWED_CN = "cn-client.example"
ALLOWED_URI = "spiffe://revd.test/ca-issuer"
ALLOW = "%s, %s, %s" % (ALLOWED_DNS, ALLOWED_CN, ALLOWED_URI)

CLIENTS = {
    # name: (subject, subjectAltName or None, issued by the client CA (else the other CA))
    "listed": ("/O=revd API test/CN=listed client", "DNS:" + ALLOWED_DNS, True),
    "listed_upper": ("/O=revd API test/CN=upper-case client", "DNS:CA-Service.Example", True),
    "uri": ("/O=revd API test/CN=uri client", "URI:" + ALLOWED_URI, True),
    "cn_only": ("/O=revd API test/CN=" + ALLOWED_CN, None, True),
    "unlisted": ("/O=revd API test/CN=unlisted client", "DNS:other.example", True),
    # Its commonName is listed, but it has a DNS subjectAltName: the CN does not count.
    "san_not_cn": ("/O=revd API test/CN=" + ALLOWED_CN, "DNS:elsewhere.example", True),
    "other_ca": ("/O=revd API test/CN=other CA client", "DNS:" + ALLOWED_DNS, False),
    "revoked": ("/O=revd API test/CN=revoked client", "DNS:" + ALLOWED_DNS, True),
}


def _ok(r, what):
    assert r.returncode == 0, "%s failed (%d):\n%s%s" % (
        what, r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace"))


def _key(path):
    _ok(run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", path]), "openssl genpkey")
    return path


def _root(d, name, cn):
    key = _key(os.path.join(d, name + ".key"))
    pem = os.path.join(d, name + ".pem")
    _ok(run(["openssl", "req", "-x509", "-new", "-key", key, "-subj", "/O=revd API test/CN=" + cn,
             "-days", "30", "-sha256", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", pem]),
        "openssl req -x509 " + name)
    return pem, key


_serial = [0x5000]


def _issue(d, name, subj, ca, ca_key, ext):
    """A certificate for a new key, issued by ca/ca_key with the extension lines ext."""
    key = _key(os.path.join(d, name + ".key"))
    csr = os.path.join(d, name + ".csr")
    pem = os.path.join(d, name + ".pem")
    extfile = os.path.join(d, name + ".ext")
    with open(extfile, "w") as f:
        f.write("[v3]\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always\n"
                + "".join(l + "\n" for l in ext))
    _ok(run(["openssl", "req", "-new", "-key", key, "-subj", subj, "-out", csr]), "openssl req")
    _serial[0] += 1
    _ok(run(["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-set_serial",
             "0x%X%04X" % (_serial[0], os.getpid() & 0xFFFF), "-days", "30", "-sha256",
             "-extfile", extfile, "-extensions", "v3", "-out", pem]), "openssl x509 -req " + name)
    return pem, key


def make_api_pki(d):
    """Every certificate the API tests need, in directory d. Returns a dict of paths:
    server_root (what clients trust), server_cert (leaf then intermediate), server_key,
    client_ca, client_crl, and for each name in CLIENTS (name + "_cert", name + "_key")."""
    os.makedirs(d, exist_ok=True)
    out = {}
    # The server: root -> intermediate -> leaf for 127.0.0.1; the file has leaf + chain.
    sroot, sroot_key = _root(d, "server-root", "API server root")
    sint, sint_key = _issue(d, "server-int", "/O=revd API test/CN=API server intermediate",
                            sroot, sroot_key,
                            ["basicConstraints = critical, CA:TRUE, pathlen:0",
                             "keyUsage = critical, keyCertSign, cRLSign"])
    leaf, leaf_key = _issue(d, "server-leaf", "/O=revd API test/CN=127.0.0.1", sint, sint_key,
                            ["basicConstraints = critical, CA:FALSE",
                             "keyUsage = critical, digitalSignature",
                             "extendedKeyUsage = serverAuth",
                             "subjectAltName = IP:127.0.0.1"])
    chain = os.path.join(d, "server-chain.pem")
    with open(chain, "w") as f:
        for part in (leaf, sint):
            with open(part) as g:
                f.write(g.read())
    out.update(server_root=sroot, server_cert=chain, server_key=leaf_key, server_leaf=leaf)

    cca, cca_key = _root(d, "client-ca", "API client CA")
    oca, oca_key = _root(d, "other-ca", "another client CA")
    out.update(client_ca=cca, client_ca_key=cca_key, other_ca=oca)
    for name, (subj, san, ours) in CLIENTS.items():
        ext = ["basicConstraints = critical, CA:FALSE", "keyUsage = critical, digitalSignature",
               "extendedKeyUsage = clientAuth"]
        if san:
            ext.append("subjectAltName = " + san)
        cert, key = _issue(d, "client-" + name, subj, cca if ours else oca,
                           cca_key if ours else oca_key, ext)
        out[name + "_cert"], out[name + "_key"] = cert, key

    # The client CA's CRL, revoking "revoked" (openssl ca adds it to its database first).
    cadir = os.path.join(d, "client-ca-db")
    os.makedirs(cadir)
    open(os.path.join(cadir, "index.txt"), "w").close()
    with open(os.path.join(cadir, "crlnumber"), "w") as f:
        f.write("1000\n")
    cnf = os.path.join(cadir, "openssl.cnf")
    with open(cnf, "w") as f:
        f.write("[ca]\ndefault_ca = ca_default\n[ca_default]\ndir = %s\n"
                "database = $dir/index.txt\nnew_certs_dir = $dir\ncertificate = %s\n"
                "private_key = %s\ncrlnumber = $dir/crlnumber\ndefault_md = sha256\n"
                "default_crl_days = 30\ncrl_extensions = crl_ext\npolicy = policy_any\n"
                "[policy_any]\ncommonName = supplied\n"
                "[crl_ext]\nauthorityKeyIdentifier = keyid:always\n" % (cadir, cca, cca_key))
    _ok(run(["openssl", "ca", "-config", cnf, "-batch", "-revoke", out["revoked_cert"],
             "-crl_reason", "keyCompromise"]), "openssl ca -revoke")
    crl = os.path.join(d, "client-crl.pem")
    _ok(run(["openssl", "ca", "-config", cnf, "-batch", "-gencrl", "-out", crl]),
        "openssl ca -gencrl")
    out["client_crl"] = crl
    # Sanity: the CRL does revoke that client, and the others verify.
    r = run(["openssl", "verify", "-crl_check", "-CAfile", cca, "-CRLfile", crl,
             out["revoked_cert"]])
    assert r.returncode != 0, "the client CRL does not revoke the revoked client"
    r = run(["openssl", "verify", "-crl_check", "-CAfile", cca, "-CRLfile", crl,
             out["listed_cert"]])
    _ok(r, "openssl verify of the listed client")
    return out


def api_section(tls, port, allow=ALLOW, extra="", crl=True):
    """The [api] section for a listener on 127.0.0.1:port."""
    text = ("\n[api]\nlisten = 127.0.0.1:%d\ncert = %s\nkey = %s\nclient_ca = %s\n"
            "allow = %s\n" % (port, tls["server_cert"], tls["server_key"], tls["client_ca"],
                              allow))
    if crl:
        text += "client_crl = %s\n" % tls["client_crl"]
    return text + extra


def wait_port(port, timeout=5.0):
    """Polls until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError("nothing listens on 127.0.0.1:%d after %.0fs"
                                     % (port, timeout))
            time.sleep(0.02)


class ApiAnswer:
    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers
        self.raw = raw
        try:
            self.json = json.loads(raw.decode()) if raw else None
        except (ValueError, UnicodeDecodeError):
            self.json = None

    def __repr__(self):
        return "HTTP %d %r" % (self.status, self.raw[:300])


def tls_context(tls, client=None, max_version=None):
    """A client context trusting the API server's root, presenting client (a CLIENTS
    name) when given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(tls["server_root"])
    ctx.check_hostname = True
    if client is not None:
        ctx.load_cert_chain(tls[client + "_cert"], tls[client + "_key"])
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


class ApiClient:
    """HTTPS requests to the API, one connection each."""

    def __init__(self, tls, port, client="listed", max_version=None):
        self.port = port
        self.ctx = tls_context(tls, client, max_version)

    def request(self, method, path, body=None, headers=None, timeout=15):
        """body: a dict (sent as JSON), bytes or str (sent as they are), or None."""
        if isinstance(body, dict):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        hdrs = {"Accept": "application/json"}
        if body is not None:
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx,
                                           timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            raw = r.read()
            return ApiAnswer(r.status, {k.lower(): v for k, v in r.getheaders()}, raw)
        finally:
            conn.close()

    def revoke(self, issuer, serial, reason, **more):
        body = dict(issuer=issuer, serial=serial, reason=reason)
        body.update(more)
        return self.request("POST", "/v1/revoke", body)

    def unhold(self, issuer, serial):
        return self.request("POST", "/v1/unhold", dict(issuer=issuer, serial=serial))

    def status(self, issuer, serial):
        return self.request("GET", "/v1/status?issuer=%s&serial=%s" % (issuer, serial))


def raw_tls_exchange(ctx, port, data, timeout=10.0):
    """Sends data on a TLS connection and reads until the server closes or a whole
    response (by Content-Length) is in. Returns (bytes read, what ended it)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    got = b""
    end = "eof"
    try:
        s = ctx.wrap_socket(sock, server_hostname="127.0.0.1")
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError) as e:
            end = "send: %r" % e
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, ssl.SSLError, OSError) as e:
                end = "recv: %r" % e
                break
            if not chunk:
                break
            got += chunk
            if b"\r\n\r\n" in got:
                head, rest = got.split(b"\r\n\r\n", 1)
                m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if m and len(rest) >= int(m.group(1)):
                    end = "complete"
                    break
        else:
            end = "timeout"
        s.close()
    finally:
        sock.close()
    return got, end


def tls_refused(ctx, port, request, timeout=10.0):
    """One attempt with a client the server must refuse. Returns (refused, detail):
    refused is False when any HTTP answer came back (or the server neither answered nor
    closed within timeout)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            s = ctx.wrap_socket(sock, server_hostname="127.0.0.1")
        except ssl.SSLCertVerificationError as e:
            # The client refused the server: says nothing about the server's checks.
            raise AssertionError("the API server's certificate did not verify: %r" % e)
        except (ssl.SSLError, ConnectionError) as e:
            return True, "handshake failed: %r" % e
        got = b""
        try:
            s.sendall(request)
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
        except socket.timeout:
            return False, "the server neither answered nor closed within %.0fs (read %r)" % (
                timeout, got[:200])
        except (ssl.SSLError, ConnectionError) as e:
            if got:
                return False, "HTTP bytes came back before %r: %r" % (e, got[:300])
            return True, "first read failed: %r" % e
        finally:
            try:
                s.close()
            except OSError:
                pass
        if got:
            return False, "an answer came back: %r" % got[:300]
        return True, "closed without a byte"
    finally:
        sock.close()


def http_bytes(method, path, body=b"", content_type="application/json", close=True):
    """One HTTP/1.1 request as bytes, with Connection: close unless close is False."""
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: 127.0.0.1"]
    if close:
        lines.append("Connection: close")
    if body or method == "POST":
        lines += ["Content-Type: " + content_type, "Content-Length: %d" % len(body)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

"""GET requests (RFC 6960 appendix A.1) with curl and raw sockets: the body equals the
POST answer, percent-escaping, the path prefix, '//' kept as data, HEAD, and the HTTP
caching headers (RFC 5019 / RFC 9919 section 6): Cache-Control, Expires, Last-Modified,
ETag and If-None-Match."""

import hashlib
import os
import re
import shutil
import time
import unittest

from revd_harness import (OcspResp, RawConn, RevdTestCase, b64_path, http_request, http_time,
                          main, main_pki, ocsp_post, ocsp_request, openssl_time, run,
                          simple_request)

CURL = shutil.which("curl")
if not CURL:
    raise SystemExit("curl is missing: run scripts/install-deps.sh --test")
CC_RE = re.compile(r"^max-age=(\d+), public, no-transform, must-revalidate$")


def escape_all(b64):
    return b64.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")


def find_nonce(serial_der_fn, want, limit=20000):
    """A nonce that makes base64(request) contain every string in want (bounded search)."""
    for i in range(limit):
        nonce = hashlib.sha256(b"revd-itest-%d" % i).digest()[:16 + i % 5]
        der = serial_der_fn(nonce)
        b64 = b64_path(der)
        if all(w in b64 for w in want):
            return der
    raise AssertionError("no nonce in %d tries gives %r" % (limit, want))


class HttpGetCacheTest(RevdTestCase):

    @classmethod
    def setUpClass(cls):
        cls.pki = main_pki()

    def curl(self, url, *args):
        hdr = os.path.join(self.tmp, "curl.hdr")
        body = os.path.join(self.tmp, "curl.body")
        for f in (hdr, body):
            if os.path.exists(f):
                os.unlink(f)
        r = run([CURL, "-sS", "--max-time", "10", "--path-as-is", "-D", hdr, "-o", body] +
                list(args) + [url])
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        with open(hdr, "rb") as f:
            lines = f.read().decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for l in lines[1:]:
            if ":" in l:
                k, v = l.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        if not os.path.exists(body):  # curl makes no file for an empty body
            return status, headers, b""
        with open(body, "rb") as f:
            return status, headers, f.read()

    def openssl_request(self, serial, extra=()):
        """A request made by `openssl ocsp -reqout`, without a nonce."""
        path = os.path.join(self.tmp, "req.der")
        r = run(["openssl", "ocsp", "-issuer", self.pki.issuing, "-no_nonce"] + list(extra) +
                ["-serial", "0x" + serial, "-reqout", path])
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        with open(path, "rb") as f:
            return f.read()

    def resp_text(self, body):
        path = os.path.join(self.tmp, "resp.der")
        with open(path, "wb") as f:
            f.write(body)
        r = run(["openssl", "ocsp", "-respin", path, "-resp_text", "-noverify"])
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        return r.stdout.decode()

    def test_get_equals_post(self):
        r = self.start_for_pki(self.pki)
        for leaf in (self.pki.leaf("good"), self.pki.leaf_by_reason("keyCompromise", True),
                     self.pki.leaf("expired")):
            for extra in ([], ["-sha256"]):
                with self.subTest(leaf=leaf["name"], extra=extra):
                    der = self.openssl_request(leaf["serial"], extra)
                    st, h, post_body = ocsp_post(r.port, der)
                    self.assertEqual(st, 200)
                    self.assertEqual(OcspResp(post_body).status, 0)
                    st, gh, get_body = self.curl(r.url("/" + b64_path(der)))
                    self.assertEqual(st, 200)
                    self.assertEqual(get_body, post_body)
                    self.assertEqual(gh["content-type"], "application/ocsp-response")
                    st, gh, get_body2 = self.curl(r.url("/" + escape_all(b64_path(der))))
                    self.assertEqual(st, 200)
                    self.assertEqual(get_body2, post_body)

    def test_get_special_characters(self):
        r = self.start_for_pki(self.pki)
        leaf = self.pki.leaf_by_reason("superseded")
        der = find_nonce(lambda n: ocsp_request(self.pki.issuing, leaf["serial"], nonce=n),
                         ["+", "/", "="])
        b64 = b64_path(der)
        st, h, post_body = ocsp_post(r.port, der)
        self.assertEqual(OcspResp(post_body).singles[0]["status"], "revoked")
        variants = {
            "raw": b64,
            "all escaped": escape_all(b64),
            "plus escaped": b64.replace("+", "%2B"),
            "slash escaped": b64.replace("/", "%2F"),
            "pad escaped": b64.replace("=", "%3D"),
            "lower-case escapes": escape_all(b64).replace("%2B", "%2b").replace("%2F", "%2f"),
        }
        for name, path in variants.items():
            with self.subTest(variant=name):
                st, h, body = self.curl(r.url("/" + path))
                self.assertEqual(st, 200)
                self.assertEqual(body, post_body)

    def test_double_slash_is_data(self):
        r = self.start_for_pki(self.pki)
        # A good serial, with a nonce chosen so that the base64 holds "//".
        leaf = self.pki.leaf("good", 1)
        der = find_nonce(lambda n: ocsp_request(self.pki.issuing, leaf["serial"], nonce=n),
                         ["//"])
        b64 = b64_path(der)
        self.assertIn("//", b64)
        st, h, body = self.curl(r.url("/" + b64))
        self.assertEqual(st, 200)
        resp = OcspResp(body)
        self.assertEqual(resp.status, 0, body)
        self.assertEqual(int(resp.singles[0]["serial"], 16), int(leaf["serial"], 16))
        self.assertEqual(resp.singles[0]["status"], "good")
        self.assertEqual(body, ocsp_post(r.port, der)[2])
        # Merging the slashes would change the request: then it is no longer valid.
        st, h, merged = self.curl(r.url("/" + b64.replace("//", "/")))
        self.assertEqual(merged, bytes.fromhex("3003 0a01 01".replace(" ", "")))

        # And by serial: search unissued serials until the request's base64 has "//".
        for i in range(1, 200000):
            serial = "%X" % (0x7E000000 + i * 7919)
            der = ocsp_request(self.pki.issuing, serial)
            if "//" in b64_path(der):
                break
        else:
            self.fail("no serial gave '//'")
        st, h, body = self.curl(r.url("/" + b64_path(der)))
        resp = OcspResp(body)
        self.assertEqual(resp.status, 0)
        self.assertEqual(int(resp.singles[0]["serial"], 16), int(serial, 16))
        self.assertEqual(resp.singles[0]["status"], "unknown")

    def test_path_prefix(self):
        r = self.start_for_pki(self.pki, extra=["--path", "/ocsp"])
        der = self.openssl_request(self.pki.leaf("good")["serial"])
        b64 = b64_path(der)
        st, h, body = self.curl(r.url("/ocsp/" + b64))
        self.assertEqual(st, 200)
        self.assertEqual(OcspResp(body).singles[0]["status"], "good")
        self.assertEqual(body, ocsp_post(r.port, der, path="/ocsp")[2])
        for bad in ("/other/" + b64, "/" + b64, "/ocspx/" + b64, "/ocsp" + b64):
            with self.subTest(path=bad[:12]):
                st, h, body = self.curl(r.url(bad))
                self.assertEqual(st, 404, body)
        # openssl ocsp with the path in its URL (POST) works too.
        out, err = self.openssl_ocsp(r, self.pki, serials=[self.pki.leaf("revoked")["serial"]],
                                     path="/ocsp", extra=["-no_nonce"])
        self.assertIn(": revoked", out)
        self.assert_verified(err)

    def check_cache_headers(self, h, body, validity=None):
        self.assertEqual(h["content-type"], "application/ocsp-response")
        self.assertEqual(int(h["content-length"]), len(body))
        text = self.resp_text(body)
        next_update = openssl_time(re.search(r"Next Update: (.*)", text).group(1))
        this_update = openssl_time(re.search(r"This Update: (.*)", text).group(1))
        produced = openssl_time(re.search(r"Produced At: (.*)", text).group(1))
        now = time.time()
        m = CC_RE.match(h["cache-control"])
        self.assertIsNotNone(m, "Cache-Control: %r" % h["cache-control"])
        max_age = int(m.group(1))
        self.assertLessEqual(max_age, next_update - now + 1.5)
        self.assertGreater(max_age, 0)
        self.assertEqual(http_time(h["expires"]), next_update)
        self.assertIn("last-modified", h)
        lm = http_time(h["last-modified"])
        self.assertLessEqual(lm, now + 1)
        self.assertIn(lm, (produced, this_update))
        self.assertRegex(h["etag"], r'^"[!#-~]+"$')  # strong: no W/ prefix
        if validity is not None:
            self.assertEqual(next_update - this_update, validity)
        return max_age

    def test_cache_headers(self):
        r = self.start_for_pki(self.pki)
        der = self.openssl_request(self.pki.leaf("good")["serial"])
        st, h, body = self.curl(r.url("/" + b64_path(der)))
        self.assertEqual(st, 200)
        self.check_cache_headers(h, body, validity=86400)
        # The POST answer carries the same caching headers.
        st, ph, pbody = ocsp_post(r.port, der)
        self.check_cache_headers(ph, pbody)
        self.assertEqual(ph["etag"], h["etag"])

    def test_max_age_and_validity_config(self):
        a = self.pki_args(self.pki)
        config = ("[ocsp]\nvalidity = 9h\nmax_age = 600\n[issuer main]\nca = %s\nsigner_cert = %s\n"
                  "signer_key = %s\nindex = %s\n" % (a[3], a[5], a[7], a[1]))
        r = self.start_revd(config=config,
                            probe=ocsp_request(self.pki.issuing, self.pki.leaf("good")["serial"]))
        der = self.openssl_request(self.pki.leaf("good")["serial"])
        st, h, body = self.curl(r.url("/" + b64_path(der)))
        self.assertEqual(st, 200)
        max_age = self.check_cache_headers(h, body, validity=9 * 3600)
        self.assertLessEqual(max_age, 600)
        self.assertGreaterEqual(max_age, 590)

    def test_head(self):
        r = self.start_for_pki(self.pki)
        der = self.openssl_request(self.pki.leaf("good")["serial"])
        path = "/" + b64_path(der)
        c = RawConn(r.port)
        try:
            c.send(simple_request("GET", path))
            st, gh, gbody = c.read_response()
            self.assertEqual(st, 200)
            c.send(simple_request("HEAD", path))
            st, hh, hbody = c.read_response(head=True)
            self.assertEqual(st, 200)
            self.assertEqual(hbody, b"")
            for k in ("content-type", "content-length", "etag", "last-modified", "expires"):
                self.assertEqual(hh.get(k), gh.get(k), k)
            self.assertRegex(hh["cache-control"][0], CC_RE)
            # No body followed the HEAD headers: the next answer starts right away.
            c.send(simple_request("GET", path))
            st, gh2, gbody2 = c.read_response()
            self.assertEqual(st, 200)
            self.assertEqual(gbody2, gbody)
        finally:
            c.close()
        # curl agrees (-I writes the headers where the body would go).
        st, h, _ = self.curl(r.url(path), "-I")
        self.assertEqual(st, 200)
        self.assertEqual(int(h["content-length"]), len(gbody))

    def test_if_none_match(self):
        r = self.start_for_pki(self.pki)
        der = self.openssl_request(self.pki.leaf("revoked")["serial"])
        path = "/" + b64_path(der)
        st, h, body = http_request(r.port, "GET", path)
        self.assertEqual(st, 200)
        etag = h["etag"]
        c = RawConn(r.port)
        try:
            for inm, want in ((etag, 304), ("W/" + etag, 304), ("*", 304),
                              ('"0123", ' + etag, 304), ('"0123456789abcdef"', 200),
                              (etag[:-2] + '"', 200), ("W/" + etag[:-2] + 'x"', 200)):
                with self.subTest(inm=inm):
                    c.send(simple_request("GET", path, headers=[("If-None-Match", inm)]))
                    st, hh, b = c.read_response()
                    self.assertEqual(st, want)
                    if want == 304:
                        self.assertEqual(b, b"")
                        self.assertEqual(hh["etag"], [etag])
                        self.assertIn("cache-control", hh)
                    else:
                        self.assertEqual(b, body)
            # After a 304, the connection carries on with a clean next answer.
            c.send(simple_request("GET", path))
            st, hh, b = c.read_response()
            self.assertEqual((st, b), (200, body))
            self.assertEqual(c.buf, b"")
        finally:
            c.close()
        # The same through a fresh client.
        st, h2, b2 = self.curl(r.url(path), "-H", "If-None-Match: " + etag)
        self.assertEqual(st, 304)
        self.assertEqual(b2, b"")

    def test_post_if_none_match(self):
        # RFC 9110 13.1.2: a matching If-None-Match on a method other than GET or HEAD
        # is answered 412, never 304 (a POST has nothing cached to revalidate).
        r = self.start_for_pki(self.pki)
        der = self.openssl_request(self.pki.leaf("good")["serial"])
        st, h, body = ocsp_post(r.port, der)
        self.assertEqual(st, 200)
        st, h2, body2 = ocsp_post(r.port, der, headers={"If-None-Match": h["etag"]})
        self.assertNotEqual(st, 304, "POST with a matching If-None-Match answered 304")
        self.assertIn(st, (200, 412))


if __name__ == "__main__":
    main()

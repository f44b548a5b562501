"""OCSP-level bad input: bytes that are not a DER OCSPRequest are answered with the
unsigned malformedRequest response (30 03 0a 01 01), never cached; nonce lengths
(RFC 9654: 1..128 octets); the CertID ceiling (max_certids); extensions."""

import os
import random

from revd_harness import (MALFORMED, UNAUTHORIZED, OcspResp, RevdTestCase, b64_path, certid,
                          ctx, der_int, der_null, der_oid, http_request, main, main_pki,
                          nonce_ext, ocsp_post, ocsp_request, octets, run, seq, tlv)


def to_indefinite(der):
    """Re-encodes the outer SEQUENCEs of a DER request with BER indefinite lengths."""
    def rec(buf, depth):
        out, pos = b"", 0
        while pos < len(buf):
            tag = buf[pos]
            n = buf[pos + 1]
            hdr = 2
            if n & 0x80:
                k = n & 0x7F
                n = int.from_bytes(buf[pos + 2:pos + 2 + k], "big")
                hdr += k
            content = buf[pos + hdr:pos + hdr + n]
            if tag & 0x20 and depth < 3:
                out += bytes([tag, 0x80]) + rec(content, depth + 1) + b"\x00\x00"
            else:
                out += buf[pos:pos + hdr + n]
            pos += hdr + n
        return out
    return rec(der, 0)


class BadRequestTest(RevdTestCase):

    @classmethod
    def setUpClass(cls):
        cls.pki = main_pki()
        cls.good = cls.pki.leaf("good")
        cls.req = ocsp_request(cls.pki.issuing, cls.good["serial"])

    def post(self, r, der):
        return ocsp_post(r.port, der)

    def assert_malformed(self, r, der, how="POST"):
        if how == "POST":
            st, h, body = self.post(r, der)
        else:
            st, h, body = http_request(r.port, "GET", "/" + der)
        self.assert_malformed_response(st, h, body)

    def test_builder_matches_openssl(self):
        # The hand-made requests below are only meaningful if the builder is right.
        path = os.path.join(self.tmp, "req.der")
        for extra, hash_name in (([], "sha1"), (["-sha256"], "sha256")):
            rr = run(["openssl", "ocsp", "-issuer", self.pki.issuing, "-no_nonce"] + extra +
                     ["-serial", "0x" + self.good["serial"], "-reqout", path])
            self.assertEqual(rr.returncode, 0, rr.stderr)
            with open(path, "rb") as f:
                self.assertEqual(f.read(), ocsp_request(self.pki.issuing, self.good["serial"],
                                                        hash_name))

    def test_malformed_bodies(self):
        r = self.start_for_pki(self.pki, probe=self.req)
        rng = random.Random(6960)
        cases = {
            "empty": b"",
            "truncated by one byte": self.req[:-1],
            "trailing garbage": self.req + b"\x00",
            "trailing second request": self.req + self.req,
            "BER indefinite length": to_indefinite(self.req),
            "long-form length for a short value": b"\x30\x81" + bytes([len(self.req) - 2]) +
                                                  self.req[2:],
            "wrong outer tag": b"\x31" + self.req[1:],
            "length beyond the body": b"\x30\x82\x01\x00" + self.req[2:],
            "empty request list": seq(seq(seq())),
            "CertID with extra field": seq(seq(seq(seq(certid(self.pki.issuing, "01"),
                                                       der_null())))),
            "a response, not a request": MALFORMED,
        }
        for i in range(8):
            cases["random %d" % i] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
        cases["random with SEQUENCE header"] = b"\x30\x50" + bytes(rng.randrange(256) for _ in range(80))
        self.assertNotEqual(cases["BER indefinite length"], self.req)
        self.assertEqual(cases["BER indefinite length"][:2], b"\x30\x80")
        for name, der in cases.items():
            with self.subTest(case=name):
                self.assert_malformed(r, der)
        # The real request still works, and a malformed one did not poison its cache.
        st, h, body = self.post(r, self.req)
        self.assertEqual(OcspResp(body).singles[0]["status"], "good")

    def test_malformed_get(self):
        r = self.start_for_pki(self.pki, probe=self.req)
        b64 = b64_path(self.req)
        for name, path in {
            "not base64": "!!!!",
            "garbage": "hello-world%00",
            "bad escape": "MEIw%ZZ",
            "truncated escape": b64[:-2] + "%3",
            "base64 of zeros": "AAAAAAAA",
            "data after padding": b64 + "=A",
            "one symbol too many": b64.rstrip("=") + "A",
            "base64 of a truncated request": b64_path(self.req[:-1]),
            "query string": "?" + b64,
        }.items():
            with self.subTest(case=name):
                st, h, body = http_request(r.port, "GET", "/" + path)
                if name == "query string" and st == 404:
                    continue  # also fine: not a GET path revd serves
                self.assert_malformed_response(st, h, body)

    def nonce_request(self, n):
        return ocsp_request(self.pki.issuing, self.good["serial"], nonce=os.urandom(n) if n else b"")

    def test_nonce_lengths(self):
        r = self.start_for_pki(self.pki, extra=["--nonce", "sign"], probe=self.req)
        for n in (1, 16, 32, 128):
            with self.subTest(nonce_len=n):
                nonce = bytes((i * 7 + n) % 256 for i in range(n))
                der = ocsp_request(self.pki.issuing, self.good["serial"], nonce=nonce)
                st, h, body = self.post(r, der)
                self.assertEqual(st, 200)
                resp = OcspResp(body)
                self.assertEqual(resp.status, 0)
                self.assertEqual(resp.nonce(), nonce)
                self.assertEqual(resp.singles[0]["status"], "good")
                # Live answers to a nonce are not for shared caches.
                self.assertNotIn("public", h.get("cache-control", ""))
                path = os.path.join(self.tmp, "n%d.der" % n)
                with open(path, "wb") as f:
                    f.write(body)
                rr = run(["openssl", "ocsp", "-respin", path, "-CAfile", self.pki.root,
                          "-verify_other", self.pki.chain])
                self.assertIn("Response verify OK", rr.stderr.decode())
        for n in (0, 129, 200):
            with self.subTest(nonce_len=n):
                self.assert_malformed(r, self.nonce_request(n))
        # A nonce with several CertIDs: one live answer holding all of them and the nonce.
        leaves = self.pki.leaves[:3] + [self.pki.leaf("revoked")]
        der = ocsp_request(self.pki.issuing, [l["serial"] for l in leaves], nonce=b"N" * 20)
        resp = OcspResp(self.post(r, der)[2])
        self.assertEqual(resp.nonce(), b"N" * 20)
        self.assertEqual([int(x["serial"], 16) for x in resp.singles],
                         [int(l["serial"], 16) for l in leaves])
        self.assertEqual(resp.singles[-1]["status"], "revoked")

    def test_nonce_encodings(self):
        r = self.start_for_pki(self.pki, extra=["--nonce", "sign"], probe=self.req)
        two_nonces = seq(seq(seq(seq(certid(self.pki.issuing, self.good["serial"]))),
                             ctx(2, seq(nonce_ext(b"a" * 16), nonce_ext(b"b" * 16)))))
        self.assert_malformed(r, two_nonces)
        # extnValue holding a nonce octet string with trailing bytes.
        bad = seq(der_oid("1.3.6.1.5.5.7.48.1.2"), octets(octets(b"x" * 16) + b"\x00"))
        self.assert_malformed(r, ocsp_request(self.pki.issuing, self.good["serial"],
                                              raw_exts=[bad]))

    def test_extensions(self):
        r = self.start_for_pki(self.pki, probe=self.req)
        unknown_oid = der_oid("1.3.6.1.4.1.99999.1")
        noncritical = seq(unknown_oid, octets(b"\x05\x00"))
        critical = seq(unknown_oid, tlv(0x01, b"\xff"), octets(b"\x05\x00"))
        explicit_false = seq(unknown_oid, tlv(0x01, b"\x00"), octets(b"\x05\x00"))
        st, h, body = self.post(r, ocsp_request(self.pki.issuing, self.good["serial"],
                                                raw_exts=[noncritical]))
        self.assertEqual(OcspResp(body).singles[0]["status"], "good")
        # A critical extension revd does not understand is refused (not silently ignored).
        st, h, body = self.post(r, ocsp_request(self.pki.issuing, self.good["serial"],
                                                raw_exts=[critical]))
        self.assertEqual(st, 200)
        self.assertNotEqual(body[:5], b"\x30\x82", "a critical unknown extension was ignored")
        self.assertEqual(OcspResp(body).status, 1)
        # DER: critical FALSE is the DEFAULT and must be omitted.
        self.assert_malformed(r, ocsp_request(self.pki.issuing, self.good["serial"],
                                              raw_exts=[explicit_false]))
        # A signed request (optionalSignature) is accepted without checking it.
        alg = seq(der_oid("1.2.840.10045.4.3.2"))
        signed = seq(seq(seq(seq(certid(self.pki.issuing, self.good["serial"])))),
                     ctx(0, seq(alg, tlv(0x03, b"\x00" + b"\x01" * 8))))
        st, h, body = self.post(r, signed)
        self.assertEqual(OcspResp(body).singles[0]["status"], "good")

    def test_unknown_hash_algorithm(self):
        r = self.start_for_pki(self.pki, probe=self.req)
        md5 = seq(der_oid("1.2.840.113549.2.5"), der_null())
        cid = seq(md5, octets(b"\x01" * 16), octets(b"\x02" * 16), der_int(1))
        st, h, body = self.post(r, seq(seq(seq(seq(cid)))))
        self.assertEqual(st, 200)
        self.assertIn(body, (UNAUTHORIZED, MALFORMED))

    def test_max_certids(self):
        p = self.pki
        a = self.pki_args(p)
        config = ("[ocsp]\nmax_certids = 5\n[issuer main]\nca = %s\nsigner_cert = %s\n"
                  "signer_key = %s\nindex = %s\n" % (a[3], a[5], a[7], a[1]))
        r = self.start_revd(config=config, probe=self.req)
        serials = [l["serial"] for l in p.leaves]
        st, h, body = self.post(r, ocsp_request(p.issuing, serials[:5]))
        resp = OcspResp(body)
        self.assertEqual(resp.status, 0)
        self.assertEqual(len(resp.singles), 5)
        self.assert_malformed(r, ocsp_request(p.issuing, serials[:6]))
        # The default ceiling is 20.
        r2 = self.start_for_pki(p, probe=self.req, name="default")
        st, h, body = ocsp_post(r2.port, ocsp_request(p.issuing, serials[:20]))
        self.assertEqual(len(OcspResp(body).singles), 20)
        st, h, body = ocsp_post(r2.port, ocsp_request(p.issuing, serials[:21]))
        self.assert_malformed_response(st, h, body)


if __name__ == "__main__":
    main()

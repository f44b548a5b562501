"""revd against GnuTLS's ocsptool (package gnutls-bin): --ask, and a request made with
--generate-request, sent with curl, and checked with --response-info and
--verify-response."""

import calendar
import os
import re
import shutil
import time
import unittest

from revd_harness import (OcspResp, RevdTestCase, asn1_time, b64_path, main, main_pki,
                          read_index, run)

OCSPTOOL = shutil.which("ocsptool")
CURL = shutil.which("curl")
if not (OCSPTOOL and CURL):
    raise SystemExit("ocsptool or curl is missing: run scripts/install-deps.sh --test")


def gnutls_time(s):
    """'Mon Nov 23 15:07:41 UTC 2026' -> unix seconds."""
    return calendar.timegm(time.strptime(" ".join(s.split()), "%a %b %d %H:%M:%S UTC %Y"))


def field(out, name):
    m = re.search(r"^\s*%s: (.*?)\s*$" % re.escape(name), out, re.M)
    return m.group(1) if m else None


class OcsptoolTest(RevdTestCase):

    @classmethod
    def setUpClass(cls):
        cls.pki = main_pki()
        cls.index = read_index(cls.pki.index)

    def ocsptool(self, *args, expect_rc=0):
        r = run([OCSPTOOL] + list(args))
        out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
        if expect_rc is not None:
            self.assertEqual(r.returncode, expect_rc, "ocsptool %s:\n%s" % (" ".join(args), out))
        return r.returncode, out

    def ask(self, revd, leaf, *extra, expect_rc=0):
        resp = os.path.join(self.tmp, "ask-%s.der" % leaf["name"])
        rc, out = self.ocsptool("--ask=" + revd.url("/"), "--load-issuer", self.pki.issuing,
                                "--load-cert", leaf["cert"], "--load-signer", self.pki.ocsp_cert,
                                "--outfile", resp, *extra, expect_rc=expect_rc)
        return out, resp

    def test_ask_good_revoked_expired(self):
        r = self.start_for_pki(self.pki)
        good = self.pki.leaf("good")
        out, resp = self.ask(r, good)
        self.assertEqual(field(out, "Certificate Status"), "good", out)
        self.assertIn("Verifying OCSP Response: Success.", out)
        with open(resp, "rb") as f:
            self.assertEqual(OcspResp(f.read()).singles[0]["status"], "good")

        for leaf in (self.pki.leaf_by_reason("keyCompromise"), self.pki.leaf("revoked"),
                     self.pki.leaf_by_reason("certificateHold")):
            with self.subTest(leaf=leaf["name"]):
                out, _ = self.ask(r, leaf)
                self.assertEqual(field(out, "Certificate Status"), "revoked", out)
                self.assertIn("Verifying OCSP Response: Success.", out)
                row = self.index[leaf["serial"]]
                self.assertEqual(gnutls_time(field(out, "Revocation time")),
                                 asn1_time(row["revtime"]), out)

        out, _ = self.ask(r, self.pki.leaf("expired"))
        self.assertEqual(field(out, "Certificate Status"), "good", out)
        self.assertIn("Verifying OCSP Response: Success.", out)

    def test_ask_with_nonce(self):
        # nonce=ignore serves the pre-signed answer: GnuTLS, asked for a nonce, complains.
        r = self.start_for_pki(self.pki)
        rc, out = self.ocsptool("--ask=" + r.url("/"), "--nonce", "--load-issuer",
                                self.pki.issuing, "--load-cert", self.pki.leaf("good")["cert"],
                                "--load-signer", self.pki.ocsp_cert, expect_rc=None)
        self.assertIn("nonce", out.lower())
        self.assertNotIn("Verifying OCSP Response: Success.", out)
        # nonce=sign echoes it, and GnuTLS is satisfied.
        r2 = self.start_for_pki(self.pki, extra=["--nonce", "sign"], name="nonce-sign")
        leaf = self.pki.leaf_by_reason("superseded")
        out, resp = self.ask(r2, leaf, "--nonce")
        self.assertEqual(field(out, "Certificate Status"), "revoked", out)
        nonce = field(out, "Nonce")
        self.assertIsNotNone(nonce, out)
        self.assertRegex(nonce, r"^[0-9a-f]{16,}$")
        self.assertIn("Verifying OCSP Response: Success.", out)
        with open(resp, "rb") as f:
            self.assertEqual(OcspResp(f.read()).nonce().hex(), nonce)

    def generate_request(self, leaf):
        req = os.path.join(self.tmp, "req-%s.der" % leaf["name"])
        self.ocsptool("--generate-request", "--load-issuer", self.pki.issuing, "--load-cert",
                      leaf["cert"], "--outfile", req)
        rc, info = self.ocsptool("--request-info", "--load-request", req)
        self.assertEqual(int(field(info, "Serial Number"), 16), int(leaf["serial"], 16), info)
        return req

    def curl(self, *args):
        r = run([CURL, "-sS", "--max-time", "10", "--path-as-is", "-o",
                 os.path.join(self.tmp, "curl.out"), "-w", "%{http_code}"] + list(args))
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        with open(os.path.join(self.tmp, "curl.out"), "rb") as f:
            return int(r.stdout.decode()), f.read()

    def check_response_file(self, resp, leaf, want):
        rc, info = self.ocsptool("--response-info", "--load-response", resp)
        self.assertEqual(field(info, "Response Status"), "Successful", info)
        self.assertEqual(field(info, "Certificate Status"), want, info)
        self.assertEqual(int(field(info, "Serial Number"), 16), int(leaf["serial"], 16))
        rc, out = self.ocsptool("--verify-response", "--load-response", resp,
                                "--load-signer", self.pki.ocsp_cert)
        self.assertIn("Verifying OCSP Response: Success.", out)
        # Trust anchors instead of the signer: the signer chains to the issuing CA.
        trust = os.path.join(self.tmp, "trust.pem")
        with open(trust, "w") as f:
            for pem in (self.pki.root, self.pki.issuing):
                with open(pem) as src:
                    f.write(src.read())
        rc, out = self.ocsptool("--verify-response", "--load-response", resp,
                                "--load-trust", trust)
        self.assertIn("Verifying OCSP Response: Success.", out)
        # The root alone does not make the delegated signer trusted...
        rc, out = self.ocsptool("--verify-response", "--load-response", resp,
                                "--load-trust", self.pki.root, expect_rc=None)
        self.assertNotEqual(rc, 0, out)
        # ...and a signer that did not sign it fails.
        rc, out = self.ocsptool("--verify-response", "--load-response", resp,
                                "--load-signer", self.pki.leaf("good", 1)["cert"], expect_rc=None)
        self.assertNotEqual(rc, 0, out)
        self.assertNotIn("Verifying OCSP Response: Success.", out)

    def test_generate_request_post_with_curl(self):
        r = self.start_for_pki(self.pki)
        for leaf, want in ((self.pki.leaf("good", 2), "good"),
                           (self.pki.leaf_by_reason("cACompromise"), "revoked")):
            with self.subTest(leaf=leaf["name"]):
                req = self.generate_request(leaf)
                code, body = self.curl("-H", "Content-Type: application/ocsp-request",
                                       "--data-binary", "@" + req, r.url("/"))
                self.assertEqual(code, 200)
                resp = os.path.join(self.tmp, "resp-%s.der" % leaf["name"])
                with open(resp, "wb") as f:
                    f.write(body)
                self.check_response_file(resp, leaf, want)

    def test_generate_request_get_with_curl(self):
        r = self.start_for_pki(self.pki)
        leaf = self.pki.leaf_by_reason("affiliationChanged")
        req = self.generate_request(leaf)
        with open(req, "rb") as f:
            der = f.read()
        code, body = self.curl(r.url("/" + b64_path(der)))
        self.assertEqual(code, 200)
        resp = os.path.join(self.tmp, "get.der")
        with open(resp, "wb") as f:
            f.write(body)
        self.check_response_file(resp, leaf, "revoked")


if __name__ == "__main__":
    main()

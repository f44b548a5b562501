"""revd against `openssl ocsp` (POST): every leaf's status, reason and time, CertID
hash algorithms, nonces, several serials in one request, and the not-issued and
unknown-issuer policies."""

import os
import time

from revd_harness import (INDEX_REASON_TO_OCSP, OID_EXT_REVOKE, OcspResp, RevdTestCase,
                          asn1_time, certid, main, main_pki, ocsp_post, ocsp_request,
                          openssl_time, parse_ocsp_status_output, read_index, run, seq)


class OpensslOcspTest(RevdTestCase):

    @classmethod
    def setUpClass(cls):
        cls.pki = main_pki()
        cls.index = read_index(cls.pki.index)

    def expected(self, leaf):
        """What revd must answer for a leaf, from index.txt (the manifest agrees)."""
        row = self.index[leaf["serial"]]
        if row["flag"] == "R":
            reason = INDEX_REASON_TO_OCSP[row["reason"]] if row["reason"] else None
            inval = row["reason"] in ("keyTime", "CAkeyTime")
            return dict(status="revoked", reason=reason, revoked_at=asn1_time(row["revtime"]),
                        invalidity=asn1_time(row["arg"]) if inval else None)
        return dict(status="good")

    def check_all_leaves(self, extra):
        r = self.start_for_pki(self.pki)
        serials = [l["serial"] for l in self.pki.leaves]
        # One openssl run per leaf (a single CertID: the pre-signed path).
        for leaf in self.pki.leaves:
            with self.subTest(leaf=leaf["name"], extra=extra):
                out, err = self.openssl_ocsp(r, self.pki, serials=[leaf["serial"]], extra=extra)
                self.assert_verified(err)
                got = parse_ocsp_status_output(out)
                key = "0x" + leaf["serial"]
                self.assertIn(key, got, out)
                g, want = got[key], self.expected(leaf)
                self.assertEqual(g["status"], want["status"], out)
                # The manifest says the same as the index.
                mstatus = {"good": "good", "expired": "good", "revoked": "revoked"}[leaf["status"]]
                self.assertEqual(g["status"], mstatus)
                if want["status"] == "revoked":
                    self.assertEqual(g["reason"], want["reason"], out)
                    if leaf["reason"] != "unspecified":
                        self.assertEqual(g["reason"], leaf["reason"])
                    else:
                        self.assertIn(g["reason"], (None, "unspecified"))
                    self.assertEqual(openssl_time(g["revocation_time"]), want["revoked_at"], out)
                else:
                    self.assertIsNone(g["reason"])
                    self.assertIsNone(g["revocation_time"])
                self.assertIsNotNone(g["next_update"], out)
                self.assertGreater(openssl_time(g["next_update"]), openssl_time(g["this_update"]))
                if "-resp_text" in extra:
                    if want.get("invalidity"):
                        shown = time.strftime("%b %e %H:%M:%S %Y GMT", time.gmtime(want["invalidity"]))
                        self.assertRegex(out, r"Invalidity Date: *\n *" + shown)
                    else:
                        self.assertNotIn("Invalidity Date", out)
        return r, serials

    def test_every_leaf_sha1(self):
        self.check_all_leaves(["-no_nonce", "-resp_text"])

    def test_every_leaf_sha256(self):
        r, _ = self.check_all_leaves(["-no_nonce", "-sha256"])
        # The CertID in the answer uses the request's algorithm.
        leaf = self.pki.leaf("good")
        out, err = self.openssl_ocsp(r, self.pki, serials=[leaf["serial"]],
                                     extra=["-no_nonce", "-sha256", "-resp_text"])
        self.assertIn("Hash Algorithm: sha256", out)
        self.assert_verified(err)

    def test_invalidity_date_in_resp_text(self):
        r = self.start_for_pki(self.pki)
        leaf = self.pki.leaf_by_reason("keyCompromise", invalidity=True)
        out, err = self.openssl_ocsp(r, self.pki, serials=[leaf["serial"]],
                                     extra=["-no_nonce", "-resp_text"])
        self.assert_verified(err)
        self.assertIn("Invalidity Date", out)
        self.assertIn("Jan  2 03:04:05 2024 GMT", out)
        self.assertIn("Revocation Reason: keyCompromise (0x1)", out)

    def test_nonce_ignored_by_default(self):
        r = self.start_for_pki(self.pki)
        leaf = self.pki.leaf("good")
        out, err = self.openssl_ocsp(r, self.pki, serials=[leaf["serial"]])  # with a nonce
        self.assertIn("WARNING: no nonce in response", err)
        self.assert_verified(err)
        self.assertEqual(parse_ocsp_status_output(out)["0x" + leaf["serial"]]["status"], "good")

    def test_nonce_sign_echoes(self):
        r = self.start_for_pki(self.pki, extra=["--nonce", "sign"])
        leaf = self.pki.leaf("revoked")
        bodies = []
        for i in range(2):
            resp = os.path.join(self.tmp, "resp%d.der" % i)
            out, err = self.openssl_ocsp(r, self.pki, serials=[leaf["serial"]],
                                         extra=["-respout", resp])
            self.assertNotIn("WARNING: no nonce in response", err)
            self.assertNotIn("nonce", err.lower())
            self.assert_verified(err)
            self.assertEqual(parse_ocsp_status_output(out)["0x" + leaf["serial"]]["status"],
                             "revoked")
            with open(resp, "rb") as f:
                bodies.append(f.read())
        self.assertNotEqual(bodies[0], bodies[1], "two nonce requests got the same bytes")
        n0, n1 = OcspResp(bodies[0]).nonce(), OcspResp(bodies[1]).nonce()
        self.assertIsNotNone(n0)
        self.assertNotEqual(n0, n1)
        # Without a nonce, the pre-signed answer has none.
        out, err = self.openssl_ocsp(r, self.pki, serials=[leaf["serial"]],
                                     extra=["-no_nonce", "-respout", os.path.join(self.tmp, "nn.der")])
        with open(os.path.join(self.tmp, "nn.der"), "rb") as f:
            self.assertIsNone(OcspResp(f.read()).nonce())

    def test_several_serials_one_response(self):
        r = self.start_for_pki(self.pki)
        picks = [self.pki.leaf("good"), self.pki.leaf("revoked"), self.pki.leaf("expired"),
                 self.pki.leaf_by_reason("certificateHold"), self.pki.leaf("good", 3)]
        serials = [l["serial"] for l in picks] + [self.pki.unissued]
        resp = os.path.join(self.tmp, "multi.der")
        for extra in (["-no_nonce"], ["-no_nonce", "-sha256"], []):
            with self.subTest(extra=extra):
                out, err = self.openssl_ocsp(r, self.pki, serials=serials,
                                             extra=extra + ["-respout", resp])
                self.assert_verified(err)
                got = parse_ocsp_status_output(out)
                for l in picks:
                    self.assertEqual(got["0x" + l["serial"]]["status"],
                                     self.expected(l)["status"], out)
                self.assertEqual(got["0x" + self.pki.unissued]["status"], "unknown")
                with open(resp, "rb") as f:
                    parsed = OcspResp(f.read())
                self.assertEqual(len(parsed.singles), len(serials))
                self.assertEqual([s["serial"].lstrip("0") for s in parsed.singles],
                                 [s.lstrip("0") for s in serials], "answers not in request order")

    def test_certs_by_file(self):
        r = self.start_for_pki(self.pki)
        picks = [self.pki.leaf("good"), self.pki.leaf_by_reason("superseded")]
        out, err = self.openssl_ocsp(r, self.pki, certs=[l["cert"] for l in picks],
                                     extra=["-no_nonce"])
        self.assert_verified(err)
        got = parse_ocsp_status_output(out)
        self.assertEqual(got[picks[0]["cert"]]["status"], "good")
        self.assertEqual(got[picks[1]["cert"]]["status"], "revoked")
        self.assertEqual(got[picks[1]["cert"]]["reason"], "superseded")

    def test_unissued_unknown_by_default(self):
        r = self.start_for_pki(self.pki)
        for extra in (["-no_nonce"], ["-no_nonce", "-sha256"]):
            out, err = self.openssl_ocsp(r, self.pki, serials=[self.pki.unissued], extra=extra)
            self.assert_verified(err)
            self.assertEqual(parse_ocsp_status_output(out)["0x" + self.pki.unissued]["status"],
                             "unknown")

    def test_unissued_unauthorized(self):
        r = self.start_for_pki(self.pki, extra=["--not-issued", "unauthorized"])
        out, err = self.openssl_ocsp(r, self.pki, serials=[self.pki.unissued],
                                     extra=["-no_nonce"], expect_rc=None)
        self.assertIn("Responder Error: unauthorized (6)", out + err)
        # Twice: the second time must not come from a cache of the first.
        out, err = self.openssl_ocsp(r, self.pki, serials=[self.pki.unissued],
                                     extra=["-no_nonce"], expect_rc=None)
        self.assertIn("Responder Error: unauthorized (6)", out + err)
        # Issued serials are still answered.
        leaf = self.pki.leaf("good")
        out, err = self.openssl_ocsp(r, self.pki, serials=[leaf["serial"]], extra=["-no_nonce"])
        self.assertEqual(parse_ocsp_status_output(out)["0x" + leaf["serial"]]["status"], "good")

    def test_unissued_revoked_extended(self):
        r = self.start_for_pki(self.pki, extra=["--not-issued", "revoked"])
        resp = os.path.join(self.tmp, "ext.der")
        out, err = self.openssl_ocsp(r, self.pki, serials=[self.pki.unissued],
                                     extra=["-no_nonce", "-resp_text", "-respout", resp])
        self.assert_verified(err)
        g = parse_ocsp_status_output(out)["0x" + self.pki.unissued]
        self.assertEqual(g["status"], "revoked")
        self.assertEqual(g["reason"], "certificateHold")
        self.assertEqual(openssl_time(g["revocation_time"]), 0)
        self.assertIn("Jan  1 00:00:00 1970 GMT", g["revocation_time"])
        # openssl names 1.3.6.1.5.5.7.48.1.9 "valid" (id-pkix-ocsp-valid).
        self.assertRegex(out, r"Response Extensions:\s*\n\s*(valid|1\.3\.6\.1\.5\.5\.7\.48\.1\.9|Extended)")
        with open(resp, "rb") as f:
            parsed = OcspResp(f.read())
        self.assertIn(OID_EXT_REVOKE, parsed.extensions)
        self.assertEqual(parsed.extensions[OID_EXT_REVOKE], b"\x05\x00")
        # An issued good serial's answer does not carry the extension.
        leaf = self.pki.leaf("good")
        out, err = self.openssl_ocsp(r, self.pki, serials=[leaf["serial"]],
                                     extra=["-no_nonce", "-respout", resp])
        with open(resp, "rb") as f:
            self.assertNotIn(OID_EXT_REVOKE, OcspResp(f.read()).extensions)

    def test_unconfigured_issuer_unauthorized(self):
        r = self.start_for_pki(self.pki)
        leaf = self.pki.leaf("good")
        # The root did not issue this leaf, and only the issuing CA is configured.
        out, err = self.openssl_ocsp(r, self.pki, serials=[leaf["serial"]], issuer=self.pki.root,
                                     extra=["-no_nonce"], expect_rc=None)
        self.assertIn("Responder Error: unauthorized (6)", out + err)
        # The same through raw POST: exactly the unsigned unauthorized answer.
        st, h, body = ocsp_post(r.port, ocsp_request(self.pki.root, leaf["serial"]))
        self.assertEqual(st, 200)
        self.assertEqual(body, bytes.fromhex("30030a0106"))
        # Mixed: one CertID ours, one not -> unauthorized for the whole request.
        mixed = seq(seq(seq(seq(certid(self.pki.issuing, leaf["serial"])),
                            seq(certid(self.pki.root, leaf["serial"])))))
        st, h, body = ocsp_post(r.port, mixed)
        self.assertEqual(body, bytes.fromhex("30030a0106"))
        # Ours alone is answered.
        st, h, body = ocsp_post(r.port, ocsp_request(self.pki.issuing, leaf["serial"]))
        self.assertEqual(OcspResp(body).status, 0)

    def test_expired_entry_answers_recorded_status(self):
        r = self.start_for_pki(self.pki)
        leaf = self.pki.leaf("expired")
        row = self.index[leaf["serial"]]
        self.assertEqual(row["flag"], "V")
        self.assertLess(asn1_time(row["expiry"]), asn1_time("20250101000000Z"))
        out, err = self.openssl_ocsp(r, self.pki, serials=[leaf["serial"]], extra=["-no_nonce"])
        self.assert_verified(err)
        self.assertEqual(parse_ocsp_status_output(out)["0x" + leaf["serial"]]["status"], "good")

    def test_resp_no_certs(self):
        r = self.start_for_pki(self.pki, extra=["-resp_no_certs"])
        leaf = self.pki.leaf("good")
        resp = os.path.join(self.tmp, "nocerts.der")
        # Without the signer in the response, openssl needs it given (-verify_other).
        out, err = self.openssl_ocsp(r, self.pki, serials=[leaf["serial"]],
                                     extra=["-no_nonce", "-respout", resp], expect_rc=None)
        with open(resp, "rb") as f:
            self.assertEqual(OcspResp(f.read()).n_certs, 0)
        rr = run(["openssl", "ocsp", "-respin", resp, "-CAfile", self.pki.root,
                  "-verify_other", self.pki.chain, "-VAfile", self.pki.ocsp_cert])
        self.assertIn("Response verify OK", rr.stderr.decode())
        # The default includes exactly the signer certificate.
        r2 = self.start_for_pki(self.pki, name="with-certs")
        st, h, body = ocsp_post(r2.port, ocsp_request(self.pki.issuing, leaf["serial"]))
        self.assertEqual(OcspResp(body).n_certs, 1)

    def test_sha384_sha512_certids(self):
        r = self.start_for_pki(self.pki)
        leaf = self.pki.leaf_by_reason("cessationOfOperation")
        for alg in ("-sha384", "-sha512"):
            with self.subTest(alg=alg):
                out, err = self.openssl_ocsp(r, self.pki, serials=[leaf["serial"]],
                                             extra=["-no_nonce", alg, "-resp_text"])
                self.assert_verified(err)
                self.assertIn("Hash Algorithm: " + alg[1:], out)
                g = parse_ocsp_status_output(out)["0x" + leaf["serial"]]
                self.assertEqual((g["status"], g["reason"]), ("revoked", "cessationOfOperation"))

    def test_rother_sends_the_chain(self):
        # With the intermediates in the response, a client needs only the root.
        leaf = self.pki.leaf("good")
        der = ocsp_request(self.pki.issuing, leaf["serial"])
        for name, extra, n_certs, verifies in (("rother", ["-rother", self.pki.chain],
                                                1 + self.pki.levels, True),
                                               ("plain", [], 1, False)):
            with self.subTest(name):
                r = self.start_for_pki(self.pki, extra=extra, name=name)
                st, h, body = ocsp_post(r.port, der)
                self.assertEqual(OcspResp(body).n_certs, n_certs)
                resp = os.path.join(self.tmp, name + ".der")
                with open(resp, "wb") as f:
                    f.write(body)
                # -respin without -issuer: only the response's own certificates help.
                rr = run(["openssl", "ocsp", "-respin", resp, "-CAfile", self.pki.root])
                self.assertEqual("Response verify OK" in rr.stderr.decode(), verifies,
                                 rr.stderr.decode())

    def test_validity_flags(self):
        leaf = self.pki.leaf("good")
        for flag, value, seconds in (("--ndays", "2", 2 * 86400), ("--nmin", "480", 8 * 3600),
                                     ("--ndays", "10", 10 * 86400)):
            with self.subTest(flag=flag, value=value):
                r = self.start_for_pki(self.pki, extra=[flag, value], name="v%s" % value)
                out, err = self.openssl_ocsp(r, self.pki, serials=[leaf["serial"]],
                                             extra=["-no_nonce"])
                g = parse_ocsp_status_output(out)["0x" + leaf["serial"]]
                self.assertEqual(openssl_time(g["next_update"]) - openssl_time(g["this_update"]),
                                 seconds)


if __name__ == "__main__":
    main()

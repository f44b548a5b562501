"""Hierarchies and key types: a 5-level PKI with one [issuer] per level, each with its
own delegated responder; ec, ec384, rsa and ed25519 signers; the CA signing its own
answers; and the responder identified by name."""

import os
import re

from revd_harness import (UNAUTHORIZED, OcspResp, RevdTestCase, certid, main, main_pki,
                          make_pki, ocsp_post, ocsp_request, parse_ocsp_status_output,
                          read_index, run, seq)

SIG_ALG = {"ec": "ecdsa-with-SHA256", "ec384": "ecdsa-with-SHA384",
           "rsa": "sha256WithRSAEncryption", "ed25519": "ED25519"}


class HierarchyTest(RevdTestCase):

    @classmethod
    def setUpClass(cls):
        cls.pki = make_pki(levels=5, leaves=3, key_type="ec")

    def config(self):
        out = []
        for k in range(1, 6):
            d = self.pki.ca_dir(k)
            out.append("[issuer ca%d]\nca = %s\nsigner_cert = %s\nsigner_key = %s\nindex = %s\n"
                       % (k, os.path.join(d, "ca.pem"), os.path.join(d, "ocsp.pem"),
                          os.path.join(d, "ocsp.key"), os.path.join(d, "index.txt")))
        return "\n".join(out)

    def ca_serial(self, k):
        """The serial of CA level k's certificate, from its parent's index.txt."""
        with open(os.path.join(self.pki.ca_dir(k), "ca.pem")) as f:
            want = f.read()
        for serial, row in read_index(os.path.join(self.pki.ca_dir(k - 1), "index.txt")).items():
            if row["flag"] == "V":
                with open(os.path.join(self.pki.ca_dir(k - 1), "newcerts", serial + ".pem")) as f:
                    if f.read() == want:
                        return serial
        self.fail("CA level %d not in its parent's index" % k)

    def query(self, r, issuer_pem, serial, want, reason=None):
        resp = os.path.join(self.tmp, "resp.der")
        out, err = self.openssl_ocsp(r, self.pki, serials=[serial], issuer=issuer_pem,
                                     extra=["-no_nonce", "-respout", resp])
        self.assert_verified(err)
        g = parse_ocsp_status_output(out)["0x" + serial]
        self.assertEqual(g["status"], want, out)
        self.assertEqual(g["reason"], reason, out)
        with open(resp, "rb") as f:
            return OcspResp(f.read())

    def test_five_levels(self):
        r = self.start_revd(config=self.config(),
                            probe=ocsp_request(self.pki.issuing, self.pki.leaves[0]["serial"]))
        err = r.stderr()
        for k in range(1, 6):
            self.assertIn("issuer ca%d:" % k, err)
        deepest = os.path.join(self.pki.ca_dir(5), "ca.pem")
        with open(deepest) as a, open(self.pki.issuing) as b:
            self.assertEqual(a.read(), b.read())
        self.query(r, deepest, self.pki.leaf("good")["serial"], "good")
        self.query(r, deepest, self.pki.leaf_by_reason("keyCompromise")["serial"], "revoked",
                   "keyCompromise")
        for k in range(2, 6):
            with self.subTest(ca_level=k):
                parent = os.path.join(self.pki.ca_dir(k - 1), "ca.pem")
                resp = self.query(r, parent, self.ca_serial(k), "good")
                # Signed by the parent's own delegated responder, which travels along.
                self.assertEqual(resp.n_certs, 1)
        # Each level's delegated responder certificate is in its CA's index too.
        for k in range(1, 6):
            with self.subTest(responder_level=k):
                d = self.pki.ca_dir(k)
                rr = run(["openssl", "x509", "-noout", "-serial", "-in", os.path.join(d, "ocsp.pem")])
                serial = rr.stdout.decode().strip().split("=")[1]
                self.query(r, os.path.join(d, "ca.pem"), serial, "good")

    def test_issuers_with_different_signers_in_one_request(self):
        r = self.start_revd(config=self.config(),
                            probe=ocsp_request(self.pki.issuing, self.pki.leaves[0]["serial"]))
        ca4 = os.path.join(self.pki.ca_dir(4), "ca.pem")
        der = seq(seq(seq(seq(certid(self.pki.issuing, self.pki.leaf("good")["serial"])),
                          seq(certid(ca4, self.ca_serial(5))))))
        st, h, body = ocsp_post(r.port, der)
        # One response has one signer: revd cannot answer both (documented: unauthorized).
        self.assertEqual(body, UNAUTHORIZED)

    def test_per_issuer_settings(self):
        # [ocsp] not_issued applies to all issuers unless an [issuer] section says otherwise;
        # include_signer_cert = no leaves the responder certificate out for that issuer only.
        config = "[ocsp]\nnot_issued = unauthorized\n" + self.config()
        config = config.replace("[issuer ca5]\n", "[issuer ca5]\nnot_issued = revoked\n")
        config = config.replace("[issuer ca4]\n", "[issuer ca4]\ninclude_signer_cert = no\n")
        r = self.start_revd(config=config,
                            probe=ocsp_request(self.pki.issuing, self.pki.leaves[0]["serial"]))
        ca4 = os.path.join(self.pki.ca_dir(4), "ca.pem")
        st, h, body = ocsp_post(r.port, ocsp_request(self.pki.issuing, self.pki.unissued))
        resp = OcspResp(body)
        self.assertEqual(resp.singles[0]["status"], "revoked")
        self.assertEqual(resp.n_certs, 1)
        st, h, body = ocsp_post(r.port, ocsp_request(ca4, self.pki.unissued))
        self.assertEqual(body, UNAUTHORIZED)
        st, h, body = ocsp_post(r.port, ocsp_request(ca4, self.ca_serial(5)))
        resp = OcspResp(body)
        self.assertEqual(resp.singles[0]["status"], "good")
        self.assertEqual(resp.n_certs, 0)

    def test_root_only_config(self):
        # Only the root configured: the issuing CA's leaves are not ours.
        d = self.pki.ca_dir(1)
        config = ("[issuer root]\nca = %s\nsigner_cert = %s\nsigner_key = %s\nindex = %s\n"
                  % (os.path.join(d, "ca.pem"), os.path.join(d, "ocsp.pem"),
                     os.path.join(d, "ocsp.key"), os.path.join(d, "index.txt")))
        r = self.start_revd(config=config)
        st, h, body = ocsp_post(r.port, ocsp_request(self.pki.issuing, self.pki.leaves[0]["serial"]))
        self.assertEqual(body, UNAUTHORIZED)
        self.query(r, os.path.join(d, "ca.pem"), self.ca_serial(2), "good")


class KeyTypeTest(RevdTestCase):

    def check_key_type(self, key_type, delegated=True):
        pki = main_pki() if key_type == "ec" else make_pki(levels=2, leaves=3, key_type=key_type)
        r = self.start_for_pki(pki, delegated=delegated)
        signer = "delegated" if delegated else "CA"
        good = pki.leaf("good")
        revoked = pki.leaf_by_reason("keyCompromise")
        for leaf, want, reason in ((good, "good", None), (revoked, "revoked", "keyCompromise")):
            with self.subTest(key_type=key_type, signer=signer, leaf=leaf["name"]):
                resp = os.path.join(self.tmp, "resp.der")
                out, err = self.openssl_ocsp(r, pki, serials=[leaf["serial"]],
                                             extra=["-resp_text", "-respout", resp])
                self.assert_verified(err)
                g = parse_ocsp_status_output(out)["0x" + leaf["serial"]]
                self.assertEqual((g["status"], g["reason"]), (want, reason))
                sig = re.search(r"Signature Algorithm: (\S+)", out).group(1)
                self.assertEqual(sig, SIG_ALG[key_type], out[:400])
                with open(resp, "rb") as f:
                    parsed = OcspResp(f.read())
                # A delegated responder sends its certificate; a CA signing itself need not.
                self.assertEqual(parsed.n_certs, 1 if delegated else 0)
        # Verification really checks: against an unrelated root it fails.
        other = make_pki(levels=2, leaves=3, key_type="ed25519" if key_type != "ed25519" else "rsa")
        rr = run(["openssl", "ocsp", "-respin", os.path.join(self.tmp, "resp.der"),
                  "-CAfile", other.root, "-verify_other", other.chain])
        self.assertNotIn("Response verify OK", rr.stderr.decode())
        self.assertIn("Response Verify Failure", rr.stderr.decode())

    def test_ec(self):
        self.check_key_type("ec")

    def test_ec384(self):
        self.check_key_type("ec384")

    def test_rsa(self):
        self.check_key_type("rsa")

    def test_ed25519(self):
        self.check_key_type("ed25519")

    def test_ca_signs_own_answers_ec(self):
        self.check_key_type("ec", delegated=False)

    def test_ca_signs_own_answers_rsa(self):
        self.check_key_type("rsa", delegated=False)

    def test_responder_by_name(self):
        pki = main_pki()
        leaf = pki.leaf("good")
        for how, kw in (("flag", dict(extra=["--resp_by_name"])), ("config", None)):
            with self.subTest(how=how):
                if kw is None:
                    a = self.pki_args(pki)
                    config = ("[issuer main]\nca = %s\nsigner_cert = %s\nsigner_key = %s\n"
                              "index = %s\nresponder_id = name\n" % (a[3], a[5], a[7], a[1]))
                    r = self.start_revd(config=config, name="by-name-config")
                else:
                    r = self.start_for_pki(pki, name="by-name-flag", **kw)
                out, err = self.openssl_ocsp(r, pki, serials=[leaf["serial"]],
                                             extra=["-no_nonce", "-resp_text"])
                self.assert_verified(err)
                m = re.search(r"Responder Id: (.*)", out)
                self.assertIsNotNone(m, out[:500])
                self.assertIn("CN = revd test OCSP responder for CA level 2", m.group(1))
                self.assertIn("O = revd test PKI", m.group(1))
        # The default is by key: the SHA-1 of the signer's key, in hex.
        r = self.start_for_pki(pki, name="by-key")
        out, err = self.openssl_ocsp(r, pki, serials=[leaf["serial"]],
                                     extra=["-no_nonce", "-resp_text"])
        self.assertRegex(out, r"Responder Id: [0-9A-F]{40}\n")


if __name__ == "__main__":
    main()

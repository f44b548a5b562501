"""index.txt changes are picked up without a restart: a revocation by `openssl ca
-revoke` is served within a second, a newly issued certificate goes from unknown to
good, and a corrupted index keeps the previous contents (and is logged)."""

import os
import re
import time

from revd_harness import (OcspResp, RevdTestCase, b64_path, copy_pki, http_request, log, main,
                          main_pki, ocsp_post, ocsp_request, parse_ocsp_status_output, run)

LATENCY_LIMIT = 1.0
POLL = 0.05


class IndexReloadTest(RevdTestCase):

    def setUp(self):
        self.pki = copy_pki(main_pki(), os.path.join(self.tmp, "pki"))
        self.cadir = self.pki.ca_dir(self.pki.levels)
        self.cnf = os.path.join(self.cadir, "openssl.cnf")

    def status(self, r, serial, hash_name="sha1", get=False):
        der = ocsp_request(self.pki.issuing, serial, hash_name)
        if get:
            st, h, body = http_request(r.port, "GET", "/" + b64_path(der))
        else:
            st, h, body = ocsp_post(r.port, der)
        self.assertEqual(st, 200)
        resp = OcspResp(body)
        self.assertEqual(resp.status, 0, body)
        return resp.singles[0]["status"]

    def wait_status(self, r, serial, want, t0, **kw):
        """Polls every 50 ms (bounded) until serial is `want`; returns the latency from t0."""
        deadline = t0 + 5.0
        while time.monotonic() < deadline:
            if self.status(r, serial, **kw) == want:
                return time.monotonic() - t0
            time.sleep(POLL)
        self.fail("%s still not %s after 5s" % (serial, want))

    def openssl_ca(self, *args):
        rr = run(["openssl", "ca", "-config", self.cnf, "-batch"] + list(args))
        self.assertEqual(rr.returncode, 0, rr.stderr.decode())

    def test_copy_is_independent(self):
        # copy_pki rewrote the CA's dir: `openssl ca` must touch the copy only.
        with open(self.cnf) as f:
            self.assertIn("dir              = %s\n" % self.cadir, f.read())
        original = main_pki()
        self.assertNotEqual(os.path.realpath(self.pki.index), os.path.realpath(original.index))

    def test_revocation_is_served_within_a_second(self):
        r = self.start_for_pki(self.pki)
        leaf = self.pki.leaf("good", 2)
        serial = leaf["serial"]
        # Fill the cache with every variant first: the revocation must drop them all.
        self.assertEqual(self.status(r, serial), "good")
        self.assertEqual(self.status(r, serial, "sha256"), "good")
        self.assertEqual(self.status(r, serial, get=True), "good")
        self.openssl_ca("-revoke", leaf["cert"], "-crl_reason", "keyCompromise")
        t0 = time.monotonic()
        latency = self.wait_status(r, serial, "revoked", t0)
        log("revocation served %.0f ms after `openssl ca -revoke` returned" % (latency * 1000))
        self.assertLessEqual(latency, LATENCY_LIMIT)
        self.assertEqual(self.status(r, serial, "sha256"), "revoked")
        self.assertEqual(self.status(r, serial, get=True), "revoked")
        out, err = self.openssl_ocsp(r, self.pki, serials=[serial], extra=["-no_nonce"])
        g = parse_ocsp_status_output(out)["0x" + serial]
        self.assertEqual((g["status"], g["reason"]), ("revoked", "keyCompromise"))
        self.assert_verified(err)
        # The other entries did not change.
        self.assertEqual(self.status(r, self.pki.leaf("good", 0)["serial"]), "good")
        self.assertEqual(self.status(r, self.pki.leaf("revoked")["serial"]), "revoked")

    def test_new_certificate_unknown_then_good(self):
        r = self.start_for_pki(self.pki)
        with open(os.path.join(self.cadir, "serial")) as f:
            serial = f.read().strip().upper()
        self.assertEqual(self.status(r, serial), "unknown")
        self.assertEqual(self.status(r, serial, get=True), "unknown")
        key, csr, cert = (os.path.join(self.tmp, n) for n in ("new.key", "new.csr", "new.pem"))
        rr = run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                  "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=new.revd.test",
                  "-config", self.cnf])
        self.assertEqual(rr.returncode, 0, rr.stderr.decode())
        self.openssl_ca("-notext", "-in", csr, "-out", cert, "-extensions", "v3_leaf",
                        "-days", "30")
        t0 = time.monotonic()
        latency = self.wait_status(r, serial, "good", t0)
        log("new certificate served good %.0f ms after `openssl ca` returned" % (latency * 1000))
        self.assertLessEqual(latency, LATENCY_LIMIT)
        self.assertEqual(self.status(r, serial, get=True), "good")
        out, err = self.openssl_ocsp(r, self.pki, certs=[cert], extra=["-no_nonce"])
        self.assertEqual(parse_ocsp_status_output(out)[cert]["status"], "good")

    def test_generalized_time_dates(self):
        # openssl ca writes dates from 2050 on as GeneralizedTime (4-digit years).
        r = self.start_for_pki(self.pki)
        with open(os.path.join(self.cadir, "serial")) as f:
            serial = f.read().strip().upper()
        self.assertEqual(self.status(r, serial), "unknown")
        key, csr, cert = (os.path.join(self.tmp, n) for n in ("g.key", "g.csr", "g.pem"))
        rr = run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                  "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=g.revd.test",
                  "-config", self.cnf])
        self.assertEqual(rr.returncode, 0, rr.stderr.decode())
        self.openssl_ca("-notext", "-in", csr, "-out", cert, "-extensions", "v3_leaf",
                        "-enddate", "20510101000000Z")
        with open(self.pki.index) as f:
            self.assertIn("\t20510101000000Z\t", f.read())
        self.wait_status(r, serial, "good", time.monotonic())
        self.openssl_ca("-revoke", cert, "-crl_reason", "superseded")
        self.wait_status(r, serial, "revoked", time.monotonic())

    def test_index_briefly_missing(self):
        # A writer that moves the file away and back: revd keeps the last contents.
        r = self.start_for_pki(self.pki)
        good = self.pki.leaf("good", 4)
        self.assertEqual(self.status(r, good["serial"]), "good")
        real = os.path.realpath(self.pki.index)
        os.rename(real, real + ".away")
        time.sleep(0.6)
        self.assertEqual(self.status(r, good["serial"], "sha256"), "good")
        self.assertTrue(r.alive())
        os.rename(real + ".away", real)
        self.openssl_ca("-revoke", good["cert"], "-crl_reason", "affiliationChanged")
        latency = self.wait_status(r, good["serial"], "revoked", time.monotonic())
        self.assertLessEqual(latency, LATENCY_LIMIT)

    def test_duplicate_line_does_not_hide_revocation(self):
        r = self.start_for_pki(self.pki)
        revoked = self.pki.leaf_by_reason("keyCompromise")
        good = self.pki.leaf("good", 5)
        self.assertEqual(self.status(r, good["serial"]), "good")
        with open(self.pki.index, "a") as f:
            # the revoked serial again as valid, and the good one again as revoked
            f.write("V\t301231000000Z\t\t%s\tunknown\t/CN=dup\n" % revoked["serial"])
            f.write("R\t301231000000Z\t240101000000Z,keyCompromise\t%s\tunknown\t/CN=dup\n"
                    % good["serial"])
        latency = self.wait_status(r, good["serial"], "revoked", time.monotonic())
        self.assertLessEqual(latency, LATENCY_LIMIT)
        self.assertEqual(self.status(r, revoked["serial"]), "revoked")
        # removeFromCRL: released from hold, so good again; a removed line is unknown.
        held = self.pki.leaf_by_reason("certificateHold")
        self.assertEqual(self.status(r, held["serial"]), "revoked")
        gone = self.pki.leaf("good", 6)
        self.assertEqual(self.status(r, gone["serial"]), "good")
        with open(self.pki.index) as f:
            lines = f.readlines()
        out = []
        for line in lines:
            fields = line.split("\t")
            if fields[3] == held["serial"]:
                fields[2] = fields[2].split(",")[0] + ",removeFromCRL"
            if fields[3] != gone["serial"]:
                out.append("\t".join(fields))
        with open(self.pki.index, "w") as f:
            f.writelines(out)
        self.wait_status(r, held["serial"], "good", time.monotonic())
        self.wait_status(r, gone["serial"], "unknown", time.monotonic())

    def test_corrupted_index_keeps_previous(self):
        r = self.start_for_pki(self.pki)
        good, revoked = self.pki.leaf("good", 1), self.pki.leaf("revoked", 2)
        self.assertEqual(self.status(r, good["serial"]), "good")
        self.assertEqual(self.status(r, revoked["serial"]), "revoked")
        with open(self.pki.index, "a") as f:
            f.write("this is not an index line\n")
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and "reload failed" not in r.stderr():
            time.sleep(POLL)
        err = r.stderr()
        self.assertRegex(err, r"error .*index.*(reload failed|keeping the previous)")
        self.assertIn("line %d" % (len(self.pki.leaves) + 2), err)
        # Uncached and cached answers alike still come from the previous contents.
        self.assertEqual(self.status(r, good["serial"]), "good")
        self.assertEqual(self.status(r, good["serial"], "sha256"), "good")
        self.assertEqual(self.status(r, revoked["serial"]), "revoked")
        self.assertEqual(self.status(r, self.pki.leaf("good", 3)["serial"]), "good")
        # Fixing the file (openssl ca rewrites it) is picked up again.
        with open(self.pki.index) as f:
            lines = [l for l in f if not l.startswith("this is not")]
        with open(self.pki.index, "w") as f:
            f.writelines(lines)
        self.openssl_ca("-revoke", good["cert"], "-crl_reason", "superseded")
        t0 = time.monotonic()
        latency = self.wait_status(r, good["serial"], "revoked", t0)
        self.assertLessEqual(latency, LATENCY_LIMIT)

    def test_truncated_index_keeps_previous(self):
        r = self.start_for_pki(self.pki)
        good = self.pki.leaf("good", 1)
        self.assertEqual(self.status(r, good["serial"]), "good")
        # Half a line, as a writer that crashed would leave it.
        with open(self.pki.index) as f:
            text = f.read()
        with open(self.pki.index, "w") as f:
            f.write(text[:len(text) // 2].rsplit("\t", 2)[0])
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and "reload failed" not in r.stderr():
            time.sleep(POLL)
        self.assertIn("reload failed", r.stderr())
        last = self.pki.leaves[-1]["serial"]
        self.assertEqual(self.status(r, last), "revoked" if self.pki.leaves[-1]["status"] ==
                         "revoked" else "good")
        self.assertEqual(self.status(r, good["serial"]), "good")
        self.assertTrue(re.search(r"index .* reloaded|reload failed", r.stderr()))


if __name__ == "__main__":
    main()

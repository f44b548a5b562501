"""SIGHUP under load: the delegated responder's certificate and key are replaced while
clients keep asking over kept-alive connections. Measured: every request answered 200
with a good response, none dropped; answers signed by the new responder right after the
reload; a bad new configuration refused with the running signer kept."""

import http.client
import os
import signal
import subprocess
import threading
import time

from revd_harness import (OcspResp, RevdTestCase, log, main, main_pki, ocsp_request,
                          pem_to_der, run)

CLIENTS = 4
PER_CLIENT_MAX = 20000  # a bound on the load loop


def new_responder(pki, dest):
    """A second delegated responder certificate for the issuing CA (EKU OCSPSigning)."""
    key = os.path.join(dest, "ocsp2.key")
    csr = os.path.join(dest, "ocsp2.csr")
    cert = os.path.join(dest, "ocsp2.pem")
    ext = os.path.join(dest, "ocsp2.ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=OCSPSigning\n")
    r = run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", key, "-out", csr, "-subj", "/O=revd test PKI/CN=second responder"])
    assert r.returncode == 0, r.stderr
    r = run(["openssl", "x509", "-req", "-in", csr, "-CA", pki.issuing, "-CAkey",
             pki.issuing_key, "-set_serial", "0x7e57", "-days", "30", "-extfile", ext,
             "-out", cert])
    assert r.returncode == 0, r.stderr
    return cert, key


class ReloadTest(RevdTestCase):

    @classmethod
    def setUpClass(cls):
        cls.pki = main_pki()

    def config(self, cert, key):
        return ("[issuer main]\nca = %s\nsigner_cert = %s\nsigner_key = %s\nindex = %s\n"
                % (self.pki.issuing, cert, key, self.pki.index))

    def test_reload_under_load(self):
        cert2, key2 = new_responder(self.pki, self.tmp)
        der1 = pem_to_der(self.pki.ocsp_cert)
        der2 = pem_to_der(cert2)
        r = self.start_revd(config=self.config(self.pki.ocsp_cert, self.pki.ocsp_key))
        conf_path = [a for a in r.argv if a.endswith(".conf")][0]
        leaves = [self.pki.leaf("good", i)["serial"] for i in range(4)]
        reqs = [ocsp_request(self.pki.issuing, [s]) for s in leaves]

        stop = threading.Event()
        results = [dict(ok=0, bad=[], signers=[]) for _ in range(CLIENTS)]

        def client(n):
            res = results[n]
            conn = http.client.HTTPConnection("127.0.0.1", r.port, timeout=10)
            for i in range(PER_CLIENT_MAX):
                if stop.is_set():
                    break
                try:
                    conn.request("POST", "/", reqs[i % len(reqs)],
                                 {"Content-Type": "application/ocsp-request"})
                    resp = conn.getresponse()
                    body = resp.read()
                except Exception as e:  # a dropped connection is a failure here
                    res["bad"].append(repr(e))
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", r.port, timeout=10)
                    continue
                o = OcspResp(body) if resp.status == 200 else None
                if o is None or o.status != 0 or o.singles[0]["status"] != "good":
                    res["bad"].append((resp.status, body[:20]))
                    continue
                res["ok"] += 1
                res["signers"].append((time.monotonic(), der2 in body, der1 in body))
            conn.close()

        threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        # The new responder, then SIGHUP.
        with open(conf_path, "w") as f:
            f.write(self.config(cert2, key2))
        t_hup = time.monotonic()
        r.proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        # A key that does not match its certificate: refused, the running signer kept.
        with open(conf_path, "w") as f:
            f.write(self.config(cert2, self.pki.ocsp_key))
        t_bad = time.monotonic()
        r.proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join(timeout=30)

        ok = sum(x["ok"] for x in results)
        bad = [b for x in results for b in x["bad"]]
        log("reload under load: %d requests answered over %d connections, %d failed"
            % (ok, CLIENTS, len(bad)))
        self.assertEqual(bad, [], "requests failed across the reloads")
        self.assertGreater(ok, 100)
        signers = sorted(s for x in results for s in x["signers"])
        before = [s for s in signers if s[0] < t_hup]
        after = [s for s in signers if s[0] > t_hup + 0.5]
        self.assertTrue(before and all(s[2] and not s[1] for s in before),
                        "answers before the reload come from the first responder")
        self.assertTrue(after and all(s[1] and not s[2] for s in after),
                        "answers half a second after the reload come from the second")
        after_bad = [s for s in signers if s[0] > t_bad + 0.5]
        self.assertTrue(after_bad and all(s[1] for s in after_bad),
                        "a refused reload keeps the running signer")
        err = r.stderr()
        self.assertIn("SIGHUP: signers and logging reloaded", err)
        self.assertIn("SIGHUP: the new signers are refused, the running ones kept", err)
        # The new answers verify as openssl ocsp checks them.
        path = os.path.join(self.tmp, "resp.der")
        conn = http.client.HTTPConnection("127.0.0.1", r.port, timeout=10)
        conn.request("POST", "/", reqs[0], {"Content-Type": "application/ocsp-request"})
        with open(path, "wb") as f:
            f.write(conn.getresponse().read())
        conn.close()
        v = run(["openssl", "ocsp", "-respin", path, "-CAfile", self.pki.root, "-verify_other",
                 self.pki.chain, "-issuer", self.pki.issuing, "-serial", "0x" + leaves[0]])
        self.assertIn(b"Response verify OK", v.stderr + v.stdout, v.stderr)


if __name__ == "__main__":
    main()

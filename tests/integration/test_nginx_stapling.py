"""A real TLS server stapling revd's answers: nginx (Debian package) with
ssl_stapling_responder pointing at revd, asked by `openssl s_client -status`: a good
certificate's handshake carries a verified "good" staple; for a revoked one nginx reads
"revoked" in revd's answer (and, as it does, staples nothing).
Also `revd staple` feeding nginx's ssl_stapling_file, and a certificate revoked through
revd's mTLS API (revd on PostgreSQL) while nginx staples "good" for it: `revd staple`
then hands nginx a "revoked" staple, and a freshly started nginx reads "revoked"."""

import os
import shutil
import socket
import subprocess
import time

from api_harness import ApiClient, api_section, make_api_pki, wait_port
from pg_harness import PgTestCase
from revd_harness import (REVD_BIN, OcspResp, RevdTestCase, log, main, main_pki, ocsp_post,
                          ocsp_request, run)

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class NginxCase(RevdTestCase):
    """nginx in front of revd: the helpers."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pki = main_pki()

    def setUp(self):
        super().setUp()
        if not os.path.exists(NGINX):
            self.skipTest("nginx is not installed (scripts/install-deps.sh --test installs it)")

    def nginx(self, servers, name="nginx"):
        """Starts nginx in the foreground with these server blocks; stopped at cleanup.
        name: its directory under the test's (several may run at once)."""
        d = os.path.join(self.tmp, name)
        os.makedirs(d, exist_ok=True)
        conf = os.path.join(d, "nginx.conf")
        temps = "".join("%s_temp_path %s/%s;\n" % (t, d, t)
                        for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        with open(conf, "w") as f:
            f.write("daemon off;\nmaster_process off;\nerror_log %s/error.log info;\n"
                    "pid %s/nginx.pid;\nevents { worker_connections 64; }\n"
                    "http {\naccess_log off;\n%s%s}\n" % (d, d, temps, servers))
        t = run([NGINX, "-t", "-c", conf, "-p", d])
        self.assertEqual(t.returncode, 0, t.stderr)
        p = subprocess.Popen([NGINX, "-c", conf, "-p", d], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: (p.terminate(), p.wait(10)))
        return d

    def server_block(self, port, leaf, extra):
        chain = os.path.join(self.tmp, "chain-%d.pem" % port)
        with open(chain, "w") as f:
            for part in (leaf["cert"], self.pki.issuing):
                with open(part) as g:
                    f.write(g.read())
        return ("server {\nlisten 127.0.0.1:%d ssl;\nssl_certificate %s;\n"
                "ssl_certificate_key %s;\nssl_stapling on;\n%s}\n"
                % (port, chain, leaf["key"], extra))

    def staple(self, port, want, timeout=15):
        """Handshakes until nginx staples an answer (it fetches on the first one)."""
        deadline = time.monotonic() + timeout
        out = ""
        while time.monotonic() < deadline:
            r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                                "-status", "-CAfile", self.pki.root], input=b"",
                               capture_output=True, timeout=10)
            out = r.stdout.decode(errors="replace")
            if "OCSP Response Status: successful" in out:
                break
            time.sleep(0.2)
        self.assertIn("OCSP Response Status: successful", out, "no staple within %ds" % timeout)
        self.assertIn("Cert Status: %s" % want, out)
        return out

    def stapling_responder(self, port):
        """The lines that make nginx fetch, verify and staple revd's answers."""
        trusted = os.path.join(self.tmp, "trusted.pem")
        with open(trusted, "w") as f:
            for part in (self.pki.chain, self.pki.root):
                with open(part) as g:
                    f.write(g.read())
        return ("ssl_stapling_verify on;\nssl_trusted_certificate %s;\n"
                "ssl_stapling_responder http://127.0.0.1:%d/;\n" % (trusted, port))

    def wait_revoked_logged(self, port, nginx_dir, timeout=15):
        """nginx staples only "good" answers: for a revoked certificate it fetches revd's
        answer, verifies it, reads "revoked" and sends none (its error log says so).
        Handshakes until the log says it; returns the last s_client output."""
        deadline = time.monotonic() + timeout
        seen, out = "", ""
        while time.monotonic() < deadline and 'certificate status "revoked"' not in seen:
            r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                                "-status"], input=b"", capture_output=True, timeout=10)
            out = r.stdout.decode(errors="replace")
            with open(os.path.join(nginx_dir, "error.log")) as f:
                seen = f.read()
            time.sleep(0.2)
        self.assertIn('certificate status "revoked" in the OCSP response', seen)
        return out


class NginxStaplingTest(NginxCase):

    def test_nginx_staples_revd_answers(self):
        r = self.start_revd(list(self.pki_args(self.pki)))
        stapling = self.stapling_responder(r.port)
        good, revoked = self.pki.leaf("good"), self.pki.leaf("revoked")
        pg, pr = free_port(), free_port()
        self.nginx_dir = self.nginx(self.server_block(pg, good, stapling) +
                                    self.server_block(pr, revoked, stapling))
        t0 = time.monotonic()
        out = self.staple(pg, "good")
        log("nginx stapled revd's good answer %.2f s after starting" % (time.monotonic() - t0))
        self.assertIn("Responder Id:", out)
        self.wait_revoked_logged(pr, self.nginx_dir)

    def test_nginx_staple_file_from_revd_staple(self):
        r = self.start_revd(list(self.pki_args(self.pki)))
        good = self.pki.leaf("good")
        staple = os.path.join(self.tmp, "good.ocsp")
        st = run([os.environ["REVD_BIN"], "staple", "--cert", good["cert"], "--issuer",
                  self.pki.issuing, "--url", "http://127.0.0.1:%d/" % r.port, "--out", staple])
        self.assertEqual(st.returncode, 0, st.stderr)
        port = free_port()
        self.nginx(self.server_block(port, good, "ssl_stapling_file %s;\n" % staple))
        self.staple(port, "good")


class NginxApiStaplingTest(PgTestCase, NginxCase):
    """revd on PostgreSQL with the mTLS API; one PostgreSQL server for the class."""

    def test_revoked_through_the_api(self):
        tls = make_api_pki(os.path.join(self.tmp, "api-tls"))
        dsn = self.new_database()
        for args in (["db", "migrate"], ["db", "add-issuer", "--name", "main", "--cert",
                                         self.pki.issuing],
                     ["import", "--issuer", "main", "--index", self.pki.index]):
            c = run([REVD_BIN] + args + ["--dsn", dsn], timeout=60)
            self.assertEqual(c.returncode, 0, c.stderr)
        ocsp_port, api_port = free_port(), free_port()
        config = ("[server]\nlisten = 127.0.0.1:%d\nworkers = 2\n\n[postgres]\ndsn = %s\n\n"
                  "[issuer main]\nca = %s\nsigner_cert = %s\nsigner_key = %s\n"
                  "store = postgres\n" % (ocsp_port, dsn, self.pki.issuing,
                                          self.pki.ocsp_cert, self.pki.ocsp_key)
                  + api_section(tls, api_port))
        leaf = self.pki.leaf("good", 3)
        probe = ocsp_request(self.pki.issuing, leaf["serial"])
        r = self.start_revd(config=config, listen=False, probe=probe)
        r.port = ocsp_port  # the API listener may have logged "listening on" first
        wait_port(ocsp_port)
        wait_port(api_port)
        deadline = time.monotonic() + 5
        while OcspResp(ocsp_post(ocsp_port, probe)[2]).status != 0:  # tryLater until matched
            self.assertLess(time.monotonic(), deadline, "revd never answered from PostgreSQL")
            time.sleep(0.02)

        p1 = free_port()
        self.nginx(self.server_block(p1, leaf, self.stapling_responder(ocsp_port)),
                   name="nginx-before")
        self.staple(p1, "good")

        a = ApiClient(tls, api_port).revoke("main", leaf["serial"], "keyCompromise")
        self.assertEqual(a.status, 200, a)
        self.assertIs(a.json.get("live"), True, a)
        self.assertEqual(a.json.get("status"), "revoked", a)

        # (a) revd staple fetches the revoked answer; nginx staples the file as it is.
        staple = os.path.join(self.tmp, "revoked.ocsp")
        st = run([REVD_BIN, "staple", "--cert", leaf["cert"], "--issuer", self.pki.issuing,
                  "--url", "http://127.0.0.1:%d/" % ocsp_port, "--out", staple])
        self.assertEqual(st.returncode, 0, st.stderr)
        self.assertIn(b"revoked", st.stdout)
        p2 = free_port()
        self.nginx(self.server_block(p2, leaf, "ssl_stapling_file %s;\n" % staple),
                   name="nginx-file")
        out = self.staple(p2, "revoked")
        self.assertIn("Reason: keyCompromise", out)

        # (b) a freshly started nginx asks revd, reads "revoked" and staples nothing.
        p3 = free_port()
        d3 = self.nginx(self.server_block(p3, leaf, self.stapling_responder(ocsp_port)),
                        name="nginx-after")
        out = self.wait_revoked_logged(p3, d3)
        self.assertIn("OCSP response: no response sent", out)
        self.assertNotIn("Cert Status: good", out)


if __name__ == "__main__":
    main()

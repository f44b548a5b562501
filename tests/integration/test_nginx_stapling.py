"""A real TLS server stapling revd's answers: nginx (Debian package) with
ssl_stapling_responder pointing at revd, asked by `openssl s_client -status`: a good
certificate's handshake carries a verified "good" staple; for a revoked one nginx reads
"revoked" in revd's answer (and, as it does, staples nothing).
Also `revd staple` feeding nginx's ssl_stapling_file."""

import os
import shutil
import socket
import subprocess
import time

from revd_harness import RevdTestCase, log, main, main_pki, run

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class NginxStaplingTest(RevdTestCase):

    @classmethod
    def setUpClass(cls):
        cls.pki = main_pki()

    def setUp(self):
        super().setUp()
        if not os.path.exists(NGINX):
            self.skipTest("nginx is not installed (scripts/install-deps.sh --test installs it)")

    def nginx(self, servers):
        """Starts nginx in the foreground with these server blocks; stopped at cleanup."""
        d = os.path.join(self.tmp, "nginx")
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
            f.write(open(leaf["cert"]).read() + open(self.pki.issuing).read())
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

    def test_nginx_staples_revd_answers(self):
        r = self.start_revd(list(self.pki_args(self.pki)))
        trusted = os.path.join(self.tmp, "trusted.pem")
        with open(trusted, "w") as f:
            f.write(open(self.pki.chain).read() + open(self.pki.root).read())
        stapling = ("ssl_stapling_verify on;\nssl_trusted_certificate %s;\n"
                    "ssl_stapling_responder http://127.0.0.1:%d/;\n" % (trusted, r.port))
        good, revoked = self.pki.leaf("good"), self.pki.leaf("revoked")
        pg, pr = free_port(), free_port()
        self.nginx_dir = self.nginx(self.server_block(pg, good, stapling) +
                                    self.server_block(pr, revoked, stapling))
        t0 = time.monotonic()
        out = self.staple(pg, "good")
        log("nginx stapled revd's good answer %.2f s after starting" % (time.monotonic() - t0))
        self.assertIn("Responder Id:", out)
        # nginx staples only "good" answers: for a revoked certificate it fetches revd's
        # answer, verifies it, reads "revoked" and sends none (its error log says so).
        deadline = time.monotonic() + 15
        seen = ""
        while time.monotonic() < deadline and 'certificate status "revoked"' not in seen:
            subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % pr, "-status"],
                           input=b"", capture_output=True, timeout=10)
            with open(os.path.join(self.nginx_dir, "error.log")) as f:
                seen = f.read()
            time.sleep(0.2)
        self.assertIn('certificate status "revoked" in the OCSP response', seen)

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


if __name__ == "__main__":
    main()

"""Operating revd: `revd config check` (what is wrong and where), environment overrides
(REVD_CONF_<SECTION>_<KEY>), the /healthz and /readyz probes, and `revd healthcheck`
against a real revd over a socket."""

import http.server
import json
import os
import shutil
import socket
import subprocess
import threading
import time

from revd_harness import (REVD_BIN, RevdTestCase, http_request, main, main_pki, ocsp_post,
                          ocsp_request, run)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class OpsTest(RevdTestCase):

    @classmethod
    def setUpClass(cls):
        cls.pki = main_pki()

    def issuer_config(self, extra=""):
        a = self.pki_args(self.pki)
        return ("[issuer main]\nca = %s\nsigner_cert = %s\nsigner_key = %s\nindex = %s\n%s"
                % (a[3], a[5], a[7], a[1], extra))

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def revd(self, *args, env=None):
        e = dict(os.environ)
        e.update(env or {})
        r = subprocess.run([REVD_BIN] + list(args), capture_output=True, timeout=30, env=e)
        return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")

    def test_config_check_accepts_a_good_file(self):
        path = self.write("good.conf", "[server]\nlisten = 127.0.0.1:0\n" + self.issuer_config())
        rc, out, err = self.revd("config", "check", "--config", path)
        self.assertEqual(rc, 0, err)
        self.assertIn("%s: OK" % path, out)
        self.assertIn("main: signed by a delegated responder", out)

    def test_config_check_says_what_and_where(self):
        cases = [
            # (file text, environment, what the message must say)
            ("[server]\nworkers = 1\nbogus = 2\n" + self.issuer_config(), {},
             ["bad.conf:3: unknown key 'bogus' in [server]"]),
            ("[server]\nidle_timeout = soon\n" + self.issuer_config(), {},
             ["bad.conf:2:", "idle_timeout"]),
            ("[ocsp]\nvalidity = 30d\n" + self.issuer_config(), {}, ["bad.conf:2:", "validity"]),
            (self.issuer_config().replace("index = ", "index = /nonexistent-dir"), {},
             ["[issuer main]", "/nonexistent-dir"]),
            (self.issuer_config(), {"REVD_CONF_SERVER_WORKERS": "many"},
             ["environment REVD_CONF_SERVER_WORKERS", "workers"]),
            (self.issuer_config(), {"REVD_CONF_NOSUCH_KEY": "1"},
             ["environment REVD_CONF_NOSUCH_KEY", "SECTION"]),
            (self.issuer_config("crl = yes\n"), {}, ["[issuer main]", "crl_key"]),
        ]
        for text, env, want in cases:
            with self.subTest(want=want[0]):
                path = self.write("bad.conf", text)
                rc, out, err = self.revd("config", "check", "--config", path, env=env)
                self.assertEqual(rc, 2, out + err)
                self.assertNotIn(": OK", out)
                for w in want:
                    self.assertIn(w, err)
                self.assertLessEqual(len(err.splitlines()), 3, err)

    def test_environment_overrides_the_file(self):
        # The file says one port; the environment another: revd listens on the latter.
        port = free_port()
        config = "[server]\nlisten = 127.0.0.1:1\n" + self.issuer_config()
        r = self.start_revd(config=config, listen=False,
                            env={"REVD_CONF_SERVER_LISTEN": "127.0.0.1:%d" % port})
        self.assertEqual(r.port, port)
        status, _, body = http_request(port, "GET", "/healthz")
        self.assertEqual(status, 200)
        # An override that does not parse stops revd before it listens.
        path = self.write("env.conf", config)
        e = dict(os.environ, REVD_CONF_OCSP_NONCE="maybe")
        p = subprocess.run([REVD_BIN, "serve", "--config", path], capture_output=True,
                           timeout=10, env=e)
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"environment REVD_CONF_OCSP_NONCE", p.stderr)

    def test_probes_and_healthcheck(self):
        r = self.start_revd(config=self.issuer_config())
        for path, want in (("/healthz", b"alive"), ("/readyz", b"ready")):
            status, headers, body = http_request(r.port, "GET", path)
            self.assertEqual(status, 200, path)
            self.assertIn(want, body)
            self.assertIn("no-store", headers.get("cache-control", ""))
        addr = "127.0.0.1:%d" % r.port
        rc, out, err = self.revd("healthcheck", "--address", addr)
        self.assertEqual(rc, 0, err)
        self.assertIn("ready", out)
        rc, out, err = self.revd("healthcheck", "--address", addr, "--live")
        self.assertEqual(rc, 0, err)
        self.assertIn("alive", out)
        # Nothing listening: a failure with the reason, quickly.
        rc, out, err = self.revd("healthcheck", "--address", "127.0.0.1:%d" % free_port(),
                                 "--timeout", "2")
        self.assertEqual(rc, 1)
        self.assertIn("refused", err)
        rc, out, err = self.revd("healthcheck", "--address", "nonsense")
        self.assertEqual(rc, 2)

    def test_readyz_is_503_while_postgres_is_unreachable(self):
        # A database that never answers (nothing listens on the port): alive, not ready.
        dead = free_port()
        a = self.pki_args(self.pki)
        config = ("[postgres]\ndsn = host=127.0.0.1 port=%d dbname=x connect_timeout=1\n"
                  "[issuer main]\nca = %s\nsigner_cert = %s\nsigner_key = %s\n"
                  % (dead, a[3], a[5], a[7]))
        r = self.start_revd(config=config)
        status, _, body = http_request(r.port, "GET", "/healthz")
        self.assertEqual(status, 200)
        status, _, body = http_request(r.port, "GET", "/readyz")
        self.assertEqual(status, 503, body)
        self.assertIn(b"not ready", body)
        rc, out, err = self.revd("healthcheck", "--address", "127.0.0.1:%d" % r.port)
        self.assertEqual(rc, 1)
        self.assertIn("503", err)

    def metrics(self, port):
        status, headers, body = http_request(port, "GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(headers["content-type"].startswith("text/plain; version=0.0.4"))
        values, typed = {}, set()
        for line in body.decode().splitlines():
            if line.startswith("# TYPE "):
                typed.add(line.split()[2])
            elif line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
                base = name.split("{")[0]
                for suffix in ("_bucket", "_sum", "_count"):
                    if base.endswith(suffix) and base[:-len(suffix)] in typed:
                        base = base[:-len(suffix)]
                self.assertIn(base, typed, "%s has no TYPE line" % name)
        return values

    def test_metrics(self):
        crl_dir = os.path.join(self.tmp, "crl")
        config = "[crl]\ndir = %s\n" % crl_dir + self.issuer_config(
            "crl_key = %s\n" % self.pki.issuing_key)
        r = self.start_revd(config=config)
        before = self.metrics(r.port)
        self.assertEqual(before["revd_ready"], 1)
        leaf = self.pki.leaf("good")
        req = ocsp_request(self.pki.issuing, [leaf["serial"]])
        for _ in range(3):
            status, _, _ = ocsp_post(r.port, req)
            self.assertEqual(status, 200)
        after = self.metrics(r.port)
        self.assertGreaterEqual(after["revd_l1_hits_total"] - before["revd_l1_hits_total"], 2)
        self.assertGreaterEqual(after["revd_l1_misses_total"] - before["revd_l1_misses_total"], 1)
        self.assertGreaterEqual(after["revd_signatures_total"], 1)
        self.assertGreaterEqual(after["revd_http_requests_total"],
                                before["revd_http_requests_total"] + 3)
        # By method, HTTP status and OCSP outcome; the signing histogram.
        status, _, _ = ocsp_post(r.port, b"\x30\x03\x02\x01\x01")  # not an OCSPRequest
        self.assertEqual(status, 200)
        status, _, _ = http_request(r.port, "GET", "/crl/nothing.crl")
        self.assertEqual(status, 404)
        m = self.metrics(r.port)
        def delta(name):
            return m.get(name, 0) - before.get(name, 0)
        self.assertGreaterEqual(delta('revd_http_requests_by_method_total{method="POST"}'), 4)
        self.assertGreaterEqual(delta('revd_http_requests_by_method_total{method="GET"}'), 1)
        self.assertGreaterEqual(delta('revd_ocsp_responses_total{outcome="successful"}'), 3)
        self.assertEqual(delta('revd_ocsp_responses_total{outcome="malformedRequest"}'), 1)
        self.assertGreaterEqual(delta('revd_http_responses_total{status="404"}'), 1)
        buckets = sorted((float(k.split('le="')[1].rstrip('"}').replace("+Inf", "inf")), v)
                         for k, v in m.items() if k.startswith("revd_signing_seconds_bucket"))
        self.assertEqual([v for _, v in buckets], sorted(v for _, v in buckets))
        self.assertEqual(buckets[-1][1], m["revd_signing_seconds_count"])
        self.assertGreaterEqual(m["revd_signing_seconds_count"], 1)
        self.assertGreater(m["revd_signing_seconds_sum"], 0)
        # The CRLs it serves, with their numbers and times (built before it listened).
        self.assertIn('revd_crl_number{crl="main.crl"}', before)
        self.assertEqual(after['revd_crl_number{crl="main.crl"}'], 1)
        self.assertEqual(after['revd_crl_number{crl="main-delta.crl"}'], 2)
        self.assertGreater(after['revd_crl_next_update_seconds{crl="main.crl"}'],
                           after['revd_crl_this_update_seconds{crl="main.crl"}'])
        self.assertLess(after['revd_crl_age_seconds{crl="main.crl"}'], 60)

    def test_json_logs(self):
        config = "[server]\nlog_format = json\nlog_level = debug\n" + self.issuer_config()
        r = self.start_revd(config=config)
        leaf = self.pki.leaf("good")
        status, _, _ = ocsp_post(r.port, ocsp_request(self.pki.issuing, [leaf["serial"]]))
        self.assertEqual(status, 200)
        r.expect_alive = False
        self.assertEqual(r.stop(), 0)
        lines = [l for l in r.stderr().splitlines() if l.strip()]
        self.assertGreater(len(lines), 3)
        levels = set()
        for l in lines:
            obj = json.loads(l)  # one object a line, nothing else
            self.assertEqual(sorted(obj), ["level", "msg", "ts"], l)
            self.assertRegex(obj["ts"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            levels.add(obj["level"])
        self.assertIn("info", levels)
        self.assertTrue(any("listening on" in json.loads(l)["msg"] for l in lines))

    def test_systemd_notify_and_watchdog(self):
        # systemd's side of Type=notify with WatchdogSec: a datagram socket revd reports to.
        path = os.path.join(self.tmp, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(10)
        r = self.start_revd(config=self.issuer_config(),
                            env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
        got = []
        while not any("READY=1" in m for m in got):
            got.append(sock.recv(4096).decode())
        ready = [m for m in got if "READY=1" in m][0]
        self.assertIn("STATUS=serving on 127.0.0.1:%d" % r.port, ready)
        # Fed every 200 ms while the workers turn.
        pings, t0 = 0, time.monotonic()
        while pings < 4:
            if sock.recv(4096).decode() == "WATCHDOG=1":
                pings += 1
        self.assertLess(time.monotonic() - t0, 5)
        r.expect_alive = False
        self.assertEqual(r.stop(), 0)
        rest = []
        sock.settimeout(2)
        try:
            while True:
                rest.append(sock.recv(4096).decode())
        except socket.timeout:
            pass
        self.assertIn("STOPPING=1", rest)
        sock.close()

    def test_user_switch_refused_without_a_user(self):
        config = "[server]\nuser = no-such-user-revd\n" + self.issuer_config()
        code, err = self.run_revd_fail(["--listen", "127.0.0.1:0"], config=config)
        self.assertEqual(code, 1, err)
        self.assertIn("[server] user: no user 'no-such-user-revd'", err)
        self.assertNotIn("revd 0.1.0 ready", err)

    def test_user_switch(self):
        if os.geteuid() != 0:
            self.skipTest("switching users needs root")
        import pwd
        try:
            nobody = pwd.getpwnam("nobody")
        except KeyError:
            self.skipTest("no user nobody")
        # Files readable by anyone: the keys are read before the switch anyway.
        config = "[server]\nuser = nobody\n" + self.issuer_config()
        r = self.start_revd(config=config)
        with open("/proc/%d/status" % r.proc.pid) as f:
            status = f.read()
        uid_line = [l for l in status.splitlines() if l.startswith("Uid:")][0]
        self.assertEqual(set(uid_line.split()[1:]), {str(nobody.pw_uid)}, uid_line)
        leaf = self.pki.leaf("good")
        st, _, _ = ocsp_post(r.port, ocsp_request(self.pki.issuing, [leaf["serial"]]))
        self.assertEqual(st, 200)
        self.assertIn("running as nobody", r.stderr())

    def test_staple(self):
        r = self.start_revd(config=self.issuer_config())
        url = "http://127.0.0.1:%d/" % r.port
        out = os.path.join(self.tmp, "staple.der")
        good, revoked = self.pki.leaf("good"), self.pki.leaf("revoked")
        rc, o, err = self.revd("staple", "--cert", good["cert"], "--issuer", self.pki.issuing,
                               "--url", url, "--out", out)
        self.assertEqual(rc, 0, err)
        self.assertIn("good", o)
        # What a TLS server would staple: openssl checks it as a client would.
        v = run(["openssl", "ocsp", "-respin", out, "-issuer", self.pki.issuing, "-cert",
                 good["cert"], "-CAfile", self.pki.root, "-verify_other", self.pki.chain])
        self.assertIn(b"Response verify OK", v.stdout + v.stderr)
        self.assertIn(b": good", v.stdout)
        with open(out, "rb") as f:
            kept = f.read()
        out2 = os.path.join(self.tmp, "revoked.der")
        rc, o, err = self.revd("staple", "--cert", revoked["cert"], "--issuer",
                               self.pki.issuing, "--url", url, "--out", out2)
        self.assertEqual(rc, 0, err)
        self.assertIn("revoked", o)
        # Failures leave the file as it was: a server that is no OCSP responder, and
        # nothing listening.
        class Plain(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = b"hello"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass
        plain = http.server.HTTPServer(("127.0.0.1", 0), Plain)
        threading.Thread(target=plain.serve_forever, daemon=True).start()
        self.addCleanup(plain.shutdown)
        for args, want in (
                (["--url", "http://127.0.0.1:%d/" % plain.server_address[1]],
                 "not an OCSP response"),
                (["--url", "http://127.0.0.1:%d/" % free_port(), "--timeout", "2"], "refused"),
        ):
            rc, o, err = self.revd("staple", "--cert", good["cert"], "--issuer",
                                   self.pki.issuing, "--out", out, *args)
            self.assertEqual(rc, 1, err)
            self.assertIn(want, err)
            with open(out, "rb") as f:
                self.assertEqual(f.read(), kept)
        # A certificate the issuer did not issue: a usage error.
        rc, o, err = self.revd("staple", "--cert", good["cert"], "--issuer", self.pki.root,
                               "--url", url, "--out", out)
        self.assertEqual(rc, 2, err)
        self.assertIn("did not issue", err)
        # --watch writes at once, then waits; SIGTERM ends it.
        out3 = os.path.join(self.tmp, "watch.der")
        p = subprocess.Popen([REVD_BIN, "staple", "--cert", good["cert"], "--issuer",
                              self.pki.issuing, "--url", url, "--out", out3, "--watch"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while not os.path.exists(out3) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertTrue(os.path.exists(out3))
        p.send_signal(15)
        self.assertEqual(p.wait(timeout=5), 0)
        p.stdout.close()
        p.stderr.close()

    def test_man_page(self):
        page = os.path.join(os.environ.get("REVD_SOURCE_DIR", ""), "man", "revd.1")
        self.assertTrue(os.path.exists(page), page)
        with open(page) as f:
            text = f.read()
        # Every command `revd help` lists is described there.
        rc, out, _ = self.revd("help")
        commands = [l.split()[0] for l in out.split("commands:")[1].splitlines() if l.strip()]
        self.assertIn("crl", commands)
        for c in commands:
            if c in ("version", "help"):
                continue
            self.assertRegex(text, r"\n\.B %s\b" % c, "the man page lacks %s" % c)
        if shutil.which("man") is None:
            self.skipTest("man is not installed: the page was not rendered")
        r = subprocess.run(["man", "--warnings", "-l", page], capture_output=True, timeout=30,
                           env=dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="0"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr.strip(), b"", r.stderr)
        self.assertIn(b"revd - OCSP responder", r.stdout)

    def test_help_everywhere(self):
        for cmd in (["serve"], ["db"], ["import"], ["revoke"], ["status"], ["presign"],
                    ["crl"], ["config"], ["healthcheck"], ["staple"]):
            with self.subTest(cmd=cmd[0]):
                rc, out, err = self.revd(*(cmd + ["--help"]))
                self.assertEqual(rc, 0, err)
                self.assertIn("usage: revd %s" % cmd[0], out)


if __name__ == "__main__":
    main()

"""Starting and stopping revd: signer checks, bad command lines and configuration files
(a non-zero exit and a message that names the problem), listen addresses, and a clean
exit on SIGTERM."""

import os
import signal
import socket
import subprocess
import time

from revd_harness import (REVD_BIN, UNAUTHORIZED, OcspResp, RawConn, Revd, RevdTestCase, log,
                          main, main_pki, ocsp_post, ocsp_request, post_request)


class StartupErrorTest(RevdTestCase):

    @classmethod
    def setUpClass(cls):
        cls.pki = main_pki()

    def issuer_config(self, extra=""):
        a = self.pki_args(self.pki)
        return ("[issuer main]\nca = %s\nsigner_cert = %s\nsigner_key = %s\nindex = %s\n%s"
                % (a[3], a[5], a[7], a[1], extra))

    def assert_refused(self, args=(), config=None, want=(), rc=None, listen=True):
        listen_args = ["--listen", "127.0.0.1:0"] if listen else []
        code, err = self.run_revd_fail(list(args) + listen_args, config=config)
        self.assertNotEqual(code, 0, "revd started with %s\n%s" % (args, err))
        if rc is not None:
            self.assertEqual(code, rc, err)
        self.assertNotIn("listening on", err)
        for w in want:
            self.assertIn(w, err)
        self.assertLess(len(err.splitlines()), 40)
        return err

    def test_signer_without_ocsp_signing(self):
        leaf = self.pki.leaf("good")
        self.assert_refused(["-index", self.pki.index, "-CA", self.pki.issuing,
                             "-rsigner", leaf["cert"], "-rkey", leaf["key"]],
                            want=["OCSPSigning", "issuer default"])

    def test_signer_key_mismatch(self):
        self.assert_refused(["-index", self.pki.index, "-CA", self.pki.issuing,
                             "-rsigner", self.pki.ocsp_cert, "-rkey", self.pki.issuing_key],
                            want=["does not match"])

    def test_signer_from_another_ca(self):
        # The issuing CA's responder cannot answer for the root.
        self.assert_refused(["-index", os.path.join(self.pki.ca_dir(1), "index.txt"),
                             "-CA", self.pki.root, "-rsigner", self.pki.ocsp_cert,
                             "-rkey", self.pki.ocsp_key], want=["not issued by this CA"])

    def test_unknown_option(self):
        err = self.assert_refused(self.pki_args(self.pki) + ["--bogus-option"], rc=2,
                                  want=["unknown or incomplete option", "--bogus-option"])
        self.assertIn("usage:", err)
        self.assert_refused(self.pki_args(self.pki) + ["--nonce"], rc=2, want=["--nonce"],
                            listen=False)
        self.assert_refused(self.pki_args(self.pki) + ["stray"], rc=2,
                            want=["unexpected argument 'stray'"])

    def test_missing_files(self):
        missing = os.path.join(self.tmp, "nope.pem")
        for flag in ("-index", "-CA", "-rsigner", "-rkey"):
            with self.subTest(flag=flag):
                args = self.pki_args(self.pki)
                args[args.index(flag) + 1] = missing
                self.assert_refused(args, want=[missing, "No such file"])
        code, err = self.run_revd_fail(["--config", missing])
        self.assertNotEqual(code, 0)
        self.assertIn(missing, err)
        self.assertIn("No such file", err)

    def test_not_a_certificate(self):
        args = self.pki_args(self.pki)
        args[args.index("-CA") + 1] = self.pki.ocsp_key
        self.assert_refused(args, want=["no certificate found"])

    def test_bad_index_at_startup(self):
        bad = os.path.join(self.tmp, "index.txt")
        with open(self.pki.index) as f:
            lines = f.readlines()
        lines.insert(3, "V\tnot a date\t\t01\tunknown\t/CN=x\n")
        with open(bad, "w") as f:
            f.writelines(lines)
        args = self.pki_args(self.pki)
        args[args.index("-index") + 1] = bad
        self.assert_refused(args, want=[bad, "line 4"])

    def test_malformed_ini(self):
        err = self.assert_refused(config=self.issuer_config("this line is not ini\n"),
                                  want=["bad.conf:6", "not an INI line"])
        self.assertEqual(err.count("\n"), 1, err)
        self.assert_refused(config="[server\nworkers = 1\n", want=["bad.conf:1"])
        self.assert_refused(config="workers = 1\n" + self.issuer_config(),
                            want=["outside any section"])

    def test_bad_values(self):
        for extra, want in (("[ocsp]\nvalidity = 1h\n", "validity: expected a duration from 8h to 10d, got '1h'"),
                            ("[ocsp]\nvalidity = 11d\n", "got '11d'"),
                            ("[ocsp]\nnonce = maybe\n", "nonce: expected one of ignore, sign, got 'maybe'"),
                            ("[ocsp]\nnot_issued = good\n", "not_issued: expected one of"),
                            ("[ocsp]\nmax_certids = 0\n", "max_certids"),
                            ("[server]\nheader_timeout = soon\n", "header_timeout"),
                            ("[server]\nbogus = 1\n", "unknown key 'bogus' in [server]"),
                            ("[bogus]\nx = 1\n", "unknown section [bogus]"),
                            ("[server]\nmax_url_bytes = 8192\nmax_header_bytes = 4096\n",
                             "max_url_bytes (8192) cannot exceed max_header_bytes (4096)"),
                            ("[ocsp]\nvalidity = 8h\nmax_age = 9h\n", "max_age cannot exceed validity"),
                            ("[server]\nlisten = nowhere\n", "listen address"),
                            ("[ocsp]\nindex_max_bytes = 1024\n", "1024-byte limit")):
            with self.subTest(config=extra.strip()):
                code, err = self.run_revd_fail(config=extra + self.issuer_config())
                self.assertNotEqual(code, 0, err)
                self.assertIn(want, err)

    def test_bad_validity_flags(self):
        self.assert_refused(self.pki_args(self.pki) + ["--nmin", "60"],
                            want=["validity", "8h to 10d", "60min"])
        self.assert_refused(self.pki_args(self.pki) + ["--ndays", "11"], want=["validity", "11d"])
        self.assert_refused(self.pki_args(self.pki) + ["--not-issued", "maybe"],
                            want=["not_issued", "maybe"])

    def test_issuer_incomplete(self):
        self.assert_refused(config="[issuer x]\nca = %s\n" % self.pki.issuing,
                            want=["[issuer x]", "'signer_key' is required"])
        self.assert_refused(config="[server]\nworkers = 1\n", want=["no issuer configured"])
        self.assert_refused(config="[issuer bad/name]\nca = x\n", want=["issuer names"])

    def test_listen_errors(self):
        for addr in ("127.0.0.1:99999", "127.0.0.1:", "[::1:80", "127.0.0.1:http"):
            with self.subTest(addr=addr):
                self.assert_refused(self.pki_args(self.pki) + ["--listen", addr], listen=False,
                                    want=["listen address '%s'" % addr])

    def test_port_in_use(self):
        first = self.start_for_pki(self.pki, name="first")
        second = Revd(self.pki_args(self.pki) + ["--not-issued", "unauthorized", "--listen",
                                                 "127.0.0.1:%d" % first.port], self.tmp, "second")
        second.expect_alive, second.probe = False, None
        self._revds.append(second)
        second.start(wait_ready=False)
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and second.alive() and "listening on" not in second.stderr():
            time.sleep(0.05)
        if second.alive():
            # Show what that means: connections are spread over both processes.
            seen = set()
            req = ocsp_request(self.pki.issuing, self.pki.unissued)
            for _ in range(40):
                seen.add(ocsp_post(first.port, req)[2])
            self.fail("a second revd started on the busy port %d instead of refusing; the "
                      "kernel now spreads connections over both processes (%d different "
                      "answers to one request: %s)\nsecond's log:\n%s"
                      % (first.port, len(seen), ", ".join(sorted(
                          "unauthorized" if b == UNAUTHORIZED else "signed"
                          for b in seen)), second.stderr()))
        second.proc.wait(timeout=5)
        self.assertNotEqual(second.proc.returncode, 0)
        self.assertIn("cannot listen", second.stderr())

    def test_help(self):
        r = subprocess.run([REVD_BIN, "serve", "--help"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=10)
        self.assertEqual(r.returncode, 0)
        self.assertIn(b"--not-issued", r.stdout)


class LifecycleTest(RevdTestCase):

    @classmethod
    def setUpClass(cls):
        cls.pki = main_pki()

    def test_sigterm_exits_cleanly(self):
        r = self.start_for_pki(self.pki, expect_alive=False)
        req = ocsp_request(self.pki.issuing, self.pki.leaf("good")["serial"])
        c = RawConn(r.port)
        self.addCleanup(c.close)
        c.send(post_request(req))
        self.assertEqual(c.read_response()[0], 200)  # an idle keep-alive connection stays
        t0 = time.monotonic()
        r.proc.send_signal(signal.SIGTERM)
        try:
            rc = r.proc.wait(timeout=7)
        except subprocess.TimeoutExpired:
            self.fail("revd did not exit within 7s of SIGTERM")
        self.assertEqual(rc, 0, r.stderr())
        self.assertLess(time.monotonic() - t0, 6.5)
        self.assertIn("stopped", r.stderr())
        self.assertTrue(c.wait_closed(1.0))
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", r.port), timeout=1).close()

    def test_sigterm_with_a_stalled_client(self):
        # A client stuck in the middle of its headers cannot hold the exit up for long.
        r = self.start_for_pki(self.pki, expect_alive=False)
        c = RawConn(r.port)
        self.addCleanup(c.close)
        c.send(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
        time.sleep(0.1)
        t0 = time.monotonic()
        r.proc.send_signal(signal.SIGTERM)
        try:
            rc = r.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.fail("revd did not exit within 10s of SIGTERM with a stalled client")
        log("exit with a stalled client took %.1fs" % (time.monotonic() - t0))
        self.assertEqual(rc, 0, r.stderr())

    def test_ipv6_and_two_addresses(self):
        if not socket.has_ipv6:
            self.skipTest("no IPv6")
        try:
            s = socket.socket(socket.AF_INET6)
            s.bind(("::1", 0))
            s.close()
        except OSError:
            self.skipTest("no ::1")
        req = ocsp_request(self.pki.issuing, self.pki.leaf("good")["serial"])
        r = self.start_revd(self.pki_args(self.pki) + ["--listen", "[::1]:0"], listen=False,
                            probe=None)
        self.assertEqual(r.addrs[0][0], "::1")
        st, h, body = ocsp_post(r.port, req, host="::1")
        self.assertEqual(OcspResp(body).singles[0]["status"], "good")


if __name__ == "__main__":
    main()

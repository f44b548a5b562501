"""Concurrency and the answer cache: concurrent misses for one key share one signing,
many keys at once, a small cache that evicts, the signing budget (tryLater), clients
that vanish mid-request, max_connections, half-closed and long pipelines, big GET paths,
absolute-form targets and SIGHUP. Every loop is bounded."""

import signal
import socket
import struct
import threading
import time

from revd_harness import (UNAUTHORIZED, OcspResp, RawConn, RevdTestCase, b64_path, certid, ctx,
                          http_request, log, main, main_pki, ocsp_post, ocsp_request,
                          post_request, seq, simple_request, tlv)

TRY_LATER = bytes.fromhex("30030a0103")


def run_threads(n, fn, timeout=30):
    """Runs fn(i) in n threads started together; returns their results (or exceptions)."""
    barrier = threading.Barrier(n)
    results = [None] * n

    def body(i):
        try:
            barrier.wait(timeout=10)
            results[i] = fn(i)
        except Exception as e:  # noqa: BLE001 - reported by the caller
            results[i] = e

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "threads still running after %ds" % timeout
    return results


class LoadCacheTest(RevdTestCase):

    @classmethod
    def setUpClass(cls):
        cls.pki = main_pki()
        cls.req = ocsp_request(cls.pki.issuing, cls.pki.leaf("good")["serial"])

    def config(self, extra):
        a = self.pki_args(self.pki)
        return extra + ("\n[issuer main]\nca = %s\nsigner_cert = %s\nsigner_key = %s\n"
                        "index = %s\n" % (a[3], a[5], a[7], a[1]))

    def no_errors(self, results):
        errors = [r for r in results if isinstance(r, Exception)]
        self.assertEqual(errors, [], "%d of %d clients failed" % (len(errors), len(results)))

    def test_concurrent_misses_share_one_signing(self):
        r = self.start_for_pki(self.pki, probe=self.req)
        leaf = self.pki.leaf_by_reason("keyCompromise", True)
        der = ocsp_request(self.pki.issuing, leaf["serial"])
        results = run_threads(24, lambda i: ocsp_post(r.port, der))
        self.no_errors(results)
        bodies = {res[2] for res in results}
        self.assertEqual({res[0] for res in results}, {200})
        # ECDSA signatures are randomised: one body means one signing, shared.
        self.assertEqual(len(bodies), 1, "%d different answers to one cold key" % len(bodies))
        self.assertEqual(OcspResp(bodies.pop()).singles[0]["status"], "revoked")

    def test_concurrent_many_keys(self):
        r = self.start_for_pki(self.pki, probe=self.req)
        leaves = self.pki.leaves
        want = {l["serial"]: ("good" if l["status"] in ("good", "expired") else "revoked")
                for l in leaves}

        def client(i):
            leaf = leaves[i % len(leaves)]
            der = ocsp_request(self.pki.issuing, leaf["serial"], "sha256" if i % 3 == 0 else "sha1")
            out = []
            for k in range(4):
                if (i + k) % 2:
                    st, h, body = http_request(r.port, "GET", "/" + b64_path(der))
                else:
                    st, h, body = ocsp_post(r.port, der)
                s = OcspResp(body).singles[0]
                out.append((st, int(s["serial"], 16), s["status"]))
            return leaf["serial"], out

        results = run_threads(32, client)
        self.no_errors(results)
        for serial, out in results:
            for st, got_serial, status in out:
                self.assertEqual((st, got_serial, status), (200, int(serial, 16), want[serial]))

    def test_concurrent_unauthorized(self):
        r = self.start_for_pki(self.pki, extra=["--not-issued", "unauthorized"], probe=self.req)
        der = ocsp_request(self.pki.issuing, self.pki.unissued)
        for _ in range(2):
            results = run_threads(16, lambda i: ocsp_post(r.port, der))
            self.no_errors(results)
            self.assertEqual({res[2] for res in results}, {UNAUTHORIZED})

    def test_small_cache_evicts(self):
        r = self.start_revd(config=self.config("[ocsp]\ncache_entries = 16\n"), probe=self.req)
        good = self.pki.leaf("good")["serial"]
        c = RawConn(r.port)
        self.addCleanup(c.close)
        serials = ["%X" % (0x7A0000 + i) for i in range(400)] + [good]
        for rnd in range(2):
            for s in serials:
                c.send(post_request(ocsp_request(self.pki.issuing, s)))
                st, h, body = c.read_response()
                single = OcspResp(body).singles[0]
                self.assertEqual(int(single["serial"], 16), int(s, 16))
                self.assertEqual(single["status"], "good" if s == good else "unknown")

    def test_sign_budget(self):
        r = self.start_revd(config=self.config("[ocsp]\nsign_budget = 1\n"), probe=self.req)

        def client(i):
            der = ocsp_request(self.pki.issuing, "%X" % (0x5B0000 + i), "sha1", nonce=None)
            return ocsp_post(r.port, der)

        results = run_threads(32, client)
        self.no_errors(results)
        n_try_later = 0
        for st, h, body in results:
            self.assertEqual(st, 200)
            if body == TRY_LATER:
                n_try_later += 1
                self.assertTrue("no-store" in h["cache-control"] or "no-cache" in h["cache-control"])
            else:
                self.assertEqual(OcspResp(body).status, 0)
        log("sign_budget=1: %d of 32 concurrent cold requests answered tryLater" % n_try_later)
        if n_try_later:
            # A refused fill is not remembered: asking again is answered.
            st, h, body = client(0)
            for _ in range(20):
                if body != TRY_LATER:
                    break
                time.sleep(0.05)
                st, h, body = client(0)
            self.assertEqual(OcspResp(body).status, 0)

    def test_clients_vanish_mid_request(self):
        r = self.start_for_pki(self.pki, extra=["--nonce", "sign"], probe=self.req)
        for i in range(60):
            s = socket.create_connection(("127.0.0.1", r.port), timeout=5)
            if i % 2:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
            nonce = b"n%03d" % i if i % 3 == 0 else None  # live signing for some
            serials = [self.pki.leaves[i % 24]["serial"]] + (
                [self.pki.leaves[(i + 1) % 24]["serial"]] if i % 4 == 0 else [])
            data = post_request(ocsp_request(self.pki.issuing, serials, nonce=nonce))
            s.sendall(data if i % 5 else data[:len(data) // 2])
            s.close()
        time.sleep(0.3)
        self.assertTrue(r.alive())
        st, h, body = ocsp_post(r.port, self.req)
        self.assertEqual(OcspResp(body).singles[0]["status"], "good")

    def test_max_connections(self):
        r = self.start_revd(config=self.config("[server]\nworkers = 1\nmax_connections = 3\n"),
                            probe=self.req)
        held = [RawConn(r.port) for _ in range(3)]
        for c in held:
            self.addCleanup(c.close)
            c.send(post_request(self.req))
            self.assertEqual(c.read_response()[0], 200)
        extra = RawConn(r.port)
        self.addCleanup(extra.close)
        try:
            extra.send(post_request(self.req))
        except OSError:
            pass
        self.assertTrue(extra.wait_closed(2.0), "a 4th connection was served with max 3")
        self.assertEqual(extra.buf, b"")
        held.pop().close()
        time.sleep(0.1)
        # Connections that come and go do not use up the allowance.
        for i in range(20):
            c = RawConn(r.port)
            try:
                c.send(post_request(self.req))
                self.assertEqual(c.read_response(timeout=2.0)[0], 200, "connection %d" % i)
            finally:
                c.close()

    def test_half_closed_pipeline(self):
        r = self.start_for_pki(self.pki, probe=self.req)
        for rnd in range(2):  # cold, then cached
            leaves = self.pki.leaves[:4]
            c = RawConn(r.port)
            self.addCleanup(c.close)
            c.send(b"".join(post_request(ocsp_request(self.pki.issuing, l["serial"]))
                            for l in leaves))
            c.sock.shutdown(socket.SHUT_WR)
            for l in leaves:
                st, h, body = c.read_response()
                self.assertEqual(int(OcspResp(body).singles[0]["serial"], 16), int(l["serial"], 16))
            self.assertTrue(c.wait_closed(2.0))

    def test_long_pipeline(self):
        r = self.start_for_pki(self.pki, probe=self.req)
        n = 400
        reqs, want = [], []
        for i in range(n):
            leaf = self.pki.leaves[i % 24]
            der = ocsp_request(self.pki.issuing, leaf["serial"], "sha256" if i % 7 == 0 else "sha1")
            reqs.append(post_request(der) if i % 2 else simple_request("GET", "/" + b64_path(der)))
            want.append(int(leaf["serial"], 16))
        data = b"".join(reqs)
        self.assertGreater(len(data), 64 * 1024)
        c = RawConn(r.port, timeout=10)
        self.addCleanup(c.close)
        sender = threading.Thread(target=c.send, args=(data,), daemon=True)
        sender.start()  # write and read at once: neither side may wait for the other
        for i in range(n):
            st, h, body = c.read_response(timeout=10)
            self.assertEqual(st, 200, "response %d" % i)
            self.assertEqual(int(OcspResp(body).singles[0]["serial"], 16), want[i],
                             "response %d out of order" % i)
        sender.join(5)
        self.assertFalse(sender.is_alive())

    def test_big_get_path(self):
        # A request over 4 KiB (a long requestorName), by GET: decoded beyond any stack
        # buffer, and answered as by POST.
        r = self.start_revd(config=self.config(
            "[server]\nmax_url_bytes = 16k\nmax_header_bytes = 32k\n"), probe=self.req)
        # Name ::= SEQUENCE OF RelativeDistinguishedName (a SET) of AttributeTypeAndValue.
        name = seq(tlv(0x31, seq(tlv(0x06, b"\x55\x04\x03"), tlv(0x0C, b"x" * 4500))))
        leaf = self.pki.leaf_by_reason("superseded")
        der = seq(seq(ctx(1, ctx(4, name)), seq(seq(certid(self.pki.issuing, leaf["serial"])))))
        self.assertGreater(len(der), 4600)
        st, h, post_body = ocsp_post(r.port, der)
        self.assertEqual(OcspResp(post_body).singles[0]["status"], "revoked")
        st, h, get_body = http_request(r.port, "GET", "/" + b64_path(der))
        self.assertEqual(st, 200)
        self.assertEqual(get_body, post_body)

    def test_absolute_form_target(self):
        r = self.start_for_pki(self.pki, extra=["--path", "/ocsp"], probe=self.req)
        b64 = b64_path(self.req)
        c = RawConn(r.port)
        self.addCleanup(c.close)
        c.send(simple_request("GET", "http://127.0.0.1:%d/ocsp/%s" % (r.port, b64)))
        st, h, body = c.read_response()
        self.assertEqual(st, 200)
        self.assertEqual(OcspResp(body).singles[0]["status"], "good")
        c.send(simple_request("GET", "http://127.0.0.1:%d/other/%s" % (r.port, b64)))
        self.assertEqual(c.read_response()[0], 404)

    def test_sighup_keeps_serving(self):
        r = self.start_for_pki(self.pki, probe=self.req)
        r.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and "SIGHUP" not in r.stderr():
            time.sleep(0.05)
        self.assertIn("SIGHUP", r.stderr())
        self.assertTrue(r.alive())
        st, h, body = ocsp_post(r.port, self.req)
        self.assertEqual(OcspResp(body).status, 0)


if __name__ == "__main__":
    main()

"""HTTP/1.x behaviour over raw sockets: keep-alive, pipelining, HTTP/1.0, Host, Expect,
methods, body and header limits, framing errors, and timeouts. After every test the
harness checks that revd is alive and still answers a normal request."""

import select
import time

from revd_harness import (MALFORMED, OcspResp, RawConn, RevdTestCase, b64_path, main, main_pki,
                          ocsp_request, post_request, simple_request)

LIMITS = """
[server]
workers = 2
max_body_bytes = 2048
max_url_bytes = 1024
max_header_bytes = 4096
max_headers = 20
"""

TIMEOUTS = """
[server]
workers = 1
header_timeout = 400ms
body_timeout = 400ms
idle_timeout = 500ms
"""


class HttpBase(RevdTestCase):
    config = LIMITS

    @classmethod
    def setUpClass(cls):
        cls.pki = main_pki()
        p = cls.pki
        cls.good = p.leaf("good")
        cls.revoked = p.leaf_by_reason("keyCompromise")
        cls.req_good = ocsp_request(p.issuing, cls.good["serial"])
        cls.req_revoked = ocsp_request(p.issuing, cls.revoked["serial"])

    def setUp(self):
        a = self.pki_args(self.pki)
        config = self.config + ("[issuer main]\nca = %s\nsigner_cert = %s\nsigner_key = %s\n"
                                "index = %s\n" % (a[3], a[5], a[7], a[1]))
        self.revd = self.start_revd(config=config, probe=self.req_good)
        self.port = self.revd.port

    def conn(self, timeout=5.0):
        c = RawConn(self.port, timeout=timeout)
        self.addCleanup(c.close)
        return c

    def assert_ocsp(self, resp, serial, status):
        st, h, body = resp
        self.assertEqual(st, 200, body[:200])
        self.assertEqual(h["content-type"], ["application/ocsp-response"])
        parsed = OcspResp(body)
        self.assertEqual(parsed.status, 0)
        self.assertEqual(int(parsed.singles[0]["serial"], 16), int(serial, 16))
        self.assertEqual(parsed.singles[0]["status"], status)

    def assert_error_and_close(self, c, status, close=True):
        st, h, body = c.read_response()
        self.assertEqual(st, status, body)
        if close:
            self.assertEqual(h.get("connection"), ["close"])
            self.assertTrue(c.wait_closed(2.0), "connection left open after %d" % status)
        return h


class HttpProtocolTest(HttpBase):

    def test_keep_alive(self):
        c = self.conn()
        for i in range(6):
            der, leaf, want = ((self.req_good, self.good, "good") if i % 2 == 0 else
                               (self.req_revoked, self.revoked, "revoked"))
            c.send(post_request(der))
            resp = c.read_response()
            self.assert_ocsp(resp, leaf["serial"], want)
            self.assertNotIn("connection", resp[1])
        self.assertFalse(c.wait_closed(0.2))

    def test_pipelining(self):
        p = self.pki
        leaves = [p.leaf("good", 4), p.leaf_by_reason("superseded"), p.leaf("good", 5),
                  p.leaf("expired"), p.leaf_by_reason("cessationOfOperation")]
        multi = ocsp_request(p.issuing, [leaves[0]["serial"], leaves[1]["serial"]])
        reqs = [post_request(ocsp_request(p.issuing, leaves[0]["serial"])),
                simple_request("GET", "/" + b64_path(ocsp_request(p.issuing, leaves[1]["serial"]))),
                post_request(multi),  # signed live, on a worker thread
                post_request(ocsp_request(p.issuing, leaves[2]["serial"])),
                simple_request("HEAD", "/" + b64_path(ocsp_request(p.issuing, leaves[3]["serial"]))),
                simple_request("GET", "/" + b64_path(ocsp_request(p.issuing, leaves[4]["serial"])))]
        c = self.conn()
        c.send(b"".join(reqs))  # one write: every request is a cache miss here
        self.assert_ocsp(c.read_response(), leaves[0]["serial"], "good")
        self.assert_ocsp(c.read_response(), leaves[1]["serial"], "revoked")
        st, h, body = c.read_response()
        parsed = OcspResp(body)
        self.assertEqual([int(s["serial"], 16) for s in parsed.singles],
                         [int(leaves[0]["serial"], 16), int(leaves[1]["serial"], 16)])
        self.assertEqual([s["status"] for s in parsed.singles], ["good", "revoked"])
        self.assert_ocsp(c.read_response(), leaves[2]["serial"], "good")
        st, h, body = c.read_response(head=True)
        self.assertEqual((st, body), (200, b""))
        self.assertGreater(int(h["content-length"][0]), 100)
        self.assert_ocsp(c.read_response(), leaves[4]["serial"], "revoked")
        self.assertFalse(c.wait_closed(0.2))
        self.assertEqual(c.buf, b"")

    def test_pipelining_many_small_writes(self):
        # The same pipeline split at awkward places.
        data = b"".join(post_request(self.req_good if i % 2 else self.req_revoked)
                        for i in range(8))
        c = self.conn()
        for i in range(0, len(data), 37):
            c.send(data[i:i + 37])
        for i in range(8):
            leaf, want = (self.good, "good") if i % 2 else (self.revoked, "revoked")
            self.assert_ocsp(c.read_response(), leaf["serial"], want)

    def test_http10(self):
        for host in (False, True):
            with self.subTest(host=host):
                c = self.conn()
                c.send(simple_request("POST", "/", self.req_good, version="HTTP/1.0", host=host,
                                      headers=[("Content-Type", "application/ocsp-request")]))
                resp = c.read_response()
                self.assert_ocsp(resp, self.good["serial"], "good")
                self.assertTrue(c.wait_closed(2.0), "HTTP/1.0 without keep-alive stays open")
        # GET over HTTP/1.0 without Host.
        c = self.conn()
        c.send(simple_request("GET", "/" + b64_path(self.req_revoked), version="HTTP/1.0",
                              host=False))
        self.assert_ocsp(c.read_response(), self.revoked["serial"], "revoked")
        self.assertTrue(c.wait_closed(2.0))

    def test_http10_keep_alive(self):
        c = self.conn()
        for i in range(3):
            c.send(simple_request("POST", "/", self.req_good, version="HTTP/1.0",
                                  headers=[("Connection", "keep-alive")]))
            resp = c.read_response()
            self.assert_ocsp(resp, self.good["serial"], "good")
            self.assertEqual([v.lower() for v in resp[1].get("connection", [])], ["keep-alive"])
        # The last one without keep-alive: answered, then closed.
        c.send(simple_request("POST", "/", self.req_good, version="HTTP/1.0"))
        self.assert_ocsp(c.read_response(), self.good["serial"], "good")
        self.assertTrue(c.wait_closed(2.0))

    def test_connection_close_http11(self):
        c = self.conn()
        c.send(post_request(self.req_good, extra=[("Connection", "close")]))
        resp = c.read_response()
        self.assert_ocsp(resp, self.good["serial"], "good")
        self.assertEqual(resp[1].get("connection"), ["close"])
        self.assertTrue(c.wait_closed(2.0))

    def test_http11_without_host(self):
        c = self.conn()
        c.send(b"POST / HTTP/1.1\r\nContent-Type: application/ocsp-request\r\nContent-Length: %d"
               b"\r\n\r\n" % len(self.req_good) + self.req_good)
        self.assert_error_and_close(c, 400)
        c = self.conn()
        c.send(b"GET /" + b64_path(self.req_good).encode() + b" HTTP/1.1\r\n\r\n")
        self.assert_error_and_close(c, 400)

    def test_two_host_headers(self):
        # RFC 9112 3.2: a server MUST answer 400 to an HTTP/1.1 request with more than one
        # Host header (they could name different hosts to different parsers).
        c = self.conn()
        c.send(b"GET /" + b64_path(self.req_good).encode() +
               b" HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n")
        st, h, body = c.read_response()
        self.assertEqual(st, 400, "two Host headers answered %d" % st)

    def test_pipeline_then_garbage(self):
        # A good request, then garbage, in one write: the answer, then 400, then close.
        c = self.conn()
        c.send(post_request(self.req_revoked) + b"\x00\x01garbage\r\n\r\n")
        self.assert_ocsp(c.read_response(), self.revoked["serial"], "revoked")
        self.assert_error_and_close(c, 400)

    def test_expect_100_continue(self):
        c = self.conn()
        c.send(simple_request("POST", "/", headers=[
            ("Content-Type", "application/ocsp-request"),
            ("Content-Length", str(len(self.req_good))), ("Expect", "100-continue")]))
        st, h, body = c.read_response()
        self.assertEqual(st, 100)
        self.assertEqual(body, b"")
        c.send(self.req_good)
        self.assert_ocsp(c.read_response(), self.good["serial"], "good")
        # Keep-alive still works after it.
        c.send(post_request(self.req_revoked))
        self.assert_ocsp(c.read_response(), self.revoked["serial"], "revoked")

    def test_expect_with_too_large_body(self):
        # No 100 Continue for a body that will be refused anyway.
        c = self.conn()
        c.send(simple_request("POST", "/", headers=[
            ("Content-Length", "4096"), ("Expect", "100-continue")]))
        self.assert_error_and_close(c, 413)

    def test_soft_errors_keep_the_connection(self):
        # 404s and malformedRequest answers are complete exchanges: keep-alive goes on.
        c = self.conn()
        for req, want in ((simple_request("GET", "/"), 404),
                          (simple_request("GET", "/!!!"), 200),
                          (post_request(b"\x30\x00"), 200),
                          (simple_request("HEAD", "/"), 404)):
            c.send(req)
            st, h, body = c.read_response(head=req.startswith(b"HEAD"))
            self.assertEqual(st, want)
            self.assertNotIn("connection", h)
        c.send(post_request(self.req_good))
        self.assert_ocsp(c.read_response(), self.good["serial"], "good")

    def test_expect_unknown(self):
        c = self.conn()
        c.send(post_request(self.req_good, extra=[("Expect", "something-else")]))
        self.assert_error_and_close(c, 417)

    def test_methods_not_allowed(self):
        for method in ("PUT", "DELETE", "OPTIONS", "PATCH"):
            with self.subTest(method=method):
                c = self.conn()
                body = self.req_good if method in ("PUT", "PATCH") else b""
                c.send(simple_request(method, "/", body))
                h = self.assert_error_and_close(c, 405)
                allow = [m.strip() for m in h["allow"][0].split(",")]
                self.assertEqual(sorted(allow), ["GET", "HEAD", "POST"])

    def test_body_too_large(self):
        # Announced by Content-Length: refused before the body is read.
        c = self.conn()
        c.send(simple_request("POST", "/", headers=[
            ("Content-Type", "application/ocsp-request"), ("Content-Length", "2049")]))
        self.assert_error_and_close(c, 413)
        # The limit itself is allowed (a malformed request, but not a 413).
        c = self.conn()
        c.send(post_request(b"\x30" + b"\x00" * 2047))
        st, h, body = c.read_response()
        self.assertEqual((st, body), (200, MALFORMED))

    def test_body_too_large_sent_at_once(self):
        # The client sends a whole oversized body with the headers: the 413 must still
        # reach it, even when revd closes before reading everything.
        for size in (6000, 100000):
            with self.subTest(size=size):
                c = self.conn()
                try:
                    c.send(post_request(b"\x30" * size))
                except OSError:
                    pass  # reset while sending: the answer must still be readable
                self.assert_error_and_close(c, 413)

    @staticmethod
    def chunked(body, size):
        out = b""
        for i in range(0, len(body), size):
            part = body[i:i + size]
            out += b"%x\r\n" % len(part) + part + b"\r\n"
        return out + b"0\r\n\r\n"

    def test_chunked(self):
        c = self.conn()
        c.send(simple_request("POST", "/", headers=[("Content-Type", "application/ocsp-request"),
                                                    ("Transfer-Encoding", "chunked")]))
        c.send(self.chunked(self.req_good, 10))
        self.assert_ocsp(c.read_response(), self.good["serial"], "good")
        # Beyond max_body_bytes in total, though each chunk is small.
        c.send(simple_request("POST", "/", headers=[("Content-Type", "application/ocsp-request"),
                                                    ("Transfer-Encoding", "chunked")]))
        c.send(self.chunked(b"\x30" * 2100, 500))
        self.assert_error_and_close(c, 413)

    def test_content_length_and_chunked(self):
        c = self.conn()
        c.send(simple_request("POST", "/", headers=[
            ("Content-Length", str(len(self.req_good))), ("Transfer-Encoding", "chunked")]) +
            self.chunked(self.req_good, 50))
        self.assert_error_and_close(c, 400)

    def test_two_content_lengths(self):
        n = len(self.req_good)
        c = self.conn()
        c.send(simple_request("POST", "/", headers=[
            ("Content-Length", str(n)), ("Content-Length", str(n + 1))]) + self.req_good + b"\x00")
        self.assert_error_and_close(c, 400)

    def test_malformed_content_length(self):
        for value in ("abc", "-1", "1 2", "0x54", "99999999999999999999999999"):
            with self.subTest(value=value):
                c = self.conn()
                c.send(simple_request("POST", "/", headers=[("Content-Length", value)]) +
                       self.req_good)
                st, h, body = c.read_response()
                self.assertIn(st, (400, 413) if value.startswith("9999") else (400,))
                self.assertTrue(c.wait_closed(2.0))

    def test_url_too_long(self):
        c = self.conn()
        c.send(simple_request("GET", "/" + "A" * 1100))
        self.assert_error_and_close(c, 414)
        # Just under the limit is not a 414 (a bad base64 request: malformedRequest).
        c = self.conn()
        c.send(simple_request("GET", "/" + "A" * 1000 + "!"))
        st, h, body = c.read_response()
        self.assertEqual((st, body), (200, MALFORMED))

    def test_too_many_headers(self):
        c = self.conn()
        c.send(post_request(self.req_good, extra=[("X-H%d" % i, "v") for i in range(25)]))
        self.assert_error_and_close(c, 431)
        # At the limit (Host, Content-Type, Content-Length + 17 = 20) it works.
        c = self.conn()
        c.send(post_request(self.req_good, extra=[("X-H%d" % i, "v") for i in range(17)]))
        self.assert_ocsp(c.read_response(), self.good["serial"], "good")

    def test_headers_too_large(self):
        c = self.conn()
        c.send(post_request(self.req_good, extra=[("X-Big", "b" * 5000)]))
        self.assert_error_and_close(c, 431)
        c = self.conn()
        c.send(post_request(self.req_good, extra=[("X-B%d" % i, "b" * 300) for i in range(15)]))
        self.assert_error_and_close(c, 431)

    def test_garbage(self):
        for junk in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,  # TLS hello
                     b"HELLO WORLD\r\n\r\n", b"GET\r\n\r\n", b"\x00\xff\xfe\r\n\r\n",
                     b"POST / HTTP/9.9\r\nHost: x\r\n\r\n"):
            with self.subTest(junk=junk[:12]):
                c = self.conn()
                c.send(junk)
                st, h, body = c.read_response()
                self.assertEqual(st, 400)
                self.assertTrue(c.wait_closed(2.0))


class HttpTimeoutTest(HttpBase):
    config = TIMEOUTS

    def test_header_timeout(self):
        c = self.conn()
        t0 = time.monotonic()
        c.send(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
        st, h, body = c.read_response(timeout=3.0)
        dt = time.monotonic() - t0
        self.assertEqual(st, 408)
        self.assertTrue(c.wait_closed(1.0))
        self.assertGreater(dt, 0.3)
        self.assertLess(dt, 1.0, "408 after %.2fs with header_timeout 400ms" % dt)

    def test_header_timeout_trickle(self):
        # One byte every 100 ms: the header timeout counts from the first byte, so the
        # client does not keep the connection by trickling.
        c = self.conn()
        data = simple_request("POST", "/", headers=[("X-Slow", "x" * 40)])
        t0 = time.monotonic()
        got = None
        for i in range(min(len(data), 20)):
            try:
                c.send(data[i:i + 1])
            except OSError:
                break
            if select.select([c.sock], [], [], 0.1)[0]:
                break  # the answer (or the close) is there
        try:
            got = c.read_response(timeout=2.0)
        except (EOFError, OSError):
            pass
        dt = time.monotonic() - t0
        self.assertIsNotNone(got, "no 408 for a trickling client")
        self.assertEqual(got[0], 408)
        self.assertLess(dt, 1.2)

    def test_body_timeout(self):
        c = self.conn()
        c.send(simple_request("POST", "/", headers=[("Content-Length", str(len(self.req_good)))])
               + self.req_good[:10])
        t0 = time.monotonic()
        st, h, body = c.read_response(timeout=3.0)
        dt = time.monotonic() - t0
        self.assertEqual(st, 408)
        self.assertTrue(c.wait_closed(1.0))
        self.assertLess(dt, 1.0)

    def test_idle_keep_alive_closed(self):
        c = self.conn()
        c.send(post_request(self.req_good))
        self.assert_ocsp(c.read_response(), self.good["serial"], "good")
        t0 = time.monotonic()
        self.assertTrue(c.wait_closed(3.0), "idle connection not closed")
        dt = time.monotonic() - t0
        self.assertGreater(dt, 0.35)
        self.assertLess(dt, 1.2, "idle close after %.2fs with idle_timeout 500ms" % dt)
        self.assertEqual(c.buf, b"", "idle close should send nothing")

    def test_silent_connection_closed(self):
        c = self.conn()
        t0 = time.monotonic()
        self.assertTrue(c.wait_closed(3.0), "a connection that never sends stays open")
        self.assertLess(time.monotonic() - t0, 1.2)

    def test_slow_client_does_not_block_others(self):
        slow = self.conn()
        slow.send(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 84\r\n\r\n\x30\x52")
        slow2 = self.conn()
        slow2.send(b"GET /MEYw")
        time.sleep(0.05)
        worst = 0.0
        for i in range(5):
            c = self.conn()
            t0 = time.monotonic()
            c.send(post_request(self.req_revoked if i % 2 else self.req_good))
            resp = c.read_response(timeout=2.0)
            worst = max(worst, time.monotonic() - t0)
            self.assertEqual(resp[0], 200)
        self.assertLess(worst, 0.2, "answered in %.3fs while a slow client stalls" % worst)
        # The stalled clients get their 408 in the end.
        self.assertEqual(slow.read_response(timeout=2.0)[0], 408)
        self.assertEqual(slow2.read_response(timeout=2.0)[0], 408)


if __name__ == "__main__":
    main()

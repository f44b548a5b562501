"""Time: revd under libfaketime (Debian package `faketime`), its wall clock running 7200
times faster (8 hours of validity pass in 4 real seconds; timers use the monotonic clock,
which stays real). A pre-signed answer whose nextUpdate has passed is never served,
answers are re-signed once past half their validity, and max-age never outlives
nextUpdate. Skipped when libfaketime is not installed."""

import glob
import os
import time
import unittest

from revd_harness import (OcspResp, RevdTestCase, b64_path, http_request, log, main, main_pki,
                          ocsp_post, ocsp_request)

SPEED = 7200
VALIDITY = 8 * 3600
LIBFAKETIME = (glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1") +
               glob.glob("/usr/lib/faketime/libfaketimeMT.so.1") +
               glob.glob("/usr/local/lib/faketime/libfaketimeMT.so.1"))
if not LIBFAKETIME:
    raise SystemExit("libfaketime is missing: run scripts/install-deps.sh --test")
SLACK = 20 * 60  # fake seconds: 0.17 s of real time at this speed


class ExpiryTest(RevdTestCase):

    @classmethod
    def setUpClass(cls):
        cls.pki = main_pki()

    def setUp(self):
        env = {"LD_PRELOAD": LIBFAKETIME[0], "FAKETIME": "+0 x%d" % SPEED,
               "FAKETIME_DONT_FAKE_MONOTONIC": "1", "FAKETIME_NO_CACHE": "1",
               # In the sanitizer build ASan wants to be loaded first; libfaketime only
               # wraps the clock functions, so its going first is harmless.
               "ASAN_OPTIONS": ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"),
                                                      "verify_asan_link_order=0"]))}
        self.leaf = self.pki.leaf("good", 2)
        self.req = ocsp_request(self.pki.issuing, self.leaf["serial"])
        self.revd = self.start_for_pki(self.pki, extra=["--nmin", "480", "--nonce", "sign"],
                                       env=env, probe=self.req)
        self.nonce_n = 0

    def fake_now(self):
        """revd's own clock: the producedAt of a live answer (a nonce request)."""
        self.nonce_n += 1
        der = ocsp_request(self.pki.issuing, self.leaf["serial"], nonce=b"t%07d" % self.nonce_n)
        st, h, body = ocsp_post(self.revd.port, der)
        return OcspResp(body).produced_at

    def presigned(self):
        st, h, body = ocsp_post(self.revd.port, self.req)
        self.assertEqual(st, 200)
        resp = OcspResp(body)
        self.assertIsNone(resp.nonce())
        return resp, h

    def test_clock_runs_fast(self):
        a = self.fake_now()
        time.sleep(0.5)
        b = self.fake_now()
        self.assertGreater(b - a, 0.5 * SPEED * 0.8, "libfaketime is not in effect")

    def test_expired_answer_not_served(self):
        first, _ = self.presigned()
        n0 = first.singles[0]["next_update"]
        self.assertEqual(n0 - first.singles[0]["this_update"], VALIDITY)
        # Nobody asks while it ages past nextUpdate (no refresh is triggered)...
        deadline = time.monotonic() + 15
        while self.fake_now() < n0 + 3600 and time.monotonic() < deadline:
            time.sleep(0.1)
        now = self.fake_now()
        self.assertGreater(now, n0)
        # ...then the stale one must not come back.
        resp, h = self.presigned()
        nu = resp.singles[0]["next_update"]
        self.assertGreater(nu, now, "served an answer whose nextUpdate (%d) has passed (now %d)"
                           % (nu, now))
        self.assertGreaterEqual(resp.produced_at, n0)
        # GET too (the same cache entry).
        st, h, body = http_request(self.revd.port, "GET", "/" + b64_path(self.req))
        self.assertGreater(OcspResp(body).singles[0]["next_update"], now)

    def test_refresh_before_half_life(self):
        first, _ = self.presigned()
        p0, n0 = first.produced_at, first.singles[0]["next_update"]
        seen = [p0]
        deadline = time.monotonic() + 12
        polls = 0
        while time.monotonic() < deadline:
            now = self.fake_now()
            resp, h = self.presigned()
            polls += 1
            nu = resp.singles[0]["next_update"]
            self.assertGreater(nu, now - SLACK, "expired answer served (nextUpdate %d, now %d)"
                               % (nu, now))
            max_age = int(h["cache-control"].split("max-age=")[1].split(",")[0])
            self.assertLessEqual(now + max_age, nu + SLACK, "max-age outlives nextUpdate")
            if resp.produced_at != seen[-1]:
                seen.append(resp.produced_at)
            if len(seen) >= 3 or now > p0 + 2 * VALIDITY:
                break
            time.sleep(0.03)
        log("produced at (fake hours after the first): %s over %d polls"
            % ([round((p - p0) / 3600, 2) for p in seen], polls))
        self.assertGreaterEqual(len(seen), 3, "answers were not re-signed")
        # Each re-signing comes due at half the validity, less a per-serial spread of up
        # to an eighth (so answers signed together are not all re-signed together), and
        # happens before the old one expires.
        for prev, nxt in zip(seen, seen[1:]):
            self.assertGreaterEqual(nxt - prev, VALIDITY * 3 / 8 - SLACK)
            self.assertLess(nxt - prev, VALIDITY * 5 / 8)


if __name__ == "__main__":
    main()

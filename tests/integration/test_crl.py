"""CRLs published by revd for an index.txt issuer ([crl] dir in a temp dir), judged by the
openssl CLI: the full CRL verifies and `openssl verify -crl_check` rejects exactly the
revoked leaves; its number, AKI, Freshest CRL, validity, reason codes and invalidity
dates are what index.txt says; a revocation written to index.txt reaches the delta CRL
(and only the delta) within a bounded time, and a released hold shows as removeFromCRL;
HTTP validators and caching headers; numbers that never go backwards across restarts
and `revd crl`; a revocation made while no revd ran, in what `revd crl` or a starting
revd publishes; `revd crl` while another generator holds the series (it must not report
success with stale or missing files); partitioned CRLs (critical IDP per shard, matched
against the leaves' CRL distribution points by openssl); and configurations revd must
refuse.

Each test has its own copy of the PKI (index.txt is rewritten) and its own CRL dir.
Measured latencies are printed (ctest -V shows them)."""

import contextlib
import fcntl
import os
import random
import threading
import time

from crl_harness import (INDEX_REASONS, LIBFAKETIME, OID_IDP, OID_REASON, Crl, cert_serial,
                         cert_ski, cert_subject_der, faketime_env, fetch_crl, get_crl,
                         index_time, make_leaf, max_age, openssl_crl_text, openssl_crl_verify,
                         openssl_verify, pem_crl_to_der, revoke_rows, rewrite_index,
                         run_revd_cli, wait_until, write_pem)
from revd_harness import (REVD_BIN, OcspResp, RawConn, RevdTestCase, asn1_time, copy_pki,
                          http_time, log, main, main_pki, ocsp_post, ocsp_request, read_index,
                          run, simple_request)

BASE_URL = "http://crl.revd.test:8080/crl"
VALIDITY, INTERVAL = 7200, 3600              # 2h, 1h: no scheduled full CRL during a test
DELTA_VALIDITY, DELTA_INTERVAL = 1800, 600   # 30m, 10m: deltas only after changes
DELTA_DEADLINE = 15.0                        # a change must be in the delta within this
CERT_REVOKED = 23                            # openssl verify: certificate revoked
# A CRL whose scope (IDP) does not cover the leaf: OpenSSL 3.0 reports 44 "Different CRL
# scope" (it keeps the best CRL it has); with no CRL at all it is 3 "unable to get
# certificate CRL". Either means: this CRL says nothing about the leaf.
NOT_COVERED = (3, 44)


def http_date(t):
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(t))


class CrlTest(RevdTestCase):

    def setUp(self):
        self.pki = copy_pki(main_pki(), os.path.join(self.tmp, "pki"))
        self.crl_dir = os.path.join(self.tmp, "crl")
        self.cafile = self.pki.chain  # the issuing CA and the root
        self.index = os.path.realpath(self.pki.index)

    # ---- configuration and revd
    def conf(self, crl_extra="", issuer_extra="crl_key = {key}\n", shards=0, crl_dir=True,
             delegated=True):
        text = "[crl]\n"
        if crl_dir:
            text += "dir = %s\n" % self.crl_dir
        text += ("base_url = %s\nvalidity = %ds\ninterval = %ds\ndelta_validity = %ds\n"
                 "delta_interval = %ds\ndelta_debounce = 500ms\n%s\n"
                 % (BASE_URL, VALIDITY, INTERVAL, DELTA_VALIDITY, DELTA_INTERVAL, crl_extra))
        text += "[issuer main]\nca = %s\nindex = %s\ncrl = yes\n" % (self.pki.issuing,
                                                                     self.pki.index)
        if delegated:
            text += "signer_cert = %s\nsigner_key = %s\n" % (self.pki.ocsp_cert,
                                                             self.pki.ocsp_key)
        else:
            text += "signer_key = %s\n" % self.pki.issuing_key
        if shards:
            text += "crl_shards = %d\n" % shards
        text += issuer_extra.format(key=self.pki.issuing_key)
        return text

    def start(self, config=None, files=("main.crl", "main-delta.crl"), **kw):
        """Starts revd and waits until it serves the CRL files (its CRL thread publishes
        them just after "listening on"); r.crl_ready_after: how long that took."""
        probe = ocsp_request(self.pki.issuing, self.pki.leaf("good")["serial"])
        r = self.start_revd(config=config or self.conf(**kw), probe=probe)
        t0 = time.monotonic()
        for name in files:
            wait_until(self, "revd serving /crl/" + name,
                       lambda: get_crl(r.port, name)[0] == 200, 5.0, interval=0.005)
        r.crl_ready_after = time.monotonic() - t0
        return r

    def write_conf(self, text, name="crl.conf"):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def crl_cli(self, conf_path, out, *extra):
        return run_revd_cli(REVD_BIN, ["crl", "--config", conf_path, "--out", out] + list(extra))

    # ---- what index.txt says the CRL must list
    def expected_entries(self, now=None):
        """{serial: (revoked_at, reason code or None, invalidity or None)} for every
        revoked certificate in index.txt that has not expired, or expired less than one
        regular CRL interval ago (README: listed until one regular CRL after it
        expires); unspecified is no reason at all."""
        now = now or time.time()
        out = {}
        for serial, row in read_index(self.index).items():
            if row["flag"] != "R" or asn1_time(row["expiry"]) <= now - INTERVAL:
                continue
            reason, inval = None, None
            if row["reason"]:
                if row["reason"] == "removeFromCRL":
                    continue
                code, has_date = INDEX_REASONS[row["reason"]]
                reason = None if code == 0 else code
                inval = asn1_time(row["arg"]) if has_date else None
            out[int(serial, 16)] = (asn1_time(row["revtime"]), reason, inval)
        return out

    def pem(self, crl, name):
        return write_pem(os.path.join(self.tmp, name), crl.der)

    def assert_verify(self, cert, crl_files, want_error, deltas=False):
        rc, code, out = openssl_verify(self.cafile, cert, crl_files, deltas=deltas)
        if want_error is None:
            self.assertEqual(rc, 0, "openssl verify rejected %s:\n%s" % (cert, out))
        else:
            self.assertNotEqual(rc, 0, "openssl verify accepted %s:\n%s" % (cert, out))
            if isinstance(want_error, tuple):
                self.assertIn(code, want_error, out)
            else:
                self.assertEqual(code, want_error, out)
        return out

    def wait_delta(self, r, name, pred, what):
        """Polls /crl/NAME until pred(Crl) holds; returns (Crl, seconds)."""
        def probe():
            st, _, body = get_crl(r.port, name)
            if st != 200:
                return None
            c = Crl(body)
            return c if pred(c) else None
        return wait_until(self, what, probe, DELTA_DEADLINE)

    # ------------------------------------------------------------------ tests

    def test_full_crl_judged_by_openssl(self):
        t0 = int(time.time())
        # Two revoked certificates that have expired: 10 minutes ago (still listed) and
        # two intervals ago (no longer).
        just_expired, long_expired = 0x7A11CE5E1A, 0x7A11CE5E1B
        rewrite_index(self.index, lambda rows: rows + [
            ["R", index_time(t0 - 600), index_time(t0 - 86400) + ",superseded",
             "%X" % just_expired, "unknown", "/CN=just expired"],
            ["R", index_time(t0 - 2 * INTERVAL), index_time(t0 - 86400) + ",superseded",
             "%X" % long_expired, "unknown", "/CN=long expired"]])
        r = self.start()
        log("first CRLs served %.1f ms after 'listening on' (404 until then)"
            % (r.crl_ready_after * 1000))
        full = fetch_crl(self, r.port, "main.crl")
        delta = fetch_crl(self, r.port, "main-delta.crl")
        for c in (full, delta):
            ok, out = openssl_crl_verify(c.der, self.cafile)
            self.assertTrue(ok, out)
        # What the CRL says about itself.
        self.assertEqual(full.version, 1)  # v2
        self.assertEqual(full.issuer_der, cert_subject_der(self.pki.issuing))
        self.assertEqual(full.number, 1)   # a fresh [crl] dir
        self.assertFalse(full.is_delta)
        self.assertEqual(full.aki_keyid, cert_ski(self.pki.issuing))
        self.assertEqual(full.freshest_uris, [(BASE_URL + "/main-delta.crl").encode()])
        self.assertIsNone(full.ext(OID_IDP), "an unpartitioned CRL has no IDP")
        self.assertEqual(full.next_update - full.this_update, VALIDITY)
        self.assertTrue(t0 - 1 <= full.this_update <= time.time() + 1, full.this_update)
        self.assertEqual(full.this_update_tag, 0x17, "UTCTime through 2049")
        # Its delta: the next number, on this base, nothing changed yet.
        self.assertEqual(delta.delta_base, full.number)
        self.assertEqual(delta.number, full.number + 1)
        self.assertEqual(delta.aki_keyid, full.aki_keyid)
        self.assertIsNone(delta.freshest_uris, "a delta names no delta")
        self.assertEqual(delta.next_update - delta.this_update, DELTA_VALIDITY)
        self.assertEqual(delta.entries, {})
        # The entries: exactly the revoked certificates, as index.txt has them.
        want = self.expected_entries()
        self.assertEqual(sorted(full.entries), sorted(want))
        self.assertEqual(full.entry_order, sorted(full.entry_order), "not in serial order")
        self.assertIn(just_expired, full.entries)
        self.assertNotIn(long_expired, full.entries)
        for serial, (revoked_at, reason, inval) in want.items():
            e = full.entries[serial]
            with self.subTest(serial="%X" % serial):
                self.assertEqual(e["revoked_at"], revoked_at)
                self.assertEqual(e["reason"], reason)
                if reason is None:
                    self.assertNotIn(OID_REASON, e["exts"], "unspecified must not be encoded")
                self.assertEqual(e["invalidity"], inval)
        self.assertNotIn(0, [e["reason"] for e in full.entries.values()])
        # The manifest's special cases are all there.
        key_inval = self.pki.leaf_by_reason("keyCompromise", invalidity=True)
        e = full.entries[int(key_inval["serial"], 16)]
        self.assertEqual((e["reason"], e["invalidity"]), (1, asn1_time(key_inval["invalidity"])))
        ca_inval = self.pki.leaf_by_reason("cACompromise", invalidity=True)
        e = full.entries[int(ca_inval["serial"], 16)]
        self.assertEqual((e["reason"], e["invalidity"]), (2, asn1_time(ca_inval["invalidity"])))
        for l in self.pki.leaves:
            if l["status"] == "revoked" and l["reason"] == "unspecified":
                self.assertIsNone(full.entries[int(l["serial"], 16)]["reason"])
            if l["status"] == "revoked" and l["reason"] == "certificateHold":
                self.assertEqual(full.entries[int(l["serial"], 16)]["reason"], 6)
        text = openssl_crl_text(full.der)
        for phrase in ("Key Compromise", "CA Compromise", "Certificate Hold", "Superseded",
                       "Invalidity Date", "Jan  2 03:04:05 2024 GMT", "CRL Number",
                       "Freshest CRL", "URI:" + BASE_URL + "/main-delta.crl"):
            self.assertIn(phrase, text)
        self.assertNotIn("Unspecified", text)
        # openssl as a relying party: every revoked leaf rejected, every good one accepted.
        full_pem = self.pem(full, "full.pem")
        for leaf in self.pki.leaves:
            if leaf["status"] == "expired":
                continue
            with self.subTest(leaf=leaf["name"]):
                self.assert_verify(leaf["cert"], [full_pem],
                                   CERT_REVOKED if leaf["status"] == "revoked" else None)

    def test_revocation_reaches_delta_only(self):
        r = self.start()
        full0 = fetch_crl(self, r.port, "main.crl")
        delta0 = fetch_crl(self, r.port, "main-delta.crl")
        victim, other = self.pki.leaf("good", 3), self.pki.leaf("good", 4)
        vserial = int(victim["serial"], 16)
        now = int(time.time())
        compromised = now - 86400
        rewrite_index(self.index, revoke_rows({victim["serial"]: "%s,keyTime,%s" % (
            index_time(now), time.strftime("%Y%m%d%H%M%SZ", time.gmtime(compromised)))}))
        t0 = time.monotonic()
        delta, dt = self.wait_delta(r, "main-delta.crl", lambda c: vserial in c.entries,
                                    "the new revocation in the delta")
        print("    [crl] index.txt revocation -> served in the delta after %.0f ms"
              % (dt * 1000), flush=True)
        self.assertGreater(delta.number, delta0.number)
        self.assertEqual(delta.delta_base, full0.number, "the Delta CRL Indicator names the base")
        self.assertEqual(sorted(delta.entries), [vserial], "only what changed since the base")
        e = delta.entries[vserial]
        self.assertEqual((e["revoked_at"], e["reason"], e["invalidity"]), (now, 1, compromised))
        ok, out = openssl_crl_verify(delta.der, self.cafile)
        self.assertTrue(ok, out)
        # The full CRL is not rebuilt for a change: same number, same bytes.
        full = fetch_crl(self, r.port, "main.crl")
        self.assertEqual(full.der, full0.der)
        self.assertNotIn(vserial, full.entries)
        full_pem, delta_pem = self.pem(full, "full.pem"), self.pem(delta, "delta.pem")
        # Revoked only in the delta: the full CRL alone still accepts the leaf ...
        self.assert_verify(victim["cert"], [full_pem], None)
        # ... with the delta openssl rejects it; other leaves are as before.
        out = self.assert_verify(victim["cert"], [full_pem, delta_pem], CERT_REVOKED, deltas=True)
        self.assertIn("certificate revoked", out)
        self.assert_verify(other["cert"], [full_pem, delta_pem], None, deltas=True)
        self.assert_verify(self.pki.leaf("revoked", 1)["cert"], [full_pem, delta_pem],
                           CERT_REVOKED, deltas=True)
        log("delta %d on base %d lists %X (%.1f s after the rewrite)"
            % (delta.number, delta.delta_base, vserial, time.monotonic() - t0))

    def test_released_hold_is_remove_from_crl(self):
        r = self.start()
        full = fetch_crl(self, r.port, "main.crl")
        held = [l for l in self.pki.leaves if l["status"] == "revoked"
                and l["reason"] == "certificateHold"]
        self.assertEqual(len(held), 2)  # holdInstruction and certificateHold in index.txt
        serials = [int(l["serial"], 16) for l in held]
        for s in serials:
            self.assertEqual(full.entries[s]["reason"], 6)
        rows = read_index(self.index)
        # One released as `removeFromCRL` in the revocation field, one made valid again.
        rewrite_index(self.index, revoke_rows({
            held[0]["serial"]: rows[held[0]["serial"]]["revtime"] + ",removeFromCRL",
            held[1]["serial"]: None}))
        delta, dt = self.wait_delta(r, "main-delta.crl",
                                    lambda c: all(s in c.entries for s in serials),
                                    "both released holds in the delta")
        log("released holds in the delta after %.0f ms" % (dt * 1000))
        self.assertEqual(delta.delta_base, full.number)
        for s in serials:
            self.assertEqual(delta.entries[s]["reason"], 8, "removeFromCRL")
        self.assertEqual(sorted(delta.entries), sorted(serials))
        self.assertGreaterEqual(openssl_crl_text(delta.der).count("Remove From CRL"), 2)
        full_pem, delta_pem = self.pem(full, "full.pem"), self.pem(delta, "delta.pem")
        for l in held:
            self.assert_verify(l["cert"], [full_pem], CERT_REVOKED)
            self.assert_verify(l["cert"], [full_pem, delta_pem], None, deltas=True)

    def test_http_validators_and_caching(self):
        r = self.start()
        t_before = int(time.time())
        st, h, body = get_crl(r.port, "main.crl")
        self.assertEqual(st, 200)
        full = Crl(body)
        self.assertEqual(h.get("content-type"), "application/pkix-crl")
        self.assertEqual(int(h["content-length"]), len(body))
        etag, lm = h.get("etag"), h.get("last-modified")
        self.assertRegex(etag or "", r'^"[^"]+"$')
        self.assertEqual(http_time(lm), full.this_update)
        # Cached no longer than the next scheduled CRL, never past nextUpdate.
        age = max_age(h)
        self.assertIsNotNone(age, h)
        self.assertLessEqual(age, full.next_update - t_before)
        self.assertLessEqual(age, full.this_update + INTERVAL - t_before)
        self.assertGreater(age, INTERVAL - 60)
        self.assertLessEqual(http_time(h["expires"]), full.next_update)
        # If-None-Match
        for inm in (etag, '"nope", ' + etag):
            st, h2, b2 = get_crl(r.port, "main.crl", {"If-None-Match": inm})
            self.assertEqual((st, b2), (304, b""), inm)
            self.assertEqual(h2.get("etag"), etag)
        st, _, b2 = get_crl(r.port, "main.crl", {"If-None-Match": '"not-the-etag"'})
        self.assertEqual((st, b2), (200, body))
        # If-Modified-Since: the Last-Modified value or later -> 304; older -> 200.
        for ims in (lm, http_date(full.this_update + 60)):
            st, h2, b2 = get_crl(r.port, "main.crl", {"If-Modified-Since": ims})
            self.assertEqual((st, b2), (304, b""), ims)
            self.assertEqual(h2.get("last-modified"), lm)
        for ims in (http_date(full.this_update - 1), http_date(full.this_update - 86400),
                    "yesterday"):
            st, _, b2 = get_crl(r.port, "main.crl", {"If-Modified-Since": ims})
            self.assertEqual((st, b2), (200, body), ims)
        # With If-None-Match present, If-Modified-Since does not count (RFC 9110 13.1.3).
        st, _, b2 = get_crl(r.port, "main.crl", {"If-None-Match": '"other"',
                                                 "If-Modified-Since": lm})
        self.assertEqual((st, b2), (200, body))
        # HEAD: the headers and no body (the next response on the connection follows at once).
        c = RawConn(r.port)
        try:
            c.send(simple_request("HEAD", "/crl/main.crl"))
            st, hh, hb = c.read_response(head=True)
            self.assertEqual((st, hb), (200, b""))
            self.assertEqual(int(hh["content-length"][0]), len(body))
            self.assertEqual(hh["etag"][0], etag)
            c.send(simple_request("GET", "/crl/main.crl"))
            st, _, gb = c.read_response()
            self.assertEqual((st, gb), (200, body), "bytes after a HEAD response")
        finally:
            c.close()
        # A query names the same file.
        st, _, b2 = get_crl(r.port, "main.crl?cachebuster=1")
        self.assertEqual((st, b2), (200, body))
        # PEM: the same CRL; its own validator.
        for name, der in (("main", body), ("main-delta", None)):
            st, hp, pem = get_crl(r.port, name + ".pem")
            self.assertEqual(st, 200, name)
            if der is None:
                _, _, der = get_crl(r.port, name + ".crl")
            self.assertEqual(pem_crl_to_der(pem), der)
            self.assertNotEqual(hp.get("etag"), get_crl(r.port, name + ".crl")[1].get("etag"))
            pr = run(["openssl", "crl", "-inform", "PEM", "-noout", "-text"], input=pem)
            self.assertEqual(pr.returncode, 0, pr.stderr.decode())
            ok, out = openssl_crl_verify(pem, self.cafile, inform="PEM")
            self.assertTrue(ok, out)
            st, _, b2 = get_crl(r.port, name + ".pem", {"If-None-Match": hp["etag"]})
            self.assertEqual((st, b2), (304, b""))
        # The delta's max-age is bounded by its own schedule.
        t_before = int(time.time())
        st, hd, bd = get_crl(r.port, "main-delta.crl")
        delta = Crl(bd)
        self.assertLessEqual(max_age(hd), min(delta.next_update,
                                              delta.this_update + DELTA_INTERVAL) - t_before)
        # Unknown files.
        for name in ("nope.crl", "main-0.crl", "main-1-delta.crl", "main", "main.der",
                     "main-delta-delta.crl", "MAIN.crl", ""):
            st, _, _ = get_crl(r.port, name)
            self.assertEqual(st, 404, name)

    def test_numbers_never_go_back(self):
        conf = self.conf()
        conf_path = self.write_conf(conf)
        seen = []  # every CRL served or written, in order

        def take(port):
            f, d = fetch_crl(self, port, "main.crl"), fetch_crl(self, port, "main-delta.crl")
            seen.extend([f, d])
            return f, d

        r1 = self.start(conf)
        f1, d1 = take(r1.port)
        v1, v2 = self.pki.leaf("good", 5), self.pki.leaf("good", 6)
        rewrite_index(self.index, revoke_rows({v1["serial"]: index_time(time.time()) +
                                               ",superseded"}))
        d1b, _ = self.wait_delta(r1, "main-delta.crl", lambda c: int(v1["serial"], 16) in c.entries,
                                 "first revocation in the delta")
        seen.append(d1b)
        r1.expect_alive = False
        self.assertEqual(r1.stop(), 0, "revd did not exit cleanly on SIGTERM")
        # Restart on the same dir: what was published is served again, nothing older.
        r2 = self.start(conf)
        f2, d2 = take(r2.port)
        self.assertGreaterEqual(f2.number, f1.number)
        self.assertGreaterEqual(d2.number, d1b.number)
        self.assertIn(int(v1["serial"], 16), d2.entries if d2.delta_base == f1.number
                      else f2.entries)
        rewrite_index(self.index, revoke_rows({v2["serial"]: index_time(time.time()) +
                                               ",cessationOfOperation"}))
        d2b, _ = self.wait_delta(r2, "main-delta.crl", lambda c: int(v2["serial"], 16) in c.entries,
                                 "revocation after the restart in the delta")
        seen.append(d2b)
        self.assertGreater(d2b.number, max(c.number for c in seen[:-1]))
        r2.expect_alive = False
        self.assertEqual(r2.stop(), 0)
        # `revd crl` with nothing due writes what is published.
        out1 = os.path.join(self.tmp, "out1")
        os.mkdir(out1)
        rc, out, err = self.crl_cli(conf_path, out1)
        self.assertEqual(rc, 0, err)
        self.assertEqual(sorted(os.listdir(out1)), ["main-delta.crl", "main.crl"])
        with open(os.path.join(out1, "main.crl"), "rb") as f:
            w_full = Crl(f.read())
        with open(os.path.join(out1, "main-delta.crl"), "rb") as f:
            w_delta = Crl(f.read())
        self.assertGreaterEqual(w_full.number, f2.number)
        self.assertGreaterEqual(w_delta.number, d2b.number)
        self.assertIn(int(v2["serial"], 16), w_delta.entries)
        # The published CRL files lost (the numbers file kept): the next ones still
        # continue the sequence.
        highest = max(c.number for c in seen + [w_full, w_delta])
        for name in ("main.crl", "main-delta.crl"):
            os.unlink(os.path.join(self.crl_dir, name))
        out2 = os.path.join(self.tmp, "out2")
        os.mkdir(out2)
        rc, out, err = self.crl_cli(conf_path, out2)
        self.assertEqual(rc, 0, err)
        with open(os.path.join(out2, "main.crl"), "rb") as f:
            n_full = Crl(f.read())
        with open(os.path.join(out2, "main-delta.crl"), "rb") as f:
            n_delta = Crl(f.read())
        self.assertGreater(n_full.number, highest, "a CRL number was used again")
        self.assertGreater(n_delta.number, n_full.number)
        self.assertEqual(n_delta.delta_base, n_full.number)
        for v in (v1, v2):
            self.assertIn(int(v["serial"], 16), n_full.entries)
        for c in (n_full, n_delta):
            ok, o = openssl_crl_verify(c.der, self.cafile)
            self.assertTrue(ok, o)
        # A restarted revd serves that full CRL, and a delta on it: the one written, or
        # the new one every start makes (changes made while nothing ran are heard by
        # nobody), numbered above it.
        r3 = self.start(conf)
        f3, d3 = take(r3.port)
        self.assertEqual(f3.der, n_full.der)
        self.assertEqual(d3.delta_base, n_full.number)
        self.assertGreaterEqual(d3.number, n_delta.number)
        self.assertEqual(d3.entries, n_delta.entries)
        log("numbers: full %d/%d/%d/%d, deltas %d/%d/%d/%d/%d/%d" % (
            f1.number, f2.number, w_full.number, n_full.number, d1.number, d1b.number,
            d2.number, d2b.number, w_delta.number, n_delta.number))

    def test_change_while_no_revd_runs(self):
        # The CA revokes (index.txt rewritten) while no revd runs; then `revd crl` and a
        # starting revd must publish CRLs that say so, as a running revd would have within
        # the debounce: OCSP answers "revoked" at once from the same index.txt.
        conf = self.conf()
        conf_path = self.write_conf(conf)
        out1 = os.path.join(self.tmp, "out1")
        os.mkdir(out1)
        rc, _, err = self.crl_cli(conf_path, out1)
        self.assertEqual(rc, 0, err)
        victim = self.pki.leaf("good", 2)
        vserial = int(victim["serial"], 16)
        rewrite_index(self.index, revoke_rows({victim["serial"]: index_time(time.time()) +
                                               ",keyCompromise"}))

        def listed(out):
            got = {}
            for name in ("main.crl", "main-delta.crl"):
                with open(os.path.join(out, name), "rb") as f:
                    c = Crl(f.read())
                got[name] = (c.number, vserial in c.entries)
            return got

        with self.subTest("revd crl after the change"):
            out2 = os.path.join(self.tmp, "out2")
            os.mkdir(out2)
            rc, _, err = self.crl_cli(conf_path, out2)
            self.assertEqual(rc, 0, err)
            got = listed(out2)
            self.assertTrue(any(v for _, v in got.values()),
                            "revd crl wrote CRLs (number, lists %X) %r that omit a revocation "
                            "made before it ran" % (vserial, got))
        with self.subTest("revd started after the change"):
            r = self.start(conf)
            self.assertEqual(self.ocsp_status(r, victim["serial"]), "revoked")

            def probe():
                f = fetch_crl(self, r.port, "main.crl")
                d = fetch_crl(self, r.port, "main-delta.crl")
                return vserial in f.entries or vserial in d.entries
            wait_until(self, "the revocation made while revd was stopped in its CRLs", probe,
                       DELTA_DEADLINE, describe=lambda: "full %d, delta %d" % (
                           fetch_crl(self, r.port, "main.crl").number,
                           fetch_crl(self, r.port, "main-delta.crl").number))

    def ocsp_status(self, r, serial):
        st, _, body = ocsp_post(r.port, ocsp_request(self.pki.issuing, serial))
        self.assertEqual(st, 200)
        return OcspResp(body).singles[0]["status"]

    def test_partitioned_issuer(self):
        shards = 3
        rnd = random.Random(0x5eed)
        # Per shard: a good and a revoked leaf carrying that shard's distribution point,
        # with serials of 16 bytes, some with the top bit set (a leading 00 in DER).
        leaves = {}
        rows = []
        for k in range(shards):
            for kind in ("good", "revoked"):
                while True:
                    s = rnd.getrandbits(128) | (1 << 120)
                    if kind == "revoked":
                        s |= 1 << 127  # DER puts a 00 in front; the shard is the value's
                    if s % shards == k:
                        break
                cert, row = make_leaf(self.tmp, "s%d%s" % (k, kind), s, self.pki.issuing,
                                      self.pki.issuing_key,
                                      cdp_uri="%s/main-%d.crl" % (BASE_URL, k))
                self.assertEqual(cert_serial(cert), s)
                if kind == "revoked":
                    row[0], row[2] = "R", index_time(time.time() - 60) + ",keyCompromise"
                rows.append(row)
                leaves[(k, kind)] = (cert, s)
        rewrite_index(self.index, lambda old: old + rows)
        r = self.start(shards=shards, files=["main-%d%s.crl" % (k, d) for k in range(shards)
                                             for d in ("", "-delta")])
        want = self.expected_entries()
        crls = {}
        for k in range(shards):
            with self.subTest(shard=k):
                full = fetch_crl(self, r.port, "main-%d.crl" % k)
                delta = fetch_crl(self, r.port, "main-%d-delta.crl" % k)
                crls[k] = (full, delta)
                uri = ("%s/main-%d.crl" % (BASE_URL, k)).encode()
                for c in (full, delta):
                    critical, _ = c.ext(OID_IDP)
                    self.assertTrue(critical, "the IDP must be critical")
                    self.assertEqual(c.idp_uris, [uri])
                    ok, out = openssl_crl_verify(c.der, self.cafile)
                    self.assertTrue(ok, out)
                self.assertEqual(full.freshest_uris,
                                 [("%s/main-%d-delta.crl" % (BASE_URL, k)).encode()])
                self.assertEqual(delta.delta_base, full.number)
                self.assertEqual(full.number, 1, "each shard is a series of its own")
                self.assertEqual(sorted(full.entries),
                                 sorted(s for s in want if s % shards == k))
                self.assertIn(leaves[(k, "revoked")][1], full.entries)
        self.assertEqual(sorted(s for k in crls for s in crls[k][0].entries), sorted(want))
        for name in ("main.crl", "main-delta.crl", "main-%d.crl" % shards):
            self.assertEqual(get_crl(r.port, name)[0], 404, name)
        # openssl matches the IDP against the leaves' distribution points.
        for k in range(shards):
            pem = self.pem(crls[k][0], "shard%d.pem" % k)
            self.assert_verify(leaves[(k, "good")][0], [pem], None)
            self.assert_verify(leaves[(k, "revoked")][0], [pem], CERT_REVOKED)
            other = (k + 1) % shards
            self.assert_verify(leaves[(other, "good")][0], [pem], NOT_COVERED)
            self.assert_verify(leaves[(other, "revoked")][0], [pem], NOT_COVERED)
            # A leaf without a distribution point is in no shard's scope.
            self.assert_verify(self.pki.leaf("good")["cert"], [pem], NOT_COVERED)
        # A revocation in shard 1 reaches that shard's delta, and no other shard's.
        cert1, s1 = leaves[(1, "good")]
        rewrite_index(self.index, revoke_rows({"%X" % s1: index_time(time.time()) +
                                               ",affiliationChanged"}))
        d1, dt = self.wait_delta(r, "main-1-delta.crl", lambda c: s1 in c.entries,
                                 "shard 1's delta")
        log("shard revocation in its delta after %.0f ms" % (dt * 1000))
        self.assertEqual(sorted(d1.entries), [s1])
        self.assertEqual(d1.idp_uris, [("%s/main-1.crl" % BASE_URL).encode()])
        time.sleep(1.5)  # the other shards would have been rebuilt by now
        for k in (0, 2):
            self.assertEqual(fetch_crl(self, r.port, "main-%d-delta.crl" % k).der,
                             crls[k][1].der, "shard %d's delta changed" % k)
        f1 = self.pem(crls[1][0], "f1.pem")
        self.assert_verify(cert1, [f1], None)
        self.assert_verify(cert1, [f1, self.pem(d1, "d1.pem")], CERT_REVOKED, deltas=True)

    @contextlib.contextmanager
    def dir_locked(self, lock, seconds=3.0):
        """Holds the series' flock as a generator does while it builds, for at most
        `seconds` (a revd crl that waits for it then goes on)."""
        fcntl.flock(lock, fcntl.LOCK_EX)
        timer = threading.Timer(seconds, fcntl.flock, (lock, fcntl.LOCK_UN))
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
            fcntl.flock(lock, fcntl.LOCK_UN)

    def test_revd_crl_while_dir_locked(self):
        # Another generator (a running revd) holds the series' lock while `revd crl`
        # runs: revd crl must not claim success unless what it wrote is current.
        conf_path = self.write_conf(self.conf())
        os.makedirs(self.crl_dir, exist_ok=True)
        lock = open(os.path.join(self.crl_dir, "main.lock"), "a")
        self.addCleanup(lock.close)
        with self.subTest("no CRL published yet"):
            out = os.path.join(self.tmp, "out0")
            os.mkdir(out)
            with self.dir_locked(lock):
                rc, so, se = self.crl_cli(conf_path, out)
            files = sorted(os.listdir(out))
            self.assertTrue(rc != 0 or files == ["main-delta.crl", "main.crl"],
                            "revd crl exited %d having written %r:\n%s%s" % (rc, files, so, se))
        out = os.path.join(self.tmp, "out1")
        os.mkdir(out)
        rc, so, se = self.crl_cli(conf_path, out)
        self.assertEqual(rc, 0, se)
        with open(os.path.join(out, "main.crl"), "rb") as f:
            first = Crl(f.read())
        if not LIBFAKETIME:
            self.skipTest("libfaketime missing: the stale case needs it")
        with self.subTest("a full CRL due (90 minutes later, interval 1h)"):
            out = os.path.join(self.tmp, "out2")
            os.mkdir(out)
            with self.dir_locked(lock):
                rc, so, se = run_revd_cli(REVD_BIN, ["crl", "--config", conf_path, "--out",
                                                     out], env=faketime_env("+90m"))
            numbers = []
            for name in sorted(os.listdir(out)):
                with open(os.path.join(out, name), "rb") as f:
                    numbers.append(Crl(f.read()).number)
            self.assertTrue(rc != 0 or (len(numbers) == 2 and min(numbers) > first.number),
                            "revd crl exited %d having written CRLs numbered %r, the ones "
                            "from before the full CRL was due (%d):\n%s%s"
                            % (rc, numbers, first.number, so, se))

    def test_bad_configurations_refused(self):
        good = self.conf()
        good_path = self.write_conf(good, "good.conf")
        out = os.path.join(self.tmp, "out")
        os.mkdir(out)
        # An issuer revd crl does not know.
        rc, _, err = self.crl_cli(good_path, out, "--issuer", "nope")
        self.assertEqual(rc, 2, err)
        self.assertIn("nope", err)
        self.assertEqual(os.listdir(out), [])
        missing = os.path.join(self.tmp, "no-such-key.pem")
        cases = [
            ("crl_key missing", self.conf(issuer_extra="crl_key = %s\n" % missing),
             [missing], None),
            ("crl_key not a key", self.conf(issuer_extra="crl_key = %s\n" % self.pki.issuing),
             [self.pki.issuing], None),
            ("crl_key of another certificate",
             self.conf(issuer_extra="crl_key = %s\n" % self.pki.ocsp_key), ["does not match"],
             None),
            ("no [crl] dir for an index issuer", self.conf(crl_dir=False),
             ["[crl] dir", "main"], 2),
            ("interval >= validity", self.conf(crl_extra="interval = 2h\n"),
             ["interval", "validity"], 2),
            ("interval > validity", self.conf(crl_extra="interval = 3h\n"),
             ["interval", "validity"], 2),
            ("a delegated signer and no crl_key", self.conf(issuer_extra=""),
             ["crl_key"], 2),
        ]
        for what, text, want, want_rc in cases:
            with self.subTest(what):
                # inih: the later duplicate key wins, so "interval = 2h" overrides 1h.
                code, err = self.run_revd_fail(["--listen", "127.0.0.1:0"], config=text)
                self.assertNotEqual(code, 0, err)
                if want_rc is not None:
                    self.assertEqual(code, want_rc, err)
                self.assertNotIn("listening on", err)
                for w in want:
                    self.assertIn(w, err)
                path = self.write_conf(text, "bad.conf")
                rc, _, err = self.crl_cli(path, out)
                self.assertNotEqual(rc, 0, err)
                if want_rc is not None:
                    self.assertEqual(rc, want_rc, err)
                for w in want:
                    self.assertIn(w, err)
                self.assertEqual(os.listdir(out), [])
        # The CA signing its own OCSP answers needs no crl_key.
        rc, _, err = self.crl_cli(self.write_conf(self.conf(issuer_extra="", delegated=False),
                                                  "own.conf"), out)
        self.assertEqual(rc, 0, err)
        self.assertEqual(sorted(os.listdir(out)), ["main-delta.crl", "main.crl"])
        with open(os.path.join(out, "main.crl"), "rb") as f:
            ok, o = openssl_crl_verify(f.read(), self.cafile)
        self.assertTrue(ok, o)
        # An output directory that does not exist: a failure that names it.
        nodir = os.path.join(self.tmp, "no-such-dir")
        rc, _, err = self.crl_cli(good_path, nodir)
        self.assertEqual(rc, 1, err)
        self.assertIn(nodir, err)


if __name__ == "__main__":
    main()

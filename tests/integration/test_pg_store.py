"""revd serving from PostgreSQL: statuses read from the database (SHA-1 and SHA-256
CertIDs, POST with `openssl ocsp` and GET with curl), the change feed (LISTEN/NOTIFY)
end to end, the reconciliation sweep catching a missed notification, PostgreSQL stopped
under a running revd and down when revd starts, issuers missing from the database or
registered with another certificate, a bad dsn, two revd instances on one database, a
lookup that PostgreSQL does not answer in time (lookup_timeout), and notifications revd
cannot read.

Two PostgreSQL servers (pg_harness): one for the tests that keep it running, one for
the tests that stop and restart it. A fresh database per test. Rows are written with
plain SQL, as a CA would; the schema and issuers with `revd db migrate` and
`revd db add-issuer`. Measured latencies are printed to stdout."""

import base64
import os
import re
import subprocess
import time
import unittest
import urllib.parse

from pg_harness import PgTestCase
from revd_harness import (OID_EXT_REVOKE, REVD_BIN, OcspResp, RevdTestCase, asn1_time, main,
                          make_pki, ocsp_post, ocsp_request, openssl_time,
                          parse_ocsp_status_output, run)

MAIN = dict(levels=2, leaves=24, key_type="ec")   # the PKI most integration tests share
OTHER = dict(levels=2, leaves=3, key_type="ec384")  # a second, unrelated PKI

FEED_DEADLINE = 1.0   # a committed change must be served within this (DESIGN.md)
REASON_CODES = {"unspecified": 0, "keyCompromise": 1, "cACompromise": 2,
                "affiliationChanged": 3, "superseded": 4, "cessationOfOperation": 5,
                "certificateHold": 6}
REVOKED_AT = 1741064767  # 2025-03-04T05:06:07Z, plus the leaf's index in seconds


def figure(msg):
    """A measured figure, on stdout (ctest -V shows it)."""
    print("    [pg-store] %s" % msg, flush=True)


def db_serial(hexstr):
    """Hex as openssl prints it -> the stored form in hex (DER INTEGER contents)."""
    v = int(hexstr, 16)
    return v.to_bytes((v.bit_length() + 8) // 8, "big").hex()


def iso(t):
    return time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(t))


class PgRevdCase(PgTestCase, RevdTestCase):
    """A PostgreSQL server per class, revd processes per test, helpers for both."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pki = make_pki(**MAIN)

    # ---- database
    def revd_cli(self, *args):
        r = run([REVD_BIN] + list(args), timeout=60)
        out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
        self.assertEqual(r.returncode, 0, "revd %s failed:\n%s" % (" ".join(args), out))
        return out

    def new_db(self, issuers=(("main", None),)):
        """A migrated database with issuers registered [(name, ca_pem or None: main)].
        Returns (dsn, {name: id})."""
        dsn = self.new_database()
        self.revd_cli("db", "migrate", "--dsn", dsn)
        ids = {}
        for name, ca in issuers:
            self.revd_cli("db", "add-issuer", "--dsn", dsn, "--name", name,
                          "--cert", ca or self.pki.issuing)
            ids[name] = int(self.psql(dsn, "SELECT id FROM issuers WHERE name = '%s'" % name))
        return dsn, ids

    def insert_leaves(self, dsn, iid, pki=None):
        """Every leaf of the PKI's manifest as the CA would record it."""
        pki = pki or self.pki
        rows = []
        for i, l in enumerate(pki.leaves):
            not_after = "now() - interval '30 days'" if l["status"] == "expired" else \
                "now() + interval '365 days'"
            if l["status"] == "revoked":
                reason = REASON_CODES[l["reason"]] if l["reason"] else None
                inval = "'%s'" % iso(asn1_time(l["invalidity"])) if l["invalidity"] else "NULL"
                rows.append("(%d, revd_serial('%s'), %s, '%s', %s, %s)" % (
                    iid, l["serial"], not_after, iso(REVOKED_AT + i),
                    "NULL" if reason is None else reason, inval))
            else:
                rows.append("(%d, revd_serial('%s'), %s, NULL, NULL, NULL)"
                            % (iid, l["serial"], not_after))
        self.psql(dsn, "INSERT INTO certificates (issuer_id, serial, not_after, revoked_at, "
                       "reason, invalidity_date) VALUES " + ", ".join(rows))

    def insert(self, dsn, iid, serial):
        """A newly issued certificate."""
        self.psql(dsn, "INSERT INTO certificates (issuer_id, serial, not_after) VALUES "
                       "(%d, revd_serial('%s'), now() + interval '1 year')" % (iid, serial))

    # ---- revd
    def conf(self, dsn, issuers=None, sweep=None, lookup_timeout=None, workers=2):
        """issuers: [(section, ca, signer_cert, signer_key, extra lines)]."""
        if issuers is None:
            issuers = [("main", self.pki.issuing, self.pki.ocsp_cert, self.pki.ocsp_key, "")]
        text = "[server]\nworkers = %d\n\n[postgres]\ndsn = %s\n" % (workers, dsn)
        if sweep:
            text += "sweep_interval = %s\n" % sweep
        if lookup_timeout:
            text += "lookup_timeout = %s\n" % lookup_timeout
        for name, ca, cert, key, extra in issuers:
            text += "\n[issuer %s]\nca = %s\nsigner_cert = %s\nsigner_key = %s\nstore = " \
                    "postgres\n%s" % (name, ca, cert, key, extra)
        return text

    def start_pg_revd(self, dsn, args=(), probe=True, wait_db=True, **kw):
        """Starts revd on the database. wait_db: also wait until it answers from it (see
        wait_db_ready)."""
        name = kw.pop("name", None)
        p = ocsp_request(self.pki.issuing, self.pki.leaf("good")["serial"]) if probe else None
        r = self.start_revd(args, config=self.conf(dsn, **kw), probe=p, name=name)
        if wait_db:
            r.db_ready_after = self.wait_db_ready(r)
        return r

    def wait_db_ready(self, r, timeout=5.0):
        """revd logs "listening on" before its change feed has matched the configured
        issuers with the database; until then every request gets tryLater. Waits for the
        first answer that is not tryLater; returns how long that took."""
        good = self.pki.leaf("good")["serial"]
        t0 = time.monotonic()
        while self.status(r, good) == "tryLater":
            self.assertLess(time.monotonic() - t0, timeout, "revd never answered from "
                            "the database:\n" + r.stderr())
            time.sleep(0.002)
        return time.monotonic() - t0

    # ---- asking revd
    def post(self, revd, serial, hash_name="sha1", ca=None):
        """(OcspResp, DER) of a POST for one serial."""
        st, _, body = ocsp_post(revd.port, ocsp_request(ca or self.pki.issuing, serial,
                                                        hash_name), timeout=10)
        self.assertEqual(st, 200)
        return OcspResp(body), body

    def status(self, revd, serial, hash_name="sha1", ca=None):
        """'good' / 'revoked' / 'unknown', or 'tryLater', 'unauthorized', ... (not 0)."""
        r, _ = self.post(revd, serial, hash_name, ca)
        if r.status != 0:
            return {1: "malformedRequest", 2: "internalError", 3: "tryLater",
                    5: "sigRequired", 6: "unauthorized"}.get(r.status, str(r.status))
        self.assertEqual(len(r.singles), 1)
        self.assertEqual(r.singles[0]["serial"], db_serial(serial).upper())
        return r.singles[0]["status"]

    def cached(self, revd, serial, hash_name="sha1"):
        """Asks twice: the two answers must be the same bytes (so the second came from
        the cache: revd's ECDSA signatures differ each time). Returns (status, DER)."""
        a, der_a = self.post(revd, serial, hash_name)
        b, der_b = self.post(revd, serial, hash_name)
        self.assertEqual(a.status, 0)
        self.assertEqual(der_a, der_b, "the second answer for %s was signed again: not "
                                       "cached" % serial)
        return a.singles[0]["status"], der_a

    def ossl(self, revd, serials, hash_name="sha1", extra=(), ca=None, expect_ok=True):
        """`openssl ocsp` (verifying against root.pem + chain.pem): (statuses, out)."""
        args = ["openssl", "ocsp", "-url", revd.url(), "-timeout", "10", "-no_nonce",
                "-issuer", ca or self.pki.issuing, "-" + hash_name] + list(extra)
        for s in serials:
            args += ["-serial", "0x" + s]
        args += ["-CAfile", self.pki.root, "-verify_other", self.pki.chain]
        r = run(args)
        out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
        if expect_ok:
            self.assertEqual(r.returncode, 0, "%s\n%s" % (" ".join(args), out))
            self.assertIn("Response verify OK", out)
        return parse_ocsp_status_output(out), out

    def ossl_status(self, revd, serial, hash_name="sha1"):
        got, out = self.ossl(revd, [serial], hash_name, expect_ok=False)
        if "0x" + serial in got:
            self.assertIn("Response verify OK", out)
            return got["0x" + serial]["status"]
        m = re.search(r"Responder Error: (\S+)", out)
        return m.group(1) if m else out

    def wait_for(self, what, fn, want, timeout, interval=0.025):
        """Polls fn() until it returns want; returns seconds taken, fails after timeout."""
        t0 = time.monotonic()
        got = None
        while time.monotonic() - t0 < timeout:
            got = fn()
            if got == want:
                return time.monotonic() - t0
            time.sleep(interval)
        got = fn()
        if got == want:
            return time.monotonic() - t0
        self.fail("%s: still %r after %.1f s (want %r)" % (what, got, timeout, want))

    def wait_log(self, revd, pattern, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, revd.stderr())
            if m:
                return m
            time.sleep(0.05)
        self.fail("revd never logged /%s/:\n%s" % (pattern, revd.stderr()))

    def notify_lag_ms(self, revd, serial):
        """The lag revd logged for a serial's notification (ms), or None."""
        m = re.findall(r"serial %s changed \(seq \d+\); cached answers dropped ([0-9.]+) ms"
                       % db_serial(serial), revd.stderr())
        return float(m[-1]) if m else None


class PgStoreTest(PgRevdCase):

    # ---- statuses from the database
    def test_statuses_from_database(self):
        dsn, ids = self.new_db()
        self.insert_leaves(dsn, ids["main"])
        # A revocation recorded without a reason (an index.txt "R" line with none).
        no_reason = self.pki.leaf_by_reason("unspecified")
        self.psql(dsn, "UPDATE certificates SET reason = NULL WHERE serial = revd_serial('%s')"
                  % no_reason["serial"])
        r = self.start_pg_revd(dsn)
        figure("startup: tryLater for %.0f ms after 'listening on', until the change feed had "
               "matched the issuers" % (r.db_ready_after * 1000))
        good = self.pki.leaf("good")
        expired = self.pki.leaf("expired")
        key_inval = self.pki.leaf_by_reason("keyCompromise", invalidity=True)
        ca_inval = self.pki.leaf_by_reason("cACompromise", invalidity=True)
        hold = self.pki.leaf_by_reason("certificateHold")
        plain = self.pki.leaf_by_reason("superseded")
        idx = {l["serial"]: i for i, l in enumerate(self.pki.leaves)}
        revoked = [key_inval, ca_inval, hold, plain, no_reason]
        serials = [good["serial"], expired["serial"], self.pki.unissued] + \
            [l["serial"] for l in revoked]
        for h in ("sha1", "sha256"):
            got, out = self.ossl(r, serials, h, extra=["-resp_text"])
            self.assertEqual(got["0x" + good["serial"]]["status"], "good", h)
            # Revocation status does not lapse with validity (README).
            self.assertEqual(got["0x" + expired["serial"]]["status"], "good", h)
            self.assertEqual(got["0x" + self.pki.unissued]["status"], "unknown", h)
            for l in revoked:
                g = got["0x" + l["serial"]]
                self.assertEqual(g["status"], "revoked", (h, l))
                self.assertEqual(openssl_time(g["revocation_time"]),
                                 REVOKED_AT + idx[l["serial"]], (h, l))
                self.assertEqual(g["reason"], None if l is no_reason else l["reason"],
                                 (h, l, g))
            self.assertIn("Hash Algorithm: %s" % h, out)
            # The invalidity dates, as single extensions (two of them in this response).
            dates = re.findall(r"Invalidity Date:\s*\n?\s*(\w{3} [ \d]\d \d\d:\d\d:\d\d \d{4} "
                               r"GMT)", out)
            self.assertEqual(sorted(openssl_time(d) for d in dates),
                             sorted([asn1_time(key_inval["invalidity"]),
                                     asn1_time(ca_inval["invalidity"])]), out)

        # GET (RFC 6960 Appendix A) with curl, each answer verified by openssl.
        for h in ("sha1", "sha256"):
            for leaf, want in ((good, "good"), (key_inval, "revoked")):
                der = ocsp_request(self.pki.issuing, leaf["serial"], h)
                path = "/" + urllib.parse.quote(base64.b64encode(der).decode(), safe="")
                out_file = os.path.join(self.tmp, "get-%s-%s.der" % (h, want))
                c = run(["curl", "-sS", "--max-time", "10", "-o", out_file,
                         "-w", "%{http_code} %{content_type}", r.url(path)])
                self.assertEqual(c.returncode, 0, c.stderr)
                self.assertEqual(c.stdout.decode(), "200 application/ocsp-response")
                with open(out_file, "rb") as f:
                    resp = OcspResp(f.read())
                self.assertEqual(resp.status, 0)
                self.assertEqual(resp.singles[0]["status"], want)
                v = run(["openssl", "ocsp", "-respin", out_file, "-issuer", self.pki.issuing,
                         "-" + h, "-serial", "0x" + leaf["serial"], "-CAfile", self.pki.root,
                         "-verify_other", self.pki.chain])
                vout = v.stdout.decode() + v.stderr.decode()
                self.assertIn("Response verify OK", vout)
                self.assertEqual(parse_ocsp_status_output(vout)["0x" + leaf["serial"]]
                                 ["status"], want, vout)

        # Not issued: unauthorized, or revoked with the extended-revoke extension.
        r2 = self.start_pg_revd(dsn, args=["--not-issued", "unauthorized"])
        for _ in range(2):  # the second time is not a cached answer of the first
            st, _, body = ocsp_post(r2.port, ocsp_request(self.pki.issuing, self.pki.unissued))
            self.assertEqual(body, bytes.fromhex("30030a0106"))
        _, out = self.ossl(r2, [self.pki.unissued], expect_ok=False)
        self.assertIn("Responder Error: unauthorized (6)", out)
        self.assertEqual(self.ossl(r2, [good["serial"]])[0]["0x" + good["serial"]]["status"],
                         "good")
        r3 = self.start_pg_revd(dsn, args=["--not-issued", "revoked"])
        for h in ("sha1", "sha256"):
            respout = os.path.join(self.tmp, "ext-%s.der" % h)
            got, out = self.ossl(r3, [self.pki.unissued], h, extra=["-respout", respout])
            g = got["0x" + self.pki.unissued]
            self.assertEqual((g["status"], g["reason"], openssl_time(g["revocation_time"])),
                             ("revoked", "certificateHold", 0))
            with open(respout, "rb") as f:
                self.assertEqual(OcspResp(f.read()).extensions.get(OID_EXT_REVOKE), b"\x05\x00")
            got, _ = self.ossl(r3, [good["serial"]], h, extra=["-respout", respout])
            self.assertEqual(got["0x" + good["serial"]]["status"], "good")
            with open(respout, "rb") as f:
                self.assertNotIn(OID_EXT_REVOKE, OcspResp(f.read()).extensions)

    # ---- the change feed
    def test_change_feed_revoke_insert_release(self):
        dsn, ids = self.new_db()
        iid = ids["main"]
        self.insert_leaves(dsn, iid)
        # No periodic sweep during the test: what revd learns, it learns from NOTIFY.
        r = self.start_pg_revd(dsn, sweep="1h")
        self.wait_log(r, r"postgres change feed: connected")

        # 1. Revocation by plain SQL, after the good answer was cached (SHA-1 and SHA-256).
        victim = self.pki.leaf("good", 2)["serial"]
        for h in ("sha1", "sha256"):
            self.assertEqual(self.cached(r, victim, h)[0], "good")
        self.assertEqual(self.ossl_status(r, victim), "good")
        t0 = time.monotonic()
        self.psql(dsn, "UPDATE certificates SET revoked_at = now(), reason = 1 WHERE "
                       "issuer_id = %d AND serial = revd_serial('%s')" % (iid, victim))
        t_commit = time.monotonic()
        took = self.wait_for("openssl ocsp after the revocation",
                             lambda: self.ossl_status(r, victim), "revoked", FEED_DEADLINE + 1)
        figure("change feed: revocation served by openssl ocsp %.0f ms after the UPDATE "
               "returned (%.0f ms after psql started; revd logged %s ms from trigger to "
               "invalidation)" % (took * 1000, (took + t_commit - t0) * 1000,
                                  self.notify_lag_ms(r, victim)))
        self.assertLess(took, FEED_DEADLINE)
        got, _ = self.ossl(r, [victim])
        self.assertEqual(got["0x" + victim]["reason"], "keyCompromise")
        # Every CertID hash algorithm's entry was dropped, not just the one asked first.
        self.assertEqual(self.status(r, victim, "sha256"), "revoked")
        self.assertIsNotNone(self.notify_lag_ms(r, victim), r.stderr())

        # 2. A newly issued certificate: unknown (cached) becomes good.
        new = "7E57" + "%012X" % int(time.time() * 1000)
        self.assertEqual(self.cached(r, new)[0], "unknown")
        self.psql(dsn, "INSERT INTO certificates (issuer_id, serial, not_after) VALUES "
                       "(%d, revd_serial('%s'), now() + interval '90 days')" % (iid, new))
        took = self.wait_for("openssl ocsp after the INSERT",
                             lambda: self.ossl_status(r, new), "good", FEED_DEADLINE + 1)
        figure("change feed: newly issued serial unknown -> good in %.0f ms" % (took * 1000))
        self.assertLess(took, FEED_DEADLINE)

        # 3. Release from hold: revoked (certificateHold, cached) becomes good.
        hold = self.pki.leaf_by_reason("certificateHold")["serial"]
        self.assertEqual(self.cached(r, hold)[0], "revoked")
        self.psql(dsn, "UPDATE certificates SET revoked_at = NULL, reason = NULL WHERE "
                       "issuer_id = %d AND serial = revd_serial('%s')" % (iid, hold))
        took = self.wait_for("openssl ocsp after the release from hold",
                             lambda: self.ossl_status(r, hold), "good", FEED_DEADLINE + 1)
        figure("change feed: release from hold revoked -> good in %.0f ms" % (took * 1000))
        self.assertLess(took, FEED_DEADLINE)
        # Nothing else was disturbed: another cached answer is still the same bytes.
        other = self.pki.leaf("good", 3)["serial"]
        _, der = self.cached(r, other)
        self.psql(dsn, "UPDATE certificates SET revoked_at = now() WHERE issuer_id = %d AND "
                       "serial = revd_serial('%s')" % (iid, self.pki.leaf("good", 4)["serial"]))
        self.wait_for("the other serial's revocation",
                      lambda: self.status(r, self.pki.leaf("good", 4)["serial"]), "revoked", 2)
        self.assertEqual(self.post(r, other)[1], der)

        # 4. A bulk load (revd.bulk = 'on'): one 'resync' notification, and revd reads what
        # changed (no periodic sweep in this test, so it must be the resync).
        bulk = [self.pki.leaf("good", k)["serial"] for k in (8, 9)]
        for v in bulk:
            self.assertEqual(self.cached(r, v)[0], "good")
        lines = r.stderr().count("\n")
        self.psql(dsn, "BEGIN; SET LOCAL revd.bulk = 'on'; UPDATE certificates SET revoked_at = "
                       "now(), reason = 5 WHERE issuer_id = %d AND serial IN (%s); COMMIT"
                  % (iid, ", ".join("revd_serial('%s')" % v for v in bulk)))
        for v in bulk:
            took = self.wait_for("a bulk revocation", lambda: self.status(r, v), "revoked",
                                 FEED_DEADLINE + 1)
            self.assertLess(took, FEED_DEADLINE)
        self.assertNotIn("changed (seq", "\n".join(r.stderr().split("\n")[lines:]),
                         "per-row notifications in a bulk transaction")

    def test_unexpected_notifications(self):
        # Any database user may NOTIFY on the channel: revd must survive whatever arrives,
        # and treat what it cannot read as "something changed" (a sweep).
        dsn, ids = self.new_db()
        iid = ids["main"]
        self.insert_leaves(dsn, iid)
        r = self.start_pg_revd(dsn, sweep="1h")
        victim = self.pki.leaf("good", 10)["serial"]
        self.assertEqual(self.cached(r, victim)[0], "good")
        # A revocation nobody is told about (trigger disabled) ...
        self.psql(dsn, "BEGIN; ALTER TABLE certificates DISABLE TRIGGER certificates_changed; "
                       "UPDATE certificates SET revoked_at = now(), change_seq = "
                       "nextval('revd_change_seq'), change_xid = pg_current_xact_id() WHERE issuer_id = %d AND serial = "
                       "revd_serial('%s'); ALTER TABLE certificates ENABLE TRIGGER "
                       "certificates_changed; COMMIT" % (iid, victim))
        self.assertEqual(self.status(r, victim), "good")
        # ... then payloads revd cannot read: each must lead to a sweep, none to a crash.
        payloads = ["hello", "1 zz 2 3", "1 %s 1 1" % ("ab" * 33), "1 %s 1 1" % ("a" * 66),
                    "1 %s 1 1" % ("a" * 67), "x" * 7000, "", "1 00 1"]
        for pl in payloads:
            self.psql(dsn, "SELECT pg_notify('revd_certificates', '%s')" % pl)
        took = self.wait_for("the sweep after unreadable notifications",
                             lambda: self.status(r, victim), "revoked", FEED_DEADLINE + 1)
        self.assertLess(took, FEED_DEADLINE)
        self.assertTrue(r.alive())
        self.wait_log(r, r"unexpected notification 'hello'")
        # And ordinary notifications still work afterwards.
        other = self.pki.leaf("good", 11)["serial"]
        self.assertEqual(self.cached(r, other)[0], "good")
        self.psql(dsn, "UPDATE certificates SET revoked_at = now() WHERE issuer_id = %d AND "
                       "serial = revd_serial('%s')" % (iid, other))
        took = self.wait_for("a revocation after unreadable notifications",
                             lambda: self.status(r, other), "revoked", FEED_DEADLINE + 1)
        self.assertLess(took, FEED_DEADLINE)

    # Waits (5 s at most) until revd starts its next sweep: pg_stat_activity shows when
    # revd's sweep query (as pg.c sends it) last started.
    WAIT_SWEEP = """DO $$
DECLARE
    t0 timestamptz;
    t1 timestamptz;
BEGIN
    SELECT max(query_start) INTO t0 FROM pg_stat_activity WHERE datname = current_database()
       AND query LIKE 'WITH h AS (SELECT pg_snapshot_xmin(pg_current_snapshot())%';
    FOR i IN 1..1000 LOOP
        PERFORM pg_sleep(0.005);
        PERFORM pg_stat_clear_snapshot();
        SELECT max(query_start) INTO t1 FROM pg_stat_activity WHERE datname = current_database()
           AND query LIKE 'WITH h AS (SELECT pg_snapshot_xmin(pg_current_snapshot())%';
        IF t1 IS NOT NULL AND (t0 IS NULL OR t1 > t0) THEN
            RETURN;
        END IF;
    END LOOP;
    RAISE EXCEPTION 'revd did not sweep within 5 s';
END
$$;
"""

    def psql_script(self, dsn, script):
        p = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-f", "-"],
                           input=script, universal_newlines=True, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertNotIn("ERROR", p.stderr)
        return p.stdout

    def test_sweep_catches_missed_notification(self):
        dsn, ids = self.new_db()
        iid = ids["main"]
        self.insert_leaves(dsn, iid)
        r = self.start_pg_revd(dsn, sweep="1s")
        victim = self.pki.leaf("good", 5)["serial"]
        self.assertEqual(self.cached(r, victim)[0], "good")
        # One psql session: wait (bounded, 5 s) until revd starts a sweep, then revoke with
        # the trigger disabled (no NOTIFY), taking the change_seq by hand. Writing just
        # after a sweep puts the next one about a second away, so that "still good right
        # after the commit" is not a race with it.
        script = "\\set ON_ERROR_STOP 1\n" + self.WAIT_SWEEP + """
BEGIN;
ALTER TABLE certificates DISABLE TRIGGER certificates_changed;
UPDATE certificates SET revoked_at = now(), reason = 1, change_seq = nextval('revd_change_seq'), change_xid = pg_current_xact_id()
 WHERE issuer_id = %(iid)d AND serial = revd_serial('%(serial)s');
ALTER TABLE certificates ENABLE TRIGGER certificates_changed;
COMMIT;
""" % dict(iid=iid, serial=victim)
        self.psql_script(dsn, script)
        t_commit = time.monotonic()
        # No notification went out: right after the commit revd still serves good.
        self.assertEqual(self.status(r, victim), "good")
        immediate = time.monotonic() - t_commit
        took = self.wait_for("the sweep", lambda: self.status(r, victim), "revoked", 2.0,
                             interval=0.02)
        figure("sweep: missed notification caught %.0f ms after the commit (sweep_interval "
               "1 s; still good %.0f ms after the commit)" % (took * 1000, immediate * 1000))
        self.assertLess(took, 2.0)
        self.assertIsNone(self.notify_lag_ms(r, victim),
                          "a notification arrived although the trigger was disabled")
        self.assertEqual(self.ossl_status(r, victim), "revoked")
        self.assertEqual(self.psql(dsn, "SELECT tgenabled FROM pg_trigger WHERE tgname = "
                                        "'certificates_changed'"), "O")

    def test_bulk_commit_after_a_sweep_is_not_missed(self):
        # A bulk transaction (revd.bulk = 'on': one 'resync' notification at commit, as
        # `revd import` does) takes its change_seq values early; meanwhile another change
        # commits and is notified and a periodic sweep runs. When the bulk commits, its
        # rows must still be swept: a cached good answer for a serial it revoked turns
        # revoked within sweep_interval + 1 s. (A sweep by change_seq watermark missed
        # them; sweeping by transaction horizon cannot.)
        dsn, ids = self.new_db()
        iid = ids["main"]
        self.insert_leaves(dsn, iid)
        r = self.start_pg_revd(dsn, sweep="1s")
        x, z = self.pki.leaf("good", 0)["serial"], self.pki.leaf("good", 1)["serial"]
        self.assertEqual(self.cached(r, x)[0], "good")
        bulk = subprocess.Popen(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, universal_newlines=True)
        self.addCleanup(bulk.kill)
        bulk.stdin.write("BEGIN;\nSET LOCAL revd.bulk = 'on';\nUPDATE certificates SET "
                         "revoked_at = now(), reason = 1 WHERE issuer_id = %d AND serial = "
                         "revd_serial('%s');\n" % (iid, x))
        bulk.stdin.flush()
        deadline = time.monotonic() + 5
        while self.psql(dsn, "SELECT count(*) FROM pg_stat_activity WHERE state = "
                             "'idle in transaction' AND datname = current_database()") != "1":
            self.assertLess(time.monotonic(), deadline, "the bulk transaction did not start")
            time.sleep(0.02)
        # Another change, notified; then let a sweep run (and finish) after it.
        self.psql(dsn, "UPDATE certificates SET revoked_at = now() WHERE issuer_id = %d AND "
                       "serial = revd_serial('%s')" % (iid, z))
        self.wait_for("the other revocation", lambda: self.status(r, z), "revoked", 2)
        self.psql_script(dsn, self.WAIT_SWEEP + "SELECT pg_sleep(0.2);\n")
        bulk.stdin.write("COMMIT;\n\\q\n")
        bulk.stdin.flush()
        out, _ = bulk.communicate(timeout=10)
        self.assertEqual(bulk.returncode, 0, out)
        self.assertEqual(self.psql(dsn, "SELECT revoked_at IS NOT NULL FROM certificates WHERE "
                                        "serial = revd_serial('%s')" % x), "t")
        took = self.wait_for("the bulk revocation", lambda: self.status(r, x), "revoked", 2.0)
        self.assertLess(took, 2.0)

    def test_lookup_timeout(self):
        dsn, ids = self.new_db()
        self.insert_leaves(dsn, ids["main"])
        r = self.start_pg_revd(dsn, lookup_timeout="300ms", workers=1)
        goods = [l["serial"] for l in self.pki.leaves if l["status"] == "good"]
        # PostgreSQL up but not answering the lookup: the table is locked for 2.5 s.
        locker = subprocess.Popen(["psql", "-X", "-q", "-d", dsn, "-c", "BEGIN; LOCK TABLE "
                                   "certificates IN ACCESS EXCLUSIVE MODE; SELECT "
                                   "pg_sleep(2); COMMIT"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(locker.kill)
        deadline = time.monotonic() + 5
        while self.psql(dsn, "SELECT count(*) FROM pg_locks WHERE mode = "
                             "'AccessExclusiveLock' AND relation = 'certificates'::regclass "
                             "AND granted") != "1":
            self.assertLess(time.monotonic(), deadline, "the lock was never taken")
            time.sleep(0.02)
        # The first lookup waits for its deadline; the connection is then dropped and
        # re-established, and lookups meanwhile fail at once.
        times = []
        for s in goods[3:6]:
            t0 = time.monotonic()
            self.assertEqual(self.status(r, s), "tryLater")
            times.append(time.monotonic() - t0)
            time.sleep(0.15)
        figure("lookup_timeout 300ms, table locked: tryLater after %s ms"
               % ", ".join("%.0f" % (t * 1000) for t in times))
        self.assertGreater(times[0], 0.25)  # it did wait for PostgreSQL
        self.assertLess(max(times), 0.8)
        locker.wait(timeout=10)
        took = self.wait_for("an answer once the lock was released",
                             lambda: self.status(r, goods[6]), "good", 3.0)
        self.assertLess(took, 3.0)
        self.assertTrue(r.alive())

    # ---- issuers
    def test_issuer_missing_or_other_certificate(self):
        other = make_pki(**OTHER)
        root_dir = self.pki.ca_dir(1)
        # "main" is registered; "swapped" is registered with another CA's certificate
        # (the other PKI's); "absent" is not registered at all.
        dsn, ids = self.new_db([("main", None), ("swapped", other.issuing)])
        self.insert_leaves(dsn, ids["main"])
        # Rows the swapped issuer would answer from, were it matched.
        self.insert(dsn, ids["swapped"], "01")
        issuers = [
            ("primary", self.pki.issuing, self.pki.ocsp_cert, self.pki.ocsp_key,
             "db_issuer = main\n"),
            ("swapped", os.path.join(root_dir, "ca.pem"), os.path.join(root_dir, "ocsp.pem"),
             os.path.join(root_dir, "ocsp.key"), ""),
            ("absent", other.issuing, other.ocsp_cert, other.ocsp_key, ""),
        ]
        r = self.start_pg_revd(dsn, issuers=issuers, wait_db=False)
        self.wait_log(r, r"issuer 'absent' is not in the database")
        self.wait_log(r, r"issuer 'swapped' in the database has another certificate")
        good = self.pki.leaf("good")["serial"]
        self.wait_db_ready(r)
        self.assertEqual(self.status(r, good), "good")  # db_issuer = main
        for _ in range(2):
            t0 = time.monotonic()
            self.assertEqual(self.status(r, "01", ca=os.path.join(root_dir, "ca.pem")),
                             "tryLater")
            self.assertEqual(self.status(r, other.leaf("good")["serial"], ca=other.issuing),
                             "tryLater")
            self.assertLess(time.monotonic() - t0, 1.5)
        _, out = self.ossl(r, [other.leaf("good")["serial"]], ca=other.issuing,
                           expect_ok=False)
        self.assertIn("Responder Error: trylater (3)", out)
        self.assertNotRegex(r.stderr(), r"issuer '(primary|main)' (is not|in the database "
                                        r"has another)")

    # ---- configuration
    def test_bad_dsn_refuses_to_start(self):
        for dsn in ("host=127.0.0.1 port", "host=127.0.0.1 colour=blue",
                    "postgresql://[::1/revd"):
            rc, err = self.run_revd_fail(config=self.conf(dsn) + "\n[server]\nlisten = "
                                         "127.0.0.1:0\n")
            self.assertNotEqual(rc, 0, err)
            self.assertIn("dsn", err, (dsn, err))
            self.assertNotIn("listening on", err)
        # store = postgres without a dsn
        text = self.conf("x").replace("[postgres]\ndsn = x\n", "")
        rc, err = self.run_revd_fail(config=text)
        self.assertNotEqual(rc, 0)
        self.assertIn("store = postgres needs [postgres] dsn", err)

    # ---- several instances
    def test_two_instances_see_a_revocation(self):
        dsn, ids = self.new_db()
        self.insert_leaves(dsn, ids["main"])
        a = self.start_pg_revd(dsn, sweep="1h", name="revd-a")
        b = self.start_pg_revd(dsn, sweep="1h", name="revd-b")
        for x in (a, b):
            self.wait_log(x, r"postgres change feed: connected")
        victims = [self.pki.leaf("good", 6)["serial"], self.pki.leaf("good", 7)["serial"]]
        for v in victims:
            ders = [self.cached(x, v)[1] for x in (a, b)]
            self.assertNotEqual(ders[0], ders[1])  # each instance signed its own
        for v in victims:
            self.psql(dsn, "UPDATE certificates SET revoked_at = now(), reason = 4 WHERE "
                           "issuer_id = %d AND serial = revd_serial('%s')" % (ids["main"], v))
            t0 = time.monotonic()
            seen = {}
            while len(seen) < 2 and time.monotonic() - t0 < FEED_DEADLINE + 1:
                for name, x in (("a", a), ("b", b)):
                    if name not in seen and self.status(x, v) == "revoked":
                        seen[name] = time.monotonic() - t0
                time.sleep(0.01)
            figure("two instances: revocation of %s served by a after %s ms, by b after %s ms"
                   % (v, *("%.0f" % (seen[k] * 1000) if k in seen else "never"
                           for k in ("a", "b"))))
            self.assertEqual(sorted(seen), ["a", "b"], "not every instance saw it")
            self.assertLess(max(seen.values()), FEED_DEADLINE)
            self.assertEqual(self.ossl_status(a, v), "revoked")
            self.assertEqual(self.ossl_status(b, v), "revoked")


class PgOutageTest(PgRevdCase):
    """PostgreSQL stopped and started again under revd (its own server: these tests
    stop it)."""

    OPTS = ("-c listen_addresses=127.0.0.1 -p %d -c unix_socket_directories=%s -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=30 "
            "-c shared_buffers=64MB")  # as pg_harness starts it

    def setUp(self):
        super().setUp()
        self.addCleanup(self.pg_restore)

    # ---- PostgreSQL's life (pg_harness has no restart: the same data dir and port)
    def hba_path(self):
        return os.path.join(self.pg.datadir, "pg_hba.conf")

    def pg_stop(self):
        self.pg._run("pg_ctl", "stop", "-D", self.pg.datadir, "-m", "fast", "-w", "-t", "20",
                     timeout=30)

    def pg_start(self):
        self.pg._run("pg_ctl", "start", "-D", self.pg.datadir, "-l", self.pg.logfile, "-o",
                     self.OPTS % (self.pg.port, self.pg.sockdir), "-w", "-t", "30", timeout=40)

    def pg_running(self):
        return self.pg._postmaster_pid() is not None

    def reject_tcp(self, on):
        """Makes the server refuse TCP logins (revd's) while the test writes through the
        unix socket: the window in which revd's change feed is trying to reconnect."""
        with open(self.hba_path()) as f:
            text = f.read()
        mark = "host all all 127.0.0.1/32 reject  # test_pg_store\n"
        text = text.replace(mark, "")
        if on:
            text = mark + text
        with open(self.hba_path(), "w") as f:
            f.write(text)
        if self.pg_running():
            self.pg._run("pg_ctl", "reload", "-D", self.pg.datadir, timeout=30)

    def socket_dsn(self, dsn):
        return re.sub(r"host=\S+", "host=" + self.pg.sockdir, dsn)

    def pg_restore(self):
        """Cleanup: the server runs again, accepting TCP, whatever the test did."""
        self.reject_tcp(False)
        if not self.pg_running():
            self.pg_start()

    def test_postgres_restart_under_running_revd(self):
        dsn, ids = self.new_db()
        iid = ids["main"]
        self.insert_leaves(dsn, iid)
        # No periodic sweep: the catch-up after the outage must come from the reconnection.
        r = self.start_pg_revd(dsn, sweep="1h")
        self.wait_log(r, r"postgres change feed: connected")
        goods = [l["serial"] for l in self.pki.leaves if l["status"] == "good"]
        a, b, uncached = goods[0], goods[1], goods[2:]
        revoked = self.pki.leaf_by_reason("keyCompromise")["serial"]
        before = {s: self.cached(r, s)[1] for s in (a, b, revoked)}

        t_stop = time.monotonic()
        self.pg_stop()
        # Cached answers: still served, the same bytes, before their nextUpdate.
        for s, der in before.items():
            resp, got = self.post(r, s)
            self.assertEqual(got, der, "cached answer for %s not served during the outage" % s)
            self.assertGreater(resp.singles[0]["next_update"], time.time())
        # An uncached serial: tryLater, fast.
        times = []
        for s in uncached[:4]:
            t0 = time.monotonic()
            self.assertEqual(self.status(r, s), "tryLater")
            times.append(time.monotonic() - t0)
        self.assertEqual(self.ossl_status(r, uncached[4]), "trylater")
        figure("postgres stopped: tryLater for uncached serials in %s ms (limit 1500)"
               % ", ".join("%.0f" % (t * 1000) for t in times))
        self.assertLess(max(times), 1.5)
        self.assertTrue(r.alive())

        # PostgreSQL back, but refusing revd (TCP) while a CA writes a revocation (socket).
        self.reject_tcp(True)
        self.pg_start()
        feeds_before = r.stderr().count("postgres change feed: connected")
        self.psql(self.socket_dsn(dsn), "UPDATE certificates SET revoked_at = now(), reason = 1 "
                  "WHERE issuer_id = %d AND serial = revd_serial('%s')" % (iid, a))
        t0 = time.monotonic()
        self.assertEqual(self.status(r, uncached[5]), "tryLater")
        self.assertLess(time.monotonic() - t0, 1.5)
        self.assertEqual(self.post(r, a)[1], before[a], "revd learnt of the revocation "
                                                        "although it could not connect")
        self.assertEqual(r.stderr().count("postgres change feed: connected"), feeds_before)
        down_for = time.monotonic() - t_stop

        # Let revd in: everything recovers by itself.
        self.reject_tcp(False)
        took_new = self.wait_for("an uncached serial after PostgreSQL returned",
                                 lambda: self.status(r, uncached[6]), "good", 8.0,
                                 interval=0.05)
        took_rev = self.wait_for("the revocation written while the feed was away",
                                 lambda: self.status(r, a), "revoked", 8.0, interval=0.05)
        figure("postgres back after %.1f s away: uncached serial answered %.2f s after revd "
               "was let in; the revocation written while the feed was away served %.2f s after "
               "revd was let in" % (down_for, took_new, took_new + took_rev))
        self.assertLess(took_new, 6.0)
        self.assertEqual(self.ossl_status(r, a), "revoked")
        self.assertEqual(self.ossl_status(r, revoked), "revoked")
        self.assertEqual(self.ossl_status(r, b), "good")
        self.assertGreater(r.stderr().count("postgres change feed: connected"), feeds_before)
        # And the feed works again: a new revocation within the usual second.
        self.psql(dsn, "UPDATE certificates SET revoked_at = now() WHERE issuer_id = %d AND "
                       "serial = revd_serial('%s')" % (iid, b))
        took = self.wait_for("a revocation after recovery", lambda: self.status(r, b),
                             "revoked", FEED_DEADLINE + 1)
        figure("after recovery: revocation served in %.0f ms" % (took * 1000))
        self.assertLess(took, FEED_DEADLINE)
        self.assertTrue(r.alive())

    def test_postgres_down_when_revd_starts(self):
        dsn, ids = self.new_db()
        self.insert_leaves(dsn, ids["main"])
        self.pg_stop()
        r = self.start_pg_revd(dsn, wait_db=False)  # returns once "listening on" is logged
        self.assertTrue(r.alive())
        good = self.pki.leaf("good")["serial"]
        times = []
        for _ in range(3):
            t0 = time.monotonic()
            self.assertEqual(self.status(r, good), "tryLater")
            times.append(time.monotonic() - t0)
        self.assertEqual(self.ossl_status(r, good), "trylater")
        figure("postgres down at start: tryLater in %s ms"
               % ", ".join("%.0f" % (t * 1000) for t in times))
        self.assertLess(max(times), 1.5)
        time.sleep(1.0)
        self.assertTrue(r.alive())
        self.pg_start()
        took = self.wait_for("the first answer once PostgreSQL is up",
                             lambda: self.status(r, good), "good", 8.0, interval=0.05)
        figure("postgres up after revd: first good answer %.2f s later" % took)
        self.assertLess(took, 6.0)
        key = self.pki.leaf_by_reason("keyCompromise")
        got, _ = self.ossl(r, [good, key["serial"], self.pki.unissued])
        self.assertEqual(got["0x" + good]["status"], "good")
        self.assertEqual((got["0x" + key["serial"]]["status"],
                          got["0x" + key["serial"]]["reason"]), ("revoked", "keyCompromise"))
        self.assertEqual(got["0x" + self.pki.unissued]["status"], "unknown")


if __name__ == "__main__":
    main()

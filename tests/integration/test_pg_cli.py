"""The database tools against a real PostgreSQL: `revd db migrate`, `revd db add-issuer`,
`revd import` (index.txt and certificate files), `revd revoke`, `revd status`, and the
schema's own constraints when a CA writes rows with raw SQL.

One PostgreSQL server for the module (pg_harness), a fresh database per test."""

import calendar
import glob
import os
import random
import re
import shutil
import subprocess
import tempfile
import time

from pg_harness import PgTestCase
from revd_harness import (REVD_BIN, SOURCE_DIR, asn1_time, copy_pki, der_children, der_read,
                          log, main, make_pki, openssl_time, read_index, run)

PKI = dict(levels=2, leaves=40, key_type="ec")  # as `mkpki.sh DIR --leaves 40 --quiet`
NEWEST = max(int(os.path.basename(p)[:3])
             for p in glob.glob(os.path.join(SOURCE_DIR, "sql", "[0-9][0-9][0-9]_*.sql")))
REASONS = {"unspecified": 0, "keyCompromise": 1, "CACompromise": 2, "affiliationChanged": 3,
           "superseded": 4, "cessationOfOperation": 5, "certificateHold": 6,
           "holdInstruction": 6, "keyTime": 1, "CAkeyTime": 2}
IMPORTED = re.compile(r"^imported (\d+) certificates \((\d+) new, (\d+) revocations applied\) "
                      r"in [0-9.]+ s$", re.M)


def db_serial(hexstr):
    """index.txt hex -> the stored form, hex (INTEGER contents)."""
    v = int(hexstr, 16)
    return v.to_bytes((v.bit_length() + 8) // 8, "big").hex()


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class PgCliTest(PgTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pki = make_pki(**PKI)

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="revd-pgcli-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    # ---- helpers
    def revd(self, *args, dsn=None, timeout=60):
        """Runs revd; DSN through REVD_DSN when given. (returncode, stdout, stderr)."""
        env = dict(os.environ)
        env.pop("REVD_DSN", None)
        if dsn is not None:
            env["REVD_DSN"] = dsn
        r = subprocess.run([REVD_BIN] + list(args), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout, env=env,
                           universal_newlines=True)
        return r.returncode, r.stdout, r.stderr

    def ok(self, *args, **kw):
        rc, out, err = self.revd(*args, **kw)
        self.assertEqual(rc, 0, "revd %s failed (%d):\n%s%s" % (" ".join(args), rc, out, err))
        return out

    def fails(self, rc_want, *args, **kw):
        rc, out, err = self.revd(*args, **kw)
        self.assertEqual(rc, rc_want, "revd %s: exit %d, want %d\n%s%s"
                         % (" ".join(args), rc, rc_want, out, err))
        return err

    def imported(self, out):
        m = IMPORTED.search(out)
        self.assertIsNotNone(m, out)
        return tuple(int(x) for x in m.groups())

    def q(self, dsn, sql):
        return self.psql(dsn, sql)

    def db_with_issuer(self, index=False):
        dsn = self.new_database()
        self.ok("db", "migrate", dsn=dsn)
        self.ok("db", "add-issuer", "--name", "issuing", "--cert", self.pki.issuing, dsn=dsn)
        if index:
            self.ok("import", "--issuer", "issuing", "--index", self.pki.index, dsn=dsn)
        return dsn

    def row(self, dsn, serial_hex):
        """(revoked_at epoch or None, reason or None, invalidity epoch or None, not_after)."""
        out = self.q(dsn, "SELECT floor(extract(epoch FROM revoked_at)), reason,"
                          " floor(extract(epoch FROM invalidity_date)),"
                          " floor(extract(epoch FROM not_after))"
                          " FROM certificates WHERE serial = '\\x%s'" % db_serial(serial_hex))
        self.assertNotEqual(out, "", "serial %s not in the table" % serial_hex)
        vals = [None if v == "" else int(float(v)) for v in out.split("|")]
        return tuple(vals)

    def rows(self, dsn):
        """{stored serial hex: (revoked_at, reason, invalidity, not_after)} in one query."""
        out = self.q(dsn, "SELECT encode(serial, 'hex'), floor(extract(epoch FROM revoked_at)),"
                          " reason, floor(extract(epoch FROM invalidity_date)),"
                          " floor(extract(epoch FROM not_after)) FROM certificates")
        res = {}
        for line in out.splitlines():
            f = line.split("|")
            res[f[0]] = tuple(None if v == "" else int(float(v)) for v in f[1:])
        return res

    def index_entries(self, path=None):
        return read_index(path or self.pki.index)

    # ---- db migrate
    def test_migrate_empty_then_again(self):
        dsn = self.new_database()
        out = self.ok("db", "migrate", "--dsn", dsn)
        self.assertIn("applied migration 1 (001_schema)", out)
        self.assertIn("schema is now at version %d" % NEWEST, out)
        for t in ("revd_schema", "issuers", "certificates"):
            self.assertEqual(self.q(dsn, "SELECT to_regclass('%s') IS NOT NULL" % t), "t", t)
        self.assertEqual(self.q(dsn, "SELECT max(version) FROM revd_schema"), str(NEWEST))
        self.assertEqual(self.q(dsn, "SELECT count(*) FROM pg_trigger WHERE tgname = "
                                     "'certificates_changed'"), "1")
        before = self.q(dsn, "SELECT version, applied_at FROM revd_schema ORDER BY 1")
        out = self.ok("db", "migrate", dsn=dsn)  # REVD_DSN
        self.assertEqual(out.strip(), "schema is up to date (version %d)" % NEWEST)
        self.assertEqual(self.q(dsn, "SELECT version, applied_at FROM revd_schema ORDER BY 1"),
                         before)

    def test_migrate_concurrently(self):
        # The advisory lock: three at once, one applies, the others find it done.
        dsn = self.new_database()
        env = dict(os.environ, REVD_DSN=dsn)
        procs = [subprocess.Popen([REVD_BIN, "db", "migrate"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env, universal_newlines=True)
                 for _ in range(3)]
        outs = [p.communicate(timeout=60) + (p.returncode,) for p in procs]
        for out, err, rc in outs:
            self.assertEqual(rc, 0, err)
        self.assertEqual(sum("applied migration 1" in o for o, _, _ in outs), 1, outs)
        self.assertEqual(self.q(dsn, "SELECT count(*) FROM revd_schema"), str(NEWEST))

    def test_migrate_refuses_newer_schema(self):
        dsn = self.new_database()
        self.ok("db", "migrate", dsn=dsn)
        self.q(dsn, "UPDATE revd_schema SET version = 99 "
                    "WHERE version = (SELECT max(version) FROM revd_schema)")
        err = self.fails(1, "db", "migrate", dsn=dsn)
        self.assertIn("revd db migrate: database schema is at version 99, newer than this "
                      "revd knows (%d): upgrade revd" % NEWEST, err)
        self.assertEqual(self.q(dsn, "SELECT max(version) FROM revd_schema"), "99")

    def test_migrate_reports_server_error(self):
        dsn = self.new_database()
        self.q(dsn, "CREATE TABLE issuers (x int)")
        err = self.fails(1, "db", "migrate", dsn=dsn)
        self.assertIn("revd db migrate: applying migration 001_schema: relation \"issuers\" "
                      "already exists", err)
        # One transaction: nothing of the migration is left behind.
        self.assertEqual(self.q(dsn, "SELECT to_regclass('revd_schema') IS NULL"), "t")

    # ---- db add-issuer
    def openssl_certid(self, hash_name):
        """(issuerNameHash, issuerKeyHash) hex of the CertID `openssl ocsp` builds."""
        path = os.path.join(self.tmp, "req-%s.der" % hash_name)
        r = run(["openssl", "ocsp", "-issuer", self.pki.issuing, "-" + hash_name, "-serial", "1",
                 "-no_nonce", "-reqout", path])
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(path, "rb") as f:
            der = f.read()
        # OCSPRequest > TBSRequest > requestList > Request > CertID
        tbs = der_children(der_read(der)[1])[0][1]
        req_list = [k for k in der_children(tbs) if k[0] == 0x30][0][1]
        cert_id = der_children(der_children(der_children(req_list)[0][1])[0][1])
        return cert_id[1][1].hex(), cert_id[2][1].hex()

    def test_add_issuer_hashes_match_openssl(self):
        dsn = self.new_database()
        self.ok("db", "migrate", dsn=dsn)
        out = self.ok("db", "add-issuer", "--dsn", dsn, "--name", "issuing",
                      "--cert", self.pki.issuing)
        self.assertIn("added issuer 'issuing'", out)
        for h in ("sha1", "sha256", "sha384", "sha512"):
            got = self.q(dsn, "SELECT encode(%s_name_hash, 'hex'), encode(%s_key_hash, 'hex') "
                              "FROM issuers WHERE name = 'issuing'" % (h, h)).split("|")
            self.assertEqual(tuple(got), self.openssl_certid(h), h)
        with open(self.pki.issuing) as f:
            pem = f.read()
        der = run(["openssl", "x509", "-outform", "DER"], input=pem.encode()).stdout
        self.assertEqual(self.q(dsn, "SELECT encode(certificate, 'hex') FROM issuers"),
                         der.hex())
        # Again: fine, and nothing changes.
        out = self.ok("db", "add-issuer", "--name", "issuing", "--cert", self.pki.issuing,
                      dsn=dsn)
        self.assertIn("already registered with this certificate", out)
        # The same name for another CA, or the same CA under another name: refused.
        err = self.fails(1, "db", "add-issuer", "--name", "issuing", "--cert", self.pki.root,
                         dsn=dsn)
        self.assertIn("revd db add-issuer: issuer 'issuing' is already registered", err)
        self.assertIn("different certificate", err)
        err = self.fails(1, "db", "add-issuer", "--name", "again", "--cert", self.pki.issuing,
                         dsn=dsn)
        self.assertIn("already registered as issuer 'issuing'", err)
        self.fails(1, "db", "add-issuer", "--name", "leaf", "--cert",
                   self.pki.leaves[0]["cert"], dsn=dsn)  # not a CA
        self.fails(2, "db", "add-issuer", "--name", "bad name", "--cert", self.pki.root,
                   dsn=dsn)
        self.assertEqual(self.q(dsn, "SELECT count(*) FROM issuers"), "1")

    # ---- import from index.txt
    def test_import_index(self):
        dsn = self.db_with_issuer()
        entries = self.index_entries()
        n_revoked = sum(1 for e in entries.values()
                        if e["flag"] == "R" and e["reason"] != "removeFromCRL")
        out = self.ok("import", "--issuer", "issuing", "--index", self.pki.index, dsn=dsn)
        self.assertEqual(self.imported(out), (len(entries), len(entries), n_revoked))
        self.assertEqual(self.q(dsn, "SELECT count(*) FROM certificates"), str(len(entries)))
        self.assertEqual(self.q(dsn, "SELECT count(*) FROM certificates WHERE revoked_at "
                                     "IS NOT NULL"), str(n_revoked))
        self.assertEqual(self.q(dsn, "SELECT count(*) FROM certificates WHERE not_before "
                                     "IS NOT NULL"), "0")
        rows = self.rows(dsn)
        self.assertEqual(set(rows), set(db_serial(s) for s in entries))
        for serial, e in entries.items():
            revoked_at, reason, inval, not_after = rows[db_serial(serial)]
            self.assertEqual(not_after, asn1_time(e["expiry"]), serial)
            if e["flag"] != "R":
                self.assertIsNone(revoked_at, serial)
                continue
            self.assertEqual(revoked_at, asn1_time(e["revtime"]), serial)
            self.assertEqual(reason, REASONS.get(e["reason"]), serial)
            want_inval = asn1_time(e["arg"]) if e["reason"] in ("keyTime", "CAkeyTime") else None
            self.assertEqual(inval, want_inval, serial)
        # The keyTime leaf, spelled out.
        leaf = self.pki.leaf_by_reason("keyCompromise", invalidity=True)
        _, reason, inval, _ = self.row(dsn, leaf["serial"])
        self.assertEqual((reason, iso(inval)), (1, "2024-01-02T03:04:05Z"))
        # A serial whose first octet is >= 0x80 is stored with its 00 sign octet.
        high = [s for s in entries if len(s) % 2 == 0 and int(s[0], 16) >= 8][0]
        stored = self.q(dsn, "SELECT encode(serial, 'hex') FROM certificates WHERE serial = "
                             "revd_serial('%s')" % high)
        self.assertEqual(stored, "00" + high.lower())

        # Again: nothing changes, not even change_seq, and no notification at all.
        seq = self.q(dsn, "SELECT max(change_seq), sum(change_seq) FROM certificates")
        out, notes = self.listening(dsn, "import", "--issuer", "issuing",
                                    "--index", self.pki.index)
        self.assertEqual(self.imported(out), (len(entries), 0, 0))
        self.assertEqual(self.q(dsn, "SELECT max(change_seq), sum(change_seq) FROM "
                                     "certificates"), seq)
        self.assertEqual(notes, [])

    def listening(self, dsn, *args):
        """Runs revd while a psql session LISTENs on revd_certificates: (stdout, payloads)."""
        marker = os.path.join(self.tmp, "listening")
        p = subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-d", dsn], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True)
        try:
            p.stdin.write("LISTEN revd_certificates;\n\\! touch %s\n" % marker)
            p.stdin.flush()
            deadline = time.monotonic() + 10
            while not os.path.exists(marker) and time.monotonic() < deadline:
                time.sleep(0.02)
            self.assertTrue(os.path.exists(marker), "psql did not LISTEN")
            out = self.ok(*args, dsn=dsn)
            got, err = p.communicate("SELECT 1;\n", timeout=20)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        os.unlink(marker)
        return out, re.findall(r'Asynchronous notification "revd_certificates" with payload '
                               r'"([^"]*)"', got)

    def test_import_is_one_bulk_notification(self):
        dsn = self.db_with_issuer()
        out, notes = self.listening(dsn, "import", "--issuer", "issuing", "--index",
                                    self.pki.index)
        self.assertGreater(self.imported(out)[1], 0)
        self.assertEqual(notes, ["resync"])
        # A single revocation is announced by serial.
        leaf = self.pki.leaf("good", 1)
        out, notes = self.listening(dsn, "revoke", "--issuer", "issuing", "--serial",
                                    leaf["serial"], "--reason", "superseded")
        self.assertEqual(len(notes), 1, notes)
        self.assertEqual(notes[0].split()[:2],
                         [self.q(dsn, "SELECT id FROM issuers"), db_serial(leaf["serial"])])

    def openssl_ca(self, pki, *args):
        r = run(["openssl", "ca", "-config", os.path.join(pki.ca_dir(pki.levels), "openssl.cnf"),
                 "-batch"] + list(args))
        self.assertEqual(r.returncode, 0, r.stderr.decode())

    def test_import_applies_later_revocations(self):
        pki = copy_pki(self.pki, os.path.join(self.tmp, "pki"))
        dsn = self.db_with_issuer()
        self.ok("import", "--issuer", "issuing", "--index", pki.index, dsn=dsn)
        a, b, held, db_only = (pki.leaf("good", i) for i in (1, 2, 3, 4))
        # The CA revokes two more; revd revoke put one on hold, and revoked another that
        # index.txt never will.
        self.openssl_ca(pki, "-revoke", a["cert"], "-crl_reason", "superseded")
        self.openssl_ca(pki, "-revoke", b["cert"], "-crl_compromise", "20250304050607Z")
        self.ok("revoke", "--issuer", "issuing", "--serial", held["serial"], "--reason",
                "certificateHold", "--time", "20240101000000Z", dsn=dsn)
        self.openssl_ca(pki, "-revoke", held["cert"], "-crl_reason", "keyCompromise")
        self.ok("revoke", "--issuer", "issuing", "--serial", db_only["serial"], "--reason",
                "affiliationChanged", dsn=dsn)
        entries = self.index_entries(pki.index)
        out = self.ok("import", "--issuer", "issuing", "--index", pki.index, dsn=dsn)
        self.assertEqual(self.imported(out), (len(entries), 0, 3))
        revoked_at, reason, inval, _ = self.row(dsn, a["serial"])
        self.assertEqual((revoked_at, reason, inval),
                         (asn1_time(entries[a["serial"]]["revtime"]), 4, None))
        _, reason, inval, _ = self.row(dsn, b["serial"])
        self.assertEqual((reason, iso(inval)), (1, "2025-03-04T05:06:07Z"))
        # The hold became keyCompromise, keeping the time of the hold.
        revoked_at, reason, _, _ = self.row(dsn, held["serial"])
        self.assertEqual((iso(revoked_at), reason), ("2024-01-01T00:00:00Z", 1))
        # An import never un-revokes.
        _, reason, _, _ = self.row(dsn, db_only["serial"])
        self.assertEqual(reason, 3)
        out = self.ok("import", "--issuer", "issuing", "--index", pki.index, dsn=dsn)
        self.assertEqual(self.imported(out), (len(entries), 0, 0))

    def test_import_errors(self):
        dsn = self.db_with_issuer()
        err = self.fails(1, "import", "--issuer", "nobody", "--index", self.pki.index, dsn=dsn)
        self.assertIn("revd import: no issuer named 'nobody'", err)
        bad = os.path.join(self.tmp, "bad-index.txt")
        with open(self.pki.index) as f:
            lines = f.read().splitlines(True)
        with open(bad, "w") as f:
            f.writelines(lines[:3] + ["V\t271123000000Z\t\tXYZ\tunknown\t/CN=x\n"] + lines[3:])
        err = self.fails(1, "import", "--issuer", "issuing", "--index", bad, dsn=dsn)
        self.assertIn("revd import: %s: line 4: bad serial number" % bad, err)
        err = self.fails(2, "import", "--issuer", "issuing", "--index", self.pki.index,
                         self.pki.leaves[0]["cert"], dsn=dsn)
        self.assertIn("not both", err)
        self.fails(2, "import", "--issuer", "issuing", dsn=dsn)
        self.assertEqual(self.q(dsn, "SELECT count(*) FROM certificates"), "0")

    # ---- import from certificate files
    def test_import_certificate_files(self):
        dsn = self.db_with_issuer()
        leaves = [l["cert"] for l in self.pki.leaves]
        out = self.ok("import", "--issuer", "issuing", *leaves, dsn=dsn)
        self.assertEqual(self.imported(out), (len(leaves), len(leaves), 0))
        self.assertEqual(self.q(dsn, "SELECT count(*) FROM certificates"), str(len(leaves)))
        for leaf in (self.pki.leaves[0], self.pki.leaf("expired")):
            r = run(["openssl", "x509", "-in", leaf["cert"], "-noout", "-startdate", "-enddate"])
            dates = dict(l.split("=", 1) for l in r.stdout.decode().splitlines())
            got = self.q(dsn, "SELECT floor(extract(epoch FROM not_before)),"
                              " floor(extract(epoch FROM not_after)), revoked_at IS NULL"
                              " FROM certificates WHERE serial = '\\x%s'"
                              % db_serial(leaf["serial"])).split("|")
            self.assertEqual([int(float(got[0])), int(float(got[1])), got[2]],
                             [openssl_time(dates["notBefore"]),
                              openssl_time(dates["notAfter"]), "t"])
        # Again, with a bundle (one file, several certificates) and a DER file among them.
        bundle = os.path.join(self.tmp, "bundle.pem")
        with open(bundle, "w") as f:
            for p in leaves[:5]:
                with open(p) as g:
                    f.write(g.read())
        der = os.path.join(self.tmp, "leaf.der")
        run(["openssl", "x509", "-in", leaves[6], "-outform", "DER", "-out", der])
        out = self.ok("import", "--issuer", "issuing", bundle, der, *leaves, dsn=dsn)
        self.assertEqual(self.imported(out), (len(leaves) + 6, 0, 0))

        # A certificate from another CA, second in its file: refused, by file and position.
        other = os.path.join(self.tmp, "other.pem")
        with open(other, "w") as f:
            for p in (leaves[0], os.path.join(self.pki.ca_dir(1), "ocsp.pem")):
                with open(p) as g:
                    f.write(g.read())
        self.q(dsn, "DELETE FROM certificates")
        err = self.fails(1, "import", "--issuer", "issuing", leaves[1], other, dsn=dsn)
        self.assertIn("revd import: %s: certificate 2 " % other, err)
        self.assertIn("was not issued by 'issuing'", err)
        self.assertEqual(self.q(dsn, "SELECT count(*) FROM certificates"), "0")
        # The root's own certificate is not one of the issuing CA's either.
        err = self.fails(1, "import", "--issuer", "issuing", self.pki.root, dsn=dsn)
        self.assertIn("certificate 1", err)
        err = self.fails(1, "import", "--issuer", "issuing", self.pki.leaves[0]["key"], dsn=dsn)
        self.assertIn("no certificate found", err)

        # Serials of 32 octets are fine; 33 are refused.
        csr = os.path.join(self.tmp, "big.csr")
        r = run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:P-256", "-noenc", "-keyout", os.path.join(self.tmp, "big.key"),
                 "-subj", "/CN=big serial", "-out", csr])
        self.assertEqual(r.returncode, 0, r.stderr)
        for octets in (32, 33):
            path = os.path.join(self.tmp, "serial%d.pem" % octets)
            r = run(["openssl", "x509", "-req", "-in", csr, "-CA", self.pki.issuing, "-CAkey",
                     self.pki.issuing_key, "-days", "30", "-out", path,
                     "-set_serial", "0x7F" + "AB" * (octets - 1)])
            self.assertEqual(r.returncode, 0, r.stderr)
            if octets == 32:
                self.assertEqual(self.imported(self.ok("import", "--issuer", "issuing", path,
                                                       dsn=dsn)), (1, 1, 0))
            else:
                err = self.fails(1, "import", "--issuer", "issuing", path, dsn=dsn)
                self.assertIn("%s: certificate 1 (/CN=big serial): serial number longer than "
                              "32 octets" % path, err)
        self.assertEqual(self.q(dsn, "SELECT encode(serial, 'hex') FROM certificates"),
                         "7f" + "ab" * 31)

    # ---- revoke
    def test_revoke_and_unhold(self):
        dsn = self.db_with_issuer(index=True)
        leaf = self.pki.leaf("good", 0)
        out = self.ok("revoke", "--issuer", "issuing", "--serial", leaf["serial"], "--reason",
                      "keyCompromise", "--invalidity-date", "2024-01-02T03:04:05Z",
                      "--time", "20250607080910Z", dsn=dsn)
        self.assertIn("revoked serial 0x%s of issuing at 2025-06-07T08:09:10Z" % leaf["serial"],
                      out)
        revoked_at, reason, inval, _ = self.row(dsn, leaf["serial"])
        self.assertEqual((iso(revoked_at), reason, iso(inval)),
                         ("2025-06-07T08:09:10Z", 1, "2024-01-02T03:04:05Z"))
        err = self.fails(1, "revoke", "--issuer", "issuing", "--serial", leaf["serial"],
                         "--reason", "superseded", dsn=dsn)
        self.assertIn("revd revoke: serial 0x%s of issuing is already revoked" % leaf["serial"],
                      err)
        err = self.fails(1, "revoke", "--unhold", "--issuer", "issuing", "--serial",
                         leaf["serial"], dsn=dsn)
        self.assertIn("not on hold", err)
        self.assertEqual(self.row(dsn, leaf["serial"])[1], 1)

        # Hold (now), release, hold again, then escalate: the hold's time is kept.
        held = self.pki.leaf("good", 1)
        t0 = int(time.time())
        self.ok("revoke", "--issuer", "issuing", "--serial", "0x" + held["serial"].lower(),
                "--reason", "certificateHold", dsn=dsn)
        revoked_at, reason, _, _ = self.row(dsn, held["serial"])
        self.assertEqual(reason, 6)
        self.assertLessEqual(abs(revoked_at - t0), 5)
        out = self.ok("revoke", "--unhold", "--issuer", "issuing", "--serial", held["serial"],
                      dsn=dsn)
        self.assertIn("released", out)
        self.assertEqual(self.row(dsn, held["serial"])[:3], (None, None, None))
        err = self.fails(1, "revoke", "--unhold", "--issuer", "issuing", "--serial",
                         held["serial"], dsn=dsn)
        self.assertIn("is not revoked", err)
        self.ok("revoke", "--issuer", "issuing", "--serial", held["serial"], "--reason",
                "certificateHold", "--time", "2024-01-01T02:00:00+02:00", dsn=dsn)
        self.fails(1, "revoke", "--issuer", "issuing", "--serial", held["serial"], "--reason",
                   "certificateHold", dsn=dsn)
        self.ok("revoke", "--issuer", "issuing", "--serial", held["serial"], "--reason",
                "CACompromise", dsn=dsn)
        revoked_at, reason, _, _ = self.row(dsn, held["serial"])
        self.assertEqual((iso(revoked_at), reason), ("2024-01-01T00:00:00Z", 2))

    def test_revoke_unknown_serial_or_issuer(self):
        dsn = self.db_with_issuer(index=True)
        unissued = self.pki.unissued
        err = self.fails(1, "revoke", "--issuer", "issuing", "--serial", unissued, "--reason",
                         "keyCompromise", dsn=dsn)
        self.assertIn("revd revoke: serial 0x%s" % unissued, err)
        self.assertIn("not issued by issuing", err)
        err = self.fails(1, "revoke", "--issuer", "nobody", "--serial", unissued, "--reason",
                         "keyCompromise", dsn=dsn)
        self.assertIn("revd revoke: no issuer named 'nobody'", err)
        leaf = self.pki.leaf("good", 0)["serial"]
        for bad in (["--reason", "removeFromCRL"], ["--reason", "sloppy"],
                    ["--reason", "superseded", "--time", "yesterday"],
                    ["--unhold", "--reason", "superseded"], []):
            with self.subTest(args=bad):
                err = self.fails(2, "revoke", "--issuer", "issuing", "--serial", leaf, *bad,
                                 dsn=dsn)
                self.assertIn("revd revoke: ", err)
        self.assertEqual(self.row(dsn, leaf)[0], None)

    # ---- status
    def test_status_from_database_and_index(self):
        dsn = self.db_with_issuer(index=True)
        good = self.pki.leaf("good", 0)["serial"]
        revoked = self.pki.leaf_by_reason("keyCompromise", invalidity=True)["serial"]
        expired = self.pki.leaf("expired")["serial"]
        unissued = self.pki.unissued
        entries = self.index_entries()
        for source in (["--dsn", dsn], ["--index", self.pki.index]):
            def status(serial, *extra):
                return self.ok("status", *source, "--issuer", "issuing", "--serial", serial,
                               *extra).strip()
            with self.subTest(source=source[0]):
                self.assertRegex(status(good), r"^serial 0x%s issued by issuing: not revoked, "
                                 r"valid until \S+Z -> OCSP: good$" % good)
                self.assertEqual(status(revoked),
                                 "serial 0x%s issued by issuing: revoked at %s, reason "
                                 "keyCompromise, invalidity date 2024-01-02T03:04:05Z, valid "
                                 "until %s -> OCSP: revoked"
                                 % (revoked, iso(asn1_time(entries[revoked]["revtime"])),
                                    iso(asn1_time(entries[revoked]["expiry"]))))
                self.assertEqual(status(expired),
                                 "serial 0x%s issued by issuing: not revoked, expired "
                                 "2021-01-01 (status unchanged by expiry) -> OCSP: good"
                                 % expired)
                self.assertEqual(status(unissued),
                                 "serial 0x%s is not in issuing's records -> OCSP: unknown "
                                 "(not_issued = unknown)" % unissued)
                self.assertIn("-> OCSP: unauthorized (not_issued = unauthorized)",
                              status(unissued, "--not-issued", "unauthorized"))
                self.assertIn("-> OCSP: revoked at 1970-01-01T00:00:00Z, reason "
                              "certificateHold, with the Extended Revoked Definition",
                              status(unissued, "--not-issued", "revoked"))
        err = self.fails(1, "status", "--issuer", "nobody", "--serial", good, dsn=dsn)
        self.assertIn("revd status: no issuer named 'nobody'", err)
        self.fails(2, "status", "--dsn", dsn, "--index", self.pki.index, "--issuer", "issuing",
                   "--serial", good)
        self.fails(2, "status", "--issuer", "issuing", "--serial", good)  # no REVD_DSN
        self.fails(2, "status", "--issuer", "issuing", "--serial", good, "--not-issued",
                   "good", dsn=dsn)

    # ---- the schema, as a CA writing raw SQL meets it
    def test_constraints_refuse_malformed_rows(self):
        dsn = self.db_with_issuer()
        iid = self.q(dsn, "SELECT id FROM issuers")
        cols = "INSERT INTO certificates (issuer_id, serial, not_after, revoked_at, reason)"
        cases = [
            ("%s VALUES (%s, '\\x0001', now(), NULL, NULL)" % (cols, iid),
             r'violates check constraint "certificates_serial_check"'),
            ("%s VALUES (%s, '\\x01', now(), now(), 7)" % (cols, iid),
             r'violates check constraint "certificates_reason_check"'),
            ("%s VALUES (%s, '\\x02', now(), NULL, NULL)" % (cols, int(iid) + 100),
             r'violates foreign key constraint "certificates_issuer_id_fkey"'),
            ("%s VALUES (%s, '\\x03', now(), NULL, 1)" % (cols, iid),
             r'violates check constraint "certificates_check\d*"'),
        ]
        for sql, want in cases:
            with self.subTest(sql=sql):
                r = self.psql(dsn, sql, check=False)
                self.assertNotEqual(r.returncode, 0, sql)
                self.assertRegex(r.stderr, "ERROR: .*" + want)
        self.assertEqual(self.q(dsn, "SELECT count(*) FROM certificates"), "0")
        # What the CA should write instead is accepted.
        self.q(dsn, "%s VALUES (%s, revd_serial('8001'), now(), now(), 1)" % (cols, iid))
        self.assertEqual(self.q(dsn, "SELECT encode(serial, 'hex') FROM certificates"), "008001")

    # ---- scale
    def test_import_100k_rows(self):
        n = 100000
        path = os.path.join(self.tmp, "index-100k.txt")
        rnd = random.Random(6960)
        serials = set()
        with open(path, "w") as f:
            while len(serials) < n:
                s = "%032X" % rnd.getrandbits(128)
                if s in serials:
                    continue
                serials.add(s)
                i = len(serials)
                if i % 10 == 0:
                    f.write("R\t301231235959Z\t250101000000Z,keyCompromise\t%s\tunknown\t/CN=l%d\n"
                            % (s, i))
                else:
                    f.write("V\t301231235959Z\t\t%s\tunknown\t/CN=l%d\n" % (s, i))
        dsn = self.db_with_issuer()
        t0 = time.monotonic()
        out = self.ok("import", "--issuer", "issuing", "--index", path, dsn=dsn, timeout=300)
        dt = time.monotonic() - t0
        self.assertEqual(self.imported(out), (n, n, n // 10))
        log("imported %d rows in %.2f s: %.0f rows/s (%s)" % (n, dt, n / dt, out.strip()))
        self.assertEqual(self.q(dsn, "SELECT count(*), count(revoked_at) FROM certificates"),
                         "%d|%d" % (n, n // 10))
        t0 = time.monotonic()
        out = self.ok("import", "--issuer", "issuing", "--index", path, dsn=dsn, timeout=300)
        log("re-imported %d unchanged rows in %.2f s" % (n, time.monotonic() - t0))
        self.assertEqual(self.imported(out), (n, 0, 0))

    # ---- the command line
    def test_usage_and_connection_errors(self):
        for cmd in (["db", "migrate"], ["db", "add-issuer"], ["import"], ["revoke"], ["status"]):
            with self.subTest(cmd=cmd):
                out = self.ok(*cmd, "--help")
                self.assertTrue(out.startswith("usage: revd %s" % " ".join(cmd)), out)
                err = self.fails(2, *cmd, "--no-such-option", dsn="dbname=x")
                self.assertIn("revd %s: unknown option '--no-such-option'" % " ".join(cmd), err)
                self.assertIn("usage: revd %s" % " ".join(cmd), err)
                err = self.fails(2, *cmd, "--dsn")
                self.assertIn("revd %s: option '--dsn' needs a value" % " ".join(cmd), err)
        self.fails(2, "db")
        self.fails(2, "db", "frobnicate")
        # Nothing listens on port 1. The message names where, never the password.
        for dsn in ("host=127.0.0.1 port=1 dbname=revd user=ca password=s3cr3t-pw",
                    "postgresql://ca:s3cr3t-pw@127.0.0.1:1/revd",
                    "postgresql://ca:s3cr3t-pw@127.0.0.1:1/revd?bogus=1",
                    "host=127.0.0.1 port=1 password='s3cr3t-pw"):
            with self.subTest(dsn=dsn):
                err = self.fails(1, "db", "migrate", "--dsn", dsn)
                self.assertNotIn("s3cr3t", err)
                self.assertTrue(err.startswith("revd db migrate: "), err)
                if "bogus" not in dsn and "'" not in dsn:
                    self.assertIn("cannot connect to database 'revd' on 127.0.0.1 port 1 as "
                                  "user 'ca'", err)


if __name__ == "__main__":
    main()

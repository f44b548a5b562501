"""CRLs for issuers in PostgreSQL, with several revd instances on one database: one
generator per series (the crl_series row lock), every instance serving the same bytes,
numbers that only grow (in the crls table, across restarts, and with `revd crl` run
concurrently), a revocation by `revd revoke` reaching every instance's delta CRL within
a bounded time, `revd crl` after a revocation and while another generator holds the
series, and a CA that signs its own CRLs (crl_import = yes) whose instances refuse a row
whose signature does not verify and keep serving the last good CRL (and serve what
`revd crl import` accepts after it).

One PostgreSQL server for the module (pg_harness), a fresh database per test; issuers
registered and index.txt imported with the revd CLI. openssl judges the CRLs. Measured
latencies are printed to stdout (ctest -V shows them)."""

import os
import re
import subprocess
import time

from crl_harness import (LIBFAKETIME, Crl, faketime_env, get_crl, openssl_crl_verify,
                         openssl_verify, pem_crl_to_der, run_revd_cli, wait_until, write_pem)
from pg_harness import PgTestCase
from revd_harness import (REVD_BIN, RevdTestCase, _die_with_parent, copy_pki, log, main,
                          main_pki, ocsp_request, run)

BASE_URL = "http://crl.revd.test/crl"
VALIDITY, INTERVAL = 7200, 3600
DELTA_VALIDITY, DELTA_INTERVAL = 1800, 600
DELTA_DEADLINE = 15.0
CERT_REVOKED = 23


def figure(msg):
    print("    [crl-pg] %s" % msg, flush=True)


class CrlPgTest(PgTestCase, RevdTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pki = main_pki()

    # ---- database and CLI
    def revd_cli(self, *args, ok=True, env=None):
        rc, out, err = run_revd_cli(REVD_BIN, args, env=env)
        if ok:
            self.assertEqual(rc, 0, "revd %s failed (%d):\n%s%s" % (" ".join(args), rc, out,
                                                                     err))
        return rc, out, err

    def new_db(self, pki=None):
        pki = pki or self.pki
        dsn = self.new_database()
        self.revd_cli("db", "migrate", "--dsn", dsn)
        self.revd_cli("db", "add-issuer", "--dsn", dsn, "--name", "main", "--cert", pki.issuing)
        self.revd_cli("import", "--dsn", dsn, "--issuer", "main", "--index", pki.index)
        return dsn

    def revoke(self, dsn, serial, reason="keyCompromise"):
        self.revd_cli("revoke", "--dsn", dsn, "--issuer", "main", "--serial", serial,
                      "--reason", reason)

    def rows(self, dsn):
        """Every published CRL: [(shard, number, delta_base or None, published_at)]."""
        out = self.psql(dsn, "SELECT shard, number, coalesce(delta_base, 0), "
                             "extract(epoch FROM published_at) FROM crls c JOIN issuers i "
                             "ON i.id = c.issuer_id WHERE i.name = 'main' ORDER BY shard, number")
        res = []
        for line in out.splitlines():
            s, n, b, p = line.split("|")
            res.append((int(s), int(n), int(b) or None, float(p)))
        return res

    def row_der(self, dsn, number):
        h = self.psql(dsn, "SELECT encode(der, 'hex') FROM crls c JOIN issuers i ON i.id = "
                           "c.issuer_id WHERE i.name = 'main' AND number = %d" % number)
        return bytes.fromhex(h)

    def check_table(self, dsn):
        """Numbers per (issuer, shard): unique, in publishing order, deltas on a full CRL
        below them, and never above crl_series.last_number. Returns the rows."""
        dup = self.psql(dsn, "SELECT issuer_id, shard, number FROM crls GROUP BY 1, 2, 3 "
                             "HAVING count(*) > 1")
        self.assertEqual(dup, "", "a CRL number used twice")
        rows = self.rows(dsn)
        self.assertTrue(rows, "no CRL in the table")
        fulls = {n for _, n, b, _ in rows if b is None}
        for a, b in zip(rows, rows[1:]):
            if a[0] == b[0]:
                self.assertLess(a[1], b[1])
                # published_at is when the publishing transaction began (it takes the
                # series lock right after), hence the slack.
                self.assertLessEqual(a[3], b[3] + 0.5, "a lower number published later: "
                                     "%r %r" % (a, b))
        for _, n, base, _ in rows:
            if base is not None:
                self.assertLess(base, n)
                self.assertIn(base, fulls, "delta %d on a full CRL that is not there" % n)
        last = int(self.psql(dsn, "SELECT max(last_number) FROM crl_series s JOIN issuers i "
                                  "ON i.id = s.issuer_id WHERE i.name = 'main'"))
        self.assertEqual(last, max(n for _, n, _, _ in rows))
        return rows

    # ---- revd
    def conf(self, dsn, issuer_extra=None, pki=None, crl_extra=""):
        pki = pki or self.pki
        if issuer_extra is None:
            issuer_extra = "crl = yes\ncrl_key = %s\n" % pki.issuing_key
        return ("[server]\nworkers = 2\n\n[postgres]\ndsn = %s\n\n[crl]\nbase_url = %s\n"
                "validity = %ds\ninterval = %ds\ndelta_validity = %ds\ndelta_interval = %ds\n"
                "delta_debounce = 500ms\n%s\n[issuer main]\nca = %s\nsigner_cert = %s\n"
                "signer_key = %s\nstore = postgres\n%s"
                % (dsn, BASE_URL, VALIDITY, INTERVAL, DELTA_VALIDITY, DELTA_INTERVAL,
                   crl_extra, pki.issuing, pki.ocsp_cert, pki.ocsp_key, issuer_extra))

    def start_instances(self, dsn, n=2, wait_crls=True, **kw):
        probe = ocsp_request(self.pki.issuing, self.pki.leaf("good")["serial"])
        rs = [self.start_revd(config=self.conf(dsn, **kw), probe=probe,
                              name="revd-%s" % "ABCDEFG"[i]) for i in range(n)]
        if wait_crls:
            self.wait_same(rs, "the first CRLs")
        return rs

    def served(self, r, name):
        st, h, body = get_crl(r.port, name)
        return (body, h.get("etag")) if st == 200 else (None, None)

    def wait_same(self, rs, what, pred=None, timeout=DELTA_DEADLINE):
        """Waits until every instance serves the same full and delta CRL (bytes and
        ETag), for which pred(full, delta) holds; returns (full, delta, seconds)."""
        def probe():
            got = [(self.served(r, "main.crl"), self.served(r, "main-delta.crl")) for r in rs]
            if got[0][0][0] is None or got[0][1][0] is None or any(g != got[0] for g in got):
                return None
            full, delta = Crl(got[0][0][0]), Crl(got[0][1][0])
            return (full, delta) if pred is None or pred(full, delta) else None
        (full, delta), dt = wait_until(self, "%s on all instances" % what, probe, timeout,
                                       interval=0.05, describe=lambda: self.describe(rs))
        return full, delta, dt

    def describe(self, rs):
        """What each instance serves: its CRL numbers."""
        out = []
        for r in rs:
            nums = []
            for name in ("main.crl", "main-delta.crl"):
                body, _ = self.served(r, name)
                nums.append(Crl(body).number if body else None)
            out.append("%s serves full %s, delta %s" % (r.name, nums[0], nums[1]))
        return ", ".join(out)

    def stop_all(self, rs):
        for r in rs:
            r.expect_alive = False
            self.assertEqual(r.stop(), 0, "%s did not exit cleanly" % r.name)

    # ------------------------------------------------------------------ tests

    def test_row_over_max_bytes_is_not_read(self):
        """A CRL row larger than [crl] max_bytes is refused in the query (never fetched
        into memory): the instance says so and serves no CRL rather than a cut one."""
        dsn = self.new_db()
        self.psql(dsn, "INSERT INTO certificates (issuer_id, serial, not_after, revoked_at, "
                       "reason) SELECT id, decode(to_hex(268435456 + g), 'hex'), now() + "
                       "interval '1 year', now() - interval '1 hour', 1 FROM issuers, "
                       "generate_series(1, 150) g WHERE name = 'main'")
        builder = self.start_instances(dsn, n=1)[0]
        full, _ = self.served(builder, "main.crl")
        self.assertGreater(len(full), 4096)
        small = self.start_revd(config=self.conf(dsn, crl_extra="build = no\nmax_bytes = 4096\n"),
                                name="revd-small")
        wait_until(self, "the refusal logged",
                   lambda: "over [crl] max_bytes" in small.stderr() or None, 10,
                   interval=0.05)
        st, _, _ = get_crl(small.port, "main.crl")
        self.assertEqual(st, 404)
        self.assertIn("full CRL number %d of main is %d bytes" % (Crl(full).number, len(full)),
                      small.stderr())

    def test_instances_serve_the_same_crls(self):
        dsn = self.new_db()
        rs = self.start_instances(dsn)
        full0, delta0, _ = self.wait_same(rs, "the first CRLs")
        # One generator built the full CRL (number 1); deltas on it follow, one more when
        # the other instance started after that build (each start makes one, for changes
        # made while nothing ran).
        rows = self.check_table(dsn)
        self.assertEqual([(n, b) for _, n, b, _ in rows][:2], [(1, None), (2, 1)])
        self.assertLessEqual(len(rows), 3, rows)
        self.assertTrue(all(b == 1 for _, n, b, _ in rows[1:]), rows)
        self.assertEqual((full0.number, delta0.delta_base), (1, 1))
        self.assertEqual(delta0.number, rows[-1][1])
        self.assertEqual(self.row_der(dsn, 1), full0.der)
        victim = self.pki.leaf("good", 7)
        vserial = int(victim["serial"], 16)
        t_cmd = time.monotonic()
        self.revoke(dsn, victim["serial"], "keyCompromise")
        t_done = time.monotonic()
        # Each instance's delta, timed separately from the start of `revd revoke`.
        latency = {}
        pending = set(rs)
        deadline = t_done + DELTA_DEADLINE
        while pending and time.monotonic() < deadline:
            for r in list(pending):
                body, _ = self.served(r, "main-delta.crl")
                if body is not None and vserial in Crl(body).entries:
                    latency[r.name] = time.monotonic() - t_cmd
                    pending.discard(r)
            time.sleep(0.02)
        self.assertFalse(pending, "the revocation never reached the delta of %s"
                         % ", ".join(r.name for r in pending))
        for name, dt in sorted(latency.items()):
            figure("revd revoke -> delta served by %s: %.0f ms (revoke itself took %.0f ms)"
                   % (name, dt * 1000, (t_done - t_cmd) * 1000))
        full, delta, _ = self.wait_same(rs, "the new delta",
                                        lambda f, d: vserial in d.entries)
        self.assertEqual(full.der, full0.der, "the full CRL is rebuilt only when due")
        self.assertEqual(delta.delta_base, full.number)
        self.assertGreater(delta.number, delta0.number)
        self.assertEqual(delta.entries[vserial]["reason"], 1)
        # PEM and validators agree across instances too.
        pems = [self.served(r, "main-delta.pem") for r in rs]
        self.assertTrue(all(p == pems[0] for p in pems))
        self.assertEqual(pem_crl_to_der(pems[0][0]), delta.der)
        # The table: what is served is the latest row, numbers unique and growing.
        rows = self.check_table(dsn)
        self.assertEqual(max(n for _, n, b, _ in rows if b is not None), delta.number)
        self.assertEqual(self.row_der(dsn, delta.number), delta.der)
        # openssl: revoked with the delta, not by the full CRL alone.
        ca = self.pki.chain
        for c in (full, delta):
            ok, out = openssl_crl_verify(c.der, ca)
            self.assertTrue(ok, out)
        fp = write_pem(os.path.join(self.tmp, "full.pem"), full.der)
        dp = write_pem(os.path.join(self.tmp, "delta.pem"), delta.der)
        rc, _, out = openssl_verify(ca, victim["cert"], [fp])
        self.assertEqual(rc, 0, out)
        rc, code, out = openssl_verify(ca, victim["cert"], [fp, dp], deltas=True)
        self.assertEqual((rc != 0, code), (True, CERT_REVOKED), out)

    def test_numbers_grow_across_restarts_and_revd_crl(self):
        dsn = self.new_db()
        rs = self.start_instances(dsn)
        seen = {}  # number -> DER: a number must never name two different CRLs

        def note(*crls):
            for c in crls:
                self.assertEqual(seen.setdefault(c.number, c.der), c.der,
                                 "CRL number %d names two different CRLs" % c.number)

        v1, v2 = self.pki.leaf("good", 8), self.pki.leaf("good", 9)
        self.revoke(dsn, v1["serial"], "superseded")
        full1, delta1, _ = self.wait_same(rs, "the first revocation",
                                          lambda f, d: int(v1["serial"], 16) in d.entries)
        note(full1, delta1)
        before = max(n for _, n, _, _ in self.check_table(dsn))
        self.stop_all(rs)
        rs = self.start_instances(dsn)
        full2, delta2, _ = self.wait_same(rs, "the CRLs after the restart")
        note(full2, delta2)
        self.assertGreaterEqual(full2.number, full1.number)
        self.assertGreaterEqual(delta2.number, delta1.number)
        self.revoke(dsn, v2["serial"], "cessationOfOperation")
        full3, delta3, _ = self.wait_same(rs, "a revocation after the restart",
                                          lambda f, d: int(v2["serial"], 16) in d.entries)
        note(full3, delta3)
        self.assertGreater(delta3.number, before, "a number was used again after the restart")
        # `revd crl` from two processes at once, a few times, while the instances run.
        # Under libfaketime each round is 90 minutes later, so the full CRL (interval 1h)
        # is due in every round and both processes race for it.
        if not LIBFAKETIME:
            self.skipTest("libfaketime missing: the concurrent revd crl rounds need it")
        conf_path = os.path.join(self.tmp, "crl.conf")
        with open(conf_path, "w") as f:
            f.write(self.conf(dsn))
        top = max(n for _, n, _, _ in self.check_table(dsn))
        for rnd in range(1, 4):
            env = faketime_env("+%dm" % (90 * rnd))
            procs, outs = [], []
            for i in range(2):
                out = os.path.join(self.tmp, "out%d-%d" % (rnd, i))
                os.mkdir(out)
                outs.append(out)
                procs.append(subprocess.Popen([REVD_BIN, "crl", "--config", conf_path, "--out",
                                               out], stdout=subprocess.PIPE,
                                              stderr=subprocess.PIPE, env=env,
                                              preexec_fn=_die_with_parent))
            results = [(p.wait(timeout=60), p.stdout.read().decode(), p.stderr.read().decode())
                       for p in procs]
            for p in procs:
                p.stdout.close()
                p.stderr.close()
            rows = self.check_table(dsn)
            new_top = max(n for _, n, _, _ in rows)
            # One full CRL and its delta per round, whichever process built them; the
            # other process, once it holds the series, adds at most a delta of its own
            # (every start makes one, unless a CRL built after its start second exists).
            self.assertIn(new_top, (top + 2, top + 3), "round %d: %r" % (rnd, rows))
            fulls = [n for _, n, b, _ in rows if b is None and n > top]
            self.assertEqual(fulls, [top + 1], "round %d: %r" % (rnd, rows))
            self.assertTrue(all(b == top + 1 for _, n, b, _ in rows if n > top + 1), rows)
            current = 0
            for (rc, so, se), out in zip(results, outs):
                self.assertIn(rc, (0, 1), "revd crl in round %d:\n%s%s" % (rnd, so, se))
                for name in sorted(os.listdir(out)):
                    with open(os.path.join(out, name), "rb") as f:
                        c = Crl(f.read())
                    note(c)  # whatever it wrote: no number names two CRLs
                    self.assertEqual(c.is_delta, name == "main-delta.crl")
                if sorted(os.listdir(out)) == ["main-delta.crl", "main.crl"]:
                    with open(os.path.join(out, "main-delta.crl"), "rb") as f:
                        wd = Crl(f.read())
                    if wd.number in (top + 2, top + 3):
                        current += 1
                        self.assertEqual(self.row_der(dsn, wd.number), wd.der)
                        self.assertEqual(wd.delta_base, top + 1)
                        continue
                # Lost the race for the series lock: see test_revd_crl_while_series_held.
                figure("round %d: a revd crl that lost the race exited %d with %r"
                       % (rnd, rc, sorted(os.listdir(out))))
            self.assertGreaterEqual(current, 1, "round %d: no process wrote the new CRLs" % rnd)
            top = new_top
            # The running instances pick up what revd crl published.
            full, delta, _ = self.wait_same(rs, "round %d's CRLs" % rnd,
                                            lambda f, d, t=top: d.number >= t)
            note(full, delta)
        figure("numbers seen: %s" % sorted(seen))

    def test_revd_crl_after_revoke(self):
        # The CA revokes with `revd revoke` while no revd runs, then publishes with
        # `revd crl`: what it writes must list the revocation (a running instance would
        # have, within the debounce).
        dsn = self.new_db()
        conf_path = os.path.join(self.tmp, "crl.conf")
        with open(conf_path, "w") as f:
            f.write(self.conf(dsn))
        out1 = os.path.join(self.tmp, "out1")
        os.mkdir(out1)
        self.revd_cli("crl", "--config", conf_path, "--out", out1)
        victim = self.pki.leaf("good", 6)
        vserial = int(victim["serial"], 16)
        self.revoke(dsn, victim["serial"], "keyCompromise")
        out2 = os.path.join(self.tmp, "out2")
        os.mkdir(out2)
        self.revd_cli("crl", "--config", conf_path, "--out", out2)
        got = {}
        for name in ("main.crl", "main-delta.crl"):
            with open(os.path.join(out2, name), "rb") as f:
                c = Crl(f.read())
            got[name] = (c.number, vserial in c.entries)
        self.assertTrue(any(v for _, v in got.values()),
                        "revd crl wrote CRLs (number, lists %X) %r that omit the revocation "
                        "`revd revoke` made before it ran" % (vserial, got))

    def hold_series(self, dsn, seconds):
        """Holds the issuer's crl_series row as a generator does while it builds (a psql
        session in a transaction); returns the psql process once the lock is held."""
        self.psql(dsn, "INSERT INTO crl_series (issuer_id, shard) SELECT id, 0 FROM issuers "
                       "WHERE name = 'main' ON CONFLICT DO NOTHING")
        p = subprocess.Popen(["psql", "-X", "-q", "-d", dsn, "-c", "BEGIN", "-c",
                              "SELECT last_number FROM crl_series FOR UPDATE", "-c",
                              "SELECT pg_sleep(%d) AS revd_test_holder" % seconds, "-c",
                              "COMMIT"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             preexec_fn=_die_with_parent)
        self.addCleanup(p.wait, 30)
        wait_until(self, "psql holding crl_series", lambda: self.series_holders(dsn) != "0",
                   10.0, interval=0.02)
        return p

    def series_holders(self, dsn):
        return self.psql(dsn, "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = "
                              "l.relation WHERE c.relname = 'crl_series' AND l.mode = "
                              "'RowShareLock' AND l.pid <> pg_backend_pid()")

    def release_series(self, dsn, holder):
        """Ends the holder's transaction (its backend, which a killed psql would leave
        sleeping) and waits until the lock is gone."""
        self.psql(dsn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query "
                       "LIKE '%revd_test_holder%' AND pid <> pg_backend_pid()")
        holder.wait(timeout=30)
        wait_until(self, "crl_series released", lambda: self.series_holders(dsn) == "0",
                   10.0, interval=0.02)

    def test_revd_crl_while_series_held(self):
        # Another generator (a running instance) holds the series while `revd crl` runs:
        # revd crl must not claim success unless what it wrote is current.
        dsn = self.new_db()
        conf_path = os.path.join(self.tmp, "crl.conf")
        with open(conf_path, "w") as f:
            f.write(self.conf(dsn))
        with self.subTest("no CRL published yet"):
            out = os.path.join(self.tmp, "out0")
            os.mkdir(out)
            holder = self.hold_series(dsn, 20)
            rc, so, se = self.revd_cli("crl", "--config", conf_path, "--out", out, ok=False)
            self.release_series(dsn, holder)
            files = sorted(os.listdir(out))
            self.assertTrue(rc != 0 or files == ["main-delta.crl", "main.crl"],
                            "revd crl exited %d having written %r:\n%s%s" % (rc, files, so, se))
        out = os.path.join(self.tmp, "out1")
        os.mkdir(out)
        self.revd_cli("crl", "--config", conf_path, "--out", out)
        with open(os.path.join(out, "main.crl"), "rb") as f:
            first = Crl(f.read())
        if not LIBFAKETIME:
            self.skipTest("libfaketime missing: the stale case needs it")
        with self.subTest("a full CRL due (90 minutes later, interval 1h)"):
            env = faketime_env("+90m")
            out = os.path.join(self.tmp, "out2")
            os.mkdir(out)
            holder = self.hold_series(dsn, 20)
            rc, so, se = self.revd_cli("crl", "--config", conf_path, "--out", out, ok=False,
                                       env=env)
            self.release_series(dsn, holder)
            numbers = []
            for name in sorted(os.listdir(out)):
                with open(os.path.join(out, name), "rb") as f:
                    numbers.append(Crl(f.read()).number)
            self.assertTrue(rc != 0 or (len(numbers) == 2 and min(numbers) > first.number),
                            "revd crl exited %d having written CRLs numbered %r, the ones "
                            "from before the full CRL was due (%d):\n%s%s"
                            % (rc, numbers, first.number, so, se))

    def test_ca_signed_crls_bad_row_refused(self):
        # The CA keeps its key: it signs CRLs with `openssl ca -gencrl`, `revd crl import`
        # publishes them, revd builds none.
        pki = copy_pki(self.pki, os.path.join(self.tmp, "pki"))
        cadir = pki.ca_dir(pki.levels)
        cnf = os.path.join(cadir, "openssl.cnf")
        dsn = self.new_db(pki)
        conf_text = self.conf(dsn, issuer_extra="crl_import = yes\n", pki=pki)
        conf_path = os.path.join(self.tmp, "import.conf")
        with open(conf_path, "w") as f:
            f.write(conf_text)

        def gencrl(name, number):
            with open(os.path.join(cadir, "crlnumber"), "w") as f:
                f.write("%04X\n" % number)
            out = os.path.join(self.tmp, name)
            rr = run(["openssl", "ca", "-config", cnf, "-batch", "-gencrl", "-crlhours", "2",
                      "-out", out])
            self.assertEqual(rr.returncode, 0, rr.stderr.decode())
            return out

        rs = self.start_instances(dsn, wait_crls=False, issuer_extra="crl_import = yes\n",
                                  pki=pki)
        for r in rs:
            self.assertEqual(get_crl(r.port, "main.crl")[0], 404, "nothing imported yet")
        good1 = gencrl("good1.pem", 100)
        t0 = time.monotonic()
        _, out, _ = self.revd_cli("crl", "import", "--config", conf_path, "--issuer", "main",
                                  good1)
        with open(good1) as f:
            good1_der = pem_crl_to_der(f.read())
        full, _, dt = self.wait_same_full(rs, lambda c: c.der == good1_der)
        figure("revd crl import -> served by both instances after %.0f ms"
               % ((time.monotonic() - t0) * 1000))
        self.assertEqual(full.number, 100)
        # Another key, the CA's name, a higher number: inserted behind revd's back.
        bad, bad_der = self.forged_crl(cnf, cadir, 200)
        bad_crl = Crl(bad_der)
        self.assertEqual((bad_crl.number, bad_crl.issuer_der), (200, full.issuer_der))
        ok, _ = openssl_crl_verify(bad_der, pki.chain)
        self.assertFalse(ok, "the forged CRL verifies with the CA's key?")
        # revd crl import refuses it ...
        rc, _, err = self.revd_cli("crl", "import", "--config", conf_path, "--issuer", "main",
                                   bad, ok=False)
        self.assertNotEqual(rc, 0, err)
        self.assertRegex(err, r"signature|verify")
        # ... so it goes straight into the table, published as revd publishes (the
        # series' last number raised with it): a writer that follows the protocol with a
        # bad CRL.
        self.psql(dsn, "BEGIN; INSERT INTO crls (issuer_id, shard, number, this_update, "
                       "next_update, der) SELECT id, 0, 200, now(), now() + interval '2 hours', "
                       "decode('%s', 'hex') FROM issuers WHERE name = 'main'; "
                       "UPDATE crl_series SET last_number = 200 WHERE shard = 0; COMMIT"
                  % bad_der.hex())
        for r in rs:
            wait_until(self, "%s logging the refused CRL" % r.name,
                       lambda r=r: re.search(r"error .*main.*(200|signature)", r.stderr()),
                       DELTA_DEADLINE)
            self.assertRegex(r.stderr(), r"error .*signature")
        # Served: still the last good one, on every instance, for a while.
        end = time.monotonic() + 2.5
        while time.monotonic() < end:
            for r in rs:
                body, _ = self.served(r, "main.crl")
                self.assertEqual(body, good1_der, "%s serves another CRL than the good one"
                                 % r.name)
            time.sleep(0.1)
        # A good CRL numbered above the bad one is served again.
        good2 = gencrl("good2.pem", 201)
        self.revd_cli("crl", "import", "--config", conf_path, "--issuer", "main", good2)
        with open(good2) as f:
            good2_der = pem_crl_to_der(f.read())
        self.wait_same_full(rs, lambda c: c.der == good2_der)
        for r in rs:
            self.assertTrue(r.alive())

    def test_ca_signed_crl_below_a_refused_row(self):
        # A row written around the series (200, crl_series.last_number not raised), then
        # the CA's next CRL numbered 150: above every published one. Such a row is never
        # served, so `revd crl import` accepts 150 and the instances must serve it (else
        # the CA believes it published a CRL that no one serves, and the old one runs
        # out).
        pki = copy_pki(self.pki, os.path.join(self.tmp, "pki"))
        cadir = pki.ca_dir(pki.levels)
        cnf = os.path.join(cadir, "openssl.cnf")
        dsn = self.new_db(pki)
        conf_path = os.path.join(self.tmp, "import.conf")
        with open(conf_path, "w") as f:
            f.write(self.conf(dsn, issuer_extra="crl_import = yes\n", pki=pki))
        rs = self.start_instances(dsn, wait_crls=False, issuer_extra="crl_import = yes\n",
                                  pki=pki)
        crls = {}
        for n in (100, 150):
            with open(os.path.join(cadir, "crlnumber"), "w") as f:
                f.write("%04X\n" % n)
            path = os.path.join(self.tmp, "ca-%d.pem" % n)
            rr = run(["openssl", "ca", "-config", cnf, "-batch", "-gencrl", "-crlhours", "2",
                      "-out", path])
            self.assertEqual(rr.returncode, 0, rr.stderr.decode())
            crls[n] = path
        self.revd_cli("crl", "import", "--config", conf_path, "--issuer", "main", crls[100])
        with open(crls[100]) as f:
            der100 = pem_crl_to_der(f.read())
        self.wait_same_full(rs, lambda c: c.der == der100)
        # The refused row: the good CRL with its signature spoilt, renumbered 200 is not
        # possible without the key, so: number 200 from another key, the CA's name.
        bad, bad_der = self.forged_crl(cnf, cadir, 200)
        self.psql(dsn, "INSERT INTO crls (issuer_id, shard, number, this_update, next_update, "
                       "der) SELECT id, 0, 200, now(), now() + interval '2 hours', "
                       "decode('%s', 'hex') FROM issuers WHERE name = 'main'" % bad_der.hex())
        time.sleep(1.5)  # each instance polls the table once a second
        for r in rs:
            c = Crl(self.served(r, "main.crl")[0])
            self.assertEqual(c.der, der100, "%s serves a row written around the series" % r.name)
        rc, out, err = self.revd_cli("crl", "import", "--config", conf_path, "--issuer", "main",
                                     crls[150], ok=False)
        self.assertEqual(rc, 0, err)
        with open(crls[150]) as f:
            der150 = pem_crl_to_der(f.read())
        self.wait_same_full(rs, lambda c: c.der == der150)

    def forged_crl(self, cnf, cadir, number):
        """A CRL numbered number with the CA's name, signed by another key (a CA
        certificate made for it): (its PEM path, its DER)."""
        other_key = os.path.join(self.tmp, "other.key")
        other_ca = os.path.join(self.tmp, "other-ca.pem")
        rr = run(["openssl", "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt",
                  "ec_paramgen_curve:P-256", "-nodes", "-keyout", other_key, "-out", other_ca,
                  "-days", "30", "-subj", "/O=revd test PKI/CN=revd test CA level 2",
                  "-config", cnf, "-extensions", "v3_ca"])
        self.assertEqual(rr.returncode, 0, rr.stderr.decode())
        with open(os.path.join(cadir, "crlnumber"), "w") as f:
            f.write("%04X\n" % number)
        bad = os.path.join(self.tmp, "bad.pem")
        rr = run(["openssl", "ca", "-config", cnf, "-batch", "-gencrl", "-crlhours", "2",
                  "-keyfile", other_key, "-cert", other_ca, "-out", bad])
        self.assertEqual(rr.returncode, 0, rr.stderr.decode())
        with open(bad) as f:
            return bad, pem_crl_to_der(f.read())

    def wait_same_full(self, rs, pred, timeout=DELTA_DEADLINE):
        def probe():
            got = [self.served(r, "main.crl") for r in rs]
            if got[0][0] is None or any(g != got[0] for g in got):
                return None
            c = Crl(got[0][0])
            return c if pred(c) else None
        c, dt = wait_until(self, "the same full CRL on every instance", probe, timeout,
                           interval=0.05, describe=lambda: self.describe(rs))
        return c, None, dt


if __name__ == "__main__":
    main()

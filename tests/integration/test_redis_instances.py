"""Three revd instances on one PostgreSQL database and one Redis: a revocation committed
by plain SQL is answered "revoked" by every instance within a second (measured over 20
revocations: commit -> first revoked answer, per instance, printed), and the answer in
Redis is re-signed; a certificate put on hold and released (and a hold written by the
CA's tooling) is good again everywhere; a revocation while Redis is down still reaches
all three (through PostgreSQL's NOTIFY), and when Redis comes back from its snapshot
(SAVE before the outage: the old good answers are in it) no instance serves them, and
Redis itself is repaired, every CertID variant, so that an instance started later
(which never heard of the revocation) does not serve them either.

PostgreSQL from pg_harness (one server for the module, a fresh database per test),
redis-server from redis_harness (one per test), rows written with plain SQL as a CA
would (sql/README.md)."""

import http.client
import random
import statistics
import subprocess
import threading
import time

from redis_harness import RedisServer, answer_key, parse_value
from revd_harness import OcspResp, main, ocsp_request
from test_pg_store import PgRevdCase, db_serial

DEADLINE = 1.0       # commit -> revoked on every instance
N_REVOCATIONS = 20
N_INSTANCES = 3


def figure(msg):
    """A measured figure, on stdout (ctest -V shows it)."""
    print("    [redis-instances] %s" % msg, flush=True)


def percentile(values, p):
    """Nearest-rank percentile."""
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


class Poller:
    """Asks one revd for one serial over a kept-alive connection until the answer is
    revoked; records when."""

    def __init__(self, revd, der, serial_hex):
        self.revd = revd
        self.der = der
        self.serial = serial_hex.upper()
        self.conn = None
        self.seen_at = None
        self.error = None
        self.answers = 0

    def ask(self):
        for attempt in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.revd.port,
                                                           timeout=5)
                self.conn.request("POST", "/", self.der,
                                  {"Content-Type": "application/ocsp-request"})
                r = self.conn.getresponse()
                body = r.read()
                if r.status != 200:
                    raise AssertionError("HTTP %d" % r.status)
                return OcspResp(body)
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt:
                    raise
        return None

    def run(self, t0, stop_at):
        try:
            while time.monotonic() < stop_at:
                resp = self.ask()
                self.answers += 1
                if resp.status == 0:
                    s = resp.singles[0]
                    if s["serial"] != self.serial:
                        raise AssertionError("answer for %s, asked %s" % (s["serial"],
                                                                           self.serial))
                    if s["status"] == "revoked":
                        self.seen_at = time.monotonic() - t0
                        return
                time.sleep(0.001)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class RedisInstancesTest(PgRevdCase):

    def setUp(self):
        super().setUp()
        self.redis = RedisServer()
        self.addCleanup(self.redis.stop)
        self.redis.start()

    # ---- configuration: PgRevdCase's, with the Redis tier (a Redis timeout that a
    # loaded machine does not reach: the tests compare answers with Redis's bytes)
    def conf(self, dsn, **kw):
        text = super().conf(dsn, **kw)
        text = text.replace("[server]\n", "[server]\nlog_level = debug\n", 1)
        return text + ("\n[redis]\naddress = %s\ntimeout = 1s\n\n[presign]\ninterval = 1s\n"
                       % self.redis.address)

    def start_instances(self, dsn, n=N_INSTANCES):
        out = []
        for i in range(n):
            r = self.start_pg_revd(dsn, sweep="1h", name="inst%d" % (i + 1))
            self.wait_log(r, r"postgres change feed: connected")
            out.append(r)
        return out

    def setup_db(self, extra=0):
        """A database with the PKI's leaves and `extra` newly issued serials."""
        dsn, ids = self.new_db()
        iid = ids["main"]
        self.insert_leaves(dsn, iid)
        serials = ["7E57%012X" % random.getrandbits(48) for _ in range(extra)]
        if serials:
            self.psql(dsn, "INSERT INTO certificates (issuer_id, serial, not_after) VALUES " +
                      ", ".join("(%d, revd_serial('%s'), now() + interval '1 year')" % (iid, s)
                                for s in serials))
        return dsn, iid, serials

    # ---- Redis
    def key(self, serial, hash_name="sha1"):
        return answer_key(self.pki.issuing, serial, hash_name)

    def value(self, serial, hash_name="sha1"):
        v = self.redis.get(self.key(serial, hash_name))
        return None if v is None else parse_value(v)

    def redis_status(self, serial, hash_name="sha1"):
        """The status of the answer in Redis: None (no key), 'tombstone', or the status."""
        v = self.value(serial, hash_name)
        if v is None:
            return None
        if v["der"] is None:
            return "tombstone"
        resp = OcspResp(v["der"])
        self.assertEqual(resp.singles[0]["serial"], db_serial(serial).upper())
        return resp.singles[0]["status"]

    def wait_redis(self, serial, want, timeout=5.0, hash_name="sha1"):
        deadline = time.monotonic() + timeout
        got = None
        while time.monotonic() < deadline:
            got = self.redis_status(serial, hash_name)
            if got == want:
                return
            time.sleep(0.02)
        self.fail("Redis holds %r for %s (%s), want %r" % (got, serial, hash_name, want))

    # ---- a session for writes, so that a commit costs no psql start
    def session(self, dsn):
        p = subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                              "-d", dsn], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, universal_newlines=True, bufsize=1)

        def close():
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)
            p.stdin.close()
            p.stdout.close()

        self.addCleanup(close)
        return p

    def execute(self, p, sql):
        """Runs sql in the session; returns once psql has reported it done."""
        mark = "__done_%d" % random.getrandbits(32)
        p.stdin.write("%s;\n\\echo %s\n" % (sql, mark))
        p.stdin.flush()
        out = []
        while True:
            line = p.stdout.readline()
            if not line:
                self.fail("psql ended: %s" % "".join(out))
            if line.strip() == mark:
                return "".join(out)
            out.append(line)
            if "ERROR" in line:
                self.fail("psql: %s" % line)

    def revoke_sql(self, iid, serial, reason=1):
        return ("UPDATE certificates SET revoked_at = now(), reason = %s WHERE issuer_id = %d "
                "AND serial = revd_serial('%s') AND revoked_at IS NULL"
                % ("NULL" if reason is None else reason, iid, serial))

    def all_see(self, instances, serial, want, timeout=DEADLINE + 1, hash_name="sha1"):
        """Polls every instance until each says want; {name: seconds}."""
        t0 = time.monotonic()
        seen = {}
        while len(seen) < len(instances) and time.monotonic() - t0 < timeout:
            for r in instances:
                if r.name not in seen and self.status(r, serial, hash_name) == want:
                    seen[r.name] = time.monotonic() - t0
            time.sleep(0.005)
        self.assertEqual(sorted(seen), sorted(r.name for r in instances),
                         "%s: not every instance answered %s within %.1f s"
                         % (serial, want, timeout))
        return seen

    # ---- tests
    def test_sql_revocation_reaches_every_instance(self):
        dsn, iid, victims = self.setup_db(extra=N_REVOCATIONS)
        insts = self.start_instances(dsn)
        # The pre-signer's first round: every victim has a good answer in Redis.
        deadline = time.monotonic() + 10
        while any(self.redis_status(v) != "good" for v in victims):
            self.assertLess(time.monotonic(), deadline, "the victims were never pre-signed")
            time.sleep(0.05)
        writer = self.session(dsn)
        lat = {r.name: [] for r in insts}
        acks = []
        for v in victims:
            der = ocsp_request(self.pki.issuing, v)
            # Every instance holds the good answer (in memory, from Redis).
            redis_der = self.value(v)["der"]
            for r in insts:
                resp, body = self.post(r, v)
                self.assertEqual(resp.singles[0]["status"], "good")
                self.assertEqual(body, redis_der, "%s did not serve the pre-signed answer"
                                 % r.name)
            pollers = [Poller(r, der, db_serial(v)) for r in insts]
            t0 = time.monotonic()
            stop_at = t0 + DEADLINE + 2
            threads = [threading.Thread(target=p.run, args=(t0, stop_at), daemon=True)
                       for p in pollers]
            self.execute(writer, self.revoke_sql(iid, v))
            acks.append(time.monotonic() - t0)
            for t in threads:
                t.start()
            for t in threads:
                t.join(DEADLINE + 5)
            for p in pollers:
                p.close()
                self.assertIsNone(p.error, "%s: %r" % (p.revd.name, p.error))
                self.assertIsNotNone(p.seen_at, "%s never answered revoked for %s"
                                     % (p.revd.name, v))
                lat[p.revd.name].append(p.seen_at)
            # Redis: re-signed as revoked by one of them.
            self.wait_redis(v, "revoked")
            # And nobody goes back to the good answer.
            for r in insts:
                self.assertEqual(self.status(r, v), "revoked", r.name)
        for name, xs in lat.items():
            figure("commit->revoked ms: %s median=%.1f p99=%.1f max=%.1f (n=%d)"
                   % (name, statistics.median(xs) * 1000, percentile(xs, 99) * 1000,
                      max(xs) * 1000, len(xs)))
        for name, xs in lat.items():
            figure("  %s, in order: %s" % (name, " ".join("%.0f" % (x * 1000) for x in xs)))
        figure("(from the UPDATE being sent on an open psql session; the commit itself was "
               "acknowledged after median %.1f ms)" % (statistics.median(acks) * 1000))
        for name, xs in lat.items():
            self.assertLess(max(xs), DEADLINE, "%s: %s" % (name, ["%.0f" % (x * 1000)
                                                                  for x in xs]))
        # A sample through openssl, on every instance, with the reason.
        for r in insts:
            got, _ = self.ossl(r, victims[:3])
            for v in victims[:3]:
                self.assertEqual((got["0x" + v]["status"], got["0x" + v]["reason"]),
                                 ("revoked", "keyCompromise"))
        # Every answer in Redis for the victims is the revoked one, and the other
        # certificates are untouched.
        for v in victims:
            self.assertEqual(self.redis_status(v), "revoked")
        good = self.pki.leaf("good", 3)["serial"]
        for r in insts:
            self.assertEqual(self.status(r, good), "good")

    def test_hold_and_release_reach_every_instance(self):
        dsn, iid, (fresh,) = self.setup_db(extra=1)
        insts = self.start_instances(dsn)
        held = self.pki.leaf_by_reason("certificateHold")["serial"]  # on hold from the start
        deadline = time.monotonic() + 10
        while self.redis_status(fresh) != "good" or self.redis_status(held) != "revoked":
            self.assertLess(time.monotonic(), deadline, "never pre-signed")
            time.sleep(0.05)
        for r in insts:
            self.assertEqual(self.status(r, fresh), "good")
            self.assertEqual(self.status(r, held), "revoked")
        writer = self.session(dsn)
        # Put on hold (certificateHold, 6).
        self.execute(writer, self.revoke_sql(iid, fresh, reason=6))
        seen = self.all_see(insts, fresh, "revoked")
        figure("hold: revoked on every instance after %s ms"
               % ", ".join("%.0f" % (seen[r.name] * 1000) for r in insts))
        self.assertLess(max(seen.values()), DEADLINE)
        for r in insts:
            got, _ = self.ossl(r, [fresh])
            self.assertEqual((got["0x" + fresh]["status"], got["0x" + fresh]["reason"]),
                             ("revoked", "certificateHold"))
        self.wait_redis(fresh, "revoked")
        v_hold = self.value(fresh)["version"]
        # Released (sql/README.md: revoked_at, reason and invalidity_date back to NULL),
        # the fresh one and the one that was on hold from the start.
        for s in (fresh, held):
            self.execute(writer, "UPDATE certificates SET revoked_at = NULL, reason = NULL, "
                                 "invalidity_date = NULL WHERE issuer_id = %d AND serial = "
                                 "revd_serial('%s')" % (iid, s))
            seen = self.all_see(insts, s, "good")
            figure("release from hold of %s: good on every instance after %s ms"
                   % (s, ", ".join("%.0f" % (seen[r.name] * 1000) for r in insts)))
            self.assertLess(max(seen.values()), DEADLINE)
            for r in insts:
                self.assertEqual(self.ossl_status(r, s), "good")
            self.wait_redis(s, "good")
        self.assertGreater(self.value(fresh)["version"], v_hold)
        # The same through revd's own tool on the CA's behalf: hold, then --unhold.
        self.revd_cli("revoke", "--dsn", dsn, "--issuer", "main", "--serial", fresh,
                      "--reason", "certificateHold")
        self.assertLess(max(self.all_see(insts, fresh, "revoked").values()), DEADLINE)
        self.wait_redis(fresh, "revoked")
        self.revd_cli("revoke", "--dsn", dsn, "--unhold", "--issuer", "main", "--serial", fresh)
        self.assertLess(max(self.all_see(insts, fresh, "good").values()), DEADLINE)
        self.wait_redis(fresh, "good")

    def outage(self):
        """Two serials good everywhere (in every instance's memory; in Redis SHA-1 from the
        pre-signer and SHA-256 filled by a request), a Redis snapshot (SAVE), Redis
        killed, both revoked by SQL, and `asked` asked of every instance until each says
        revoked. Returns (dsn, insts, asked, unasked)."""
        dsn, iid, (asked, unasked) = self.setup_db(extra=2)
        insts = self.start_instances(dsn)
        deadline = time.monotonic() + 10
        while self.redis_status(asked) != "good" or self.redis_status(unasked) != "good":
            self.assertLess(time.monotonic(), deadline, "never pre-signed")
            time.sleep(0.05)
        for s in (asked, unasked):
            for h in ("sha1", "sha256"):
                for r in insts:
                    self.assertEqual(self.status(r, s, h), "good")
                self.wait_redis(s, "good", hash_name=h)
        self.assertEqual(self.redis.command("SAVE"), "OK")
        self.redis.kill()
        writer = self.session(dsn)
        for s in (asked, unasked):
            self.execute(writer, self.revoke_sql(iid, s))
        seen = self.all_see(insts, asked, "revoked")
        figure("Redis down: revocation served revoked by every instance after %s ms"
               % ", ".join("%.0f" % (seen[r.name] * 1000) for r in insts))
        self.assertLess(max(seen.values()), DEADLINE)
        for r in insts:
            self.assertEqual(self.ossl_status(r, asked), "revoked")
        return dsn, insts, asked, unasked

    def restore(self, asked, unasked, insts):
        """Redis back from its snapshot, with the old good answers in it; returns once
        every instance's connections (one per event loop: the change feed's and each
        worker's) are back, so that what follows reads Redis."""
        line = "redis %s: connected\n" % self.redis.address
        before = {r.name: r.stderr().count(line) for r in insts}
        self.redis.restart()
        deadline = time.monotonic() + 5
        for r in insts:
            while r.stderr().count(line) < before[r.name] + 3:
                self.assertLess(time.monotonic(), deadline, "%s did not reconnect:\n%s"
                                % (r.name, r.stderr()))
                time.sleep(0.01)
        # (The pre-signer may already be replacing the SHA-1 answers.)
        restored = {(s, h): self.value(s, h) for s in (asked, unasked)
                    for h in ("sha1", "sha256")}
        self.assertTrue(any(v is not None and v["der"] is not None and
                            OcspResp(v["der"]).singles[0]["status"] == "good"
                            for v in restored.values()), "no good answer in the snapshot")
        return restored

    def test_revocation_while_redis_is_down(self):
        dsn, insts, asked, unasked = self.outage()
        restored = self.restore(asked, unasked, insts)
        # No instance serves a good answer for either serial, in either variant, while
        # the pre-signer and the instances repair Redis. (Every instance heard of both
        # revocations; `unasked` was not asked while Redis was away.)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3.0:
            for r in insts:
                for s in (unasked, asked):
                    for h in ("sha256", "sha1"):
                        resp, body = self.post(r, s, h)
                        if resp.singles[0]["status"] == "revoked":
                            continue
                        v = self.value(s, h)
                        self.fail("%s served %s/%s %s (producedAt %s) %.2f s after Redis came "
                                  "back from its snapshot: %s; Redis now holds version %s "
                                  "produced %s, restored version %s produced %s" % (
                                      r.name, s, h, resp.singles[0]["status"],
                                      resp.produced_at, time.monotonic() - t0,
                                      "the restored answer" if restored[(s, h)] and
                                      body == restored[(s, h)]["der"] else
                                      "not the restored answer",
                                      v and v["version"], v and v["produced_at"],
                                      restored[(s, h)] and restored[(s, h)]["version"],
                                      restored[(s, h)] and restored[(s, h)]["produced_at"]))
            time.sleep(0.05)
        for r in insts:
            self.assertEqual(self.ossl_status(r, unasked, "sha256"), "revoked")
            self.assertEqual(self.ossl_status(r, asked, "sha256"), "revoked")
        self.assertTrue(all(r.alive() for r in insts))

    def test_restored_snapshot_is_repaired(self):
        dsn, insts, asked, unasked = self.outage()
        self.restore(asked, unasked, insts)
        # Nobody asks: within a few pre-signer rounds (1 s apart) Redis holds no good
        # answer for either serial, in any variant, so that an instance that never heard
        # of the revocations cannot serve one.
        deadline = time.monotonic() + 5
        while True:
            got = {(s, h): self.redis_status(s, h) for s in (asked, unasked)
                   for h in ("sha1", "sha256")}
            if "good" not in got.values():
                break
            if time.monotonic() > deadline:
                self.fail("5 s after Redis came back from its snapshot it still holds the "
                          "old good answers: %s" % got)
            time.sleep(0.1)
        late = self.start_pg_revd(dsn, sweep="1h", name="late")
        for s in (asked, unasked):
            for h in ("sha1", "sha256"):
                self.assertEqual(self.status(late, s, h), "revoked", (s, h))

if __name__ == "__main__":
    main()

"""A throw-away PostgreSQL server for integration tests.

    with PgServer() as pg:              # initdb + pg_ctl start on 127.0.0.1, free port
        dsn = pg.create_database("t1")  # "host=127.0.0.1 port=N dbname=t1 user=postgres"
        pg.psql(dsn, "SELECT 1")        # -> "1"

or, in a unittest class, `PgTestCase` (one server per test module's class, a fresh
database per test through self.new_database()).

The server lives in a fresh temporary directory (data, unix socket, log) and listens on
127.0.0.1 only, with trust authentication. As root, every PostgreSQL program runs as the
`postgres` user through `runuser -u postgres --` (PostgreSQL refuses to run as root) and
the directory is chowned to it; otherwise it runs as the current user. stop() (and
leaving the `with`, also on failure) stops it with pg_ctl, kills the postmaster if that
fails, and removes the directory. A watchdog process does the same if the test process
dies without cleaning up (a ctest timeout kills it with SIGKILL).

Environment:
  REVD_PG_BINDIR   PostgreSQL's programs (default: the newest /usr/lib/postgresql/N/bin,
                   preferring 15)
"""

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


def pg_bindir():
    env = os.environ.get("REVD_PG_BINDIR")
    if env:
        return env
    preferred = "/usr/lib/postgresql/15/bin"
    if os.path.exists(os.path.join(preferred, "initdb")):
        return preferred
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[-3]) if p.split("/")[-3].isdigit() else 0)
    return os.path.dirname(found[-1]) if found else None


def pg_available():
    """(True, "") or (False, why): for skipTest."""
    b = pg_bindir()
    if b is None or not os.path.exists(os.path.join(b, "initdb")):
        return False, "PostgreSQL server programs not found (install postgresql)"
    if shutil.which("psql") is None and not os.path.exists(os.path.join(b, "psql")):
        return False, "psql not found"
    if os.getuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return False, "running as root and there is no postgres user"
        if shutil.which("runuser") is None:
            return False, "running as root and runuser is missing"
    return True, ""


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


# Runs detached from the test process (its own session, reparented to init): when its
# stdin reaches EOF (the test process exited, however), stops the server if it still runs
# and removes the directory.
_WATCHDOG = r"""
import os, shutil, signal, subprocess, sys, time
if os.fork():
    os._exit(0)
pg_ctl, datadir, topdir, as_postgres = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
try:
    sys.stdin.buffer.read()
except Exception:
    pass
if os.path.exists(os.path.join(datadir, "postmaster.pid")):
    cmd = [pg_ctl, "stop", "-D", datadir, "-m", "immediate", "-w", "-t", "10"]
    if as_postgres:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
    try:
        with open(os.path.join(datadir, "postmaster.pid")) as f:
            os.kill(int(f.readline()), signal.SIGKILL)
        time.sleep(0.2)
    except Exception:
        pass
shutil.rmtree(topdir, ignore_errors=True)
"""


class PgServer:
    """One PostgreSQL server. start() returns self; dsn(dbname) builds a DSN."""

    def __init__(self, name="revd-pg"):
        self.name = name
        self.bindir = pg_bindir()
        self.as_postgres = os.getuid() == 0
        self.topdir = None
        self.datadir = None
        self.sockdir = None
        self.logfile = None
        self.port = None
        self.user = "postgres"
        self._watchdog = None
        self._started = False

    # ---- running PostgreSQL's programs
    def _cmd(self, prog, *args):
        exe = os.path.join(self.bindir, prog)
        if not os.path.exists(exe):
            exe = shutil.which(prog) or exe
        argv = [exe] + list(args)
        if self.as_postgres:
            argv = ["runuser", "-u", "postgres", "--"] + argv
        return argv

    def _run(self, prog, *args, timeout=60, check=True, input=None):
        r = subprocess.run(self._cmd(prog, *args), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout, input=input,
                           cwd=self.topdir)
        if check and r.returncode != 0:
            raise RuntimeError("%s failed (%d):\n%s%s\n%s" % (
                prog, r.returncode, r.stdout.decode(errors="replace"),
                r.stderr.decode(errors="replace"), self.log_tail()))
        return r

    def log_tail(self, n=30):
        try:
            with open(self.logfile, errors="replace") as f:
                lines = f.read().splitlines()
            return "----- postgres log (last %d lines) -----\n%s" % (n, "\n".join(lines[-n:]))
        except (OSError, TypeError):
            return ""

    # ---- life cycle
    def start(self, timeout=30):
        ok, why = pg_available()
        if not ok:
            raise unittest.SkipTest(why)
        self.topdir = tempfile.mkdtemp(prefix=self.name + "-")
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, timeout):
        self.datadir = os.path.join(self.topdir, "data")
        self.sockdir = os.path.join(self.topdir, "sock")
        self.logfile = os.path.join(self.topdir, "postgres.log")
        os.mkdir(self.sockdir)
        if self.as_postgres:
            pw = pwd.getpwnam("postgres")
            for p in (self.topdir, self.sockdir):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        else:
            self.user = pwd.getpwuid(os.getuid()).pw_name
        self._start_watchdog()
        self._run("initdb", "-D", self.datadir, "--auth=trust", "--username=" + self.user,
                  "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions",
                  timeout=120)
        for attempt in range(3):
            self.port = free_port()
            r = self._run("pg_ctl", "start", "-D", self.datadir, "-l", self.logfile,
                          "-o", self.server_options(), "-w", "-t", str(timeout),
                          timeout=timeout + 10, check=False)
            self._started = True
            if r.returncode == 0 and self._wait_ready(timeout):
                return
            if "could not bind" not in self.log_tail(50) or attempt == 2:
                raise RuntimeError("PostgreSQL did not start:\n%s%s\n%s" % (
                    r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace"),
                    self.log_tail()))

    def server_options(self):
        """The postgres options the server runs with (pg_ctl -o). Durability is off: the
        data is thrown away anyway."""
        return ("-c listen_addresses=127.0.0.1 -p %d -c unix_socket_directories=%s "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=30 -c shared_buffers=64MB" % (self.port, self.sockdir))

    def restart(self, mode="fast", timeout=30):
        """Stops and starts the server: same data, port and socket (tests of reconnection)."""
        self._run("pg_ctl", "restart", "-D", self.datadir, "-l", self.logfile, "-m", mode,
                  "-o", self.server_options(), "-w", "-t", str(timeout), timeout=timeout + 10)
        if not self._wait_ready(timeout):
            raise RuntimeError("PostgreSQL did not come back:\n" + self.log_tail())

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port),
                                "-d", "postgres", "-U", self.user],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
            if r.returncode == 0:
                return True
            time.sleep(0.05)
        return False

    def _start_watchdog(self):
        w = subprocess.Popen([sys.executable, "-c", _WATCHDOG,
                              os.path.join(self.bindir, "pg_ctl"), self.datadir, self.topdir,
                              "1" if self.as_postgres else "0"],
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        w.wait(timeout=10)  # the first process forks the watchdog and exits
        self._watchdog = w.stdin  # its write end: closing it (or dying) wakes the watchdog

    def _postmaster_pid(self):
        try:
            with open(os.path.join(self.datadir, "postmaster.pid")) as f:
                return int(f.readline())
        except (OSError, ValueError, TypeError):
            return None

    def stop(self):
        """Stops the server and removes its directory. Safe to call more than once."""
        if self.topdir is None:
            return
        if self._started and self._postmaster_pid() is not None:
            try:
                self._run("pg_ctl", "stop", "-D", self.datadir, "-m", "fast", "-w", "-t", "20",
                          timeout=30)
            except (RuntimeError, subprocess.TimeoutExpired):
                pid = self._postmaster_pid()
                if pid is not None:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    time.sleep(0.2)
        self._started = False
        shutil.rmtree(self.topdir, ignore_errors=True)
        self.topdir = None
        if self._watchdog is not None:
            self._watchdog.close()
            self._watchdog = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    # ---- using it
    def dsn(self, dbname="postgres"):
        return "host=127.0.0.1 port=%d dbname=%s user=%s" % (self.port, dbname, self.user)

    def psql(self, dsn, sql, check=True, timeout=60):
        """Runs sql with psql (unaligned, tuples only, stop on error). Returns stdout
        stripped; with check=False, the CompletedProcess (text) instead."""
        r = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                            "-d", dsn, "-c", sql],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                           universal_newlines=True)
        if not check:
            return r
        if r.returncode != 0:
            raise AssertionError("psql failed (%d) on %r:\n%s" % (r.returncode, sql, r.stderr))
        return r.stdout.strip()

    def create_database(self, name):
        self.psql(self.dsn("postgres"), 'CREATE DATABASE "%s"' % name)
        return self.dsn(name)


class PgTestCase(unittest.TestCase):
    """One PostgreSQL server for the class (started in setUpClass, always stopped);
    self.new_database() gives each test its own database."""

    pg = None
    _db_counter = 0

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pg = PgServer()
        cls.addClassCleanup(cls.pg.stop)  # also when a later setUpClass step fails
        cls.pg.start()

    def new_database(self):
        PgTestCase._db_counter += 1
        return self.pg.create_database("t%d_%s" % (PgTestCase._db_counter,
                                                   self._testMethodName[:40].lower()))

    def psql(self, dsn, sql, **kw):
        return self.pg.psql(dsn, sql, **kw)

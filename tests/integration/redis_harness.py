"""A throw-away Redis server for integration tests, and what the tests need to read
revd's keys in it.

    with RedisServer() as rs:                 # redis-server on 127.0.0.1, a free port
        rs.command("SET", "k", "v")           # -> "OK" (a RESP client over a socket)
        rs.cli("INFO", "server")              # redis-cli -p N ..., its stdout
        rs.kill(); rs.restart()               # SIGKILL; start again on the same port
        rs.pause(); rs.resume()               # SIGSTOP / SIGCONT: a hung Redis

The server runs in the foreground as a child of the test (no persistence: --save ''
--appendonly no), with its log and working directory in a fresh temporary directory.
stop() (and leaving the `with`, also on failure) stops it and removes the directory. A
watchdog process kills every redis-server this object started if the test process
dies without cleaning up (a ctest timeout kills it with SIGKILL).

Also here: revd's key names (answer_key, issuer_tag) and values (parse_value): see
src/cache/l2.h.
"""

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

from revd_harness import pem_to_der, serial_bytes

REDIS_SERVER = os.environ.get("REVD_REDIS_SERVER") or shutil.which("redis-server") or \
    "/usr/bin/redis-server"
REDIS_CLI = os.environ.get("REVD_REDIS_CLI") or shutil.which("redis-cli") or "/usr/bin/redis-cli"

HDR_LEN = 50  # "r1" + version + producedAt + refresh time, 16 hex digits each
HASH_INDEX = {"sha1": 0, "sha256": 1, "sha384": 2, "sha512": 3}


def redis_available():
    """(True, "") or (False, why): for skipTest."""
    for p in (REDIS_SERVER, REDIS_CLI):
        if not os.access(p, os.X_OK):
            return False, "%s not found (install redis-server)" % p
    return True, ""


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


# ---------------------------------------------------------------- RESP

class RedisError(Exception):
    """An error reply (-ERR ...)."""


class RespClient:
    """A minimal synchronous RESP2 client: command(*args) -> reply, where a simple string
    is a str, a bulk string bytes, nil None, an integer int, an array a list; an error
    reply raises RedisError. Connection problems raise OSError (socket.timeout included)."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0, unix_path=None):
        if unix_path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(unix_path)
        else:
            self.sock = socket.create_connection((host, port), timeout=timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    @staticmethod
    def encode(args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, int):
                a = str(a)
            if isinstance(a, str):
                a = a.encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def _fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("redis closed the connection")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def read_reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RedisError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read_reply() for _ in range(n)]
        raise ConnectionError("not a RESP reply: %r" % line[:40])

    def command(self, *args):
        self.sock.sendall(self.encode(args))
        r = self.read_reply()
        if isinstance(r, RedisError):
            raise r
        return r

    def pipeline(self, commands):
        """Sends every command, then reads every reply (errors returned, not raised)."""
        self.sock.sendall(b"".join(self.encode(c) for c in commands))
        return [self.read_reply() for _ in commands]


# ---------------------------------------------------------------- the server

# Runs detached from the test process (its own session, reparented to init). The test
# writes the pid of every redis-server it starts on the watchdog's stdin; at EOF (the
# test process exited, however) each one that is still that redis-server is killed and
# the directory removed.
_WATCHDOG = r"""
import os, shutil, signal, sys, time
if os.fork():
    os._exit(0)
topdir, port = sys.argv[1], sys.argv[2]
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
pids = []
try:
    for line in sys.stdin:
        if line.strip().isdigit():
            pids.append(int(line))
except Exception:
    pass
for pid in pids:
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmd = f.read()
    except OSError:
        continue
    if b"redis-server" in cmd and port.encode() in cmd:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
time.sleep(0.1)
shutil.rmtree(topdir, ignore_errors=True)
"""


class RedisServer:
    """One redis-server on 127.0.0.1 (and, with unix_socket=True, a unix socket too)."""

    def __init__(self, name="revd-redis", unix_socket=False, extra_args=()):
        self.name = name
        self.unix_socket = unix_socket
        self.extra_args = list(extra_args)
        self.topdir = None
        self.logfile = None
        self.socket_path = None
        self.port = None
        self.proc = None
        self.paused = False
        self._client = None
        self._watchdog = None

    # ---- life cycle
    def start(self, timeout=10):
        ok, why = redis_available()
        if not ok:
            raise unittest.SkipTest(why)
        self.topdir = tempfile.mkdtemp(prefix=self.name + "-")
        self.logfile = os.path.join(self.topdir, "redis.log")
        if self.unix_socket:
            self.socket_path = os.path.join(self.topdir, "redis.sock")
        self.port = free_port()
        w = subprocess.Popen([sys.executable, "-c", _WATCHDOG, self.topdir, str(self.port)],
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        w.wait(timeout=10)  # the first process forks the watchdog and exits
        self._watchdog = w.stdin
        try:
            for attempt in range(3):
                try:
                    self._spawn(timeout)
                    return self
                except RuntimeError as e:
                    if "Address already in use" not in str(e) or attempt == 2:
                        raise
                    self.port = free_port()  # someone took it between probe and bind
        except BaseException:
            self.stop()
            raise

    def argv(self):
        a = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--dir", self.topdir,
             "--logfile", self.logfile, "--protected-mode", "no"]
        if self.socket_path:
            a += ["--unixsocket", self.socket_path, "--unixsocketperm", "700"]
        return a + self.extra_args

    def _spawn(self, timeout):
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     cwd=self.topdir)
        self.paused = False
        try:
            self._watchdog.write(b"%d\n" % self.proc.pid)
            self._watchdog.flush()
        except (OSError, ValueError):
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited with %s:\n%s"
                                   % (self.proc.returncode, self.log_tail()))
            try:
                c = RespClient(self.port, timeout=1.0)
                try:
                    if c.command("PING") == "PONG":
                        return
                finally:
                    c.close()
            except (OSError, RedisError):
                pass
            time.sleep(0.02)
        self.proc.kill()
        self.proc.wait(timeout=5)
        raise RuntimeError("redis-server did not answer PING within %ds:\n%s"
                           % (timeout, self.log_tail()))

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def _drop_client(self):
        if self._client is not None:
            self._client.close()
            self._client = None

    def stop(self):
        """Stops the server and removes its directory. Safe to call more than once."""
        self._halt()
        if self.topdir is not None:
            shutil.rmtree(self.topdir, ignore_errors=True)
            self.topdir = None
        if self._watchdog is not None:
            try:
                self._watchdog.close()
            except OSError:
                pass
            self._watchdog = None

    def _halt(self, timeout=5.0):
        """Stops the process (SIGTERM, then SIGKILL), keeping the directory."""
        self._drop_client()
        if self.proc is None:
            return
        if self.proc.poll() is None:
            if self.paused:
                self.resume()
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def kill(self):
        """SIGKILL: Redis vanishes without closing anything cleanly."""
        self._drop_client()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.proc = None
        self.paused = False

    def restart(self, timeout=10):
        """A fresh, empty server on the same port (and socket)."""
        self._halt()
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._spawn(timeout)
                return
            except RuntimeError as e:
                # the old listener may linger for a moment
                if "Address already in use" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def pause(self):
        """SIGSTOP: connections stay open and nothing is answered (a hung Redis)."""
        self._drop_client()
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def log_tail(self, n=30):
        try:
            with open(self.logfile, errors="replace") as f:
                lines = f.read().splitlines()
            return "----- redis log (last %d lines) -----\n%s" % (n, "\n".join(lines[-n:]))
        except (OSError, TypeError):
            return ""

    # ---- using it
    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    @property
    def client(self):
        if self._client is None:
            self._client = RespClient(self.port)
        return self._client

    def command(self, *args):
        """One command on the shared connection, reconnecting once if it broke."""
        try:
            return self.client.command(*args)
        except (OSError, ConnectionError):
            self._drop_client()
            return self.client.command(*args)

    def cli(self, *args, timeout=10):
        r = subprocess.run([REDIS_CLI, "-h", "127.0.0.1", "-p", str(self.port)] +
                           [str(a) for a in args],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError("redis-cli %s failed (%d): %s"
                               % (" ".join(map(str, args)), r.returncode, r.stderr.decode()))
        return r.stdout.decode(errors="replace")

    def flushall(self):
        return self.command("FLUSHALL")

    def keys(self, pattern="*"):
        """Every key matching pattern (SCAN, not KEYS), as str, sorted."""
        out, cursor = set(), b"0"
        while True:
            cursor, batch = self.command("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
            out.update(k.decode() for k in batch)
            if cursor == b"0":
                return sorted(out)

    def get(self, key):
        return self.command("GET", key)

    def hgetall(self, key):
        flat = self.command("HGETALL", key) or []
        return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}


# ---------------------------------------------------------------- revd's keys and values

def issuer_tag(ca_pem):
    """The first 10 bytes of the SHA-256 of the CA certificate's DER, in hex."""
    return hashlib.sha256(pem_to_der(ca_pem)).hexdigest()[:20]


def variant(hash_name="sha1", null_params=True):
    return HASH_INDEX[hash_name] * 2 + (1 if null_params else 0)


def serial_key_hex(serial_hex):
    """A serial (hex as openssl prints it) as it appears in a key: the DER INTEGER's
    contents in lower-case hex (a leading 00 when the high bit is set)."""
    return serial_bytes(serial_hex).hex()


def answer_key(ca_pem, serial_hex, hash_name="sha1", null_params=True, prefix="revd:"):
    return "%so:%s:%d:%s" % (prefix, issuer_tag(ca_pem), variant(hash_name, null_params),
                             serial_key_hex(serial_hex))


def parse_value(v):
    """A value revd wrote: dict(version, produced_at, refresh_at, der (None: tombstone)).
    Raises ValueError for anything else."""
    if v is None or len(v) < HDR_LEN or v[:2] != b"r1":
        raise ValueError("not a revd value: %r" % (v[:60] if v else v))
    h = v[:HDR_LEN].decode("ascii")
    return dict(version=int(h[2:18], 16), produced_at=int(h[18:34], 16),
                refresh_at=int(h[34:50], 16), der=v[HDR_LEN:] or None)


def make_value(der, version=1, produced_at=None, refresh_at=None):
    """A value with revd's header (for planting answers)."""
    produced_at = int(time.time()) if produced_at is None else produced_at
    refresh_at = produced_at + 3600 if refresh_at is None else refresh_at
    return ("r1%016x%016x%016x" % (version, produced_at, refresh_at)).encode() + (der or b"")

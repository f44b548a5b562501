#!/usr/bin/env python3
"""Helpers for bench/run.sh (Python standard library only).

Subcommands:
  urlpath DER                 print the GET path for a DER request: base64, percent-encoded
                              as nginx's OCSP stapling does ('+', '/', '=' escaped)
  nonce-reqs IN OUT N         write N copies of request IN, each with its own nonce
                              extension (16 octets), as fixed-length records; prints the
                              record length
  has-nonce REQ RESP          exit 0 if the nonce of request REQ appears in response RESP
  point ...                   one load point: a warm-up wrk run, then the measured wrk run;
                              appends one JSON line (wrk figures + CPU accounting)
  speed ...                   one `openssl speed` run; appends sign/s as a JSON line
  cgtop FILE                  top functions by self cost (Ir) in a callgrind output file
  summary RESULTS.jsonl       median/spread tables and ratios, in Markdown
"""
import argparse
import base64
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.parse

# ---------------------------------------------------------------- DER splicing

OID_NONCE = bytes.fromhex("06092b0601050507300102")  # 1.3.6.1.5.5.7.48.1.2


def der_len(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def tlv(tag, content):
    return bytes([tag]) + der_len(len(content)) + content


def der_read(buf, off):
    """Returns (tag, content_start, content_end) of the TLV at off."""
    tag = buf[off]
    l0 = buf[off + 1]
    p = off + 2
    if l0 < 0x80:
        n = l0
    else:
        k = l0 & 0x7F
        n = int.from_bytes(buf[p:p + k], "big")
        p += k
    return tag, p, p + n


def with_nonce(req, nonce):
    """OCSPRequest ::= SEQUENCE { tbsRequest, optionalSignature [0] EXPLICIT OPTIONAL }
    TBSRequest ::= SEQUENCE { version [0], requestorName [1], requestList, requestExtensions [2] }
    Appends requestExtensions [2] { Extensions { Extension { id-pkix-ocsp-nonce,
    OCTET STRING { OCTET STRING nonce } } } } to tbsRequest and fixes the outer lengths."""
    tag, s, e = der_read(req, 0)
    assert tag == 0x30 and e == len(req), "not a DER OCSPRequest"
    ttag, ts, te = der_read(req, s)
    assert ttag == 0x30, "no tbsRequest"
    # the fields of tbsRequest: refuse a request that already has extensions
    p = ts
    while p < te:
        ftag, fs, fe = der_read(req, p)
        assert ftag != 0xA2, "the request already has requestExtensions"
        p = fe
    ext = tlv(0x30, OID_NONCE + tlv(0x04, tlv(0x04, nonce)))
    tbs = tlv(0x30, req[ts:te] + tlv(0xA2, tlv(0x30, ext)))
    return tlv(0x30, tbs + req[te:e])


def cmd_urlpath(a):
    der = open(a.der, "rb").read()
    print(urllib.parse.quote(base64.b64encode(der).decode(), safe=""))


def cmd_nonce_reqs(a):
    base = open(a.input, "rb").read()
    salt = os.urandom(8)
    reclen = None
    with open(a.output, "wb") as out:
        for i in range(a.count):
            nonce = i.to_bytes(8, "big") + salt  # distinct, and not guessable across runs
            r = with_nonce(base, nonce)
            if reclen is None:
                reclen = len(r)
            assert len(r) == reclen
            out.write(r)
    print(reclen)


def nonce_of(req):
    """The nonce octets of a request made by with_nonce (or by openssl ocsp)."""
    i = req.find(OID_NONCE)
    if i < 0:
        return None
    _, s, e = der_read(req, i + len(OID_NONCE))  # extnValue OCTET STRING
    _, s2, e2 = der_read(req, s)                 # the nonce OCTET STRING
    return req[s2:e2]


def cmd_has_nonce(a):
    n = nonce_of(open(a.req, "rb").read())
    resp = open(a.resp, "rb").read()
    ok = n is not None and len(resp) > 64 and n in resp
    sys.exit(0 if ok else 1)


# ---------------------------------------------------------------- one load point

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
SIZE = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3, "TB": 1024 ** 4}


def to_ms(v):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", v)
    return float(m.group(1)) * UNITS[m.group(2)] if m else None


def parse_wrk(text):
    r = {}
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+), ([\d.]+)(\w+) read", text)
    if m:
        r["requests"] = int(m.group(1))
        r["bytes"] = float(m.group(4)) * SIZE.get(m.group(5), 1)
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        r["rps"] = float(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    r["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    r["sock_errors"] = sum(int(x) for x in m.groups()) if m else 0
    for q in ("50", "75", "90", "99"):
        m = re.search(r"^\s+%s%%\s+(\S+)" % q, text, re.M)
        if m:
            r["p%s_ms" % q] = to_ms(m.group(1))
    return r


def proc_cpu(pids):
    """(utime, stime) in seconds summed over processes (each includes all its threads)."""
    tck = os.sysconf("SC_CLK_TCK")
    u = s = 0
    for pid in pids:
        try:
            f = open("/proc/%d/stat" % pid).read()
        except OSError:
            continue
        fields = f[f.rindex(")") + 2:].split()
        u += int(fields[11])  # utime (field 14)
        s += int(fields[12])  # stime (field 15)
    return u / tck, s / tck


def sys_cpu():
    """(busy, steal) seconds over all CPUs since boot."""
    tck = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
    return (user + nice + system + irq + softirq) / tck, steal / tck


def run_wrk(cmd, env, timeout):
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        raise SystemExit("wrk did not finish in %ss: %s" % (timeout, " ".join(cmd)))
    # the child's CPU: the rusage of the reaped process is in RUSAGE_CHILDREN deltas
    return p.returncode, out.decode(errors="replace")


def children_cpu():
    import resource
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def start_perf(pids, events, outfile):
    cmd = ["perf", "stat", "-x", ",", "-o", outfile, "-e", ",".join(events),
           "-p", ",".join(str(p) for p in pids)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_perf(p, outfile):
    p.send_signal(signal.SIGINT)
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    res = {}
    try:
        for line in open(outfile):
            parts = line.strip().split(",")
            if len(parts) >= 3 and parts[0] and parts[0][0].isdigit():
                try:
                    res[parts[2]] = float(parts[0])
                except ValueError:
                    pass
    except OSError:
        pass
    try:
        os.unlink(outfile)
    except OSError:
        pass
    return res


def wait_idle(max_wait, limit=0.15, sample=0.5):
    """Waits until the machine's CPUs are busy less than `limit` cores (averaged over
    `sample` seconds: our servers are idle between points, so this is other people's
    load), for at most max_wait seconds. Returns the seconds waited."""
    t0 = time.time()
    while True:
        b0, _ = sys_cpu()
        time.sleep(sample)
        b1, _ = sys_cpu()
        if (b1 - b0) / sample < limit or time.time() - t0 >= max_wait:
            return round(time.time() - t0, 1)


def cmd_point(a):
    env = dict(os.environ)
    for kv in a.env or []:
        k, v = kv.split("=", 1)
        env[k] = v
    pids = [int(x) for x in a.server_pids.split(",") if x]
    base = ["taskset", "-c", a.wrk_cpus, "wrk", "-t", str(a.threads), "-c", str(a.conns),
            "--timeout", "5s"]
    if a.script:
        base += ["-s", a.script]
    attempts = []
    for attempt in range(a.retries + 1):
        waited = wait_idle(a.idle_wait)
        if a.warmup > 0:
            rc, out = run_wrk(base + ["-d", "%ds" % a.warmup, a.url], env, a.warmup + 30)
            if rc != 0:
                raise SystemExit("warm-up wrk failed:\n" + out)
        perf = None
        if a.perf_events:
            perf_out = a.out + ".perf.tmp"
            perf = start_perf(pids, a.perf_events.split(","), perf_out)
            time.sleep(0.3)
        busy0, steal0 = sys_cpu()
        srv0 = proc_cpu(pids)
        ch0 = children_cpu()
        t0 = time.time()
        rc, out = run_wrk(base + ["--latency", "-d", "%ds" % a.duration, a.url], env,
                          a.duration + 30)
        wall = time.time() - t0
        busy1, steal1 = sys_cpu()
        srv1 = proc_cpu(pids)
        ch1 = children_cpu()
        pres = stop_perf(perf, perf_out) if perf else {}
        if rc != 0:
            raise SystemExit("wrk failed:\n" + out)
        srv_s = sum(srv1) - sum(srv0)
        wrk_s = ch1 - ch0
        other = max(0.0, (busy1 - busy0) - srv_s - wrk_s)
        attempts.append((other, waited, rc, out, wall, busy1 - busy0, steal1 - steal0, srv0, srv1,
                         wrk_s, pres))
        # another process took more than noise_limit of a core: measure again (the least
        # disturbed attempt is kept)
        if other <= a.noise_limit * a.duration:
            break
    other, waited, rc, out, wall, busy, steal, srv0, srv1, wrk_s, pres = min(attempts, key=lambda t: t[0])
    r = parse_wrk(out)
    if "rps" not in r:
        raise SystemExit("cannot parse wrk output:\n" + out)
    rec = json.loads(a.label)
    rec.update(r)
    n = max(r.get("requests", 0), 1)
    rec["wall_s"] = round(wall, 3)
    rec["server_cpu_s"] = round(sum(srv1) - sum(srv0), 3)
    rec["server_sys_share"] = round((srv1[1] - srv0[1]) / max(sum(srv1) - sum(srv0), 1e-9), 3)
    rec["wrk_cpu_s"] = round(wrk_s, 3)
    rec["all_busy_s"] = round(busy, 3)
    rec["steal_s"] = round(steal, 3)
    rec["other_cpu_s"] = round(other, 3)
    rec["attempts"] = len(attempts)
    rec["idle_wait_s"] = waited
    rec["server_us_per_req"] = round(1e6 * rec["server_cpu_s"] / n, 2)
    rec["bytes_per_req"] = round(r.get("bytes", 0) / n, 1)
    rec["when"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    if pres:
        rec["perf"] = {k: v / n for k, v in pres.items()}
    problems = []
    if r["non2xx"]:
        problems.append("%d non-2xx" % r["non2xx"])
    if r["sock_errors"]:
        problems.append("%d socket errors" % r["sock_errors"])
    if a.expect_bytes and abs(rec["bytes_per_req"] - a.expect_bytes) > 0.1 * a.expect_bytes:
        problems.append("%.0f bytes/response, expected ~%d" % (rec["bytes_per_req"], a.expect_bytes))
    rec["problems"] = problems
    with open(a.out, "a") as f:
        f.write(json.dumps(rec, sort_keys=True) + "\n")
    with open(a.out + ".wrk.log", "a") as f:
        f.write("### %s\n%s\n" % (a.label, out))
    tag = " ".join("%s=%s" % (k, rec[k]) for k in json.loads(a.label))
    print("  %-60s %10.0f req/s  %6.1f us/req server CPU  other CPU %.1fs%s%s" % (
        tag, r["rps"], rec["server_us_per_req"], rec["other_cpu_s"],
        " (attempt %d of %d)" % (attempts.index(min(attempts, key=lambda t: t[0])) + 1, len(attempts))
        if len(attempts) > 1 else "",
        ("  !! " + "; ".join(problems)) if problems else ""), flush=True)


# ---------------------------------------------------------------- openssl speed

SPEED_RE = {
    "ecdsap256": r"256 bits ecdsa \(nistp256\)\s+\S+\s+\S+\s+([\d.]+)",
    "rsa2048": r"rsa\s+2048 bits\s+\S+\s+\S+\s+([\d.]+)",
    "ed25519": r"EdDSA \(Ed25519\)\s+\S+\s+\S+\s+([\d.]+)",
}


def cmd_speed(a):
    cmd = ["taskset", "-c", a.cpus, "openssl", "speed", "-seconds", str(a.seconds)]
    if a.multi > 1:
        cmd += ["-multi", str(a.multi)]
    cmd.append(a.alg)
    wait_idle(a.idle_wait)
    busy0, _ = sys_cpu()
    ch0 = children_cpu()
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         timeout=4 * a.seconds + 60).stdout.decode(errors="replace")
    busy1, _ = sys_cpu()
    ch1 = children_cpu()
    m = re.search(SPEED_RE[a.alg], out)
    if not m:
        raise SystemExit("cannot parse openssl speed output:\n" + out)
    rec = json.loads(a.label)
    rec.update({"sign_per_s": float(m.group(1)), "cmd": " ".join(cmd),
                "other_cpu_s": round(max(0.0, (busy1 - busy0) - (ch1 - ch0)), 2),
                "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    with open(a.out, "a") as f:
        f.write(json.dumps(rec, sort_keys=True) + "\n")
    print("  openssl speed %-10s cpus=%-4s multi=%d: %10.1f sign/s  (other CPU %.1fs)" % (
        a.alg, a.cpus, a.multi, rec["sign_per_s"], rec["other_cpu_s"]), flush=True)


# ---------------------------------------------------------------- callgrind

def parse_callgrind(path):
    """Self cost (first event) per function, and call counts per callee, from a callgrind
    out file. Lines after calls= are inclusive costs of the call and are not self cost
    (callgrind_annotate 3.19 gets this wrong for calls=0 lines left by zeroing)."""
    names = {"fn": {}, "fl": {}, "ob": {}}
    self_cost = {}
    calls = {}
    incl = {}
    fn = ob = None
    cob = cfn = None
    after_calls = False
    pending_calls = 0

    def resolve(kind, val):
        m = re.match(r"\((\d+)\)(?:\s+(.*))?$", val)
        if not m:
            return val
        ident, name = m.group(1), m.group(2)
        table = names[kind]
        if name is not None:
            table[ident] = name
        return table.get(ident, "?")

    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                parts = line.split()
                cost = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
                if after_calls:
                    key = (cob, cfn)
                    calls[key] = calls.get(key, 0) + pending_calls
                    if cfn != fn:  # a recursive call's cost is already in the outer call
                        incl[cfn] = incl.get(cfn, 0) + cost
                    after_calls = False
                else:
                    key = (ob, fn)
                    self_cost[key] = self_cost.get(key, 0) + cost
                continue
            if "=" not in line:
                continue
            k, v = line.split("=", 1)
            if k == "fn":
                fn = resolve("fn", v)
                cob = ob
            elif k == "ob":
                ob = resolve("ob", v)
                cob = ob
            elif k in ("fl", "fi", "fe"):
                resolve("fl", v)
            elif k == "cfn":
                cfn = resolve("fn", v)
            elif k == "cob":
                cob = resolve("ob", v)
            elif k in ("cfl", "cfi"):
                resolve("fl", v)
            elif k == "calls":
                pending_calls = int(v.split()[0])
                after_calls = True
    return self_cost, calls, incl


def cmd_cgtop(a):
    self_cost, calls, incl = parse_callgrind(a.file)
    total = sum(self_cost.values())
    n = a.requests
    if a.count_calls:
        n = sum(v for (o, f), v in calls.items() if f == a.count_calls) or n
    top = sorted(self_cost.items(), key=lambda kv: -kv[1])[:a.top]
    res = {"total_ir": total, "requests": n,
           "ir_per_request": round(total / n) if n else None,
           "top": [{"function": f, "object": os.path.basename(o or "?"), "ir": v,
                    "pct": round(100.0 * v / total, 1) if total else 0,
                    "ir_per_request": round(v / n) if n else None} for (o, f), v in top]}
    by_obj = {}
    for (o, f), v in self_cost.items():
        k = os.path.basename(o or "?")
        by_obj[k] = by_obj.get(k, 0) + v
    res["by_object"] = [{"object": k, "ir_per_request": round(v / n) if n else None,
                         "pct": round(100.0 * v / total, 1) if total else 0}
                        for k, v in sorted(by_obj.items(), key=lambda kv: -kv[1])[:6]]
    res["inclusive"] = [{"function": f, "ir_per_request": round(incl.get(f, 0) / n) if n else None,
                         "pct": round(100.0 * incl.get(f, 0) / total, 1) if total else 0}
                        for f in (a.inclusive.split(",") if a.inclusive else []) if f in incl]
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    print("  %s: %d Ir in %d requests = %s Ir/request" % (
        os.path.basename(a.file), total, n, res["ir_per_request"]))
    print("    by object: " + ", ".join("%s %s%%" % (b["object"], b["pct"]) for b in res["by_object"]))
    if res["inclusive"]:
        print("    inclusive: " + ", ".join("%s %s Ir/req (%s%%)" % (i["function"], i["ir_per_request"], i["pct"])
                                         for i in res["inclusive"]))
    print("    top %d functions by self cost:" % a.top)
    for t in res["top"]:
        print("    %6.1f%% %8s Ir/req  %s (%s)" % (t["pct"], t["ir_per_request"], t["function"], t["object"]))


# ---------------------------------------------------------------- summary

def med_spread(vals):
    vals = sorted(vals)
    med = statistics.median(vals)
    spread = (vals[-1] - vals[0]) / med * 100 if med else 0
    return med, vals[0], vals[-1], spread


def fmt_k(v):
    return "%.1fk" % (v / 1000) if v >= 1000 else "%.0f" % v


def noisy(r, limit=0.1):
    """True when processes other than the server and wrk used more than `limit` of a core
    during the run."""
    return r.get("other_cpu_s", 0) > limit * max(r.get("wall_s", 0), 1e-9)


def cmd_summary(a):
    recs = [json.loads(l) for l in open(a.results) if l.strip()]
    out = []
    # (a) cached path
    cached = [r for r in recs if r.get("kind") == "cached"]
    if cached:
        out.append("### (a) Cached answer: requests/s, revd vs nginx (same DER bytes)\n")
        out.append("%d repetitions per point; figures are medians over the runs not disturbed by "
                   "other processes (other CPU > 10%% of a core: left out when undisturbed runs "
                   "exist; see \"runs used\"); range = (max-min)/median; CPU = server CPU time per "
                   "request (user+sys, all its threads; kernel share from tick accounting, "
                   "approximate); cores busy = CPU time / wall time; other = CPU used by other "
                   "processes during the run (s, median)\n" % max(r["rep"] for r in cached))
        out.append("| layout | method | conns | revd req/s | range | nginx req/s | range | revd/nginx (medians) | revd/nginx per repetition: median (min–max) | CPU per request nginx/revd "
                   "| revd CPU µs/req (kernel share) | nginx CPU µs/req (kernel share) | cores busy: revd/wrk, nginx/wrk "
                   "| revd p99 ms | nginx p99 ms | other CPU s | runs used revd, nginx |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        keys = sorted({(r["layout"], r["method"], r["conns"]) for r in cached},
                      key=lambda k: (k[0] != "split", k[1], k[2]))
        for lay, meth, c in keys:
            row = {}
            used = {}
            for srv in ("revd", "nginx"):
                rs_all = [r for r in cached if (r["layout"], r["method"], r["conns"], r["server"]) ==
                          (lay, meth, c, srv)]
                # runs disturbed by other processes (even after retries) are left out when
                # undisturbed ones exist
                rs = [r for r in rs_all if not noisy(r)] or rs_all
                used[srv] = (len(rs), len(rs_all))
                if rs:
                    row[srv] = (med_spread([r["rps"] for r in rs]),
                                statistics.median(r["server_us_per_req"] for r in rs),
                                statistics.median(r.get("p99_ms") or 0 for r in rs),
                                statistics.median(r["other_cpu_s"] for r in rs),
                                sum(len(r["problems"]) for r in rs),
                                statistics.median(r.get("server_sys_share", 0) for r in rs),
                                statistics.median(r["server_cpu_s"] / r["wall_s"] for r in rs),
                                statistics.median(r["wrk_cpu_s"] / r["wall_s"] for r in rs))
            if "revd" not in row or "nginx" not in row:
                continue
            rv, ng = row["revd"], row["nginx"]
            warn = " ⚠" if rv[4] or ng[4] else ""
            # the two servers of one repetition ran back to back: their ratio is less
            # exposed to the machine's drift than the ratio of medians
            pairs = []
            allpairs = []
            for rep in sorted({r["rep"] for r in cached}):
                a_ = [r for r in cached if (r["layout"], r["method"], r["conns"], r["server"], r["rep"]) == (lay, meth, c, "revd", rep)]
                b_ = [r for r in cached if (r["layout"], r["method"], r["conns"], r["server"], r["rep"]) == (lay, meth, c, "nginx", rep)]
                if a_ and b_:
                    allpairs.append((a_[0]["rps"] / b_[0]["rps"], noisy(a_[0]) or noisy(b_[0])))
            pairs = [x for x, bad in allpairs if not bad] or [x for x, _ in allpairs]
            pr = "%.2f (%.2f–%.2f)" % (statistics.median(pairs), min(pairs), max(pairs)) if pairs else "-"
            out.append("| %s | %s | %d | %.0f | %.1f%% | %.0f | %.1f%% | **%.2f**%s | %s | %.2f | %.1f (%.0f%%) | %.1f (%.0f%%) | %.2f/%.2f, %.2f/%.2f | %.2f | %.2f | %.1f / %.1f | %d/%d, %d/%d |" % (
                lay, meth, c, rv[0][0], rv[0][3], ng[0][0], ng[0][3], rv[0][0] / ng[0][0], warn, pr,
                ng[1] / rv[1] if rv[1] else 0,
                rv[1], 100 * rv[5], ng[1], 100 * ng[5], rv[6], rv[7], ng[6], ng[7], rv[2], ng[2], rv[3], ng[3],
                used["revd"][0], used["revd"][1], used["nginx"][0], used["nginx"][1]))
        out.append("")
    # (b) live signing
    sign = [r for r in recs if r.get("kind") == "sign"]
    speed = [r for r in recs if r.get("kind") == "speed"]
    if sign:
        out.append("### (b) Live signing (`--nonce sign`, a distinct nonce on every request)\n")
        out.append("revd/openssl: revd's signed responses/s over `openssl speed` sign/s on the same CPUs "
                   "(split: 1 core, shared: 2 cores with `-multi 2`); each repetition runs revd "
                   "then openssl speed back to back, and the ratio is taken per repetition "
                   "(median, min–max).\n")
        out.append("| key | layout | conns | revd signed responses/s | range | openssl speed sign/s | range | revd/openssl per repetition | revd CPU µs/response | CPU µs/signature in openssl speed | by CPU time: openssl µs/sign ÷ revd µs/response | cores busy: revd/wrk | other CPU s | runs used |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        order = {"ec": 0, "rsa": 1, "ed25519": 2}
        keys = sorted({(r["key"], r["layout"], r["conns"]) for r in sign},
                      key=lambda k: (order.get(k[0], 9), k[1] != "split", k[2]))
        for key, lay, c in keys:
            rs_all = [r for r in sign if (r["key"], r["layout"], r["conns"]) == (key, lay, c)]
            rs = [r for r in rs_all if not noisy(r)] or rs_all
            ms = med_spread([r["rps"] for r in rs])
            sp_recs = [r for r in speed if (r["key"], r["layout"]) == (key, lay)]
            sp = [r["sign_per_s"] for r in sp_recs]
            spm = med_spread(sp) if sp else None
            fr = []
            for r in rs:
                same = [x["sign_per_s"] for x in sp_recs if x.get("rep") == r["rep"]]
                if same:
                    fr.append(r["rps"] / same[0])
            if not fr and sp:
                fr = [r["rps"] / spm[0] for r in rs]
            frs = ("**%.0f%%** (%.0f–%.0f%%)" % (100 * statistics.median(fr), 100 * min(fr), 100 * max(fr))) if fr else "-"
            ncores = 2 if lay == "shared" else 1
            warn = " ⚠" if any(r["problems"] for r in rs) else ""
            us_resp = statistics.median(r["server_us_per_req"] for r in rs)
            us_sign = 1e6 * ncores / spm[0] if spm else None
            out.append("| %s | %s | %d | %.0f%s | %.1f%% | %s | %s | %s | %.1f | %s | %s | %.2f/%.2f | %.1f | %d/%d |" % (
                key, lay, c, ms[0], warn, ms[3], "%.0f" % spm[0] if spm else "-",
                "%.1f%%" % spm[3] if spm else "-", frs, us_resp,
                "%.1f" % us_sign if us_sign else "-",
                "%.0f%%" % (100 * us_sign / us_resp) if us_sign and us_resp else "-",
                statistics.median(r["server_cpu_s"] / r["wall_s"] for r in rs),
                statistics.median(r["wrk_cpu_s"] / r["wall_s"] for r in rs),
                statistics.median(r["other_cpu_s"] for r in rs), len(rs), len(rs_all)))
        out.append("")
    perf = [r for r in recs if r.get("kind") == "perf" and r.get("perf")]
    if perf:
        out.append("### (c) Per request, under perf stat (one run each)\n")
        out.append("Counts per request are exact; the throughput of these runs (perf's tracepoints "
                   "attached, %s s each) is shown only to identify them: (a) has the figures.\n" % perf[0].get("duration", "a few"))
        out.append("| layout | server | method | conns | req/s (perf attached) | syscalls/req | "
                   "context switches/req | syscalls by name, per request |")
        out.append("|---|---|---|---|---|---|---|---|")
        for r in sorted(perf, key=lambda r: (r["layout"] != "split", "live" in r["server"], r["method"], r["server"] != "revd")):
            p = r["perf"]
            named = sorted(((k.replace("syscalls:sys_enter_", ""), v) for k, v in p.items()
                            if k.startswith("syscalls:") and v >= 0.005), key=lambda kv: -kv[1])
            other = p.get("raw_syscalls:sys_enter", 0) - sum(v for _, v in named)
            desc = ", ".join("%s %.2f" % kv for kv in named)
            if other >= 0.005:
                desc += ", other %.2f" % other
            out.append("| %s | %s | %s | %d | %.0f | %.2f | %.3f | %s |" % (
                r["layout"], r["server"], r["method"], r["conns"], r["rps"],
                p.get("raw_syscalls:sys_enter", 0), p.get("context-switches", 0), desc))
        out.append("")
    probs = [r for r in recs if r.get("problems")]
    if probs:
        out.append("Runs with problems (excluded from nothing; check them):\n")
        for r in probs:
            out.append("- %s %s %s c=%s rep=%s: %s" % (r.get("kind"), r.get("server", r.get("key")),
                                                      r.get("method", ""), r.get("conns"), r.get("rep"),
                                                      "; ".join(r["problems"])))
        out.append("")
    text = "\n".join(out)
    print(text)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(text + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("urlpath"); p.add_argument("der"); p.set_defaults(f=cmd_urlpath)
    p = sub.add_parser("nonce-reqs"); p.add_argument("input"); p.add_argument("output")
    p.add_argument("count", type=int); p.set_defaults(f=cmd_nonce_reqs)
    p = sub.add_parser("has-nonce"); p.add_argument("req"); p.add_argument("resp")
    p.set_defaults(f=cmd_has_nonce)
    p = sub.add_parser("point")
    p.add_argument("--label", required=True, help="JSON object copied into the record")
    p.add_argument("--url", required=True)
    p.add_argument("--script")
    p.add_argument("--env", action="append")
    p.add_argument("--wrk-cpus", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--conns", type=int, required=True)
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--server-pids", required=True)
    p.add_argument("--expect-bytes", type=int, default=0)
    p.add_argument("--perf-events", default="")
    p.add_argument("--idle-wait", type=float, default=0,
                   help="wait up to this many seconds for other load to go before measuring")
    p.add_argument("--retries", type=int, default=0,
                   help="measure again (at most this many times) when other processes used "
                        "more than --noise-limit of a core during the run")
    p.add_argument("--noise-limit", type=float, default=0.1)
    p.add_argument("--out", required=True)
    p.set_defaults(f=cmd_point)
    p = sub.add_parser("speed")
    p.add_argument("--label", required=True)
    p.add_argument("--alg", required=True, choices=sorted(SPEED_RE))
    p.add_argument("--cpus", required=True)
    p.add_argument("--multi", type=int, default=1)
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--idle-wait", type=float, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(f=cmd_speed)
    p = sub.add_parser("cgtop")
    p.add_argument("file")
    p.add_argument("--requests", type=int, default=0)
    p.add_argument("--count-calls", default="")
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--inclusive", default="", help="comma-separated functions: inclusive cost")
    p.add_argument("--json")
    p.set_defaults(f=cmd_cgtop)
    p = sub.add_parser("summary")
    p.add_argument("results")
    p.add_argument("--markdown")
    p.set_defaults(f=cmd_summary)
    a = ap.parse_args()
    a.f(a)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The cfgfs benchmark: every figure measured side by side with its reference
in the same run, reported as medians and ratios (these machines are shared
and noisy; single absolute times mean little).

    make bench            (or: python3 tests/bench/bench.py [--quick] [--no-consul])

It starts and stops its own etcd, Consul and consulfs on loopback, and
cleans up after itself. Needs root for drop_caches (cold ls -lR of tmpfs)
and strace for the store-load figure.
"""
import argparse
import base64
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import struct
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness  # noqa: E402

READBENCH = os.path.join(HERE, "readbench")
FETCH = os.path.join(HERE, "..", "fetch-consul.sh")


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def cpu_model():
    """The CPU's model name, for the line that says where figures come from."""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "?"


def med(values):
    return statistics.median(values)


def readbench(mode, path, n):
    out = subprocess.run([READBENCH, mode, path, str(n)], check=True, capture_output=True,
                         text=True).stdout
    return float(out)


def side_by_side(mode, ours, ref, n, rounds, n_ref=None):
    """Alternate runs on our file and the reference so that machine noise
    hits both alike; return the medians (ns/op)."""
    a, b = [], []
    for _ in range(rounds):
        a.append(readbench(mode, ours, n))
        b.append(readbench(mode, ref, n_ref or n))
    return med(a), med(b)


def timed(cmd):
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def drop_caches():
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("2\n")
        return True
    except OSError:
        return False


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Row:
    def __init__(self, figure, ours, ref, ratio, target, ok):
        self.cells = (figure, ours, ref, ratio, target, "yes" if ok else "NO")


# ---------------------------------------------------------------- watch floors

class EtcdWatchTimer(threading.Thread):
    """etcd's own watch latency, the floor for ours: a raw /v3/watch stream
    that records when each revision's event arrives."""

    def __init__(self, endpoint, prefix, tls=None):
        super().__init__(daemon=True)
        key = prefix.encode()
        end = key[:-1] + bytes([key[-1] + 1])
        body = json.dumps({"create_request": {
            "key": base64.b64encode(key).decode(),
            "range_end": base64.b64encode(end).decode()}}).encode()
        self.req = urllib.request.Request("%s://%s/v3/watch" % ("https" if tls else "http",
                                                                endpoint),
                                          data=body, method="POST")
        self.context = tls.context() if tls else None
        self.seen = {}
        self.ready = threading.Event()

    def run(self):
        try:
            self.stream()
        except OSError:
            pass  # the server is gone: the measurement is over

    def stream(self):
        with urllib.request.urlopen(self.req, context=self.context) as resp:
            self.ready.set()
            for line in resp:
                t = time.monotonic()
                res = json.loads(line).get("result", {})
                for ev in res.get("events", []):
                    self.seen[int(ev["kv"]["mod_revision"])] = t


class ConsulWatchTimer(threading.Thread):
    """Consul's own latency: a blocking query loop on the prefix that records
    when each index is first returned."""

    def __init__(self, endpoint, prefix):
        super().__init__(daemon=True)
        self.base = "http://%s/v1/kv/%s?recurse" % (endpoint, prefix)
        self.seen = {}
        self.ready = threading.Event()
        self.stop = False

    def run(self):
        index = 0
        while not self.stop:
            url = self.base + ("&index=%d&wait=10s" % index if index else "")
            try:
                with urllib.request.urlopen(url, timeout=30) as resp:
                    idx = int(resp.headers.get("X-Consul-Index", "0"))
            except urllib.error.HTTPError as e:
                idx = int(e.headers.get("X-Consul-Index", "0"))
            except OSError:
                return  # the server is gone: the measurement is over
            t = time.monotonic()
            if index and idx > index:
                self.seen[idx] = t
            index = max(idx, 1)
            self.ready.set()


class ZkWatchTimer(threading.Thread):
    """ZooKeeper's own latency: a session of its own with a data watch on
    the key, read again (and the watch armed again) at each notification;
    seen maps the value read to when that read's answer arrived. A watch
    event carries no data: watch + getData is what any client needs (and the
    event alone can arrive before the writer's own acknowledgment)."""

    def __init__(self, endpoint, path):
        super().__init__(daemon=True)
        from servers import zookeeper as zk
        self.zk = zk
        self.sess = zk._Session(endpoint)
        self.path = path
        self.seen = {}
        self.ready = threading.Event()
        self.stop = False

    def run(self):
        zk, s = self.zk, self.sess
        try:
            with s.lock:
                s._connect(time.monotonic() + 10)
                s.sock.settimeout(None)
                t = time.monotonic()
                self._arm()
                while not self.stop:
                    frame = s._recv_frame(time.monotonic() + 3600)
                    xid = struct.unpack_from("!i", frame, 0)[0]
                    if xid == zk.XID_WATCH:
                        self._arm()
                    elif xid > 0:
                        t = time.monotonic()
                        r = zk._Reader(frame, zk._REPLY_HDR.size)
                        data = r.buf()
                        if data is not None and self.ready.is_set():
                            self.seen.setdefault(data, t)
                        self.ready.set()
        except (OSError, struct.error):
            pass  # the server is gone: the measurement is over

    def _arm(self):
        zk, s = self.zk, self.sess
        s.xid += 1
        s._send(zk._REQ_HDR.pack(s.xid, zk.OP_GET_DATA) + zk._str(self.path) + b"\1",
                time.monotonic() + 5)


def propagation(client, mnt, key_rel, full_key, timer, changes, index_of):
    """Write acknowledged by the store -> new bytes readable through the
    mount (a held-open descriptor polled with pread), next to the store's
    own notification latency measured by timer."""
    client.put(full_key, "v0")
    path = mnt.path(key_rel)
    harness.wait_until(lambda: harness.read_file(path) == b"v0", 10, what="key in the mount")
    timer.start()
    timer.ready.wait(10)
    fd = os.open(path, os.O_RDONLY)
    ours, floor = [], []
    try:
        for i in range(1, changes + 1):
            want = ("v%d" % i).encode()
            rev = index_of(client.put(full_key, want))
            acked = time.monotonic()
            deadline = acked + 5
            while os.pread(fd, 64, 0) != want:
                if time.monotonic() > deadline:
                    raise RuntimeError("change %d never reached the mount" % i)
            ours.append((time.monotonic() - acked) * 1000)
            mark = want if isinstance(timer, ZkWatchTimer) else rev
            harness.wait_until(lambda: mark in timer.seen, 10, what="store notification")
            floor.append((timer.seen[mark] - acked) * 1000)
            # Pacing: one change every 60 ms, faster than configuration churns; Consul's
            # loop is rate-limited (20 queries/s, burst 4) and would batch faster ones.
            time.sleep(0.06)
    finally:
        os.close(fd)
    return ours, floor


def requests_at_rest(pid, seconds):
    """Network calls the daemon makes while nothing changes: attach strace to
    every thread and count connect/send syscalls. A watch stream or a
    blocking query costs none; a polling loop would."""
    if not shutil.which("strace"):
        return None
    p = subprocess.Popen(["strace", "-f", "-qq", "-c", "-e", "trace=connect,sendto,sendmsg",
                          "-p", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True)
    time.sleep(seconds)  # the measurement window itself, not synchronization
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=30)
    calls = 0
    for line in err.splitlines():
        parts = line.split()
        if parts and parts[-1] in ("connect", "sendto", "sendmsg"):
            calls += int(parts[3] if len(parts) >= 6 else parts[-2])
    return calls


def tcp_connections(pid, port):
    out = subprocess.run(["ss", "-Htnp", "state", "established", "dport", "= :%d" % port],
                         capture_output=True, text=True).stdout
    return sum(1 for line in out.splitlines() if "pid=%d," % pid in line)


def at_rest(srv, prefix, label, target):
    """What a quiet mount costs the store: the watch (one connection, no
    polling of data) and the liveness check of the member serving it, one
    small request per check interval (1 s) on a second connection; with
    -o check_interval=0 for reference."""
    out = {}
    for opts in ([], ["-o", "check_interval=0"]):
        mnt = harness.CfgfsMount()
        try:
            mnt.mount(srv.url(prefix), opts, foreground=False)
            harness.wait_until(
                lambda: os.getxattr(mnt.mountpoint, "user.cfgfs.connected") == b"1",
                10, what="watch connected")
            pid = harness.find_daemon_pid(mnt.mountpoint)
            calls = requests_at_rest(pid, 5)
            conns = tcp_connections(pid, int(srv.endpoint.rsplit(":", 1)[1]))
        finally:
            mnt.close()
        out[bool(opts)] = (calls, conns)
    (calls, conns), (calls0, conns0) = out[False], out[True]
    return Row(label, "%s network calls, %d connections" % (calls, conns),
               "without checks: %s calls, %d connection" % (calls0, conns0), "-", target,
               calls is not None and calls <= 6 and conns <= 2 and calls0 == 0 and conns0 == 1)


# ---------------------------------------------------------------- etcd figures

def etcd_figures(rows, n, rounds, quick):
    shm = tempfile.mkdtemp(prefix="cfgfs-bench-", dir="/dev/shm")
    try:
        with harness.EtcdServer() as srv:
            client = srv.client()
            value = b"x" * 4000 + b"\n"
            client.put("bench/small.conf", value)
            mnt = harness.CfgfsMount()
            try:
                mnt.mount(srv.url("bench"), foreground=False)
                ours = mnt.path("small.conf")
                # The same number of path components on both sides: each costs a
                # lookup step (100-300 ns here), which is not what is compared.
                refdir = os.path.join(shm, "mnt")
                os.mkdir(refdir)
                ref = os.path.join(refdir, "small.conf")
                assert ours.count("/") == ref.count("/"), (ours, ref)
                with open(ref, "wb") as f:
                    f.write(value)
                for mode, label, target in (
                        ("orc", "open+read+close of a 4 KiB file, warm", 1.5),
                        ("stat", "stat, warm", 1.3),
                        ("pread", "pread 4 KiB on an open fd", 1.1)):
                    a, b = side_by_side(mode, ours, ref, n, rounds)
                    rows.append(Row(label, "%.2f us" % (a / 1000), "tmpfs %.2f us" % (b / 1000),
                                    "%.2fx" % (a / b), "<= %.1fx" % target, a / b <= target))

                lat, floor = propagation(client, mnt, "latency", "bench/latency",
                                         EtcdWatchTimer(srv.endpoint, "bench/"), 40,
                                         lambda rev: rev)
                rows.append(Row("etcd write acked -> new bytes readable (40 changes)",
                                "p50 %.2f ms, p99 %.2f ms" % (pct(lat, 50), pct(lat, 99)),
                                "etcd's own watch: p50 %.2f, p99 %.2f ms"
                                % (pct(floor, 50), pct(floor, 99)),
                                "-", "p99 <= 25 ms", pct(lat, 99) <= 25))

                # One CAS commit: write + fsync of an existing key, against the same put
                # made directly over HTTP from the same process.
                path = mnt.path("small.conf")
                sync, direct = [], []
                url = "http://%s/v3/kv/put" % srv.endpoint
                for i in range(30):
                    t = time.perf_counter()
                    with open(path, "r+b") as f:
                        f.write(b"y%03d" % i)
                        f.flush()
                        os.fsync(f.fileno())
                    sync.append(time.perf_counter() - t)
                    body = json.dumps({"key": base64.b64encode(b"bench/direct").decode(),
                                       "value": base64.b64encode(b"y%03d" % i).decode()})
                    t = time.perf_counter()
                    urllib.request.urlopen(urllib.request.Request(url, body.encode())).read()
                    direct.append(time.perf_counter() - t)
                rows.append(Row("write+fsync of a key (one CAS commit, synchronous)",
                                "%.2f ms" % (med(sync) * 1000),
                                "same put over HTTP %.2f ms" % (med(direct) * 1000),
                                "%.2fx" % (med(sync) / med(direct)), "<= 1.5x",
                                med(sync) / med(direct) <= 1.5))

                # Write-temp-then-rename with and without fsync: with it the temporary file
                # is a key from its fsync to the rename (how long other hosts may see it).
                plain, synced, visible = [], [], []
                for i in range(10 if quick else 30):
                    for use_fsync, out in ((False, plain), (True, synced)):
                        t = time.perf_counter()
                        fd, tmp = tempfile.mkstemp(dir=mnt.mountpoint, prefix=".small.conf.")
                        os.write(fd, b"t%03d" % i)
                        if use_fsync:
                            os.fsync(fd)
                            t_key = time.perf_counter()
                        os.close(fd)
                        os.replace(tmp, path)
                        out.append(time.perf_counter() - t)
                        if use_fsync:
                            visible.append(time.perf_counter() - t_key)
                rows.append(Row("temp+fsync+rename save (the temp is a key meanwhile)",
                                "%.2f ms, temp key lives %.2f ms" % (med(synced) * 1000,
                                                                     med(visible) * 1000),
                                "without fsync %.2f ms (never a key)" % (med(plain) * 1000),
                                "%.2fx" % (med(synced) / med(plain)), "-", True))

                # `echo x > file` until the store has it, against curl doing the put.
                echo, curl = [], []
                for i in range(10 if quick else 20):
                    want = "e%d" % i
                    t = time.perf_counter()
                    subprocess.run(["sh", "-c", "echo %s > %s" % (want, path)], check=True)
                    harness.wait_until(
                        lambda: (client.get("bench/small.conf") or {}).get("value") ==
                        (want + "\n").encode(), 5, interval=0.0005, what="echo committed")
                    echo.append(time.perf_counter() - t)
                    body = json.dumps({"key": base64.b64encode(b"bench/direct").decode(),
                                       "value": base64.b64encode(want.encode()).decode()})
                    curl.append(timed(["curl", "-s", "-X", "POST", url, "-d", body]))
                rows.append(Row("`echo x > file` until the store has it",
                                "%.1f ms" % (med(echo) * 1000),
                                "curl put %.1f ms" % (med(curl) * 1000),
                                "%.1fx" % (med(echo) / med(curl)), "<= 1.5x",
                                med(echo) / med(curl) <= 1.5))

            finally:
                mnt.close()
            rows.append(at_rest(srv, "bench", "etcd load at rest (5 s idle, fresh mount)",
                                "1 watch stream + 1 check/s"))

            ls_figures(rows, srv, shm)
            mount_figures(rows, srv, quick)
    finally:
        shutil.rmtree(shm, ignore_errors=True)


def ls_figures(rows, srv, shm):
    client = srv.client()
    tree = os.path.join(shm, "ls")
    batch = {}
    for d in range(100):
        os.makedirs(os.path.join(tree, "d%02d" % d))
        for f in range(100):
            batch["ls/d%02d/f%02d" % (d, f)] = "v" * 100
            with open(os.path.join(tree, "d%02d/f%02d" % (d, f)), "w") as fh:
                fh.write("v" * 100)
            if len(batch) == 100:
                client.txn_put_many(batch)
                batch = {}
    cold, warm, tcold, twarm = [], [], [], []
    dropped = True
    for _ in range(3):
        mnt = harness.CfgfsMount()
        try:
            mnt.mount(srv.url("ls"), foreground=False)
            cold.append(timed(["ls", "-lR", mnt.mountpoint]))
            warm.append(med([timed(["ls", "-lR", mnt.mountpoint]) for _ in range(3)]))
        finally:
            mnt.close()
        dropped &= drop_caches()
        tcold.append(timed(["ls", "-lR", tree]))
        twarm.append(med([timed(["ls", "-lR", tree]) for _ in range(3)]))
    for label, a, b in (("cold (fresh mount)", cold, tcold), ("warm", warm, twarm)):
        ratio = med(a) / med(b)
        rows.append(Row("ls -lR of 10k keys, " + label, "%.0f ms" % (med(a) * 1000),
                        "tmpfs %.0f ms%s" % (med(b) * 1000,
                                             "" if dropped or label == "warm" else " (caches not dropped)"),
                        "%.2fx" % ratio, "<= 2x", ratio <= 2))


def load_keys(client, prefix, n):
    """n keys of about 100 bytes under prefix/, in 500 directories; returns
    the bytes of names (below the prefix) and values."""
    batch, payload = {}, 0
    for i in range(n):
        k = "%s/d%03d/key-%06d" % (prefix, i % 500, i)
        v = "value-%06d-" % i + "x" * 88
        payload += len(k) - len(prefix) - 1 + len(v)
        batch[k] = v
        if len(batch) == 128:
            client.txn_put_many(batch)
            batch = {}
    if batch:
        client.txn_put_many(batch)
    return payload


def views_figures(rows, quick):
    """-o views: what a view of 10k keys costs to render and hold, and what views
    add to the propagation of a plain file (the same change, seen by a mount
    with views and one without, side by side; the view is read after every
    change, as an application reading it would)."""
    with harness.EtcdServer() as srv:
        client = srv.client()
        load_keys(client, "bench/tree", 10000)
        client.put("bench/latency", "v0")
        on, off = harness.CfgfsMount(), harness.CfgfsMount()
        try:
            on.mount(srv.url("bench"), opts=["-o", "views"], foreground=False)
            off.mount(srv.url("bench"), foreground=False)
            view = on.path("%#json")
            rss0 = rss_kib(on.pid)
            first, again = [], []
            for i in range(5 if quick else 15):
                client.put("bench/tree/d000/key-000000", "r%d" % i)
                harness.wait_until(lambda: harness.read_file(on.path(
                    "tree", "d000", "key-000000")) == ("r%d" % i).encode(), 10)
                t = time.perf_counter()
                size = len(harness.read_file(view))
                first.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                harness.read_file(view)
                again.append((time.perf_counter() - t) * 1000)
            for name in ("%#yaml", "%#env", "%#properties"):
                harness.read_file(on.path(name))
            rss1 = rss_kib(on.pid)
            rows.append(Row("view of 10k keys: first read after a change (renders)",
                            "p50 %.1f ms (%d KB of JSON)" % (med(first), size // 1024),
                            "cached: p50 %.2f ms" % med(again), "-", "<= 50 ms",
                            med(first) <= 50))
            rows.append(Row("memory of the four views of 10k keys",
                            "%.1f MiB" % ((rss1 - rss0) / 1024), "-", "-", "-", True))
            fds = {m: os.open(m.path("latency"), os.O_RDONLY) for m in (on, off)}
            lat = {on: [], off: []}
            try:
                for i in range(1, (20 if quick else 40) + 1):
                    want = ("v%d" % i).encode()
                    client.put("bench/latency", want)
                    acked = time.monotonic()
                    todo = {on, off}
                    while todo:
                        for m in list(todo):
                            if os.pread(fds[m], 64, 0) == want:
                                lat[m].append((time.monotonic() - acked) * 1000)
                                todo.discard(m)
                        if time.monotonic() > acked + 5:
                            raise RuntimeError("change %d never reached a mount" % i)
                    harness.read_file(view)     # the application re-reads its view
                    time.sleep(0.06)
            finally:
                for fd in fds.values():
                    os.close(fd)
            rows.append(Row("etcd write acked -> readable, mount with views (view re-read)",
                            "p50 %.2f ms, p99 %.2f ms" % (pct(lat[on], 50), pct(lat[on], 99)),
                            "same change, mount without: p50 %.2f, p99 %.2f ms"
                            % (pct(lat[off], 50), pct(lat[off], 99)),
                            "%.2fx" % (pct(lat[on], 50) / max(pct(lat[off], 50), 1e-3)),
                            "p99 <= 25 ms", pct(lat[on], 99) <= 25))
        finally:
            on.close()
            off.close()


def tls_figures(rows, quick):
    """TLS next to plain HTTP: two etcd servers alike but for TLS (with
    client certificates required), measured alternately in the same run."""
    from servers import tls as tlsmod
    reason = tlsmod.openssl_missing_reason()
    if reason:
        rows.append(Row("TLS figures", "skipped: " + reason, "-", "-", "-", True))
        return
    certs = tlsmod.Certs()
    try:
        stls = tlsmod.ServerTLS.of(certs.server, certs.client)
        opts = ["-o", "cacert=%s,cert=%s,key=%s" % (certs.ca.cert, certs.client.cert,
                                                   certs.client.key)]
        with harness.EtcdServer() as plain, harness.EtcdServer(tls=stls) as secure:
            sides = (("plain", plain, [], None), ("tls", secure, opts, stls.harness))
            lat = {}
            for name, srv, o, ctls in sides:
                mnt = harness.CfgfsMount()
                try:
                    mnt.mount(srv.url("bench"), o, foreground=False)
                    lat[name], _ = propagation(srv.client(), mnt, "latency", "bench/latency",
                                               EtcdWatchTimer(srv.endpoint, "bench/", ctls),
                                               40, lambda rev: rev)
                finally:
                    mnt.close()
            rows.append(Row("etcd over TLS: write acked -> new bytes readable",
                            "p50 %.2f ms, p99 %.2f ms" % (pct(lat["tls"], 50),
                                                          pct(lat["tls"], 99)),
                            "plain HTTP: p50 %.2f, p99 %.2f ms" % (pct(lat["plain"], 50),
                                                                  pct(lat["plain"], 99)),
                            "%.2fx" % (pct(lat["tls"], 50) / pct(lat["plain"], 50)),
                            "p99 <= 25 ms", pct(lat["tls"], 99) <= 25))
            n = 20000
            for _, srv, _, _ in sides:
                load_keys(srv.client(), "m20k", n)
            times = {"plain": [], "tls": []}
            for _ in range(3):
                for name, srv, o, _ in sides:
                    mnt = harness.CfgfsMount()
                    try:
                        t = time.perf_counter()
                        mnt.mount(srv.url("m20k"), o, foreground=False)
                        times[name].append(time.perf_counter() - t)
                    finally:
                        mnt.close()
            a, b = med(times["tls"]), med(times["plain"])
            rows.append(Row("etcd over TLS: mount 20k keys", "%.2f s" % a,
                            "plain HTTP %.2f s" % b, "%.2fx" % (a / b), "<= 1.5x",
                            a / b <= 1.5))
    finally:
        certs.close()


def zk_figures(rows, quick):
    """ZooKeeper: propagation next to its own watch latency, mount time,
    memory per znode, and the watches the server holds for the mount."""
    from servers import zookeeper as zk
    with zk.ZookeeperServer() as srv:
        client = srv.client()
        mnt = harness.CfgfsMount()
        try:
            client.put("zbench/x", "x")
            mnt.mount(srv.url("zbench"), foreground=False)
            lat, floor = propagation(client, mnt, "latency", "zbench/latency",
                                     ZkWatchTimer(srv.endpoint, "/zbench/latency"), 40,
                                     lambda rev: rev)
        finally:
            mnt.close()
        rows.append(Row("ZooKeeper write acked -> new bytes readable (40 changes)",
                        "p50 %.2f ms, p99 %.2f ms" % (pct(lat, 50), pct(lat, 99)),
                        "its own watch + getData: p50 %.2f, p99 %.2f ms"
                        % (pct(floor, 50), pct(floor, 99)), "-", "p99 <= 25 ms",
                        pct(lat, 99) <= 25))
        empty = harness.CfgfsMount()
        try:
            client.put("zempty/x", "x")
            empty.mount(srv.url("zempty"), foreground=False)
            base = rss_kib(harness.find_daemon_pid(empty.mountpoint))
        finally:
            empty.close()
        n = 20000
        load_keys(client, "z20k", n)
        times, rss, watches = [], 0, None
        for _ in range(3):
            mnt = harness.CfgfsMount()
            try:
                t = time.perf_counter()
                mnt.mount(srv.url("z20k"), foreground=False)
                times.append(time.perf_counter() - t)
                harness.wait_until(
                    lambda: os.getxattr(mnt.mountpoint, "user.cfgfs.connected") == b"1", 60,
                    what="watch connected")
                rss = rss_kib(harness.find_daemon_pid(mnt.mountpoint))
                wchs = zk.four_letter(srv.endpoint, "wchs")
                m = re.search(r"Total watches:\s*(\d+)", wchs)
                watches = int(m.group(1)) if m else None
            finally:
                mnt.close()
        rows.append(Row("mount 20k znodes (returns when loaded)", "%.2f s" % med(times), "-",
                        "-", "<= 5 s", med(times) <= 5))
        rows.append(Row("resident memory per znode (20k)", "%.0f B" % ((rss - base) * 1024.0 / n),
                        "-", "-", "-", True))
        rows.append(Row("watches ZooKeeper holds for the 20k mount",
                        "%s" % watches, "20,000 keys + 500 dirs + 1",
                        "%.2f per znode" % (watches / (n + 501.0)) if watches else "-",
                        "<= 2 per znode", bool(watches) and watches <= 2 * (n + 501)))


def mount_figures(rows, srv, quick):
    client = srv.client()
    sizes = (20000,) if quick else (20000, 100000)
    empty = harness.CfgfsMount()
    try:
        empty.mount(srv.url("empty"), foreground=False)
        base = rss_kib(harness.find_daemon_pid(empty.mountpoint))
    finally:
        empty.close()
    for n in sizes:
        prefix = "m%d" % n
        payload = load_keys(client, prefix, n)
        times, rss = [], 0
        for _ in range(3):
            mnt = harness.CfgfsMount()
            try:
                t = time.perf_counter()
                mnt.mount(srv.url(prefix), foreground=False)
                times.append(time.perf_counter() - t)
                rss = rss_kib(harness.find_daemon_pid(mnt.mountpoint))
            finally:
                mnt.close()
        target = 1.0 if n == 20000 else 5.0
        rows.append(Row("mount %dk keys (returns when loaded)" % (n // 1000),
                        "%.2f s" % med(times), "-", "-", "<= %.0f s" % target,
                        med(times) <= target))
        if n == sizes[-1]:
            per_key = (rss - base) * 1024.0 / n
            kv = payload / n
            rows.append(Row("resident memory per key (%dk keys)" % (n // 1000),
                            "%.0f B" % per_key, "key + value %.0f B" % kv,
                            "+%.0f B" % (per_key - kv), "<= key + value + 256 B",
                            per_key - kv <= 256))


# ---------------------------------------------------------------- Consul figures

def consul_figures(rows, n, rounds):
    server_cls = getattr(harness, "ConsulServer", None)
    if server_cls is None:
        rows.append(Row("Consul figures", "skipped: no ConsulServer in the harness", "-", "-",
                        "-", False))
        return
    with server_cls() as srv:
        client = srv.client()
        value = b"x" * 4000 + b"\n"
        client.put("cbench/small.conf", value)
        mnt = harness.CfgfsMount()
        peer = None
        peer_mnt = tempfile.mkdtemp(prefix="consulfs-", dir="/var/tmp")
        try:
            mnt.mount(srv.url("cbench"), foreground=False)
            lat, floor = propagation(client, mnt, "latency", "cbench/latency",
                                     ConsulWatchTimer(srv.endpoint, "cbench/"), 30,
                                     lambda idx: idx)
            rows.append(Row("Consul write acked -> new bytes readable (30 changes)",
                            "p50 %.2f ms, p99 %.2f ms" % (pct(lat, 50), pct(lat, 99)),
                            "Consul's own blocking query: p50 %.2f, p99 %.2f ms"
                            % (pct(floor, 50), pct(floor, 99)),
                            "-", "p99 <= 100 ms", pct(lat, 99) <= 100))

            consulfs = subprocess.run([FETCH, "consulfs"], capture_output=True, text=True,
                                      check=True).stdout.strip()
            peer = subprocess.Popen([consulfs, "-root", "cbench", srv.endpoint, peer_mnt],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            harness.wait_until(lambda: os.path.exists(os.path.join(peer_mnt, "small.conf")), 10,
                               what="consulfs mount")
            a, b = side_by_side("orc", mnt.path("small.conf"),
                                os.path.join(peer_mnt, "small.conf"), n, rounds,
                                n_ref=max(200, n // 200))
            rows.append(Row("open+read+close, same Consul", "cfgfs %.2f us" % (a / 1000),
                            "consulfs 0.2.1 %.0f us" % (b / 1000),
                            "%.0fx faster" % (b / a), ">= 50x faster", b / a >= 50))

        finally:
            if peer:
                subprocess.run(["fusermount3", "-u", peer_mnt], stderr=subprocess.DEVNULL)
                peer.terminate()
                peer.wait(10)
            shutil.rmtree(peer_mnt, ignore_errors=True)
            mnt.close()
        rows.append(at_rest(srv, "cbench", "Consul load at rest (5 s idle, fresh mount)",
                            "1 blocking query + 1 check/s"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer iterations, no 100k keys")
    ap.add_argument("--no-consul", action="store_true")
    ap.add_argument("--only", choices=("etcd", "consul", "tls", "zookeeper", "views"),
                    help="one group of figures")
    args = ap.parse_args()
    n = 20000 if args.quick else 50000
    # Many short alternating rounds: this machine drifts by 20% over seconds.
    rounds = 5 if args.quick else 15

    if not os.access(READBENCH, os.X_OK):
        sys.exit("bench: %s is not built (make tests/bench/readbench)" % READBENCH)
    rows = []
    if args.only in (None, "etcd"):
        etcd_figures(rows, n, rounds, args.quick)
    if args.only in (None, "tls"):
        tls_figures(rows, args.quick)
    if args.only in (None, "consul") and not args.no_consul:
        consul_figures(rows, n, rounds)
    if args.only in (None, "zookeeper"):
        zk_figures(rows, args.quick)
    if args.only in (None, "views"):
        views_figures(rows, args.quick)

    print("cfgfs benchmark, %s: %s, %d CPUs (%s), kernel %s" % (
        time.strftime("%Y-%m-%d"), platform.node(), os.cpu_count(), cpu_model(),
        platform.release()))
    print()
    head = ("figure", "cfgfs", "reference", "ratio", "target", "met")
    cells = [r.cells for r in rows]
    widths = [max(len(str(c[i])) for c in cells + [head]) for i in range(len(head))]
    print("| " + " | ".join("%-*s" % (w, h) for w, h in zip(widths, head)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for c in cells:
        print("| " + " | ".join("%-*s" % (w, x) for w, x in zip(widths, c)) + " |")


if __name__ == "__main__":
    main()

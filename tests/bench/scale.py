#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""How cfgfs's cost grows with hosts and keys (issue 14, "Scale"): every
figure of a part measured side by side in one run, printed as one table per
part and written as JSON with --json.

    make bench-scale SCALE_ARGS="--quick --json /tmp/scale.json"
    python3 tests/bench/scale.py [--quick] [--only fanout|restart|trees|consul|agent|cache]
                                 [--million] [--json PATH] [--n 1,10,50,100]
                                 [--store etcd|consul] [--mount-opt OPT]

Parts:
  fanout   N cfgfs mounts (one process each, as N hosts would be) of one
           etcd and of one Consul, N = 1, 10, 50, 100 (quick: 1, 10): for
           each N, change -> readable on the LAST mount (p50/p99 over K
           changes, K = 30, quick 10), the store's CPU and RSS, each
           cfgfs's CPU over 5 s at rest, TCP connections per mount.
  restart  N = 100 (quick 10) mounts of one etcd; etcd stopped (SIGTERM),
           3 s later started again on the same data and port: the store's
           request rate (peak over 100 ms and over 1 s, from its
           grpc_server_started_total counters) and the time until every
           mount shows a value written right after the restart.
  trees    mount time, cfgfs RSS, ls -lR and find over 100k keys in etcd
           (quick: 20k); 1M keys too with --million.
  consul   Consul with 1k, 10k, 100k keys under the mounted prefix (quick:
           1k, 10k): change -> readable and cfgfs (and Consul) CPU per change;
           at 100k by shard (cfgfs's way from 20k keys) and by whole
           listings, side by side.
  agent    N mounts on a Consul client agent and N on the server.
  cache    change -> readable while -o cache_file saves 100k keys (1M with
           --million, 20k quick): no cache file, saved by a child process,
           saved in the process.

How propagation is timed (fanout, restart): the writer puts the key and
takes the time when the store acknowledges; one poller (this process's main
thread) then sweeps the held-open descriptors of the mounts that do not show
the value yet with pread, taking the time right after the pread that sees
it, and sleeps 0.5 ms between sweeps. So a mount's time is late by at most
one sweep plus that sleep (the median sweep is reported), the poller never
competes for the CPU between changes, and while it polls it uses a share of
one core that is reported (poller %). The time of a change is that of the
last mount to show it. p99 of 30 changes is their maximum.

CPU figures are utime + stime from /proc/PID/stat (10 ms ticks) for the
store and each cfgfs; the idle figure also sums /proc/PID/task/*/schedstat
(nanoseconds). Connections are established TCP connections from each cfgfs
pid to the store's client port (/proc/net/tcp, socket inodes of
/proc/PID/fd). A mount makes two by default: its watch and its liveness
check (-o check_interval); both are counted.

All mounts on one loopback address: Consul limits HTTP connections per
client address (http_max_conns_per_client, 200 by default), which 100 mounts
with two connections each would exceed although 100 hosts would not; the
Consul started here raises it. Everything started (stores, mounts) is
stopped at exit, on failure and on SIGTERM/SIGHUP (the harness's cleanup).
"""
import argparse
import concurrent.futures
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402  (also puts tests/integration on sys.path)
from bench import cpu_model, med, pct, rss_kib  # noqa: E402
harness = bench.harness

TICK = os.sysconf("SC_CLK_TCK")
MOUNT_PARALLEL = 4        # mounts started (and closed) at once
GAP = 0.1                 # pause between changes (cfgfs's Consul loop allows 20 queries/s)
IDLE_SECONDS = 5


# ---------------------------------------------------------------- /proc

def settle(pid, busy=0.05, timeout=60):
    """Wait (bounded) until process pid uses less than busy of a core over a
    second: a store still writing what was loaded would bill it to what is
    measured next."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        c0 = cpu_seconds(pid)
        time.sleep(1)
        if cpu_seconds(pid) - c0 < busy:
            return


def cpu_seconds(pid):
    """utime + stime of the whole process (every thread, dead ones too)."""
    with open("/proc/%d/stat" % pid, "rb") as f:
        stat = f.read()
    rest = stat[stat.rindex(b")") + 2:].split()
    return (int(rest[11]) + int(rest[12])) / TICK


def sched_ns(pid):
    """Time on a CPU of the process's live threads, in ns (schedstat)."""
    total = 0
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return 0
    for t in tasks:
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, t)) as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def status_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def connections_by_pid(pids, port):
    """{pid: established TCP connections to 127.0.0.1:port / [::1]:port}."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    p = line.split()
                    if p[3] == "01" and int(p[2].rsplit(":", 1)[1], 16) == port:
                        inodes.add(p[9])
        except OSError:
            pass
    out = {}
    for pid in pids:
        n = 0
        fddir = "/proc/%d/fd" % pid
        try:
            fds = os.listdir(fddir)
        except OSError:
            fds = []
        for fd in fds:
            try:
                link = os.readlink(os.path.join(fddir, fd))
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                n += 1
        out[pid] = n
    return out


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ---------------------------------------------------------------- stores and mounts

class ScaleConsul(harness.ConsulServer):
    """The harness's Consul, but allowing many HTTP connections from one
    address (all our "hosts" are 127.0.0.1)."""

    def _args(self):
        return super()._args() + ["-hcl", "limits { http_max_conns_per_client = 8192 }"]


class ScaleConsulAgent(ScaleConsul):
    """A Consul client agent (no -server) joined to server: what each host
    of a Consul fleet runs, and what cfgfs on that host talks to."""

    def __init__(self, server):
        super().__init__()
        self.server = server
        self.node = "cfgfs-agent-" + self.node.rsplit("-", 1)[1]

    def _args(self):
        args = super()._args()
        i = args.index("-server")
        del args[i:i + 3]   # -server -bootstrap-expect 1
        return args + ["-retry-join", "127.0.0.1:%d" % self.server.serf_port]


class Fleet:
    """N cfgfs mounts of one store URL, each its own daemon, mount points
    under one temp dir. grow(n) adds mounts; close() unmounts them all."""

    opts = ()   # -o options every mount gets (--mount-opt)

    def __init__(self, url, base):
        self.url = url
        self.base = base
        self.mounts = []
        self.pids = []

    def grow(self, n, opts=(), env=None):
        opts = tuple(self.opts) + tuple(opts)
        new = [harness.CfgfsMount(base_dir=self.base) for _ in range(n - len(self.mounts))]
        self.mounts.extend(new)   # before mounting: close() must find them on failure
        t = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(MOUNT_PARALLEL) as ex:
            list(ex.map(lambda m: m.mount(self.url, list(opts), foreground=False, timeout=120,
                                          env=env),
                        new))
        took = time.perf_counter() - t
        self.pids = [m.pid for m in self.mounts]
        if None in self.pids:
            raise RuntimeError("a cfgfs daemon of %s was not found" % self.url)
        return took

    def wait_connected(self, timeout=60):
        for m in self.mounts:
            harness.wait_until(
                lambda: os.getxattr(m.mountpoint, "user.cfgfs.connected") == b"1",
                timeout, interval=0.01, what="watch of %s connected" % m.mountpoint)

    def alive(self):
        return sum(1 for m in self.mounts if m.daemon_alive())

    def close(self):
        with concurrent.futures.ThreadPoolExecutor(MOUNT_PARALLEL * 2) as ex:
            list(ex.map(lambda m: m.close(), self.mounts))
        self.mounts, self.pids = [], []


class Poller:
    """Held-open descriptors of one file in each mount of a fleet; see the
    module comment for how it times a change."""

    def __init__(self, fleet, rel):
        self.fds = [os.open(m.path(rel), os.O_RDONLY) for m in fleet.mounts]
        self.sweeps = []          # durations of sweeps (s)
        self.busy = 0.0           # poller CPU while polling (s)
        self.wall = 0.0           # wall time spent polling (s)

    def wait_all(self, want, since, timeout=15.0):
        """Poll until every mount reads want; per mount, the time it was
        seen minus since (seconds)."""
        n = len(self.fds)
        seen = [None] * n
        pending = list(range(n))
        c0, w0 = time.thread_time(), time.monotonic()
        deadline = w0 + timeout
        while pending:
            s0 = time.monotonic()
            left = []
            for j in pending:
                if os.pread(self.fds[j], 256, 0) == want:
                    seen[j] = time.monotonic() - since
                else:
                    left.append(j)
            now = time.monotonic()
            self.sweeps.append(now - s0)
            pending = left
            if pending:
                if now > deadline:
                    raise RuntimeError("%d of %d mounts never showed %r" % (len(pending), n, want))
                time.sleep(0.0005)
        self.busy += time.thread_time() - c0
        self.wall += time.monotonic() - w0
        return seen

    def share(self):
        return self.busy / self.wall if self.wall else 0.0

    def close(self):
        for fd in self.fds:
            os.close(fd)
        self.fds = []


def changes(client, key, poller, k, tag):
    """k changes of key, each waited for on every mount; lists (ms) of the
    last mount's latency and of the median mount's."""
    last, middle = [], []
    for i in range(k):
        want = ("%s-%d" % (tag, i)).encode()
        client.put(key, want)
        acked = time.monotonic()
        seen = poller.wait_all(want, acked)
        last.append(max(seen) * 1000)
        middle.append(med(seen) * 1000)
        time.sleep(GAP)   # pacing, not synchronization
    return last, middle


# ---------------------------------------------------------------- part 1: fan-out

def fanout_store(kind, ns, k, base):
    rows = []
    srv = harness.EtcdServer() if kind == "etcd" else ScaleConsul()
    fleet = None
    try:
        srv.start()
        client = srv.client()
        spid, port = srv.proc.pid, srv.ports[0]
        client.put("fan/key", "v0")
        client.put("fan/other", "x")
        fleet = Fleet(srv.url("fan"), base)
        for n in ns:
            took = fleet.grow(n)
            fleet.wait_connected()
            harness.wait_until(lambda: all(harness.read_file(m.path("key")) == b"v0"
                                           for m in fleet.mounts), 30, what="v0 everywhere")
            # At rest: each cfgfs's CPU and the store's over IDLE_SECONDS.
            a = {p: (cpu_seconds(p), sched_ns(p)) for p in fleet.pids}
            s0 = cpu_seconds(spid)
            time.sleep(IDLE_SECONDS)   # the measurement window itself
            s1 = cpu_seconds(spid)
            idle = [cpu_seconds(p) - a[p][0] for p in fleet.pids]
            idle_ns = [sched_ns(p) - a[p][1] for p in fleet.pids]
            store_rest = (s1 - s0) / IDLE_SECONDS
            conns = list(connections_by_pid(fleet.pids, port).values())

            poller = Poller(fleet, "key")
            try:
                c0, t0 = cpu_seconds(spid), time.monotonic()
                last, middle = changes(client, "fan/key", poller, k, "n%d" % n)
                c1, t1 = cpu_seconds(spid), time.monotonic()
                client.put("fan/key", "v0")
                poller.wait_all(b"v0", time.monotonic())
            finally:
                poller.close()
            store_cpu = c1 - c0
            per_change = max(0.0, store_cpu - store_rest * (t1 - t0)) / k
            row = {
                "store": kind, "n": n, "changes": k, "mount_seconds": took,
                "p50_ms": pct(last, 50), "p99_ms": pct(last, 99), "max_ms": max(last),
                "median_mount_p50_ms": pct(middle, 50),
                "store_cpu_s": store_cpu, "store_cpu_per_change_ms": per_change * 1000,
                "store_cpu_at_rest_ms_per_s": store_rest * 1000,
                "store_rss_mib": rss_kib(spid) / 1024.0,
                "cfgfs_idle_cpu_ms_max": max(idle) * 1000,
                "cfgfs_idle_cpu_ms_sum": sum(idle) * 1000,
                "cfgfs_idle_sched_ms_max": max(idle_ns) / 1e6,
                "cfgfs_idle_sched_ms_sum": sum(idle_ns) / 1e6,
                "idle_seconds": IDLE_SECONDS,
                "conns_per_mount_min": min(conns), "conns_per_mount_max": max(conns),
                "cfgfs_rss_mib_median": med([rss_kib(p) for p in fleet.pids]) / 1024.0,
                "poller_cpu_share": poller.share(),
                "poller_sweep_ms_median": med(poller.sweeps) * 1000,
                "alive": fleet.alive(),
            }
            rows.append(row)
            progress("fanout %s N=%d: p50 %.1f ms, p99 %.1f ms" % (kind, n, row["p50_ms"],
                                                                    row["p99_ms"]))
    finally:
        if fleet:
            fleet.close()
        srv.close()
    return rows


def part_fanout(args, base):
    ns = args.n or ([1, 10] if args.quick else [1, 10, 50, 100])
    k = args.changes or (10 if args.quick else 30)
    rows = []
    for kind in args.store or ("etcd", "consul"):
        rows += fanout_store(kind, ns, k, base)
    table("Fan-out: N mounts of one store, %d changes each; latency = the LAST mount to "
          "show the change" % k,
          ("store", "N", "p50 ms", "p99 ms", "median mount p50", "store CPU s",
           "store CPU/change", "store at rest", "store RSS", "cfgfs idle CPU/5 s (max, sum)",
           "conns/mount", "poller"),
          [(r["store"], r["n"], "%.1f" % r["p50_ms"], "%.1f" % r["p99_ms"],
            "%.1f ms" % r["median_mount_p50_ms"], "%.2f" % r["store_cpu_s"],
            "%.1f ms" % r["store_cpu_per_change_ms"],
            "%.0f ms/s" % r["store_cpu_at_rest_ms_per_s"], "%.0f MiB" % r["store_rss_mib"],
            "%.0f, %.0f ms (sched %.1f, %.1f)" % (r["cfgfs_idle_cpu_ms_max"],
                                                  r["cfgfs_idle_cpu_ms_sum"],
                                                  r["cfgfs_idle_sched_ms_max"],
                                                  r["cfgfs_idle_sched_ms_sum"]),
            "%d" % r["conns_per_mount_min"] if r["conns_per_mount_min"] ==
            r["conns_per_mount_max"] else "%d-%d" % (r["conns_per_mount_min"],
                                                     r["conns_per_mount_max"]),
            "%.0f%%, sweep %.2f ms" % (r["poller_cpu_share"] * 100,
                                       r["poller_sweep_ms_median"]))
           for r in rows])
    return rows


# ---------------------------------------------------------------- part 2: store restart

class MetricsSampler(threading.Thread):
    """etcd's gRPC requests started (every JSON-gateway request is one gRPC
    call inside etcd: grpc_server_started_total, by method), sampled every
    interval; a sample fails while etcd is down. Counters start at 0 again
    with the new process."""

    def __init__(self, endpoint, interval=0.1):
        super().__init__(daemon=True)
        self.url = "http://%s/metrics" % endpoint
        self.interval = interval
        self.samples = []         # (monotonic, total, {method: count}) or (t, None, None)
        self.stop = threading.Event()
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def sample(self):
        try:
            with self.opener.open(self.url, timeout=0.5) as r:
                text = r.read().decode()
        except OSError:
            return None, None
        by = {}
        for line in text.splitlines():
            if line.startswith("grpc_server_started_total{"):
                labels, value = line.rsplit(" ", 1)
                method = labels.split('grpc_method="', 1)[1].split('"', 1)[0]
                by[method] = by.get(method, 0) + int(float(value))
        return sum(by.values()), by

    def run(self):
        while not self.stop.is_set():
            total, by = self.sample()
            self.samples.append((time.monotonic(), total, by))
            self.stop.wait(self.interval)


def rates(samples, start, window):
    """Requests per second between samples of the process started at
    `start` (first sample: since start), peak over windows >= window s."""
    pts = [(start, 0)] + [(t, c) for t, c, _ in samples if t > start and c is not None]
    peak = 0.0
    j = 0
    for i in range(1, len(pts)):
        while j + 1 < i and pts[i][0] - pts[j + 1][0] >= window:
            j += 1
        dt = pts[i][0] - pts[j][0]
        if dt >= window * 0.9:
            peak = max(peak, (pts[i][1] - pts[j][1]) / dt)
    return peak


def part_restart(args, base):
    n = (args.n or [10 if args.quick else 100])[-1]
    srv = harness.EtcdServer()
    fleet = None
    sampler = None
    try:
        srv.start()
        client = srv.client()
        client.put("rs/key", "v0")
        fleet = Fleet(srv.url("rs"), base)
        fleet.grow(n)
        fleet.wait_connected()
        harness.wait_until(lambda: all(harness.read_file(m.path("key")) == b"v0"
                                       for m in fleet.mounts), 30, what="v0 everywhere")
        poller = Poller(fleet, "key")
        try:
            sampler = MetricsSampler(srv.endpoint)
            sampler.start()
            time.sleep(2)                         # the at-rest window before the stop
            before = [s for s in sampler.samples if s[1] is not None]
            rest_rate = (before[-1][1] - before[0][1]) / (before[-1][0] - before[0][0])
            srv.stop(keep_data=True)              # SIGTERM, waits for it to exit
            time.sleep(3)                         # the outage, part of the scenario
            t_spawn = time.monotonic()
            srv.start()
            t_ready = time.monotonic()
            client.put("rs/key", "after")
            t_put = time.monotonic()
            seen = poller.wait_all(b"after", t_spawn, timeout=60)
            t_all = t_spawn + max(seen)
            # Keep sampling: mounts still in their backoff reconnect later (<= 5 s).
            while time.monotonic() < max(t_all + 2, t_spawn + 8):
                time.sleep(0.1)
            sampler.stop.set()
            sampler.join(5)
            epid = srv.proc.pid
            etcd_cpu = cpu_seconds(epid)
            t_end = time.monotonic()
        finally:
            poller.close()
        after = [s for s in sampler.samples if s[0] > t_spawn and s[1] is not None]
        total = after[-1][1] if after else 0
        by = after[-1][2] if after else {}
        mounts_ms = sorted(x * 1000 for x in seen)
        res = {
            "n": n, "outage_s": 3,
            "etcd_ready_s": t_ready - t_spawn,
            "put_after_restart_ms": (t_put - t_ready) * 1000,
            "all_current_s": t_all - t_spawn,
            "all_current_after_put_s": t_all - t_put,
            "mount_current_s_p50": med(mounts_ms) / 1000,
            "peak_rps_100ms": rates(sampler.samples, t_spawn, 0.1),
            "peak_rps_1s": rates(sampler.samples, t_spawn, 1.0),
            "rest_rps": rest_rate,
            "window_s": t_end - t_spawn,
            "requests_in_window": total,
            "requests_per_mount": total / n,
            "requests_by_method": {m: c for m, c in by.items() if c},
            "etcd_cpu_s_in_window": etcd_cpu,
            "alive": fleet.alive(),
        }
    finally:
        if sampler:
            sampler.stop.set()
        if fleet:
            fleet.close()
        srv.close()
    progress("restart N=%d: all current %.2f s after the restart" % (n, res["all_current_s"]))
    methods = ", ".join("%s %d" % kv for kv in sorted(by.items()) if kv[1])
    table("Store restart: %d mounts of one etcd, SIGTERM, 3 s down, started again; counters "
          "from etcd's grpc_server_started_total (JSON-gateway requests)" % n,
          ("N", "etcd ready", "all mounts current", "after the put", "median mount",
           "peak req/s (100 ms)", "peak req/s (1 s)", "at rest req/s", "requests / mount",
           "etcd CPU", "by method"),
          [(n, "%.2f s" % res["etcd_ready_s"], "%.2f s" % res["all_current_s"],
            "%.2f s" % res["all_current_after_put_s"], "%.2f s" % res["mount_current_s_p50"],
            "%.0f" % res["peak_rps_100ms"], "%.0f" % res["peak_rps_1s"],
            "%.0f" % res["rest_rps"],
            "%.1f in %.0f s" % (res["requests_per_mount"], res["window_s"]),
            "%.2f s" % res["etcd_cpu_s_in_window"], methods)])
    return res


# ---------------------------------------------------------------- part 3: large trees

def key_value(prefix, i):
    """The keys and values of bench.load_keys (500 directories, ~100 B values)."""
    return "%s/d%03d/key-%06d" % (prefix, i % 500, i), "value-%06d-" % i + "x" * 88


def load_parallel(make_client, prefix, n, batch, threads=4):
    """bench.load_keys's tree, written by `threads` writers in transactions of
    `batch` keys; returns (bytes of names below the prefix and values, s)."""
    local = threading.local()

    def one(b):
        if not hasattr(local, "client"):
            local.client = make_client()
        items = [key_value(prefix, i) for i in range(b * batch, min(n, (b + 1) * batch))]
        local.client.txn_put_many(items)

    t = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as ex:
        list(ex.map(one, range((n + batch - 1) // batch)))
    payload = sum(len(k) - len(prefix) - 1 + len(v)
                  for k, v in (key_value(prefix, i) for i in range(n)))
    return payload, time.perf_counter() - t


def timed_run(cmd):
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def part_trees(args, base):
    sizes = [20000] if args.quick else [100000]
    if args.million:
        sizes.append(1000000)
    rows = []
    srv = harness.EtcdServer(extra_args=["--quota-backend-bytes", str(8 << 30)])
    try:
        srv.start()
        client = srv.client()
        client.put("empty/x", "x")
        with harness.CfgfsMount(base_dir=base) as m:
            m.mount(srv.url("empty"), foreground=False)
            empty_rss = rss_kib(m.pid)
        for n in sizes:
            prefix = "t%d" % n
            payload, load_s = load_parallel(srv.client, prefix, n, 128)
            progress("trees: %d keys loaded in %.1f s" % (n, load_s))
            times, rss, hwm, walks = [], [], [], {}
            for run in range(3):
                with harness.CfgfsMount(base_dir=base) as m:
                    t = time.perf_counter()
                    m.mount(srv.url(prefix), foreground=False, timeout=900)
                    times.append(time.perf_counter() - t)
                    rss.append(rss_kib(m.pid))
                    hwm.append(status_kib(m.pid, "VmHWM"))
                    # Run 0: ls -lR cold (fresh mount), then warm; run 1: find, same.
                    cmd = (["ls", "-lR", m.mountpoint], ["find", m.mountpoint], None)[run]
                    if cmd:
                        walks[cmd[0] + " cold"] = timed_run(cmd)
                        walks[cmd[0] + " warm"] = timed_run(cmd)
                        walks["rss after " + cmd[0]] = rss_kib(m.pid)
            per_key = (med(rss) - empty_rss) * 1024.0 / n
            row = {"keys": n, "load_s": load_s, "mount_s_median": med(times),
                   "mount_s": times, "rss_mib": med(rss) / 1024.0, "hwm_mib": max(hwm) / 1024.0,
                   "empty_rss_mib": empty_rss / 1024.0, "rss_per_key_b": per_key,
                   "key_value_b": payload / n, "over_key_value_b": per_key - payload / n,
                   "ls_lR_cold_s": walks["ls cold"], "ls_lR_warm_s": walks["ls warm"],
                   "find_cold_s": walks["find cold"], "find_warm_s": walks["find warm"],
                   "rss_after_ls_mib": walks["rss after ls"] / 1024.0}
            rows.append(row)
            progress("trees: %d keys mount in %.2f s" % (n, row["mount_s_median"]))
            if n != sizes[-1]:     # room for the next size (etcd stops after the last)
                client.delete_prefix(prefix + "/")
    finally:
        srv.close()
    table("Large trees (etcd): mount = `cfgfs URL MNT` until it returns (loaded), median of 3",
          ("keys", "load (4 writers)", "mount", "RSS", "peak RSS", "per key over empty",
           "key+value", "ls -lR cold / warm", "find cold / warm"),
          [("%dk" % (r["keys"] // 1000), "%.1f s" % r["load_s"], "%.2f s" % r["mount_s_median"],
            "%.0f MiB" % r["rss_mib"], "%.0f MiB" % r["hwm_mib"], "%.0f B" % r["rss_per_key_b"],
            "%.0f B (+%.0f)" % (r["key_value_b"], r["over_key_value_b"]),
            "%.2f / %.2f s" % (r["ls_lR_cold_s"], r["ls_lR_warm_s"]),
            "%.2f / %.2f s" % (r["find_cold_s"], r["find_warm_s"])) for r in rows])
    return rows


# ---------------------------------------------------------------- part 4: Consul tree sizes

def part_consul(args, base):
    sizes = [1000, 10000] if args.quick else [1000, 10000, 100000]
    k = args.changes or (10 if args.quick else 30)
    rows = []
    srv = ScaleConsul()
    try:
        srv.start()
        spid = srv.proc.pid
        for n in sizes:
            prefix = "c%d" % n
            _, load_s = load_parallel(srv.client, prefix, n, 64)
            client = srv.client()
            client.put(prefix + "/latency", "v0")
            # From 20k keys cfgfs finds a change by shard; the same tree read by
            # whole listings (as below 20k) runs beside it for comparison, first,
            # so that what Consul still does after the load is not charged to
            # the shards.
            variants = [("", None)]
            if n >= 20000:
                variants.insert(0, (" whole", {"CFGFS_TEST_CONSUL_SHARDS": "1000000000:1"}))
            for label, env in variants:
                fleet = Fleet(srv.url(prefix), base)
                try:
                    settle(spid)
                    mount_s = fleet.grow(1, env=env)
                    fleet.wait_connected()
                    pid = fleet.pids[0]
                    c0 = cpu_seconds(pid)
                    time.sleep(IDLE_SECONDS)   # the measurement window itself
                    idle = cpu_seconds(pid) - c0
                    poller = Poller(fleet, "latency")
                    try:
                        c0, s0, t0 = cpu_seconds(pid), cpu_seconds(spid), time.monotonic()
                        last, _ = changes(client, prefix + "/latency", poller, k, "c")
                        c1, s1, t1 = cpu_seconds(pid), cpu_seconds(spid), time.monotonic()
                    finally:
                        poller.close()
                    rows.append({"keys": n, "variant": label.strip() or "default",
                                 "label": "%dk%s" % (n // 1000, label), "changes": k,
                                 "load_s": load_s, "mount_s": mount_s,
                                 "p50_ms": pct(last, 50), "p99_ms": pct(last, 99),
                                 "cfgfs_cpu_per_change_ms": (c1 - c0) / k * 1000,
                                 "consul_cpu_per_change_ms": (s1 - s0) / k * 1000,
                                 "window_s": t1 - t0,
                                 "cfgfs_idle_cpu_ms": idle * 1000,
                                 "cfgfs_rss_mib": rss_kib(pid) / 1024.0,
                                 "consul_rss_mib": rss_kib(spid) / 1024.0})
                    progress("consul %s keys: p50 %.1f ms, p99 %.1f ms" % (
                        rows[-1]["label"], rows[-1]["p50_ms"], rows[-1]["p99_ms"]))
                finally:
                    fleet.close()
    finally:
        srv.close()
    table("Consul by tree size: one mount, %d changes of one key under the prefix; CPU is "
          "utime+stime over the changes (pauses of %.0f ms included) / changes" % (k, GAP * 1000),
          ("keys", "mount", "p50 ms", "p99 ms", "cfgfs CPU/change", "Consul CPU/change",
           "cfgfs idle CPU/5 s", "cfgfs RSS", "Consul RSS"),
          [(r["label"], "%.2f s" % r["mount_s"], "%.1f" % r["p50_ms"],
            "%.1f" % r["p99_ms"], "%.1f ms" % r["cfgfs_cpu_per_change_ms"],
            "%.1f ms" % r["consul_cpu_per_change_ms"], "%.0f ms" % r["cfgfs_idle_cpu_ms"],
            "%.0f MiB" % r["cfgfs_rss_mib"], "%.0f MiB" % r["consul_rss_mib"]) for r in rows])
    return rows


# ---------------------------------------------------------------- part 5: Consul agents

def part_agent(args, base):
    """N mounts through one Consul client agent next to N mounts on the
    server itself, changes timed on both in the same run: the price of the
    agent-per-host model (each host's cfgfs talks to its local agent, which
    holds the one connection to the servers)."""
    ns = args.n or ([1] if args.quick else [1, 10])
    k = args.changes or (10 if args.quick else 30)
    rows = []
    srv = ScaleConsul()
    agent = None
    try:
        srv.start()
        agent = ScaleConsulAgent(srv)
        agent.start()
        client = srv.client()
        client.put("ag/key", "v0")
        for n in ns:
            fleets = {"server": Fleet(srv.url("ag"), base), "agent": Fleet(agent.url("ag"), base)}
            try:
                for f in fleets.values():
                    f.grow(n)
                    f.wait_connected()
                both = Fleet(None, base)
                both.mounts = fleets["server"].mounts + fleets["agent"].mounts
                poller = Poller(both, "key")
                try:
                    seen = {w: [] for w in fleets}
                    for i in range(k):
                        want = ("a%d-%d" % (n, i)).encode()
                        client.put("ag/key", want)
                        lat = poller.wait_all(want, time.monotonic())
                        seen["server"].append(max(lat[:n]) * 1000)
                        seen["agent"].append(max(lat[n:]) * 1000)
                        time.sleep(GAP)   # pacing, not synchronization
                finally:
                    poller.close()
                for w in fleets:
                    rows.append({"via": w, "n": n, "changes": k, "p50_ms": pct(seen[w], 50),
                                 "p99_ms": pct(seen[w], 99)})
                    progress("agent N=%d via %s: p50 %.1f ms, p99 %.1f ms"
                             % (n, w, rows[-1]["p50_ms"], rows[-1]["p99_ms"]))
            finally:
                for f in fleets.values():
                    f.close()
    finally:
        if agent:
            agent.close()
        srv.close()
    table("Consul through a client agent: N mounts on the agent and N on the server, the "
          "same %d changes written to the server; the last mount of each group counts" % k,
          ("N", "via", "p50 ms", "p99 ms"),
          [(r["n"], r["via"], "%.1f" % r["p50_ms"], "%.1f" % r["p99_ms"]) for r in rows])
    return rows


# ---------------------------------------------------------------- output

def progress(msg):
    sys.stderr.write("scale: %s\n" % msg)
    sys.stderr.flush()


def table(title, head, rows):
    cells = [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(c[i]) for c in cells + [head]) for i in range(len(head))]
    print()
    print(title)
    print()
    print("| " + " | ".join("%-*s" % (w, h) for w, h in zip(widths, head)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for c in cells:
        print("| " + " | ".join("%-*s" % (w, x) for w, x in zip(widths, c)) + " |")
    sys.stdout.flush()


# ---------------------------------------------------------------- part 6: the cache file

def part_cache(args, base):
    """Change -> readable while -o cache_file saves a large tree (a save
    follows a change by 0.5 s, at most one every 2 s): without a cache
    file, saved by a child process (cfgfs's way), and saved by copying the
    tree in the process (CFGFS_TEST_CACHE_SAVE=here, what it did before),
    side by side on one etcd."""
    n = 1000000 if args.million else (20000 if args.quick else 100000)
    k = args.changes or (30 if args.quick else 100)
    rows = []
    srv = harness.EtcdServer(extra_args=["--quota-backend-bytes", str(8 << 30)])
    try:
        srv.start()
        prefix = "k%d" % n
        _, load_s = load_parallel(srv.client, prefix, n, 128)
        progress("cache: %d keys loaded in %.1f s" % (n, load_s))
        client = srv.client()
        client.put(prefix + "/latency", "v0")
        variants = (("no cache file", False, None), ("saved by a child", True, None),
                    ("saved in the process", True, {"CFGFS_TEST_CACHE_SAVE": "here"}))
        for label, cached, env in variants:
            fleet = Fleet(srv.url(prefix), base)
            cache = os.path.join(base, "tree-%d.cache" % len(rows))
            try:
                fleet.grow(1, opts=("-o", "cache_file=" + cache) if cached else (), env=env)
                fleet.wait_connected()
                pid = fleet.pids[0]
                saves, mtime = 0, None
                poller = Poller(fleet, "latency")
                try:
                    last = []
                    for i in range(k):
                        want = ("s-%d" % i).encode()
                        client.put(prefix + "/latency", want)
                        acked = time.monotonic()
                        last.append(max(poller.wait_all(want, acked)) * 1000)
                        if cached and os.path.exists(cache):
                            m = os.stat(cache).st_mtime_ns
                            saves += m != mtime
                            mtime = m
                        time.sleep(0.05)   # pacing, not synchronization
                finally:
                    poller.close()
                rows.append({"variant": label, "keys": n, "changes": k,
                             "p50_ms": pct(last, 50), "p99_ms": pct(last, 99),
                             "max_ms": max(last), "saves_seen": saves,
                             "rss_mib": rss_kib(pid) / 1024.0,
                             "hwm_mib": status_kib(pid, "VmHWM") / 1024.0})
                progress("cache, %s: p99 %.1f ms" % (label, rows[-1]["p99_ms"]))
            finally:
                fleet.close()
    finally:
        srv.close()
    table("Cache file (etcd, %dk keys): one mount, %d changes of one key, 50 ms apart; "
          "saves seen = times the file was found replaced between changes" % (n // 1000, k),
          ("cache file", "p50 ms", "p99 ms", "max ms", "saves seen", "RSS", "peak RSS"),
          [(r["variant"], "%.1f" % r["p50_ms"], "%.1f" % r["p99_ms"], "%.1f" % r["max_ms"],
            "%d" % r["saves_seen"], "%.0f MiB" % r["rss_mib"], "%.0f MiB" % r["hwm_mib"])
           for r in rows])
    return rows


def remove_base(base):
    """Remove the mount points' dir, unless something is still mounted
    below it (removing files there would delete keys)."""
    if any(e[1].startswith(base + "/") for e in harness.mount_entries()):
        sys.stderr.write("scale: %s still has mounts below it; left in place\n" % base)
    else:
        shutil.rmtree(base, ignore_errors=True)


def machine():
    return {"date": time.strftime("%Y-%m-%d %H:%M"), "host": platform.node(),
            "cpus": os.cpu_count(), "cpu": cpu_model(), "kernel": platform.release(),
            "cfgfs": harness.cfgfs_binary()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="N = 1, 10; 10 changes; 20k keys; Consul 1k and 10k keys")
    ap.add_argument("--only", choices=("fanout", "restart", "trees", "consul", "agent", "cache"))
    ap.add_argument("--million", action="store_true",
                    help="trees: 1M keys as well; cache: 1M keys instead of 100k")
    ap.add_argument("--json", metavar="PATH", help="write the results there as JSON")
    ap.add_argument("--n", type=lambda s: [int(x) for x in s.split(",")],
                    help="fan-out mount counts, e.g. 1,10,50 (restart: the last one)")
    ap.add_argument("--store", action="append", choices=("etcd", "consul"),
                    help="fanout: only this store (repeatable)")
    ap.add_argument("--mount-opt", action="append", default=[], metavar="OPT",
                    help="an -o option for every mount, e.g. check_interval=0")
    ap.add_argument("--changes", type=int, help="changes per measurement (K)")
    args = ap.parse_args()
    Fleet.opts = tuple(a for o in args.mount_opt for a in ("-o", o))

    if not os.access(harness.cfgfs_binary(), os.X_OK):
        sys.exit("scale: %s is not built (make, or set CFGFS)" % harness.cfgfs_binary())
    reason = harness.fuse_unusable_reason()
    if reason:
        sys.exit("scale: FUSE unusable: %s" % reason)
    nofile = raise_nofile()
    results = {"machine": machine(), "args": vars(args), "nofile": nofile}
    info = results["machine"]
    print("cfgfs scale benchmark, %s: %s, %d CPUs (%s), kernel %s%s" % (
        info["date"], info["host"], info["cpus"], info["cpu"], info["kernel"],
        ", quick" if args.quick else ""))
    base = tempfile.mkdtemp(prefix="cfgfs-scale-", dir=harness.mount_base_dir())
    # After the harness's own hooks (mounts first): also on SIGTERM/SIGHUP.
    harness.cleanup_hooks.append(lambda: remove_base(base))
    parts = (("fanout", part_fanout), ("restart", part_restart), ("trees", part_trees),
             ("consul", part_consul), ("agent", part_agent), ("cache", part_cache))
    try:
        for name, fn in parts:
            if args.only in (None, name):
                t = time.monotonic()
                results[name] = fn(args, base)
                results.setdefault("seconds", {})[name] = time.monotonic() - t
                if args.json:   # after each part: a failure later keeps what was measured
                    with open(args.json, "w") as f:
                        json.dump(results, f, indent=1)
    finally:
        harness.cleanup_all()
    print()
    print("took " + ", ".join("%s %.0f s" % kv for kv in results.get("seconds", {}).items()))


if __name__ == "__main__":
    main()

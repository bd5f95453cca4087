#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The cfgfs benchmark: every figure measured side by side with its reference
in the same run, reported as medians and ratios (these machines are shared
and noisy; single absolute times mean little).

    python3 tests/bench/bench.py [--quick]

It starts and stops its own etcd on loopback and cleans up after itself.
"""
import argparse
import base64
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness  # noqa: E402

READBENCH = os.path.join(HERE, "readbench")


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def readbench(mode, path, n):
    out = subprocess.run([READBENCH, mode, path, str(n)], check=True, capture_output=True,
                         text=True).stdout
    return float(out)


def side_by_side(mode, ours, ref, n, rounds):
    """Alternate runs on our file and the reference so that machine noise
    hits both alike; return the medians (ns/op)."""
    a, b = [], []
    for _ in range(rounds):
        a.append(readbench(mode, ours, n))
        b.append(readbench(mode, ref, n))
    return statistics.median(a), statistics.median(b)


class WatchTimer(threading.Thread):
    """etcd's own watch latency, the floor for ours: a raw /v3/watch stream
    that records when each revision's event arrives."""

    def __init__(self, endpoint, prefix):
        super().__init__(daemon=True)
        key = prefix.encode()
        end = key[:-1] + bytes([key[-1] + 1])
        body = json.dumps({"create_request": {
            "key": base64.b64encode(key).decode(),
            "range_end": base64.b64encode(end).decode()}}).encode()
        self.req = urllib.request.Request("http://%s/v3/watch" % endpoint, data=body,
                                          method="POST")
        self.seen = {}
        self.ready = threading.Event()

    def run(self):
        with urllib.request.urlopen(self.req) as resp:
            self.ready.set()
            for line in resp:
                t = time.monotonic()
                res = json.loads(line).get("result", {})
                for ev in res.get("events", []):
                    self.seen[int(ev["kv"]["mod_revision"])] = t


def bench_propagation(srv, mnt, prefix, changes):
    client = srv.client()
    key = prefix + "/latency"
    client.put(key, "v0")
    path = mnt.path("latency")
    harness.wait_until(lambda: os.path.exists(path), 5, what="latency key in the mount")
    fd = os.open(path, os.O_RDONLY)
    watch = WatchTimer(srv.endpoint, prefix + "/")
    watch.start()
    watch.ready.wait(5)
    ours, floor = [], []
    try:
        for i in range(1, changes + 1):
            want = ("v%d" % i).encode()
            rev = client.put(key, want)
            acked = time.monotonic()
            deadline = acked + 5
            while os.pread(fd, 64, 0) != want:
                if time.monotonic() > deadline:
                    raise RuntimeError("change %d never reached the mount" % i)
            ours.append((time.monotonic() - acked) * 1000)
            harness.wait_until(lambda: rev in watch.seen, 5, what="etcd watch event")
            floor.append((watch.seen[rev] - acked) * 1000)
            time.sleep(0.01)  # pacing, so each change is measured on its own
    finally:
        os.close(fd)
    return ours, floor


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer iterations")
    args = ap.parse_args()
    n = 20000 if args.quick else 100000
    rounds = 3 if args.quick else 7
    changes = 40

    if not os.access(READBENCH, os.X_OK):
        sys.exit("bench: %s is not built (make tests/bench/readbench)" % READBENCH)
    rows = []
    shm = tempfile.mkdtemp(prefix="cfgfs-bench-", dir="/dev/shm")
    try:
        with harness.EtcdServer() as srv:
            prefix = "bench"
            client = srv.client()
            value = b"x" * 4000 + b"\n"
            client.put(prefix + "/small.conf", value)
            mnt = harness.CfgfsMount()
            try:
                mnt.mount(srv.url(prefix), foreground=False)
                ours = mnt.path("small.conf")
                ref = os.path.join(shm, "small.conf")
                with open(ref, "wb") as f:
                    f.write(value)
                for mode, label, target in (
                        ("orc", "open+read+close, 4 KiB, warm", 1.5),
                        ("stat", "stat, warm", 1.3),
                        ("pread", "pread 4 KiB on an open fd", 1.1)):
                    a, b = side_by_side(mode, ours, ref, n, rounds)
                    rows.append((label, "%.2f us" % (a / 1000), "tmpfs %.2f us" % (b / 1000),
                                 "%.2fx" % (a / b), "<= %.1fx" % target))
                lat, floor = bench_propagation(srv, mnt, prefix, changes)
                rows.append(("etcd write acked -> bytes readable (%d changes)" % changes,
                             "p50 %.2f ms, p99 %.2f ms" % (pct(lat, 50), pct(lat, 99)),
                             "etcd watch p50 %.2f ms, p99 %.2f ms"
                             % (pct(floor, 50), pct(floor, 99)),
                             "-",
                             "p99 <= 25 ms"))
            finally:
                mnt.close()
    finally:
        shutil.rmtree(shm, ignore_errors=True)

    print("cfgfs benchmark, %s, %s, %d CPUs, kernel %s" % (
        time.strftime("%Y-%m-%d"), platform.node(), os.cpu_count(), platform.release()))
    print()
    head = ("figure", "cfgfs", "reference", "ratio", "target")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    line = "| " + " | ".join("%-*s" % (w, h) for w, h in zip(widths, head)) + " |"
    print(line)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join("%-*s" % (w, c) for w, c in zip(widths, r)) + " |")


if __name__ == "__main__":
    main()

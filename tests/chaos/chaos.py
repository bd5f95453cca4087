#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The chaos run: cfgfs under faults, with everything it promises checked.

    make chaos [CHAOS_SECONDS=180] [CHAOS_STORES="etcd consul"] [CHAOS_ARGS="--seed 7"]
    python3 tests/chaos/chaos.py --store etcd|consul [--seconds N] [--seed S]

One mount of the prefix "chaos" while, for --seconds:

  faults   etcd: a 3-member cluster on loopback (heartbeat 50 ms, election
           500 ms). At random, a member is killed (SIGKILL) and started again,
           hung (SIGSTOP for 1-6 s, then SIGCONT), or the store is compacted
           at a revision the history recorder already has. At most one member
           is down at a time and the next fault waits until all three agree
           on a leader again, so the cluster always keeps its quorum (2 of 3).
           The target is the member cfgfs uses (user.cfgfs.endpoint), the
           leader, or a random one. Consul: the one agent the harness runs
           (server mode, data on disk) is restarted (SIGTERM, start), killed
           (SIGKILL, start) or hung (SIGSTOP 1-6 s); its data dir is kept, so
           a restart loses nothing but the agent's connections and its
           leadership (an election, 1-2 s). The schedule (kinds, targets'
           rule, durations, pauses) comes from --seed alone; compaction
           revisions and which member "the one cfgfs uses" is depend on timing.
  (a)      a remote writer commits transactions that rewrite 2-5 of the 20
           files r/f00..r/f19 with "G|L|fII|mMASK|x...x|G" (generation G at
           head and tail, L the length, II the file, MASK the files of the
           transaction; 40-4000 bytes), guarded by the key r/gen (compare its
           value, Consul: cas on its index) so that a retried transaction is
           applied at most once; a generation counts as committed only once
           the store said so (the answer, or reading r/gen back).
  (b)      tests/chaos/chaos_reader: threads reading the 20 files through
           held descriptors (pread) and open/read/close; every read must be
           one whole value of that file (corrupt otherwise), and must not be
           older than a generation the same thread already saw on another
           file of that transaction (torn otherwise; see chaos_reader.c for
           why this is sound although reads of different files are not atomic).
  (c)      local savers, one file each under l/: write+fsync of an existing
           file (l/aN), or write a temporary file and rename it over the key
           (l/bN). Each save is "acknowledged" (fsync or rename returned 0),
           "failed" (another errno: nothing may reach the store) or "unknown"
           (ETIMEDOUT: it may have). After each result the saver reads the key
           from the store (not the mount): an acknowledged save must be there.

At the end (faults stopped, every member up and healthy, the savers ending
with an acknowledged save): the mount's files (those not local to this host,
user.cfgfs.state) equal the store's keys, names and bytes; etcd: a recorder
followed the whole history with a watch (compactions never pass what it
has), so every acknowledged save is in the store's history exactly once, in
order, no failed one is, no key was ever deleted, and every committed
generation is exactly one revision holding exactly its files' values;
Consul keeps no history: there each result is checked by reading the key
back right after it, and the final values. The daemon stayed alive, its log
has no sanitizer or assertion lines, its resident memory (sampled every
second) stayed under --max-rss-mb, reads of the mount during every outage
answered within 2 s. Exit status 0 only if all of that held.
"""

import argparse
import errno
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness  # noqa: E402
from harness import b64, compare, consul_op, op_put, prefix_end, unb64  # noqa: E402

PREFIX = "chaos"
NFILES = 20
META = PREFIX + "/r/gen"
UNKNOWN_ERRNOS = {errno.ETIMEDOUT}
OUTAGE_READ_LIMIT = 2.0      # seconds a read of the mount may take during an outage
T0 = time.monotonic()


def log(msg):
    sys.stdout.write("[%7.2f] %s\n" % (time.monotonic() - T0, msg))
    sys.stdout.flush()


def remote_key(i):
    return "%s/r/f%02d" % (PREFIX, i)


def remote_value(gen, idx, mask, length):
    head, tail = "%d|%d|f%02d|m%05x|" % (gen, length, idx, mask), "|%d" % gen
    length = max(length, len(head) + len(tail))
    head = "%d|%d|f%02d|m%05x|" % (gen, length, idx, mask)
    return (head + "x" * (length - len(head) - len(tail)) + tail).encode()


def parse_remote(b):
    """(gen, idx, mask) of a whole remote value, or None."""
    m = re.match(rb"(\d+)\|(\d+)\|f(\d\d)\|m([0-9a-f]+)\|", b)
    if not m or int(m.group(2)) != len(b) or not b.endswith(b"|" + m.group(1)):
        return None
    return int(m.group(1)), int(m.group(3)), int(m.group(4), 16)


class Violations:
    def __init__(self):
        self.lock = threading.Lock()
        self.items = []

    def add(self, msg):
        with self.lock:
            self.items.append(msg)
        log("VIOLATION: " + msg)


V = Violations()
STOP = threading.Event()          # the run is over: threads finish what they do


# ---------------------------------------------------------------------------
# The store side: etcd cluster or Consul agent
# ---------------------------------------------------------------------------


class Side:
    """What the run does to and asks of the store."""

    def call(self, fn, timeout=60.0, what="a store request"):
        """fn(client) through any member that answers, retried until timeout
        (only for requests that may be repeated: reads)."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            for c in self.clients():
                try:
                    return fn(c)
                except (harness.StoreError, OSError, ValueError) as e:
                    last = e
            if time.monotonic() > deadline:
                raise AssertionError("%s failed for %.0f s: %s" % (what, timeout, last))
            time.sleep(0.05)      # retry pacing

    def get(self, key, timeout=60.0):
        return self.call(lambda c: c.get(key), timeout, "get %s" % key)

    def snapshot(self):
        return self.call(lambda c: c.range_prefix_kvs(PREFIX + "/"), 60, "range of the prefix")


class EtcdSide(Side):
    kind = "etcd"
    history = True

    def __init__(self):
        self.cluster = harness.EtcdCluster(size=3)
        self.rr = 0

    def start(self):
        self.cluster.start()

    def close(self):
        for m in self.cluster.members:
            m.resume()
        self.cluster.close()

    def url(self):
        return self.cluster.url(PREFIX)

    def logs(self):
        return [(m.name, m.log_path) for m in self.cluster.members if m.tmpdir]

    def clients(self):
        ups = [m for m in self.cluster.members if m.up]
        self.rr += 1
        if ups:
            k = self.rr % len(ups)
            ups = ups[k:] + ups[:k]
        return [m.client(timeout=2.0) for m in ups]

    def healthy(self, timeout=60.0):
        self.cluster.start(timeout)      # every member back, and a leader all agree on
        return True

    def commit_remote(self, client, gen, state, puts):
        """One guarded transaction; the revision, or None if the guard failed."""
        prev = state[0]
        out = client.txn(compare=[compare(META, "VALUE", str(prev).encode())],
                         success=[op_put(META, str(gen))] + [op_put(k, v) for k, v in puts])
        if out.get("succeeded"):
            return int(out["header"]["revision"])
        return None


class InfoConsul(harness.ConsulServer):
    """The harness's Consul, logging at level info (raft's restores and
    elections show in its log)."""

    def _args(self):
        args = super()._args()
        i = args.index("-log-level")
        args[i + 1] = "info"
        return args


class ConsulSide(Side):
    kind = "consul"
    history = False

    def __init__(self):
        self.server = InfoConsul()
        self.paused = False
        self.ready = False       # started and answering (start() returned)

    # Reads of the harness's own are ?consistent: right after a restart, Consul 1.8
    # answers default-mode reads from a state older than what it acknowledged
    # before (its log not replayed yet; tests/chaos/consul_stale_reads.py).
    @staticmethod
    def _get(c, key):
        status, _, raw = c.request("GET", "/v1/kv/" + urllib.parse.quote(
            key.decode() if isinstance(key, bytes) else key, safe="/"), query="consistent",
            ok=(200, 404))
        return c._kv(json.loads(raw)[0]) if status == 200 else None

    def get(self, key, timeout=60.0):
        return self.call(lambda c: self._get(c, key), timeout, "get %s" % key)

    def snapshot(self):
        def rng(c):
            status, hdrs, raw = c.request("GET", "/v1/kv/%s/" % PREFIX,
                                          query="recurse&consistent", ok=(200, 404))
            kvs = json.loads(raw) if status == 200 else []
            return c._index(hdrs), {kv["Key"].encode(): c._kv(kv) for kv in kvs}
        return self.call(rng, 60, "range of the prefix")

    def state(self):
        """(the KV index, r/gen) read straight from the agent."""
        def st(c):
            _, hdrs, _ = c.request("GET", "/v1/kv/_cfgfs_harness/no-such-key",
                                   query="consistent", ok=(404,))
            kv = self._get(c, META)
            return c._index(hdrs), int(kv["value"]) if kv else None
        return self.call(st, 60, "the agent's state")

    def start_agent(self):
        self.server.start()
        self.ready = True

    def down(self):
        self.ready = False

    def check_durable(self, before, what):
        """After a restart: the agent must hold at least what it acknowledged."""
        after = self.state()
        log("%s: before (index %d, r/gen %s), after (index %d, r/gen %s)"
            % (what, before[0], before[1], after[0], after[1]))
        if after[1] < before[1] or after[0] < before[0]:
            V.add("Consul lost acknowledged writes across %s: index %d -> %d, r/gen %d -> %d "
                  "(read straight from the agent, not through cfgfs)"
                  % (what, before[0], after[0], before[1], after[1]))

    def start(self):
        self.start_agent()

    def close(self):
        self.resume()
        self.server.close()

    def resume(self):
        if self.paused and self.server.proc is not None:
            self.server.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def url(self):
        return self.server.url(PREFIX)

    def logs(self):
        return [("consul", self.server.log_path)] if self.server.tmpdir else []

    def clients(self):
        if not self.server.running or self.paused or not self.ready:
            return []
        return [self.server.client(timeout=2.0)]

    def healthy(self, timeout=60.0):
        self.resume()
        if not self.server.running:
            self.server.start(timeout)
        self.ready = True
        return True

    def commit_remote(self, client, gen, state, puts):
        prev, index = state
        status, out = client.txn([consul_op("cas", META, str(gen), index=index)]
                                 + [consul_op("set", k, v) for k, v in puts], ok=(200, 409))
        if status == 200:
            return int(out["Results"][0]["KV"]["ModifyIndex"])
        return None


# ---------------------------------------------------------------------------
# (a) the remote writer
# ---------------------------------------------------------------------------


class RemoteWriter(threading.Thread):
    def __init__(self, side, rnd, gen0, meta_index, pace):
        super().__init__(daemon=True, name="remote-writer")
        self.side, self.rnd, self.pace = side, rnd, pace
        self.gen = gen0
        self.state = (gen0, meta_index)
        self.committed = {}       # gen -> (revision, {key: crc32 of value})
        self.last_values = {}     # key -> value of the newest committed gen that wrote it
        self.retries = 0
        self.readbacks = 0
        self.failed = None

    def run(self):
        try:
            while not STOP.is_set():
                self.commit_one()
                time.sleep(self.pace)      # a transaction every pace seconds at most (rate)
        except Exception as e:   # the run fails, visibly
            self.failed = "remote writer: %r" % (e,)
            V.add(self.failed)

    def commit_one(self):
        gen = self.gen + 1
        idxs = self.rnd.sample(range(NFILES), self.rnd.randint(2, 5))
        mask = sum(1 << i for i in idxs)
        puts = [(remote_key(i), remote_value(gen, i, mask, self.rnd.randint(40, 4000)))
                for i in idxs]
        deadline = time.monotonic() + 120
        while True:
            rev = None
            try:
                cs = self.side.clients()
                if cs:
                    rev = self.side.commit_remote(cs[0], gen, self.state, puts)
            except (harness.StoreError, OSError, ValueError):
                pass      # fate unknown: read the guard back
            if rev is None:
                self.readbacks += 1
                kv = self.side.get(META, timeout=max(1.0, deadline - time.monotonic()))
                v = kv["value"] if kv else None
                if v == str(gen).encode():
                    rev = kv["mod_revision"]
                elif v == str(self.state[0]).encode():
                    self.state = (self.state[0], kv["mod_revision"])
                    self.retries += 1
                    if time.monotonic() > deadline:
                        raise AssertionError("generation %d not committed within 120 s" % gen)
                    time.sleep(0.02)      # retry pacing
                    continue
                else:
                    raise AssertionError("%s holds %r, expected %d or %d"
                                         % (META, v, self.state[0], gen))
            self.committed[gen] = (rev, {k: zlib.crc32(v) for k, v in puts})
            for k, v in puts:
                self.last_values[k.encode()] = v
            self.gen, self.state = gen, (gen, rev)
            return


# ---------------------------------------------------------------------------
# (c) local savers
# ---------------------------------------------------------------------------


class Saver(threading.Thread):
    """Saves one file through the mount again and again (mode "fsync": open
    O_TRUNC, write, fsync, close; "rename": write NAME.new, rename it onto
    NAME) and checks each result against the store."""

    def __init__(self, side, mount, name, mode, rnd, initial, pace):
        super().__init__(daemon=True, name="saver-" + name)
        self.side, self.mode, self.rnd, self.pace = side, mode, rnd, pace
        self.name = name
        self.key = ("%s/l/%s" % (PREFIX, name)).encode()
        self.path = mount.path("l", name)
        self.tmp = mount.path("l", name + ".new")
        self.initial = initial
        self.attempts = []        # (value, "ack" | "failed" | "unknown", errno name or None)
        self.anomalies = []
        self.unknown_committed = 0
        self.finish = threading.Event()     # end at the next acknowledged save
        self.failed = None

    def run(self):
        try:
            seq = 0
            deadline = None
            while True:
                seq += 1
                value = ("%s|%d|%s\n" % (self.name, seq, "y" * self.rnd.randint(0, 200))).encode()
                res, err = self.save(value)
                self.attempts.append((value, res, err))
                self.check(value, res, err)
                if self.finish.is_set():
                    if res == "ack":
                        return
                    deadline = deadline or time.monotonic() + 60
                    if time.monotonic() > deadline:
                        raise AssertionError("no acknowledged save within 60 s of the end")
                time.sleep(self.pace)     # a save every pace seconds at most (rate)
        except Exception as e:
            self.failed = "saver %s: %r" % (self.name, e)
            V.add(self.failed)

    @staticmethod
    def classify(e):
        name = errno.errorcode.get(e.errno, str(e.errno))
        return ("unknown" if e.errno in UNKNOWN_ERRNOS else "failed"), name

    def save(self, value):
        if self.mode == "fsync":
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_TRUNC)
            except OSError as e:
                return "failed", errno.errorcode.get(e.errno, str(e.errno))
            res = ("ack", None)
            try:
                os.write(fd, value)
                os.fsync(fd)
            except OSError as e:
                res = self.classify(e)
            finally:
                try:
                    os.close(fd)
                except OSError as e:
                    if res[0] == "ack":
                        self.anomalies.append("close after a successful fsync of %r: %s"
                                              % (value, e))
            return res
        try:
            fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, value)
            finally:
                os.close(fd)
        except OSError as e:
            return "failed", errno.errorcode.get(e.errno, str(e.errno))
        try:
            os.rename(self.tmp, self.path)
            return "ack", None
        except OSError as e:
            res = self.classify(e)
        try:
            os.unlink(self.tmp)      # a real program cleans up its temporary file
        except OSError:
            pass
        return res

    def check(self, value, res, err):
        """Read the key from the store (not the mount). Only this thread writes
        it, and no other save of it is under way: an acknowledged save must be
        what the store holds; a failed one must not be."""
        kv = self.side.get(self.key, timeout=120)
        got = kv["value"] if kv else None
        if res == "ack" and got != value:
            V.add("acknowledged save of %s (%r) is not in the store, which holds %r"
                  % (self.name, value[:40], (got or b"")[:40]))
        elif res == "failed" and got == value:
            V.add("save of %s failed (%s) but the store has it: %r" % (self.name, err, value[:40]))
        elif res == "unknown" and got == value:
            self.unknown_committed += 1

    def counts(self):
        c = {"ack": 0, "failed": 0, "unknown": 0}
        for _, r, _ in self.attempts:
            c[r] += 1
        return c


# ---------------------------------------------------------------------------
# The history recorder (etcd): a watch of the whole prefix from the start
# ---------------------------------------------------------------------------


class Recorder(threading.Thread):
    """Follows every revision under the prefix with a watch stream, through
    any member, resuming from the next revision when a stream breaks or
    stays silent for 2 s. Keeps per event (revision, key, type, crc32 of the
    value, the value itself for l/ keys). confirmed: the newest revision
    whose events it has (compaction never goes past it)."""

    def __init__(self, side, start_rev):
        super().__init__(daemon=True, name="recorder")
        self.side = side
        self.next_rev = start_rev
        self.confirmed = start_rev - 1
        self.events = []
        self.reconnects = 0
        self.lost = None
        self.done = threading.Event()

    def run(self):
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while not self.done.is_set():
            ups = [m for m in self.side.cluster.members if m.up]
            if not ups:
                time.sleep(0.05)
                continue
            m = ups[self.reconnects % len(ups)]
            self.reconnects += 1
            body = json.dumps({"create_request": {
                "key": b64(PREFIX + "/"), "range_end": b64(prefix_end(PREFIX + "/")),
                "start_revision": str(self.next_rev)}}).encode()
            req = urllib.request.Request("http://%s/v3/watch" % m.endpoint, data=body,
                                         method="POST")
            try:
                start = self.next_rev
                with opener.open(req, timeout=2.0) as resp:
                    while not self.done.is_set():
                        line = resp.readline()
                        if not line:
                            break
                        self.take(json.loads(line), start)
                        if self.lost:
                            return
            except (OSError, ValueError, socket.timeout, http.client.HTTPException):
                # Broken (a member killed mid-chunk: IncompleteRead) or silent stream:
                # resume from next_rev elsewhere.
                pass

    def take(self, msg, start):
        """One message of a stream that started at revision start: the whole of
        each revision it carries (etcd splits a revision only when asked to)."""
        r = msg.get("result") or {}
        if r.get("canceled") or int(r.get("compact_revision") or 0):
            self.lost = "the recorder's watch was cancelled: %r" % (r,)
            V.add(self.lost)
            return
        newest = None
        for ev in r.get("events") or []:
            kv = ev.get("kv") or {}
            rev = int(kv.get("mod_revision", "0"))
            if rev < start:
                continue
            key = unb64(kv.get("key"))
            value = unb64(kv.get("value"))
            self.events.append((rev, key, ev.get("type", "PUT"), zlib.crc32(value),
                                value if b"/l/" in key else None, int(kv.get("version", "0"))))
            newest = rev if newest is None else max(newest, rev)
        if newest is not None:
            self.next_rev = newest + 1
            self.confirmed = newest


# ---------------------------------------------------------------------------
# Watching the daemon: RSS, failovers
# ---------------------------------------------------------------------------


class Monitor(threading.Thread):
    def __init__(self, mount):
        super().__init__(daemon=True, name="monitor")
        self.mount = mount
        self.max_rss_kib = 0
        self.rss_samples = 0
        self.failovers = 0
        self.disconnects = 0
        self.endpoints = set()
        self.dead = False
        self.done = threading.Event()

    def xattr(self, name):
        try:
            return os.getxattr(self.mount.mountpoint, name).decode()
        except OSError:
            return None

    def run(self):
        last_ep, last_conn, next_rss = self.xattr("user.cfgfs.endpoint"), "1", 0.0
        while not self.done.is_set():
            now = time.monotonic()
            if now >= next_rss:
                next_rss = now + 1.0
                if not self.mount.daemon_alive():
                    self.dead = True
                    V.add("the cfgfs daemon died (status %s)" % self.mount.returncode)
                    return
                try:
                    with open("/proc/%d/status" % self.mount.pid) as f:
                        for line in f:
                            if line.startswith("VmRSS:"):
                                self.max_rss_kib = max(self.max_rss_kib, int(line.split()[1]))
                                self.rss_samples += 1
                except OSError:
                    pass
            ep, conn = self.xattr("user.cfgfs.endpoint"), self.xattr("user.cfgfs.connected")
            if ep is not None:
                self.endpoints.add(ep)
                if last_ep is not None and ep != last_ep:
                    self.failovers += 1
                last_ep = ep
            if conn == "0" and last_conn == "1":
                self.disconnects += 1
            if conn is not None:
                last_conn = conn
            self.done.wait(0.1)      # sampling period


# ---------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------


class Faults(threading.Thread):
    """The fault schedule: every draw comes from Random(seed), whatever the
    timing, so a seed replays the same kinds, targets' rules and durations."""

    def __init__(self, side, mount, rnd, recorder, seconds):
        super().__init__(daemon=True, name="faults")
        self.side, self.mount, self.rnd, self.recorder = side, mount, rnd, recorder
        self.until = time.monotonic() + seconds
        self.counts = {}
        self.schedule = []
        self.max_outage_read = 0.0
        self.outage_reads = 0
        self.compact_errors = 0
        self.failed = None

    def run(self):
        try:
            while time.monotonic() < self.until and not STOP.is_set():
                gap = self.rnd.uniform(1.0, 3.0)
                kind = self.rnd.choice(self.kinds())
                rule = self.rnd.choice(["cfgfs", "leader", "random"])
                idx = self.rnd.randrange(3)
                hold = self.rnd.uniform(1.0, 6.0)
                self.outage_probe(gap)
                if time.monotonic() >= self.until or STOP.is_set():
                    break
                if self.side.kind == "consul":
                    # What the agent acknowledged so far (writes go on meanwhile: a lower bound).
                    self.last_state = self.side.state()
                self.schedule.append("%s(%s%s, %.1fs)" % (kind, rule, idx if rule == "random"
                                                          else "", hold))
                getattr(self, "do_" + kind)(rule, idx, hold)
                self.counts[kind] = self.counts.get(kind, 0) + 1
        except Exception as e:
            self.failed = "faults: %r" % (e,)
            V.add(self.failed)

    def kinds(self):
        if self.side.kind == "etcd":
            return ["kill", "stop", "stop", "kill", "compact"]
        return ["restart", "kill", "stop"]

    def outage_probe(self, seconds):
        """Wait seconds, reading one file of the mount every 0.1 s and timing it:
        reads are answered from the mirror, whatever the store does."""
        end = time.monotonic() + seconds
        while True:
            t = time.monotonic()
            try:
                with open(self.mount.path("r", "f%02d" % self.rnd_probe()), "rb") as f:
                    f.read()
            except OSError as e:
                V.add("read of the mount failed during faults: %s" % e)
            took = time.monotonic() - t
            self.outage_reads += 1
            self.max_outage_read = max(self.max_outage_read, took)
            if took > OUTAGE_READ_LIMIT:
                V.add("a read of the mount took %.2f s during faults" % took)
            if time.monotonic() >= end:
                return
            time.sleep(min(0.1, max(0.0, end - time.monotonic())))   # probe pacing

    _probe = 0

    def rnd_probe(self):
        self._probe = (self._probe + 1) % NFILES
        return self._probe

    # -- etcd --------------------------------------------------------------------
    def target(self, rule, idx):
        c = self.side.cluster
        if rule == "cfgfs":
            try:
                return c.member(os.getxattr(self.mount.mountpoint,
                                            "user.cfgfs.endpoint").decode())
            except (OSError, KeyError):
                pass
        elif rule == "leader":
            try:
                return c.leader(timeout=5)
            except AssertionError:
                pass
        return c.members[idx]

    def do_kill(self, rule, idx, hold):
        if self.side.kind == "consul":
            log("fault: kill the Consul agent (SIGKILL), start it after %.1f s" % hold)
            self.side.down()
            self.side.server.kill()
            before = self.last_state
            self.outage_probe(hold)
            self.side.start_agent()
            self.side.check_durable(before, "a kill")
            return
        m = self.target(rule, idx)
        log("fault: kill %s%s" % (m.name, " (cfgfs's member)" if rule == "cfgfs" else ""))
        m.kill()
        self.outage_probe(hold)
        m.start(60)
        self.side.cluster.wait_healthy(60)

    def do_stop(self, rule, idx, hold):
        if self.side.kind == "consul":
            log("fault: SIGSTOP the Consul agent for %.1f s" % hold)
            self.side.server.proc.send_signal(signal.SIGSTOP)
            self.side.paused = True
            try:
                self.outage_probe(hold)
            finally:
                self.side.resume()
            return
        m = self.target(rule, idx)
        log("fault: SIGSTOP %s for %.1f s" % (m.name, hold))
        m.pause()
        try:
            self.outage_probe(hold)
        finally:
            m.resume()
        self.side.cluster.wait_healthy(60)

    def do_compact(self, rule, idx, hold):
        rev = self.recorder.confirmed
        try:
            self.side.call(lambda c: c.compact(rev, physical=False), 10, "compaction")
            log("fault: compacted at revision %d" % rev)
        except AssertionError as e:
            self.compact_errors += 1
            log("compaction at %d failed: %s" % (rev, e))

    def do_restart(self, rule, idx, hold):
        log("fault: restart the Consul agent (SIGTERM, start)")
        self.side.down()
        self.side.server.stop(keep_data=True)
        before = self.last_state
        self.outage_probe(min(hold, 2.0))
        self.side.start_agent()
        self.side.check_durable(before, "a restart")


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------


def mount_view(mount):
    """{relative path: bytes} of every file of the mount that is not local
    scratch (user.cfgfs.state), and the local ones' names."""
    view, local = {}, []
    root = mount.mountpoint
    for dirpath, dirnames, filenames in os.walk(root):
        for n in filenames:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            try:
                if harness.cfgfs_state(p) == "local":
                    local.append(rel)
                    continue
                view[rel] = harness.read_file(p)
            except OSError as e:
                view[rel] = "error: %s" % e
    return view, sorted(local)


def store_view(side):
    rev, kvs = side.snapshot()
    pre = (PREFIX + "/").encode()
    return rev, {k[len(pre):].decode(): kv["value"] for k, kv in kvs.items()}


def check_history(rec, writer, savers, initial_rev):
    """etcd: every revision under the prefix since the start, from the recorder."""
    by_rev = {}
    for rev, key, typ, crc, value, version in rec.events:
        by_rev.setdefault(rev, []).append((key, typ, crc, value))
    # Remote: each committed generation is one revision with exactly its keys.
    meta_revs = {}
    for rev, evs in by_rev.items():
        for key, typ, crc, value in evs:
            if key == META.encode():
                meta_revs.setdefault(rev, 0)
                meta_revs[rev] += 1
    committed_revs = {rev: (gen, crcs) for gen, (rev, crcs) in writer.committed.items()}
    if set(meta_revs) != set(committed_revs):
        extra = sorted(set(meta_revs) - set(committed_revs))[:10]
        missing = sorted(set(committed_revs) - set(meta_revs))[:10]
        V.add("revisions writing %s: not committed by the writer %s, committed but missing %s"
              % (META, extra, missing))
    for rev, (gen, crcs) in committed_revs.items():
        got = {k.decode(): c for k, t, c, _ in by_rev.get(rev, []) if b"/r/f" in k}
        if got != crcs:
            V.add("generation %d at revision %d: the history holds %s, expected %s"
                  % (gen, rev, sorted(got), sorted(crcs)))
    stray = [(rev, k) for rev, evs in by_rev.items() for k, t, c, _ in evs
             if b"/r/" in k and rev not in committed_revs]
    if stray:
        V.add("writes under r/ that the remote writer did not commit: %r" % stray[:10])
    # Local: each key's history of values against its saver's attempts.
    for s in savers:
        hist = [(rev, t, v) for rev in sorted(by_rev) for k, t, c, v in by_rev[rev] if k == s.key]
        if any(t != "PUT" for _, t, _ in hist):
            V.add("%s was deleted in the store: %r" % (s.name, [(r, t) for r, t, _ in hist
                                                                if t != "PUT"]))
        values = [v for _, t, v in hist if t == "PUT"]
        order = {v: i for i, (v, _, _) in enumerate(s.attempts)}
        if len(set(values)) != len(values):
            dup = sorted({v for v in values if values.count(v) > 1})
            V.add("%s: values written more than once: %r" % (s.name, dup[:5]))
        foreign = [v for v in values if v not in order]
        if foreign:
            V.add("%s: values in the store that no save wrote: %r" % (s.name, foreign[:5]))
        idx = [order[v] for v in values if v in order]
        if idx != sorted(idx):
            V.add("%s: the store took saves out of order: %r" % (s.name, idx[:40]))
        in_store = set(values)
        for v, res, err in s.attempts:
            if res == "ack" and v not in in_store:
                V.add("%s: acknowledged save %r is not in the store's history" % (s.name, v[:40]))
            if res == "failed" and v in in_store:
                V.add("%s: save %r failed (%s) but is in the store's history"
                      % (s.name, v[:40], err))
        s.unknown_committed = sum(1 for v, res, _ in s.attempts
                                  if res == "unknown" and v in in_store)
        temp = [(rev, t) for rev in sorted(by_rev) for k, t, c, v in by_rev[rev]
                if k == s.key + b".new"]
        s.temp_writes = len(temp)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", choices=("etcd", "consul"), default="etcd")
    ap.add_argument("--seconds", type=float, default=180)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--readers", type=int, default=4, help="reader threads (default 4)")
    ap.add_argument("--savers", type=int, default=2, help="savers per mode (default 2)")
    ap.add_argument("--pace", type=float, default=0.01,
                    help="seconds between remote transactions (default 0.01)")
    ap.add_argument("--max-rss-mb", type=float, default=200)
    ap.add_argument("--min-reads", type=int, default=0,
                    help="fail unless at least this many reads were checked")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    reader_bin = os.environ.get("CHAOS_READER") or os.path.join(HERE, "chaos_reader")
    if not os.access(reader_bin, os.X_OK):
        sys.exit("%s is not built: make tests/chaos/chaos_reader" % reader_bin)
    reason = harness.fuse_unusable_reason()
    if reason:
        print("chaos: skipped, FUSE unusable: %s" % reason)
        sys.exit(harness.EXIT_SKIP)
    harness.install_signal_handlers()
    log("chaos run: store %s, %.0f s, seed %d (replay: --seed %d)"
        % (args.store, args.seconds, seed, seed))
    side = EtcdSide() if args.store == "etcd" else ConsulSide()
    threads = {}
    mount = None
    reader = None
    try:
        side.start()
        # Initial state: every remote file at generation 1, the guard, the local keys.
        allmask = (1 << NFILES) - 1
        init = {remote_key(i): remote_value(1, i, allmask, 40 + 10 * i) for i in range(NFILES)}
        init[META] = b"1"
        names = ["a%d" % i for i in range(args.savers)] + ["b%d" % i for i in range(args.savers)]
        for n in names:
            init["%s/l/%s" % (PREFIX, n)] = ("%s|0|initial\n" % n).encode()
        side.call(lambda c: c.txn_put_many(init), 30, "initial put")
        rev0, kvs0 = side.snapshot()
        meta_index = kvs0[META.encode()]["mod_revision"]
        recorder = None
        if side.history:
            recorder = Recorder(side, meta_index + 1)
            recorder.start()
            threads["recorder"] = recorder
        mount = harness.CfgfsMount()
        mount.mount(side.url())
        log("mounted %s on %s (cfgfs pid %d, log %s)" % (side.url(), mount.mountpoint,
                                                          mount.pid, mount.log_path))
        files = [mount.path("r", "f%02d" % i) for i in range(NFILES)]
        harness.wait_until(lambda: all(os.path.exists(f) for f in files), 10,
                           what="the remote files in the mount")
        stop_file = os.path.join(mount.tmpdir, "chaos.stop")
        t_reader = time.monotonic()
        reader = subprocess.Popen(
            ["nice", "-n", "5", reader_bin, str(args.seconds + 600), str(args.readers)] + files,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ,
                                                                     CHAOS_STOP=stop_file))
        monitor = Monitor(mount)
        writer = RemoteWriter(side, random.Random(seed ^ 0x5eed), 1, meta_index, args.pace)
        savers = [Saver(side, mount, n, "fsync" if n.startswith("a") else "rename",
                        random.Random(seed + 17 * k), init["%s/l/%s" % (PREFIX, n)], 0.02)
                  for k, n in enumerate(names)]
        faults = Faults(side, mount, random.Random(seed), recorder, args.seconds)
        for t in [monitor, writer] + savers + [faults]:
            t.start()
        threads.update(monitor=monitor, writer=writer, faults=faults)
        # -- the run -------------------------------------------------------------
        t_end = time.monotonic() + args.seconds
        while time.monotonic() < t_end and faults.is_alive() and not monitor.dead:
            time.sleep(min(5.0, max(0.0, t_end - time.monotonic())))   # progress pacing
            log("progress: %d generations, saves %s, faults %s, failovers %d, max RSS %.1f MB"
                % (writer.gen - 1, sum(sum(s.counts().values()) for s in savers),
                   faults.counts, monitor.failovers, monitor.max_rss_kib / 1024))
        # -- the end: faults stop, the store heals, the writers finish -------------
        faults.join(120)
        if faults.is_alive():
            V.add("the fault thread did not finish within 120 s")
        side.healthy(120)
        log("faults over, store healthy; stopping the writers")
        STOP.set()
        writer.join(150)
        for s in savers:
            s.finish.set()
        for s in savers:
            s.join(150)
            if s.is_alive():
                V.add("saver %s did not finish (a save hangs?)" % s.name)
            V.items.extend("saver %s: %s" % (s.name, a) for a in s.anomalies)
        if writer.is_alive():
            V.add("the remote writer did not finish")
        open(stop_file, "w").close()
        t_reader = time.monotonic() - t_reader
        out, err = reader.communicate(timeout=120)
        stats = dict(kv.split("=") for kv in out.decode().split())
        if reader.returncode != 0 or err:
            log("chaos_reader (status %d) said:\n%s" % (reader.returncode, err.decode()[-3000:]))
        reads, corrupt, torn = int(stats["reads"]), int(stats["corrupt"]), int(stats["torn"])
        read_errors = int(stats["errors"])
        if reader.returncode != 0:
            V.add("chaos_reader exited with status %d" % reader.returncode)
        if corrupt:
            V.add("%d corrupt reads" % corrupt)
        if torn:
            V.add("%d torn reads" % torn)
        if read_errors:
            V.add("%d reads failed" % read_errors)
        if reads < args.min_reads:
            V.add("only %d reads checked (--min-reads %d)" % (reads, args.min_reads))
        # -- settle, then the mount must equal the store ----------------------------
        for n in names:       # a temporary file a failed rename left (the saver unlinks it)
            p = mount.path("l", n + ".new")
            if os.path.exists(p):
                log("removing leftover %s" % p)
                os.unlink(p)
        harness.wait_until(lambda: os.getxattr(mount.mountpoint, "user.cfgfs.connected") == b"1",
                           60, what="user.cfgfs.connected = 1")
        harness.wait_settled(mount.mountpoint, 60)
        final = {}

        def equal():
            rev, sv = store_view(side)
            mv, local = mount_view(mount)
            final.update(rev=rev, store=sv, mount=mv, local=local)
            return mv == sv
        try:
            harness.wait_until(equal, 60, interval=0.1, what="the mount to equal the store")
        except AssertionError:
            sv, mv = final["store"], final["mount"]
            diff = sorted(k for k in set(sv) | set(mv) if sv.get(k) != mv.get(k))
            V.add("the mount differs from the store at revision %d: %s" % (
                final["rev"], ["%s: store %r, mount %r" % (k, (sv.get(k) or b"")[:50],
                                                           (mv.get(k) or b"")[:50])
                               for k in diff[:10]]))
        rev_final, sv = final["rev"], final["store"]
        # Remote files: the newest committed generation of each.
        for k, v in writer.last_values.items():
            rel = k.decode()[len(PREFIX) + 1:]
            if sv.get(rel) != v:
                V.add("%s: the store holds %r, the writer's last committed value is %r"
                      % (rel, (sv.get(rel) or b"")[:40], v[:40]))
        if sv.get("r/gen") != str(writer.gen).encode():
            V.add("r/gen is %r, the writer's last generation %d" % (sv.get("r/gen"), writer.gen))
        for s in savers:
            acks = [v for v, r, _ in s.attempts if r == "ack"]
            if s.attempts and s.attempts[-1][1] == "ack" and sv.get("l/" + s.name) != acks[-1]:
                V.add("%s: final value %r, the last acknowledged save %r"
                      % (s.name, sv.get("l/" + s.name), acks[-1]))
            if ("l/%s.new" % s.name) in sv:
                V.add("a temporary key l/%s.new is left in the store" % s.name)
        # -- etcd: the whole history ---------------------------------------------------
        if recorder is not None:
            harness.wait_until(lambda: recorder.confirmed >= writer.committed.get(
                writer.gen, (0,))[0] and not recorder.lost, 60,
                what="the recorder to reach the last generation's revision")
            latest_local = max([0] + [kv["mod_revision"] for k, kv in side.snapshot()[1].items()
                                      if b"/l/" in k])
            harness.wait_until(lambda: recorder.confirmed >= latest_local, 60,
                               what="the recorder to reach revision %d" % latest_local)
            recorder.done.set()
            check_history(recorder, writer, savers, rev0)
        # -- the daemon ------------------------------------------------------------
        monitor.done.set()
        monitor.join(5)
        if not mount.daemon_alive():
            V.add("the cfgfs daemon is not alive at the end (status %s)" % mount.returncode)
        with open(mount.log_path, "rb") as f:
            logtext = f.read().decode("utf-8", "replace")
        bad = [l for l in logtext.splitlines() if re.search(
            r"AddressSanitizer|LeakSanitizer|ThreadSanitizer|runtime error:|Assertion .*failed|"
            r"SUMMARY: |core dumped|double free|stack smashing", l)]
        if bad:
            V.add("the cfgfs log has %d sanitizer/assertion lines, first: %s" % (len(bad), bad[0]))
        went_back = [(int(a), int(b)) for a, b in re.findall(   # (the first one is the mount's)
            r"from revision (\d+) \(store at (\d+)\)", logtext)[1:] if int(b) < int(a) - 1]
        rss_mb = monitor.max_rss_kib / 1024
        if rss_mb >= args.max_rss_mb:
            V.add("max RSS %.1f MB >= %.0f MB" % (rss_mb, args.max_rss_mb))
        # -- the summary -------------------------------------------------------------
        c = {"ack": 0, "failed": 0, "unknown": 0}
        errs = {}
        for s in savers:
            for _, r, e in s.attempts:
                c[r] += 1
                if e:
                    errs[e] = errs.get(e, 0) + 1
        unknown_committed = sum(s.unknown_committed for s in savers)
        lines = [
            "chaos summary (%s)" % args.store,
            "  seed                 %d   (replay: tests/chaos/chaos.py --store %s --seconds %g --seed %d)"
            % (seed, args.store, args.seconds, seed),
            "  seconds              %g of faults, %.0f in all" % (args.seconds, time.monotonic() - T0),
            "  faults               %s" % (", ".join("%s %d" % kv for kv in sorted(faults.counts.items()))
                                         or "none"),
            "  schedule             %s" % " ".join(faults.schedule),
            "  failovers seen       %d (user.cfgfs.endpoint changes; endpoints used: %s); "
            "disconnects %d" % (monitor.failovers, ", ".join(sorted(monitor.endpoints)),
                                monitor.disconnects),
            "  remote revisions     %d transactions committed (%d read-backs of the guard, %d retries)"
            % (len(writer.committed), writer.readbacks, writer.retries),
            "  store revision       %d at the end%s" % (rev_final, "" if side.history else
                                                        " (Consul's index of the prefix)"),
            "  reads checked        %d (%.0f/s, %d reader threads), corrupt %d, torn %d, failed %d"
            % (reads, reads / max(1.0, t_reader), args.readers, corrupt, torn, read_errors),
            "  reads during faults  %d by the fault thread, slowest %.3f s"
            % (faults.outage_reads, faults.max_outage_read),
            "  saves                %d acknowledged, %d failed, %d unknown (ETIMEDOUT; %d of "
            "them committed)" % (c["ack"], c["failed"], c["unknown"], unknown_committed),
            "  save errors          %s" % (", ".join("%s %d" % kv for kv in sorted(errs.items()))
                                           or "none"),
            "  local-only files     %d at the end (%s)" % (len(final.get("local", [])),
                                                         ", ".join(final.get("local", [])[:6])),
            "  history              %s" % (
                "%d events recorded, %d watch (re)connections, compactions failed %d"
                % (len(recorder.events), recorder.reconnects, faults.compact_errors)
                if recorder else "none (Consul keeps none: saves checked by reading back)"),
            "  store went back      %d times as cfgfs reconnected (its revision -> the store's): %s%s"
            % (len(went_back), " ".join("%d->%d" % w for w in went_back[:8]),
               "; Consul answers default-mode reads from an older state right after a restart "
               "(tests/chaos/consul_stale_reads.py)" if went_back and side.kind == "consul" else ""),
            "  max RSS              %.1f MB (%d samples, bound %.0f MB)"
            % (rss_mb, monitor.rss_samples, args.max_rss_mb),
            "  violations           %d" % len(V.items),
        ]
        lines += ["    " + v for v in V.items[:30]]
        print("\n".join(lines))
        sys.stdout.flush()
        return 1 if V.items else 0
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        STOP.set()
        if reader is not None and reader.poll() is None:
            reader.kill()
            reader.wait()
        if mount is not None:
            if V.items:
                keep = os.path.join(harness.mount_base_dir(), "cfgfs-chaos-%s-%d.log"
                                    % (args.store, seed))
                try:
                    shutil.copyfile(mount.log_path, keep)
                except OSError:
                    keep = mount.log_path
                sys.stderr.write("--- cfgfs log tail (all of it: %s) ---\n%s\n"
                                 % (keep, mount.log_tail(30)))
            mount.close()
        if V.items:
            for name, path in side.logs():
                keep = os.path.join(harness.mount_base_dir(), "cfgfs-chaos-%s-%d-%s.log"
                                    % (args.store, seed, name))
                try:
                    shutil.copyfile(path, keep)
                    sys.stderr.write("%s's log: %s\n" % (name, keep))
                except OSError:
                    pass
        side.close()


if __name__ == "__main__":
    sys.exit(main())

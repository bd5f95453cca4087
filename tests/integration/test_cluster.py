#!/usr/bin/env python3
"""Failover: cfgfs mounts a 3-member etcd cluster (all three endpoints in
the URL; heartbeat 50 ms, election timeout 500 ms) and keeps following it
when the member serving its watch (user.cfgfs.endpoint) fails:

  kill  SIGKILL: a change made through a surviving member is readable in
        the mount within 2 s of the put's acknowledgment;
  stop  SIGSTOP (the member hangs, its sockets stay open): within 5 s;
  cut   the member is cut off from its two peers but still answers
        clients (each member in a network namespace of its own; blackhole
        routes between it and its peers): the change made on the majority
        side, within 5 s.

After the switch, user.cfgfs.endpoint names another member and
user.cfgfs.connected is "1".  Each kind runs CFGFS_FAILOVER_RUNS times
(default 1; the watch member is the leader in even runs, a follower in odd
ones) and prints "failover KIND: T s" per run and the median and maximum.

Saves during a failover: a writer saves the file again and again (write,
fsync, close) while the member cfgfs uses, made leader first, is killed,
stopped or cut off; every save either succeeds once or fails with an
errno: the key's version goes up by exactly the number of successful
saves, and its history holds exactly their values, in order.

With no network namespaces here (not root, no `ip`/`unshare`/`nsenter`, or
the kernel refuses), the members run on 127.0.0.1 and the cut-off tests
are skipped, saying why.  This test process moves into a network
namespace of its own (servers/netns.py); nothing is changed in the host's.
Run: python3 tests/integration/test_cluster.py [-k name]
     CFGFS_FAILOVER_RUNS=5 CFGFS_TEST_TIMEOUT=600 python3 tests/integration/test_cluster.py"""

import errno
import os
import secrets
import sys
import threading
import time

import harness
from harness import read_file, summarize_times

RUNS = int(os.environ.get("CFGFS_FAILOVER_RUNS", "1"))
DEADLINE = {"kill": 2.0, "stop": 5.0, "cut": 5.0}   # put acknowledged -> readable
GRACE = 15.0       # how long past the deadline to keep looking, to report the real time
WINDOW = 4.0       # saves go on at least this long after the disruption
NETNS_REASON = harness.netns_unusable_reason()


def note(line):
    sys.stderr.write("\n%s\n" % line)
    sys.stderr.flush()


class ClusterTestCase(harness.CfgfsTestCase):
    """A 3-member etcd cluster per class (self.cluster); setUp brings every
    member back (running, resumed, healed) and waits until it is healthy."""

    @classmethod
    def make_server(cls):
        return harness.EtcdCluster(isolated=NETNS_REASON is None)

    @property
    def cluster(self):
        return self.store_server

    def setUp(self):
        super().setUp()
        self.cluster.start()

    def skip_unless_cut_off_possible(self):
        if NETNS_REASON:
            self.skipTest("cannot cut a member off from its peers here: " + NETNS_REASON)

    # -- what the scenarios do to a member ---------------------------------------
    def disrupt(self, kind, member):
        if kind == "kill":
            member.kill()
        elif kind == "stop":
            member.pause()
        else:
            self.cluster.cut_off(member)

    def restore(self, kind, member):
        if kind == "kill":
            member.start()
        elif kind == "stop":
            member.resume()
        else:
            self.cluster.heal(member)

    def watch_member(self, m, timeout=10.0):
        """The member serving m's watch, once cfgfs says it is connected."""
        def current():
            if os.getxattr(m.mountpoint, "user.cfgfs.connected") != b"1":
                return None
            return self.cluster.member(
                os.getxattr(m.mountpoint, "user.cfgfs.endpoint").decode())
        return self.wait_until(current, timeout,
                               what="user.cfgfs.connected = 1 and user.cfgfs.endpoint "
                                    "naming a member of %s" % self.cluster.endpoints)


def first_time(pred, timeout):
    """The monotonic time at which pred() first held (polled every 2 ms;
    exceptions count as "not yet"), or None within timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if pred():
                return time.monotonic()
        except OSError:
            pass
        if time.monotonic() > deadline:
            return None
        time.sleep(0.002)


@harness.stores("etcd")
class TestFailover(ClusterTestCase):

    def failover(self, kind):
        deadline = DEADLINE[kind]
        k = self.key("conf")
        self.cluster.put(k, "initial")
        m = self.mount()
        p = m.path("conf")
        self.assertEqual(read_file(p), b"initial")
        times, since_disruption = [], []
        for run in range(RUNS):
            self.cluster.start()
            w = self.watch_member(m)
            role = "leader" if run % 2 == 0 else "follower"
            self.cluster.move_leader(w if role == "leader" else
                                     next(x for x in self.cluster.members if x is not w))
            w = self.watch_member(m)        # (a leader change does not move it, normally)
            value = ("%s-%d-%s" % (kind, run, secrets.token_hex(4))).encode()
            self.disrupt(kind, w)
            t_disrupt = time.monotonic()
            try:
                # Through the survivors' leader once they have one (a put sent
                # to a follower whose leader just went would be lost and time out).
                lead = self.cluster.leader(
                    timeout=10, among=[x for x in self.cluster.members if x is not w])
                via, _ = self.cluster.put(k, value, exclude=[w], prefer=lead)
                t_ack = time.monotonic()
                seen = first_time(lambda: read_file(p) == value, deadline + GRACE)
                if seen is None:
                    self.fail("failover %s (run %d): the change never reached the file "
                              "(%.0f s); %s was the %s and the watch member\n--- cfgfs log "
                              "---\n%s" % (kind, run, deadline + GRACE, w.name, role,
                                           m.log_tail(30)))
                took = seen - t_ack
                times.append(took)
                since_disruption.append(seen - t_disrupt)
                now = self.watch_member(m, timeout=5)
                note("failover %s: %.2f s (run %d: the watch member %s at %s was the %s; "
                     "readable %.2f s after the put's acknowledgment through %s, %.2f s after "
                     "the %s; watch now on %s)"
                     % (kind, took, run, w.name, w.endpoint, role, took, via.name,
                        seen - t_disrupt, kind, now.name))
                self.assertLessEqual(took, deadline, "failover %s (run %d) took %.2f s, more "
                                     "than %.1f s" % (kind, run, took, deadline))
                self.assertIsNot(now, w, "user.cfgfs.endpoint still names %s" % w.name)
                self.assertEqual(os.getxattr(m.mountpoint, "user.cfgfs.connected"), b"1")
            finally:
                self.restore(kind, w)
        note("%s (from the put's acknowledgment); %s" % (
            summarize_times("failover " + kind, times),
            summarize_times("from the " + kind, since_disruption)))
        # Back to normal: the member returns, changes keep flowing.
        self.cluster.start()
        self.cluster.put(k, "the end")
        self.wait_equal(lambda: read_file(p), b"the end", 5.0, what="a change after the runs")

    def test_kill(self):
        self.failover("kill")

    def test_stop(self):
        self.failover("stop")

    def test_cut_off(self):
        self.skip_unless_cut_off_possible()
        self.failover("cut")


class Saver(threading.Thread):
    """Saves path again and again (open O_TRUNC, write, fsync, close), each
    time with a new value; records (value, None) for a save whose fsync
    succeeded, (value, errno) for one that failed.  After stop(), it ends
    at its first successful save (so no failed save is the last: a late
    write of a failed one would have to beat that save's compare), or at
    its deadline."""

    def __init__(self, path, tag, limit=1000, deadline=90.0, pace=0.02):
        super().__init__(daemon=True)
        self.path, self.tag, self.limit, self.pace = path, tag, limit, pace
        self.deadline = time.monotonic() + deadline
        self.results = []
        self.durations = []      # seconds each save took (open to close)
        self.anomalies = []
        self._stop_asked = threading.Event()

    def run(self):
        for i in range(self.limit):
            value = ("%s-%03d\n" % (self.tag, i)).encode()
            err = None
            t0 = time.monotonic()
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_TRUNC)
            except OSError as e:
                self.results.append((value, e.errno))
                self.durations.append(time.monotonic() - t0)
                continue
            try:
                os.write(fd, value)
                os.fsync(fd)
            except OSError as e:
                err = e.errno
            finally:
                try:
                    os.close(fd)
                except OSError as e:
                    if err is None:        # fsync said yes, close said no: which is it?
                        self.anomalies.append("close after a successful fsync of %r: %s"
                                              % (value, e))
            self.results.append((value, err))
            self.durations.append(time.monotonic() - t0)
            if time.monotonic() > self.deadline or (self._stop_asked.is_set() and err is None):
                return
            time.sleep(self.pace)     # a save every pace seconds at most (rate, not sync)

    def stop(self):
        self._stop_asked.set()

    def successes(self, since=0):
        return [v for v, e in self.results[since:] if e is None]


@harness.stores("etcd")
class TestSavesDuringFailover(ClusterTestCase):

    def saves_during(self, kind):
        k = self.key("conf")
        self.cluster.put(k, "v0\n")
        m = self.mount()
        p = m.path("conf")
        self.assertEqual(read_file(p), b"v0\n")
        w = self.watch_member(m)
        self.cluster.move_leader(w)      # the hardest case: cfgfs's member is the leader
        before = self.cluster.client().get(k)
        saver = Saver(p, "%s-%s" % (kind, secrets.token_hex(3)))
        saver.start()
        disrupted = False
        try:
            self.wait_until(lambda: len(saver.successes()) >= 3, 20,
                            what="3 saves before the %s" % kind)
            self.disrupt(kind, w)
            disrupted = True
            t0, n0 = time.monotonic(), len(saver.results)
            # Saves all through the failover (etcd's election, cfgfs's switch),
            # until a few have been tried and one succeeded after it.
            self.wait_until(lambda: time.monotonic() - t0 >= WINDOW and
                            len(saver.results) >= n0 + 3 and saver.successes(n0), 45,
                            what="3 more saves, one of them successful, after the %s of %s "
                                 "(results so far: %r)" % (kind, w.name, saver.results[-20:]))
            saver.stop()
            saver.join(30)
        finally:
            saver.stop()
            if disrupted:
                self.restore(kind, w)      # also lets a save stuck on w finish
            saver.join(30)
        self.assertFalse(saver.is_alive(), "the saver did not end (a save hangs)")
        self.cluster.start()             # w back and caught up
        ok = saver.successes()
        failed = [(v, errno.errorcode.get(e, e)) for v, e in saver.results if e is not None]
        note("saves during %s: %d saves, %d succeeded, %d failed (%s); the longest took "
             "%.2f s; after the %s: %s" % (kind, len(saver.results), len(ok), len(failed),
                                          ", ".join(sorted({str(e) for _, e in failed})) or
                                          "none", max(saver.durations), kind,
                                          " ".join("%.2f%s" % (d, "" if r[1] is None else "!")
                                                   for d, r in zip(saver.durations[n0:],
                                                                   saver.results[n0:]))))
        self.assertEqual(saver.anomalies, [])
        self.assertIsNone(saver.results[-1][1], "the last save should have succeeded: %r"
                          % (saver.results[-5:],))

        c = self.cluster.client()
        after = c.get(k)
        history = []
        for rev in range(before["mod_revision"] + 1, c.revision() + 1):
            kv = c.get(k, revision=rev)
            if kv and (not history or history[-1][0] != kv["mod_revision"]):
                history.append((kv["mod_revision"], kv["value"]))
        written = [v for _, v in history]
        self.assertEqual(after["version"] - before["version"], len(ok),
                         "one version per successful save and none for a failed one; "
                         "successful: %r; failed: %r; written: %r" % (ok, failed, written))
        self.assertEqual(written, ok, "the key's history holds exactly the successful saves, "
                         "in order; failed: %r" % (failed,))
        self.assertEqual(after["value"], ok[-1])
        self.wait_equal(lambda: read_file(p), ok[-1], 5.0, what="the file after the saves")

    def test_saves_during_kill(self):
        self.saves_during("kill")

    def test_saves_during_stop(self):
        self.saves_during("stop")

    def test_saves_during_cut_off(self):
        self.skip_unless_cut_off_possible()
        self.saves_during("cut")


if __name__ == "__main__":
    harness.main()

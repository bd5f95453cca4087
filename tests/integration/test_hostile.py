#!/usr/bin/env python3
"""Proof under faults, hostile stores: cfgfs against a fake etcd gateway and a
fake Consul on loopback (servers/hostile.py) that answer with invalid JSON,
invalid base64, negative or absurd revisions, a 200 MB body, a body that
never ends, one byte a second, a change stream with malformed or truncated
chunks, an HTTP 200 carrying an error object, a TLS handshake that stalls.

  At startup: one line on stderr naming the problem and the member, a
  non-zero exit within a bound derived from -o timeout, nothing mounted,
  memory bounded.
  While mounted: the files keep their last good content, the log says
  "lost the change stream" once for the whole episode (however many
  retries), naming the cause and the member; cfgfs retries with backoff
  (not in a tight loop), memory stays bounded, a change made once the
  store is normal again shows in the files, and unmounting while the
  store is hostile is quick.

Run: python3 tests/integration/test_hostile.py [-k name]
(CFGFS_STORES selects etcd and/or consul)."""

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import harness
from harness import read_file, wait_until
from servers.hostile import HostileStore

TIMEOUT_S = 2                 # -o timeout of every cfgfs here
# cfgfs gives one answer twice its request timeout to arrive in full; a few
# retries of a capped answer and process start-up fit in the rest.
STARTUP_BOUND = 2 * TIMEOUT_S + 4.0
RSS_LIMIT_KB = 100 * 1024     # while a 200 MB answer streams in
# Under a checker (tests/sanitize.sh) memory and time are the checker's: ASan keeps freed
# blocks in a quarantine of up to 256 MB and shadows every byte; valgrind is many times slower.
SANITIZER = os.environ.get("CFGFS_SANITIZER")
if SANITIZER:
    RSS_LIMIT_KB = 1024 * 1024
UNMOUNT_BOUND = 5.0
RECOVER = 20.0                # backoff tops out at 5 s; then a change must show
RETRIES = 6                   # attempts seen while hostile before the log is judged
# The least time RETRIES attempts take with cfgfs's backoff (50 ms doubling,
# jitter down to half): 25 + 50 + 100 + 200 + 400 ms between them.
MIN_BACKOFF_S = 0.7
RETRY_WAIT = 120.0 if SANITIZER else 40.0

STARTUP = ("invalid_json", "invalid_base64", "negative_revision", "absurd_revision",
           "huge_body", "endless_body", "one_byte_per_second", "error_object_200")
MOUNTED = STARTUP + ("malformed_watch_chunk", "truncated_watch_chunk")

# What the one line (startup) or the "lost the change stream" line (mounted)
# must say, per behaviour; (startup, mounted) where they differ by store.
CAUSE = {
    "invalid_json": r"not JSON",
    "invalid_base64": r"base64",
    "negative_revision": r"'-5'|X-Consul-Index|negative",
    "absurd_revision": r"9223372036854775807",
    "huge_body": r"larger than \d+ bytes",
    "endless_body": r"((no complete answer|no data) within \d+ ms|larger than \d+ bytes)",
    "one_byte_per_second": r"(no complete answer|no data) within \d+ ms",
    "malformed_watch_chunk": r"(?i)chunk",
    "truncated_watch_chunk": r"(?i)(outstanding read data|transfer closed|chunk|partial)",
    "error_object_200": r"hostile failure",
    "stall_tls_handshake": r"TLS handshake did not complete within \d+ ms",
}
# While mounted, switching to a stalled handshake first cuts the established
# connections: the episode starts with that, the stall is its last failure.
CAUSE_MOUNTED = dict(CAUSE, stall_tls_handshake=r"(?i)(ended|reset|closed|empty reply|recv|"
                                                r"within \d+ ms|TLS|SSL)")


def vmrss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssSampler:
    """The largest VmRSS of pid, sampled every 10 ms until stop()."""

    def __init__(self, pid):
        self.pid, self.max_kb = pid, 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.wait(0.01):
            self.max_kb = max(self.max_kb, vmrss_kb(self.pid))

    def stop(self):
        self._stop.set()
        self._t.join(2)
        return self.max_kb


class HostileCase(unittest.TestCase):
    """One fake store per test (kind, tls), keys app/a and app/dir/b."""

    kind = None
    tls = False
    certs = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if cls.kind is None:
            raise unittest.SkipTest("template")
        reason = harness.fuse_unusable_reason()
        if reason:
            raise unittest.SkipTest(harness.FUSE_SKIP_REASON + reason)
        if cls.tls:
            reason = harness.openssl_missing_reason()
            if reason:
                raise unittest.SkipTest(reason)
            cls.certs = harness.Certs()
            cls.addClassCleanup(cls.certs.close)

    def setUp(self):
        super().setUp()
        limit = float(os.environ.get("CFGFS_TEST_TIMEOUT", "120"))
        timer = threading.Timer(limit, self._watchdog, (limit,))
        timer.daemon = True
        timer.start()
        self.addCleanup(timer.cancel)
        self.fake = HostileStore(self.kind, tls=self.certs.server if self.tls else None)
        self.fake.start()
        self.addCleanup(self.fake.close)
        self.fake.victim = b"app/a"
        self.fake.put("app/a", "good-a")
        self.fake.put("app/dir/b", "good-b")

    def _watchdog(self, limit):
        sys.stderr.write("\n*** watchdog: %s still running after %.0fs\n" % (self.id(), limit))
        import faulthandler
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        self.fake.close()
        for m in list(harness._live_mounts):
            m.kill_daemon()

    def opts(self):
        o = ["-o", "timeout=%d" % TIMEOUT_S]
        if self.tls:
            o += ["-o", "cacert=" + self.certs.ca.cert]
        return o

    def new_mount(self):
        m = harness.CfgfsMount()
        self.addCleanup(self._close_mount, m)
        return m

    def _close_mount(self, m):
        failed = any(t is self for t, _ in self._outcome.result.errors +
                     self._outcome.result.failures) if hasattr(self, "_outcome") else False
        if failed:
            sys.stderr.write("\n--- cfgfs log tail (%s) ---\n%s\n" % (m.log_path, m.log_tail(60)))
        m.close()

    # -- startup ---------------------------------------------------------------
    def check_startup(self, behaviour):
        self.fake.set_behaviour(behaviour)
        m = self.new_mount()
        cmd = [m.binary, "-f"] + self.opts() + [self.fake.url("app"), m.mountpoint]
        err = tempfile.TemporaryFile()
        self.addCleanup(err.close)
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=err, env=harness.cfgfs_env(), start_new_session=True)
        m.proc, m._pid, m.url = p, p.pid, self.fake.url("app")
        rss = RssSampler(p.pid)
        try:
            wait_until(lambda: p.poll() is not None, STARTUP_BOUND,
                       what="cfgfs to give up on a %s store (%s)" % (self.kind, behaviour))
        finally:
            max_kb = rss.stop()
        elapsed = time.monotonic() - t0
        err.seek(0)
        lines = [l for l in err.read().decode("utf-8", "replace").splitlines() if l.strip()]
        sys.stderr.write("[%s %s startup: exit %s after %.2fs, max RSS %d KiB: %r] "
                         % (self.kind, behaviour, p.returncode, elapsed, max_kb, lines))
        self.assertNotEqual(p.returncode, 0, "cfgfs must fail; stderr %r" % lines)
        self.assertEqual(len(lines), 1, "exactly one line on stderr, got %r" % lines)
        self.assertRegex(lines[0], r"^cfgfs: cannot load ")
        self.assertRegex(lines[0], CAUSE[behaviour], "the line must name the problem")
        self.assertIn(self.fake.endpoint, lines[0], "the line must name the member")
        self.assertFalse(m.is_mounted(), "nothing may be mounted")
        self.assertLess(max_kb, RSS_LIMIT_KB, "cfgfs's RSS while reading the answer")

    # -- mounted ---------------------------------------------------------------
    def attempts(self):
        """Requests that (re)start the change stream."""
        f = self.fake
        if self.tls and f.behaviour == "stall_tls_handshake":
            return f.requests("tls-stall")
        if self.kind == "etcd":
            return f.requests("/v3/watch")
        return f.requests("/v1/kv")    # every attempt starts with a plain read

    def log_since(self, m, offset):
        with open(m.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace").splitlines()

    def assert_files_good(self, m, a="good-a"):
        self.assertEqual(read_file(m.path("a")), a.encode())
        self.assertEqual(read_file(m.path("dir", "b")), b"good-b")

    def check_mounted(self, behaviour):
        m = self.new_mount()
        m.mount(self.fake.url("app"), self.opts())
        self.assert_files_good(m)
        offset = os.path.getsize(m.log_path)
        rss = RssSampler(m.pid)
        self.addCleanup(rss.stop)
        n0 = self.attempts()
        t0 = time.monotonic()
        self.fake.set_behaviour(behaviour)

        def retried():
            self.assert_files_good(m)     # read during the hostile phase
            return self.attempts() >= n0 + RETRIES
        wait_until(retried, RETRY_WAIT, interval=0.05,
                   what="cfgfs to retry %d times against a hostile %s (%s)"
                   % (RETRIES, self.kind, behaviour))
        hostile_s = time.monotonic() - t0
        # Backoff: no tight loop of reconnects (50 ms doubling to 5 s, with jitter).
        tries = self.attempts() - n0
        self.assertGreaterEqual(hostile_s, MIN_BACKOFF_S,
                                "%d attempts in %.2fs: no backoff?" % (tries, hostile_s))
        self.assertLessEqual(tries, RETRIES + 2 + hostile_s * 2,
                             "%d attempts in %.1fs: no backoff?" % (tries, hostile_s))
        self.assert_files_good(m)
        log = self.log_since(m, offset)
        lost = [l for l in log if "lost the change stream" in l]
        self.assertEqual(len(lost), 1, "one line for the episode (%d attempts); log:\n%s"
                         % (tries, "\n".join(log)))
        self.assertRegex(lost[0], CAUSE_MOUNTED[behaviour], "the line must name the cause")
        self.assertIn(self.fake.endpoint, lost[0], "the line must name the member")
        max_kb = rss.stop()
        self.assertLess(max_kb, RSS_LIMIT_KB, "cfgfs's RSS while the store is hostile")

        # Back to normal: a new change shows.
        self.fake.set_behaviour("normal")
        self.fake.put("app/a", "after")
        harness.wait_equal(lambda: read_file(m.path("a")), b"after", RECOVER,
                           what="a change made once the store is normal again")
        log = self.log_since(m, offset)
        self.assertEqual(len([l for l in log if "lost the change stream" in l]), 1,
                         "\n".join(log))
        back = wait_until(lambda: [l for l in self.log_since(m, offset) if " is back" in l], 5,
                          what="a log line saying the change stream is back")
        self.assertEqual(len(back), 1, back)
        if behaviour == "stall_tls_handshake":
            self.assertRegex(back[0], CAUSE[behaviour], "the last failure was the stall")
        sys.stderr.write("[%s %s mounted: %d attempts in %.1fs, max RSS %d KiB, log: %r] "
                         % (self.kind, behaviour, tries, hostile_s, max_kb, lost[0]))

        # Hostile again, and unmount in the middle of it.
        n1 = self.attempts()
        self.fake.set_behaviour(behaviour)
        wait_until(lambda: self.attempts() >= n1 + 1, RETRY_WAIT,
                   what="an attempt against the hostile store")
        t0 = time.monotonic()
        rc = m.unmount(timeout=UNMOUNT_BOUND * 2)
        took = time.monotonic() - t0
        self.assertLess(took, UNMOUNT_BOUND, "unmount while the store is hostile")
        self.assertEqual(rc, 0, "cfgfs's exit status after unmount")


class TestResyncAfterOutageEtcd(HostileCase):
    """The old "lost the change stream: unknown error": after an outage, a
    compaction's full re-read was logged as a lost stream with a stale or
    empty reason."""

    kind = "etcd"

    def test_compaction_after_outage_is_no_loss(self):
        m = self.new_mount()
        m.mount(self.fake.url("app"), self.opts())
        self.assert_files_good(m)
        offset = os.path.getsize(m.log_path)
        n0 = self.attempts()
        self.fake.set_behaviour("invalid_json")
        wait_until(lambda: self.attempts() >= n0 + 2, RETRY_WAIT, what="two failed attempts")
        self.fake.set_behaviour("normal")
        self.fake.put("app/a", "after-outage")
        harness.wait_equal(lambda: read_file(m.path("a")), b"after-outage", RECOVER,
                           what="a change after the outage")
        reads = self.fake.requests("/v3/kv/range")
        self.fake.compact()
        wait_until(lambda: any("resynchronized" in l for l in self.log_since(m, offset)), 10,
                   what="the re-read after the compaction")
        self.assertGreater(self.fake.requests("/v3/kv/range"), reads)
        self.fake.put("app/dir/b", "after-compaction")
        harness.wait_equal(lambda: read_file(m.path("dir", "b")), b"after-compaction", RECOVER,
                           what="a change after the compaction")
        log = self.log_since(m, offset)
        lost = [l for l in log if "lost the change stream" in l or "unknown error" in l]
        self.assertEqual(len(lost), 1, "only the outage is a loss; log:\n" + "\n".join(log))
        self.assertRegex(lost[0], CAUSE["invalid_json"])


def _add(cls, name, fn, behaviour):
    def test(self):
        fn(self, behaviour)
    test.__name__ = name
    setattr(cls, name, test)


class TestHostile(HostileCase):
    pass


class TestHostileTls(HostileCase):
    tls = True


for _b in STARTUP:
    _add(TestHostile, "test_startup_" + _b, HostileCase.check_startup, _b)
for _b in MOUNTED:
    _add(TestHostile, "test_mounted_" + _b, HostileCase.check_mounted, _b)
_add(TestHostileTls, "test_startup_stall_tls_handshake", HostileCase.check_startup,
     "stall_tls_handshake")
_add(TestHostileTls, "test_mounted_stall_tls_handshake", HostileCase.check_mounted,
     "stall_tls_handshake")

for _kind in harness.selected_stores():
    if _kind in ("etcd", "consul"):
        for _base in (TestHostile, TestHostileTls):
            _name = _base.__name__ + _kind.capitalize()
            globals()[_name] = type(_base)(_name, (_base,), {"kind": _kind,
                                                             "__module__": __name__})
if "etcd" not in harness.selected_stores():
    del TestResyncAfterOutageEtcd
del TestHostile, TestHostileTls, HostileCase   # templates: only the per-store classes run

if __name__ == "__main__":
    harness.main()

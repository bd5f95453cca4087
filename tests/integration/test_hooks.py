#!/usr/bin/env python3
"""Reload hooks (-o hook=CMD): a command, or a signal to the pid in a pid
file, run after changes under the mount (or -o hook_path=SUBDIR) are
readable, debounced by -o hook_wait=MIN:MAX, never twice at once, with the
changed paths and the revision in its environment, killed after
-o hook_timeout, its exit status and stderr logged; the mirror never waits
for it.  Every class runs against each store (CFGFS_STORES selects).
Run: python3 tests/integration/test_hooks.py [-k name]"""

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import harness
from harness import assert_stays, read_file

FAST = 5.0
NEGATIVE = 0.8   # longer than a debounced hook takes to run here (hook_wait 0.2:2)

# Appends one record per run: its environment, when it ran (wall clock, as
# the test's acknowledgment times), and what each changed file holds then.
HOOK = textwrap.dedent("""\
    #!/bin/sh
    now=$(date +%s.%N)
    if ! mkdir "$LOG.lock" 2>/dev/null; then echo CONCURRENT >>"$LOG"; fi
    {
    printf 'run rev=%s trunc=%s t=%s mnt=%s cwd=%s\\n' "$CFGFS_REVISION" \\
        "${CFGFS_CHANGED_TRUNCATED:-0}" "$now" "$CFGFS_MOUNTPOINT" "$(pwd)"
    printf '%s\\n' "$CFGFS_CHANGED" | while IFS= read -r p; do
        [ -n "$p" ] || continue
        if [ -f "$CFGFS_MOUNTPOINT/$p" ]; then
            printf 'path %s=%s\\n' "$p" "$(head -c 64 "$CFGFS_MOUNTPOINT/$p")"
        else
            printf 'path %s\\n' "$p"
        fi
    done
    echo end
    } >>"$LOG"
    # A hook killed in its sleep leaves no lock behind: the next run starts clean.
    if [ -e "$SLOW" ]; then rm -f "$SLOW"; rmdir "$LOG.lock"; sleep 60; exit; fi
    [ -z "$HOLD" ] || sleep "$HOLD"
    rmdir "$LOG.lock"
    """)


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


@harness.all_stores
class TestHooks(harness.CfgfsTestCase):

    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="cfgfs-hook-")
        self.addCleanup(subprocess.run, ["rm", "-rf", self.dir])
        self.log = os.path.join(self.dir, "runs")
        self.slow = os.path.join(self.dir, "slow")
        self.script = os.path.join(self.dir, "hook.sh")
        with open(self.script, "w") as f:
            f.write(HOOK)
        os.chmod(self.script, 0o755)

    def hook_mount(self, *opts, hook=None, env=None):
        e = {"LOG": self.log, "SLOW": self.slow}
        e.update(env or {})
        o = ["-o", "hook=" + (hook or self.script)]
        for x in opts:
            o += ["-o", x]
        return self.mount(opts=o, env=e)

    def runs(self):
        """The runs so far: [{"rev", "t", "mnt", "cwd", "trunc", "paths": {path: content}}]."""
        try:
            text = read_file(self.log).decode()
        except FileNotFoundError:
            return []
        self.assertNotIn("CONCURRENT", text, "two runs of the hook at once")
        out = []
        for line in text.splitlines():
            if line.startswith("run "):
                r = dict(kv.split("=", 1) for kv in line[4:].split(" "))
                out.append({"rev": int(r["rev"]), "t": float(r["t"]), "mnt": r["mnt"],
                            "cwd": r["cwd"], "trunc": r["trunc"], "paths": {}, "done": False})
            elif line.startswith("path "):
                p, _, v = line[5:].partition("=")
                out[-1]["paths"][p] = v
            elif line == "end":
                out[-1]["done"] = True
        return [r for r in out if r["done"]]

    def wait_runs(self, n, timeout=FAST):
        self.wait_until(lambda: len(self.runs()) >= n, timeout,
                        what="%d runs of the hook (log: %r)" % (n, self.runs()))
        return self.runs()

    def log_has(self, m, text, timeout=FAST):
        self.wait_until(lambda: text in read_file(m.log_path).decode(errors="replace"),
                        timeout, what="%r in the cfgfs log:\n%s" % (text, m.log_tail()))

    def test_a_store_change_runs_the_hook_once(self):
        self.store.put(self.key("app.conf"), "v1")
        m = self.hook_mount()
        assert_stays(lambda: not self.runs(), NEGATIVE, what="no run at mount")
        rev = self.store.put(self.key("app.conf"), "v2")
        runs = self.wait_runs(1)
        self.assertGreaterEqual(runs[0]["rev"], rev)
        self.assertEqual(runs[0]["rev"], rev, "the revision of the change")
        # The hook reads the new bytes: it runs once they are readable.
        self.assertEqual(runs[0]["paths"], {"app.conf": "v2"})
        self.assertEqual(runs[0]["mnt"], m.mountpoint)
        self.assertEqual(runs[0]["cwd"], "/")
        self.assertEqual(runs[0]["trunc"], "0")
        assert_stays(lambda: len(self.runs()) == 1, NEGATIVE, what="one run only")
        self.log_has(m, "hook ran in")

    def test_a_deleted_key_and_a_new_one(self):
        self.store.put(self.key("d", "old"), "o")
        m = self.hook_mount()
        os.stat(m.path("d", "old"))    # the kernel knows the name that goes away
        self.store.delete(self.key("d", "old"))
        self.store.put(self.key("d", "new"), "n")
        self.wait_until(lambda: set().union(*[r["paths"] for r in self.runs()]) >=
                        {"d/old", "d/new"}, FAST, what="both paths in %r" % self.runs())

    def test_a_burst_runs_the_hook_once_or_twice(self):
        keys = [self.key("burst", "k%d" % (i % 5)) for i in range(20)]
        self.store.put(keys[0], "start")
        self.hook_mount()
        start = time.monotonic()
        for i, k in enumerate(keys):
            rev = self.store.put(k, "v%d" % i)
            time.sleep(max(0.0, start + (i + 1) * 0.025 - time.monotonic()))
        burst = time.monotonic() - start
        self.wait_until(lambda: self.runs() and self.runs()[-1]["rev"] >= rev, FAST,
                        what="a run at revision %d (log: %r)" % (rev, self.runs()))
        assert_stays(lambda: len(self.runs()) <= 2, NEGATIVE, what="at most two runs")
        runs = self.runs()
        print("\n  burst of 20 changes in %.2f s: %d run(s)" % (burst, len(runs)),
              file=sys.stderr)
        self.assertIn(len(runs), (1, 2), runs)
        self.assertEqual(runs[-1]["rev"], rev)
        seen = set().union(*[r["paths"] for r in runs])
        self.assertEqual(seen, {"burst/k%d" % i for i in range(5)})
        # The last run read the last values.
        last = {"burst/k%d" % (i % 5): "v%d" % i for i in range(20)}
        for p, v in runs[-1]["paths"].items():
            self.assertEqual(v, last[p])

    def test_a_hanging_hook_is_killed_and_never_blocks_the_mirror(self):
        self.store.put(self.key("x"), "0")
        m = self.hook_mount("hook_timeout=1.5", "hook_wait=0:0", env={"HOLD": ""})
        open(self.slow, "w").close()
        self.store.put(self.key("x"), "1")
        self.wait_runs(1)    # it is in its sleep now
        # Meanwhile files keep following the store, and reads never wait.
        for i in range(2, 6):
            self.store.put(self.key("x"), str(i))
            self.wait_equal(lambda: read_file(m.path("x")), str(i).encode(), FAST)
        self.log_has(m, "hook timed out (hook_timeout 1.5 s)", 5)
        self.log_has(m, "killed by SIGTERM")
        # The changes made meanwhile run the hook next, with the last value.
        runs = self.wait_runs(2)
        self.assertEqual(runs[1]["paths"], {"x": "5"})
        # And the next change runs it again.
        self.store.put(self.key("x"), "6")
        self.wait_until(lambda: self.runs()[-1]["paths"] == {"x": "6"}, FAST,
                        what="a run with x=6 (log: %r)" % self.runs())

    def test_changes_during_a_run_wait_for_the_next(self):
        self.store.put(self.key("y"), "0")
        self.hook_mount("hook_wait=0:0", env={"HOLD": "0.5"})
        self.store.put(self.key("y"), "1")
        self.wait_runs(1)
        for i in range(2, 6):
            self.store.put(self.key("y"), str(i))
            time.sleep(0.05)
        self.wait_until(lambda: self.runs()[-1]["paths"] == {"y": "5"}, FAST,
                        what="a run with y=5 (log: %r)" % self.runs())
        self.assertLessEqual(len(self.runs()), 3, self.runs())   # runs() also checks overlap

    def test_a_failing_hook_is_logged_with_its_status(self):
        self.store.put(self.key("f"), "0")
        m = self.hook_mount("hook_wait=0:0", hook="echo boom >&2; echo second >&2; exit 3")
        self.store.put(self.key("f"), "1")
        self.log_has(m, "hook failed with exit status 3")
        self.log_has(m, "boom | second")
        self.store.put(self.key("f"), "2")
        self.wait_equal(lambda: read_file(m.path("f")), b"2", FAST)

    def test_a_missing_command_is_status_127_and_the_mount_serves_on(self):
        self.store.put(self.key("g"), "0")
        m = self.hook_mount("hook_wait=0:0", hook="/nonexistent/reload-me")
        self.store.put(self.key("g"), "1")
        self.log_has(m, "exit status 127")
        self.store.put(self.key("g"), "2")
        self.wait_equal(lambda: read_file(m.path("g")), b"2", FAST)
        self.assertTrue(m.daemon_alive())

    def test_the_signal_form(self):
        pidfile = os.path.join(self.dir, "app.pid")
        got = os.path.join(self.dir, "got")
        code = textwrap.dedent("""\
            import os, signal, sys, time
            def hup(s, f):
                with open(sys.argv[2], "a") as g:
                    g.write("HUP\\n")
            signal.signal(signal.SIGHUP, hup)
            with open(sys.argv[1] + ".tmp", "w") as f:
                f.write("%d\\n" % os.getpid())
            os.rename(sys.argv[1] + ".tmp", sys.argv[1])
            while True:
                time.sleep(1)
            """)
        app = subprocess.Popen([sys.executable, "-c", code, pidfile, got])
        self.addCleanup(app.wait)
        self.addCleanup(app.kill)
        self.wait_until(lambda: os.path.exists(pidfile), FAST, what="the app's pid file")
        self.store.put(self.key("s"), "0")
        m = self.hook_mount(hook="signal:HUP:" + pidfile)
        hups = lambda: read_file(got).count(b"HUP") if os.path.exists(got) else 0  # noqa: E731
        self.store.put(self.key("s"), "1")
        self.wait_equal(hups, 1, FAST)
        self.log_has(m, "hook sent SIGHUP to pid %d" % app.pid)
        assert_stays(lambda: hups() == 1, NEGATIVE, what="one signal")
        # A stale pid file (the app is gone) and a missing one: one line each.
        app.kill()
        app.wait()
        self.store.put(self.key("s"), "2")
        self.log_has(m, "no such process (a stale pid file?)")
        os.unlink(pidfile)
        self.store.put(self.key("s"), "3")
        self.log_has(m, "cannot read pid file %s" % pidfile)
        self.wait_equal(lambda: read_file(m.path("s")), b"3", FAST)

    def test_the_subtree_filter(self):
        self.store.put_many({self.key("nginx", "site.conf"): "a", self.key("other"): "a"})
        self.hook_mount("hook_path=nginx")
        self.store.put(self.key("other"), "b")
        self.store.put(self.key("nginxish"), "b")
        assert_stays(lambda: not self.runs(), NEGATIVE, what="no run for other paths")
        self.store.txn_put_many({self.key("nginx", "site.conf"): "c", self.key("other"): "c"})
        runs = self.wait_runs(1)
        self.assertEqual(runs[0]["paths"], {"nginx/site.conf": "c"})

    def test_a_write_through_the_mount_runs_the_hook_once(self):
        """A local save is a change the application must reload on too: its
        commit runs the hook once (the store's echo of it changes nothing
        in the mirror and runs nothing).  The mirror cannot name what a
        local commit changed: the list says it is incomplete."""
        self.store.put(self.key("local.conf"), "v1")
        m = self.hook_mount()
        rev0 = self.prefix_revision()
        with open(m.path("local.conf"), "w") as f:
            f.write("v2")
        runs = self.wait_runs(1)
        self.assertEqual(runs[0]["trunc"], "1")
        self.assertGreater(runs[0]["rev"], rev0)
        assert_stays(lambda: len(self.runs()) == 1, NEGATIVE, what="one run only")
        # A new file and an unlink: one run each.
        with open(m.path("new.conf"), "w") as f:
            f.write("n")
        self.wait_runs(2)
        os.unlink(m.path("new.conf"))
        self.wait_runs(3)
        assert_stays(lambda: len(self.runs()) == 3, NEGATIVE, what="one run each")

    def test_latency(self):
        """Not asserted: printed. From the store's acknowledgment of a change
        to the hook's start (its first command, `date`), one change at a
        time; and what starting `sh -c date` costs on this host anyway."""
        base = []
        for _ in range(10):
            t0 = time.time()
            out = subprocess.run(["/bin/sh", "-c", "date +%s.%N"], stdout=subprocess.PIPE)
            base.append((float(out.stdout) - t0) * 1000)
        print("\n  baseline: spawn -> `date` of sh -c: p50 %.1f ms" % percentile(base, 50),
              file=sys.stderr)
        for wait in ("0:0", "0.2:2"):
            self.prefix = harness.unique_prefix()
            if os.path.exists(self.log):
                os.unlink(self.log)
            self.store.put(self.key("lat"), "0")
            m = self.hook_mount("hook_wait=" + wait)
            lat = []
            for i in range(1, 31):
                self.store.put(self.key("lat"), str(i))
                acked = time.time()
                runs = self.wait_runs(i)
                lat.append((runs[-1]["t"] - acked) * 1000)
            print("\n  %s: store ack -> hook start, hook_wait=%s: p50 %.1f ms, p99 %.1f ms "
                  "(30 changes)" % (self.store_kind, wait, percentile(lat, 50),
                                    percentile(lat, 99)), file=sys.stderr)
            self._close_mount(m)


if __name__ == "__main__":
    harness.main()

#!/usr/bin/env python3
"""cfgfs status: what each mount says about itself (from the extended
attributes of its root, so any user who can see the mount can ask), its exit
codes, and the systemd unit that runs cfgfs as a service (debian/cfgfs@.service).
Every class runs against each store (CFGFS_STORES selects); the unit's checks
need etcd.
Run: python3 tests/integration/test_status.py [-k name]"""

import errno
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time

import harness
from harness import read_file

RECONNECT = 15.0   # cfgfs notices a lost stream and reconnects with backoff
ANSWER = 3.0       # status gives a mount this long to answer (status.c ANSWER_MS)
STATUS_TIMEOUT = 20.0
UNIT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "debian",
                    "cfgfs@.service")


def status(*args, user=None, timeout=STATUS_TIMEOUT):
    """Run `cfgfs status ARGS` (as uid/gid 65534 with user="nobody");
    CompletedProcess with text output and .elapsed."""
    cmd = [harness.cfgfs_binary(), "status"] + list(args)
    if user:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + cmd
    t0 = time.monotonic()
    try:
        cp = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=timeout, cwd="/")
    except subprocess.TimeoutExpired:
        raise AssertionError("%r did not return within %.0fs" % (cmd, timeout)) from None
    cp.elapsed = time.monotonic() - t0
    return cp


def status_json(*args, **kw):
    cp = status("--json", *args, **kw)
    try:
        doc = json.loads(cp.stdout)
    except ValueError as e:
        raise AssertionError("--json output is not JSON (%s): %r" % (e, cp.stdout)) from None
    return cp, doc


def field(text, name):
    """The value of field NAME in status's text output ("  name   value")."""
    m = re.search(r"^  %s +(.*)$" % re.escape(name), text, re.M)
    if not m:
        raise AssertionError("no %r line in:\n%s" % (name, text))
    return m.group(1)


@harness.all_stores
class TestStatus(harness.CfgfsTestCase):

    def assertOneLine(self, cp, code, *needles):
        self.assertEqual(cp.returncode, code, "stdout=%r stderr=%r" % (cp.stdout, cp.stderr))
        err = cp.stderr.rstrip("\n")
        self.assertTrue(err, "no message on stderr")
        self.assertNotIn("\n", err, "stderr should be one line: %r" % cp.stderr)
        for n in needles:
            self.assertIn(n, err)

    def healthy_mount(self, opts=()):
        for name in ("a", "b", "c"):
            self.store.put(self.key(name), name + "\n")
        m = self.mount(opts=opts)
        # Mounted means loaded; the change stream (a ZooKeeper session, a watch) may take a
        # moment more, and until then status rightly says "disconnected".
        harness.wait_until(lambda: os.getxattr(m.mountpoint, "user.cfgfs.connected") == b"1",
                           20, what="the mount's change stream")
        return m

    def test_healthy_mount_text_and_json_agree_with_the_store(self):
        m = self.healthy_mount()
        rev = int(os.getxattr(m.mountpoint, "user.cfgfs.revision"))
        self.assertEqual(rev, self.prefix_revision())
        cp = status(m.mountpoint)
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        self.assertEqual(cp.stderr, "")
        out = cp.stdout
        self.assertTrue(out.startswith("%s: healthy\n" % m.mountpoint), out)
        self.assertEqual(field(out, "store"), self.url())
        self.assertEqual(field(out, "member"),
                         os.getxattr(m.mountpoint, "user.cfgfs.endpoint").decode())
        self.assertEqual(field(out, "connected"), "yes")
        self.assertTrue(field(out, "revision").startswith("%d (" % rev), out)
        self.assertNotIn("unknown", field(out, "revision"))
        self.assertEqual(field(out, "keys"), "3")
        self.assertEqual(field(out, "pending"), "0")
        self.assertEqual(field(out, "refused"), "0 since mounted")
        self.assertEqual(field(out, "last error"), "none")

        cp, doc = status_json(m.mountpoint)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertTrue(doc["healthy"])
        self.assertEqual(len(doc["mounts"]), 1)
        s = doc["mounts"][0]
        want = {"mountpoint": m.mountpoint, "healthy": True, "problems": [],
                "daemon": "running", "error": None, "url": self.url(), "connected": True,
                "disconnected_since": None, "revision": rev, "keys": 3, "pending": 0,
                "refused": 0, "rejected": [], "last_error": None}
        self.assertEqual({k: s.get(k) for k in want}, want)
        self.assertGreaterEqual(s["store_revision"], rev)
        self.assertEqual(s["behind"], max(0, s["store_revision"] - rev))

        # A change shows in the counts; no argument means every cfgfs mount.
        self.store.put(self.key("d"), "d\n")
        self.wait_until(lambda: status_json(m.mountpoint)[1]["mounts"][0]["keys"] == 4,
                        RECONNECT, what="4 keys")
        cp, doc = status_json()
        self.assertIn(m.mountpoint, [x["mountpoint"] for x in doc["mounts"]])

    def test_store_down_is_disconnected_and_exit_1(self):
        m = self.healthy_mount()
        self.assertEqual(status(m.mountpoint).returncode, 0)
        self.store_server.stop(keep_data=True)
        self.wait_until(lambda: status(m.mountpoint).returncode == 1, RECONNECT,
                        interval=0.1, what="status to say unhealthy")
        cp = status(m.mountpoint)
        self.assertIn("unhealthy (disconnected)", cp.stdout.splitlines()[0])
        self.assertRegex(field(cp.stdout, "connected"), r"^no, since \d{4}-\d\d-\d\d ")
        self.assertIn("unknown while disconnected", field(cp.stdout, "revision"))
        self.assertNotEqual(field(cp.stdout, "last error"), "none")
        cp, doc = status_json(m.mountpoint)
        self.assertEqual(cp.returncode, 1)
        s = doc["mounts"][0]
        self.assertFalse(doc["healthy"])
        self.assertEqual((s["connected"], s["problems"], s["behind"]),
                         (False, ["disconnected"], None))
        self.assertRegex(s["disconnected_since"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertTrue(s["last_error"]["message"], s)
        # Files are still served meanwhile, and the mount heals by itself.
        self.assertEqual(read_file(m.path("a")), b"a\n")
        self.store_server.start()
        self.wait_until(lambda: status(m.mountpoint).returncode == 0, RECONNECT,
                        interval=0.1, what="status to say healthy again")

    def test_refused_commit_is_listed_until_dealt_with(self):
        m = self.healthy_mount()
        self.assertEqual(read_file(m.path("a")), b"a\n")
        fd = os.open(m.path("a"), os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, b"local\n")
            self.store.put(self.key("a"), "remote\n")
            with self.assertRaises(OSError) as cm:
                os.fsync(fd)
            self.assertEqual(cm.exception.errno, errno.ESTALE, cm.exception)
        finally:
            os.close(fd)
        kept = m.path("a.rejected")
        self.wait_until(lambda: os.path.exists(kept), 5, what=kept)
        cp = status(m.mountpoint)
        self.assertEqual(cp.returncode, 1, cp.stdout)
        self.assertIn("unhealthy (refused changes kept)", cp.stdout.splitlines()[0])
        self.assertEqual(field(cp.stdout, "refused"), "1 since mounted; bytes kept in:")
        self.assertIn("\n                %s\n" % kept, cp.stdout)
        self.assertIn("refused", field(cp.stdout, "last error"))
        cp, doc = status_json(m.mountpoint)
        s = doc["mounts"][0]
        self.assertEqual((cp.returncode, s["refused"], s["rejected"], s["problems"]),
                         (1, 1, [kept], ["refused changes kept"]))
        self.assertIn("refused", s["last_error"]["message"])
        # Merged and removed: healthy again (the count stays, as history).
        os.unlink(kept)
        cp = status(m.mountpoint)
        self.assertEqual(cp.returncode, 0, cp.stdout)
        self.assertEqual(field(cp.stdout, "refused"), "1 since mounted")

    def test_killed_daemon_is_reported_without_hanging(self):
        m = self.healthy_mount()
        m.kill_daemon(signal.SIGKILL)
        m.wait_daemon_exit()
        cp = status(m.mountpoint)
        self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
        self.assertEqual(cp.stdout.splitlines()[0],
                         "%s: unhealthy (daemon not running)" % m.mountpoint)
        self.assertIn("not connected", field(cp.stdout, "daemon"))
        self.assertEqual(field(cp.stdout, "store"), self.url())   # from mountinfo
        cp, doc = status_json(m.mountpoint)
        self.assertEqual((cp.returncode, doc["mounts"][0]["daemon"]), (1, "not running"))

    def test_hung_daemon_is_reported_within_the_time_limit(self):
        m = self.healthy_mount()
        os.kill(m.pid, signal.SIGSTOP)
        self.addCleanup(os.kill, m.pid, signal.SIGCONT)
        cp = status(m.mountpoint)
        self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
        self.assertEqual(cp.stdout.splitlines()[0],
                         "%s: unhealthy (daemon not answering)" % m.mountpoint)
        self.assertLess(cp.elapsed, ANSWER + 2.0)
        os.kill(m.pid, signal.SIGCONT)
        # Stopped for seconds, the daemon may have lost its connection (a ZooKeeper
        # session, a watch): healthy again once it is back.
        harness.wait_until(lambda: status(m.mountpoint).returncode == 0, 20,
                           what="status healthy after SIGCONT")

    def test_not_a_mount_and_bad_arguments_exit_2_with_one_line(self):
        m = self.healthy_mount()
        self.assertOneLine(status("/"), 2, "/ is not a cfgfs mount")
        self.assertOneLine(status(m.tmpdir), 2, "is not a cfgfs mount")
        self.assertOneLine(status(m.mountpoint, "/nonexistent/x"), 2,
                           "/nonexistent/x is not a cfgfs mount")
        self.assertOneLine(status("--bogus"), 2, "unknown option --bogus")
        # The same mount through a symlink and a relative path.
        link = os.path.join(m.tmpdir, "link")
        os.symlink("mnt", link)
        cp = subprocess.run([harness.cfgfs_binary(), "status", "mnt", link], cwd=m.tmpdir,
                            capture_output=True, text=True, timeout=STATUS_TIMEOUT)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout.count(": healthy"), 1, cp.stdout)

    def test_another_user_can_ask(self):
        if not shutil.which("setpriv"):
            self.skipTest("setpriv (util-linux) is not installed")
        m = self.healthy_mount(opts=["-o", "allow_other"])
        os.chmod(m.tmpdir, 0o755)
        cp = status(m.mountpoint, user="nobody")
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        self.assertEqual(field(cp.stdout, "store"), self.url())
        self.assertEqual(field(cp.stdout, "keys"), "3")
        cp, doc = status_json(user="nobody")
        self.assertIn(m.mountpoint, [x["mountpoint"] for x in doc["mounts"]])
        # Without allow_other FUSE keeps other users out: status says so, as unhealthy.
        private = self.mount()
        os.chmod(private.tmpdir, 0o755)
        cp = status(private.mountpoint, user="nobody")
        self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
        self.assertEqual(cp.stdout.splitlines()[0],
                         "%s: unhealthy (cannot read its status)" % private.mountpoint)
        self.assertIn("allow_other", field(cp.stdout, "daemon"))


def unit_lines():
    with open(UNIT) as f:
        return f.read().splitlines()


def unit_value(key):
    vals = [ln.split("=", 1)[1] for ln in unit_lines() if ln.startswith(key + "=")]
    if len(vals) != 1:
        raise AssertionError("%s: expected one %s= line, found %d" % (UNIT, key, len(vals)))
    return vals[0]


def systemd_expand(cmdline, env):
    """An Exec*= line as systemd splits it: $VAR becomes the variable's words,
    ${VAR} one word (or is removed inside nothing, like an empty $VAR)."""
    out = []
    for word in shlex.split(cmdline):
        m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if m:
            out += env.get(m.group(1), "").split()
            continue
        out.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda g: env.get(g.group(1), ""),
                          word))
    return out


def read_environment_file(path):
    env = {}
    with open(path) as f:
        for ln in f:
            ln = ln.strip()
            if ln and not ln.startswith("#"):
                k, v = ln.split("=", 1)
                env[k] = shlex.split(v)[0] if v.strip() else ""
    return env


@harness.stores("etcd")
class TestService(harness.CfgfsTestCase):

    def test_unit_file_says_what_the_service_needs(self):
        text = "\n".join(unit_lines())
        for need in ("After=network-online.target", "Wants=network-online.target",
                     "Restart=on-failure", "EnvironmentFile=/etc/cfgfs/%i.conf",
                     "WantedBy=multi-user.target", "Type=forking"):
            self.assertIn("\n" + need + "\n", "\n" + text + "\n")

    def test_systemd_analyze_verify(self):
        tool = shutil.which("systemd-analyze")
        if not tool:
            self.skipTest("systemd-analyze is not installed: the unit is not verified")
        d = tempfile.mkdtemp(prefix="cfgfs-unit-")
        self.addCleanup(shutil.rmtree, d, True)
        # The packaged path of cfgfs is not installed here: verify against the built one.
        with open(os.path.join(d, "cfgfs@.service"), "w") as f:
            f.write("\n".join(unit_lines()).replace("/usr/bin/cfgfs", harness.cfgfs_binary())
                    + "\n")
        # --man=no: the man page it names is installed by the package, not here.
        cp = subprocess.run([tool, "verify", "--man=no", os.path.join(d, "cfgfs@test.service")],
                            capture_output=True, text=True, timeout=60)
        # Lines about other units of this host are not ours to judge.
        ours = [ln for ln in (cp.stdout + cp.stderr).splitlines() if "cfgfs" in ln]
        self.assertEqual(ours, [], cp.stdout + cp.stderr)
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)

    def test_exec_start_by_hand_mounts_and_sigterm_unmounts(self):
        # systemd is not PID 1 here: do what it would, with the unit's own lines.
        self.store.put(self.key("app.conf"), "v1\n")
        m = self.new_mount()
        conf = os.path.join(m.tmpdir, "test.conf")
        with open(conf, "w") as f:
            f.write("# as /etc/cfgfs/test.conf\nURL=%s\nMOUNTPOINT=%s\n"
                    "OPTIONS=\"-o commit_delay=0.2 -o noinotify\"\n" % (self.url(), m.mountpoint))
        env = read_environment_file(conf)
        argv = systemd_expand(unit_value("ExecStart"), env)
        self.assertEqual(argv[0], "/usr/bin/cfgfs")
        self.assertEqual(argv[1:], ["-o", "commit_delay=0.2", "-o", "noinotify", self.url(),
                                    m.mountpoint])
        argv[0] = harness.cfgfs_binary()
        cp = harness.run_cfgfs(argv[1:], timeout=30)
        # Type=forking: ready when the first process exits 0, with the mount in place.
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertTrue(m.is_mounted())
        self.assertEqual(read_file(m.path("app.conf")), b"v1\n")
        self.assertEqual(status(m.mountpoint).returncode, 0)
        pid = harness.find_daemon_pid(m.mountpoint)
        self.assertIsNotNone(pid)
        # systemctl stop: SIGTERM to the service's processes.
        os.kill(pid, signal.SIGTERM)
        self.wait_until(lambda: not m.is_mounted(), 10, what="SIGTERM to unmount")
        self.wait_until(lambda: not harness._pid_alive(pid), 10, what="cfgfs to exit")
        try:   # reaped here if adopted (subreaper): a clean 0, which Restart=on-failure leaves
            _, st = os.waitpid(pid, 0)
            self.assertEqual(os.waitstatus_to_exitcode(st), 0)
        except ChildProcessError:
            pass
        # Stopping is SIGTERM alone: nothing in the unit unmounts by force.
        self.assertFalse([ln for ln in unit_lines() if "fusermount" in ln and
                          not ln.startswith("#")])

if __name__ == "__main__":
    harness.main()

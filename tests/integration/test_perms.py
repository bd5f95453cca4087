#!/usr/bin/env python3
"""Permission rules (-o perms=FILE): lines "GLOB UID:GID MODE" give owner,
group and mode by path; the last matching rule decides; directories get x
where r is given; the kernel enforces them (default_permissions) for other
users let in with allow_other; chmod or chown against a rule is EPERM; the
file is re-read on SIGHUP (a bad one is one log line, the old rules stay).
Every class runs against each store (CFGFS_STORES selects).
Run: python3 tests/integration/test_perms.py [-k name]"""

import errno
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import threading

import harness

RULES = """\
# secrets are root's alone; certificates readable by group 1234
secrets/** 0:0 0600
**/*.pem 1234:1234 0640   # a comment after a rule
"""


def as_nobody(*cmd):
    """Run cmd as uid/gid 65534; CompletedProcess with text output."""
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
                          + list(cmd), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=20, cwd="/")


def mode_owner(path):
    st = os.lstat(path)
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


@harness.all_stores
class TestPerms(harness.CfgfsTestCase):

    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="cfgfs-perms-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.rules = os.path.join(self.dir, "app.perms")
        self.write_rules(RULES)
        self.store.put(self.key("app.conf"), "port = 80\n")
        self.store.put(self.key("secrets", "db", "password"), "hunter2\n")
        self.store.put(self.key("secrets", "api.key"), "k\n")
        self.store.put(self.key("certs", "site.pem"), "PEM\n")

    def write_rules(self, text):
        tmp = self.rules + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.rename(tmp, self.rules)

    def perms_mount(self, *opts):
        o = ["-o", "perms=" + self.rules, "-o", "allow_other"]
        for x in opts:
            o += ["-o", x]
        m = self.mount(opts=o)
        os.chmod(m.tmpdir, 0o755)
        return m

    def test_rules_give_owner_group_and_mode(self):
        m = self.perms_mount()
        # Through lookups first, then through a listing (readdirplus) of a fresh directory.
        self.assertEqual(mode_owner(m.path("secrets", "db", "password")), (0o600, 0, 0))
        self.assertEqual(mode_owner(m.path("secrets")), (0o700, 0, 0))
        self.assertEqual(mode_owner(m.path("secrets", "db")), (0o700, 0, 0))
        with os.scandir(m.path("certs")) as it:
            entries = {e.name: e.stat(follow_symlinks=False) for e in it}
        pem = entries["site.pem"]
        self.assertEqual((stat.S_IMODE(pem.st_mode), pem.st_uid, pem.st_gid),
                         (0o640, 1234, 1234))
        self.assertEqual(mode_owner(m.path("certs", "site.pem")), (0o640, 1234, 1234))
        # What no rule matches keeps the default (the mounting user, 0644/0755).
        self.assertEqual(mode_owner(m.path("app.conf")), (0o644, os.getuid(), os.getgid()))
        self.assertEqual(mode_owner(m.path("certs")), (0o755, os.getuid(), os.getgid()))
        self.assertEqual(mode_owner(m.mountpoint), (0o755, os.getuid(), os.getgid()))

    def test_the_kernel_keeps_other_users_out(self):
        if not shutil.which("setpriv"):
            self.skipTest("setpriv (util-linux) is not installed")
        m = self.perms_mount()
        cp = as_nobody("cat", m.path("app.conf"))
        self.assertEqual((cp.returncode, cp.stdout), (0, "port = 80\n"), cp.stderr)
        cp = as_nobody("cat", m.path("secrets", "db", "password"))
        self.assertNotEqual(cp.returncode, 0)
        self.assertIn("Permission denied", cp.stderr)
        cp = as_nobody("ls", m.path("secrets"))
        self.assertNotEqual(cp.returncode, 0)
        self.assertIn("Permission denied", cp.stderr)
        cp = as_nobody("cat", m.path("certs", "site.pem"))
        self.assertIn("Permission denied", cp.stderr)
        # Root still reads everything.
        self.assertEqual(harness.read_file(m.path("secrets", "db", "password")), b"hunter2\n")

    def test_chmod_and_chown_against_a_rule_are_refused(self):
        m = self.perms_mount()
        pw = m.path("secrets", "db", "password")
        with self.assertRaises(OSError) as cm:
            os.chmod(pw, 0o644)
        self.assertEqual(cm.exception.errno, errno.EPERM)
        with self.assertRaises(OSError) as cm:
            os.chown(pw, 5, 5)
        self.assertEqual(cm.exception.errno, errno.EPERM)
        # Asking for what the rule gives succeeds (cp -p, install -m 0600).
        os.chmod(pw, 0o600)
        os.chown(pw, 0, 0)
        self.assertEqual(mode_owner(pw), (0o600, 0, 0))
        # Outside the rules chmod works as before.
        os.chmod(m.path("app.conf"), 0o600)
        self.assertEqual(mode_owner(m.path("app.conf"))[0], 0o600)
        self.assertEqual(harness.read_file(pw), b"hunter2\n")

    def test_new_files_follow_the_rules(self):
        m = self.perms_mount()
        self.assertEqual(mode_owner(m.path("secrets"))[0], 0o700)
        # From the store, and through the mount with a wider mode asked for.
        self.store.put(self.key("secrets", "fresh"), "x")
        self.wait_until(lambda: os.path.exists(m.path("secrets", "fresh")),
                        what="secrets/fresh appears")
        self.assertEqual(mode_owner(m.path("secrets", "fresh")), (0o600, 0, 0))
        fd = os.open(m.path("secrets", "local"), os.O_CREAT | os.O_WRONLY, 0o666)
        try:
            self.assertEqual(stat.S_IMODE(os.fstat(fd).st_mode), 0o600)
        finally:
            os.close(fd)
        os.mkdir(m.path("secrets", "sub"), 0o777)
        self.assertEqual(mode_owner(m.path("secrets", "sub")), (0o700, 0, 0))

    def test_sighup_rereads_the_rules(self):
        m = self.perms_mount()
        pw = m.path("secrets", "db", "password")
        conf = m.path("app.conf")
        self.assertEqual(mode_owner(pw), (0o600, 0, 0))
        self.assertEqual(mode_owner(conf)[0], 0o644)
        # Attributes the kernel holds (for a day) must go: polled, not slept on.
        self.write_rules("secrets/** 0:1234 0640\n*.conf 0:0 0400\n")
        os.kill(m.pid, signal.SIGHUP)
        self.wait_equal(lambda: mode_owner(pw), (0o640, 0, 1234), what="password after SIGHUP")
        self.wait_equal(lambda: mode_owner(conf), (0o400, 0, 0), what="app.conf after SIGHUP")
        self.assertEqual(mode_owner(m.path("secrets")), (0o750, 0, 1234))
        self.wait_until(lambda: "2 permission rules" in m.log_tail(), what="reload logged")
        # A file that does not parse: one line naming it and the line, the rules stay.
        self.write_rules("secrets/** 0:0 0600\nbroken line\n")
        os.kill(m.pid, signal.SIGHUP)
        self.wait_until(lambda: "line 2: expected GLOB UID:GID MODE" in m.log_tail(),
                        what="the bad rules file logged")
        self.assertIn(self.rules, m.log_tail())
        self.assertIn("the 2 rules in force stay", m.log_tail())
        self.assertTrue(m.daemon_alive() and m.is_mounted())
        self.assertEqual(mode_owner(pw), (0o640, 0, 1234))
        self.assertEqual(harness.read_file(conf), b"port = 80\n")

    def test_views_are_no_more_readable_than_what_they_show(self):
        m = self.perms_mount("views")
        # The root's views show secrets (root's, 0600): only root may read them.
        self.assertEqual(mode_owner(m.path("%#json")), (0o400, 0, 0))
        # certs/ holds only site.pem (1234:1234 0640).
        self.assertEqual(mode_owner(m.path("certs", "%#env")), (0o440, 1234, 1234))
        # A directory no rule touches: as without rules.
        self.store.put(self.key("plain", "x"), "1")
        self.wait_until(lambda: os.path.exists(m.path("plain", "x")), what="plain/x")
        self.assertEqual(mode_owner(m.path("plain", "%#yaml")), (0o444, os.getuid(), os.getgid()))
        if shutil.which("setpriv"):
            cp = as_nobody("cat", m.path("%#json"))
            self.assertIn("Permission denied", cp.stderr)
            cp = as_nobody("cat", m.path("plain", "%#json"))
            self.assertEqual(cp.returncode, 0, cp.stderr)
        # New rules: the views follow at the next lookup.
        self.write_rules("secrets/** 0:0 0644\n")
        os.kill(m.pid, signal.SIGHUP)
        self.wait_equal(lambda: mode_owner(m.path("%#json")), (0o444, 0, 0),
                        what="the root's view after SIGHUP")

    def test_sighup_without_rules_keeps_serving(self):
        # systemctl reload sends SIGHUP: it must never stop a mount (libfuse's default).
        m = self.mount()
        os.kill(m.pid, signal.SIGHUP)
        self.wait_until(lambda: "nothing to re-read" in m.log_tail(), what="SIGHUP logged")
        self.assertTrue(m.daemon_alive() and m.is_mounted())
        self.store.put(self.key("app.conf"), "port = 81\n")
        self.wait_equal(lambda: harness.read_file(m.path("app.conf")), b"port = 81\n")
        self.assertEqual(mode_owner(m.path("secrets", "api.key"))[0], 0o644)

    def test_sighup_as_soon_as_the_mount_shows(self):
        # The mount exists (in /proc/self/mounts) before cfgfs's SIGHUP handler does, and
        # libfuse's would end the mount: a reload sent in that window, here held open for
        # 300 ms, must wait for ours. (A stat of the mountpoint would wait for the window to
        # close: only the mount table is read.)
        m = self.new_mount()
        mounter = threading.Thread(
            target=m.mount, args=(self.url(),),
            kwargs={"env": {"CFGFS_FAULT_MOUNTED_DELAY_MS": "300"}})
        mounter.start()
        try:
            target = m.mountpoint
            self.wait_until(lambda: any(e[1] == target and e[2].startswith("fuse")
                                        for e in harness.mount_entries()),
                            20, interval=0.001, what="the mount in the mount table")
            os.kill(m.pid, signal.SIGHUP)
        finally:
            mounter.join(30)
        self.wait_until(lambda: "nothing to re-read" in m.log_tail(), what="SIGHUP logged")
        self.assertTrue(m.daemon_alive() and m.is_mounted())
        self.store.put(self.key("app.conf"), "port = 82\n")
        self.wait_equal(lambda: harness.read_file(m.path("app.conf")), b"port = 82\n")

    def test_bad_rules_file_is_one_line_and_nothing_mounted(self):
        cases = [
            ("missing", None, "No such file"),
            ("bad line", "ok/** 0:0 0600\nsecrets/** root 0600\n",
             "line 2: an owner that is not UID:GID"),
            ("bad mode", "a 0:0 0999\n", "line 1: a mode that is not octal"),
            ("unknown user", "a no-such-user-here:0 0600\n", "a user this host does not know"),
            ("world-writable", "a 0:0 0600\n", "writable by every user"),
        ]
        for what, text, needle in cases:
            with self.subTest(what):
                path = os.path.join(self.dir, what.replace(" ", "_"))
                if text is not None:
                    with open(path, "w") as f:
                        f.write(text)
                    os.chmod(path, 0o666 if what == "world-writable" else 0o644)
                m = self.new_mount()
                cp = m.run_background(self.url(), ["-o", "perms=" + path])
                line = self.assertOneLineError(cp, needle)
                self.assertIn(path, line)
                self.assertFalse(m.is_mounted())
        cp = self.new_mount().run_background(self.url(), ["-o", "perms="])
        self.assertOneLineError(cp, "perms=")


if __name__ == "__main__":
    harness.main()

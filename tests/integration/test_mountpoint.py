#!/usr/bin/env python3
"""What cfgfs does with its mountpoint and its command line before it mounts: a
directory with files is refused unless -o nonempty; a live cfgfs there is
refused; the dead mount of a killed cfgfs is detached and the restart mounts
(no fusermount -u by hand, nothing half-written reaches the store); an
unknown option is one line before the store is contacted.  The store does not
matter here: etcd only.
Run: python3 tests/integration/test_mountpoint.py [-k name]"""

import errno
import os
import subprocess

import harness
from harness import read_file

STARTUP = 20.0   # a refused start exits well within this


class TestMountpoint(harness.EtcdTestCase, harness.CfgfsTestCase):

    def test_nonempty_directory_is_refused_unless_asked(self):
        self.store.put(self.key("a.conf"), b"from the store\n")
        m = self.new_mount()
        with open(os.path.join(m.mountpoint, "local.txt"), "wb") as f:
            f.write(b"here before\n")
        cp = m.run_background(self.url(), timeout=STARTUP)
        self.assertOneLineError(cp, m.mountpoint, "not empty", "-o nonempty")
        self.assertFalse(m.is_mounted())
        m.mount(self.url(), ["-o", "nonempty"])
        self.assertEqual(read_file(m.path("a.conf")), b"from the store\n")
        self.assertFalse(os.path.exists(m.path("local.txt")), "the mount hides what was there")
        m.unmount()
        self.assertEqual(read_file(os.path.join(m.mountpoint, "local.txt")), b"here before\n")

    def test_a_live_cfgfs_mount_is_refused(self):
        m = self.mount()
        cp = m.run_background(self.url(), timeout=STARTUP)
        self.assertOneLineError(cp, "already a cfgfs mount", self.url())
        entries = [e for e in harness.mount_entries() if e[1] == m.mountpoint]
        self.assertEqual(len(entries), 1, "a second cfgfs was stacked: %r" % (entries,))

    def test_restart_over_the_dead_mount_of_a_killed_cfgfs(self):
        k = self.key("a.conf")
        self.store.put(k, b"v1\n")
        m = self.mount()
        self.assertEqual(read_file(m.path("a.conf")), b"v1\n")
        # A process holds a file open and has written half a save when cfgfs dies.
        f = open(m.path("a.conf"), "r+b")
        try:
            f.write(b"half")
            f.flush()
            m.kill_daemon()
            m.wait_daemon_exit()
            with self.assertRaises(OSError) as cm:
                os.stat(m.path("a.conf"))
            self.assertEqual(cm.exception.errno, errno.ENOTCONN)
            self.store.put(k, b"v2\n")   # the store moves on while nobody serves the mount
            cp = harness.run_background(self.url(), m.mountpoint, timeout=STARTUP)
            self.assertEqual(cp.returncode, 0, "restart over the dead mount: %r" % cp.stderr)
            self.assertIn("dead mount", cp.stderr)
            self.assertIn("detached", cp.stderr)
        finally:
            try:
                f.close()
            except OSError:
                pass   # the old mount is gone: its close has nobody to tell
        m._pid = harness.find_daemon_pid(m.mountpoint)   # m.close() stops the new daemon
        self.assertIsNotNone(m._pid, "no cfgfs serves %s after the restart" % m.mountpoint)
        self.assertEqual(read_file(m.path("a.conf")), b"v2\n")
        self.assertEqual(self.store.get(k)["value"], b"v2\n", "half a save reached the store")
        self.store.put(k, b"v3\n")
        harness.wait_equal(lambda: read_file(m.path("a.conf")), b"v3\n", 5.0,
                           what="a change after the restart")

    def test_unknown_option_is_one_line_before_the_store_is_asked(self):
        m = self.new_mount()
        for opts, word in ((["-o", "bogus"], '"-o bogus"'), (["-x"], '"-x"')):
            # An unreachable store: the error must be about the option, not the store.
            cp = m.run_background("etcd://127.0.0.1:1/x", opts=opts, timeout=STARTUP)
            self.assertOneLineError(cp, "unknown option", word)
            self.assertFalse(m.is_mounted())

    def test_without_syslog_the_daemon_logs_to_its_stderr(self):
        if os.path.exists("/dev/log"):
            self.skipTest("this host has syslog (/dev/log)")
        k = self.key("a.conf")
        self.store.put(k, b"v1\n")
        m = self.new_mount()
        log = os.path.join(m.tmpdir, "stderr.log")
        with open(log, "wb") as err:
            p = subprocess.run([m.binary, self.url(), m.mountpoint], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=err, env=harness.cfgfs_env(),
                               timeout=STARTUP)
        self.assertEqual(p.returncode, 0)
        m._pid = harness.find_daemon_pid(m.mountpoint)
        self.assertEqual(read_file(m.path("a.conf")), b"v1\n")   # this host reads v1
        self.store.put(k, b"v2 elsewhere\n")
        harness.wait_equal(lambda: read_file(m.path("a.conf")), b"v2 elsewhere\n", 5.0)
        # A save based on v1 after v2 arrived: refused, and the daemon says so.
        with self.assertRaises(OSError):
            with open(m.path("a.conf"), "r+b") as f:
                os.pwrite(f.fileno(), b"v3 here", 0)
                harness.read_file(m.path("a.conf"))
                self.store.put(k, b"v4 elsewhere\n")
                os.fsync(f.fileno())
        harness.wait_until(lambda: b"refused" in read_file(log), 5.0,
                           what="the refused commit in the daemon's stderr")
        self.assertIn(b"no syslog", read_file(log))


if __name__ == "__main__":
    harness.main()

#!/usr/bin/env python3
"""-o cache_file: cfgfs keeps the last known tree on disk and mounts it when
the store cannot be reached at startup (a host that boots during a store
outage still finds its configuration), then catches up when the store is
back.  Every class runs against each store (CFGFS_STORES selects).
Run: python3 tests/integration/test_cache_file.py [-k name]"""

import errno
import os
import shutil
import stat
import tempfile

import harness
from harness import read_file

SAVED = 10.0      # a change reaches the cache file within a few seconds (rate-limited)
RECONNECT = 15.0  # cfgfs reconnects to the store with backoff (up to 5 s apart)


def exists(path):
    try:
        os.stat(path)
        return True
    except FileNotFoundError:
        return False


def cache_holds(path, *values):
    """The cache file exists and holds these bytes (values are stored as they are)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return False
    return all(v in data for v in values)


@harness.all_stores
class TestCacheFile(harness.CfgfsTestCase):
    """Each test here may stop the store; setUp brings it back."""

    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="cfgfs-cache-", dir=harness.mount_base_dir())
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.cache = os.path.join(self.dir, "tree.cache")
        self.opts = ["-o", "cache_file=" + self.cache]

    def test_store_down_at_startup_mounts_the_saved_tree_then_catches_up(self):
        k, gone = self.key("db.conf"), self.key("old", "gone")
        self.store.put(k, "v1\n")
        self.store.put(gone, "g")
        m = self.mount(opts=self.opts)
        self.wait_until(lambda: cache_holds(self.cache, b"v1\n", b"g"), SAVED,
                        what="the tree in the cache file")
        st = os.stat(self.cache)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600, "values may be secrets")
        m.close()

        # Changes the cache file cannot know about, then the outage.
        self.store.put(k, "v2\n")
        self.store.delete(gone)
        self.store.put(self.key("new"), "n")
        self.store_server.stop(keep_data=True)

        m2 = self.new_mount()
        cp = m2.run_background(self.url(), self.opts, timeout=30)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertTrue(m2.is_mounted())
        self.assertIn("serving the tree saved in %s" % self.cache, cp.stderr)
        self.assertEqual(read_file(m2.path("db.conf")), b"v1\n")
        self.assertEqual(read_file(m2.path("old", "gone")), b"g")
        self.assertEqual(os.getxattr(m2.mountpoint, "user.cfgfs.connected"), b"0")
        # Nothing is acknowledged that the store did not commit.
        fd = os.open(m2.path("db.conf"), os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, b"local\n")
            with self.assertRaises(OSError) as cm:
                os.fsync(fd)
            self.assertIn(cm.exception.errno, (errno.ECONNREFUSED, errno.ETIMEDOUT,
                                               errno.EHOSTUNREACH), cm.exception)
        finally:
            os.close(fd)
        self.wait_equal(lambda: read_file(m2.path("db.conf")), b"v1\n", SAVED,
                        what="the refused change to revert")

        self.store_server.start()
        self.wait_equal(lambda: read_file(m2.path("db.conf")), b"v2\n", RECONNECT,
                        what="db.conf to catch up")
        self.wait_until(lambda: not exists(m2.path("old", "gone")), RECONNECT,
                        what="the key deleted during the outage to go")
        self.assertEqual(read_file(m2.path("new")), b"n")
        self.wait_equal(lambda: os.getxattr(m2.mountpoint, "user.cfgfs.connected"), b"1",
                        RECONNECT, what="connected")
        # The watch works, and the cache file follows.
        self.store.put(k, "v3\n")
        self.wait_equal(lambda: read_file(m2.path("db.conf")), b"v3\n", RECONNECT,
                        what="a change after the outage")
        self.wait_until(lambda: cache_holds(self.cache, b"v3\n", b"n"), SAVED,
                        what="the cache file to follow")

    def test_store_down_without_a_usable_cache_file_fails_clearly(self):
        other = self.key("elsewhere")
        self.store.put(other, "x")
        m = self.mount(prefix=self.prefix + "/other", opts=self.opts)
        self.wait_until(lambda: os.path.exists(self.cache), SAVED, what="a cache file")
        m.close()
        self.store_server.stop(keep_data=True)

        m2 = self.new_mount()
        # Another prefix's tree never stands in.
        cp = m2.run_background(self.url(), self.opts, timeout=30)
        self.assertOneLineError(cp, "cannot load", self.cache, "another prefix")
        self.assertFalse(m2.is_mounted())
        # Damage is recognized.
        with open(self.cache, "r+b") as f:
            f.seek(40)
            b = f.read(1)
            f.seek(40)
            f.write(bytes([b[0] ^ 0x55]))
        cp = m2.run_background(self.url(self.prefix + "/other"), self.opts, timeout=30)
        self.assertOneLineError(cp, "damaged")
        self.assertFalse(m2.is_mounted())
        # No file at all: the store's error and the file's.
        os.unlink(self.cache)
        cp = m2.run_background(self.url(), self.opts, timeout=30)
        self.assertOneLineError(cp, self.store_server.endpoint, self.cache,
                                "No such file or directory")
        self.assertFalse(m2.is_mounted())

    def test_cache_file_in_a_missing_directory_is_refused_at_startup(self):
        m = self.new_mount()
        bad = os.path.join(self.dir, "missing", "tree.cache")
        cp = m.run_background(self.url(), ["-o", "cache_file=" + bad], timeout=30)
        self.assertOneLineError(cp, "cache_file", bad)
        self.assertFalse(m.is_mounted())
        cp = m.run_background(self.url(), ["-o", "cache_file=" + self.dir + "/"], timeout=30)
        self.assertOneLineError(cp, "cache_file")
        self.assertFalse(m.is_mounted())

    def test_relative_path_and_local_changes_are_not_saved(self):
        # A relative path is taken from the directory cfgfs was started in
        # (the daemon itself runs in /).
        k = self.key("a")
        self.store.put(k, "store-bytes")
        m = self.new_mount()
        cwd = os.getcwd()
        os.chdir(self.dir)
        try:
            cp = m.run_background(self.url(), ["-o", "cache_file=tree.cache"], timeout=30)
        finally:
            os.chdir(cwd)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.wait_until(lambda: cache_holds(self.cache, b"store-bytes"), SAVED,
                        what="the cache file, next to where cfgfs started")
        # Scratch files and uncommitted bytes are this host's, not the store's.
        with open(m.path(".a.swp"), "wb") as f:
            f.write(b"scratch-bytes")
        self.store.put(self.key("b"), "later")
        self.wait_until(lambda: cache_holds(self.cache, b"later"), SAVED,
                        what="a later store change in the cache file")
        self.assertFalse(cache_holds(self.cache, b"scratch-bytes"))


if __name__ == "__main__":
    harness.main()

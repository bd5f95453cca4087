#!/usr/bin/env python3
"""inotify watchers (inotifywait, systemd .path units, fsnotify-based
reloaders) see changes made in the store: cfgfs replays each one through
its own mount, so the kernel reports it as it would a local save, after the
new bytes are readable, and without writing anything back to the store.
Every class runs against each store (CFGFS_STORES selects).
Run: python3 tests/integration/test_inotify.py [-k name]"""

import os

import harness
from harness import Inotify, assert_stays, read_file

FAST = 5.0
NEGATIVE = 0.6   # longer than cfgfs takes to replay a change here (milliseconds)


@harness.all_stores
class TestInotify(harness.CfgfsTestCase):

    def watcher(self):
        w = Inotify()
        self.addCleanup(w.close)
        return w

    def test_store_change_reaches_watchers_of_the_file_and_its_directory(self):
        k = self.key("db.conf")
        self.store.put(k, "v1\n")
        m = self.mount()
        p = m.path("db.conf")
        w = self.watcher()
        w.watch(m.mountpoint)
        w.watch(p)
        rev = self.store.put(k, "v2\n")
        w.wait_for(p, "", "CLOSE_WRITE", FAST)
        # A reloader that reacts to the event reads the new bytes.
        self.assertEqual(read_file(p), b"v2\n")
        w.wait_for(m.mountpoint, "db.conf", "CLOSE_WRITE", FAST)
        for flag in ("OPEN", "MODIFY"):
            self.assertTrue(w.seen(p, "", flag), "%s in %s" % (flag, w.events))
            self.assertTrue(w.seen(m.mountpoint, "db.conf", flag), "%s in %s" % (flag, w.events))
        # The replay is not a save: the store keeps exactly the remote change.
        assert_stays(lambda: self.prefix_revision() == rev, NEGATIVE,
                     what="no write-back of a replayed change")
        self.assertEqual(self.store.get(k)["value"], b"v2\n")
        self.assertEqual(harness.cfgfs_state(p), "synced")

    def test_new_key_in_a_watched_directory(self):
        self.store.put(self.key("d", "a"), "a")
        m = self.mount()
        d = m.path("d")
        w = self.watcher()
        w.watch(d)
        self.store.put(self.key("d", "new.conf"), "fresh")
        w.wait_for(d, "new.conf", "CLOSE_WRITE", FAST)
        self.assertEqual(read_file(m.path("d", "new.conf")), b"fresh")

    def test_deleted_key_tells_its_own_watchers(self):
        self.store.put(self.key("gone"), "g")
        m = self.mount()
        p = m.path("gone")
        w = self.watcher()
        w.watch(p)
        self.store.delete(self.key("gone"))
        w.wait_for(p, "", "DELETE_SELF", FAST)
        self.assertFalse(os.path.exists(p))

    def test_one_transaction_is_read_whole_after_its_events(self):
        keys = {self.key("tls", n): "old-" + n for n in ("cert.pem", "key.pem", "ca.pem")}
        self.store.put_many(keys)
        m = self.mount()
        d = m.path("tls")
        w = self.watcher()
        w.watch(d)
        self.store.txn_put_many({k: v.replace("old", "new") for k, v in keys.items()})
        for n in ("cert.pem", "key.pem", "ca.pem"):
            w.wait_for(d, n, "CLOSE_WRITE", FAST)
        # Whichever event a reloader acts on, the whole revision is there.
        for n in ("cert.pem", "key.pem", "ca.pem"):
            self.assertEqual(read_file(m.path("tls", n)), ("new-" + n).encode())
        assert_stays(lambda: all(w.count(d, n, "CLOSE_WRITE") == 1
                                 for n in ("cert.pem", "key.pem", "ca.pem")),
                     NEGATIVE, what="one replay per file of the transaction")

    def test_a_local_save_is_reported_once(self):
        # The user's own write is what watchers see; the store's echo of it
        # is not news and is not replayed.
        k = self.key("app.conf")
        self.store.put(k, "old\n")
        m = self.mount()
        p = m.path("app.conf")
        self.assertEqual(read_file(p), b"old\n")
        w = self.watcher()
        w.watch(p)
        rev = self.prefix_revision()
        with open(p, "wb") as f:
            f.write(b"new\n")
        self.wait_until(lambda: self.prefix_revision() > rev, FAST, what="the save committed")
        self.assertEqual(self.store.get(k)["value"], b"new\n")
        assert_stays(lambda: w.count(p, "", "CLOSE_WRITE") == 1, NEGATIVE,
                     what="exactly the user's own close")

    def test_no_replays_with_noinotify_or_read_only(self):
        for opts in (["-o", "noinotify"], ["-o", "ro"]):
            with self.subTest(opts=opts):
                k = self.key("x" + opts[1])
                self.store.put(k, "1")
                m = self.mount(opts=opts)
                p = m.path("x" + opts[1])
                w = self.watcher()
                w.watch(p)
                self.store.put(k, "2")
                self.wait_equal(lambda: read_file(p), b"2", FAST, what="the change")
                # (Reading it shows as OPEN, ACCESS, CLOSE_NOWRITE.)
                assert_stays(lambda: not any({"MODIFY", "CLOSE_WRITE"} & f
                                             for _, _, f in w.poll()),
                             NEGATIVE, what="no modification reported")
                m.close()


if __name__ == "__main__":
    harness.main()

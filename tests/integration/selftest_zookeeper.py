#!/usr/bin/env python3
"""Self-test of servers/zookeeper.py: needs ZooKeeper (Debian's "zookeeper"
package and java), not cfgfs nor FUSE.  Checks the store-module contract
(as servers/__init__.py would, were "zookeeper" in STORE_MODULES), every
ZookeeperClient method against a real standalone server, the limits as
measured, and a three-member ensemble (failover, stop, kill, pause).
Exit status as harness.main(): 0 pass, 1 failure, 77 skipped (ZooKeeper is
not installed).  Run: python3 tests/integration/selftest_zookeeper.py [-k name]"""

import importlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import unittest

import harness
import servers
from servers import base
from servers import zookeeper as zk

HERE = os.path.dirname(os.path.abspath(__file__))


def zookeeper_missing():
    """Why ZooKeeper cannot run here, or None."""
    java = os.environ.get("JAVA") or "java"
    if not shutil.which(java):
        return "no %s (apt-get install zookeeper)" % java
    for jar in zk.ZookeeperServer().classpath().split(":"):
        if not os.path.exists(jar):
            return "no %s (apt-get install zookeeper)" % jar
    return None


def contract_problems(mod):
    """What servers/__init__.py would object to, were mod registered."""
    problems = []
    name = mod.__name__.rsplit(".", 1)[-1]
    if mod.KIND != name:
        problems.append("KIND %r is not the module's name %r" % (mod.KIND, name))
    if not (issubclass(mod.Server, base.ServerProcess) and mod.Server.kind == mod.KIND
            and issubclass(mod.Client, base.StoreClient) and mod.Client.kind == mod.KIND
            and mod.Client.limits is mod.LIMITS):
        problems.append("Server/Client/LIMITS break the store module contract")
    if set(vars(mod.LIMITS)) != set(base.StoreLimits.FIELDS):
        problems.append("LIMITS fields differ from StoreLimits.FIELDS")
    for n in mod.__all__:
        if not hasattr(mod, n):
            problems.append("__all__ names %s, which the module lacks" % n)
        elif hasattr(harness, n) and getattr(harness, n) is not getattr(mod, n):
            problems.append("%s clashes with harness.%s" % (n, n))
    return problems


class TestModuleContract(unittest.TestCase):
    def test_module_contract(self):
        self.assertEqual(contract_problems(zk), [])
        self.assertEqual(zk.KIND, "zookeeper")
        # servers/__init__.py imports it by name, as it will once registered.
        self.assertIs(importlib.import_module("servers.zookeeper"), zk)
        self.assertIn("zookeeper", servers.STORE_MODULES)

    def test_limits_are_what_the_report_says(self):
        lim = zk.LIMITS
        self.assertEqual(lim.max_value, 1024 * 1024 - 4096)
        self.assertEqual((lim.txn_ops, lim.dir_rename_max_keys), (256, 127))
        self.assertEqual(2 * lim.dir_rename_max_keys + 1, lim.txn_ops - 1,
                         "a rename of N keys is 2N + 1 operations (directories uncounted)")
        self.assertEqual((lim.counts_writes, lim.history, lim.compaction, lim.flags,
                          lim.version_counts_puts, lim.any_key_bytes, lim.leading_slash_prefix),
                         (False,) * 7)

    def test_unstarted_server(self):
        s = zk.Server()
        self.assertIsNone(s.client_port)
        self.assertFalse(s.running)
        s.ports = [2181]
        self.assertEqual(s.url("app"), "zookeeper://127.0.0.1:2181/app")

    def test_znode_path(self):
        self.assertEqual(zk.znode_path("app/a/b"), "/app/a/b")
        self.assertEqual(zk.znode_path(b"app/h\xc3\xa9"), "/app/hé")
        for bad in ("", "/lead", "trail/", "a//b", "a/./b", "a/../b", ".", "..", "a\0b",
                    "a\tb", "a\x7fb", "a\x85b", "a\ue000b", "a\U0001F600b", "a\ufff0b",
                    b"a\xffb"):
            with self.subTest(key=bad), self.assertRaises(ValueError):
                zk.znode_path(bad)

    def test_zk_op_kinds(self):
        self.assertEqual(zk.zk_op("create", "/a", b"v")[0], zk.OP_CREATE2)
        with self.assertRaises(ValueError):
            zk.zk_op("rename", "/a")


class ZkServerCase(unittest.TestCase):
    """One standalone server per class; per test a prefix and a client."""

    server = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.server = zk.ZookeeperServer()
        cls.addClassCleanup(cls.server.close)
        t0 = time.monotonic()
        cls.server.start()
        sys.stderr.write("[standalone ZooKeeper ready in %.2fs] " % (time.monotonic() - t0))

    def setUp(self):
        if not self.server.running:      # an earlier test left it down
            self.server.start()
        self.c = self.server.client()
        self.prefix = harness.unique_prefix()

    def key(self, *parts):
        return "/".join((self.prefix,) + parts)


class TestClient(ZkServerCase):

    def test_put_get_delete(self):
        k = self.key("a", "b")
        r1 = self.c.put(k, "v1")
        got = self.c.get(k)
        self.assertEqual(got, {"key": k.encode(), "value": b"v1", "create_revision": r1,
                               "mod_revision": r1, "version": 0, "lease": 0})
        self.assertEqual(self.c.revision(), r1)
        r2 = self.c.put(k, b"v2")
        self.assertEqual(r2, r1 + 1, "one transaction, one zxid (same epoch)")
        got = self.c.get(k)
        self.assertEqual((got["mod_revision"], got["create_revision"], got["version"]),
                         (r2, r1, 1))
        r3 = self.c.put(k, b"v2")
        self.assertEqual((r3, self.c.get(k)["version"]), (r2 + 1, 2),
                         "the same bytes again are a write too")
        self.assertEqual(self.c.revision(), r3)
        self.assertEqual(self.c.delete(k), 1)
        self.assertEqual(self.c.delete(k), 0)
        self.assertIsNone(self.c.get(k))
        self.assertGreater(self.c.revision(), r3, "a delete moves the revision")

    def test_revision_is_the_servers_zxid(self):
        self.c.put(self.key("k"), "v")
        self.assertEqual(self.c.revision(), self.server.zxid())

    def test_zxid_counts_refused_writes_and_sessions(self):
        # Why counts_writes is False: ZooKeeper gives these a zxid too.
        k = self.key("k")
        r = self.c.put(k, "v")
        with self.assertRaises(zk.ZookeeperError) as cm:
            self.c.znode_create(zk.znode_path(k), b"again")
        self.assertEqual(cm.exception.code, zk.NODEEXISTS)
        self.assertEqual(self.c.revision(), r + 1, "a refused create takes a zxid")
        with self.assertRaises(zk.ZookeeperError) as cm:
            self.c.znode_set(zk.znode_path(k), b"x", version=7)
        self.assertEqual(cm.exception.code, zk.BADVERSION)
        self.assertEqual(self.c.revision(), r + 2, "a refused setData takes a zxid")
        other = zk.ZookeeperClient(self.server.endpoint, private=True)
        try:
            other.get(k)
            self.assertEqual(self.c.revision(), r + 3, "a new session takes a zxid")
        finally:
            other.close()
        self.assertEqual(self.c.revision(), r + 4, "closing a session takes a zxid")
        self.assertEqual(self.c.get(k)["mod_revision"], r, "none of them is a write of k")
        # Reads take none; nor does put(), which reads before it writes.
        self.c.get(k)
        self.c.range_prefix_kvs(self.prefix + "/")
        self.assertEqual(self.c.put(self.key("new", "deep"), "x"), r + 5)

    def test_parents_are_created_and_pruned(self):
        k = self.key("a", "b", "c")
        rev = self.c.put(k, "v")
        for p in (self.prefix, self.key("a"), self.key("a", "b")):
            data, st = self.c.znode_get(zk.znode_path(p))
            self.assertEqual((data, st["czxid"]), (b"", rev), "%s made by the same txn" % p)
            self.assertIsNone(self.c.get(p), "a znode with children and no data is no key")
        # Every directory is a key too ("dir/"), as cfgfs shows it.
        self.assertEqual(self.c.range_prefix(self.prefix + "/"),
                         {k.encode(): b"v", self.key("a").encode() + b"/": b"",
                          self.key("a", "b").encode() + b"/": b""})
        # A parent with data, or with another child, stays.
        self.c.put(self.key("x"), "X")
        self.c.put(self.key("x", "y"), "Y")
        self.c.put(self.key("s", "one"), "1")
        self.c.put(self.key("s", "two"), "2")
        self.assertEqual(self.c.delete(self.key("x", "y"), prune=True), 1)
        self.assertEqual(self.c.get(self.key("x"))["value"], b"X")
        self.assertEqual(self.c.delete(self.key("s", "one"), prune=True), 1)
        self.assertIsNotNone(self.c.znode_exists(zk.znode_path(self.key("s"))))
        # The znodes that only held k go with it, in one transaction.
        before = self.c.revision()
        self.assertEqual(self.c.delete(k, prune=True), 1)
        self.assertEqual(self.c.revision(), before + 1)
        self.assertIsNone(self.c.znode_exists(zk.znode_path(self.key("a"))))
        # x had a child: it stays a directory (cfgfs's rule, zk.shape()), its data the value.
        self.assertEqual(set(self.c.range_prefix(self.prefix + "/")),
                         {self.key("x").encode(), self.key("x").encode() + b"/",
                          self.key("s").encode() + b"/", self.key("s", "two").encode()})
        self.assertEqual(self.c.delete(self.key("x"), prune=True), 1)
        self.assertEqual(self.c.delete(self.key("s", "two"), prune=True), 1)
        self.assertEqual(self.c.znode_children("/" + self.prefix)[0], [],
                         "the top-level znode (the root of the mounts) stays")
        self.assertEqual(self.c.range_prefix(self.prefix + "/"), {})
        # prune=False: the znodes of directories made on purpose stay.
        self.c.put(self.key("made", "f"), "F")
        self.assertEqual(self.c.delete(self.key("made", "f"), prune=False), 1)
        self.assertEqual(self.c.znode_get(zk.znode_path(self.key("made")))[0], b"")

    def test_key_with_children(self):
        # "k" next to "k/c": the znode /k has data and a child.
        k, kc = self.key("k"), self.key("k", "c")
        self.c.put(k, "v")
        self.c.put(kc, "w")
        self.assertEqual(self.c.get(k)["value"], b"v")
        self.assertEqual(self.c.range_prefix(self.prefix + "/"),
                         {k.encode(): b"v", k.encode() + b"/": b"", kc.encode(): b"w"})
        self.assertEqual(self.c.delete(k), 1, "deleting k empties /k, which keeps its child")
        self.assertIsNone(self.c.get(k))
        self.assertEqual(self.c.delete(k), 0)
        self.assertEqual(self.c.range_prefix(self.prefix + "/"),
                         {k.encode() + b"/": b"", kc.encode(): b"w"})
        self.assertEqual(self.c.znode_children(zk.znode_path(k))[0], ["c"])
        # A key that is also a parent in the same transaction.
        rev = self.c.txn_put_many({self.key("t", "a", "b"): "B", self.key("t", "a"): "A"})
        self.assertEqual(self.c.get(self.key("t", "a"))["value"], b"A")
        self.assertEqual(self.c.get(self.key("t", "a", "b"))["mod_revision"], rev)

    def test_odd_keys_and_values(self):
        for part in ("with space", "100%", "héllo wörld", "中文", ".x", "...", "a:b", "a\\b",
                     "*", "zookeeper", "x" * 300, "\xa0"):
            with self.subTest(key=part):
                k = self.key(part)
                self.c.put(k, b"\0v" + part.encode())
                self.assertEqual(self.c.get(k)["value"], b"\0v" + part.encode())
                self.assertEqual(self.c.get(k)["key"], k.encode())
        self.c.put(self.key("empty"), b"")
        self.assertEqual(self.c.get(self.key("empty"))["value"], b"")
        self.c.put(self.key("bin"), bytes(range(256)))
        self.assertEqual(self.c.get(self.key("bin"))["value"], bytes(range(256)))
        for part in ("x//y", ".", "..", "a/./b", "nul\0k", "dir/", "\ue000", "\U0001F600"):
            with self.subTest(key=part), self.assertRaises(ValueError):
                self.c.put(self.key(part), "v")
        with self.assertRaises(ValueError):
            self.c.put("/" + self.prefix + "/k", "leading slash")
        with self.assertRaises(ValueError):
            self.c.put(self.prefix.encode() + b"/\xff\xfe", "not UTF-8")

    def test_bad_name_matches_the_server(self):
        base_path = zk.znode_path(self.key("names"))
        self.c.put(self.key("names"), "")
        names = ["a\x00b", "a\x01b", "a\tb", "a\x1fb", "a\x7fb", "a\x80b", "a\x9fb", "a\xa0b",
                 "a\ud7ffb", "a\ue000b", "a\uf8ffb", "a\uf900b", "a\uffefb", "a\ufff0b",
                 "a\ufffdb", "a\uffffb", "a\U0001F600b", ".", "..", "...", ".x", "x.", "%",
                 "sp ace", "a\\b", "中文", "y" * 2000]
        for name in names:
            with self.subTest(name=name[:20]):
                path = base_path + "/" + name
                try:
                    self.c.znode_create(path, b"v")
                    taken = True
                    self.c.znode_delete(path)
                except zk.ZookeeperError as e:
                    self.assertEqual(e.code, zk.BADARGUMENTS, e)
                    taken = False
                self.assertEqual(taken, zk.bad_name(name) is None, zk.bad_name(name))
        # Not UTF-8: the server reads U+FFFD and refuses it.
        with self.assertRaises(zk.ZookeeperError) as cm:
            self.c.znode_create(base_path.encode() + b"/\xff\xfe", b"v")
        self.assertEqual(cm.exception.code, zk.BADARGUMENTS)

    def test_prefix_ops(self):
        for i in range(3):
            self.c.put(self.key("d", str(i)), str(i))
        self.c.put(self.prefix + "x/other", "no")    # shares the string prefix only
        self.c.put(self.key("d"), "the key d itself")
        self.assertEqual(self.c.range_prefix(self.key("d", "")),
                         {self.key("d", str(i)).encode(): str(i).encode() for i in range(3)})
        # The directories are keys too: the prefix's znode, d and the sibling's parent.
        self.assertEqual(set(self.c.range_prefix(self.prefix)),
                         {self.key("d", str(i)).encode() for i in range(3)}
                         | {self.key("d").encode(), (self.prefix + "x/other").encode(),
                            (self.prefix + "/").encode(), self.key("d").encode() + b"/",
                            (self.prefix + "x/").encode()},
                         "a plain string prefix")
        self.assertEqual(set(self.c.range_prefix(self.key("d"))),
                         {self.key("d", str(i)).encode() for i in range(3)}
                         | {self.key("d").encode(), self.key("d").encode() + b"/"})
        self.assertEqual(self.c.range_prefix(self.key("nothing", "here", "")), {})
        before = self.c.revision()
        self.assertEqual(self.c.delete_prefix(self.key("d", "")), 3)
        self.assertEqual(self.c.revision(), before + 1, "one multi")
        self.assertEqual(self.c.range_prefix(self.key("d", "")), {})
        self.assertEqual(self.c.get(self.key("d"))["value"], b"the key d itself",
                         "the key d is not under d/")
        self.assertIsNotNone(self.c.get(self.prefix + "x/other"))
        self.assertEqual(self.c.delete_prefix(self.prefix), 2)
        self.assertEqual(self.c.range_prefix(self.prefix), {})
        self.assertIsNone(self.c.znode_exists("/" + self.prefix), "the znodes that match go")
        self.assertEqual(self.c.delete_prefix(self.prefix), 0)

    def test_delete_prefix_of_many_keys(self):
        # More than one request holds: several multis, deepest znodes first.
        val = b"v" * 3000
        self.c.put_many({self.key("m", "k%04d" % i): val for i in range(600)})
        self.assertEqual(self.c.delete_prefix(self.key("m", "")), 600)
        self.assertIsNone(self.c.znode_exists(zk.znode_path(self.key("m"))))

    def test_snapshot_revision_moves_only_with_the_prefix(self):
        a = self.key("a")
        self.c.put(a, "1")
        rev0, kvs0 = self.c.range_prefix_kvs(self.prefix + "/")
        self.assertEqual(rev0, kvs0[a.encode()]["mod_revision"])
        self.c.put("other-" + self.prefix + "/x", "elsewhere")
        self.c.put(self.prefix, "the key of the prefix's znode is not under the prefix")
        self.assertEqual(self.c.range_prefix_kvs(self.prefix + "/")[0], rev0)
        r = self.c.put(a, "2")
        rev1, kvs1 = self.c.range_prefix_kvs(self.prefix + "/")
        self.assertEqual((rev1, kvs1[a.encode()]["mod_revision"]), (r, r))
        r = self.c.put(self.key("d", "e"), "new")
        self.assertEqual(self.c.range_prefix_kvs(self.prefix + "/")[0], r)
        self.c.delete(self.key("d", "e"), prune=True)
        rev2, kvs2 = self.c.range_prefix_kvs(self.prefix + "/")
        self.assertEqual(rev2, self.c.revision(), "a delete moves it (the parent's pzxid)")
        self.assertEqual(set(kvs2), {a.encode()})
        self.c.delete_prefix("other-" + self.prefix + "/")
        # What a tree too big for one multiRead gets: the same, read twice.
        self.c.put(self.key("x", "y", "z"), "deep")
        self.assertEqual(self.c._double_collect(self.prefix + "/"),
                         self.c.range_prefix_kvs(self.prefix + "/"))
        got = self.c.multi_read([zk.znode_path(self.key("x")), "/no/such"])
        self.assertEqual(list(got), [zk.znode_path(self.key("x"))])
        # x was made as y's parent: null data, a directory.
        self.assertEqual(got[zk.znode_path(self.key("x"))][0::2], (None, ["y"]))

    def test_snapshot_is_consistent_while_a_multi_writer_runs(self):
        # Two keys always written together by another session: a snapshot
        # that shows them different is torn.
        keys = [self.key("tls", "cert"), self.key("tls", "key")]
        self.c.txn_put_many({k: "0" for k in keys})
        writer = zk.ZookeeperClient(self.server.endpoint, private=True)
        stop = threading.Event()
        written = []

        def write():
            n = 0
            while not stop.is_set():
                n += 1
                writer.txn_put_many({k: str(n) for k in keys})
                written.append(n)

        t = threading.Thread(target=write, daemon=True)
        t.start()
        try:
            seen = set()
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                rev, kvs = self.c.range_prefix_kvs(self.prefix + "/")
                vals = [kvs[k.encode()]["value"] for k in keys]
                self.assertEqual(vals[0], vals[1], "torn snapshot at %d" % rev)
                self.assertEqual(rev, kvs[keys[0].encode()]["mod_revision"])
                seen.add(vals[0])
        finally:
            stop.set()
            t.join(10)
            writer.close()
        self.assertGreater(len(written), 20)
        self.assertGreater(len(seen), 3, "the reader saw too few states")

    def test_txn_put_many(self):
        n = zk.LIMITS.txn_ops
        self.c.put(self.key("k0000"), "old")
        keys = {self.key("k%04d" % i): "v%d" % i for i in range(n)}
        rev = self.c.txn_put_many(keys)
        self.assertEqual(self.c.revision(), rev, "one zxid")
        rev_s, kvs = self.c.range_prefix_kvs(self.prefix + "/")
        self.assertEqual({kv["mod_revision"] for kv in kvs.values()}, {rev})
        self.assertEqual(rev_s, rev)
        self.assertEqual(len(kvs), n)
        self.assertEqual(kvs[self.key("k0000").encode()]["version"], 1)
        self.assertEqual(kvs[self.key("k0001").encode()]["create_revision"], rev)
        with self.assertRaises(harness.StoreError):
            self.c.txn_put_many({self.key("x%d" % i): "v" for i in range(n + 1)})
        with self.assertRaises(zk.ZookeeperError) as cm:
            self.c.txn_put_many({self.key("big%d" % i): b"b" * 300000 for i in range(4)})
        self.assertIn("jute.maxbuffer", str(cm.exception))
        self.assertEqual(self.c.revision(), rev, "nothing was sent")
        self.assertEqual(self.c.range_prefix(self.key("x")), {})

    def test_put_many_chunks(self):
        n = 2 * zk.LIMITS.txn_ops + 3
        before = self.c.revision()
        self.c.put_many({self.key("m%03d" % i): str(i) for i in range(n)})
        self.assertEqual(len(self.c.range_prefix(self.prefix + "/")), n)
        self.assertEqual(self.c.revision(), before + 3, "three multis")

    def test_flags_history_compaction(self):
        with self.assertRaises(ValueError):
            self.c.put(self.key("f"), "v", flags=1)
        with self.assertRaises(NotImplementedError):
            self.c.compact(self.c.revision())
        with self.assertRaises(NotImplementedError):
            self.c.range_prefix_kvs(self.prefix + "/", revision=1)

    def test_raw_txn(self):
        p = zk.znode_path(self.key("raw"))
        st = self.c.znode_create(p, b"1", makepath=True)
        zxid, res = self.c.txn([zk.zk_op("check", p, st["version"]),
                                zk.zk_op("set", p, b"2", st["version"])])
        self.assertEqual(res[0], (0, None))
        self.assertEqual(res[1][1]["mzxid"], zxid)
        with self.assertRaises(zk.ZookeeperError) as cm:
            self.c.txn([zk.zk_op("check", p, st["version"]), zk.zk_op("set", p, b"3")])
        self.assertEqual(cm.exception.code, zk.BADVERSION)
        self.assertEqual(cm.exception.results[1][0], -2, "the rest: RUNTIMEINCONSISTENCY")
        self.assertEqual(self.c.znode_get(p)[0], b"2")

    def test_value_limits(self):
        # The measured request limit (jute.maxbuffer = 1048575 after the
        # length), and max_value in every form a commit may take with a
        # path of 1000 bytes.
        path = zk.znode_path(self.key("p" * 1000))
        self.c.znode_create(path, b"", makepath=True)
        top = 1048555 - len(path.encode())
        sid = self.c.session.session_id
        self.c.znode_set(path, b"s" * top)
        with self.assertRaises(zk.ZookeeperError) as cm:
            self.c.znode_set(path, b"s" * (top + 1))
        self.assertIsNone(cm.exception.code, "the server closes the connection")
        self.assertEqual(len(self.c.znode_get(path)[0]), top, "the session goes on")
        self.assertEqual(self.c.session.session_id, sid)
        self.assertIn("Len error", self.server.log_tail(100))
        mv = zk.LIMITS.max_value
        big = bytes(range(256)) * (mv // 256)
        self.assertEqual(len(big), mv)
        self.c.put(self.key("p" * 1000), big)
        st = self.c.znode_get(path)[1]
        self.c.txn([zk.zk_op("check", path, st["version"]),
                    zk.zk_op("set", path, big[::-1], st["version"])])
        other = path[:-1] + "q"
        self.c.txn([zk.zk_op("create", other, big), zk.zk_op("delete", path)])
        self.assertEqual(self.c.znode_get(other)[0], big)
        self.c.znode_delete(other)
        self.c.put(self.key("p" * 1000), big)
        self.assertEqual(self.c.get(self.key("p" * 1000))["value"], big)

    def test_restart_keeps_data_zxid_and_session(self):
        k = self.key("k")
        r = self.c.put(k, "v")
        sid = self.c.session.session_id
        self.server.restart()
        self.assertEqual(self.c.revision(), r, "nothing happened (no new epoch standalone)")
        self.assertEqual(self.c.session.session_id, sid, "the session resumed")
        self.server.kill()
        self.assertFalse(self.server.running)
        self.server.start()
        self.assertEqual(self.c.get(k)["value"], b"v")
        self.assertEqual(self.c.revision(), r)

    def test_on_other_port(self):
        k = self.key("k")
        self.c.put(k, "v1")
        port = self.server.client_port
        with self.server.on_other_port() as other:
            self.assertNotEqual(other.endpoint, self.c.endpoint)
            other.put(k, "v2")
            other.delete(self.key("gone"))
            with self.assertRaises(zk.ZookeeperError):
                zk.ZookeeperClient(self.c.endpoint, timeout=1.0, private=True).get(k)
        self.assertEqual(self.server.client_port, port)
        self.assertEqual(self.c.get(k)["value"], b"v2")

    def test_pause_bounds_every_call(self):
        c = zk.ZookeeperClient(self.server.endpoint, timeout=1.0, private=True)
        self.addCleanup(c.close)
        c.put(self.key("k"), "v")
        self.server.pause()
        try:
            t0 = time.monotonic()
            with self.assertRaises(zk.ZookeeperError):
                c.get(self.key("k"))
            self.assertLess(time.monotonic() - t0, 3.0)
        finally:
            self.server.cont()
        self.assertEqual(c.get(self.key("k"))["value"], b"v")

    def test_log_and_srvr(self):
        self.assertIn("binding to port", self.server.log_tail(400))
        self.assertEqual(self.server.mode(), "standalone")
        self.assertEqual(zk.four_letter(self.server.endpoint, "ruok"), "imok")
        self.assertIn("zk_znode_count", zk.four_letter(self.server.endpoint, "mntr"))


class TestLifecycle(unittest.TestCase):
    def test_stop_removes_everything(self):
        s = zk.ZookeeperServer().start()
        tmp, endpoint = s.tmpdir, s.endpoint
        c = s.client()
        c.put("k", "v")
        session = c.session
        self.assertIn(s, base._live_servers)
        s.stop()
        self.assertFalse(os.path.exists(tmp))
        self.assertEqual((s.client_port, s.proc), (None, None))
        self.assertNotIn(s, base._live_servers)
        self.assertTrue(session.closed, "our sessions with it are closed")
        self.assertEqual(zk.four_letter(endpoint, "ruok", 0.5), "")

    def test_cleanup_at_exit_and_on_sigterm(self):
        # A process that starts servers and then fails (an exception, or
        # SIGTERM) leaves no server and no data behind.
        prog = textwrap.dedent("""
            import os, signal, sys, time
            sys.path.insert(0, %r)
            from servers import zookeeper as zk
            s = zk.ZookeeperServer().start()
            pids, dirs = [s.proc.pid], [s.tmpdir]
            if sys.argv[1] == "ensemble":
                e = zk.ZookeeperEnsemble().start()
                pids += [m.proc.pid for m in e.members]
                dirs.append(e.tmpdir)
                e.pause_member(1)
            print(" ".join(map(str, pids)), " ".join(dirs), flush=True)
            if sys.argv[1] == "sigterm":
                time.sleep(60)
            raise RuntimeError("a test failed")
            """) % HERE
        for how in ("ensemble", "sigterm"):
            with self.subTest(how=how):
                p = subprocess.Popen([sys.executable, "-c", prog, how], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
                try:
                    line = p.stdout.readline().split()
                    if how == "sigterm":
                        p.send_signal(signal.SIGTERM)
                    _, err = p.communicate(timeout=60)
                finally:
                    if p.poll() is None:
                        p.kill()
                        p.wait()
                self.assertTrue(line, err)
                pids = [int(x) for x in line if x.isdigit()]
                dirs = [x for x in line if not x.isdigit()]
                self.assertEqual(len(pids), 4 if how == "ensemble" else 1)
                self.assertNotEqual(p.returncode, 0)
                for pid in pids:
                    self.assertFalse(os.path.exists("/proc/%d" % pid) and not _zombie(pid),
                                     "server %d still runs" % pid)
                for d in dirs:
                    self.assertFalse(os.path.exists(d), d)


def _zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


class TestEnsemble(unittest.TestCase):
    """Three members; the tests leave all three serving."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ens = zk.ZookeeperEnsemble()
        cls.addClassCleanup(cls.ens.close)
        t0 = time.monotonic()
        cls.ens.start()
        sys.stderr.write("[ensemble ready in %.2fs] " % (time.monotonic() - t0))

    def setUp(self):
        for m in self.ens.members:
            if m.proc is not None:
                m.cont()
            if not m.running:
                self.ens.start_member(m.myid)
        self.ens.wait_serving(60)
        self.c = self.ens.client()
        self.prefix = harness.unique_prefix()

    def test_serving(self):
        modes = self.ens.modes()
        self.assertEqual(sorted(modes), ["follower", "follower", "leader"])
        self.assertEqual(self.ens.url("app").count(",127.0.0.1:"), 2)
        self.assertTrue(self.ens.url("app").startswith("zookeeper://127.0.0.1:"))
        r = self.c.put(self.prefix + "/k", "v")
        self.assertGreaterEqual(r >> 32, 1, "an ensemble's zxids carry its epoch")
        for m in self.ens.members:    # every member has it (after a sync)
            c = zk.ZookeeperClient(m.endpoint, private=True)
            try:
                self.assertEqual(c.get(self.prefix + "/k")["value"], b"v")
                self.assertEqual(c.revision(), self.c.revision())
            finally:
                c.close()

    def test_kill_leader(self):
        k = self.prefix + "/k"
        r1 = self.c.put(k, "1")
        old = self.ens.leader()
        t0 = time.monotonic()
        self.ens.kill_member(old)
        self.assertFalse(self.ens.member(old).running)
        rest = [m.myid for m in self.ens.members if m.myid != old]
        modes = self.ens.wait_serving(30, rest)
        took = time.monotonic() - t0
        self.assertIn("leader", modes)
        self.assertNotEqual(self.ens.leader(), old)
        r2 = self.c.put(k, "2")
        self.assertGreater(r2 >> 32, r1 >> 32, "a new leader, a new epoch")
        self.assertEqual(r2 & 0xFFFFFFFF, 1, "the first transaction of the epoch")
        self.ens.start_member(old)
        self.ens.wait_serving(30)
        c = zk.ZookeeperClient(self.ens.member(old).endpoint, private=True)
        try:
            self.assertEqual(c.get(k)["value"], b"2", "the restarted member caught up")
        finally:
            c.close()
        sys.stderr.write("[re-elected in %.2fs] " % took)

    def test_stop_and_pause_a_follower(self):
        k = self.prefix + "/k"
        f = self.ens.modes().index("follower") + 1
        self.ens.stop_member(f)
        self.assertEqual(self.ens.modes()[f - 1], None)
        self.c.put(k, "while stopped")
        self.ens.start_member(f)
        self.assertEqual(self.ens.modes()[f - 1], "follower")
        self.ens.pause_member(f)
        try:
            # A client of that member alone times out; one of the ensemble goes on.
            alone = zk.ZookeeperClient(self.ens.member(f).endpoint, timeout=1.0, private=True)
            with self.assertRaises(zk.ZookeeperError):
                alone.get(k)
            self.assertEqual(self.c.get(k)["value"], b"while stopped")
            self.c.put(k, "while paused")
        finally:
            self.ens.cont_member(f)
        self.ens.wait_serving(30)
        c = zk.ZookeeperClient(self.ens.member(f).endpoint, private=True)
        try:
            self.assertEqual(c.get(k)["value"], b"while paused")
        finally:
            c.close()

    def test_snapshot_on_a_follower_is_consistent(self):
        # The multiRead of range_prefix_kvs() on a follower, while the
        # leader commits multis of two keys: never one key without the other.
        modes = self.ens.modes()
        w = zk.ZookeeperClient(self.ens.member(modes.index("leader") + 1).endpoint, private=True)
        r = zk.ZookeeperClient(self.ens.member(modes.index("follower") + 1).endpoint,
                               private=True)
        self.addCleanup(w.close)
        self.addCleanup(r.close)
        keys = [self.prefix + "/a", self.prefix + "/b"]
        w.txn_put_many({k: "0" for k in keys})
        stop = threading.Event()
        written = []

        def write():
            while not stop.is_set():
                written.append(w.txn_put_many({k: str(len(written)) for k in keys}))

        t = threading.Thread(target=write, daemon=True)
        t.start()
        seen = set()
        try:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                _, kvs = r.range_prefix_kvs(self.prefix + "/")
                vals = [kvs[k.encode()]["value"] for k in keys]
                self.assertEqual(vals[0], vals[1], "torn snapshot on a follower")
                seen.add(vals[0])
        finally:
            stop.set()
            t.join(10)
        self.assertGreater(len(seen), 3, "the reader saw too few states")

    def test_pause_the_leader(self):
        k = self.prefix + "/k"
        old = self.ens.leader()
        # A client whose session lives on the leader: the case to survive.
        members = self.ens.members
        c = zk.ZookeeperClient(",".join([members[old - 1].endpoint] +
                                        [m.endpoint for m in members if m.myid != old]))
        self.addCleanup(c.close)
        c.put(k, "before")
        self.ens.pause_member(old)
        try:
            t0 = time.monotonic()
            harness.wait_until(lambda: self.ens.leader() not in (None, old), 30,
                               what="another leader")
            sys.stderr.write("[paused leader replaced in %.2fs] " % (time.monotonic() - t0))
            # The paused member accepts and never answers: a call times out,
            # drops that connection, and the next goes to the next member
            # (putting "v" twice is one state).
            harness.wait_until(lambda: c.put(k, "v"), 30, interval=0.05,
                               what="a write while the old leader is paused")
        finally:
            self.ens.cont_member(old)
        self.ens.wait_serving(60)
        self.assertEqual(self.c.get(k)["value"], b"v")


if __name__ == "__main__":
    why = zookeeper_missing()
    if why:
        sys.stderr.write("selftest_zookeeper: skipped: %s\n" % why)
        sys.exit(harness.EXIT_SKIP)
    harness.main()

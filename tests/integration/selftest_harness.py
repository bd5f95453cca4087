#!/usr/bin/env python3
"""Self-test of the integration harness: needs etcd and Consul, not cfgfs nor
FUSE."""

import os
import socket
import sys
import tempfile
import types
import unittest
from unittest import mock

import harness
from harness import ConsulServer, EtcdError, EtcdServer


class TestUtilities(unittest.TestCase):
    def test_free_port_is_bindable(self):
        port = harness.free_port()
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))

    def test_free_ports_distinct(self):
        ports = harness.free_ports(4)
        self.assertEqual(len(set(ports)), 4)

    def test_wait_until_returns_value(self):
        calls = []

        def pred():
            calls.append(1)
            return len(calls) if len(calls) >= 3 else 0

        self.assertEqual(harness.wait_until(pred, timeout=1), 3)

    def test_wait_until_timeout_names_what_and_last_value(self):
        with self.assertRaises(AssertionError) as cm:
            harness.wait_until(lambda: [], timeout=0.05, what="the thing")
        self.assertIn("the thing", str(cm.exception))
        self.assertIn("last value: []", str(cm.exception))

    def test_wait_until_reports_last_exception(self):
        def pred():
            raise FileNotFoundError("nope")

        with self.assertRaises(AssertionError) as cm:
            harness.wait_until(pred, timeout=0.05, what="file")
        self.assertIn("FileNotFoundError", str(cm.exception))

    def test_wait_equal_message(self):
        with self.assertRaises(AssertionError) as cm:
            harness.wait_equal(lambda: b"old", b"new", timeout=0.05, what="content")
        self.assertIn("b'old'", str(cm.exception))

    def test_prefix_end(self):
        self.assertEqual(harness.prefix_end(b"a/"), b"a0")
        self.assertEqual(harness.prefix_end(b"a\xff"), b"b")
        self.assertEqual(harness.prefix_end(b"\xff\xff"), b"\0")

    def test_base_dir_not_under_tmp(self):
        if "CFGFS_TEST_DIR" not in os.environ:
            self.assertFalse(os.path.realpath(harness.mount_base_dir()).startswith("/tmp"))


class TestEtcd(harness.EtcdTestCase):
    def test_put_get_delete(self):
        k = self.key("a", "b")
        r1 = self.etcd.put(k, "v1")
        got = self.etcd.get(k)
        self.assertEqual(got["value"], b"v1")
        self.assertEqual(got["key"], k.encode())
        self.assertEqual(got["mod_revision"], r1)
        self.assertEqual(got["create_revision"], r1)
        self.assertEqual(got["version"], 1)
        r2 = self.etcd.put(k, b"v2")
        self.assertEqual(r2, r1 + 1)
        got = self.etcd.get(k)
        self.assertEqual((got["mod_revision"], got["create_revision"], got["version"]),
                         (r2, r1, 2))
        self.assertEqual(self.etcd.revision(), r2)
        self.assertEqual(self.etcd.delete(k), 1)
        self.assertEqual(self.etcd.delete(k), 0)
        self.assertIsNone(self.etcd.get(k))

    def test_binary_empty_and_utf8(self):
        kb = self.key(b"bin\x00\xff")
        self.etcd.put(kb, bytes(range(256)))
        self.assertEqual(self.etcd.get(kb)["value"], bytes(range(256)))
        self.etcd.put(self.key("empty"), "")
        self.assertEqual(self.etcd.get(self.key("empty"))["value"], b"")
        self.etcd.put(self.key("héllo wörld"), "ü")
        self.assertEqual(self.etcd.get(self.key("héllo wörld"))["value"], "ü".encode())

    def test_prefix_ops(self):
        for i in range(3):
            self.etcd.put(self.key("d", str(i)), str(i))
        self.etcd.put(self.prefix + "x/other", "no")   # shares the string prefix only
        self.assertEqual(self.etcd.range_prefix(self.key("d", "")),
                         {self.key("d", str(i)).encode(): str(i).encode() for i in range(3)})
        self.assertEqual(self.etcd.delete_prefix(self.key("d", "")), 3)
        self.assertEqual(self.etcd.range_prefix(self.key("d", "")), {})
        self.assertIsNotNone(self.etcd.get(self.prefix + "x/other"))

    def test_txn_put_many_is_one_revision(self):
        before = self.etcd.revision()
        keys = {self.key("cert"): "c", self.key("key"): "k", self.key("ca"): b"\x00"}
        rev = self.etcd.txn_put_many(keys)
        self.assertEqual(rev, before + 1)
        self.assertEqual(self.etcd.revision(), before + 1)
        for k, v in keys.items():
            got = self.etcd.get(k)
            self.assertEqual(got["value"], harness._b(v))
            self.assertEqual(got["mod_revision"], rev)

    def test_raw_txn_compare(self):
        k = self.key("c")
        rev = self.etcd.put(k, "v1")
        out = self.etcd.txn([harness.compare(k, "MOD", rev)], [harness.op_put(k, "v2")],
                            [])
        self.assertTrue(out.get("succeeded"))
        out = self.etcd.txn([harness.compare(k, "VALUE", "v1")], [harness.op_put(k, "v3")],
                            [harness.op_delete(k)])
        self.assertFalse(out.get("succeeded", False))   # failed txn omits the field
        self.assertIsNone(self.etcd.get(k))

    def test_compaction(self):
        k = self.key("k")
        r1 = self.etcd.put(k, "old")
        r2 = self.etcd.put(k, "new")
        self.assertEqual(self.etcd.get(k, revision=r1)["value"], b"old")
        self.etcd.compact(r2)
        with self.assertRaises(EtcdError) as cm:
            self.etcd.get(k, revision=r1)
        self.assertIn("compacted", str(cm.exception))
        self.assertEqual(self.etcd.get(k)["value"], b"new")


class TestEtcdLifecycle(unittest.TestCase):
    def test_restart_keeps_data_and_ports_and_stop_cleans(self):
        with EtcdServer() as srv:
            tmp, endpoint = srv.tmpdir, srv.endpoint
            self.assertTrue(os.path.isdir(tmp))
            self.assertFalse(tmp.startswith("/var/tmp"))
            self.assertEqual(srv.url("app"), "etcd://%s/app" % endpoint)
            c = srv.client()
            rev = c.put("k", "v")
            srv.restart()
            self.assertEqual(srv.endpoint, endpoint)
            self.assertEqual(c.get("k")["value"], b"v")
            self.assertEqual(c.revision(), rev)
            srv.kill()
            self.assertFalse(srv.running)
            with self.assertRaises(OSError):
                c.revision()
            srv.start()
            self.assertEqual(srv.endpoint, endpoint)
            self.assertEqual(c.get("k")["value"], b"v")
            with srv.on_other_port() as other:
                self.assertNotEqual(other.endpoint, endpoint)
                with self.assertRaises(OSError):
                    c.revision()
                other.put("k", "v2")
            self.assertEqual(srv.endpoint, endpoint)
            self.assertEqual(c.get("k")["value"], b"v2")
            srv.stop()
            self.assertFalse(srv.running)
            self.assertFalse(os.path.exists(tmp), "stop() must remove the temp dir")
            self.assertNotIn(srv, harness._live_servers)

    def test_start_failure_includes_log(self):
        srv = EtcdServer()
        self.addCleanup(srv.close)
        srv.client_port, srv.peer_port = harness.free_ports(2)
        # Occupy the client port: a restart on fixed ports can never bind.
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
            s.bind(("127.0.0.1", srv.client_port))
            s.listen()
            srv.tmpdir = tempfile.mkdtemp(prefix="cfgfs-etcd-")
            with self.assertRaises(RuntimeError) as cm:
                srv.start()
        self.assertIn("address already in use", str(cm.exception))


@harness.all_stores
class TestStoreClient(harness.StoreTestCase):
    """What the tests rely on, on every store."""

    def test_put_get_delete(self):
        k = self.key("a", "b")
        r1 = self.store.put(k, "v1")
        got = self.store.get(k)
        self.assertEqual((got["key"], got["value"]), (k.encode(), b"v1"))
        self.assertEqual((got["mod_revision"], got["create_revision"]), (r1, r1))
        r2 = self.store.put(k, b"v2")
        self.assertGreater(r2, r1)
        got = self.store.get(k)
        self.assertEqual((got["mod_revision"], got["create_revision"]), (r2, r1))
        self.assertEqual(self.store.revision(), r2)
        self.assertEqual(self.store.delete(k), 1)
        self.assertEqual(self.store.delete(k), 0)
        self.assertIsNone(self.store.get(k))
        self.assertGreater(self.store.revision(), r2, "a delete moves the revision")

    def test_odd_keys_and_values(self):
        odd = ("x//y", ".", "..", "a/./b", "/lead", "nul\0k", "dir/")
        for part in odd + ("100%", "ü ö"):
            if part in odd and not self.limits.odd_key_segments:
                continue   # no such key (ZooKeeper); "dir/" is a directory there
            with self.subTest(key=part):
                k = self.key(part)
                self.store.put(k, b"\0v" + part.encode())
                self.assertEqual(self.store.get(k)["value"], b"\0v" + part.encode())
        self.store.put(self.key("empty"), b"")
        self.assertEqual(self.store.get(self.key("empty"))["value"], b"")

    def test_prefix_ops(self):
        for i in range(3):
            self.store.put(self.key("d", str(i)), str(i))
        self.store.put(self.prefix + "x/other", "no")   # shares the string prefix only
        self.assertEqual(self.store.range_prefix(self.key("d", "")),
                         {self.key("d", str(i)).encode(): str(i).encode() for i in range(3)})
        want = {self.key("d", str(i)).encode() for i in range(3)} | {
            (self.prefix + "x/other").encode()}
        if self.limits.dirs_are_keys:
            want |= {(self.prefix + "/").encode(), self.key("d").encode() + b"/",
                     (self.prefix + "x/").encode()}
        self.assertEqual(set(self.store.range_prefix(self.prefix)), want, "a plain string prefix")
        self.assertEqual(self.store.delete_prefix(self.key("d", "")), 3)
        self.assertEqual(self.store.range_prefix(self.key("d", "")), {})
        self.assertIsNotNone(self.store.get(self.prefix + "x/other"))

    def test_snapshot_revision_moves_only_with_the_prefix(self):
        self.store.put(self.key("a"), "1")
        rev0, kvs0 = self.store.range_prefix_kvs(self.prefix + "/")
        self.assertEqual(rev0, kvs0[self.key("a").encode()]["mod_revision"])
        self.store.put(self.key("a"), "2")
        rev1, kvs1 = self.store.range_prefix_kvs(self.prefix + "/")
        self.assertEqual(rev1, kvs1[self.key("a").encode()]["mod_revision"])
        self.assertGreater(rev1, rev0)

    def test_txn_put_many_is_one_revision(self):
        keys = {self.key("k%d" % i): "v%d" % i for i in range(self.limits.txn_ops)}
        rev = self.store.txn_put_many(keys)
        kvs = self.store.range_prefix_kvs(self.prefix + "/")[1]
        self.assertEqual({kv["mod_revision"] for kv in kvs.values()}, {rev})
        self.assertEqual(len(kvs), self.limits.txn_ops)
        with self.assertRaises(harness.StoreError):
            self.store.txn_put_many({self.key("x%d" % i): "v" for i in range(
                self.limits.txn_ops + 1)})

    def test_put_many_chunks(self):
        n = 2 * self.limits.txn_ops + 3
        self.store.put_many({self.key("m%03d" % i): str(i) for i in range(n)})
        self.assertEqual(len(self.store.range_prefix(self.prefix + "/")), n)

    def test_flags(self):
        if not self.limits.flags:
            with self.assertRaises(ValueError):
                self.store.put(self.key("f"), "v", flags=1)
            return
        self.store.put(self.key("f"), "v", flags=7)
        self.assertEqual(self.store.get(self.key("f"))["flags"], 7)
        self.assertTrue(self.store.put_plain(self.key("g"), b"w", "flags=42"))
        self.assertEqual(self.store.get(self.key("g"))["flags"], 42)
        self.assertEqual(self.put_flagged(self.key("h"), "x"),
                         self.store.get(self.key("h"))["mod_revision"])
        self.assertEqual(self.store.get(self.key("h"))["flags"], harness.EDIT_FLAGS)


class TestConsulSpecifics(harness.ConsulTestCase):
    def test_failed_check_changes_no_revision(self):
        k = self.key("c")
        rev = self.store.put(k, "v")
        status, out = self.store.txn([harness.consul_op("cas", k, "x", index=rev - 1)],
                                     ok=(200, 409))
        self.assertEqual(status, 409, out)
        self.assertEqual(self.store.revision(), rev)
        self.assertEqual(self.store.get(k)["value"], b"v")

    def test_url_safety(self):
        self.assertTrue(harness.consul_url_safe("a/b c/%/ü/"))
        for k in ("/a", "a//b", "a/./b", "a/..", ".", "a\0b", "a\x7fb"):
            self.assertFalse(harness.consul_url_safe(k), k)
        with self.assertRaises(ValueError):
            self.store.put(b"\xff", "v")   # JSON keys are UTF-8

    def test_no_history(self):
        with self.assertRaises(NotImplementedError):
            self.store.compact(1)
        with self.assertRaises(NotImplementedError):
            self.store.range_prefix_kvs("x/", revision=1)


class TestConsulLifecycle(unittest.TestCase):
    def test_restart_keeps_data_and_ports_and_stop_cleans(self):
        with ConsulServer() as srv:
            tmp, endpoint = srv.tmpdir, srv.endpoint
            self.assertTrue(os.path.isdir(tmp))
            self.assertEqual(srv.url("app"), "consul://%s/app" % endpoint)
            c = srv.client()
            rev = c.put("k", "v")
            srv.restart()
            self.assertEqual(srv.endpoint, endpoint)
            self.assertEqual(c.get("k")["value"], b"v")
            self.assertEqual(c.get("k")["mod_revision"], rev)
            self.assertEqual(c.revision(), rev, "restart (and its probe) wrote nothing")
            srv.kill()
            self.assertFalse(srv.running)
            with self.assertRaises(OSError):
                c.revision()
            srv.start()
            self.assertEqual(c.get("k")["value"], b"v")
            with srv.on_other_port() as other:
                self.assertNotEqual(other.endpoint, endpoint)
                with self.assertRaises(OSError):
                    c.revision()
                other.put("k", "v2")
            self.assertEqual(srv.endpoint, endpoint)
            self.assertEqual(c.get("k")["value"], b"v2")
            srv.stop()
            self.assertFalse(srv.running)
            self.assertFalse(os.path.exists(tmp), "stop() must remove the temp dir")
            self.assertNotIn(srv, harness._live_servers)

    def test_two_side_by_side_and_acl(self):
        with ConsulServer() as a, ConsulServer(acl_master_token="root-token") as b:
            a.client().put("k", "a")
            b.client().put("k", "b")
            self.assertEqual((a.client().get("k")["value"], b.client().get("k")["value"]),
                             (b"a", b"b"))
            anon = harness.ConsulClient(b.endpoint)
            with self.assertRaises(harness.ConsulError) as cm:
                anon.put("k", "x")
            self.assertIn("Permission denied", str(cm.exception))
            ro = b.client(b.client().acl_token('key_prefix "" { policy = "read" }'))
            self.assertEqual(ro.get("k")["value"], b"b")
            with self.assertRaises(harness.ConsulError):
                ro.put("k", "x")


class TestStoreParametrization(unittest.TestCase):
    def make_module(self, stores_env):
        mod = types.ModuleType("fake_tests")
        sys.modules[mod.__name__] = mod
        self.addCleanup(sys.modules.pop, mod.__name__)
        with mock.patch.dict(os.environ, {"CFGFS_STORES": stores_env}):
            class TestThing(harness.StoreTestCase):
                def test_a(self):
                    pass
            TestThing.__module__ = mod.__name__
            harness.all_stores(TestThing)
            mod.TestThing = TestThing

            class TestOnly(harness.StoreTestCase):
                def test_b(self):
                    pass
            TestOnly.__module__ = mod.__name__
            harness.stores("consul")(TestOnly)
            mod.TestOnly = TestOnly
        return mod

    def test_variants_and_loader(self):
        mod = self.make_module("etcd consul")
        self.assertEqual((mod.TestThingEtcd.store_kind, mod.TestThingConsul.store_kind),
                         ("etcd", "consul"))
        self.assertIsNone(mod.TestThing.store_kind)
        self.assertFalse(hasattr(mod, "TestOnlyEtcd"))
        loader = harness._StoreLoader()
        ids = sorted(t.id() for t in _flatten(loader.loadTestsFromModule(mod)))
        self.assertEqual(ids, ["fake_tests.TestOnlyConsul.test_b",
                               "fake_tests.TestThingConsul.test_a",
                               "fake_tests.TestThingEtcd.test_a"])
        ids = sorted(t.id() for t in _flatten(loader.loadTestsFromName("TestThing.test_a", mod)))
        self.assertEqual(ids, ["fake_tests.TestThingConsul.test_a",
                               "fake_tests.TestThingEtcd.test_a"])

    def test_cfgfs_stores_selects(self):
        mod = self.make_module("etcd")
        self.assertTrue(hasattr(mod, "TestThingEtcd"))
        self.assertFalse(hasattr(mod, "TestThingConsul") or hasattr(mod, "TestOnlyConsul"))
        with mock.patch.dict(os.environ, {"CFGFS_STORES": "etcd,bogus"}):
            with self.assertRaises(RuntimeError):
                harness.selected_stores()

    def test_limits_are_consistent(self):
        for kind, lim in harness.STORE_LIMITS.items():
            # dir rename: N checks + N puts + 1 delete-prefix (etcd counts
            # compares and operations separately).
            n = lim.dir_rename_max_keys
            ops = (lambda k: k + 1) if kind == "etcd" else (lambda k: 2 * k + 1)
            self.assertLessEqual(ops(n), lim.txn_ops, kind)
            self.assertGreater(ops(n + 1), lim.txn_ops, kind)


def _flatten(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from _flatten(t)
        else:
            yield t


class TestFuseProbe(unittest.TestCase):
    def test_probe_and_exit_status(self):
        reason = harness.fuse_unusable_reason()
        self.assertTrue(reason is None or isinstance(reason, str))


if __name__ == "__main__":
    harness.main()

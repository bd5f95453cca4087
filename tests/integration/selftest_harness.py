#!/usr/bin/env python3
"""Self-test of the integration harness: needs etcd, not cfgfs nor FUSE."""

import os
import socket
import tempfile
import unittest

import harness
from harness import EtcdError, EtcdServer


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


class TestFuseProbe(unittest.TestCase):
    def test_probe_and_exit_status(self):
        reason = harness.fuse_unusable_reason()
        self.assertTrue(reason is None or isinstance(reason, str))


if __name__ == "__main__":
    harness.main()

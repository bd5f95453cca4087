#!/usr/bin/env python3
"""Self-test of the harness's production stores (servers/tls.py,
servers/netns.py, EtcdServer(tls=, auth=), ConsulServer(tls=),
EtcdCluster): the certificates verify (and the bad ones fail the way the
tests need), the servers refuse what they should, tokens work and expire,
the cluster elects a leader, and a cut-off member really is cut off (a
linearizable read on it hangs while the others answer).  Needs etcd,
Consul and openssl; not cfgfs, not FUSE.
Run: python3 tests/integration/selftest_production.py [-k name]"""

import http.client
import json
import os
import socket
import ssl
import stat
import subprocess
import sys
import time
import unittest
import urllib.error

import harness
from harness import ClientTLS, ConsulServer, EtcdCluster, EtcdError, EtcdServer, ServerTLS


def openssl(*args):
    return subprocess.run(["openssl"] + list(args), capture_output=True, text=True, timeout=30)


class CertsTestCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        reason = harness.openssl_missing_reason()
        if reason:
            raise unittest.SkipTest(reason)
        cls.certs = harness.Certs()
        cls.addClassCleanup(cls.certs.close)
        super().setUpClass()


class TestCerts(CertsTestCase):

    def test_chains(self):
        c = self.certs
        for pair in (c.server, c.client, c.client_cn, c.wrong_name):
            r = openssl("verify", "-CAfile", c.ca.cert, pair.cert)
            self.assertEqual(r.returncode, 0, "%s: %s" % (pair.cert, r.stdout + r.stderr))
        for pair in (c.server2, c.client2):
            self.assertEqual(openssl("verify", "-CAfile", c.ca2.cert, pair.cert).returncode, 0)
        r = openssl("verify", "-CAfile", c.ca2.cert, c.server.cert)
        self.assertNotEqual(r.returncode, 0, "the second CA must not verify the first's server")

    def test_expired(self):
        r = openssl("verify", "-CAfile", self.certs.ca.cert, self.certs.expired.cert)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("certificate has expired", r.stdout + r.stderr)

    def test_subjects_and_names(self):
        self.assertNotIn("CN", self.certs.client.subject(), "the client certificate has no CN")
        self.assertIn("O = cfgfs", self.certs.client.subject())
        self.assertIn("CN = localhost", self.certs.server.subject())
        self.assertIn("CN = cfgfs-client", self.certs.client_cn.subject())
        r = openssl("x509", "-in", self.certs.server.cert, "-noout", "-ext", "subjectAltName")
        self.assertIn("IP Address:127.0.0.1", r.stdout)
        self.assertIn("DNS:localhost", r.stdout)
        r = openssl("x509", "-in", self.certs.wrong_name.cert, "-noout", "-ext", "subjectAltName")
        self.assertNotIn("127.0.0.1", r.stdout)
        self.assertIn("DNS:" + self.certs.WRONG_NAME, r.stdout)

    def test_keys_are_private(self):
        c = self.certs
        for key in (c.ca.key, c.server.key, c.client.key, c.expired.key, c.client2.key):
            self.assertEqual(stat.S_IMODE(os.stat(key).st_mode), 0o600, key)

    def test_replace_file_renames_over(self):
        d = self.certs.live_dir("selftest")
        dst = os.path.join(d, "ca.crt")
        harness.replace_file(self.certs.ca.cert, dst)
        ino = os.stat(dst).st_ino
        harness.replace_file(self.certs.ca2.cert, dst)
        self.assertNotEqual(os.stat(dst).st_ino, ino, "a new inode: rename, not rewrite")
        with open(dst) as f, open(self.certs.ca2.cert) as g:
            self.assertEqual(f.read(), g.read())
        self.assertFalse(os.path.exists(dst + ".new"))


def handshake(endpoint, tls):
    """A TLS handshake plus one request (TLS 1.3 servers refuse a missing
    client certificate after the handshake); the response's first line."""
    host, port = endpoint.rsplit(":", 1)
    ctx = tls.context()
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as s:
            s.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = s.recv(200)
            if not data:
                raise ConnectionError("closed without an answer")
            return data.split(b"\r\n")[0]


@harness.stores("etcd", "consul")  # the stores cfgfs speaks TLS to (not ZooKeeper: README)
class TestTLSServer(CertsTestCase, harness.StoreTestCase):
    """A store serving HTTPS only, client certificates required."""

    @classmethod
    def make_server(cls):
        return harness.make_server(cls.store_kind,
                                   tls=ServerTLS.of(cls.certs.server, cls.certs.client))

    def test_scheme_and_client(self):
        self.assertTrue(self.store_server.url("app").startswith(self.store_kind + "s://127.0.0.1:"))
        self.store.put(self.key("k"), "v")
        self.assertEqual(self.store.get(self.key("k"))["value"], b"v")

    def test_certificate_and_client_certificate_verify(self):
        c = self.certs
        line = handshake(self.store_server.endpoint, ClientTLS.of(c.client))
        self.assertTrue(line.startswith(b"HTTP/1.1 "), line)
        with self.assertRaises(ssl.SSLCertVerificationError) as cm:
            handshake(self.store_server.endpoint, ClientTLS.of(c.client2))
        self.assertIn("unable to get local issuer certificate", str(cm.exception))
        # No client certificate, or one from another CA: refused.
        for tls in (ClientTLS(ca=c.ca.cert), ClientTLS(c.ca.cert, c.client2.cert, c.client2.key)):
            with self.subTest(tls=tls):
                with self.assertRaises((ssl.SSLError, ConnectionError)) as cm:
                    handshake(self.store_server.endpoint, tls)
                self.assertNotIsInstance(cm.exception, ssl.SSLCertVerificationError)

    def test_no_plain_http(self):
        # Consul answers 400 "Client sent an HTTP request to an HTTPS
        # server"; etcd closes the connection.
        host, port = self.store_server.endpoint.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        try:
            conn.request("GET", "/version")
            r = conn.getresponse()
            self.assertEqual(r.status, 400)
            self.assertIn(b"HTTPS", r.read())
        except (http.client.RemoteDisconnected, ConnectionError):
            pass
        finally:
            conn.close()


@harness.stores("etcd", "consul")  # the stores cfgfs speaks TLS to (not ZooKeeper: README)
class TestTLSServerBadCertificates(CertsTestCase, harness.StoreTestCase):
    """The expired and the wrong-name certificate fail the ways the tests expect."""

    @classmethod
    def make_server(cls):
        # No client certificates: etcd's gateway presents the server's own
        # (expired) certificate to its gRPC side, which then refuses it.
        # The harness's own clients skip verification.
        return harness.make_server(cls.store_kind, tls=ServerTLS(
            cls.certs.expired.cert, cls.certs.expired.key, harness=ClientTLS(verify=False)))

    def test_expired_server_certificate(self):
        self.store.put(self.key("k"), "v")      # served, with verification off
        with self.assertRaises(ssl.SSLCertVerificationError) as cm:
            handshake(self.store_server.endpoint, ClientTLS.of(self.certs.client))
        self.assertIn("expired", str(cm.exception))


@harness.stores("etcd")
class TestEtcdAuth(harness.StoreTestCase):

    @classmethod
    def make_server(cls):
        return EtcdServer(auth=True)

    def test_root_and_tokens(self):
        root = self.store
        root.put(self.key("k"), "v")
        self.assertEqual(root.authentications, 1)
        self.assertTrue(root.token)
        anon = harness.EtcdClient(self.store_server.endpoint)
        with self.assertRaises(EtcdError) as cm:
            anon.get(self.key("k"))
        self.assertIn("user name is empty", cm.exception.message)
        bearer = harness.EtcdClient(self.store_server.endpoint, token="Bearer " + root.token)
        with self.assertRaises(EtcdError) as cm:
            bearer.get(self.key("k"))
        self.assertEqual((cm.exception.status, cm.exception.code), (401, 16), cm.exception)
        raw = harness.EtcdClient(self.store_server.endpoint, token=root.token)
        self.assertEqual(raw.get(self.key("k"))["value"], b"v")

    def test_wrong_password(self):
        c = self.store_server.client("root", "not-" + self.store_server.root_password)
        with self.assertRaises(EtcdError) as cm:
            c.get(self.key("k"))
        self.assertIn("authentication failed", cm.exception.message)

    def test_users_limited_to_a_prefix(self):
        p = self.prefix + "/"
        self.store.put(p + "k", "v")
        self.store_server.add_user(self.prefix + "-ro", "pw-ro", [(p, "READ")])
        self.store_server.add_user(self.prefix + "-rw", "pw-rw", [(p, "READWRITE")])
        ro = self.store_server.client(self.prefix + "-ro", "pw-ro")
        rw = self.store_server.client(self.prefix + "-rw", "pw-rw")
        self.assertEqual(ro.get(p + "k")["value"], b"v")
        self.assertEqual(ro.range_prefix(p), {(p + "k").encode(): b"v"})
        with self.assertRaises(EtcdError) as cm:
            ro.put(p + "k", "w")
        self.assertIn("permission denied", cm.exception.message)
        rw.put(p + "k", "w")
        self.assertEqual(ro.get(p + "k")["value"], b"w")
        with self.assertRaises(EtcdError) as cm:
            rw.get(self.prefix + "-elsewhere")
        self.assertIn("permission denied", cm.exception.message)

    def test_new_token_after_restart(self):
        c = self.store
        c.put(self.key("k"), "v")
        old = c.token
        self.store_server.restart()
        self.assertEqual(c.get(self.key("k"))["value"], b"v")   # simple tokens die with etcd
        self.assertNotEqual(c.token, old)
        self.assertEqual(c.authentications, 2)


@harness.stores("etcd")
class TestEtcdTokenTTL(harness.StoreTestCase):
    TTL = 2

    @classmethod
    def make_server(cls):
        return EtcdServer(auth=True, extra_args=["--auth-token", "simple",
                                                 "--auth-token-ttl", str(cls.TTL)])

    def test_idle_token_expires_and_client_authenticates_again(self):
        c = self.store
        c.put(self.key("k"), "v")
        stale = harness.EtcdClient(self.store_server.endpoint, token=c.token)
        # Waiting for the TTL to pass without a request IS the condition here
        # (any poll with the token would keep it alive: the TTL is sliding).
        time.sleep(self.TTL + 1.5)
        with self.assertRaises(EtcdError) as cm:
            stale.get(self.key("k"))
        self.assertEqual((cm.exception.status, cm.exception.code), (401, 16), cm.exception)
        self.assertEqual(c.get(self.key("k"))["value"], b"v")
        self.assertEqual(c.authentications, 2)


@harness.stores("etcd")
class TestEtcdAuthWithClientCertificates(CertsTestCase, harness.StoreTestCase):

    @classmethod
    def make_server(cls):
        return EtcdServer(tls=ServerTLS.of(cls.certs.server, cls.certs.client), auth=True)

    def test_certificate_without_cn_works_with_cn_is_refused(self):
        self.store.put(self.key("k"), "v")
        s = self.store_server
        cn = harness.EtcdClient(s.endpoint, tls=ClientTLS.of(self.certs.client_cn),
                                user="root", password=s.root_password)
        with self.assertRaises(EtcdError) as cm:
            cn.get(self.key("k"))
        self.assertEqual(cm.exception.status, 400)
        self.assertIn(b"CommonName", cm.exception.body)


def watch_stream(endpoint, key, timeout):
    """A /v3/watch stream of key with the require-leader header; the open
    HTTPResponse, after the "created" line."""
    host, port = endpoint.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    conn.request("POST", "/v3/watch", json.dumps({"create_request": {"key": harness.b64(key)}}),
                 {"Grpc-Metadata-Hasleader": "true", "Content-Type": "application/json"})
    r = conn.getresponse()
    first = json.loads(r.readline())
    assert first["result"].get("created"), first
    return conn, r


class TestEtcdCluster(unittest.TestCase):
    """A 3-member cluster; isolated (each member in a network namespace) where
    that works here, so that cut_off() can be tested too."""

    @classmethod
    def setUpClass(cls):
        cls.netns_reason = harness.netns_unusable_reason()
        cls.cluster = EtcdCluster(isolated=cls.netns_reason is None)
        cls.addClassCleanup(cls.cluster.close)
        t0 = time.monotonic()
        cls.cluster.start()
        sys.stderr.write("\n3-member cluster (%s) healthy after %.2f s\n"
                         % ("isolated" if cls.cluster.isolated else "loopback",
                            time.monotonic() - t0))

    def setUp(self):
        self.cluster.start()       # every member back and healthy
        self.k = harness.unique_prefix()

    def test_one_leader_and_replication(self):
        c = self.cluster
        lead = c.leader()
        self.assertIn(lead, c.members)
        self.assertEqual(len({m.member_id for m in c.members}), 3)
        self.assertTrue(c.url("app").startswith("etcd://%s,%s,%s/app" % tuple(c.endpoints)))
        c.client(c.members[0]).put(self.k, "v")
        for m in c.members:
            self.assertEqual(c.client(m).get(self.k)["value"], b"v", m)

    def test_move_leader(self):
        c = self.cluster
        for target in c.members:
            self.assertIs(c.move_leader(target), target)
            self.assertIs(c.leader(), target)

    def test_kill_and_restart(self):
        c = self.cluster
        m = c.members[1]
        m.kill()
        self.assertFalse(m.up)
        c.put(self.k, "while down", exclude=[m])
        c.start()
        self.assertEqual(c.client(m).get(self.k)["value"], b"while down")

    def test_pause_hangs_the_member(self):
        c = self.cluster
        m = c.move_leader(c.members[2])
        m.pause()
        t0 = time.monotonic()
        with self.assertRaises((OSError, EtcdError)):   # connect works, the answer never comes
            c.client(m, timeout=1.0).serializable_get(self.k)
        self.assertGreaterEqual(time.monotonic() - t0, 0.9)
        c.put(self.k, "v", exclude=[m])                 # a new leader among the others
        self.assertIsNot(c.leader(among=[x for x in c.members if x is not m]), m)
        m.resume()
        c.wait_healthy()

    def test_cut_off_member_answers_clients_but_not_linearizably(self):
        if self.netns_reason:
            self.skipTest("cannot cut a member off here: %s" % self.netns_reason)
        c = self.cluster
        for role in ("follower", "leader"):
            with self.subTest(role=role):
                c.start()
                m = c.members[0]
                c.move_leader(m if role == "leader" else c.members[1])
                c.client(m).put(self.k, "before")
                conn, watch = watch_stream(m.endpoint, self.k, timeout=15)
                try:
                    c.cut_off(m)
                    t0 = time.monotonic()
                    self.assertIn("blackhole", m.netns.routes())
                    others = [x for x in c.members if x is not m]
                    c.put(self.k, "after", exclude=[m])
                    t_put = time.monotonic() - t0
                    # Linearizable read on m: no answer (no leader, or a stale one).
                    with self.assertRaises((OSError, EtcdError)):
                        c.client(m, timeout=2.0).get(self.k)
                    # The others answer; m still answers clients from its own copy.
                    self.assertEqual(c.client(others[1]).get(self.k)["value"], b"after")
                    self.assertEqual(c.client(m).serializable_get(self.k)["value"], b"before")
                    # m's watch stream (require-leader) is ended by etcd.
                    rest = watch.read()
                    t_watch = time.monotonic() - t0
                    self.assertIn(b"no leader", rest)
                    self.assertNotIn(harness.b64("after").encode(), rest)
                    sys.stderr.write("\ncut-off %s: the majority's put took %.2f s; the cut "
                                     "member ended its require-leader watch after %.2f s\n"
                                     % (role, t_put, t_watch))
                finally:
                    conn.close()
                    c.heal(m)
                self.assertNotIn("blackhole", m.netns.routes())
                c.wait_healthy()
                self.assertEqual(c.client(m).get(self.k)["value"], b"after")

    def test_member_endpoints_are_reachable_from_here_only_through_the_bridge(self):
        if self.netns_reason:
            self.skipTest(self.netns_reason)
        # The members are not on this process's loopback.
        for m in self.cluster.members:
            self.assertFalse(m.endpoint.startswith("127."), m)
            with self.assertRaises(OSError):
                socket.create_connection(("127.0.0.1", m.client_port), timeout=1).close()


if __name__ == "__main__":
    harness.main()

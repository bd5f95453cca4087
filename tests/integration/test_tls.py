#!/usr/bin/env python3
"""TLS: cfgfs mounts a store that serves HTTPS only and asks for a client
certificate (etcds://, consuls://), with -o cacert/cert/key or etcdctl's and
consul's environment variables; a certificate that cannot be trusted (an
unknown CA, an expired certificate, the wrong name, no client certificate,
a file that cannot be read) stops it at startup with one clear line and
nothing mounted; -o insecure skips the check, with a warning; and when the
certificates are rotated on disk and the store restarts with new ones,
cfgfs reconnects without a restart.  The certificates come from a
throwaway CA (harness.Certs).  Every class runs against each store
(CFGFS_STORES selects).
Run: python3 tests/integration/test_tls.py [-k name]"""

import os
import sys
import time
import unittest

import harness
from harness import ClientTLS, ServerTLS, read_file

PROPAGATE = 5.0    # a change in the store reaches the file
RECONNECT = 15.0   # cfgfs reconnects with backoff (up to 5 s apart), the store restarts

# What cfgfs reads for each option when the option is not given.
ENV = {
    "etcd": {"cacert": "ETCDCTL_CACERT", "cert": "ETCDCTL_CERT", "key": "ETCDCTL_KEY",
             "insecure": ("ETCDCTL_INSECURE_SKIP_TLS_VERIFY", "true")},
    "consul": {"cacert": "CONSUL_CACERT", "cert": "CONSUL_CLIENT_CERT",
               "key": "CONSUL_CLIENT_KEY", "insecure": ("CONSUL_HTTP_SSL_VERIFY", "false")},
}


def tls_opts(ca=None, pair=None, *extra):
    """-o cacert=..., -o cert=... -o key=... (pair: a CertPair), -o EXTRA."""
    opts = []
    if ca:
        opts += ["-o", "cacert=" + ca]
    if pair:
        opts += ["-o", "cert=" + pair.cert, "-o", "key=" + pair.key]
    for e in extra:
        opts += ["-o", e]
    return opts


class TLSTestCase(harness.CfgfsTestCase):
    """A store serving HTTPS only, with certificates from cls.certs (made
    before the server starts).  server_tls() says which; by default the
    right server certificate and client certificates required."""

    @classmethod
    def setUpClass(cls):
        if cls.store_kind is not None:
            reason = harness.openssl_missing_reason()
            if reason:
                raise unittest.SkipTest(reason)
            cls.certs = harness.Certs()
            cls.addClassCleanup(cls.certs.close)
        super().setUpClass()

    @classmethod
    def server_tls(cls):
        return ServerTLS.of(cls.certs.server, cls.certs.client)

    @classmethod
    def make_server(cls):
        return harness.make_server(cls.store_kind, tls=cls.server_tls())

    def env(self, **kw):
        """This store's variables: env(cacert=..., cert=..., key=...)."""
        return {ENV[self.store_kind][k]: v for k, v in kw.items()}

    def endpoint_env(self):
        """The variable naming the endpoint, https:// form."""
        name = "ETCDCTL_ENDPOINTS" if self.store_kind == "etcd" else "CONSUL_HTTP_ADDR"
        return {name: "https://" + self.store_server.endpoint}

    def good_opts(self, *extra):
        return tls_opts(self.certs.ca.cert, self.certs.client, *extra)

    def assert_flows(self, m, name="flow", value=None):
        """A change in the store reaches the file `name` of mount m."""
        value = value or ("changed-%d\n" % time.monotonic_ns()).encode()
        self.store.put(self.key(name), value)
        self.wait_equal(lambda: read_file(m.path(name)), value, PROPAGATE,
                        what="a change in the store to reach %s" % name)

    def assert_startup_fails(self, opts=(), env=None, url=None, needles=(), any_of=()):
        """cfgfs refuses to start: non-zero exit, nothing mounted, and the
        last line of stderr names the problem (every word of needles and
        one of any_of, case-insensitively).  Returns that line."""
        m = self.new_mount()
        cp = m.run_background(url or self.url(), list(opts), timeout=30, env=env)
        self.assertNotEqual(cp.returncode, 0, "cfgfs should fail; stderr: %r" % cp.stderr)
        self.assertFalse(m.is_mounted(), "nothing may be mounted")
        lines = cp.stderr.strip().splitlines()
        self.assertTrue(lines, "no error message on stderr")
        last = lines[-1]
        for n in needles:
            self.assertIn(n.lower(), last.lower(), "stderr's last line should name %r: %r"
                          % (n, cp.stderr))
        if any_of:
            self.assertTrue(any(a.lower() in last.lower() for a in any_of),
                            "stderr's last line should say one of %r: %r" % (any_of, cp.stderr))
        return last


@harness.stores("etcd", "consul")  # the stores cfgfs speaks TLS to (not ZooKeeper: README)
class TestTLS(TLSTestCase):
    """The store asks for a client certificate from the same CA."""

    def test_options(self):
        k = self.key("app.conf")
        self.store.put(k, "v1\n")
        self.store.put(self.key("other"), "o\n")
        m = self.mount(opts=self.good_opts())
        self.assertTrue(m.url.startswith(self.store_kind + "s://"))
        self.assertEqual(read_file(m.path("app.conf")), b"v1\n")
        self.wait_equal(lambda: os.getxattr(m.mountpoint, "user.cfgfs.connected"), b"1",
                        PROPAGATE, what="user.cfgfs.connected")
        self.assert_flows(m, "app.conf")
        # A save reaches the store: one update.
        before = self.store_snapshot()
        with open(m.path("app.conf"), "wb") as f:
            f.write(b"saved over tls\n")
        self.assert_one_update(before, m.mountpoint, m.path("app.conf"), k, b"saved over tls\n")
        # A new key too.
        with open(m.path("new"), "wb") as f:
            f.write(b"n\n")
        self.wait_equal(lambda: (self.store.get(self.key("new")) or {}).get("value"), b"n\n",
                        PROPAGATE, what="the new key in the store")

    def test_environment(self):
        # The endpoints and certificates from etcdctl's / consul's variables.
        self.store.put(self.key("k"), "v")
        c = self.certs
        env = self.env(cacert=c.ca.cert, cert=c.client.cert, key=c.client.key)
        cases = [("%ss:///%s" % (self.store_kind, self.prefix), self.endpoint_env()),
                 # An https:// endpoint means TLS even under the plain scheme.
                 ("%s:///%s" % (self.store_kind, self.prefix), self.endpoint_env())]
        if self.store_kind == "etcd":
            # Several endpoints, comma-separated; the first one is down.
            cases.append(("etcds:///%s" % self.prefix, {"ETCDCTL_ENDPOINTS": "https://127.0.0.1:%d,"
                          "https://%s" % (harness.free_port(), self.store_server.endpoint)}))
        if self.store_kind == "consul":
            # host:port plus CONSUL_HTTP_SSL=true
            cases.append(("consul:///%s" % self.prefix,
                          {"CONSUL_HTTP_ADDR": self.store_server.endpoint,
                           "CONSUL_HTTP_SSL": "true"}))
        for url, endpoint in cases:
            with self.subTest(url=url, endpoint=endpoint):
                m = self.new_mount()
                m.mount(url, env=dict(env, **endpoint))
                self.assertEqual(read_file(m.path("k")), b"v")
                self.assert_flows(m)
                m.close()

    def test_options_win_over_environment(self):
        self.store.put(self.key("k"), "v")
        c = self.certs
        wrong = self.env(cacert=c.ca2.cert, cert=c.client2.cert, key=c.client2.key)
        m = self.mount(opts=self.good_opts(), env=wrong)
        self.assertEqual(read_file(m.path("k")), b"v")
        self.assert_flows(m)
        m.close()
        # ... and a wrong option is not saved by a right variable.
        right = self.env(cacert=c.ca.cert, cert=c.client.cert, key=c.client.key)
        self.assert_startup_fails(tls_opts(c.ca2.cert), env=right, needles=["certificate"])

    def test_unknown_ca(self):
        last = self.assert_startup_fails(tls_opts(self.certs.ca2.cert, self.certs.client),
                                         needles=["certificate", self.store_server.endpoint])
        self.assertNotIn("client certificate", last.lower(), "it is the server's that failed")

    def test_system_ca_store_is_the_default(self):
        # The throwaway CA is not in the system's store: without cacert the
        # server's certificate cannot be verified.
        self.assert_startup_fails(tls_opts(None, self.certs.client),
                                  needles=["certificate", self.store_server.endpoint])

    def test_no_client_certificate(self):
        self.assert_startup_fails(tls_opts(self.certs.ca.cert), needles=["client certificate"])

    def test_client_certificate_from_another_ca(self):
        self.assert_startup_fails(tls_opts(self.certs.ca.cert, self.certs.client2),
                                  needles=["certificate"])

    def test_unreadable_files(self):
        c = self.certs
        d = self.new_mount().tmpdir
        missing = os.path.join(d, "no-such-file.pem")
        a_dir = os.path.join(d, "a-directory.pem")
        os.mkdir(a_dir)
        not_a_key = os.path.join(d, "not-a-key.pem")
        with open(not_a_key, "w") as f:
            f.write("this is not a PEM key\n")
        os.chmod(not_a_key, 0o600)
        cases = {
            "missing cacert": (["cacert=" + missing, "cert=" + c.client.cert,
                                "key=" + c.client.key], missing),
            "missing cert": (["cacert=" + c.ca.cert, "cert=" + missing,
                              "key=" + c.client.key], missing),
            "missing key": (["cacert=" + c.ca.cert, "cert=" + c.client.cert,
                             "key=" + missing], missing),
            "key is a directory": (["cacert=" + c.ca.cert, "cert=" + c.client.cert,
                                    "key=" + a_dir], a_dir),
            "key is not a key": (["cacert=" + c.ca.cert, "cert=" + c.client.cert,
                                  "key=" + not_a_key], not_a_key),
        }
        for what, (opts, path) in cases.items():
            with self.subTest(what):
                self.assert_startup_fails([a for o in opts for a in ("-o", o)], needles=[path])
        with self.subTest("missing key from the environment"):
            self.assert_startup_fails(
                tls_opts(c.ca.cert), env=self.env(cert=c.client.cert, key=missing),
                needles=[missing])

    def test_insecure(self):
        self.store.put(self.key("k"), "v")
        c = self.certs
        # The server's CA is unknown to cfgfs; insecure mounts anyway and warns.
        m = self.mount(opts=tls_opts(c.ca2.cert, c.client, "insecure"))
        self.assertEqual(read_file(m.path("k")), b"v")
        self.assert_flows(m)
        self.assertRegex(m.log_tail(200), r"(?i)insecure|not verif",
                         "a warning that the store's certificate is not checked")
        m.close()
        name, value = ENV[self.store_kind]["insecure"]
        m = self.mount(opts=tls_opts(None, c.client), env={name: value})
        self.assertEqual(read_file(m.path("k")), b"v")
        self.assertRegex(m.log_tail(200), r"(?i)insecure|not verif")


@harness.stores("etcd", "consul")  # the stores cfgfs speaks TLS to (not ZooKeeper: README)
class TestExpiredCertificate(TLSTestCase):
    """The store's certificate expired (2020-01-02); right CA, right names.
    (No client certificates here: etcd's gateway would present the expired
    certificate to its own gRPC side, which refuses it.)"""

    @classmethod
    def server_tls(cls):
        e = cls.certs.expired
        return ServerTLS(e.cert, e.key, harness=ClientTLS(verify=False))

    def test_expired(self):
        self.assert_startup_fails(tls_opts(self.certs.ca.cert), needles=["expired"])

    def test_insecure_accepts_it(self):
        self.store.put(self.key("k"), "v")
        m = self.mount(opts=tls_opts(self.certs.ca.cert, None, "insecure"))
        self.assertEqual(read_file(m.path("k")), b"v")


@harness.stores("etcd", "consul")  # the stores cfgfs speaks TLS to (not ZooKeeper: README)
class TestCertificateName(TLSTestCase):
    """The store's certificate names only server.dc1.consul (Consul's
    convention), not 127.0.0.1 nor localhost."""

    @classmethod
    def server_tls(cls):
        return ServerTLS.of(cls.certs.wrong_name, cls.certs.client,
                            ClientTLS.of(cls.certs.client, check_hostname=False))

    def test_name_mismatch(self):
        for url in (self.url(), self.url().replace("127.0.0.1", "localhost")):
            with self.subTest(url=url):
                self.assert_startup_fails(self.good_opts(), url=url, needles=["certificate"],
                                          any_of=["name", "match"])

    @harness.only_on("consul", why="-o tls_server_name is for Consul (its certificates name "
                     "server.DC.consul, not the address)")
    def test_tls_server_name(self):
        self.store.put(self.key("k"), "v")
        m = self.mount(opts=self.good_opts("tls_server_name=" + self.certs.WRONG_NAME))
        self.assertEqual(read_file(m.path("k")), b"v")
        self.assert_flows(m)
        m.close()
        m = self.mount(opts=self.good_opts(),
                       env={"CONSUL_TLS_SERVER_NAME": self.certs.WRONG_NAME})
        self.assertEqual(read_file(m.path("k")), b"v")
        m.close()
        self.assert_startup_fails(self.good_opts("tls_server_name=other.dc1.consul"),
                                  needles=["certificate"], any_of=["name", "match"])


@harness.stores("etcd", "consul")  # the stores cfgfs speaks TLS to (not ZooKeeper: README)
class TestRotation(TLSTestCase):
    """cfgfs's cacert/cert/key and the store's certificate and key are
    files in live/ that get replaced (written next to them, renamed over)
    by ones from a new CA; the store restarts with them; cfgfs, never
    restarted, reconnects with the new files."""

    @classmethod
    def server_tls(cls):
        c = cls.certs
        cls.live = live = c.live_dir("rotation-" + cls.store_kind)
        cls.files = {name: os.path.join(live, name) for name in
                     ("ca.crt", "client.crt", "client.key", "server.crt", "server.key")}
        cls.install(c.ca.cert, c.client, c.server)
        f = cls.files
        return ServerTLS(f["server.crt"], f["server.key"], f["ca.crt"],
                         ClientTLS(f["ca.crt"], f["client.crt"], f["client.key"]))

    @classmethod
    def install(cls, ca, client, server):
        f = cls.files
        for src, dst in ((ca, "ca.crt"), (client.cert, "client.crt"),
                         (client.key, "client.key"), (server.cert, "server.crt"),
                         (server.key, "server.key")):
            harness.replace_file(src, f[dst])

    def test_rotation(self):
        c, f = self.certs, self.files
        k = self.key("k")
        self.store.put(k, "before")
        m = self.mount(opts=tls_opts(f["ca.crt"]) + ["-o", "cert=" + f["client.crt"],
                                                      "-o", "key=" + f["client.key"]])
        self.assertEqual(read_file(m.path("k")), b"before")
        self.assert_flows(m)

        self.install(c.ca2.cert, c.client2, c.server2)
        self.store_server.restart()
        t_restart = time.monotonic()
        self.store = self.store_server.client()     # the harness's client: new files too
        # The rotation is real: the old client certificate and CA are refused now.
        old_client = type(self.store)(self.store_server.endpoint,
                                      tls=ClientTLS.of(c.client, c.ca.cert), timeout=3)
        with self.assertRaises((OSError, harness.StoreError)):
            old_client.get(k)
        t0 = time.monotonic()
        self.store.put(k, "after rotation")
        self.wait_equal(lambda: read_file(m.path("k")), b"after rotation", RECONNECT,
                        what="a change after the rotation to reach the file")
        t1 = time.monotonic()
        sys.stderr.write("\n%s rotation: change readable %.2f s after the put, %.2f s after "
                         "the store was back\n" % (self.store_kind, t1 - t0, t1 - t_restart))
        self.wait_equal(lambda: os.getxattr(m.mountpoint, "user.cfgfs.connected"), b"1",
                        RECONNECT, what="connected")
        # Writes use the new files too.
        before = self.store_snapshot()
        with open(m.path("k"), "wb") as fh:
            fh.write(b"saved after rotation")
        self.assert_one_update(before, m.mountpoint, m.path("k"), k, b"saved after rotation")
        self.assertTrue(m.daemon_alive(), "the same cfgfs process serves the mount")


if __name__ == "__main__":
    harness.main()

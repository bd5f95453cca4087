#!/usr/bin/env python3
"""etcd authentication: cfgfs logs in as a user (-o username=NAME and
-o password_file=FILE, or ETCDCTL_USER / ETCDCTL_PASSWORD), with the
rights of that user's roles on the prefix only: a read-only user gets a
mount that reads and refuses saves with EACCES, a user who may not read the
prefix, a wrong password or an unreadable password file stop it at startup
with one clear line.  The password never shows: not on the command line
(-o password= is refused), not in the log, not in /proc/PID/environ once
cfgfs has started.  Tokens that expire (--auth-token-ttl) or die with a
restarted etcd are replaced without the user noticing.  With TLS and
--client-cert-auth, a client certificate without a CN works next to a
password, one with a CN is refused by etcd's gateway (cfgfs says "CN").
Consul's ACL token from CONSUL_HTTP_TOKEN_FILE, over TLS with client
certificates (the plain-HTTP token tests: test_write.py's TestConsulAcl).
Run: python3 tests/integration/test_auth.py [-k name]"""

import errno
import os
import secrets
import shutil
import tempfile
import time
import unittest

import harness
from harness import EtcdClient, EtcdError, EtcdServer, ServerTLS, read_file

PROPAGATE = 5.0    # a change in the store reaches the file
RECONNECT = 15.0   # etcd restarts, cfgfs reconnects with backoff (up to 5 s apart)


class AuthTestCase(harness.CfgfsTestCase):
    """etcd with authentication on (root: self.store).  Per test, users
    limited to this test's prefix: writer (read-write), reader (read
    only), stranger (may read another prefix only), each with a password
    file (mode 0600) in self.dir."""

    @classmethod
    def make_server(cls):
        return EtcdServer(auth=True)

    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="cfgfs-auth-", dir=harness.mount_base_dir())
        self.addCleanup(shutil.rmtree, self.dir, True)
        p = self.prefix + "/"
        self.users = {}
        for role, grants in (("writer", [(p, "READWRITE")]), ("reader", [(p, "READ")]),
                             ("stranger", [(self.prefix + "-other/", "READ")])):
            name = "%s-%s" % (self.prefix, role)
            password = "pw-%s-%s" % (role, secrets.token_hex(8))
            self.store_server.add_user(name, password, grants)
            self.users[role] = (name, password, self.password_file(role, password))

    def password_file(self, name, password):
        path = os.path.join(self.dir, name + ".password")
        with open(path, "w") as f:
            f.write(password + "\n")
        os.chmod(path, 0o600)
        return path

    def user_opts(self, role):
        name, _, path = self.users[role]
        return ["-o", "username=" + name, "-o", "password_file=" + path]

    def mount_as(self, role, opts=(), **kw):
        return self.mount(opts=self.user_opts(role) + list(opts), **kw)

    def assert_flows(self, m, name="flow"):
        value = ("changed-%d\n" % time.monotonic_ns()).encode()
        self.store.put(self.key(name), value)
        self.wait_equal(lambda: read_file(m.path(name)), value, PROPAGATE,
                        what="a change made as root to reach %s" % name)

    def save(self, path, data):
        """write + fsync + close; fsync's OSError propagates (close's too)."""
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def assert_startup_fails(self, opts=(), env=None, needles=(), url=None):
        """Non-zero exit, nothing mounted, stderr's last line names the
        problem (every needle, case-insensitively).  Returns stderr."""
        m = self.new_mount()
        cp = m.run_background(url or self.url(), list(opts), timeout=30, env=env)
        self.assertNotEqual(cp.returncode, 0, "cfgfs should fail; stderr: %r" % cp.stderr)
        self.assertFalse(m.is_mounted(), "nothing may be mounted")
        lines = cp.stderr.strip().splitlines()
        self.assertTrue(lines, "no error message on stderr")
        for n in needles:
            self.assertIn(n.lower(), lines[-1].lower(), "stderr's last line should name %r: %r"
                          % (n, cp.stderr))
        return cp.stderr


@harness.stores("etcd")
class TestAuth(AuthTestCase):

    def test_password_file(self):
        k = self.key("app.conf")
        self.store.put(k, "v1\n")
        self.store.put(self.key("other"), "o\n")
        m = self.mount_as("writer")
        self.assertEqual(read_file(m.path("app.conf")), b"v1\n")
        self.assert_flows(m)
        before = self.store_snapshot()
        with open(m.path("app.conf"), "wb") as f:
            f.write(b"v2\n")
        self.assert_one_update(before, m.mountpoint, m.path("app.conf"), k, b"v2\n")
        self.save(m.path("app.conf"), b"v3\n")
        self.assertEqual(self.store.get(k)["value"], b"v3\n")

    def test_environment(self):
        self.store.put(self.key("k"), "v")
        name, password, _ = self.users["writer"]
        cases = {
            "ETCDCTL_USER=name:password": ([], {"ETCDCTL_USER": "%s:%s" % (name, password)}),
            "ETCDCTL_USER + ETCDCTL_PASSWORD": ([], {"ETCDCTL_USER": name,
                                                     "ETCDCTL_PASSWORD": password}),
            "-o username + ETCDCTL_PASSWORD": (["-o", "username=" + name],
                                           {"ETCDCTL_PASSWORD": password}),
        }
        for what, (opts, env) in cases.items():
            with self.subTest(what):
                m = self.mount(opts=opts, env=env)
                self.assertEqual(read_file(m.path("k")), self.store.get(self.key("k"))["value"])
                self.assert_flows(m)
                self.save(m.path("k"), what.encode())
                self.assertEqual(self.store.get(self.key("k"))["value"], what.encode())
                m.close()

    def test_options_win_over_environment(self):
        self.store.put(self.key("k"), "v")
        rname, rpassword, _ = self.users["reader"]
        # The environment names the read-only user; the options the writer.
        m = self.mount_as("writer", env={"ETCDCTL_USER": "%s:%s" % (rname, rpassword)})
        self.save(m.path("k"), b"by the writer")
        self.assertEqual(self.store.get(self.key("k"))["value"], b"by the writer")
        m.close()
        # A wrong ETCDCTL_PASSWORD does not beat the password file.
        m = self.mount_as("writer", env={"ETCDCTL_PASSWORD": "wrong"})
        self.assertEqual(read_file(m.path("k")), b"by the writer")

    def test_read_only_user(self):
        k = self.key("app.conf")
        self.store.put(k, "v1\n")
        self.store.put(self.key("sub", "deep"), "d\n")
        m = self.mount_as("reader")
        p = m.path("app.conf")
        self.assertEqual(read_file(p), b"v1\n")
        self.assertEqual(read_file(m.path("sub", "deep")), b"d\n")
        rev = self.prefix_revision()
        with self.assertRaises(OSError) as cm:
            self.save(p, b"denied\n")
        self.assertEqual(cm.exception.errno, errno.EACCES, cm.exception)
        tmp = m.path(".app.conf.new")
        with open(tmp, "wb") as f:
            f.write(b"denied too\n")
        with self.assertRaises(OSError) as cm:
            os.replace(tmp, p)
        self.assertEqual(cm.exception.errno, errno.EACCES, cm.exception)
        self.assertEqual(self.prefix_revision(), rev, "nothing reached the store")
        # The mount keeps serving: the file shows the store's content, and
        # a change made as root still reaches it.
        self.wait_equal(lambda: read_file(p), b"v1\n", PROPAGATE, what="the file to revert")
        self.store.put(k, "v2 by root\n")
        self.wait_equal(lambda: read_file(p), b"v2 by root\n", PROPAGATE,
                        what="root's change to reach the file")
        self.assertTrue(m.is_mounted())
        self.assertEqual(os.getxattr(m.mountpoint, "user.cfgfs.connected"), b"1")

    def test_wrong_password(self):
        name, _, _ = self.users["writer"]
        wrong = self.password_file("wrong", "not-the-password")
        for what, user in (("wrong password", name), ("no such user", self.prefix + "-nobody")):
            with self.subTest(what):
                self.assert_startup_fails(["-o", "username=" + user, "-o", "password_file=" + wrong],
                                          needles=["authentication failed"])
        with self.subTest("wrong password in ETCDCTL_USER"):
            self.assert_startup_fails(env={"ETCDCTL_USER": name + ":not-the-password"},
                                      needles=["authentication failed"])

    def test_unreadable_password_file(self):
        name = self.users["writer"][0]
        missing = os.path.join(self.dir, "no-such-password")
        a_dir = os.path.join(self.dir, "a-directory")
        os.mkdir(a_dir)
        for what, path in (("missing", missing), ("a directory", a_dir)):
            with self.subTest(what):
                self.assert_startup_fails(["-o", "username=" + name, "-o", "password_file=" + path],
                                          needles=[path])

    def test_user_who_may_not_read_the_prefix(self):
        self.store.put(self.key("k"), "v")
        self.assert_startup_fails(self.user_opts("stranger"), needles=["permission denied"])

    def test_password_is_not_taken_from_the_command_line(self):
        name, password, _ = self.users["writer"]
        err = self.assert_startup_fails(["-o", "username=" + name, "-o", "password=" + password])
        self.assertNotIn(password, err, "the refusal must not repeat the password")

    def test_password_is_never_shown(self):
        # -d: cfgfs's most verbose log.  Reads, a save, a change, and a
        # restart of etcd (a new token, a new watch) all happen while logging.
        k = self.key("k")
        self.store.put(k, "v")
        name, password, _ = self.users["writer"]
        m = self.mount_as("writer", ["-d"])
        self.assertEqual(read_file(m.path("k")), b"v")
        self.save(m.path("k"), b"saved")
        self.store_server.restart()
        self.store = self.store_server.client()
        self.store.put(k, "after restart")
        self.wait_equal(lambda: read_file(m.path("k")), b"after restart", RECONNECT,
                        what="a change after etcd's restart")
        self.save(m.path("k"), b"saved again")
        self.assertEqual(self.store.get(k)["value"], b"saved again")
        with open("/proc/%d/cmdline" % m.pid, "rb") as f:
            self.assertNotIn(password.encode(), f.read(), "password on the command line")
        with open(m.log_path, "rb") as f:
            log = f.read()
        self.assertGreater(len(log), 1000, "the -d log is not empty")
        self.assertNotIn(password.encode(), log, "password in the log")

    def test_password_from_the_environment_is_wiped(self):
        self.store.put(self.key("k"), "v")
        name, password, _ = self.users["writer"]
        envs = {"ETCDCTL_USER=name:password": {"ETCDCTL_USER": "%s:%s" % (name, password)},
                "ETCDCTL_PASSWORD": {"ETCDCTL_USER": name, "ETCDCTL_PASSWORD": password}}
        for what, env in envs.items():
            for foreground in (True, False):
                with self.subTest(what, foreground=foreground):
                    m = self.mount(env=env, foreground=foreground)
                    self.assertIsNotNone(m.pid, "cfgfs's process")
                    self.assertEqual(read_file(m.path("k")), b"v")
                    with open("/proc/%d/environ" % m.pid, "rb") as f:
                        environ = f.read()
                    self.assertNotIn(password.encode(), environ,
                                     "the password is still in /proc/%d/environ" % m.pid)
                    with open("/proc/%d/cmdline" % m.pid, "rb") as f:
                        self.assertNotIn(password.encode(), f.read())
                    self.assert_flows(m)       # and it still works
                    m.close()


@harness.stores("etcd")
class TestAuthTokenExpiry(AuthTestCase):
    """Simple tokens that expire after TTL seconds without a request."""

    TTL = 2

    @classmethod
    def make_server(cls):
        return EtcdServer(auth=True, extra_args=["--auth-token", "simple",
                                                 "--auth-token-ttl", str(cls.TTL)])

    def idle_past_ttl(self):
        """Let a token expire: proof that a token obtained now, unused, is
        refused after the wait.  Sleeping is the point here (any poll
        with a token would keep it alive: the TTL is sliding)."""
        name, password, _ = self.users["writer"]
        token = EtcdClient(self.store_server.endpoint).authenticate(name, password)
        time.sleep(self.TTL + 1.5)
        with self.assertRaises(EtcdError) as cm:
            EtcdClient(self.store_server.endpoint, token=token).get(self.key("k"))
        self.assertEqual(cm.exception.status, 401, "the token should have expired: %s"
                         % cm.exception)

    def test_expired_token_and_restart(self):
        k = self.key("k")
        self.store.put(k, "v0")
        m = self.mount_as("writer")
        p = m.path("k")
        self.assertEqual(read_file(p), b"v0")

        self.idle_past_ttl()
        self.save(p, b"saved after the token expired")
        self.assertEqual(self.store.get(k)["value"], b"saved after the token expired")
        self.store.put(k, "v1")
        self.wait_equal(lambda: read_file(p), b"v1", PROPAGATE, what="a change after expiry")

        # A restarted etcd knows no token: the watch must be made again, with a new one.
        self.store_server.restart()
        self.store = self.store_server.client()
        self.store.put(k, "v2")
        self.wait_equal(lambda: read_file(p), b"v2", RECONNECT,
                        what="a change after etcd's restart")
        self.idle_past_ttl()
        self.store.put(k, "v3")
        self.wait_equal(lambda: read_file(p), b"v3", PROPAGATE,
                        what="a change after the restart and another expiry")
        self.save(p, b"saved at the end")
        self.assertEqual(self.store.get(k)["value"], b"saved at the end")


@harness.stores("etcd")
class TestAuthWithClientCertificates(AuthTestCase):
    """TLS with --client-cert-auth and authentication on."""

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
    def make_server(cls):
        return EtcdServer(tls=ServerTLS.of(cls.certs.server, cls.certs.client), auth=True)

    def tls_opts(self, pair):
        return ["-o", "cacert=" + self.certs.ca.cert, "-o", "cert=" + pair.cert,
                "-o", "key=" + pair.key]

    def test_certificate_without_cn_and_password(self):
        k = self.key("k")
        self.store.put(k, "v")
        m = self.mount_as("writer", self.tls_opts(self.certs.client))
        self.assertTrue(m.url.startswith("etcds://"))
        self.assertEqual(read_file(m.path("k")), b"v")
        self.assert_flows(m)
        self.save(m.path("k"), b"saved")
        self.assertEqual(self.store.get(k)["value"], b"saved")

    def test_certificate_with_cn_is_refused(self):
        self.assert_startup_fails(self.user_opts("writer") + self.tls_opts(self.certs.client_cn),
                                  needles=["CN"])


@harness.stores("consul")
class TestConsulTokenOverTLS(harness.CfgfsTestCase):
    """Consul as in production: HTTPS only, client certificates required,
    ACLs on (default deny).  The token comes from -o token_file,
    CONSUL_HTTP_TOKEN_FILE (which wins over CONSUL_HTTP_TOKEN, as in
    consul's own client) or CONSUL_HTTP_TOKEN."""

    ROOT = "root-" + secrets.token_hex(8)

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
    def make_server(cls):
        return harness.ConsulServer(acl_master_token=cls.ROOT,
                                    tls=ServerTLS.of(cls.certs.server, cls.certs.client))

    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="cfgfs-token-", dir=harness.mount_base_dir())
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.opts = ["-o", "cacert=" + self.certs.ca.cert, "-o", "cert=" + self.certs.client.cert,
                     "-o", "key=" + self.certs.client.key]

    def token_file(self, name, token):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(token + "\n")
        os.chmod(path, 0o600)
        return path

    def check_mount(self, m):
        k = self.key("k")
        self.assertEqual(read_file(m.path("k")), b"v")
        self.store.put(k, "changed")
        self.wait_equal(lambda: read_file(m.path("k")), b"changed", PROPAGATE,
                        what="a change to reach the file")
        fd = os.open(m.path("k"), os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, b"saved")
            os.fsync(fd)
        finally:
            os.close(fd)
        self.assertEqual(self.store.get(k)["value"], b"saved")

    def test_token_file_variable(self):
        self.store.put(self.key("k"), "v")
        right = self.token_file("right", self.ROOT)
        m = self.mount(opts=self.opts, env={"CONSUL_HTTP_TOKEN_FILE": right,
                                            "CONSUL_HTTP_TOKEN": "wrong-token"})
        self.assertTrue(m.url.startswith("consuls://"))
        self.check_mount(m)
        with open(m.log_path, "rb") as f:
            self.assertNotIn(self.ROOT.encode(), f.read(), "the token in the log")

    def test_token_file_option_wins(self):
        self.store.put(self.key("k"), "v")
        right = self.token_file("right", self.ROOT)
        wrong = self.token_file("wrong", "wrong-token")
        m = self.mount(opts=self.opts + ["-o", "token_file=" + right],
                       env={"CONSUL_HTTP_TOKEN_FILE": wrong})
        self.check_mount(m)

    def test_missing_token_file_variable(self):
        missing = os.path.join(self.dir, "no-such-token")
        m = self.new_mount()
        cp = m.run_background(self.url(), self.opts, timeout=30,
                              env={"CONSUL_HTTP_TOKEN_FILE": missing})
        self.assertNotEqual(cp.returncode, 0, cp.stderr)
        self.assertFalse(m.is_mounted())
        self.assertIn(missing, (cp.stderr.strip().splitlines() or [""])[-1], cp.stderr)


if __name__ == "__main__":
    harness.main()

#!/usr/bin/env python3
"""What only ZooKeeper has, mounted for real (the conformance tests of every
store run against ZooKeeper too):

  * ephemeral znodes: they appear and vanish with their owner's session,
    show read-only with user.cfgfs.ephemeral_owner;
  * sequential znodes keep their server-made names;
  * a dubbo-shaped registry reads as a dubbo operator expects: providers
    and the other categories are directories, empty or not, whatever
    Curator put in them; the URL-encoded provider names are shown as they
    are, '%' and all, even beyond 255 bytes;
  * a znode's data and children: a directory with its value file;
  * names ZooKeeper cannot hold are refused at commit (.rejected);
  * session expiry: cfgfs starts a new session, reads everything again
    and shows what changed meanwhile;
  * a 3-server ensemble losing the server cfgfs's session is on.
Run: python3 tests/integration/test_zookeeper.py [-k name]"""

import errno
import os
import signal
import stat
import time

import harness
from harness import read_file
from servers import zookeeper as zk

FAST = 5.0        # a change in the store reaches the mount
PROPAGATE = 10.0  # ... through a session's end, a commit at close


def exists(path):
    return os.path.lexists(path)


def is_dir(path):
    return os.path.isdir(path)

DUBBO_PROVIDER = ("dubbo%3A%2F%2F10.0.0.5%3A20880%2Fcom.foo.BarService%3Fanyhost%3Dtrue"
                  "%26application%3Dbar-provider%26deprecated%3Dfalse%26dubbo%3D2.0.2"
                  "%26dynamic%3Dtrue%26generic%3Dfalse%26interface%3Dcom.foo.BarService"
                  "%26methods%3DgetBar%2ClistBars%2CputBar%26pid%3D4242%26release%3D2.7.8"
                  "%26side%3Dprovider%26timestamp%3D1700000000000")


def ls(path):
    return sorted(os.listdir(path))

    def test_stop_during_the_first_read(self):
        # The watch session reads the whole subtree after the mount; a stop then leaves
        # reads in flight, whose completions ZooKeeper's client leaked when the session
        # closed at once (LeakSanitizer's finding, under tests/sanitize.sh asan).
        items = [(self.key("d%d" % (i % 30), "k%d" % i), "v") for i in range(3000)]
        for j in range(0, len(items), 200):
            self.store.txn_put_many(items[j:j + 200])
        for _ in range(3):
            m = self.mount()
            t0 = time.monotonic()
            self.assertEqual(m.unmount(), 0, m.log_tail())
            self.assertLess(time.monotonic() - t0, 5.0)


@harness.stores("zookeeper")
class TestZookeeper(harness.CfgfsTestCase):

    def znode(self, *parts):
        return "/" + self.key(*parts)

    def test_ephemeral_nodes_follow_their_session(self):
        owner = zk.ZookeeperClient(self.store_server.endpoint, private=True)
        self.addCleanup(owner.close)
        self.store.put(self.key("svc", "static"), "s")
        st = owner.znode_create(self.znode("svc", "instance-1"), b"10.0.0.7:8080",
                                ephemeral=True)
        m = self.mount()
        p = m.path("svc", "instance-1")
        self.assertEqual(read_file(p), b"10.0.0.7:8080")
        self.assertEqual(os.getxattr(p, "user.cfgfs.ephemeral_owner"),
                         ("0x%x" % st["ephemeral_owner"]).encode())
        self.assertEqual(stat.S_IMODE(os.stat(p).st_mode) & 0o222, 0,
                         "an ephemeral is shown read-only")
        with self.assertRaises(OSError) as cm:
            os.getxattr(m.path("svc", "static"), "user.cfgfs.ephemeral_owner")
        self.assertEqual(cm.exception.errno, errno.ENODATA)
        # A second instance registers while mounted; the first one's session ends.
        owner.znode_create(self.znode("svc", "instance-2"), b"", ephemeral=True)
        self.wait_equal(lambda: ls(m.path("svc")), ["instance-1", "instance-2", "static"],
                        PROPAGATE, what="the new registration")
        self.assertTrue(stat.S_ISREG(os.stat(m.path("svc", "instance-2")).st_mode),
                        "an empty ephemeral is a file (a registration)")
        owner.close()
        self.wait_equal(lambda: ls(m.path("svc")), ["static"], PROPAGATE,
                        what="the registrations gone with their session")

    def test_sequential_nodes(self):
        self.store.put(self.key("queue", "x"), "x")
        m = self.mount()
        made = [self.store.znode_create(self.znode("queue", "job-"), b"j%d" % i,
                                        sequential=True)["path"] for i in range(3)]
        names = [p.rsplit("/", 1)[1] for p in made]
        # The counter is the parent's child version: x was created first.
        self.assertEqual(names, ["job-%010d" % i for i in range(1, 4)])
        self.wait_equal(lambda: ls(m.path("queue")), sorted(names + ["x"]), PROPAGATE)
        self.assertEqual(read_file(m.path("queue", names[2])), b"j2")

    def test_dubbo_registry_reads_naturally(self):
        svc = ("dubbo", "com.foo.BarService")
        ip = b"10.0.0.5"
        # What dubbo writes through Curator: every node it creates holds the creator's address.
        for cat in ("providers", "consumers", "routers", "configurators"):
            self.store.znode_create(self.znode(*svc, cat), ip, makepath=True)
        owner = zk.ZookeeperClient(self.store_server.endpoint, private=True)
        self.addCleanup(owner.close)
        owner.znode_create(self.znode(*svc, "providers", DUBBO_PROVIDER), ip, ephemeral=True)
        m = self.mount()
        base = m.path(*svc)
        self.assertEqual(ls(base), ["configurators", "consumers", "providers", "routers"])
        for cat in ("configurators", "consumers", "routers"):
            self.assertTrue(is_dir(os.path.join(base, cat)), cat)
            self.assertEqual(ls(os.path.join(base, cat)), [], "an empty category: " + cat)
        # The provider's name is itself: readable, and longer than 255 bytes.
        self.assertGreater(len(DUBBO_PROVIDER), 255)
        self.assertEqual(ls(os.path.join(base, "providers")), [DUBBO_PROVIDER])
        self.assertEqual(read_file(os.path.join(base, "providers", DUBBO_PROVIDER)), ip)
        self.assertEqual(os.statvfs(m.path()).f_namemax, 1024)
        # The provider dies: providers stays, empty.
        owner.close()
        self.wait_equal(lambda: ls(os.path.join(base, "providers")), [], PROPAGATE,
                        what="the provider gone")
        self.assertTrue(is_dir(os.path.join(base, "providers")))

    def test_data_and_children(self):
        self.store.put(self.key("conf"), "top-level settings")
        self.store.put(self.key("conf", "db"), "db settings")
        # A znode created with no data at all is a directory, children or not.
        self.store.znode_create(self.znode("empty"), None)
        # One created with zero bytes is an empty file.
        self.store.znode_create(self.znode("blank"), b"")
        m = self.mount()
        self.assertEqual(ls(m.path("conf")), ["%value", "db"])
        self.assertEqual(read_file(m.path("conf", "%value")), b"top-level settings")
        self.assertTrue(is_dir(m.path("empty")))
        self.assertTrue(stat.S_ISREG(os.stat(m.path("blank")).st_mode))
        self.assertEqual(read_file(m.path("blank")), b"")
        # What cfgfs makes keeps its kind on every host: mkdir, an empty file, a file.
        os.mkdir(m.path("made-dir"))
        open(m.path("made-empty"), "wb").close()
        with open(m.path("made-file"), "wb") as f:
            f.write(b"x")
            f.flush()
            os.fsync(f.fileno())
        self.wait_until(lambda: self.store.znode_exists(self.znode("made-empty")), PROPAGATE,
                        what="the empty file committed")
        other = self.mount()
        self.assertTrue(is_dir(other.path("made-dir")))
        self.assertTrue(stat.S_ISREG(os.stat(other.path("made-empty")).st_mode))
        self.assertEqual(read_file(other.path("made-file")), b"x")
        self.assertIsNone(self.store.znode_get(self.znode("made-dir"), raw=True)[0],
                          "mkdir makes a znode with null data")
        self.assertEqual(self.store.znode_get(self.znode("made-empty"), raw=True)[0], b"")

    def test_names_zookeeper_cannot_hold_are_refused(self):
        self.store.put(self.key("keep"), "k")
        m = self.mount()
        with open(m.path("tab\there"), "wb") as f:
            f.write(b"t")
        # A new file is committed a moment after its close; its refusal keeps the bytes.
        self.wait_until(lambda: exists(m.path("tab\there.rejected")), FAST,
                        what="the bytes kept aside")
        self.assertEqual(read_file(m.path("tab\there.rejected")), b"t")
        self.assertFalse(exists(m.path("tab\there")))
        self.m_log_has(m, "ZooKeeper cannot hold the key")

    def m_log_has(self, m, text):
        self.wait_until(lambda: text in open(m.log_path, errors="replace").read(), FAST,
                        what="log line %r" % text)

    def test_digest_authentication(self):
        self.store.put(self.key("open"), "o")
        self.store.put(self.key("locked"), "v0")
        # alice may do anything with "locked"; everybody else may read it.
        self.store.znode_set_acl(self.znode("locked"), [
            (zk.PERM_ALL, "digest", zk.digest_id("alice", "s3cret")),
            (zk.PERM_READ, "world", "anyone")])
        pw = os.path.join(self.new_mount().tmpdir, "alice.pw")
        with open(pw, "w") as f:
            f.write("s3cret\n")
        os.chmod(pw, 0o600)
        alice = self.mount(opts=["-o", "username=alice,password_file=" + pw])
        with open(alice.path("locked"), "wb") as f:
            f.write(b"by alice")
            f.flush()
            os.fsync(f.fileno())
        self.assertEqual(self.store.get(self.key("locked"))["value"], b"by alice")
        # Without the password: reads work, a save is refused with EACCES, and said.
        anon = self.mount()
        self.assertEqual(read_file(anon.path("locked")), b"by alice")
        with open(anon.path("locked"), "r+b") as f:
            f.write(b"by anon!")
            f.flush()
            with self.assertRaises(OSError) as cm:
                os.fsync(f.fileno())
        self.assertEqual(cm.exception.errno, errno.EACCES)
        self.m_log_has(anon, "ACL does not allow")
        self.assertEqual(self.store.get(self.key("locked"))["value"], b"by alice")
        # ... and the mount keeps serving: alice's next save reaches it.
        with open(alice.path("locked"), "wb") as f:
            f.write(b"again")
        self.wait_equal(lambda: read_file(anon.path("locked")), b"again", PROPAGATE,
                        what="alice's save in the other mount")
        # The password is never on the command line.
        with open("/proc/%d/cmdline" % alice.pid, "rb") as f:
            self.assertNotIn(b"s3cret", f.read())

    def test_session_expiry_reads_everything_again(self):
        self.store.put(self.key("a"), "a1")
        self.store.put(self.key("gone"), "g")
        m = self.mount()
        self.assertEqual(read_file(m.path("a")), b"a1")
        pid = m.pid
        # Frozen past its session timeout (1.5 x -o timeout), cfgfs's session expires.
        m.proc.send_signal(signal.SIGSTOP)
        try:
            self.store.put(self.key("a"), "a2")
            self.store.delete(self.key("gone"))
            self.store.put(self.key("new"), "n")
            time.sleep(9)  # past the 7.5 s session timeout: nothing to poll while frozen
        finally:
            os.kill(pid, signal.SIGCONT)
        self.wait_equal(lambda: read_file(m.path("a")), b"a2", 20, what="a after the expiry")
        self.wait_until(lambda: not exists(m.path("gone")), FAST, what="gone gone")
        self.assertEqual(read_file(m.path("new")), b"n")
        self.wait_until(lambda: os.getxattr(m.path(), "user.cfgfs.connected") == b"1", FAST,
                        what="connected again")
        # ... and it keeps following.
        self.store.put(self.key("a"), "a3")
        self.wait_equal(lambda: read_file(m.path("a")), b"a3", PROPAGATE, what="a after that")


@harness.stores("zookeeper")
class TestZookeeperEnsemble(harness.CfgfsTestCase):
    """A 3-server ensemble; the server cfgfs's session is on is killed."""

    @classmethod
    def make_server(cls):
        return zk.ZookeeperEnsemble()

    def test_losing_the_session_server(self):
        self.store.put(self.key("k"), "v0")
        m = self.mount()
        self.wait_until(lambda: os.getxattr(m.path(), "user.cfgfs.connected") == b"1", FAST)
        at = os.getxattr(m.path(), "user.cfgfs.endpoint").decode()
        members = self.store_server.members
        victim = next(i for i, mem in enumerate(members, 1) if mem.endpoint == at)
        self.store_server.kill_member(victim)
        t0 = time.monotonic()
        for _ in range(100):
            try:
                self.store.put(self.key("k"), "v1")
                break
            except zk.ZookeeperError:
                time.sleep(0.1)
        self.wait_equal(lambda: read_file(m.path("k")), b"v1", 20, what="the change")
        print("\nzookeeper: the session's server killed; the change readable after %.2f s"
              % (time.monotonic() - t0))
        self.wait_until(lambda: os.getxattr(m.path(), "user.cfgfs.endpoint").decode() != at,
                        10, what="another server")
        # Saves work through the new server.
        with open(m.path("k"), "wb") as f:
            f.write(b"v2")
            f.flush()
            os.fsync(f.fileno())
        self.assertEqual(self.store.get(self.key("k"))["value"], b"v2")


if __name__ == "__main__":
    harness.main()

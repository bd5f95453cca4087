"""Integration-test harness for cfgfs (Python 3 standard library only).

Tests import this module only.  It holds what does not depend on the store
and re-exports the store side, which lives in the package servers/ next to
this file:
  servers/base.py    ServerProcess (the lifecycle of a real store server:
                     free ports, temp data dir, start with readiness polling
                     and a deadline, log, stop/kill/restart/keep_data,
                     on_other_port(), the cleanup registry), StoreClient,
                     StoreLimits, StoreError, free_port(s).
  servers/etcd.py    EtcdServer, EtcdClient, op_put/op_delete/compare,
                     prefix_end, etcd's limits.
  servers/consul.py  ConsulServer, ConsulClient, consul_op, consul_url_safe,
                     consul_binary, ACL tokens, Consul's limits.
  servers/tls.py     throwaway certificates (Certs, CertAuthority, made with
                     openssl), ServerTLS / ClientTLS (a server's TLS and the
                     harness's clients' side of it), replace_file().
  servers/netns.py   network namespaces for EtcdCluster(isolated=True), whose
                     members can be cut off from their peers.
  servers/__init__.py  the registry (STORE_MODULES), ALL_STORES,
                     STORE_LIMITS, selected_stores(), make_server(kind), and
                     what a store module must provide: adding a store is one
                     module there plus its name in STORE_MODULES.

Building blocks:
  * free_port(), wait_until(), wait_equal()  -- ports and *the* synchronization
    primitive: tests poll with a deadline, they never sleep to synchronize.
  * EtcdServer / ConsulServer -- a real etcd / Consul (server mode, data on
                    disk) on loopback, in a temp dir, with start/stop/restart/
                    kill and a way to hide it from cfgfs for a while.  Same
                    interface (ServerProcess); make_server(kind) picks one.
  * EtcdClient / ConsulClient -- the store driven with urllib; the methods the
                    tests use (put/get/delete/delete_prefix/range_prefix/
                    range_prefix_kvs/revision/txn_put_many/put_many) have the
                    same meaning for both, see ConsulClient for what differs.
  * STORE_LIMITS  -- every store-specific limit and property, one entry per
                    registered store (each module's LIMITS).
  * CfgfsMount   -- runs the cfgfs binary (foreground with a log file, or the
                    user-facing background mode) and always cleans up.
  * StoreTestCase / CfgfsTestCase -- unittest bases: one store server per
                    class, a unique key prefix per test, mounts cleaned up per
                    test.  self.store is the client (self.etcd: old alias),
                    self.store_server the server, self.store_kind the kind.
                    EtcdTestCase, ConsulTestCase (one per registered store):
                    a StoreTestCase on that store only.
  * @all_stores / @stores(kind...) -- a test class runs against every store:
                    the decorator adds one concrete class per store selected by
                    CFGFS_STORES to the module (TestFoo -> TestFooEtcd,
                    TestFooConsul); TestFoo itself is a template that never
                    runs.  @only_on(kind..., why=...) limits a single test.
  * assert_stays(), cfgfs_state(), wait_settled() -- negative checks ("nothing
                    is sent"), the user.cfgfs.state xattr, "no pending file".
  * CfgfsTestCase.store_snapshot()/store_history()/assert_one_update()/
                    assert_writes() -- "this save was exactly one write of that key".
  * EtcdServer(tls=, auth=), ConsulServer(tls=), EtcdCluster -- production
                    stores: TLS (certificates from Certs), etcd users and
                    roles, a 3-member etcd whose members can be killed,
                    paused (SIGSTOP) or cut off from their peers.
  * Tmux         -- an interactive program (an editor) on a private tmux server.
  * Inotify      -- inotify events of a mount, through ctypes.
  * main()       -- end every test file with
                        if __name__ == "__main__":
                            harness.main()
                    exit status 0 = pass, 1 = failure, 77 = skipped (no FUSE).
  Everything started (servers, mounts) is stopped at exit, on SIGTERM/SIGHUP
  and at the end of main(), whatever the tests did.

Environment:
  CFGFS               cfgfs binary (default: <repo>/src/cfgfs)
  CFGFS_STORES        stores the @all_stores classes run against, separated by
                      spaces or commas (default: every registered store,
                      "etcd consul")
  ETCD                etcd binary (default: "etcd" from PATH)
  CONSUL              consul binary (default: what tests/fetch-consul.sh prints;
                      it downloads Debian 11's package once into ~/.cache/cfgfs)
  CFGFS_TEST_DIR      base dir for mountpoints (default /var/tmp; deliberately
                      not /tmp, because vim skips its backup logic under /tmp)
  CFGFS_TEST_TIMEOUT  per-test watchdog in seconds (default 120)
"""

import contextlib
import ctypes
import faulthandler
import functools
import itertools
import os
import re
import secrets
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import servers
from servers import ALL_STORES, STORE_LIMITS, make_server, selected_stores
from servers.base import (  # noqa: F401 (some are only re-exported, for the tests)
    ServerProcess, StoreClient, StoreError, StoreLimits, _b, _live_servers, _tail, b64,
    cfgfs_env, cleanup_all, cleanup_hooks, free_port, free_ports, install_signal_handlers,
    unb64)
from servers.netns import enter_private_netns, netns_unusable_reason  # noqa: F401
from servers.tls import (  # noqa: F401 (re-exported, for the tests)
    SAN_LOCAL, CertAuthority, CertPair, Certs, ClientTLS, ServerTLS, openssl_missing_reason,
    replace_file)


HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
EXIT_SKIP = 77
FUSE_SKIP_REASON = "FUSE unusable: "

# ---------------------------------------------------------------------------
# Global safety net: everything started here is stopped at exit / on signals
# (servers.base runs it; the mounts go first, their daemons use the servers).
# ---------------------------------------------------------------------------

_live_mounts = set()
_stray_mountpoints = set()     # used by the module-level run_background()


def _cleanup_mounts():
    for m in list(_live_mounts):
        try:
            m.close()
        except Exception as e:  # keep going: other resources still need cleanup
            sys.stderr.write("harness: cleanup of mount %s failed: %r\n" % (m.mountpoint, e))
    for mnt in list(_stray_mountpoints):
        try:
            if is_mounted(mnt):
                _force_unmount(mnt)
        except Exception:
            pass
        _stray_mountpoints.discard(mnt)


cleanup_hooks.append(_cleanup_mounts)
_cleanup_all = cleanup_all
_install_signal_handlers = install_signal_handlers

# ---------------------------------------------------------------------------
# Small utilities
# ---------------------------------------------------------------------------


def _short(v, limit=400):
    r = repr(v)
    return r if len(r) <= limit else r[:limit] + "...(%d chars)" % len(r)


def wait_until(pred, timeout=5.0, interval=0.002, what=None):
    """Poll pred() until it returns something truthy; return that value.

    Exceptions raised by pred count as "not yet".  On timeout raise
    AssertionError naming `what` and the last value or exception seen."""
    deadline = time.monotonic() + timeout
    last, last_exc = None, None
    while True:
        try:
            last, last_exc = pred(), None
            if last:
                return last
        except Exception as e:
            last_exc = e
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    what = what or getattr(pred, "__name__", repr(pred))
    detail = ("last exception: %s" % _short(last_exc)) if last_exc is not None \
        else ("last value: %s" % _short(last))
    raise AssertionError("timed out after %.1fs waiting for %s; %s" % (timeout, what, detail))


def wait_equal(fn, expected, timeout=5.0, interval=0.002, what=None):
    """Poll until fn() == expected; the timeout message shows the last actual value."""
    box = {}

    def pred():
        box["v"] = fn()
        if box["v"] == expected:
            return True
        raise AssertionError("got %s, want %s" % (_short(box["v"]), _short(expected)))

    wait_until(pred, timeout, interval, what or getattr(fn, "__name__", repr(fn)))
    return box["v"]


def read_file(path):
    """Whole content of a file (opened fresh each time), as bytes."""
    with open(path, "rb") as f:
        return f.read()


def assert_stays(pred, duration=0.5, interval=0.01, what=None):
    """For NEGATIVE checks only ("nothing is sent to the store"): pred() must stay
    truthy for the whole duration (it is polled); AssertionError at the first
    falsy value or exception.  Pick a duration well above cfgfs's commit_delay."""
    deadline = time.monotonic() + duration
    while True:
        try:
            v = pred()
        except Exception as e:
            raise AssertionError("%s stopped holding: %s" % (what or "condition", _short(e)))
        if not v:
            raise AssertionError("%s stopped holding: last value %s" % (what or "condition",
                                                                         _short(v)))
        if time.monotonic() >= deadline:
            return v
        time.sleep(interval)


class Inotify:
    """inotify through ctypes (the stdlib has no binding): watch paths, collect
    events as (watched path, name, set of flag names), e.g.
    ("/mnt", "db.conf", {"CLOSE_WRITE"}).  Close it (or use `with`)."""

    FLAGS = {0x1: "ACCESS", 0x2: "MODIFY", 0x4: "ATTRIB", 0x8: "CLOSE_WRITE",
             0x10: "CLOSE_NOWRITE", 0x20: "OPEN", 0x40: "MOVED_FROM", 0x80: "MOVED_TO",
             0x100: "CREATE", 0x200: "DELETE", 0x400: "DELETE_SELF", 0x800: "MOVE_SELF",
             0x8000: "IGNORED", 0x40000000: "ISDIR"}
    ALL = 0xfff

    def __init__(self):
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e), "inotify_init1")
        self._paths = {}
        self.events = []

    def watch(self, path, mask=ALL):
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(path), mask)
        if wd < 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e), path)
        self._paths[wd] = path
        return wd

    def poll(self):
        """Read what has arrived; returns self.events (everything so far)."""
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return self.events
            i = 0
            while i < len(data):
                wd, mask, _, n = struct.unpack_from("iIII", data, i)
                name = data[i + 16:i + 16 + n].rstrip(b"\0").decode("utf-8", "replace")
                i += 16 + n
                flags = {v for k, v in self.FLAGS.items() if mask & k}
                self.events.append((self._paths.get(wd), name, flags))

    def seen(self, path, name, flag):
        """Whether an event with flag for name (\"\" for the watched path itself) came."""
        return any(p == path and n == name and flag in f for p, n, f in self.poll())

    def wait_for(self, path, name, flag, timeout=5.0):
        wait_until(lambda: self.seen(path, name, flag), timeout,
                   what="inotify %s on %s%s; events so far: %s"
                   % (flag, path, "/" + name if name else "", self.events[-12:]))

    def count(self, path, name, flag):
        return sum(1 for p, n, f in self.poll() if p == path and n == name and flag in f)

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def cfgfs_state(path):
    """Value of the user.cfgfs.state xattr (synced, pending or local) as str."""
    return os.getxattr(path, "user.cfgfs.state").decode()


def pending_files(root):
    """Paths under root (recursively) whose user.cfgfs.state is "pending"."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in filenames:
            p = os.path.join(dirpath, n)
            try:
                if os.path.islink(p):
                    continue
                if cfgfs_state(p) == "pending":
                    out.append(p)
            except OSError:
                pass
    return out


def wait_settled(root, timeout=5.0):
    """Wait until no file under root has a change waiting to be committed."""
    def settled():
        p = pending_files(root)
        if p:
            raise AssertionError("still pending: %r" % p)
        return True
    wait_until(settled, timeout, what="no pending file under %s" % root)


# ---------------------------------------------------------------------------
# Stores: see servers/__init__.py; their names are re-exported at the end
# ---------------------------------------------------------------------------

# Flags that the Consul runs of the write and editor tests put on the key
# they edit, so that every save also checks that cfgfs keeps them.
EDIT_FLAGS = 42


# ---------------------------------------------------------------------------
# FUSE / cfgfs
# ---------------------------------------------------------------------------


def cfgfs_binary():
    return os.environ.get("CFGFS") or os.path.join(REPO, "src", "cfgfs")


def checked_value(gen, length):
    """A value that checks itself (tests/helpers/value_reader.c): "G|L|x...x|G",
    exactly length bytes, L the length, G the generation at head and tail."""
    head, tail = "%d|%d|" % (gen, length), "|%d" % gen
    if length < len(head) + len(tail):
        raise ValueError("a checked value of generation %d needs more than %d bytes" % (gen, length))
    return (head + "x" * (length - len(head) - len(tail)) + tail).encode()


def helper_binary(name):
    """A test helper program built by `make check` (tests/helpers/NAME)."""
    path = os.environ.get("CFGFS_HELPERS_DIR") or os.path.join(REPO, "tests", "helpers")
    path = os.path.join(path, name)
    if not os.access(path, os.X_OK):
        raise AssertionError("%s is not built: run `make check` (or make %s)" % (path, "tests/helpers/" + name))
    return path


def mount_base_dir():
    return os.environ.get("CFGFS_TEST_DIR") or "/var/tmp"


_fuse_reason_cache = []


def fuse_unusable_reason():
    """None if FUSE mounts can work here, else a reason string."""
    if not _fuse_reason_cache:
        reason = None
        if not os.path.exists("/dev/fuse"):
            reason = "/dev/fuse does not exist"
        else:
            try:
                os.close(os.open("/dev/fuse", os.O_RDWR))
            except OSError as e:
                reason = "cannot open /dev/fuse: %s" % e
        if reason is None and shutil.which("fusermount3") is None:
            reason = "fusermount3 not found in PATH"
        _fuse_reason_cache.append(reason)
    return _fuse_reason_cache[0]


def _unescape_mounts(s):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def mount_entries():
    """[(source, target, fstype, options)] from /proc/self/mounts."""
    out = []
    with open("/proc/self/mounts", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 4:
                out.append(tuple(_unescape_mounts(x) for x in fields[:4]))
    return out


def mount_entry(path):
    """The (last, i.e. topmost) mount entry whose target is path, or None."""
    path = os.path.realpath(path)
    found = None
    for e in mount_entries():
        if e[1] == path:
            found = e
    return found


def is_mounted(path):
    e = mount_entry(path)
    return e is not None and e[2].startswith("fuse")


def _force_unmount(mnt):
    subprocess.run(["fusermount3", "-uz", mnt], stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _pid_alive(pid):
    """False for nonexistent and zombie processes."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2:][:1] not in (b"Z", b"X")


def find_daemon_pid(mnt):
    """pid of the live cfgfs process whose command line names mountpoint mnt."""
    mnt = os.path.realpath(mnt)
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if args and b"cfgfs" in os.path.basename(args[0]) and \
                any(a and os.path.realpath(a) == os.fsencode(mnt) for a in args[1:]) and \
                _pid_alive(int(d)):
            return int(d)
    return None


def _reap_adopted_daemons():
    """Reap zombie cfgfs daemons adopted via _become_subreaper (not the
    foreground Popen children: their Popen objects reap them)."""
    popen_pids = {m.proc.pid for m in list(_live_mounts) if m.proc is not None}
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) in popen_pids:
            continue
        try:
            with open("/proc/%s/stat" % d, "rb") as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat[stat.rindex(b")") + 2:].split()
        if rest[0] == b"Z" and int(rest[1]) == os.getpid() and b"(cfgfs" in stat:
            try:
                os.waitpid(int(d), os.WNOHANG)
            except ChildProcessError:
                pass


_subreaper = []


def _become_subreaper():
    """Best effort: adopt orphans (the daemonized cfgfs) so that we can reap
    them and learn their exit status."""
    if _subreaper:
        return
    _subreaper.append(True)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)   # PR_SET_CHILD_SUBREAPER
    except Exception:
        pass


def run_cfgfs(args, timeout=30.0, binary=None, env=None):
    """Run cfgfs with args (env: extra environment variables); CompletedProcess
    with text stdout/stderr.  Output goes through temp files, not pipes, so a
    daemon child that keeps the inherited descriptors cannot make this hang."""
    _become_subreaper()
    cmd = [binary or cfgfs_binary()] + list(args)
    _check_binary(cmd[0])
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        def text(f):
            f.seek(0)
            return f.read().decode("utf-8", "replace")
        try:
            p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                               env=cfgfs_env(env), timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("%r did not exit within %.0fs; stdout=%r stderr=%r"
                                 % (cmd, timeout, text(out), text(err))) from None
        return subprocess.CompletedProcess(cmd, p.returncode, text(out), text(err))


def run_background(url, mnt, opts=(), timeout=30.0, env=None):
    """The user-facing invocation `cfgfs [opts] URL MNT` (daemonizes)."""
    _stray_mountpoints.add(os.path.realpath(mnt))
    return run_cfgfs(list(opts) + [url, mnt], timeout, env=env)


def _check_binary(path):
    if not os.access(path, os.X_OK):
        raise RuntimeError("cfgfs binary not found or not executable: %s "
                           "(build it, or set CFGFS)" % path)


class CfgfsMount:
    """One mountpoint (in its own temp dir under CFGFS_TEST_DIR or /var/tmp)
    and the cfgfs daemon serving it."""

    def __init__(self, binary=None, base_dir=None):
        self.binary = binary or cfgfs_binary()
        base = base_dir or mount_base_dir()
        os.makedirs(base, exist_ok=True)
        self.tmpdir = os.path.realpath(tempfile.mkdtemp(prefix="cfgfs-test-", dir=base))
        self.mountpoint = os.path.join(self.tmpdir, "mnt")
        os.mkdir(self.mountpoint)
        self.log_path = os.path.join(self.tmpdir, "cfgfs.log")
        self.url = None
        self.proc = None          # foreground mode: the Popen
        self._pid = None
        self.returncode = None    # daemon exit status once known
        self.background_result = None   # CompletedProcess of a background mount
        _live_mounts.add(self)
        _install_signal_handlers()

    @property
    def pid(self):
        return self._pid

    def path(self, *parts):
        if any(isinstance(p, bytes) for p in parts):
            return os.path.join(os.fsencode(self.mountpoint), *map(os.fsencode, parts))
        return os.path.join(self.mountpoint, *parts)

    def is_mounted(self):
        return is_mounted(self.mountpoint)

    def mount_entry(self):
        return mount_entry(self.mountpoint)

    def log_tail(self, lines=40):
        return _tail(self.log_path, lines)

    def mount(self, url, opts=(), foreground=True, timeout=20.0, env=None):
        """Mount url.  foreground=True runs `cfgfs -f` with stderr to log_path and
        waits until the mount shows up in /proc/self/mounts; False uses the
        background mode (returns once cfgfs's parent process exited 0).
        env: extra environment variables (e.g. CONSUL_HTTP_TOKEN)."""
        if self.is_mounted():
            raise RuntimeError("%s is already mounted" % self.mountpoint)
        _check_binary(self.binary)
        self.url, self.returncode = url, None
        if not foreground:
            cp = self.background_result = self.run_background(url, opts, timeout, env)
            if cp.returncode != 0 or not self.is_mounted():
                raise RuntimeError("background cfgfs %s failed: status %d, mounted=%s, "
                                   "stderr=%r" % (url, cp.returncode, self.is_mounted(),
                                                  cp.stderr))
            self.proc, self._pid = None, find_daemon_pid(self.mountpoint)
            return self
        cmd = [self.binary, "-f"] + list(opts) + [url, self.mountpoint]
        with open(self.log_path, "ab") as log:
            log.write(("=== harness: %r\n" % (cmd,)).encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, env=cfgfs_env(env),
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self._pid = self.proc.pid
        deadline = time.monotonic() + timeout
        while not self.is_mounted():
            rc = self.proc.poll()
            if rc is not None:
                self.returncode = rc
                raise RuntimeError("cfgfs exited with status %d before mounting %s\n"
                                   "--- cfgfs log tail (%s) ---\n%s"
                                   % (rc, url, self.log_path, self.log_tail()))
            if time.monotonic() > deadline:
                self.kill_daemon()
                raise RuntimeError("cfgfs did not mount %s within %.0fs\n"
                                   "--- cfgfs log tail (%s) ---\n%s"
                                   % (url, timeout, self.log_path, self.log_tail()))
            time.sleep(0.005)
        return self

    def run_background(self, url, opts=(), timeout=30.0, env=None):
        """`cfgfs [opts] URL MOUNTPOINT` on this mountpoint; CompletedProcess."""
        return run_cfgfs(list(opts) + [url, self.mountpoint], timeout, self.binary, env)

    def daemon_alive(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                return True
            self.returncode = self.proc.returncode
            return False
        if self._pid is None:
            return False
        try:   # adopted orphan (see _become_subreaper)? then reap it
            pid, status = os.waitpid(self._pid, os.WNOHANG)
            if pid == self._pid:
                self.returncode = os.waitstatus_to_exitcode(status)
                return False
        except ChildProcessError:
            pass
        return _pid_alive(self._pid)

    def wait_daemon_exit(self, timeout=10.0):
        """Wait until the daemon has exited; its exit status, or None if it
        cannot be known (not our child).  AssertionError if still running."""
        wait_until(lambda: not self.daemon_alive(), timeout,
                   what="cfgfs daemon (pid %s) to exit" % self._pid)
        return self.returncode

    def kill_daemon(self, sig=signal.SIGKILL):
        """Signal the daemon (SIGKILL: file operations then fail with ENOTCONN)."""
        if self.daemon_alive():
            try:
                os.kill(self._pid, sig)
            except ProcessLookupError:
                pass

    def unmount(self, timeout=10.0):
        """fusermount3 -u (retrying while busy, then -uz), wait for the daemon to
        exit (SIGKILL if it doesn't) and for the mount to disappear.  Returns
        the daemon's exit status if known."""
        deadline = time.monotonic() + timeout
        while self.is_mounted() and time.monotonic() < deadline:   # loop: mounts may be stacked
            lazy = time.monotonic() > deadline - timeout / 2
            r = subprocess.run(["fusermount3", "-uz" if lazy else "-u", self.mountpoint],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
            if r.returncode != 0:
                if lazy:
                    sys.stderr.write("harness: fusermount3 -uz %s failed: %s\n"
                                     % (self.mountpoint, r.stdout.strip()))
                time.sleep(0.05)   # busy: retry backoff
        try:
            self.wait_daemon_exit(max(1.0, deadline - time.monotonic()))
        except AssertionError:
            sys.stderr.write("harness: cfgfs pid %s did not exit after unmount; killing\n"
                             % self._pid)
            self.kill_daemon()
            if self.proc is not None:
                self.proc.wait(5)
        wait_until(lambda: not self.is_mounted(), max(1.0, deadline - time.monotonic()),
                   what="%s to be unmounted" % self.mountpoint)
        if self.proc is not None:
            self.returncode = self.proc.returncode
        return self.returncode

    def close(self):
        """Unmount and stop the daemon whatever state things are in; remove the
        temp dir (only once nothing is mounted there)."""
        try:
            if self.is_mounted():
                self.unmount()
        except Exception as e:
            sys.stderr.write("harness: unmount of %s failed: %r\n" % (self.mountpoint, e))
            _force_unmount(self.mountpoint)
        self.kill_daemon()
        if self.proc is not None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        for _ in range(10):   # e.g. several background daemons mounted over each other
            pid = find_daemon_pid(self.mountpoint)
            if pid is None:
                break
            os.kill(pid, signal.SIGKILL)
            try:
                os.waitpid(pid, 0)    # reap it if we adopted it
            except ChildProcessError:
                wait_until(lambda: not _pid_alive(pid), 5, what="pid %d to die" % pid)
        _reap_adopted_daemons()
        if not self.is_mounted():
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            _live_mounts.discard(self)
            _stray_mountpoints.discard(self.mountpoint)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------------------
# Interactive programs (editors) under tmux
# ---------------------------------------------------------------------------


class Tmux:
    """One detached tmux session on a private server (tmux -L SOCKET -f /dev/null),
    so nothing touches the user's own tmux.  close() kills that server."""

    def __init__(self, width=120, height=40):
        self.socket = "cfgfs-test-%d-%s" % (os.getpid(), secrets.token_hex(4))
        self.session = "s"
        self.width, self.height = width, height

    def _cmd(self, *args):
        return ["tmux", "-L", self.socket, "-f", "/dev/null"] + list(args)

    def run(self, *args, check=True, env=None):
        return subprocess.run(self._cmd(*args), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, check=check, timeout=30, env=env)

    def start(self, argv, env=None, cwd=None):
        """Run argv (executed directly, no shell) in a new session, in directory
        cwd, with environment env (default: ours).  The tmux server is started
        with env, and since tmux sets TERM itself inside the pane, env's TERM
        (if any) is passed on explicitly."""
        env = dict(os.environ if env is None else env)
        if "TERM" in env:
            argv = ["env", "TERM=" + env["TERM"]] + list(argv)
        self.run("new-session", "-d", "-s", self.session, "-x", str(self.width),
                 "-y", str(self.height), *(("-c", cwd) if cwd else ()), "--", *argv, env=env)
        return self

    def alive(self):
        return self.run("has-session", "-t", self.session, check=False).returncode == 0

    def capture(self):
        """The visible screen as text ("" once the session is gone)."""
        r = self.run("capture-pane", "-p", "-t", self.session, check=False)
        return r.stdout if r.returncode == 0 else ""

    def send(self, *keys, literal=False):
        """tmux send-keys: key names ("Enter", "C-o", "Escape") or, with
        literal=True, text typed as is."""
        self.run("send-keys", "-t", self.session, *(("-l",) if literal else ()), *keys)

    def type(self, text):
        self.send(text, literal=True)

    def wait_for(self, text, timeout=10.0):
        """Wait until the screen shows text (str, or a compiled regex); the screen."""
        def shown():
            s = self.capture()
            found = text.search(s) if hasattr(text, "search") else text in s
            if not found:
                raise AssertionError("screen:\n" + s)
            return s
        return wait_until(shown, timeout, what="%r on the tmux screen" % (text,))

    def wait_exit(self, timeout=10.0):
        wait_until(lambda: not self.alive(), timeout,
                   what="tmux session to end; screen:\n%s" % self.capture())

    def close(self):
        subprocess.run(self._cmd("kill-server"), stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # tmux leaves its socket file behind when the last session ends.
        sock = os.path.join(os.environ.get("TMUX_TMPDIR") or "/tmp", "tmux-%d" % os.getuid(),
                            self.socket)
        with contextlib.suppress(OSError):
            os.unlink(sock)


# ---------------------------------------------------------------------------
# unittest glue
# ---------------------------------------------------------------------------

_prefix_counter = itertools.count(1)


def unique_prefix():
    return "t%d-%s" % (next(_prefix_counter), secrets.token_hex(3))


def stores(*kinds):
    """Class decorator: run this test class against each store of kinds
    (default: all) that CFGFS_STORES selects.  One concrete subclass per
    store, <Class><Kind> (TestWrite -> TestWriteEtcd, TestWriteConsul), with
    store_kind set, is added to the class's module; the decorated class stays
    as a template that main()'s loader never runs (naming it on the command
    line runs its variants)."""
    kinds = kinds or ALL_STORES
    for k in kinds:
        if k not in ALL_STORES:
            raise ValueError("unknown store kind %r" % (k,))

    def deco(cls):
        if not (isinstance(cls, type) and issubclass(cls, StoreTestCase)):
            raise TypeError("@stores is for StoreTestCase subclasses")
        mod = sys.modules[cls.__module__]
        cls._store_template = True
        cls.store_kind = None
        cls._store_variants = []
        for kind in selected_stores():
            if kind not in kinds:
                continue
            name = cls.__name__ + kind.capitalize()
            sub = type(cls)(name, (cls,), {"store_kind": kind, "_store_template": False,
                                           "_store_variants": (), "__module__": cls.__module__,
                                           "__qualname__": name, "__doc__": cls.__doc__})
            setattr(mod, name, sub)
            cls._store_variants.append(sub)
        return cls
    return deco


def all_stores(cls):
    """@all_stores: the class runs against every store (see stores())."""
    return stores()(cls)


def only_on(*kinds, why):
    """Method decorator inside a multi-store class: the test only makes sense
    on these stores (why says why); elsewhere it is skipped, visibly."""
    def deco(fn):
        @functools.wraps(fn)
        def wrapper(self, *a, **kw):
            if self.store_kind not in kinds:
                self.skipTest("%s only: %s" % ("/".join(kinds), why))
            return fn(self, *a, **kw)
        return wrapper
    return deco


class StoreTestCase(unittest.TestCase):
    """One store server per test class (cls.store_server, of cls.store_kind);
    per test a unique key prefix (self.prefix) and a client (self.store).
    self.etcd and self.etcd_server are the old names of the same things.

    store_kind is set by @all_stores / @stores on the generated classes;
    EtcdTestCase / ConsulTestCase fix it for single-store classes.  A class
    that needs a special server overrides make_server()."""

    store_kind = None
    store_server = None
    store = None
    _store_template = False

    @classmethod
    def make_server(cls):
        return make_server(cls.store_kind)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if cls.store_kind is None:
            raise unittest.SkipTest("template of %s" % ", ".join(
                v.__name__ for v in getattr(cls, "_store_variants", ())) or "no store selected")
        cls.store_server = cls.make_server()
        cls.addClassCleanup(cls.store_server.close)
        cls.store_server.start()
        cls.store = cls.store_server.client()

    def setUp(self):
        super().setUp()
        if not self.store_server.running:     # an earlier test left it down
            self.store_server.start()
        self.store = self.store_server.client()
        self.prefix = unique_prefix()

    @property
    def etcd(self):
        """Old name of self.store (whatever the store is)."""
        return self.store

    @property
    def etcd_server(self):
        """Old name of self.store_server (whatever the store is)."""
        return self.store_server

    @property
    def limits(self):
        """STORE_LIMITS of this class's store."""
        return STORE_LIMITS[self.store_kind]

    def key(self, *parts):
        """Store key under this test's prefix: key("db", "host") -> "<prefix>/db/host"
        (bytes if any part is bytes)."""
        if any(isinstance(p, bytes) for p in parts):
            return b"/".join([self.prefix.encode()] + [_b(p) for p in parts])
        return "/".join((self.prefix,) + parts)

    def put_flagged(self, key, value):
        """Put key; on stores with flags (Consul) with EDIT_FLAGS, so that the
        tests that edit it also check that cfgfs keeps the flags."""
        return self.store.put(key, value, flags=EDIT_FLAGS if self.limits.flags else 0)

    def wait_until(self, pred, timeout=5.0, interval=0.002, what=None):
        return wait_until(pred, timeout, interval, what)

    def wait_equal(self, fn, expected, timeout=5.0, interval=0.002, what=None):
        return wait_equal(fn, expected, timeout, interval, what)

    def _test_failed(self):
        """In a cleanup: has this test (or one of its subtests) failed so far?"""
        result = getattr(getattr(self, "_outcome", None), "result", None)
        for t, _ in list(getattr(result, "errors", [])) + list(getattr(result, "failures", [])):
            if t is self or getattr(t, "test_case", None) is self:
                return True
        return False


def _single_store_case(kind):
    """<Kind>TestCase (EtcdTestCase, ConsulTestCase, ...): a StoreTestCase on
    that store only."""
    name = kind.capitalize() + "TestCase"
    return type(StoreTestCase)(name, (StoreTestCase,), {
        "store_kind": kind, "__module__": __name__, "__qualname__": name,
        "__doc__": "A StoreTestCase on %s only." % kind})


for _kind in ALL_STORES:
    _cls = _single_store_case(_kind)
    globals()[_cls.__name__] = _cls
del _kind, _cls


class CfgfsTestCase(StoreTestCase):
    """Adds FUSE mounts.  The class is skipped (exit 77 if nothing else ran)
    only if FUSE is unusable; a missing store or cfgfs is an error."""

    @classmethod
    def setUpClass(cls):
        if cls.store_kind is not None:
            reason = fuse_unusable_reason()
            if reason:
                raise unittest.SkipTest(FUSE_SKIP_REASON + reason)
        super().setUpClass()

    def setUp(self):
        super().setUp()
        self._arm_watchdog()

    def _arm_watchdog(self):
        limit = float(os.environ.get("CFGFS_TEST_TIMEOUT", "120"))
        timer = threading.Timer(limit, self._watchdog_fired, (limit,))
        timer.daemon = True
        timer.start()
        self.addCleanup(timer.cancel)   # registered first: runs last

    def _watchdog_fired(self, limit):
        sys.stderr.write("\n*** watchdog: %s still running after %.0fs; stacks:\n"
                         % (self.id(), limit))
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        sys.stderr.write("*** killing cfgfs daemons so blocked file operations fail\n")
        for m in list(_live_mounts):
            m.kill_daemon()

    def url(self, prefix=None):
        return self.store_server.url(self.prefix if prefix is None else prefix)

    def assertOneLineError(self, cp, *needles):
        """cp (run_cfgfs's CompletedProcess) failed with exactly one line on
        stderr holding every needle; returns that line."""
        self.assertNotEqual(cp.returncode, 0, "should fail: %r" % cp.stderr)
        err = cp.stderr.rstrip("\n")
        self.assertTrue(err, "no error message on stderr")
        self.assertNotIn("\n", err, "stderr should be one line: %r" % cp.stderr)
        for n in needles:
            self.assertIn(n, err)
        return err

    def new_mount(self):
        """An unmounted CfgfsMount, closed at the end of the test."""
        m = CfgfsMount()
        self.addCleanup(self._close_mount, m)
        return m

    def mount(self, prefix=None, opts=(), foreground=True, url=None, env=None):
        """Mount url (default: this test's prefix) and return the CfgfsMount.
        env: extra environment variables for cfgfs."""
        m = self.new_mount()
        return m.mount(url or self.url(prefix), opts, foreground, env=env)

    # -- checks of what a save did to the store ------------------------------
    def store_snapshot(self, revision=None):
        """(revision, {key bytes: kv}) of this test's prefix, from one read.
        On Consul the revision is the prefix's index (moves exactly when
        something under the prefix is written); no old revisions there."""
        return self.store.range_prefix_kvs(self.prefix + "/", revision)

    def prefix_revision(self):
        """The revision of this test's prefix: what moves exactly when something
        under it is written.  etcd: the store's revision; Consul: the prefix's
        index; ZooKeeper: its newest mzxid or pzxid (the server's own zxid also
        moves for refused writes and sessions, which "nothing was written"
        checks must not see)."""
        return self.store_snapshot()[0]

    def store_history(self, since, until=None):
        """What changed under the prefix after revision `since`, as lines for
        failure messages.  etcd: per revision (diffs of snapshots).  Consul
        keeps no history: the keys whose ModifyIndex is above `since`, as
        they are now (deletes do not show)."""
        try:
            if not self.limits.history:
                _, kvs = self.store_snapshot()
                lines = ["index %d: %r = %s (created at %d)"
                         % (kv["mod_revision"], k, _short(kv["value"], 60), kv["create_revision"])
                         for k, kv in kvs.items() if kv["mod_revision"] > since]
                return sorted(lines) or ["(no key under the prefix written after %d; Consul "
                                         "keeps no history, deletes do not show)" % since]
            until = until or self.store.revision()
            return self._store_history(since, until)
        except StoreError as e:   # e.g. compacted: only ever used in messages
            return ["(history unavailable: %s)" % e]

    def _store_history(self, since, until):
        lines = []
        _, prev = self.store_snapshot(since)
        for rev in range(since + 1, until + 1):
            _, cur = self.store_snapshot(rev)
            for k in sorted(set(prev) | set(cur)):
                a, b = prev.get(k), cur.get(k)
                if a is None and b is not None:
                    lines.append("rev %d: create %r = %s" % (rev, k, _short(b["value"], 60)))
                elif b is None and a is not None:
                    lines.append("rev %d: delete %r" % (rev, k))
                elif a != b:
                    lines.append("rev %d: update %r = %s" % (rev, k, _short(b["value"], 60)))
            if not any(l.startswith("rev %d:" % rev) for l in lines):
                lines.append("rev %d: (outside the prefix)" % rev)
            prev = cur
        return lines

    def assert_writes(self, rev0, rev1, n=1, msg=""):
        """Between revisions rev0 and rev1 (of revision() or store_snapshot())
        the store took n writes (transactions).  etcd: rev1 - rev0 == n.
        Consul's index is not a count: n == 0 means unchanged, n > 0 only
        that it moved (callers check keys and CreateIndexes for the rest)."""
        if self.limits.counts_writes:
            ok, want = rev1 - rev0 == n, "%d revision(s)" % n
        elif n == 0:
            ok, want = rev1 == rev0, "no write"
        else:
            ok, want = rev1 > rev0, "a write (the index to move)"
        if not ok:
            self.fail("%s: expected %s from revision %d, got %d; history:\n  %s"
                      % (msg or "store writes", want, rev0, rev1,
                         "\n  ".join(self.store_history(rev0, rev1))))

    def assert_one_update(self, before, mount_root, path, key, expected, new_key=False,
                          timeout=5.0):
        """The save of `path` (file in a mount; mount_root is its mountpoint) that
        followed the snapshot `before` (store_snapshot()) became exactly one
        store write that set `key` to `expected`: poll until the store has
        it and nothing is pending in the mount, then check the write count
        (etcd: one revision; Consul: the prefix's index moved and the key's
        ModifyIndex is that index), create_revision (unchanged unless
        new_key), flags (unchanged; 0 for a new key), the key set (no scratch
        keys; plus `key` if new_key), the other keys (untouched), the file's
        bytes and its state."""
        rev0, kvs0 = before
        k = _b(key)
        expected = _b(expected)
        wait_equal(lambda: (self.store.get(k) or {}).get("value"), expected, timeout,
                   what="store value of %r" % k)
        wait_settled(mount_root, timeout)
        rev1, kvs1 = self.store_snapshot()
        self.assert_writes(rev0, rev1, 1, "the save should be ONE store write")
        history = "\n  ".join(self.store_history(rev0, rev1))
        kv = kvs1[k]
        self.assertEqual(kv["mod_revision"], rev0 + 1 if self.limits.counts_writes else rev1,
                         "mod_revision of %r" % k)
        if new_key:
            self.assertNotIn(k, kvs0, "%r existed before" % k)
            self.assertEqual(kv["create_revision"], kv["mod_revision"],
                             "create_revision of new %r" % k)
            self.assertEqual(kv.get("flags", 0), 0, "flags of new %r" % k)
            want_keys = set(kvs0) | {k}
        else:
            self.assertEqual(kv["create_revision"], kvs0[k]["create_revision"],
                             "create_revision of %r changed (was it deleted and "
                             "re-created?); history:\n  %s" % (k, history))
            self.assertEqual(kv.get("flags"), kvs0[k].get("flags"),
                             "flags of %r changed by the save" % k)
            want_keys = set(kvs0)
        self.assertEqual(set(kvs1), want_keys, "keys under the prefix; history:\n  " + history)
        for other in want_keys - {k}:
            self.assertEqual(kvs1[other], kvs0[other], "unrelated key %r changed" % other)
        self.assertEqual(read_file(path), expected, "file content of %s" % path)
        self.assertEqual(cfgfs_state(path), "synced", "state of %s" % path)
        if self.limits.flags:
            self.assertEqual(os.getxattr(path, "user.cfgfs.flags"), str(kv["flags"]).encode(),
                             "user.cfgfs.flags of %s" % path)
        return kv

    def _close_mount(self, m):
        if self._test_failed() and m.url is not None:
            sys.stderr.write("\n--- cfgfs log tail for %s (%s) ---\n%s\n"
                             % (self.id(), m.log_path, m.log_tail()))
        m.close()


class _StoreLoader(unittest.TestLoader):
    """Never runs @stores templates themselves; naming one (TestFoo, or
    TestFoo.test_x) on the command line runs its store variants."""

    def loadTestsFromTestCase(self, cls):
        if cls.__dict__.get("_store_template"):
            return self.suiteClass([])
        return super().loadTestsFromTestCase(cls)

    def loadTestsFromName(self, name, module=None):
        parts = name.split(".")
        cls = getattr(module, parts[0], None) if module is not None else None
        if isinstance(cls, type) and cls.__dict__.get("_store_template") and len(parts) <= 2:
            if len(parts) == 1:
                return self.suiteClass([self.loadTestsFromTestCase(v)
                                        for v in cls._store_variants])
            return self.suiteClass([v(parts[1]) for v in cls._store_variants])
        return super().loadTestsFromName(name, module)


def _exit_status(result):
    if not result.wasSuccessful():
        return 1
    skipped_tests = sum(1 for t, _ in result.skipped if isinstance(t, unittest.TestCase))
    fuse_skips = [r for _, r in result.skipped if str(r).startswith(FUSE_SKIP_REASON)]
    if fuse_skips and result.testsRun - skipped_tests == 0:
        return EXIT_SKIP
    return 0


def main(argv=None):
    """Run the __main__ module's tests verbosely (every @all_stores class
    against each store CFGFS_STORES selects); exit 0/1/77."""
    _install_signal_handlers()
    faulthandler.enable()
    prog = unittest.main(module="__main__", argv=argv, exit=False, verbosity=2,
                         testLoader=_StoreLoader())
    _cleanup_all()
    sys.exit(_exit_status(prog.result))


# ---------------------------------------------------------------------------
# The store modules' own names (EtcdServer, ConsulClient, op_put, ...): each
# module's __all__, so that tests import nothing but harness.
# ---------------------------------------------------------------------------


def _reexport_stores():
    for mod in servers.STORES.values():
        for name in mod.__all__:
            if name in globals() and globals()[name] is not getattr(mod, name):
                raise ImportError("%s.%s clashes with harness.%s" % (mod.__name__, name, name))
            globals()[name] = getattr(mod, name)


_reexport_stores()

"""Integration-test harness for cfgfs (Python 3 standard library only).

Building blocks:
  * free_port(), wait_until(), wait_equal()  -- ports and *the* synchronization
    primitive: tests poll with a deadline, they never sleep to synchronize.
  * EtcdServer   -- a real etcd on loopback, in a temp dir, with start/stop/
                    restart/kill and a way to hide it from cfgfs for a while.
  * EtcdClient   -- the etcd v3 JSON gateway driven with urllib.
  * CfgfsMount   -- runs the cfgfs binary (foreground with a log file, or the
                    user-facing background mode) and always cleans up.
  * EtcdTestCase / CfgfsTestCase -- unittest bases: one etcd per class, a
                    unique key prefix per test, mounts cleaned up per test.
  * assert_stays(), cfgfs_state(), wait_settled() -- negative checks ("nothing
                    is sent"), the user.cfgfs.state xattr, "no pending file".
  * CfgfsTestCase.store_snapshot()/store_history()/assert_one_update() --
                    "this save was exactly one revision of that key".
  * Tmux         -- an interactive program (an editor) on a private tmux server.
  * main()       -- end every test file with
                        if __name__ == "__main__":
                            harness.main()
                    exit status 0 = pass, 1 = failure, 77 = skipped (no FUSE).

Environment:
  CFGFS               cfgfs binary (default: <repo>/src/cfgfs)
  ETCD                etcd binary (default: "etcd" from PATH)
  CFGFS_TEST_DIR      base dir for mountpoints (default /var/tmp; deliberately
                      not /tmp, because vim skips its backup logic under /tmp)
  CFGFS_TEST_TIMEOUT  per-test watchdog in seconds (default 120)
"""

import atexit
import base64
import contextlib
import ctypes
import faulthandler
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
EXIT_SKIP = 77
FUSE_SKIP_REASON = "FUSE unusable: "

# ---------------------------------------------------------------------------
# Global safety net: everything started here is stopped at exit / on signals.
# ---------------------------------------------------------------------------

_live_servers = set()
_live_mounts = set()
_stray_mountpoints = set()     # used by the module-level run_background()
_handlers_installed = False


def _cleanup_all():
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
    for s in list(_live_servers):
        try:
            s.close()
        except Exception as e:
            sys.stderr.write("harness: cleanup of etcd failed: %r\n" % (e,))


def _on_signal(signum, frame):
    sys.stderr.write("\nharness: got signal %d, cleaning up\n" % signum)
    _cleanup_all()
    os._exit(128 + signum)


def _install_signal_handlers():
    """SIGTERM/SIGHUP: clean up and exit. SIGINT keeps raising
    KeyboardInterrupt, which unittest propagates, so atexit cleans up."""
    global _handlers_installed
    if _handlers_installed or threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    _handlers_installed = True


atexit.register(_cleanup_all)

# ---------------------------------------------------------------------------
# Small utilities
# ---------------------------------------------------------------------------


def free_ports(n):
    """n distinct currently-free loopback TCP ports (all bound at once)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port():
    """A currently-free loopback TCP port (bind 127.0.0.1:0)."""
    return free_ports(1)[0]


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


def _b(x):
    if isinstance(x, str):
        return x.encode("utf-8")
    return bytes(x)


def b64(x):
    return base64.b64encode(_b(x)).decode("ascii")


def unb64(s):
    return base64.b64decode(s) if s else b""


def prefix_end(prefix):
    """etcd range_end covering every key that starts with prefix."""
    p = bytearray(_b(prefix))
    while p and p[-1] == 0xFF:
        p.pop()
    if not p:
        return b"\0"          # whole keyspace
    p[-1] += 1
    return bytes(p)


def _tail(path, lines=40):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            data = f.read()
    except OSError as e:
        return "(no log: %s)" % e
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


# ---------------------------------------------------------------------------
# etcd
# ---------------------------------------------------------------------------


class EtcdError(RuntimeError):
    def __init__(self, msg, status=None, body=None):
        super().__init__(msg)
        self.status = status
        self.body = body


def op_put(key, value):
    """A txn request op for EtcdClient.txn()."""
    return {"request_put": {"key": b64(key), "value": b64(value)}}


def op_delete(key, range_end=None):
    r = {"key": b64(key)}
    if range_end is not None:
        r["range_end"] = b64(range_end)
    return {"request_delete_range": r}


def compare(key, target, value, result="EQUAL"):
    """A txn compare, e.g. compare("k", "MOD", 5) or compare("k", "VALUE", b"x").
    target: VERSION, CREATE, MOD or VALUE; result: EQUAL, GREATER, LESS, NOT_EQUAL."""
    field = {"VERSION": "version", "CREATE": "create_revision",
             "MOD": "mod_revision", "VALUE": "value"}[target]
    return {"key": b64(key), "target": target, "result": result,
            field: b64(value) if target == "VALUE" else str(int(value))}


class EtcdClient:
    """etcd v3 via its JSON gateway.  Keys/values: str (UTF-8) or bytes."""

    def __init__(self, endpoint, timeout=5.0):
        self.endpoint = endpoint
        self.base = "http://%s" % endpoint
        self.timeout = timeout
        # Never go through an http_proxy from the environment.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(self, path, body):
        """POST body (JSON) to path, e.g. "/v3/kv/range"; parsed response."""
        req = urllib.request.Request(self.base + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"},
                                     method="POST")
        try:
            with self._opener.open(req, timeout=self.timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            raise EtcdError("%s %s: HTTP %d: %s" % (self.endpoint, path, e.code,
                                                    raw.decode("utf-8", "replace")),
                            e.code, raw) from None
        out = json.loads(raw or b"{}")
        if isinstance(out, dict) and "error" in out:
            raise EtcdError("%s %s: %s" % (self.endpoint, path, out), None, raw)
        return out

    @staticmethod
    def _rev(out):
        return int(out.get("header", {}).get("revision", "0"))

    @staticmethod
    def _kv(kv):
        return {"key": unb64(kv.get("key")), "value": unb64(kv.get("value")),
                "create_revision": int(kv.get("create_revision", "0")),
                "mod_revision": int(kv.get("mod_revision", "0")),
                "version": int(kv.get("version", "0")),
                "lease": int(kv.get("lease", "0"))}

    def put(self, key, value):
        """Returns the revision of the put."""
        return self._rev(self.call("/v3/kv/put", {"key": b64(key), "value": b64(value)}))

    def range(self, key, range_end=None, revision=None):
        """Raw range response."""
        body = {"key": b64(key)}
        if range_end is not None:
            body["range_end"] = b64(range_end)
        if revision is not None:
            body["revision"] = str(int(revision))
        return self.call("/v3/kv/range", body)

    def get(self, key, revision=None):
        """None, or dict(key, value(bytes), create_revision, mod_revision, version, lease)."""
        kvs = self.range(key, revision=revision).get("kvs") or []
        return self._kv(kvs[0]) if kvs else None

    def range_prefix(self, prefix, revision=None):
        """{key bytes: value bytes} for every key starting with prefix."""
        out = self.range(prefix, prefix_end(prefix), revision)
        return {unb64(kv.get("key")): unb64(kv.get("value")) for kv in out.get("kvs") or []}

    def range_prefix_kvs(self, prefix, revision=None):
        """(header revision, {key bytes: kv dict as get() returns}) for every key
        starting with prefix, from ONE range request (a consistent snapshot)."""
        out = self.range(prefix, prefix_end(prefix), revision)
        return self._rev(out), {unb64(kv.get("key")): self._kv(kv) for kv in out.get("kvs") or []}

    def delete(self, key):
        """Returns the number of keys deleted (0 or 1)."""
        return int(self.call("/v3/kv/deleterange", {"key": b64(key)}).get("deleted", "0"))

    def delete_prefix(self, prefix):
        out = self.call("/v3/kv/deleterange",
                        {"key": b64(prefix), "range_end": b64(prefix_end(prefix))})
        return int(out.get("deleted", "0"))

    def revision(self):
        """Current store revision (from a range response header)."""
        return self._rev(self.range(b"\0"))

    def txn(self, compare=(), success=(), failure=()):
        """Raw passthrough (gateway JSON, see op_put/op_delete/compare).  Note that
        a failed txn's response has no "succeeded" field."""
        return self.call("/v3/kv/txn", {"compare": list(compare), "success": list(success),
                                        "failure": list(failure)})

    def txn_put_many(self, items):
        """Put every key of the dict in ONE transaction (one revision); returns it."""
        if isinstance(items, dict):
            items = items.items()
        out = self.txn(success=[op_put(k, v) for k, v in items])
        if not out.get("succeeded"):
            raise EtcdError("txn_put_many did not succeed: %r" % (out,))
        return self._rev(out)

    def compact(self, revision, physical=True):
        """Compact history up to revision (physical: wait until applied)."""
        return self.call("/v3/kv/compaction", {"revision": str(int(revision)),
                                               "physical": physical})


class EtcdServer:
    """A real single-node etcd on loopback.

    stop() removes the temp dir by default; stop(keep_data=True), kill() and
    restart() keep the data dir and ports so that start() brings the same
    store back on the same endpoint."""

    def __init__(self, binary=None):
        self.binary = binary or os.environ.get("ETCD") or "etcd"
        self.tmpdir = None
        self.proc = None
        self.client_port = None
        self.peer_port = None

    # -- properties ----------------------------------------------------------
    @property
    def endpoint(self):
        return "127.0.0.1:%d" % self.client_port

    @property
    def data_dir(self):
        return os.path.join(self.tmpdir, "data")

    @property
    def log_path(self):
        return os.path.join(self.tmpdir, "etcd.log")

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def url(self, prefix=""):
        """Store URL for cfgfs, e.g. "etcd://127.0.0.1:C/app"."""
        return "etcd://%s/%s" % (self.endpoint, prefix)

    def client(self):
        return EtcdClient(self.endpoint)

    def log_tail(self, lines=40):
        return _tail(self.log_path, lines) if self.tmpdir else "(no log)"

    # -- lifecycle -----------------------------------------------------------
    def _args(self):
        c, p = self.client_port, self.peer_port
        return [self.binary, "--name", "t", "--data-dir", self.data_dir,
                "--listen-client-urls", "http://127.0.0.1:%d" % c,
                "--advertise-client-urls", "http://127.0.0.1:%d" % c,
                "--listen-peer-urls", "http://127.0.0.1:%d" % p,
                "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % p,
                "--initial-cluster", "t=http://127.0.0.1:%d" % p,
                "--heartbeat-interval", "10", "--election-timeout", "100",
                "--logger", "zap", "--log-outputs", "stderr", "--log-level", "error"]

    def start(self, timeout=30.0):
        if self.running:
            return self
        if self.tmpdir is None:
            self.tmpdir = tempfile.mkdtemp(prefix="cfgfs-etcd-")
        _live_servers.add(self)
        _install_signal_handlers()
        fixed_ports = self.client_port is not None   # restart: must keep the endpoint
        attempts = 3 if fixed_ports else 10
        for attempt in range(1, attempts + 1):
            if not fixed_ports:
                self.client_port, self.peer_port = free_ports(2)
            offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
            env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
            with open(self.log_path, "ab") as log:
                log.write(("=== harness: starting etcd on %s (attempt %d)\n"
                           % (self.endpoint, attempt)).encode())
                log.flush()
                try:
                    self.proc = subprocess.Popen(self._args(), stdin=subprocess.DEVNULL,
                                                 stdout=log, stderr=subprocess.STDOUT,
                                                 env=env, start_new_session=True)
                except OSError as e:
                    raise RuntimeError("cannot run etcd (%s): %s" % (self.binary, e)) from None
            err = self._wait_ready(timeout)
            if err is None:
                return self
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                this_log = f.read().decode("utf-8", "replace")
            if "address already in use" in this_log and attempt < attempts:
                if fixed_ports:
                    time.sleep(0.2 * attempt)   # retry backoff, not synchronization
                else:   # the data dir may already record the old peer URL
                    shutil.rmtree(self.data_dir, ignore_errors=True)
                continue
            raise RuntimeError("etcd failed to start on %s: %s\n--- etcd log tail (%s) ---\n%s"
                               % (self.endpoint, err, self.log_path, self.log_tail()))
        raise AssertionError("unreachable")

    def _wait_ready(self, timeout):
        probe = EtcdClient(self.endpoint, timeout=1.0)
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                self.proc = None
                return "etcd exited with status %d" % rc
            try:
                probe.revision()
                return None
            except Exception as e:
                last = e
            time.sleep(0.01)
        self._terminate(signal.SIGKILL, 5)
        return "not ready after %.0fs (last error: %r)" % (timeout, last)

    def _terminate(self, sig, timeout):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def stop(self, keep_data=False, timeout=10.0):
        """SIGTERM (SIGKILL after timeout) and wait.  Unless keep_data, remove the
        temp dir (data + log) and forget the ports."""
        self._terminate(signal.SIGTERM, timeout)
        if not keep_data:
            if self.tmpdir:
                shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None
            self.client_port = self.peer_port = None
            _live_servers.discard(self)

    def kill(self):
        """SIGKILL (simulated crash/outage); data and ports are kept for start()."""
        self._terminate(signal.SIGKILL, 10)

    def restart(self, timeout=30.0):
        """Stop gracefully and start again: same data dir, same ports."""
        self.stop(keep_data=True)
        return self.start(timeout)

    def close(self):
        self.stop(keep_data=False)

    @contextlib.contextmanager
    def on_other_port(self):
        """Outage as seen by clients of the usual endpoint (cfgfs): etcd is
        stopped and run with the same data on another client port; yields an
        EtcdClient for it so the test can change the store meanwhile.  On exit
        etcd is back on its usual port."""
        orig = self.client_port
        self.stop(keep_data=True)
        try:
            while self.client_port in (orig, self.peer_port):
                self.client_port = free_port()
            self.start()
            yield EtcdClient(self.endpoint)
        finally:
            self.stop(keep_data=True)
            self.client_port = orig
            self.start()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------------------
# FUSE / cfgfs
# ---------------------------------------------------------------------------


def cfgfs_binary():
    return os.environ.get("CFGFS") or os.path.join(REPO, "src", "cfgfs")


def helper_binary(name):
    """A test helper program built by `make check` (tests/helpers/NAME)."""
    path = os.environ.get("CFGFS_HELPERS_DIR") or os.path.join(REPO, "tests", "helpers")
    path = os.path.join(path, name)
    if not os.access(path, os.X_OK):
        raise AssertionError("%s is not built: run `make check` (or make %s)" % (path, "tests/helpers/" + name))
    return path


def cfgfs_env():
    """Environment for cfgfs: ours minus proxy settings (the store is on
    loopback; an http_proxy must not get in the way)."""
    return {k: v for k, v in os.environ.items()
            if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}


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


def run_cfgfs(args, timeout=30.0, binary=None):
    """Run cfgfs with args; CompletedProcess with text stdout/stderr.  Output
    goes through temp files, not pipes, so a daemon child that keeps the
    inherited descriptors cannot make this hang."""
    _become_subreaper()
    cmd = [binary or cfgfs_binary()] + list(args)
    _check_binary(cmd[0])
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        def text(f):
            f.seek(0)
            return f.read().decode("utf-8", "replace")
        try:
            p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                               env=cfgfs_env(), timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("%r did not exit within %.0fs; stdout=%r stderr=%r"
                                 % (cmd, timeout, text(out), text(err))) from None
        return subprocess.CompletedProcess(cmd, p.returncode, text(out), text(err))


def run_background(url, mnt, opts=(), timeout=30.0):
    """The user-facing invocation `cfgfs [opts] URL MNT` (daemonizes)."""
    _stray_mountpoints.add(os.path.realpath(mnt))
    return run_cfgfs(list(opts) + [url, mnt], timeout)


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

    def mount(self, url, opts=(), foreground=True, timeout=20.0):
        """Mount url.  foreground=True runs `cfgfs -f` with stderr to log_path and
        waits until the mount shows up in /proc/self/mounts; False uses the
        background mode (returns once cfgfs's parent process exited 0)."""
        if self.is_mounted():
            raise RuntimeError("%s is already mounted" % self.mountpoint)
        _check_binary(self.binary)
        self.url, self.returncode = url, None
        if not foreground:
            cp = self.background_result = self.run_background(url, opts, timeout)
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
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, env=cfgfs_env(),
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

    def run_background(self, url, opts=(), timeout=30.0):
        """`cfgfs [opts] URL MOUNTPOINT` on this mountpoint; CompletedProcess."""
        return run_cfgfs(list(opts) + [url, self.mountpoint], timeout, self.binary)

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


class EtcdTestCase(unittest.TestCase):
    """One etcd per test class (cls.etcd_server); per test a unique key
    prefix (self.prefix) and a client (self.etcd)."""

    etcd_server = None
    etcd = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.etcd_server = EtcdServer()
        cls.addClassCleanup(cls.etcd_server.close)
        cls.etcd_server.start()
        cls.etcd = cls.etcd_server.client()

    def setUp(self):
        super().setUp()
        if not self.etcd_server.running:     # an earlier test left it down
            self.etcd_server.start()
        self.etcd = self.etcd_server.client()
        self.prefix = unique_prefix()

    def key(self, *parts):
        """Store key under this test's prefix: key("db", "host") -> "<prefix>/db/host"
        (bytes if any part is bytes)."""
        if any(isinstance(p, bytes) for p in parts):
            return b"/".join([self.prefix.encode()] + [_b(p) for p in parts])
        return "/".join((self.prefix,) + parts)

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


class CfgfsTestCase(EtcdTestCase):
    """Adds FUSE mounts.  The class is skipped (exit 77 if nothing else ran)
    only if FUSE is unusable; a missing etcd or cfgfs is an error."""

    @classmethod
    def setUpClass(cls):
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
        return self.etcd_server.url(self.prefix if prefix is None else prefix)

    def new_mount(self):
        """An unmounted CfgfsMount, closed at the end of the test."""
        m = CfgfsMount()
        self.addCleanup(self._close_mount, m)
        return m

    def mount(self, prefix=None, opts=(), foreground=True, url=None):
        """Mount url (default: this test's prefix) and return the CfgfsMount."""
        m = self.new_mount()
        return m.mount(url or self.url(prefix), opts, foreground)

    # -- checks of what a save did to the store ------------------------------
    def store_snapshot(self, revision=None):
        """(revision, {key bytes: kv}) of this test's prefix, from one range."""
        return self.etcd.range_prefix_kvs(self.prefix + "/", revision)

    def store_history(self, since, until=None):
        """What changed under the prefix in each revision after `since` (diffs
        of snapshots), as lines for failure messages."""
        try:
            until = until or self.etcd.revision()
            return self._store_history(since, until)
        except EtcdError as e:   # e.g. compacted: only ever used in messages
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

    def assert_one_update(self, before, mount_root, path, key, expected, new_key=False,
                          timeout=5.0):
        """The save of `path` (file in a mount; mount_root is its mountpoint) that
        followed the snapshot `before` (store_snapshot()) became exactly one
        store revision that set `key` to `expected`: poll until the store has
        it and nothing is pending in the mount, then check the revision count,
        create_revision (unchanged unless new_key), the key set (no scratch
        keys; plus `key` if new_key), the other values, the file's bytes and
        its state."""
        rev0, kvs0 = before
        k = _b(key)
        expected = _b(expected)
        wait_equal(lambda: (self.etcd.get(k) or {}).get("value"), expected, timeout,
                   what="store value of %r" % k)
        wait_settled(mount_root, timeout)
        rev1, kvs1 = self.store_snapshot()
        history = "\n  ".join(self.store_history(rev0, rev1))
        self.assertEqual(rev1 - rev0, 1, "the save should be ONE store revision; history:\n  "
                         + history)
        kv = kvs1[k]
        self.assertEqual(kv["mod_revision"], rev0 + 1, "mod_revision of %r" % k)
        if new_key:
            self.assertNotIn(k, kvs0, "%r existed before" % k)
            self.assertEqual(kv["create_revision"], rev0 + 1, "create_revision of new %r" % k)
            want_keys = set(kvs0) | {k}
        else:
            self.assertEqual(kv["create_revision"], kvs0[k]["create_revision"],
                             "create_revision of %r changed (was it deleted and "
                             "re-created?); history:\n  %s" % (k, history))
            want_keys = set(kvs0)
        self.assertEqual(set(kvs1), want_keys, "keys under the prefix; history:\n  " + history)
        for other in want_keys - {k}:
            self.assertEqual(kvs1[other], kvs0[other], "unrelated key %r changed" % other)
        self.assertEqual(read_file(path), expected, "file content of %s" % path)
        self.assertEqual(cfgfs_state(path), "synced", "state of %s" % path)
        return kv

    def _close_mount(self, m):
        if self._test_failed() and m.url is not None:
            sys.stderr.write("\n--- cfgfs log tail for %s (%s) ---\n%s\n"
                             % (self.id(), m.log_path, m.log_tail()))
        m.close()


def _exit_status(result):
    if not result.wasSuccessful():
        return 1
    skipped_tests = sum(1 for t, _ in result.skipped if isinstance(t, unittest.TestCase))
    fuse_skips = [r for _, r in result.skipped if str(r).startswith(FUSE_SKIP_REASON)]
    if fuse_skips and result.testsRun - skipped_tests == 0:
        return EXIT_SKIP
    return 0


def main(argv=None):
    """Run the __main__ module's tests verbosely; exit 0/1/77."""
    _install_signal_handlers()
    faulthandler.enable()
    prog = unittest.main(module="__main__", argv=argv, exit=False, verbosity=2)
    _cleanup_all()
    sys.exit(_exit_status(prog.result))

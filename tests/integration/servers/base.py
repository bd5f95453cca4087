"""What every store module builds on: ServerProcess (the lifecycle of a real
store server on loopback), StoreClient, StoreLimits, StoreError, free ports
and the global cleanup registry (everything started is stopped at exit, on
SIGTERM/SIGHUP, and by harness.main(), even when a test fails)."""

import atexit
import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # tests/integration
REPO = os.path.dirname(os.path.dirname(HERE))

# ---------------------------------------------------------------------------
# Global safety net: everything started here is stopped at exit / on signals.
# ---------------------------------------------------------------------------

_live_servers = set()
# Run by cleanup_all() before the servers are stopped (harness: the mounts,
# whose daemons still talk to the servers).
cleanup_hooks = []
_handlers_installed = False


def cleanup_all():
    for hook in list(cleanup_hooks):
        hook()
    for s in list(_live_servers):
        try:
            s.close()
        except Exception as e:  # keep going: other resources still need cleanup
            sys.stderr.write("harness: cleanup of %s failed: %r\n" % (type(s).__name__, e))


def _on_signal(signum, frame):
    sys.stderr.write("\nharness: got signal %d, cleaning up\n" % signum)
    cleanup_all()
    os._exit(128 + signum)


def install_signal_handlers():
    """SIGTERM/SIGHUP: clean up and exit. SIGINT keeps raising
    KeyboardInterrupt, which unittest propagates, so atexit cleans up."""
    global _handlers_installed
    if _handlers_installed or threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    _handlers_installed = True


atexit.register(cleanup_all)

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


def _b(x):
    if isinstance(x, str):
        return x.encode("utf-8")
    return bytes(x)


def b64(x):
    return base64.b64encode(_b(x)).decode("ascii")


def unb64(s):
    return base64.b64decode(s) if s else b""


def _tail(path, lines=40):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            data = f.read()
    except OSError as e:
        return "(no log: %s)" % e
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def cfgfs_env(extra=None):
    """Environment for cfgfs: ours minus proxy settings (the store is on
    loopback; an http_proxy must not get in the way) and minus ETCDCTL_* and
    CONSUL_* (the endpoints, token, certificates or password of the user's
    own etcd or Consul, which cfgfs takes as defaults), plus extra."""
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
           and not k.startswith(("CONSUL_", "ETCDCTL_"))}
    env.update(extra or {})
    return env


# ---------------------------------------------------------------------------
# Stores: errors, limits, clients
# ---------------------------------------------------------------------------


class StoreError(RuntimeError):
    """A store (etcd or Consul) refused or failed a request."""

    def __init__(self, msg, status=None, body=None):
        super().__init__(msg)
        self.status = status
        self.body = body


class StoreLimits:
    """What a test may rely on for one kind of store (see STORE_LIMITS).
    Every store gives every field of FIELDS (a missing one is a TypeError,
    so a new store cannot forget one)."""

    FIELDS = {
        "max_value": "largest file cfgfs accepts (EFBIG above), bytes",
        "txn_ops": "operations one transaction may hold",
        "dir_rename_max_keys": "most keys a directory rename moves (one more: EXDEV)",
        "counts_writes": "every write is exactly one revision (revision() counts writes)",
        "history": "old revisions can be read",
        "compaction": "client.compact() works",
        "flags": "keys carry flags (user.cfgfs.flags)",
        "version_counts_puts": "user.cfgfs.version = puts since creation",
        "any_key_bytes": "keys may be any bytes (not only UTF-8)",
        "leading_slash_prefix": "SCHEME://H//app mounts keys \"/app/...\"",
        "odd_key_segments": "keys may hold empty, '.' or '..' segments and NUL bytes",
        "name_max": "longest file name a key segment gets before it is cut and hashed",
        "version_after_two_puts": "user.cfgfs.version after a create and one put",
        "dirs_are_keys": "every directory is a key \"dir/\", not only mkdir'ed ones",
    }

    def __init__(self, **kw):
        missing, unknown = set(self.FIELDS) - set(kw), set(kw) - set(self.FIELDS)
        if missing or unknown:
            raise TypeError("StoreLimits: missing %s, unknown %s"
                            % (sorted(missing), sorted(unknown)))
        self.__dict__.update(kw)

    def __repr__(self):
        return "StoreLimits(%s)" % ", ".join("%s=%r" % kv for kv in sorted(self.__dict__.items()))


class StoreClient:
    """Base of the store clients: the endpoint, a urllib opener that never
    goes through an http_proxy from the environment, and put_many().  A
    subclass sets kind and limits (its module's LIMITS).  tls: a
    tls.ClientTLS (https, with its CA and client certificate), or None
    (plain http)."""

    kind = None
    limits = None

    def __init__(self, endpoint, timeout=5.0, tls=None):
        self.endpoint = endpoint
        self.tls = tls
        self.base = "%s://%s" % ("https" if tls else "http", endpoint)
        self.timeout = timeout
        handlers = [urllib.request.ProxyHandler({})]
        if tls:
            handlers.append(urllib.request.HTTPSHandler(context=tls.context()))
        self._opener = urllib.request.build_opener(*handlers)

    def put_many(self, items):
        """Put every key of the dict, in as few transactions as the store allows
        (STORE_LIMITS[...].txn_ops keys each); NOT atomic beyond that.  Returns
        the revision of the last one."""
        items = list(items.items() if isinstance(items, dict) else items)
        n = self.limits.txn_ops
        rev = None
        for i in range(0, len(items), n):
            rev = self.txn_put_many(items[i:i + n])
        return rev


# ---------------------------------------------------------------------------
# ServerProcess: one real store server on loopback
# ---------------------------------------------------------------------------


class ServerProcess:
    """A real single-node store server on loopback, in a temp dir (data in
    data_dir, output in log_path), on free ports of our choosing.

    stop() removes the temp dir by default; stop(keep_data=True), kill() and
    restart() keep the data dir and ports so that start() brings the same
    store back on the same endpoint.  Every started server is in the cleanup
    registry until stop() removes its data.

    A subclass sets kind, port_names (attribute names; the first is the port
    clients use, the endpoint), start_timeout, env_prefix (variables of ours
    the server must not see) and provides _args(), client(), and
    _not_ready(probe) (None once the server takes requests, else why not;
    an exception also means "not yet") with _probe_client()."""

    kind = None
    port_names = ()
    start_timeout = 30.0
    ready_interval = 0.01
    env_prefix = None
    tls = None          # a tls.ServerTLS if the server speaks TLS to clients

    def __init__(self, binary=None):
        self.binary = binary
        self.tmpdir = None
        self.proc = None
        for name in self.port_names:
            setattr(self, name, None)

    # -- for subclasses ------------------------------------------------------
    def default_binary(self):
        """The binary to run when none was given (called by start())."""
        raise NotImplementedError

    def _args(self):
        raise NotImplementedError

    def client(self):
        raise NotImplementedError

    def _probe_client(self):
        return self.client()

    def _not_ready(self, probe):
        raise NotImplementedError

    # -- properties ----------------------------------------------------------
    @property
    def ports(self):
        return [getattr(self, name) for name in self.port_names]

    @ports.setter
    def ports(self, values):
        for name, v in zip(self.port_names, values):
            setattr(self, name, v)

    @property
    def endpoint(self):
        return "127.0.0.1:%d" % self.ports[0]

    @property
    def data_dir(self):
        return os.path.join(self.tmpdir, "data")

    @property
    def log_path(self):
        return os.path.join(self.tmpdir, "%s.log" % self.kind)

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def scheme(self):
        """cfgfs's URL scheme for this server: the kind, plus "s" with TLS."""
        return self.kind + ("s" if self.tls else "")

    def url(self, prefix=""):
        """Store URL for cfgfs, e.g. "etcd://127.0.0.1:C/app" ("etcds://..." with TLS)."""
        return "%s://%s/%s" % (self.scheme, self.endpoint, prefix)

    def log_tail(self, lines=40):
        return _tail(self.log_path, lines) if self.tmpdir else "(no log)"

    def _env(self):
        return {k: v for k, v in cfgfs_env().items() if not k.startswith(self.env_prefix)}

    # -- lifecycle -----------------------------------------------------------
    def start(self, timeout=None):
        if timeout is None:
            timeout = self.start_timeout
        if self.running:
            return self
        if self.binary is None:
            self.binary = self.default_binary()
        if self.tmpdir is None:
            self.tmpdir = tempfile.mkdtemp(prefix="cfgfs-%s-" % self.kind)
        _live_servers.add(self)
        install_signal_handlers()
        fixed_ports = self.ports[0] is not None   # restart: must keep the endpoint
        attempts = 3 if fixed_ports else 10
        for attempt in range(1, attempts + 1):
            if not fixed_ports:
                self.ports = free_ports(len(self.port_names))
            offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
            with open(self.log_path, "ab") as log:
                log.write(("=== harness: starting %s on %s (attempt %d)\n"
                           % (self.kind, self.endpoint, attempt)).encode())
                log.flush()
                try:
                    self.proc = subprocess.Popen(self._args(), stdin=subprocess.DEVNULL,
                                                 stdout=log, stderr=subprocess.STDOUT,
                                                 env=self._env(), start_new_session=True)
                except OSError as e:
                    raise RuntimeError("cannot run %s (%s): %s"
                                       % (self.kind, self.binary, e)) from None
            err = self._wait_ready(timeout)
            if err is None:
                return self
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                this_log = f.read().decode("utf-8", "replace")
            if "address already in use" in this_log and attempt < attempts:
                if fixed_ports:
                    time.sleep(0.2 * attempt)   # retry backoff, not synchronization
                else:   # the data dir may record the old ports (etcd's peer URL, Raft's config)
                    shutil.rmtree(self.data_dir, ignore_errors=True)
                continue
            raise RuntimeError("%s failed to start on %s: %s\n--- %s log tail (%s) ---\n%s"
                               % (self.kind, self.endpoint, err, self.kind, self.log_path,
                                  self.log_tail()))
        raise AssertionError("unreachable")

    def _wait_ready(self, timeout):
        probe = self._probe_client()
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                self.proc = None
                return "%s exited with status %d" % (self.kind, rc)
            try:
                last = self._not_ready(probe)
                if last is None:
                    return None
            except Exception as e:
                last = e
            time.sleep(self.ready_interval)
        self._terminate(signal.SIGKILL, 5)
        return "not ready after %.0fs (last: %r)" % (timeout, last)

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
            self.ports = [None] * len(self.port_names)
            _live_servers.discard(self)

    def kill(self):
        """SIGKILL (simulated crash/outage); data and ports are kept for start()."""
        self._terminate(signal.SIGKILL, 10)

    def restart(self, timeout=None):
        """Stop gracefully and start again: same data dir, same ports."""
        self.stop(keep_data=True)
        return self.start(timeout)

    def close(self):
        self.stop(keep_data=False)

    @contextlib.contextmanager
    def on_other_port(self):
        """Outage as seen by clients of the usual endpoint (cfgfs): the server
        is stopped and run with the same data on another client port; yields
        a client for it so the test can change the store meanwhile.  On exit
        the server is back on its usual port."""
        name = self.port_names[0]
        orig = getattr(self, name)
        self.stop(keep_data=True)
        try:
            while getattr(self, name) in [orig] + self.ports[1:]:
                setattr(self, name, free_port())
            self.start()
            yield self.client()
        finally:
            self.stop(keep_data=True)
            setattr(self, name, orig)
            self.start()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


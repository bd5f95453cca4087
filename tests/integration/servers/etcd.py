"""etcd: EtcdServer, EtcdClient (v3 through the JSON gateway), txn helpers,
EtcdCluster (several members on loopback, or each in a network namespace
of its own so that one can be cut off from its peers) and etcd's limits.
Environment: ETCD, the etcd binary (default: "etcd" from PATH).

TLS and authentication, as measured with etcd 3.4 (see also
/work/shared/research/next_capabilities.md, section 2):
  * EtcdServer(tls=ServerTLS(...)) serves https only; with client_ca set
    it runs with --trusted-ca-file and --client-cert-auth, and a client
    without a certificate from that CA is refused in the handshake.
  * EtcdServer(auth=True) creates user root (password root_password, role
    root) and enables authentication at its first start; client() then
    authenticates as root.  add_user() makes users limited to a prefix.
  * EtcdClient(user=, password=) gets a token from /v3/auth/authenticate
    and sends it raw as "Authorization: <token>" (no "Bearer"); when the
    token is refused (HTTP 401, gRPC code 16 "invalid auth token", or
    "revision of auth store is old") it authenticates again, once.
  * With auth on and --client-cert-auth, the gateway refuses any request
    carrying a client certificate with a CN (HTTP 400 "CommonName of
    client sending a request against gateway will be ignored ...");
    certificates without a CN work."""

import concurrent.futures
import json
import os
import secrets
import signal
import statistics
import time
import urllib.error
import urllib.request

from . import netns
from .base import (ServerProcess, StoreClient, StoreError, StoreLimits, _b, b64,
                   free_ports, unb64)

__all__ = ["EtcdServer", "EtcdClient", "EtcdError", "op_put", "op_delete", "compare",
           "prefix_end", "EtcdCluster", "EtcdMember", "summarize_times"]

KIND = "etcd"

LIMITS = StoreLimits(
    # The largest file cfgfs accepts (EFBIG above, at write()/truncate()
    # time): etcd's --max-request-bytes (1.5 MiB) minus cfgfs's request
    # slack (512 B, src/store_etcd.c) minus 4 KiB (writer_max_value()).
    # README: "etcd: 1.5 MiB minus 4 KiB".
    max_value=1536 * 1024 - 512 - 4096,
    # --max-txn-ops (default 128); etcd counts compares and operations
    # separately.
    txn_ops=128,
    # A directory rename is, per key, one compare (its mod_revision) and
    # one put, plus a single delete-range of the old prefix: N compares
    # <= 128 and N + 1 operations <= 128, so at most 127 keys (no
    # mkdir'ed subdirectories, whose "DIR/" markers are puts too); one
    # more gives EXDEV.  README: "about 127 keys".
    dir_rename_max_keys=127,
    # Every write is exactly one revision: revision() and mod_revision
    # count writes.
    counts_writes=True,
    history=True,          # old revisions can be read (until compacted)
    compaction=True,
    flags=False,           # no user.cfgfs.flags
    version_counts_puts=True,   # user.cfgfs.version = puts since creation
    any_key_bytes=True,    # keys may be any bytes (not only UTF-8)
    leading_slash_prefix=True,  # etcd://H//app mounts keys "/app/..."
    odd_key_segments=True,
    name_max=255,               # then "%#" and a hash (README "Names")
    version_after_two_puts=2,   # etcd's version counts puts
    dirs_are_keys=False,        # "dir/" only for mkdir'ed directories
)


class EtcdError(StoreError):
    """status: the HTTP status (None for an error object in a 200 answer);
    code: the gRPC code of the gateway's error body, if it has one;
    message: its message (e.g. "etcdserver: invalid auth token")."""

    def __init__(self, msg, status=None, body=None):
        super().__init__(msg, status, body)
        self.code, self.message = None, None
        try:
            out = json.loads(body or b"")
        except ValueError:
            return
        if isinstance(out, dict):
            err = out.get("error")
            if isinstance(err, dict):      # a stream's error object
                self.code, self.message = err.get("grpc_code"), err.get("message")
            else:
                self.code, self.message = out.get("code"), out.get("message") or err


def prefix_end(prefix):
    """etcd range_end covering every key that starts with prefix."""
    p = bytearray(_b(prefix))
    while p and p[-1] == 0xFF:
        p.pop()
    if not p:
        return b"\0"          # whole keyspace
    p[-1] += 1
    return bytes(p)


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


class EtcdClient(StoreClient):
    """etcd v3 via its JSON gateway.  Keys/values: str (UTF-8) or bytes.
    tls: a tls.ClientTLS (https); user/password: authenticate (see the
    module comment); token: use this token as it is (no user needed)."""

    kind = KIND
    limits = LIMITS

    def __init__(self, endpoint, timeout=5.0, tls=None, user=None, password=None, token=None):
        super().__init__(endpoint, timeout, tls)
        self.user, self.password = user, password
        self.token = token
        self.authentications = 0      # how many tokens this client asked for

    def _post(self, path, body, headers=None):
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        req = urllib.request.Request(self.base + path, data=json.dumps(body).encode(),
                                     headers=h, method="POST")
        try:
            with self._opener.open(req, timeout=self.timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            raise EtcdError("%s %s: HTTP %d: %s" % (self.endpoint, path, e.code,
                                                    raw.decode("utf-8", "replace")),
                            e.code, raw) from None
        try:
            out = json.loads(raw or b"{}")
        except ValueError:
            raise EtcdError("%s %s: not JSON: %r" % (self.endpoint, path, raw[:300]),
                            None, raw) from None
        if isinstance(out, dict) and "error" in out:
            raise EtcdError("%s %s: %s" % (self.endpoint, path, out), None, raw)
        return out

    @staticmethod
    def token_refused(e):
        """Is this error etcd refusing the token (so a new one may work)?"""
        text = (e.body or b"").decode("utf-8", "replace")
        return e.status == 401 or e.code == 16 or "invalid auth token" in text \
            or "revision of auth store is old" in text

    def authenticate(self, user=None, password=None):
        """POST /v3/auth/authenticate; returns the token (and keeps it unless
        user/password were given here)."""
        out = self._post("/v3/auth/authenticate", {"name": user or self.user,
                                                    "password": password or self.password})
        if user is None:
            self.token = out["token"]
            self.authentications += 1
        return out["token"]

    def call(self, path, body):
        """POST body (JSON) to path, e.g. "/v3/kv/range"; parsed response.
        With a user, the request carries a token (a new one if etcd refuses it)."""
        for attempt in (1, 2):
            headers = {}
            if self.user and self.token is None:
                self.authenticate()
            if self.token:
                headers["Authorization"] = self.token
            try:
                return self._post(path, body, headers)
            except EtcdError as e:
                if attempt == 1 and self.user and self.token_refused(e):
                    self.token = None
                    continue
                raise
        raise AssertionError("unreachable")

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

    def put(self, key, value, flags=0):
        """Returns the revision of the put.  (flags: Consul only; must be 0.)"""
        if flags:
            raise ValueError("etcd keys have no flags")
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

    # -- cluster --------------------------------------------------------------
    def status(self):
        """/v3/maintenance/status: header.member_id, leader, raftTerm, ...
        (ids as decimal strings).  Answered by this member alone."""
        return self.call("/v3/maintenance/status", {})

    def serializable_get(self, key):
        """get() answered from this member's own copy (no leader needed)."""
        kvs = self.call("/v3/kv/range", {"key": b64(key), "serializable": True}).get("kvs")
        return self._kv(kvs[0]) if kvs else None

    def move_leader(self, target_id):
        """Hand leadership to member target_id (ask the leader)."""
        return self.call("/v3/maintenance/transfer-leadership", {"targetID": str(target_id)})

    # -- authentication (needs root once auth is on) -------------------------
    def user_add(self, name, password):
        return self.call("/v3/auth/user/add", {"name": name, "password": password})

    def role_add(self, name):
        return self.call("/v3/auth/role/add", {"name": name})

    def role_grant_prefix(self, role, prefix, perm):
        """Let role do perm ("READ", "WRITE" or "READWRITE") on every key
        starting with prefix ("" = every key)."""
        return self.call("/v3/auth/role/grant", {"name": role, "perm": {
            "permType": perm, "key": b64(prefix or b"\0"), "range_end": b64(prefix_end(prefix))}})

    def user_grant_role(self, user, role):
        return self.call("/v3/auth/user/grant", {"user": user, "role": role})

    def auth_enable(self):
        return self.call("/v3/auth/enable", {})

    def add_user(self, name, password, grants=()):
        """A user with a role of its own holding grants: (prefix, perm) pairs."""
        self.user_add(name, password)
        if grants:
            role = "role-" + name
            self.role_add(role)
            for prefix, perm in grants:
                self.role_grant_prefix(role, prefix, perm)
            self.user_grant_role(name, role)


class EtcdServer(ServerProcess):
    """A real single-node etcd on loopback (see ServerProcess): a client and
    a peer port; endpoint = 127.0.0.1:client_port.

    tls: a tls.ServerTLS: clients are served over https only (URL scheme
    etcds), the harness's clients use tls.harness.  auth: create root and
    enable authentication at the first start (see the module comment).
    extra_args: more etcd flags, e.g. ["--auth-token-ttl", "2"]."""

    kind = KIND
    port_names = ("client_port", "peer_port")
    start_timeout = 30.0
    ready_interval = 0.01
    env_prefix = "ETCD"

    def __init__(self, binary=None, tls=None, auth=False, extra_args=()):
        super().__init__(binary)
        self.tls = tls
        self.auth = auth
        self.extra_args = list(extra_args)
        self.root_password = "root-" + secrets.token_hex(8) if auth else None
        self.auth_enabled = False

    def default_binary(self):
        return os.environ.get("ETCD") or "etcd"

    def client(self, user=None, password=None, timeout=5.0):
        """An EtcdClient; once auth is on, as root unless user is given."""
        if user is None and self.auth_enabled:
            user, password = "root", self.root_password
        return EtcdClient(self.endpoint, timeout, self.tls.harness if self.tls else None,
                          user, password)

    def _probe_client(self):
        return self.client(timeout=1.0)

    def _not_ready(self, probe):
        probe.revision()
        return None

    def start(self, timeout=None):
        super().start(timeout)
        if self.auth and not self.auth_enabled:
            c = self.client()
            c.user_add("root", self.root_password)
            c.role_add("root")
            c.user_grant_role("root", "root")
            c.auth_enable()
            self.auth_enabled = True
        return self

    def stop(self, keep_data=False, timeout=10.0):
        super().stop(keep_data, timeout)
        if not keep_data:
            self.auth_enabled = False

    def add_user(self, name, password, grants=()):
        """As root: a user with grants [(prefix, "READ"|"WRITE"|"READWRITE")]."""
        self.client().add_user(name, password, grants)

    def _client_scheme(self):
        return "https" if self.tls else "http"

    def _tls_args(self):
        if not self.tls:
            return []
        args = ["--cert-file", self.tls.cert, "--key-file", self.tls.key]
        if self.tls.client_ca:
            args += ["--trusted-ca-file", self.tls.client_ca, "--client-cert-auth"]
        return args

    def _args(self):
        c, p = self.client_port, self.peer_port
        curl = "%s://127.0.0.1:%d" % (self._client_scheme(), c)
        return [self.binary, "--name", "t", "--data-dir", self.data_dir,
                "--listen-client-urls", curl,
                "--advertise-client-urls", curl,
                "--listen-peer-urls", "http://127.0.0.1:%d" % p,
                "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % p,
                "--initial-cluster", "t=http://127.0.0.1:%d" % p,
                "--heartbeat-interval", "10", "--election-timeout", "100",
                "--logger", "zap", "--log-outputs", "stderr", "--log-level", "error"] \
            + self._tls_args() + self.extra_args


# ---------------------------------------------------------------------------
# A cluster of several members
# ---------------------------------------------------------------------------


class EtcdMember(EtcdServer):
    """One member of an EtcdCluster (plain http).  On loopback (host
    127.0.0.1, ports of its own), or in a network namespace of its own
    (netns: a netns.NetnsHost; host = its address, ports 2379/2380).
    Besides ServerProcess's stop/kill/restart: pause() (SIGSTOP: the
    process hangs, the kernel still accepts connections), resume()
    (SIGCONT), and cut_off()/heal() through the cluster."""

    def __init__(self, cluster, index, binary=None, host="127.0.0.1", netns_host=None):
        super().__init__(binary)
        self.cluster = cluster
        self.index = index
        self.name = "m%d" % (index + 1)
        self.host = host
        self.netns = netns_host
        self.paused = False
        self.is_cut_off = False
        self.member_id = None     # etcd's id (decimal string), known once it answered

    @property
    def endpoint(self):
        return "%s:%d" % (self.host, self.client_port)

    @property
    def peer_url(self):
        return "http://%s:%d" % (self.host, self.peer_port)

    @property
    def up(self):
        """Running, not paused, not cut off: a member to talk to."""
        return self.running and not self.paused and not self.is_cut_off

    def _args(self):
        c = self.cluster
        curl = "http://%s:%d" % (self.host, self.client_port)
        args = [self.binary, "--name", self.name, "--data-dir", self.data_dir,
                "--listen-client-urls", curl, "--advertise-client-urls", curl,
                "--listen-peer-urls", self.peer_url,
                "--initial-advertise-peer-urls", self.peer_url,
                "--initial-cluster", c.initial_cluster(),
                "--initial-cluster-token", c.token, "--initial-cluster-state", "new",
                "--heartbeat-interval", str(c.heartbeat_ms),
                "--election-timeout", str(c.election_ms),
                "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn"]
        args += self.extra_args
        return self.netns.command(args) if self.netns else args

    def start(self, timeout=None):
        super().start(timeout)
        if self.member_id is None:
            self.member_id = self.client().status()["header"]["member_id"]
        return self

    def pause(self):
        """SIGSTOP: the member hangs (its sockets stay open).  Returns once every
        thread of it is stopped: the signal is delivered asynchronously, and a
        request sent in between would still be answered."""
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True
        task_dir = "/proc/%d/task" % self.proc.pid

        def stopped():
            try:
                for tid in os.listdir(task_dir):
                    with open("%s/%s/stat" % (task_dir, tid)) as f:
                        if f.read().rsplit(")", 1)[1].split()[0] not in ("T", "t"):
                            return False
            except FileNotFoundError:
                return True    # gone: nothing answers either
            return True
        deadline = time.monotonic() + 5
        while not stopped() and time.monotonic() < deadline:
            time.sleep(0.001)

    def resume(self):
        if self.paused and self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def _terminate(self, sig, timeout):
        self.resume()       # a stopped process would not act on SIGTERM
        super()._terminate(sig, timeout)

    def cut_off(self):
        self.cluster.cut_off(self)

    def heal(self):
        self.cluster.heal(self)

    def __repr__(self):
        return "<etcd member %s %s%s%s%s>" % (
            self.name, self.endpoint if self.client_port else "(no ports)",
            "" if self.running else " down", " paused" if self.paused else "",
            " cut off" if self.is_cut_off else "")


class EtcdCluster:
    """size etcd members (default 3) that form one cluster, with short Raft
    timings (heartbeat 50 ms, election timeout 500 ms).  It passes for a
    ServerProcess where the tests need one (start, close, running, client,
    url, endpoint, log_tail), so a CfgfsTestCase can run against it
    (make_server returning an EtcdCluster).

    isolated=False: every member on 127.0.0.1, ports of its own; cut_off()
    is not possible.  isolated=True: this test process moves into a
    network namespace of its own (netns.enter_private_netns: do it before
    starting anything else) and each member lives in one more namespace on
    a bridge (netns.NetnsHost), so that cut_off(member) can drop every
    packet between it and its peers while cfgfs and the tests still reach
    it.  netns.netns_unusable_reason() says whether that works here.

    start() brings every member back (resumed, healed, running) and waits
    until all agree on a leader; running is True only if every member is
    up.  url(prefix) names every member: etcd://h1:p1,h2:p2,h3:p3/prefix."""

    kind = KIND
    tls = None
    scheme = KIND

    def __init__(self, size=3, binary=None, isolated=False, heartbeat_ms=50, election_ms=500):
        self.size = size
        self.binary = binary
        self.isolated = isolated
        self.heartbeat_ms, self.election_ms = heartbeat_ms, election_ms
        self.token = "cfgfs-" + secrets.token_hex(4)
        self.members = []
        self.bridge = None
        self._hosts = []

    # -- ServerProcess look-alike ------------------------------------------------
    @property
    def running(self):
        return bool(self.members) and all(m.up for m in self.members)

    @property
    def endpoints(self):
        return [m.endpoint for m in self.members]

    @property
    def endpoint(self):
        return self.members[0].endpoint

    def url(self, prefix=""):
        return "%s://%s/%s" % (self.scheme, ",".join(self.endpoints), prefix)

    def log_tail(self, lines=40):
        return "\n".join("--- %s ---\n%s" % (m.name, m.log_tail(lines)) for m in self.members)

    def initial_cluster(self):
        return ",".join("%s=%s" % (m.name, m.peer_url) for m in self.members)

    def _make_members(self):
        if self.isolated:
            self.bridge = netns.Bridge()
            for i in range(self.size):
                h = netns.NetnsHost(self.bridge, i)
                self._hosts.append(h)
                m = EtcdMember(self, i, self.binary, h.address, h)
                m.client_port, m.peer_port = 2379, 2380
                self.members.append(m)
        else:
            ports = free_ports(2 * self.size)
            for i in range(self.size):
                m = EtcdMember(self, i, self.binary)
                m.client_port, m.peer_port = ports[2 * i], ports[2 * i + 1]
                self.members.append(m)

    def start(self, timeout=60.0):
        """Start the cluster (first call), or bring every member back."""
        if not self.members:
            self._make_members()
            try:
                self._start_members(self.members, timeout)
            except Exception:
                self.close()
                raise
        else:
            for m in self.members:
                if m.is_cut_off:
                    self.heal(m)
                m.resume()
            self._start_members([m for m in self.members if not m.running], timeout)
        self.wait_healthy(timeout)
        return self

    @staticmethod
    def _start_members(members, timeout):
        """Start them at once (a new cluster needs a quorum to become ready)."""
        if not members:
            return
        with concurrent.futures.ThreadPoolExecutor(len(members)) as ex:
            futures = [ex.submit(m.start, timeout) for m in members]
            errors = [f.exception() for f in futures if f.exception() is not None]
        if errors:
            raise errors[0]

    def close(self):
        for m in self.members:
            if m.is_cut_off:
                try:
                    self.heal(m)
                except Exception:
                    pass
        for m in self.members:
            m.close()
        for h in self._hosts:
            h.close()
        self.members, self._hosts = [], []

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    # -- clients, leader -------------------------------------------------------
    def client(self, member=None, exclude=(), timeout=5.0):
        """A client of member, or of the first member that is up and not in
        exclude."""
        if member is None:
            ups = [m for m in self.members if m.up and m not in exclude]
            if not ups:
                raise RuntimeError("no member is up: %r" % (self.members,))
            member = ups[0]
        return member.client(timeout=timeout)

    def put(self, key, value, exclude=(), timeout=30.0, prefer=None):
        """Put through a member that is up and not in exclude, retrying (with
        short timeouts) until one takes it; returns (member, revision).  A
        follower forwards a proposal to the leader it knows; if that leader
        just died or was cut off, the proposal is lost and etcd answers only
        after its request timeout (5 s + 2 election timeouts), so a put
        right after a failure needs this.  A retried put may be applied
        twice (same value): not for counting writes.  prefer: the member to
        try first (e.g. the leader)."""
        deadline = time.monotonic() + timeout
        last = None
        order = ([prefer] if prefer is not None else []) + \
            [m for m in self.members if m is not prefer]
        while time.monotonic() < deadline:
            for m in order:
                if m.up and m not in exclude:
                    try:
                        return m, m.client(timeout=1.5).put(key, value)
                    except (StoreError, OSError) as e:
                        last = e
            time.sleep(0.02)
        raise AssertionError("no member took a put within %.0fs (last: %s)" % (timeout, last))

    def member(self, endpoint):
        """The member whose client endpoint is endpoint ("host:port")."""
        for m in self.members:
            if m.endpoint == endpoint:
                return m
        raise KeyError("no member has endpoint %r (members: %s)" % (endpoint, self.endpoints))

    def by_id(self, member_id):
        for m in self.members:
            if m.member_id == str(member_id):
                return m
        return None

    def leader(self, timeout=10.0, among=None):
        """The member that every member of among (default: those up) names
        as leader, once they agree on one that is among them."""
        among = list(among or [m for m in self.members if m.up])
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                ids = {m.client(timeout=1.0).status().get("leader") for m in among}
                lead = self.by_id(ids.pop()) if len(ids) == 1 else None
                if lead is not None and lead in among:
                    return lead
                last = "leaders named: %r" % (ids,)
            except (StoreError, OSError) as e:
                last = e
            if time.monotonic() > deadline:
                raise AssertionError("members %s agree on no leader within %.0fs (last: %s)"
                                     % ([m.name for m in among], timeout, last))
            time.sleep(0.02)

    def wait_healthy(self, timeout=30.0):
        """Every member that is up agrees on a leader and answers a
        linearizable read with the same revision as the leader, or newer."""
        deadline = time.monotonic() + timeout
        lead = self.leader(timeout)
        last = None
        while True:
            try:
                rev = lead.client(timeout=1.0).revision()
                if all(m.client(timeout=1.0).revision() >= rev
                       for m in self.members if m.up):
                    return lead
            except (StoreError, OSError) as e:
                last = e
            if time.monotonic() > deadline:
                raise AssertionError("cluster not healthy within %.0fs: %r; last: %s\n%s"
                                     % (timeout, self.members, last, self.log_tail(10)))
            time.sleep(0.02)

    def move_leader(self, target, timeout=10.0):
        """Make target the leader (etcd's leadership transfer)."""
        deadline = time.monotonic() + timeout
        while True:
            lead = self.leader(max(1.0, deadline - time.monotonic()))
            if lead is target:
                return target
            try:
                lead.client().move_leader(target.member_id)
            except (StoreError, OSError) as e:
                if time.monotonic() > deadline:
                    raise AssertionError("cannot move the leader to %s: %s" % (target.name, e))
                time.sleep(0.05)    # e.g. "not leader" during an election: retry

    # -- cutting a member off its peers ----------------------------------------
    def cut_off(self, member):
        """Drop every packet between member and the other members, both
        ways; clients (this process, cfgfs) still reach it."""
        if not self.isolated:
            raise RuntimeError("cut_off() needs EtcdCluster(isolated=True)")
        for other in self.members:
            if other is not member:
                member.netns.blackhole(other.host)
                other.netns.blackhole(member.host)
        member.is_cut_off = True

    def heal(self, member):
        for other in self.members:
            if other is not member:
                member.netns.unblackhole(other.host)
                other.netns.unblackhole(member.host)
        member.is_cut_off = False


def summarize_times(label, times):
    """"failover kill: median 0.31 s, max 0.45 s over 5 runs" (times in s)."""
    if not times:
        return "%s: no runs" % label
    return "%s: median %.2f s, max %.2f s over %d run%s" % (
        label, statistics.median(times), max(times), len(times), "" if len(times) == 1 else "s")


Server = EtcdServer
Client = EtcdClient

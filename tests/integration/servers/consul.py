"""Consul: ConsulServer, ConsulClient (KV through the HTTP API), ACL helpers,
consul_binary() and Consul's limits.  Environment: CONSUL, the consul binary
(default: what tests/fetch-consul.sh prints; it downloads Debian 11's
package once into ~/.cache/cfgfs).  See CONSUL_NOTES.md for the API as
observed."""

import json
import os
import secrets
import subprocess
import urllib.error
import urllib.parse
import urllib.request

from .base import REPO, ServerProcess, StoreClient, StoreError, StoreLimits, _b, b64, unb64

__all__ = ["ConsulServer", "ConsulClient", "ConsulError", "consul_op", "consul_url_safe",
           "consul_binary"]

KIND = "consul"

LIMITS = StoreLimits(
    # kv_max_value_size: 512 KiB, exactly 524288 bytes accepted by a PUT
    # (CONSUL_NOTES.md).  README: "Consul: 512 KiB".  (cfgfs sends values
    # too big for a base64'ed /v1/txn body as a plain PUT ?cas=.)
    max_value=512 * 1024,
    # /v1/txn takes at most 64 operations, reads and checks included.
    txn_ops=64,
    # A directory rename is, per key, a check-index and a set, plus one
    # delete-tree: 2N + 1 <= 64, so at most 31 keys; 32 give EXDEV.
    # README: "Consul: about 31".
    dir_rename_max_keys=31,
    # The index is Raft's: it also moves for writes outside the KV store
    # (catalog, sessions, ...), so a write is "index moved", never "+1".
    # One write of a key is checked by its CreateIndex and the set of
    # keys staying the same (the definition).
    counts_writes=False,
    history=False,
    compaction=False,
    flags=True,            # user.cfgfs.flags = Flags, kept across edits
    version_counts_puts=False,  # user.cfgfs.version = LockIndex (0 unless locked)
    any_key_bytes=False,   # JSON keys: UTF-8 only
    leading_slash_prefix=False,  # refused at startup, see README
    odd_key_segments=True,
    name_max=255,
    version_after_two_puts=0,   # LockIndex: no lock was taken
    dirs_are_keys=False,
)


class ConsulError(StoreError):
    pass


def consul_op(verb, key, value=None, flags=None, index=None):
    """One operation for ConsulClient.txn(), e.g. consul_op("set", k, b"v")."""
    kv = {"Verb": verb, "Key": _key_str(key)}
    if value is not None:
        kv["Value"] = b64(value)
    if flags is not None:
        kv["Flags"] = int(flags)
    if index is not None:
        kv["Index"] = int(index)
    return {"KV": kv}


def _key_str(key):
    """Consul keys travel as JSON strings: UTF-8 only (NUL is fine)."""
    if isinstance(key, str):
        return key
    try:
        return bytes(key).decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("a Consul key must be UTF-8: %r" % (key,)) from None


def consul_url_safe(key):
    """Whether Consul's HTTP router leaves /v1/kv/KEY alone (no redirect for
    '//', '.', '..' segments or a leading '/', no 400 for control bytes)."""
    k = _key_str(key)
    if k.startswith("/") or "//" in k or any(ord(c) < 0x20 or ord(c) == 0x7F for c in k):
        return False
    return not any(seg in (".", "..") for seg in k.split("/"))


class ConsulClient(StoreClient):
    """Consul KV through its HTTP API.  Keys/values: str (UTF-8) or bytes.

    Every single-key operation goes through /v1/txn, so any key works ('//',
    '.', '..' segments, a leading '/', NUL).  What differs from EtcdClient:

    * a "revision" is a Raft index: put() returns the key's new ModifyIndex,
      get() gives mod_revision=ModifyIndex, create_revision=CreateIndex,
      version=LockIndex (0 unless a session locked the key) and flags=Flags;
    * revision() is the index of the KV store: the largest index of any KV
      write, deletes included (the X-Consul-Index of a GET of a key that does
      not exist).  It only grows when KV data changes, but it jumps by more
      than one per write, so tests compare it for "unchanged" or "moved";
    * range_prefix_kvs() gives the X-Consul-Index of the prefix, the largest
      ModifyIndex or tombstone under it (the KV store's index if the prefix
      has neither): it moves exactly when something under the prefix is
      written or deleted;
    * no history, no compaction; txn_put_many() takes at most 64 keys."""

    kind = KIND
    limits = LIMITS

    def __init__(self, endpoint, token=None, timeout=5.0, tls=None):
        super().__init__(endpoint, timeout, tls)
        self.token = token

    def request(self, method, path, body=None, query=None, ok=(200,)):
        """One HTTP request; (status, headers, body bytes).  ConsulError unless
        the status is in ok.  path is sent as is (quote keys yourself)."""
        url = self.base + path
        if query:
            url += "?" + query
        headers = {}
        if self.token:
            headers["X-Consul-Token"] = self.token
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        elif isinstance(body, str):
            body = body.encode()
        req = urllib.request.Request(url, data=body, headers=headers, method=method)
        try:
            with self._opener.open(req, timeout=self.timeout) as r:
                status, hdrs, raw = r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            status, hdrs, raw = e.code, e.headers, e.read()
        if status not in ok:
            raise ConsulError("%s %s %s: HTTP %d: %s" % (self.endpoint, method, path, status,
                                                        raw.decode("utf-8", "replace")[:300]),
                              status, raw)
        return status, hdrs, raw

    @staticmethod
    def _index(hdrs):
        return int(hdrs.get("X-Consul-Index") or 0)

    @staticmethod
    def _kv(kv):
        return {"key": kv["Key"].encode("utf-8"), "value": unb64(kv.get("Value")),
                "create_revision": int(kv.get("CreateIndex", 0)),
                "mod_revision": int(kv.get("ModifyIndex", 0)),
                "version": int(kv.get("LockIndex", 0)),
                "flags": int(kv.get("Flags", 0)), "lease": 0}

    def txn(self, ops, ok=(200,)):
        """Raw /v1/txn (ops: consul_op() dicts): (status, parsed answer).  A
        failed check, cas or get answers 409 with Errors; pass ok=(200, 409)
        to look at it instead of getting ConsulError."""
        status, _, raw = self.request("PUT", "/v1/txn", list(ops), ok=ok)
        return status, json.loads(raw or b"{}")

    def put(self, key, value, flags=0):
        """Set key (any key) in a txn; returns its new ModifyIndex.  Unlike a
        plain PUT, a txn set bumps the index even if nothing changed."""
        _, out = self.txn([consul_op("set", key, value, flags=flags)])
        return int(out["Results"][0]["KV"]["ModifyIndex"])

    def put_plain(self, key, value, query=""):
        """PUT /v1/kv/KEY[?query] (e.g. "flags=42", "cas=0"): Consul's own
        answer, True or False.  Only for URL-safe keys (consul_url_safe)."""
        if not consul_url_safe(key):
            raise ValueError("key %r cannot go through the URL" % (key,))
        _, _, raw = self.request("PUT", "/v1/kv/" + urllib.parse.quote(_key_str(key), safe="/"),
                                 _b(value), query or None)
        return json.loads(raw)

    def get(self, key):
        """None, or dict(key, value(bytes), create_revision, mod_revision,
        version, flags, lease=0)."""
        status, out = self.txn([consul_op("get", key)], ok=(200, 409))
        if status == 409:
            if "doesn't exist" in json.dumps(out.get("Errors")):
                return None
            raise ConsulError("get %r: %r" % (key, out), status)
        results = out.get("Results") or []   # empty: ACLs filtered it out
        return self._kv(results[0]["KV"]) if results else None

    def delete(self, key):
        """Returns the number of keys deleted (0 or 1)."""
        status, out = self.txn([consul_op("get", key), consul_op("delete", key)], ok=(200, 409))
        if status == 409:
            if "doesn't exist" in json.dumps(out.get("Errors")):
                return 0
            raise ConsulError("delete %r: %r" % (key, out), status)
        return 1

    def delete_prefix(self, prefix):
        """Delete every key starting with prefix (a plain string prefix, as in
        etcd: "a" also matches "ab"); returns how many there were."""
        _, out = self.txn([consul_op("get-tree", prefix), consul_op("delete-tree", prefix)])
        return len(out.get("Results") or [])

    def range_prefix_kvs(self, prefix, revision=None):
        """(index of the prefix, {key bytes: kv dict as get() returns}) for
        every key starting with prefix, from ONE read."""
        if revision is not None:
            raise NotImplementedError("Consul keeps no history")
        if not consul_url_safe(prefix) and _key_str(prefix):
            raise ValueError("prefix %r cannot go through the URL" % (prefix,))
        status, hdrs, raw = self.request(
            "GET", "/v1/kv/" + urllib.parse.quote(_key_str(prefix), safe="/"), query="recurse",
            ok=(200, 404))
        kvs = json.loads(raw) if status == 200 else []
        return self._index(hdrs), {kv["Key"].encode("utf-8"): self._kv(kv) for kv in kvs}

    def range_prefix(self, prefix, revision=None):
        """{key bytes: value bytes} for every key starting with prefix."""
        return {k: kv["value"] for k, kv in self.range_prefix_kvs(prefix, revision)[1].items()}

    def revision(self):
        """The KV store's index (see the class comment)."""
        _, hdrs, _ = self.request("GET", "/v1/kv/_cfgfs_harness/no-such-key", ok=(404,))
        return self._index(hdrs)

    def txn_put_many(self, items):
        """Put every key of the dict in ONE transaction (all get the same
        ModifyIndex, which is returned); at most 64 keys."""
        items = list(items.items() if isinstance(items, dict) else items)
        if len(items) > self.limits.txn_ops:
            raise ConsulError("txn_put_many: %d keys do not fit one Consul transaction"
                              % len(items))
        _, out = self.txn([consul_op("set", k, v, flags=0) for k, v in items])
        return int(out["Results"][0]["KV"]["ModifyIndex"])

    def compact(self, revision, physical=True):
        raise NotImplementedError("Consul has no compaction (tests that need it are etcd-only)")

    def acl_token(self, rules, name=None):
        """Create an ACL policy with these rules (HCL) and a token holding it;
        returns the token's SecretID.  Needs a management token (the server's
        master token)."""
        name = name or "p-" + secrets.token_hex(4)
        _, _, raw = self.request("PUT", "/v1/acl/policy", {"Name": name, "Rules": rules})
        pid = json.loads(raw)["ID"]
        _, _, raw = self.request("PUT", "/v1/acl/token", {"Policies": [{"ID": pid}]})
        return json.loads(raw)["SecretID"]


_consul_binary = []


def consul_binary():
    """$CONSUL, or the binary tests/fetch-consul.sh prints (run once per
    process; it downloads Debian 11's consul once into ~/.cache/cfgfs)."""
    if os.environ.get("CONSUL"):
        return os.environ["CONSUL"]
    if not _consul_binary:
        script = os.path.join(REPO, "tests", "fetch-consul.sh")
        r = subprocess.run([script], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=600)
        path = r.stdout.strip()
        if r.returncode != 0 or not path:
            raise RuntimeError("%s failed (status %d): %s" % (script, r.returncode,
                                                             r.stderr.strip()[-500:]))
        _consul_binary.append(path)
    return _consul_binary[0]


class ConsulServer(ServerProcess):
    """A real single-node Consul server on loopback (see ServerProcess).
    Server mode with its data on disk (-dev keeps everything in memory, and
    a restart must keep the data): a start costs one Raft election, 1-2 s
    (raft_multiplier = 1 is the fastest; the timings -dev uses cannot be set
    from the command line).  DNS, gRPC and Serf WAN are off; HTTP, Serf LAN
    and the server RPC port are free ports we choose (Consul takes no port
    0), new ones if one is taken meanwhile.

    acl_master_token: start with ACLs on (default policy deny) and this
    master token; client() then uses it.

    tls: a tls.ServerTLS: HTTPS only (the http_port is the HTTPS port, plain
    HTTP is off: ports { http = -1, https = N }), cert_file/key_file; with
    client_ca also ca_file and verify_incoming_https, so that a client
    without a certificate from that CA is refused in the handshake.  The
    URL scheme is then consuls, the harness's clients use tls.harness."""

    kind = KIND
    port_names = ("http_port", "serf_port", "server_port")
    start_timeout = 60.0
    ready_interval = 0.02
    env_prefix = "CONSUL_"

    def __init__(self, binary=None, acl_master_token=None, tls=None):
        super().__init__(binary)
        self.acl_master_token = acl_master_token
        self.tls = tls
        self.node = "cfgfs-test-" + secrets.token_hex(4)

    def default_binary(self):
        return consul_binary()

    def client(self, token=None, timeout=5.0):
        """A ConsulClient; with ACLs on it uses the master token unless told."""
        return ConsulClient(self.endpoint, token or self.acl_master_token, timeout,
                            self.tls.harness if self.tls else None)

    def _tls_args(self):
        if not self.tls:
            return ["-http-port", str(self.http_port)]
        t = self.tls
        hcl = ["ports { http = -1, https = %d }" % self.http_port,
               "cert_file = %s" % json.dumps(t.cert), "key_file = %s" % json.dumps(t.key)]
        if t.client_ca:
            hcl += ["ca_file = %s" % json.dumps(t.client_ca), "verify_incoming_https = true"]
        return [a for h in hcl for a in ("-hcl", h)]

    def _args(self):
        args = [self.binary, "agent", "-server", "-bootstrap-expect", "1",
                "-bind", "127.0.0.1", "-client", "127.0.0.1", "-data-dir", self.data_dir,
                "-dns-port", "-1", "-grpc-port", "-1",
                "-serf-lan-port", str(self.serf_port), "-serf-wan-port", "-1",
                "-server-port", str(self.server_port), "-node", self.node,
                "-hcl", "disable_update_check = true",
                "-hcl", "performance { raft_multiplier = 1 }",
                "-log-level", "warn"] + self._tls_args()
        if self.acl_master_token:
            args += ["-hcl", 'acl { enabled = true, default_policy = "deny", '
                     'tokens { master = "%s", agent = "%s" } }'
                     % (self.acl_master_token, self.acl_master_token)]
        return args

    def _probe_client(self):
        return self.client(timeout=2.0)

    def _not_ready(self, probe):
        """Ready = a leader is known AND a KV write goes through (with ACLs:
        also the ACL system is up).  The probe key's content never changes,
        so after the first start the probe PUT changes no index."""
        _, _, raw = probe.request("GET", "/v1/status/leader")
        if not json.loads(raw or b'""'):
            return "no leader yet"
        if probe.put_plain("_cfgfs_harness/ready", b"1") is not True:
            return "probe PUT answered false"
        return None


Server = ConsulServer
Client = ConsulClient

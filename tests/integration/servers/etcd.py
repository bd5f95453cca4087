"""etcd: EtcdServer, EtcdClient (v3 through the JSON gateway), txn helpers
and etcd's limits.  Environment: ETCD, the etcd binary (default: "etcd"
from PATH)."""

import json
import os
import urllib.error
import urllib.request

from .base import ServerProcess, StoreClient, StoreError, StoreLimits, _b, b64, unb64

__all__ = ["EtcdServer", "EtcdClient", "EtcdError", "op_put", "op_delete", "compare",
           "prefix_end"]

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
)


class EtcdError(StoreError):
    pass


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
    """etcd v3 via its JSON gateway.  Keys/values: str (UTF-8) or bytes."""

    kind = KIND
    limits = LIMITS

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


class EtcdServer(ServerProcess):
    """A real single-node etcd on loopback (see ServerProcess): a client and
    a peer port; endpoint = 127.0.0.1:client_port."""

    kind = KIND
    port_names = ("client_port", "peer_port")
    start_timeout = 30.0
    ready_interval = 0.01
    env_prefix = "ETCD"

    def default_binary(self):
        return os.environ.get("ETCD") or "etcd"

    def client(self):
        return EtcdClient(self.endpoint)

    def _probe_client(self):
        return EtcdClient(self.endpoint, timeout=1.0)

    def _not_ready(self, probe):
        probe.revision()
        return None

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


Server = EtcdServer
Client = EtcdClient

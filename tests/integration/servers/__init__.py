"""The stores the integration tests run against, one module each, and the
registry that every store-generic part of the harness iterates over
(ALL_STORES, STORE_LIMITS, selected_stores(), make_server(), @all_stores,
the <Kind>TestCase bases, harness's re-exports).

Adding a store (say ZooKeeper) is: write servers/zookeeper.py and list
"zookeeper" in STORE_MODULES below.  Every @all_stores class then also runs
against it (as TestFooZookeeper), CFGFS_STORES accepts it, and harness
re-exports its public names.  A store module provides:

  KIND     the store's name: in CFGFS_STORES, the cfgfs URL scheme
           (KIND://host:port/prefix) and class names (TestFoo<Kind>).
  LIMITS   a base.StoreLimits with every field of StoreLimits.FIELDS
           (value size, keys per transaction and per directory rename,
           whether revisions count writes, history, flags, ...).
  Server   a base.ServerProcess subclass: kind, port_names (the first is
           the endpoint's), start_timeout, env_prefix, default_binary(),
           _args(), client(), _not_ready(probe) (+ _probe_client()).
           ServerProcess does the rest: free ports, temp data dir, start
           with readiness polling and a deadline, log file and log_tail(),
           stop/kill/restart with keep_data, on_other_port(), the cleanup
           registry, with-statement.
  Client   a base.StoreClient subclass (kind, limits) with the methods the
           conformance tests use, with the meanings EtcdClient documents:
           put(key, value, flags=0) -> revision, get(key) -> None or dict(key,
           value, create_revision, mod_revision, version, lease[, flags]),
           delete(key) -> 0/1, delete_prefix(prefix) -> count,
           range_prefix(prefix), range_prefix_kvs(prefix) -> (revision,
           {key: kv}), revision(), txn_put_many(items) -> revision (raising a
           StoreError subclass above LIMITS.txn_ops keys), compact() (or
           NotImplementedError when LIMITS.compaction is False), and a
           store-specific txn().  put_many() is inherited.  Keys and values
           are str or bytes; keys come back as bytes.
  __all__  the names harness re-exports (the server, client and error
           classes, request helpers); they must not clash with harness's.
"""

import importlib
import os
import re

from . import base

# The registered stores, in the order tests run against them.
STORE_MODULES = ("etcd", "consul", "zookeeper")

STORES = {}
for _name in STORE_MODULES:
    _mod = importlib.import_module("." + _name, __name__)
    if _mod.KIND != _name:
        raise ImportError("servers/%s.py has KIND %r" % (_name, _mod.KIND))
    if not (issubclass(_mod.Server, base.ServerProcess) and _mod.Server.kind == _mod.KIND
            and issubclass(_mod.Client, base.StoreClient) and _mod.Client.kind == _mod.KIND
            and _mod.Client.limits is _mod.LIMITS):
        raise ImportError("servers/%s.py breaks the store module contract (see servers/"
                          "__init__.py)" % _name)
    STORES[_name] = _mod
del _name, _mod

ALL_STORES = tuple(STORES)

# Every store-specific limit and property, in one place (from each module's LIMITS).
STORE_LIMITS = {kind: mod.LIMITS for kind, mod in STORES.items()}


def selected_stores():
    """The store kinds CFGFS_STORES selects (default: all), in ALL_STORES order."""
    env = os.environ.get("CFGFS_STORES")
    if env is None:
        return ALL_STORES
    want = set(re.split(r"[\s,]+", env.strip())) - {""}
    unknown = want - set(ALL_STORES)
    if unknown:
        raise RuntimeError("CFGFS_STORES: unknown store(s) %s (known: %s)"
                           % (" ".join(sorted(unknown)), " ".join(ALL_STORES)))
    return tuple(k for k in ALL_STORES if k in want)


def make_server(kind, **kw):
    """An (unstarted) server of this kind, e.g. "etcd" or "consul"."""
    if kind not in STORES:
        raise ValueError("unknown store kind %r" % (kind,))
    return STORES[kind].Server(**kw)

"""ZooKeeper: ZookeeperServer (a standalone server), ZookeeperEnsemble (three
members, each one stoppable, killable and pausable), ZookeeperClient and
ZooKeeper's limits.  The client speaks ZooKeeper's wire protocol itself
(about 300 lines below): the harness needs nothing beyond the standard
library, whichever python3 runs it, and every call is bounded in time.

Environment: JAVA, the java binary (default "java" from PATH);
ZOOKEEPER_CLASSPATH, the server's classpath (default: the jars of Debian's
"zookeeper" package, /usr/share/java/zookeeper.jar, plus slf4j-simple.jar so
that the server logs to its log file).

How keys map to znodes (the cfgfs mapping, zookeeper://H:P/app mounts the
znode /app): the key "app/a/b" is the znode /app/a/b.  A key is a znode that
has no children or has data; a znode with children and no data is only a
directory (in etcd's terms: no key, just a prefix of keys).  See
ZookeeperClient for what each method does and where ZooKeeper differs from
etcd."""

import base64
import hashlib
import ipaddress
import os
import select
import shutil
import signal
import socket
import struct
import tempfile
import threading
import time
import weakref

from . import base
from .base import ServerProcess, StoreClient, StoreError, StoreLimits, _b

__all__ = ["ZookeeperServer", "ZookeeperEnsemble", "ZookeeperClient", "ZookeeperError",
           "zk_op", "four_letter", "znode_path"]

KIND = "zookeeper"

# jute.maxbuffer (the server's default, 0xfffff): the largest request, and
# the largest txn a server takes from another, in bytes after the length.
JUTE_MAXBUFFER = 0xFFFFF

LIMITS = StoreLimits(
    # The largest file cfgfs accepts (EFBIG above).  ZooKeeper takes a
    # request of at most jute.maxbuffer = 0xfffff = 1048575 bytes after its
    # length; one byte more and the server closes the connection ("Len
    # error").  Measured (ZooKeeper 3.8.0, the self-test checks it): the
    # largest value of a setData is 1048555 - len(path) bytes, of a create
    # 1048528 - len(path), of a multi [create] 1048510 - len(path), of a
    # multi [check, setData] 1048520 - 2 len(path).  As for etcd, cfgfs
    # keeps 4 KiB of the request for paths and the envelope: 1 MiB minus
    # 4 KiB.  PROPOSED for the driver: it must use the same number.
    max_value=1024 * 1024 - 4096,
    # ZooKeeper limits a multi by bytes only (the request must fit
    # jute.maxbuffer), never by count.  256 is the proposed
    # caps.max_txn_ops of the driver: 256 keys of paths up to 2 KiB with
    # small values fit one request.  The harness's
    # txn_put_many() refuses more keys (and any multi that would not fit).
    txn_ops=256,
    # cfgfs's core asks for a directory rename as a check and a put per key
    # plus one delete-prefix (src/core/tree_rename.c): 2N + 1 <= 256, so
    # 127 keys; one more gives EXDEV.  (The driver turns the delete-prefix
    # into one delete per znode; 127 keys of short paths stay far below
    # jute.maxbuffer.)  PROPOSED: follows from txn_ops.
    # 2N + 1 <= 256 operations on keys; the directories' own keys
    # ("dir/": every directory is a znode) ride along uncounted.
    dir_rename_max_keys=127,
    # A zxid is the revision, and within an epoch it grows by exactly one
    # per transaction, but not per write: a refused write (setData with a
    # wrong version, create of an existing node, a failed multi) takes a
    # zxid too, and so do creating, closing and expiring a session; a new
    # leader starts a new epoch (the high 32 bits: +2**32).  Measured.
    counts_writes=False,
    history=False,         # one version of each znode: no reads at old zxids
    compaction=False,
    flags=False,           # znodes carry no user flags
    # user.cfgfs.version = the znode's dataVersion: 0 after the create, +1
    # per setData (same bytes too): puts since creation minus one (etcd's
    # first put is version 1).  Measured.  So "puts since creation" is
    # false, and Consul's "always 0" too (see the report on test_xattrs).
    version_counts_puts=False,
    # A znode path is a Java string: bytes that are not UTF-8 arrive as
    # U+FFFD, which ZooKeeper refuses with the other characters bad_name()
    # lists.  Measured.
    any_key_bytes=False,
    # A key cannot start with '/' (the znode "//app" has an empty name):
    # zookeeper://H//app means nothing; the driver refuses it.
    leading_slash_prefix=False,
    # A znode name is never empty, "." or ".." and holds no NUL (bad_name()).
    odd_key_segments=False,
    # Names are the znodes' own (NAMES_PLAIN, src/core/names.h), '%' and all,
    # up to FUSE's 1024 bytes: dubbo's providers are 300 bytes and more.
    name_max=1024,
    # dataVersion: 0 after the create, 1 after the next setData.
    version_after_two_puts=1,
    # A directory is a znode: "dir/" is a key whether or not it has children.
    dirs_are_keys=True,
)

# ---------------------------------------------------------------------------
# The wire protocol (jute): what the client needs, nothing more
# ---------------------------------------------------------------------------

OP_CREATE, OP_DELETE, OP_EXISTS, OP_GET_DATA, OP_SET_DATA = 1, 2, 3, 4, 5
OP_GET_CHILDREN, OP_SYNC, OP_PING, OP_GET_CHILDREN2, OP_CHECK, OP_MULTI = 8, 9, 11, 12, 13, 14
OP_CREATE2, OP_MULTI_READ = 15, 22
OP_SET_ACL = 7
OP_CLOSE_SESSION = -11
OP_ERROR = -1
XID_WATCH, XID_PING = -1, -2

ERRORS = {
    0: "OK", -1: "SYSTEMERROR", -2: "RUNTIMEINCONSISTENCY", -3: "DATAINCONSISTENCY",
    -4: "CONNECTIONLOSS", -5: "MARSHALLINGERROR", -6: "UNIMPLEMENTED",
    -7: "OPERATIONTIMEOUT", -8: "BADARGUMENTS", -12: "UNKNOWNSESSION",
    -13: "NEWCONFIGNOQUORUM", -14: "RECONFIGINPROGRESS", -100: "APIERROR",
    -101: "NONODE", -102: "NOAUTH", -103: "BADVERSION", -108: "NOCHILDRENFOREPHEMERALS",
    -110: "NODEEXISTS", -111: "NOTEMPTY", -112: "SESSIONEXPIRED", -113: "INVALIDCALLBACK",
    -114: "INVALIDACL", -115: "AUTHFAILED", -118: "SESSIONMOVED", -119: "NOTREADONLY",
    -120: "EPHEMERALONLOCALSESSION", -121: "NOWATCHER", -122: "REQUESTTIMEOUT",
    -123: "RECONFIGDISABLED", -124: "SESSIONCLOSEDREQUIRESASLAUTH", -125: "QUOTAEXCEEDED",
    -127: "THROTTLEDOP",
}
NONODE, BADVERSION, NODEEXISTS, NOTEMPTY, BADARGUMENTS = -101, -103, -110, -111, -8

_INT = struct.Struct("!i")
_REQ_HDR = struct.Struct("!ii")          # xid, type
_REPLY_HDR = struct.Struct("!iqi")       # xid, zxid, err
_MULTI_HDR = struct.Struct("!iBi")       # type, done, err
_STAT = struct.Struct("!qqqqiiiqiiq")
STAT_FIELDS = ("czxid", "mzxid", "ctime", "mtime", "version", "cversion", "aversion",
               "ephemeral_owner", "data_length", "num_children", "pzxid")
# world:anyone with every permission (ZooDefs.Ids.OPEN_ACL_UNSAFE)
_OPEN_ACL = _INT.pack(1) + _INT.pack(31) + _INT.pack(5) + b"world" + _INT.pack(6) + b"anyone"


class ZookeeperError(StoreError):
    """ZooKeeper refused a request (code: its error code, e.g. -101 NONODE;
    also in .status) or the connection failed (code None)."""

    def __init__(self, msg, code=None, results=None):
        super().__init__(msg, code)
        self.code = code
        self.results = results    # multi: one (code, result) per op

    @property
    def name(self):
        return ERRORS.get(self.code, str(self.code))


def _str(s):
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    return _INT.pack(len(b)) + b


def _buf(b):
    return _INT.pack(-1) if b is None else _INT.pack(len(b)) + bytes(b)


class _Reader:
    def __init__(self, data, off=0):
        self.data, self.off = data, off

    def int(self):
        v = _INT.unpack_from(self.data, self.off)[0]
        self.off += 4
        return v

    def buf(self):
        n = self.int()
        if n < 0:
            return None
        v = self.data[self.off:self.off + n]
        self.off += n
        return bytes(v)

    def str(self):
        b = self.buf()
        return None if b is None else b.decode("utf-8", "replace")

    def stat(self):
        v = _STAT.unpack_from(self.data, self.off)
        self.off += _STAT.size
        return dict(zip(STAT_FIELDS, v))

    def multi_hdr(self):
        t, done, err = _MULTI_HDR.unpack_from(self.data, self.off)
        self.off += _MULTI_HDR.size
        return t, bool(done), err


PERM_READ, PERM_WRITE, PERM_CREATE, PERM_DELETE, PERM_ADMIN = 1, 2, 4, 8, 16
PERM_ALL = 31


def digest_id(user, password):
    """The id of ZooKeeper's digest scheme: user:base64(sha1(user:password))."""
    h = hashlib.sha1(("%s:%s" % (user, password)).encode()).digest()
    return "%s:%s" % (user, base64.b64encode(h).decode())


def _create_body(path, data, flags=0):
    """flags: 0 persistent, 1 ephemeral, 2 sequential, 3 both (CreateMode)."""
    return _str(path) + _buf(data) + _OPEN_ACL + _INT.pack(flags)


def zk_op(kind, path, *args, version=-1):
    """One operation for ZookeeperClient.txn() (its answer there):
        zk_op("create", path[, data])          (0, None): a persistent znode
        zk_op("set", path, data[, version])    (0, the new stat)
        zk_op("delete", path[, version])       (0, None)
        zk_op("check", path, version)          (0, None)
    version -1 = any; it may also be given as version=."""
    if kind in ("delete", "check"):
        if len(args) > 1 or (kind == "check" and not args and version == -1):
            raise TypeError("zk_op(%r, path, version)" % kind)
        version = args[0] if args else version
        t = OP_DELETE if kind == "delete" else OP_CHECK
        return t, _str(path) + _INT.pack(version)
    if kind == "create":
        if len(args) > 1:
            raise TypeError("zk_op('create', path[, data])")
        # No data: null, as a directory (cfgfs's mkdir, and the parents it makes).
        return OP_CREATE2, _create_body(path, _b(args[0]) if args and args[0] is not None
                                        else None)
    if kind == "set":
        if not 1 <= len(args) <= 2:
            raise TypeError("zk_op('set', path, data[, version])")
        version = args[1] if len(args) > 1 else version
        return OP_SET_DATA, _str(path) + _buf(_b(args[0])) + _INT.pack(version)
    raise ValueError("zk_op: unknown kind %r" % (kind,))


def _multi_body(ops):
    out = bytearray()
    for t, body in ops:
        out += _MULTI_HDR.pack(t, 0, -1) + body
    out += _MULTI_HDR.pack(-1, 1, -1)
    return bytes(out)


def _multi_results(payload):
    """[(code, result)] of a multi response: (0, the stat) for a setData,
    (0, None) for the others.  A refused multi answers every op with an
    error: 0 for those before the one that failed, its code for it,
    RUNTIMEINCONSISTENCY (-2) for those after (measured)."""
    r = _Reader(payload)
    out = []
    while True:
        t, done, err = r.multi_hdr()
        if done:
            return out
        if t == OP_ERROR:
            out.append((r.int(), None))
        elif t == OP_CREATE:
            r.str()
            out.append((0, None))
        elif t == OP_CREATE2:
            r.str()
            out.append((0, r.stat()))
        elif t == OP_SET_DATA:
            out.append((0, r.stat()))
        elif t in (OP_DELETE, OP_CHECK):
            out.append((0, None))
        else:
            raise ZookeeperError("multi: unexpected result type %d" % t)


def _parse_hosts(endpoint):
    """"h1:p1,h2:p2,[::1]:p3" -> [(host, port)] (default port 2181)."""
    hosts = []
    for hp in endpoint.split(","):
        hp = hp.strip()
        if hp.endswith("]") or ":" not in hp:
            hosts.append((hp.strip("[]"), 2181))
        else:
            h, _, p = hp.rpartition(":")
            hosts.append((h.strip("[]"), int(p)))
    return hosts


class _Closed(ConnectionError):
    """The server closed the connection."""


class _Session:
    """One ZooKeeper session over one TCP connection, used by one thread at
    a time (a lock).  Requests are synchronous; pipeline() sends several
    before reading the answers.  A keepalive thread pings while the session
    is idle (so it never expires while we hold it) and reconnects it after a
    server restart; on a broken connection the next request reconnects too,
    to the next host, resuming the session if the server still has it.

    Sessions are shared per endpoint (see _Session.get): ZooKeeper makes
    creating and closing a session a transaction with a zxid of its own, so
    a new session per test would move revision() in between."""

    _shared = {}
    _shared_lock = threading.Lock()

    def __init__(self, endpoint, session_timeout_ms=30000):
        self.endpoint = endpoint
        self.hosts = _parse_hosts(endpoint)
        self.next_host = 0
        self.want_timeout_ms = session_timeout_ms
        self.timeout_ms = session_timeout_ms
        self.session_id, self.passwd = 0, b"\0" * 16
        self.last_zxid = 0          # the largest zxid any reply carried
        self.sock = None
        self.xid = 0
        self.lock = threading.RLock()
        self.closed = False
        self.last_io = time.monotonic()
        self.last_ok = time.monotonic()
        self._wake = threading.Event()
        self._thread = None
        _all_sessions.add(self)

    @classmethod
    def get(cls, endpoint):
        with cls._shared_lock:
            s = cls._shared.get(endpoint)
            if s is None or s.closed:
                s = cls._shared[endpoint] = cls(endpoint)
            return s

    # -- framing -------------------------------------------------------------
    def _send(self, payload, deadline):
        data = _INT.pack(len(payload)) + payload
        view = memoryview(data)
        while view:
            self._settimeout(deadline)
            n = self.sock.send(view)
            view = view[n:]

    def _recv_exact(self, n, deadline):
        out = bytearray()
        while len(out) < n:
            self._settimeout(deadline)
            chunk = self.sock.recv(min(n - len(out), 1 << 20))
            if not chunk:
                raise _Closed("connection closed by %s" % self._peer())
            out += chunk
        return bytes(out)

    def _recv_frame(self, deadline):
        n = _INT.unpack(self._recv_exact(4, deadline))[0]
        if n < 0 or n > 64 << 20:
            raise ConnectionError("bad frame length %d" % n)
        return self._recv_exact(n, deadline)

    def _settimeout(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("timed out")
        self.sock.settimeout(left)

    def _peer(self):
        try:
            return "%s:%d" % self.sock.getpeername()[:2]
        except (OSError, AttributeError, TypeError):
            return self.endpoint

    # -- connection ----------------------------------------------------------
    def _drop(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None

    def _connect(self, deadline, resume_only=False):
        """Connect to one of the hosts (in turn), resuming the session if we
        have one.  A server that closes the connection instead of answering
        the handshake has seen fewer zxids than we have (another store on
        this port): it gets a fresh session, as does one that says ours
        expired.  resume_only (the keepalive thread): never a new session,
        whose creation would be a transaction at a time nobody chose."""
        errors = []
        for _ in range(2 * len(self.hosts)):
            host, port = self.hosts[self.next_host % len(self.hosts)]
            self.next_host += 1
            per_host = min(deadline, time.monotonic() + max(1.0, (deadline - time.monotonic())
                                                             / len(self.hosts)))
            try:
                self.sock = socket.create_connection(
                    (host, port), timeout=max(0.05, per_host - time.monotonic()))
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                req = (struct.pack("!iqiq", 0, self.last_zxid, self.want_timeout_ms,
                                   self.session_id) + _buf(self.passwd) + b"\0")
                self._send(req, per_host)
                r = _Reader(self._recv_frame(per_host))
                _, timeout_ms = r.int(), r.int()
                sid = struct.unpack_from("!q", r.data, r.off)[0]
                r.off += 8
                passwd = r.buf()
            except (OSError, struct.error) as e:
                errors.append("%s:%d: %s" % (host, port, e))
                self._drop()
                if isinstance(e, _Closed):    # it refused us (see above)
                    self.session_id, self.passwd, self.last_zxid = 0, b"\0" * 16, 0
                    if resume_only:
                        return
                if time.monotonic() >= deadline:
                    break
                continue
            if timeout_ms <= 0 or sid == 0:     # our session expired: start a new one
                self._drop()
                self.session_id, self.passwd = 0, b"\0" * 16
                errors.append("%s:%d: session expired" % (host, port))
                if resume_only:
                    return
                continue
            self.session_id, self.passwd, self.timeout_ms = sid, passwd, timeout_ms
            self.xid = 0
            self.last_io = self.last_ok = time.monotonic()
            self._start_keepalive()
            return
        raise ZookeeperError("cannot connect to ZooKeeper at %s: %s"
                             % (self.endpoint, "; ".join(errors[-len(self.hosts):])))

    def _alive(self):
        """Whether the connection still stands (the server did not close it):
        an idle connection has nothing to read, or an answer nobody read."""
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
            if not readable:
                return True
            self.sock.settimeout(0)
            return self.sock.recv(1, socket.MSG_PEEK) != b""
        except (OSError, ValueError):
            return False

    # -- requests ------------------------------------------------------------
    def _read_reply(self, want_xid, deadline):
        while True:
            r = _Reader(self._recv_frame(deadline))
            xid, zxid, err = _REPLY_HDR.unpack_from(r.data, 0)
            r.off = _REPLY_HDR.size
            if xid in (XID_WATCH, XID_PING):
                continue
            if zxid > self.last_zxid:
                self.last_zxid = zxid
            if xid != want_xid:
                raise ConnectionError("reply for xid %d, expected %d" % (xid, want_xid))
            return err, zxid, r

    def pipeline(self, reqs, timeout):
        """Send every (type, body) and return [(err, zxid, reader)] in order,
        within timeout seconds (waiting for the keepalive thread and
        reconnecting included).  Any failure of the connection raises
        ZookeeperError (code None) and drops the connection: requests sent
        may or may not have been done."""
        if self.closed:
            raise ZookeeperError("session closed")
        deadline = time.monotonic() + timeout
        out = []
        if not self.lock.acquire(timeout=timeout):
            raise ZookeeperError("ZooKeeper at %s: session busy for %.1fs" % (self.endpoint,
                                                                             timeout))
        try:
            if self.sock is not None and not self._alive():
                self._drop()      # the server went away meanwhile (restarted)
            if self.sock is None:
                self._connect(deadline)
            for i in range(0, len(reqs), 256):
                chunk = reqs[i:i + 256]
                xids = []
                for t, body in chunk:
                    self.xid += 1
                    xids.append(self.xid)
                    self._send(_REQ_HDR.pack(self.xid, t) + body, deadline)
                for xid in xids:
                    out.append(self._read_reply(xid, deadline))
            self.last_io = self.last_ok = time.monotonic()
        except (OSError, struct.error) as e:
            self._drop()
            raise ZookeeperError("ZooKeeper at %s: %s" % (self.endpoint, e)) from None
        finally:
            self.lock.release()
        return out

    def request(self, t, body, timeout, ok=(0,)):
        err, zxid, r = self.pipeline([(t, body)], timeout)[0]
        if err not in ok:
            raise ZookeeperError("%s: %s" % (_OP_NAMES.get(t, t), ERRORS.get(err, err)), err)
        return err, zxid, r

    # -- keepalive -----------------------------------------------------------
    def _start_keepalive(self):
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._keepalive, name="zk-keepalive",
                                            daemon=True)
            self._thread.start()

    def _keepalive(self):
        while not self.closed:
            period = self.timeout_ms / 3000.0
            self._wake.wait(min(period, 1.0) if self.sock is None else period / 2)
            if self.closed:
                return
            if time.monotonic() - self.last_ok > self.timeout_ms / 1000.0 + 5:
                return      # the server has forgotten the session by now; a request makes one
            if not self.lock.acquire(timeout=0.1):
                continue
            try:
                if self.closed:
                    return
                if self.sock is None:
                    if not self.session_id:
                        return      # nothing to resume; the next request makes a session
                    try:
                        self._connect(time.monotonic() + 2.0, resume_only=True)
                    except ZookeeperError:
                        pass
                elif time.monotonic() - self.last_io >= period:
                    deadline = time.monotonic() + min(5.0, period)
                    try:
                        self._send(_REQ_HDR.pack(XID_PING, OP_PING), deadline)
                        while True:
                            r = self._recv_frame(deadline)
                            if _REPLY_HDR.unpack_from(r, 0)[0] == XID_PING:
                                break
                        self.last_io = self.last_ok = time.monotonic()
                    except (OSError, struct.error):
                        self._drop()
            finally:
                self.lock.release()

    def close(self, timeout=2.0):
        """Close the session (a closeSession transaction, so the server
        forgets it now rather than when it expires) and the connection."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            self._wake.set()
            if self.sock is not None:
                try:
                    deadline = time.monotonic() + timeout
                    self.xid += 1
                    self._send(_REQ_HDR.pack(self.xid, OP_CLOSE_SESSION), deadline)
                    self._read_reply(self.xid, deadline)
                except (OSError, struct.error):
                    pass
                self._drop()
        with self._shared_lock:
            if self._shared.get(self.endpoint) is self:
                del self._shared[self.endpoint]


_OP_NAMES = {OP_CREATE: "create", OP_DELETE: "delete", OP_EXISTS: "exists",
             OP_GET_DATA: "getData", OP_SET_DATA: "setData", OP_SYNC: "sync",
             OP_GET_CHILDREN2: "getChildren", OP_CHECK: "check", OP_MULTI: "multi",
             OP_CREATE2: "create"}

_all_sessions = weakref.WeakSet()


def close_sessions(endpoint=None):
    """Close every session (of one endpoint, or all); registered as a
    cleanup hook, so sessions end before the servers are stopped."""
    for s in list(_all_sessions):
        if endpoint is None or s.endpoint == endpoint:
            s.close()


base.cleanup_hooks.append(close_sessions)


def four_letter(endpoint, cmd, timeout=2.0):
    """A four-letter-word command ("srvr", "mntr", "ruok", ...) to one
    server ("127.0.0.1:PORT"): its answer, "" if it could not be reached."""
    host, port = _parse_hosts(endpoint)[0]
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(cmd.encode())
            out = b""
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                b = s.recv(65536)
                if not b:
                    break
                out += b
            return out.decode("utf-8", "replace")
    except OSError:
        return ""


def srvr(endpoint, timeout=2.0):
    """The "srvr" answer as a dict ("Mode", "Zxid", ...); {} if none."""
    out = {}
    for line in four_letter(endpoint, "srvr", timeout).splitlines():
        k, sep, v = line.partition(":")
        if sep:
            out[k.strip()] = v.strip()
    return out


# ---------------------------------------------------------------------------
# Keys and znodes
# ---------------------------------------------------------------------------


def _text(x, what):
    if isinstance(x, str):
        return x
    try:
        return bytes(x).decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("a ZooKeeper %s must be UTF-8: %r" % (what, x)) from None


def bad_name(name):
    """Why ZooKeeper refuses this znode name (one path segment, str), or
    None.  As measured against the server (PathUtils.validatePath; the
    self-test checks both agree): "", "." and ".." are no names; control
    characters (U+0000-U+001F, U+007F-U+009F), U+D800-U+F8FF (surrogates
    and private use), U+FFF0-U+FFFF and characters beyond U+FFFF (Java
    keeps those as surrogate pairs) are refused.  Anything else goes:
    spaces, '%', '\\', ':', "...", ".x", non-ASCII letters, 2000 bytes."""
    if name in ("", ".", ".."):
        return "is not a znode name"
    for ch in name:
        o = ord(ch)
        if o <= 0x1F or 0x7F <= o <= 0x9F:
            return "holds a control character (%r)" % ch
        if 0xD800 <= o <= 0xF8FF or 0xFFF0 <= o <= 0xFFFF:
            return "holds U+%04X (ZooKeeper refuses U+D800-U+F8FF, U+FFF0-U+FFFF)" % o
        if o > 0xFFFF:
            return "holds U+%X (beyond U+FFFF: a surrogate pair in Java, refused)" % o
    return None


def znode_path(key):
    """The znode of a key: "app/a/b" -> "/app/a/b".  ValueError for a key no
    znode can hold (see bad_name(): not UTF-8, empty, ".", ".." or
    forbidden characters in a segment, a leading or trailing '/')."""
    k = _text(key, "key")
    if not k:
        raise ValueError("the empty key has no znode")
    for seg in k.split("/"):
        why = bad_name(seg)
        if why:
            raise ValueError("key %r has no znode: segment %r %s" % (k, seg, why))
    return "/" + k


def _key_of(path):
    return path[1:].encode("utf-8")


def _parent(path):
    p = path.rsplit("/", 1)[0]
    return p or "/"


def _join(parent, name):
    return parent + name if parent == "/" else parent + "/" + name


DUBBO_CATEGORIES = ("providers", "consumers", "routers", "configurators")


def _ip_literal(data):
    try:
        ipaddress.ip_address(data.decode("ascii").split("%", 1)[0])
        return True
    except (UnicodeDecodeError, ValueError):
        return False


def shape(path, data, stat):
    """What cfgfs shows a znode as (src/store/zk_shape.h, the same rule):
    "file", "dir", or "dir+value" (a directory whose data is its value
    file).  data: None for null data (created without any)."""
    name = path.rsplit("/", 1)[1]
    dubbo = stat["version"] == 0 and name in DUBBO_CATEGORIES
    if stat["num_children"] > 0:
        is_dir = True
    elif stat["ephemeral_owner"]:
        is_dir = False
    elif stat["cversion"] > 0:
        is_dir = True
    elif data is None and stat["version"] == 0:
        is_dir = True
    else:
        is_dir = dubbo and (not data or _ip_literal(data))
    if not is_dir:
        return "file"
    if not data or (dubbo and _ip_literal(data)):
        return "dir"
    return "dir+value"


def _is_key(path, stat, data):
    """Whether the znode is the key path[1:] (a file, or a directory's value)."""
    return shape(path, data, stat) != "dir"


def _is_marker(path, stat, data):
    """Whether the znode is the key path[1:] + "/": a directory, children or not."""
    return shape(path, data, stat) != "file"


class ZookeeperClient(StoreClient):
    """ZooKeeper through its own protocol (see _Session).  Keys/values: str
    (UTF-8) or bytes; a key is a znode path without its leading '/'
    (znode_path()).  What differs from EtcdClient:

    * a revision is a zxid: put() returns the znode's mzxid, get() gives
      mod_revision=mzxid, create_revision=czxid, version=the znode's data
      version (0 after the create, +1 per put after that: etcd's version
      minus one) and lease=its ephemeral owner (0);
    * revision() is the server's last zxid.  ZooKeeper gives EVERY
      transaction a zxid: writes, but also refused writes (a create of an
      existing node, a setData with a wrong version, a failed multi) and the
      creation, closing and expiry of sessions (cfgfs's, ours).  Within an
      epoch it grows by one per transaction; a new leader starts a new epoch
      (the high 32 bits).  So it moves for more than writes, and tests
      compare it for "moved" only;
    * range_prefix_kvs() gives the prefix's revision: the largest mzxid and
      pzxid under the prefix (pzxid: the last create or delete of a child),
      that is the zxid of the last write or delete under it (of the nearest
      existing ancestor's children if the prefix's znode does not exist).
      It is one consistent state: ZooKeeper has no range read, but its
      multiRead (3.6+) reads a list of znodes between two transactions
      (see range_prefix_kvs());  range_prefix() is a plain walk;
    * keys are znodes: put() creates missing parents (empty) in the same
      transaction; delete() also deletes the parents that only existed for
      the key (no data, no other child; never a top-level znode, the root
      of a test's mounts), as if directories were implicit as in etcd; a
      znode with children and data is a key AND a prefix, with children
      and no data only a prefix: delete() of such a key empties its data;
    * a key must be UTF-8 with segments ZooKeeper takes (znode_path()):
      no "", ".", "..", no trailing '/', no NUL; otherwise ValueError;
    * no history, no compaction, no flags; txn_put_many() is one multi;
      delete_prefix() is one multi when it fits in one request.
    The znode_*() methods and txn() work on znode paths directly."""

    kind = KIND
    limits = LIMITS
    retries = 5   # races with another writer (NODEEXISTS, BADVERSION, ...) are retried

    def __init__(self, endpoint, timeout=5.0, private=False):
        """timeout: the limit for each call, reconnecting included.  The
        session is the one every client of this endpoint shares, or with
        private=True one of its own (another ZooKeeper client)."""
        super().__init__(endpoint, timeout)
        self._private = _Session(endpoint) if private else None

    @property
    def session(self):
        if self._private is not None:
            return self._private
        return _Session.get(self.endpoint)

    def close(self):
        """Close the session (the private one, or the endpoint's shared one:
        the next call of any client opens a new one)."""
        self.session.close()

    # -- raw znode access ----------------------------------------------------
    def _call(self, t, body, ok=(0,)):
        return self.session.request(t, body, self.timeout, ok)

    def _pipeline(self, reqs):
        return self.session.pipeline(reqs, self.timeout) if reqs else []

    def znode_get(self, path, raw=False):
        """(data, stat dict) or None; data is None for null data when raw."""
        err, _, r = self._call(OP_GET_DATA, _str(path) + b"\0", ok=(0, NONODE))
        if err:
            return None
        data = r.buf()
        return (data if raw else data or b""), r.stat()

    def znode_exists(self, path):
        """The stat dict, or None."""
        err, _, r = self._call(OP_EXISTS, _str(path) + b"\0", ok=(0, NONODE))
        return None if err else r.stat()

    def znode_children(self, path):
        """(sorted child names, stat dict) or None."""
        err, _, r = self._call(OP_GET_CHILDREN2, _str(path) + b"\0", ok=(0, NONODE))
        if err:
            return None
        names = [r.str() for _ in range(max(0, r.int()))]
        return sorted(names), r.stat()

    def znode_create(self, path, data=b"", makepath=False, ephemeral=False,
                     sequential=False):
        """Create one znode (with missing parents if makepath, in the same
        multi); returns its stat.  ephemeral: owned by this client's session
        (gone when it closes); sequential: the server appends a counter
        (the stat then has "path", the name it made)."""
        if makepath:
            for p in self._missing_ancestors(path):
                try:
                    self.znode_create(p, None)
                except ZookeeperError as e:
                    if e.code != NODEEXISTS:
                        raise
        flags = (1 if ephemeral else 0) | (2 if sequential else 0)
        _, _, r = self._call(OP_CREATE2, _create_body(path, None if data is None else _b(data),
                                                      flags))
        made = r.str()
        return dict(r.stat(), path=made)

    def znode_set_acl(self, path, acls, version=-1):
        """setACL: acls is [(perms, scheme, id)], perms a sum of PERM_*
        (see digest_id() for scheme "digest"); needs ADMIN on path."""
        body = _str(path) + _INT.pack(len(acls))
        for perms, scheme, ident in acls:
            body += _INT.pack(perms) + _str(scheme) + _str(ident)
        self._call(OP_SET_ACL, body + _INT.pack(version))

    def znode_set(self, path, data, version=-1):
        """setData; returns the new stat."""
        _, _, r = self._call(OP_SET_DATA, _str(path) + _buf(_b(data)) + _INT.pack(version))
        return r.stat()

    def znode_delete(self, path, version=-1):
        self._call(OP_DELETE, _str(path) + _INT.pack(version))

    def txn(self, ops):
        """One multi of zk_op()s: (its zxid, [(0, stat or None)] per op: a
        set's new stat; a create's is None, the server gives only the path
        there).  ZookeeperError (code: the failing op's error; results: every
        op's code, RUNTIMEINCONSISTENCY for those after it) if refused.
        The zxid is the reply header's: the server's last zxid once it
        applied the multi, which is the multi's own."""
        _, zxid, r = self._call(OP_MULTI, _multi_body(ops))
        results = _multi_results(r.data[r.off:])
        bad = [c for c, _ in results if c not in (0, -2)] or [c for c, _ in results if c]
        if bad:
            raise ZookeeperError("multi refused: %s" % ", ".join(
                ERRORS.get(c, str(c)) for c, _ in results), bad[0], results)
        return zxid, results

    multi = txn

    def sync(self, path="/"):
        self._call(OP_SYNC, _str(path))

    def _missing_ancestors(self, path, include_self=False):
        """The ancestors of path (and path itself if include_self) that do
        not exist, outermost first (one pipelined round trip)."""
        anc = [path] if include_self else []
        p = _parent(path)
        while p != "/":
            anc.append(p)
            p = _parent(p)
        anc.reverse()
        res = self._pipeline([(OP_EXISTS, _str(a) + b"\0") for a in anc])
        return [a for a, (err, _, _) in zip(anc, res) if err == NONODE]

    # -- the StoreClient interface ---------------------------------------------
    @staticmethod
    def _kv(path, data, stat):
        return {"key": _key_of(path), "value": data,
                "create_revision": stat["czxid"], "mod_revision": stat["mzxid"],
                "version": stat["version"], "lease": stat["ephemeral_owner"]}

    def put(self, key, value, flags=0):
        """Set key: setData if it exists, else a create (with its missing
        parents, empty, in the same multi); returns the write's zxid, the
        key's new mzxid.  Whether it exists is read first: a write ZooKeeper
        refuses (setData of a missing node) would take a zxid too."""
        if flags:
            raise ValueError("ZooKeeper keys have no flags")
        k = _text(key, "key")
        if k.endswith("/"):
            # A directory marker: a znode with null data, as cfgfs's mkdir makes.
            if value:
                raise ValueError("a directory marker has no value")
            path = znode_path(k[:-1])
            missing = self._missing_ancestors(path, include_self=True)
            if not missing:
                return self.znode_exists(path)["mzxid"]
            return self.txn([zk_op("create", p) for p in missing])[0]
        path, value = znode_path(key), _b(value)
        for _ in range(self.retries):
            missing = self._missing_ancestors(path, include_self=True)
            try:
                if not missing:
                    return self.znode_set(path, value)["mzxid"]
                if len(missing) == 1:
                    _, _, r = self._call(OP_CREATE2, _create_body(path, value))
                    r.str()
                    return r.stat()["mzxid"]
                return self.txn([zk_op("create", p) for p in missing[:-1]]
                                + [zk_op("create", path, value)])[0]
            except ZookeeperError as e:
                if e.code not in (NODEEXISTS, NONODE):
                    raise
        raise ZookeeperError("put %r: gave up after %d races" % (key, self.retries))

    def get(self, key):
        """None, or dict(key, value(bytes), create_revision, mod_revision,
        version, lease); None also for a znode that only has children."""
        k = _text(key, "key")
        marker = k.endswith("/")
        path = znode_path(k[:-1] if marker else k)
        got = self.znode_get(path, raw=True)
        if got is None or not (_is_marker if marker else _is_key)(path, got[1], got[0]):
            return None
        kv = self._kv(path, b"" if marker else got[0] or b"", got[1])
        if marker:
            kv["key"] += b"/"
        return kv

    def _prunable(self, d, going):
        """delete ops for directory d and its ancestors while they are left
        with no child and no data once what `going` says is deleted (going:
        path -> how many of its children go); innermost first.  A top-level
        znode (a test's prefix: the root of its mounts) is never pruned."""
        ops = []
        while d.count("/") > 1:
            got = self.znode_get(d)
            if got is None:
                break
            data, st = got
            if data or st["num_children"] > going.get(d, 0):
                break
            ops.append(zk_op("delete", d, version=st["version"]))
            going[_parent(d)] = going.get(_parent(d), 0) + 1
            d = _parent(d)
        return ops

    def delete(self, key, prune=False):
        """Returns the number of keys deleted (0 or 1).  The znode goes with
        the parents that only held it (no data, no other child; but never a
        top-level znode) in one multi: as in etcd, a prefix without keys is
        nothing.  ZooKeeper cannot tell those from directories made on
        purpose (cfgfs's mkdir): prune=False keeps them.  A key with
        children has its data emptied instead (it stays a directory)."""
        k = _text(key, "key")
        marker = k.endswith("/")
        path = znode_path(k[:-1] if marker else k)
        for _ in range(self.retries):
            got = self.znode_get(path, raw=True)
            if got is None or not (_is_marker if marker else _is_key)(path, got[1], got[0]):
                return 0
            data, st = got
            if marker and data:
                return 1     # the znode stays for its value
            try:
                if st["num_children"]:
                    self.znode_set(path, b"", st["version"])
                else:
                    prune_ops = self._prunable(_parent(path), {_parent(path): 1}) if prune else []
                    self.txn([zk_op("delete", path, version=st["version"])] + prune_ops)
                return 1
            except ZookeeperError as e:
                if e.code not in (BADVERSION, NONODE, NOTEMPTY, NODEEXISTS):
                    raise
        raise ZookeeperError("delete %r: gave up after %d races" % (key, self.retries))

    # -- prefixes ------------------------------------------------------------
    @staticmethod
    def _split_prefix(prefix):
        """(the znode whose children may match, what their names start with)."""
        p = _text(prefix, "prefix")
        head, sep, tail = p.rpartition("/")
        if not sep:
            return "/", tail
        return znode_path(head), tail

    def _collect(self, prefix):
        """Every znode under prefix (a plain string prefix of keys), read
        level by level with pipelined requests: ({path: (data, stat)}, stat
        of the znode whose children match, or of its nearest existing
        ancestor).  /zookeeper (the server's own) is never included."""
        parent, tail = self._split_prefix(prefix)
        at = parent
        while True:
            err, _, r = self._pipeline([(OP_GET_CHILDREN2, _str(at) + b"\0")])[0]
            if err == 0:
                break
            if err != NONODE or at == "/":
                raise ZookeeperError("getChildren %s: %s" % (at, ERRORS.get(err, err)), err)
            at = _parent(at)
        names = [r.str() for _ in range(max(0, r.int()))]
        pstat = r.stat()
        nodes = {}
        if at != parent:
            pstat = dict(pstat, missing=True)   # the nearest existing ancestor's
            return nodes, pstat
        level = [_join(parent, n) for n in names
                 if n.startswith(tail) and not (parent == "/" and n == "zookeeper")]
        while level:
            res = self._pipeline([(OP_GET_DATA, _str(p) + b"\0") for p in level])
            inner = []
            for p, (err, _, r) in zip(level, res):
                if err == NONODE:
                    continue      # deleted meanwhile: the next read shows it
                if err:
                    raise ZookeeperError("getData %s: %s" % (p, ERRORS.get(err, err)), err)
                data = r.buf()
                st = r.stat()
                nodes[p] = (data, st)
                if st["num_children"]:
                    inner.append(p)
            res = self._pipeline([(OP_GET_CHILDREN2, _str(p) + b"\0") for p in inner])
            level = []
            for p, (err, _, r) in zip(inner, res):
                if err == 0:
                    level += [_join(p, r.str()) for _ in range(max(0, r.int()))]
        return nodes, pstat

    def range_prefix(self, prefix, revision=None):
        """{key bytes: value bytes} for every key starting with prefix (one
        walk of the tree: not a snapshot if it changes meanwhile)."""
        if revision is not None:
            raise NotImplementedError("ZooKeeper keeps no history")
        nodes, _ = self._collect(prefix)
        out = {}
        for p, (d, st) in nodes.items():
            if _is_key(p, st, d):
                out[_key_of(p)] = d or b""
            if _is_marker(p, st, d):
                out[_key_of(p) + b"/"] = b""
        return out

    def multi_read(self, paths):
        """getData and getChildren of every path in ONE request (ZooKeeper's
        multiRead, 3.6 and later), which the server answers between two
        transactions: {path: (data, stat, sorted child names)}, without the
        paths that do not exist."""
        ops = []
        for p in paths:
            ops += [(OP_GET_DATA, _str(p) + b"\0"), (OP_GET_CHILDREN, _str(p) + b"\0")]
        _, _, r = self._call(OP_MULTI_READ, _multi_body(ops))
        out = {}
        for p in paths:
            got = []
            for _ in range(2):
                t, done, _ = r.multi_hdr()
                if done:
                    raise ZookeeperError("multiRead: %d answers for %d paths"
                                         % (len(out), len(paths)))
                if t == OP_ERROR:
                    got.append(r.int())
                elif t == OP_GET_DATA:
                    got.append((r.buf(), r.stat()))
                elif t == OP_GET_CHILDREN:
                    got.append(sorted(r.str() for _ in range(max(0, r.int()))))
                else:
                    raise ZookeeperError("multiRead: unexpected answer type %d" % t)
            if isinstance(got[0], tuple) and isinstance(got[1], list):
                out[p] = got[0] + (got[1],)
            elif got[0] != NONODE:
                raise ZookeeperError("multiRead %s: %s" % (p, ERRORS.get(got[0], got[0])), got[0])
        return out

    def range_prefix_kvs(self, prefix, revision=None):
        """(revision of the prefix, {key bytes: kv dict as get() returns}) for
        every key starting with prefix: one consistent state.  The tree is
        walked to learn its znodes, then they are all read in one multiRead,
        which is one state; if that shows znodes the walk did not see (or no
        longer there), again.  (A tree too big for one request is read
        twice, and again, until two reads agree.)  See the class comment for
        the revision."""
        if revision is not None:
            raise NotImplementedError("ZooKeeper keeps no history")
        parent, tail = self._split_prefix(prefix)
        for _ in range(20):
            nodes, pstat = self._collect(prefix)
            paths = [parent] + sorted(nodes)
            if (pstat.get("missing")
                    or sum(2 * (len(p.encode()) + 23) for p in paths) > JUTE_MAXBUFFER - 4096
                    or sum(st["data_length"] for _, st in nodes.values()) > 16 << 20):
                return self._double_collect(prefix)
            got = self.multi_read(paths)
            if parent not in got:
                continue
            seen = {_join(parent, n) for n in got[parent][2]
                    if n.startswith(tail) and not (parent == "/" and n == "zookeeper")}
            for p in nodes:
                if p in got:
                    seen.update(_join(p, n) for n in got[p][2])
            if seen != set(nodes) or any(p not in got for p in nodes):
                continue     # created or deleted between the walk and the read
            snap = ({p: got[p][:2] for p in nodes}, got[parent][1])
            return self._snapshot(snap)
        raise ZookeeperError("range_prefix_kvs %r: the tree kept changing" % (prefix,))

    def _snapshot(self, collected):
        nodes, pstat = collected
        rev = max([pstat["pzxid"]] + [max(st["mzxid"], st["pzxid"]) for _, st in nodes.values()])
        out = {}
        for p, (d, st) in nodes.items():
            if _is_key(p, st, d):
                out[_key_of(p)] = self._kv(p, d or b"", st)
            if _is_marker(p, st, d):
                kv = self._kv(p, b"", st)
                kv["key"] += b"/"
                out[kv["key"]] = kv
        return rev, out

    def _double_collect(self, prefix):
        last = self._collect(prefix)
        for _ in range(20):
            cur = self._collect(prefix)
            if cur == last:
                return self._snapshot(cur)
            last = cur
        raise ZookeeperError("range_prefix_kvs %r: the tree kept changing" % (prefix,))

    def delete_prefix(self, prefix):
        """Delete every key starting with prefix (a plain string prefix, as in
        etcd: "a" also matches "ab"), with every znode under them, and the
        parents left empty (see delete()); returns how many keys there were.
        One multi if it fits one request, else several (deepest first): not
        atomic then."""
        for _ in range(self.retries):
            nodes, _ = self._collect(prefix)
            if not nodes:
                return 0
            parent, _ = self._split_prefix(prefix)
            order = sorted(nodes, key=lambda p: (-p.count("/"), p))
            ops = [zk_op("delete", p, version=nodes[p][1]["version"]) for p in order]
            going = {parent: sum(1 for p in nodes if _parent(p) == parent)}
            ops += self._prunable(parent, going)
            try:
                for chunk in _chunks(ops):
                    self.txn(chunk)
            except ZookeeperError as e:
                if e.code in (BADVERSION, NONODE, NOTEMPTY, NODEEXISTS):
                    continue
                raise
            return sum(1 for p, (d, st) in nodes.items() if _is_key(p, st, d))
        raise ZookeeperError("delete_prefix %r: gave up after %d races" % (prefix, self.retries))

    def revision(self):
        """The server's last zxid (see the class comment): the reply header
        of a read after a sync, so a follower has caught up with the leader."""
        res = self._pipeline([(OP_SYNC, _str("/")), (OP_EXISTS, _str("/") + b"\0")])
        return max(zxid for _, zxid, _ in res)

    def txn_put_many(self, items):
        """Put every key of the dict in ONE multi (one zxid, returned):
        setData of the keys that exist, create of the others and of their
        missing parents.  ZookeeperError above LIMITS.txn_ops keys or when
        the request would not fit jute.maxbuffer."""
        items = list(items.items() if isinstance(items, dict) else items)
        if len(items) > self.limits.txn_ops:
            raise ZookeeperError("txn_put_many: %d keys do not fit one transaction (at most %d)"
                                 % (len(items), self.limits.txn_ops))
        vals = {}
        for k, v in items:
            vals[znode_path(k)] = _b(v)
        want = set(vals)
        for p in vals:
            q = _parent(p)
            while q != "/":
                want.add(q)
                q = _parent(q)
        want = sorted(want, key=lambda p: (p.count("/"), p))
        for _ in range(self.retries):
            res = self._pipeline([(OP_EXISTS, _str(p) + b"\0") for p in want])
            missing = [p for p, (err, _, _) in zip(want, res) if err == NONODE]
            created = set(missing)
            ops = ([zk_op("create", p, vals.get(p, b"")) for p in missing]
                   + [zk_op("set", p, v) for p, v in vals.items() if p not in created])
            size = len(_multi_body(ops)) + _REQ_HDR.size
            if size > JUTE_MAXBUFFER:
                raise ZookeeperError("txn_put_many: %d bytes do not fit one request "
                                     "(jute.maxbuffer %d)" % (size, JUTE_MAXBUFFER))
            try:
                zxid, _ = self.txn(ops)
            except ZookeeperError as e:
                if e.code in (NODEEXISTS, NONODE):
                    continue
                raise
            return zxid
        raise ZookeeperError("txn_put_many: gave up after %d races" % self.retries)

    def compact(self, revision, physical=True):
        raise NotImplementedError("ZooKeeper has no compaction (tests that need it are etcd-only)")


def _chunks(ops, limit=JUTE_MAXBUFFER - 4096):
    """ops cut into multis that each fit one request."""
    chunk, size = [], 0
    for op in ops:
        n = _MULTI_HDR.size + len(op[1])
        if chunk and size + n > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(op)
        size += n
    if chunk:
        yield chunk


# ---------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------

DEFAULT_CLASSPATH = "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar"
FOUR_LETTER_WORDS = "srvr,ruok,mntr,stat,cons,conf,dump,wchs,envi"
# Variables of ours that would change the server (JVM options, the zkServer.sh ones).
_SERVER_ENV_DROP = ("JVMFLAGS", "SERVER_JVMFLAGS", "CLIENT_JVMFLAGS", "JAVA_TOOL_OPTIONS",
                    "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "CLASSPATH", "JAVA_HOME")


class ZookeeperServer(ServerProcess):
    """A real standalone ZooKeeper (Debian's package: java running
    ZooKeeperServerMain) on loopback (see ServerProcess): one client port;
    no admin server, no JMX port; data in data_dir; a small heap (the
    machine may have 2 cores shared with others); the four-letter words of
    FOUR_LETTER_WORDS allowed (srvr says when it serves: readiness).

    forceSync=no: the txn log is written but not fsync'ed per commit (a
    kill() is a process crash, not a power cut: nothing is lost), so the
    tests do not wait for the disk.  tick_ms: ZooKeeper's tickTime (session
    timeouts are 2 to 20 ticks)."""

    kind = KIND
    port_names = ("client_port",)
    start_timeout = 60.0
    ready_interval = 0.05
    env_prefix = "ZOO"
    main_class = "org.apache.zookeeper.server.ZooKeeperServerMain"
    ready_modes = ("standalone",)
    jvm_opts = ("-Xmx512m", "-Xms16m", "-Xss512k", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                "-XX:-UsePerfData", "-Djava.awt.headless=true")

    def __init__(self, binary=None, tick_ms=2000, jvm_opts=(), cfg=None):
        super().__init__(binary)
        self.tick_ms = tick_ms
        self.extra_jvm_opts = list(jvm_opts)
        self.extra_cfg = dict(cfg or {})

    def default_binary(self):
        return os.environ.get("JAVA") or "java"

    def classpath(self):
        return os.environ.get("ZOOKEEPER_CLASSPATH") or DEFAULT_CLASSPATH

    def client(self):
        return ZookeeperClient(self.endpoint)

    def _env(self):
        return {k: v for k, v in super()._env().items() if k not in _SERVER_ENV_DROP}

    @property
    def cfg_path(self):
        return os.path.join(self.tmpdir, "zoo.cfg")

    def config(self):
        """zoo.cfg as a dict (unknown names become Java system properties
        "zookeeper.NAME": forceSync, preAllocSize, ...)."""
        cfg = {"tickTime": self.tick_ms, "dataDir": self.data_dir,
               "clientPort": self.client_port, "clientPortAddress": "127.0.0.1",
               "maxClientCnxns": 0, "admin.enableServer": "false",
               "4lw.commands.whitelist": FOUR_LETTER_WORDS,
               "forceSync": "no", "preAllocSize": 1024, "snapCount": 10000,
               "commitLogCount": 20}
        cfg.update(self.extra_cfg)
        return cfg

    def _args(self):
        os.makedirs(self.data_dir, exist_ok=True)
        with open(self.cfg_path, "w") as f:
            f.write("".join("%s=%s\n" % kv for kv in self.config().items()))
        return ([self.binary] + list(self.jvm_opts) + self.extra_jvm_opts
                + ["-Dorg.slf4j.simpleLogger.showDateTime=true",
                   "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
                   "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
                   "-cp", self.classpath(), self.main_class, self.cfg_path])

    def _probe_client(self):
        return self.endpoint

    def _not_ready(self, probe):
        """None once srvr says a mode we wait for (so the server serves
        requests); srvr is no session and no transaction."""
        out = four_letter(probe, "srvr", 1.0)
        mode = None
        for line in out.splitlines():
            if line.startswith("Mode:"):
                mode = line.split(":", 1)[1].strip()
        if mode in self.ready_modes or ("*" in self.ready_modes and out):
            return None
        return "srvr: %s" % (mode or out.strip()[:80] or "no answer")

    def _wait_ready(self, timeout):
        err = super()._wait_ready(timeout)
        if err is not None and "Address already in use" in self.log_tail(200):
            # ServerProcess.start() retries on the words it knows (in lower case).
            with open(self.log_path, "ab") as log:
                log.write(b"=== harness: address already in use (BindException)\n")
        return err

    def _terminate(self, sig, timeout):
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGCONT)   # a paused JVM handles nothing
            except OSError:
                pass
        super()._terminate(sig, timeout)

    def stop(self, keep_data=False, timeout=10.0):
        """As ServerProcess.stop(); without keep_data our sessions with it
        end first (with keep_data they resume when it is back)."""
        if not keep_data and self.ports[0] is not None:
            close_sessions(self.endpoint)
        super().stop(keep_data, timeout)

    def pause(self):
        """SIGSTOP: the server hangs (connections stay open, nothing answers)."""
        self.proc.send_signal(signal.SIGSTOP)

    def cont(self):
        self.proc.send_signal(signal.SIGCONT)

    def srvr(self, timeout=2.0):
        return srvr(self.endpoint, timeout)

    def mode(self, timeout=2.0):
        """"standalone", "leader", "follower", or None (not serving, down)."""
        return self.srvr(timeout).get("Mode")

    def zxid(self):
        """The server's last zxid, from srvr (no session needed)."""
        z = self.srvr().get("Zxid")
        return int(z, 16) if z else None


class ZookeeperMember(ZookeeperServer):
    """One member of a ZookeeperEnsemble (QuorumPeerMain); its ports are
    chosen by the ensemble before it starts (a client, a quorum and an
    election port)."""

    port_names = ("client_port", "quorum_port", "election_port")
    main_class = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
    ready_modes = ("leader", "follower")

    def __init__(self, ensemble, myid, **kw):
        super().__init__(**kw)
        self.ensemble = weakref.proxy(ensemble)
        self.myid = myid

    def config(self):
        cfg = super().config()
        cfg.update({"initLimit": 10, "syncLimit": 5, "cnxTimeout": 1000,
                    "electionPortBindRetry": 3})
        for m in self.ensemble.members:
            cfg["server.%d" % m.myid] = "127.0.0.1:%d:%d" % (m.quorum_port, m.election_port)
        return cfg

    def _args(self):
        os.makedirs(self.data_dir, exist_ok=True)
        with open(os.path.join(self.data_dir, "myid"), "w") as f:
            f.write("%d\n" % self.myid)
        return super()._args()

    def stop(self, keep_data=False, timeout=10.0):
        ServerProcess.stop(self, keep_data, timeout)   # sessions belong to the ensemble


class ZookeeperEnsemble:
    """Three (n) ZooKeeper servers on loopback forming one ensemble, for
    failover tests: endpoint/url() list every member's client port, and
    each member can be stopped (SIGTERM), killed (SIGKILL), paused
    (SIGSTOP), continued and started again, on the same ports with the same
    data.  Members are numbered 1..n (their myid); members[i - 1] is a
    ZookeeperMember (a ServerProcess).  close() (also at exit, on signals,
    and by the harness's cleanup) stops everything and removes the data."""

    kind = KIND
    start_timeout = 90.0

    def __init__(self, n=3, tick_ms=500, jvm_opts=()):
        self.n = n
        self.tmpdir = None
        self._endpoint = None
        self.members = [ZookeeperMember(self, i + 1, tick_ms=tick_ms, jvm_opts=jvm_opts)
                        for i in range(n)]

    def member(self, i):
        return self.members[i - 1]

    @property
    def endpoint(self):
        return ",".join(m.endpoint for m in self.members)

    def url(self, prefix=""):
        return "%s://%s/%s" % (self.kind, self.endpoint, prefix)

    def client(self):
        return ZookeeperClient(self.endpoint)

    @property
    def running(self):
        return all(m.running for m in self.members)

    def start(self, timeout=None):
        """Start every member not running and wait until all serve (one is
        the leader)."""
        timeout = self.start_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        if self.tmpdir is None:
            self.tmpdir = tempfile.mkdtemp(prefix="cfgfs-zookeeper-ensemble-")
            ports = base.free_ports(3 * self.n)
            for i, m in enumerate(self.members):
                m.tmpdir = os.path.join(self.tmpdir, "s%d" % m.myid)
                os.makedirs(m.tmpdir)
                m.ports = ports[3 * i:3 * i + 3]
            self._endpoint = self.endpoint
        base._live_servers.add(self)
        base.install_signal_handlers()
        try:
            for m in self.members:      # each waits for its JVM to answer srvr only
                if not m.running:
                    m.ready_modes = ("*",)
                    try:
                        m.start(max(1.0, deadline - time.monotonic()))
                    finally:
                        m.ready_modes = ZookeeperMember.ready_modes
            self.wait_serving(max(1.0, deadline - time.monotonic()))
        except BaseException:
            self.close()
            raise
        return self

    def wait_serving(self, timeout=60.0, members=None):
        """Wait until each member (1-based numbers; default: every running one)
        is leader or follower, with one leader (a member paused while it led
        still says "leader" for a while after SIGCONT); returns modes()."""
        members = members or [m.myid for m in self.members if m.running]
        deadline = time.monotonic() + timeout
        while True:
            modes = self.modes()
            if (all(modes[i - 1] in ("leader", "follower") for i in members)
                    and modes.count("leader") == 1):
                return modes
            if time.monotonic() >= deadline:
                raise RuntimeError("ZooKeeper ensemble not serving after %.0fs: modes %r\n%s"
                                   % (timeout, modes, self.log_tail(20)))
            time.sleep(0.05)

    def modes(self):
        """srvr's Mode of every member, None for one that does not serve
        (down, paused: then this takes a second)."""
        return [m.mode(timeout=1.0) if m.running else None for m in self.members]

    def leader(self):
        """The leader's number (1-based), or None."""
        modes = self.modes()
        return modes.index("leader") + 1 if "leader" in modes else None

    def zxids(self):
        return [m.zxid() if m.running else None for m in self.members]

    def stop_member(self, i, keep_data=True):
        """SIGTERM member i (its data kept, so start_member(i) brings it back)."""
        self.member(i).stop(keep_data=keep_data)

    def kill_member(self, i):
        """SIGKILL member i (a crash)."""
        self.member(i).kill()

    def pause_member(self, i):
        """SIGSTOP member i: it hangs with its connections open."""
        self.member(i).pause()

    def cont_member(self, i):
        self.member(i).cont()

    def start_member(self, i, wait=True, timeout=60.0):
        """Start member i again (same ports and data); with wait, until it
        serves (which needs a quorum)."""
        m = self.member(i)
        m.ready_modes = ZookeeperMember.ready_modes if wait else ("*",)
        try:
            m.start(timeout)
        finally:
            m.ready_modes = ZookeeperMember.ready_modes
        return m

    def stop(self, keep_data=False):
        if not keep_data and self._endpoint:
            close_sessions(self._endpoint)
        for m in self.members:
            m.stop(keep_data=True)
        if not keep_data:
            if self.tmpdir:
                shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = self._endpoint = None
            for m in self.members:
                m.tmpdir = None
                m.ports = [None] * len(m.port_names)
                base._live_servers.discard(m)
            base._live_servers.discard(self)

    def close(self):
        self.stop(keep_data=False)

    def log_tail(self, lines=40):
        return "\n".join("--- member %d (%s) ---\n%s" % (m.myid, m.log_path if m.tmpdir else "-",
                                                         m.log_tail(lines))
                         for m in self.members)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


Server = ZookeeperServer
Client = ZookeeperClient


def main(argv):
    """python3 -m servers.zookeeper [--ensemble] (from tests/integration): a
    throwaway ZooKeeper (or a three-member ensemble) on loopback until
    Ctrl-C or SIGTERM; prints its cfgfs URL and where its log is."""
    import argparse
    ap = argparse.ArgumentParser(prog="python3 -m servers.zookeeper", description=main.__doc__)
    ap.add_argument("--ensemble", action="store_true", help="three members instead of one")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    srv = ZookeeperEnsemble() if args.ensemble else ZookeeperServer()
    srv.start()
    logs = ([m.log_path for m in srv.members] if args.ensemble else [srv.log_path])
    print("ready in %.1fs: %s\nlog: %s\nCtrl-C stops it and removes its data"
          % (time.monotonic() - t0, srv.url("app"), " ".join(logs)), flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        srv.close()
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main(sys.argv[1:]))

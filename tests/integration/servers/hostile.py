"""A fake store on loopback that can turn hostile: HostileStore("etcd") speaks
the part of etcd's v3 JSON gateway cfgfs uses (POST /v3/kv/range, the
/v3/watch stream), HostileStore("consul") the part of Consul's HTTP API
(GET /v1/kv/PREFIX?recurse, blocking queries with X-Consul-Index,
/v1/status/leader).  Writes (/v3/kv/txn, /v1/txn) are refused with an
error: the hostile tests only read.

set_behaviour(name) switches what every answer looks like from then on,
also for requests in progress (a watch stream, a blocking query, a body
being trickled), so a test can mount against a normal store, turn it
hostile while mounted, and back:

  normal                 answers like the real store
  invalid_json           200 with a body that is not JSON
  invalid_base64         values that are not base64
  negative_revision      revisions / indexes of -5
  absurd_revision        revisions / indexes of 2**63-1
  huge_body              a 200 MB answer (generated while sent, never held)
  endless_body           an answer that never ends (64 KiB every 50 ms)
  one_byte_per_second    a correct answer, one byte a second
  malformed_watch_chunk  the change stream (etcd watch, Consul blocking
                         query) breaks HTTP chunked framing
  truncated_watch_chunk  the change stream stops inside a chunk
  error_object_200       HTTP 200 carrying an error object
  stall_tls_handshake    (tls only) accept TCP, never answer the handshake

The first two words of change-stream behaviours are what the one-shot
reads see: only the watch (etcd) or the blocking queries (Consul) turn
bad for malformed_watch_chunk and truncated_watch_chunk.

Standard library only.  Every instance is in servers.base's cleanup
registry: close() (also at exit and on SIGTERM) stops the listener, wakes
and cuts every connection, and joins nothing that could hang.
"""

import base64
import json
import socket
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .base import _live_servers, install_signal_handlers

__all__ = ["HostileStore", "BEHAVIOURS", "ABSURD_REVISION"]

BEHAVIOURS = ("normal", "invalid_json", "invalid_base64", "negative_revision",
              "absurd_revision", "huge_body", "endless_body", "one_byte_per_second",
              "malformed_watch_chunk", "truncated_watch_chunk", "error_object_200",
              "stall_tls_handshake")
STREAM_ONLY = ("malformed_watch_chunk", "truncated_watch_chunk")
ABSURD_REVISION = 2 ** 63 - 1
HUGE = 200 * 1000 * 1000
BLOCK = b"A" * (256 * 1024)


def _b64(b):
    return base64.b64encode(b).decode("ascii")


class _Gone(Exception):
    """The behaviour changed or the store closed: drop this connection."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, store):
        self.store = store
        super().__init__(("127.0.0.1", 0), _Handler)

    def finish_request(self, request, client_address):
        st = self.store
        raw = request
        st._track(raw, True)
        try:
            if st.tls_context is not None:
                if st.behaviour == "stall_tls_handshake":
                    # Hold the TCP connection, read nothing, say nothing; once the
                    # behaviour changes the handshake goes on (if the client waited).
                    st.count("tls-stall")
                    st._wait(lambda: st.behaviour != "stall_tls_handshake", None)
                    if st.closing:
                        return
                request.settimeout(10)
                try:
                    request = st.tls_context.wrap_socket(request, server_side=True)
                except (OSError, ssl.SSLError):
                    return
                st._track(raw, False)
                st._track(request, True)
                if st.behaviour == "stall_tls_handshake":
                    # Its handshake overlapped the switch, so set_behaviour did not
                    # cut it: an established connection, cut like the others.
                    return
                request.settimeout(None)
            self.RequestHandlerClass(request, client_address, self)
        except (_Gone, OSError):
            pass
        finally:
            st._track(raw, False)
            st._track(request, False)
            if request is not raw:
                request.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hostile"

    def log_message(self, fmt, *args):
        pass

    # -- plumbing -------------------------------------------------------------
    @property
    def st(self):
        return self.server.store

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _head(self, status, headers=(), length=None, chunked=False):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for k, v in headers:
            self.send_header(k, v)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.flush()

    def _send(self, data):
        self.wfile.write(data)
        self.wfile.flush()

    def _chunk(self, data):
        self._send(b"%x\r\n%s\r\n" % (len(data), data))

    def _check(self, gen):
        if self.st.closing or self.st.gen != gen:
            raise _Gone()

    def _answer(self, status, body, headers=()):
        """A one-shot answer, shaped by the behaviour."""
        st, beh, gen = self.st, self.st.behaviour, self.st.gen
        if beh == "one_byte_per_second":
            self._head(status, headers, len(body))
            for i in range(len(body)):
                self._send(body[i:i + 1])
                if st._wait(lambda: st.closing or st.gen != gen, 1.0):
                    raise _Gone()
            return
        if beh in ("huge_body", "endless_body"):
            lead = self.st.huge_lead()
            if beh == "huge_body":
                # Chunked: no Content-Length warns the client before it holds the bytes.
                self._head(status, headers, chunked=True)
                self._chunk(lead)
                left = HUGE - len(lead)
                while left > 0:
                    self._check(gen)
                    n = min(left, len(BLOCK))
                    self._chunk(BLOCK[:n])
                    left -= n
                self._send(b"0\r\n\r\n")
                return
            self._head(status, headers, chunked=True)
            self._chunk(lead)
            while True:
                self._chunk(BLOCK[:64 * 1024])
                if st._wait(lambda: st.closing or st.gen != gen, 0.05):
                    raise _Gone()
        self._head(status, headers, len(body))
        self._send(body)

    # -- routes ---------------------------------------------------------------
    def do_POST(self):
        body = self._body()
        path = urllib.parse.urlsplit(self.path).path
        self.st.count(path)
        if self.st.kind == "etcd" and path == "/v3/kv/range":
            return self._etcd_range(json.loads(body or b"{}"))
        if self.st.kind == "etcd" and path == "/v3/watch":
            return self._etcd_watch(json.loads(body or b"{}"))
        self._refuse()

    def do_PUT(self):
        self._body()
        self.st.count(urllib.parse.urlsplit(self.path).path)
        self._refuse()

    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(u.query, keep_blank_values=True)
        if self.st.kind == "consul" and u.path == "/v1/status/leader":
            self.st.count(u.path)
            return self._answer(200, b'"127.0.0.1:8300"')
        if self.st.kind == "consul" and u.path.startswith("/v1/kv/") and "recurse" in q:
            blocking = "index" in q
            self.st.count("/v1/kv?index" if blocking else "/v1/kv")
            return self._consul_list(urllib.parse.unquote_to_bytes(u.path[len("/v1/kv/"):]),
                                     int(q["index"][0]) if blocking else 0,
                                     q.get("wait", ["300s"])[0])
        self.st.count(u.path)
        self._refuse()

    def _refuse(self):
        body = b'{"error":"not implemented by the hostile fake","code":12}'
        self.close_connection = True
        self._head(501, (), len(body))
        self._send(body)

    # -- etcd -------------------------------------------------------------------
    def _etcd_range(self, req):
        st = self.st
        beh = st.behaviour
        key = base64.b64decode(req.get("key", ""))
        end = base64.b64decode(req.get("range_end", ""))
        limit = int(req.get("limit", 0) or 0)
        if beh == "invalid_json":
            return self._answer(200, b'{"header":{"revision":"12"},"kvs":[{"key": this is not JSON')
        if beh == "error_object_200":
            return self._answer(200, json.dumps({
                "error": "etcdserver: hostile failure", "code": 13,
                "message": "etcdserver: hostile failure"}).encode())
        with st.lock:
            rev = st.rev
            keys = sorted(k for k in st.kvs if k >= key and (end == b"\0" or k < end))
            more = bool(limit) and len(keys) > limit
            if limit:
                keys = keys[:limit]
            kvs = [st.etcd_kv(k, st.kvs[k]) for k in keys]
        if beh == "invalid_base64":
            for kv in kvs:
                kv["value"] = "@@ not base64 @@"
        elif beh in ("negative_revision", "absurd_revision"):
            for kv in kvs:
                kv["mod_revision"] = "-5" if beh == "negative_revision" else str(ABSURD_REVISION)
        if req.get("keys_only"):
            for kv in kvs:
                kv.pop("value", None)
        hdr_rev = str(rev)
        if beh == "negative_revision":
            hdr_rev = "-5"
        elif beh == "absurd_revision":
            hdr_rev = str(ABSURD_REVISION)
        out = {"header": {"cluster_id": "14841639068965178418", "member_id": "1",
                          "revision": hdr_rev, "raft_term": "2"},
               "count": str(len(kvs)), "more": more}
        if kvs:
            out["kvs"] = kvs
        self._answer(200, json.dumps(out).encode())

    def _etcd_watch(self, req):
        st = self.st
        cr = req.get("create_request") or {}
        key = base64.b64decode(cr.get("key", ""))
        end = base64.b64decode(cr.get("range_end", ""))
        start = int(cr.get("start_revision", 0) or 0)
        gen = st.gen
        beh = st.behaviour
        self._head(200, (), chunked=True)
        if beh in ("invalid_json", "error_object_200", "huge_body", "endless_body",
                   "one_byte_per_second"):
            return self._etcd_stream_hostile(beh, gen, created=False)
        with st.lock:
            rev = st.rev
        self._chunk(st.watch_msg(rev, created=True))
        if beh != "normal":
            return self._etcd_stream_hostile(beh, gen, created=True)
        sent = start - 1
        while True:
            if st.take_compaction():
                # What etcd says to a watch whose start revision was compacted away.
                self.close_connection = True
                with st.lock:
                    rev = st.rev
                self._chunk(json.dumps({"result": {
                    "header": {"cluster_id": "14841639068965178418", "revision": str(rev)},
                    "canceled": True, "compact_revision": str(rev),
                    "cancel_reason": "mvcc: required revision has been compacted"}}).encode())
                self._send(b"0\r\n\r\n")
                return
            with st.lock:
                evs = [h for h in st.history if h[0] > sent
                       and h[2] >= key and (end == b"\0" or h[2] < end)]
                rev = st.rev
            for h in evs:
                self._chunk(st.watch_msg(h[0], events=[st.etcd_event(h)]))
                sent = h[0]
            sent = max(sent, rev)
            if st._wait(lambda: st.closing or st.gen != gen or st.rev > sent, 0.5):
                if st.closing:
                    raise _Gone()
                if st.gen != gen:
                    gen, beh = st.gen, st.behaviour
                    if beh != "normal":
                        return self._etcd_stream_hostile(beh, gen, created=True)

    def _etcd_stream_hostile(self, beh, gen, created):
        """What a hostile watch stream sends (after the created message if created)."""
        st = self.st
        self.close_connection = True
        if beh == "invalid_json":
            self._chunk(b"<html>this is not JSON</html>\n")
        elif beh == "error_object_200":
            self._chunk(json.dumps({"error": {"grpc_code": 13, "http_code": 500,
                                              "message": "etcdserver: hostile failure",
                                              "http_status": "Internal Server Error"}}).encode())
            self._send(b"0\r\n\r\n")
        elif beh in ("invalid_base64", "negative_revision", "absurd_revision"):
            self._chunk(st.watch_msg(*st.bad_event(beh)))
        elif beh in ("huge_body", "endless_body"):
            lead = b'{"result":{"header":{"revision":"1"},"events":[{"kv":{"key":"' + \
                _b64(st.victim).encode() + b'","value":"'
            self._chunk(lead)
            sent = 0
            while beh == "endless_body" or sent < HUGE:
                self._check(gen)
                self._chunk(BLOCK)
                sent += len(BLOCK)
                if beh == "endless_body" and st._wait(lambda: st.closing or st.gen != gen,
                                                      0.05):
                    raise _Gone()
        elif beh == "one_byte_per_second":
            with st.lock:
                rev = st.rev
            msg = st.watch_msg(rev, created=not created)
            self._send(b"%x\r\n" % len(msg))
            for i in range(len(msg)):
                self._send(msg[i:i + 1])
                if st._wait(lambda: st.closing or st.gen != gen, 1.0):
                    raise _Gone()
            self._send(b"\r\n")
        elif beh == "malformed_watch_chunk":
            self._send(b"zz; not a chunk size\r\n{\"result\":{}}\r\n")
        elif beh == "truncated_watch_chunk":
            # Half a message, then the connection ends inside the chunk.
            msg = st.watch_msg(*st.bad_event("invalid_base64"))
            self._send(b"%x\r\n" % (len(msg) + 100) + msg[:len(msg) // 2])
            raise _Gone()
        # Hold the connection until the client drops it or things change: what
        # cfgfs makes of it is the point, not how the fake ends.
        st._wait(lambda: st.closing or st.gen != gen, 30)
        raise _Gone()

    # -- consul -----------------------------------------------------------------
    def _consul_list(self, prefix, index, wait):
        st = self.st
        if index and st.behaviour in STREAM_ONLY:
            return self._consul_stream_hostile(st.behaviour)
        if index:
            secs = float(wait.rstrip("s") or 300)
            # A query that comes in while the store is already hostile is answered
            # hostile at once: a slow client (under a sanitizer) may only ask after
            # the switch, and gen_seen alone would then hold it for the whole wait.
            st._wait(lambda: st.closing or st.behaviour != "normal" or st.gen_seen(self)
                     or st.rev > index, secs)
            if st.closing:
                raise _Gone()
        beh = st.behaviour
        if beh in STREAM_ONLY:
            if not index:
                beh = "normal"
            else:
                return self._consul_stream_hostile(beh)
        if beh == "invalid_json":
            return self._answer(200, b'[{"Key": this is not JSON',
                                (("X-Consul-Index", str(st.rev)),))
        if beh == "error_object_200":
            return self._answer(200, b'{"error":"rpc error making call: hostile failure"}',
                                (("X-Consul-Index", str(st.rev)),))
        with st.lock:
            rev = st.rev
            ents = [st.consul_entry(k, v) for k, v in sorted(st.kvs.items())
                    if k.startswith(prefix)]
        index_hdr = str(rev)
        if beh == "negative_revision":
            index_hdr = "-5"
            for e in ents:
                e["ModifyIndex"] = -5
        elif beh == "absurd_revision":
            index_hdr = str(ABSURD_REVISION)
            for e in ents:
                e["ModifyIndex"] = ABSURD_REVISION
        elif beh == "invalid_base64":
            for e in ents:
                e["Value"] = "@@ not base64 @@"
        hdrs = (("X-Consul-Index", index_hdr), ("X-Consul-Knownleader", "true"))
        if not ents:
            self.close_connection = True
            return self._answer(404, b"", hdrs)
        self._answer(200, json.dumps(ents).encode(), hdrs)

    def _consul_stream_hostile(self, beh):
        st = self.st
        gen = st.gen
        self.close_connection = True
        hdrs = (("X-Consul-Index", str(st.rev + 1)),)
        if beh == "malformed_watch_chunk":
            self._head(200, hdrs, chunked=True)
            self._send(b"zz; not a chunk size\r\n[]\r\n")
        else:
            with st.lock:
                body = json.dumps([st.consul_entry(k, v) for k, v in sorted(st.kvs.items())])
            body = body.encode()
            self._head(200, hdrs, chunked=True)
            self._send(b"%x\r\n" % (len(body) + 100) + body[:len(body) // 2])
            raise _Gone()
        st._wait(lambda: st.closing or st.gen != gen, 30)
        raise _Gone()


class HostileStore:
    """A fake etcd (kind "etcd") or Consul (kind "consul") on a free loopback
    port.  tls: a servers.tls.CertPair to serve https with (needed for
    stall_tls_handshake)."""

    def __init__(self, kind, tls=None):
        if kind not in ("etcd", "consul"):
            raise ValueError("kind must be etcd or consul, not %r" % (kind,))
        self.kind = kind
        self.tls_context = None
        if tls is not None:
            self.tls_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls_context.load_cert_chain(tls.cert, tls.key)
        self.lock = threading.Lock()
        self.cv = threading.Condition(self.lock)
        self.kvs = {}          # key bytes -> [value, create, mod, version]
        self.history = []      # (rev, "PUT", key, value, create, version)
        self.rev = 1
        self.behaviour = "normal"
        self.gen = 0           # counts behaviour switches
        self.closing = False
        self.counts = {}       # request path -> how many
        self.victim = b"victim"   # the key that hostile events name
        self._conns = set()
        self._server = None
        self._thread = None

    # -- lifecycle -------------------------------------------------------------
    def start(self):
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True,
                                        name="hostile-%s" % self.kind)
        self._thread.start()
        _live_servers.add(self)
        install_signal_handlers()
        return self

    @property
    def port(self):
        return self._server.server_address[1]

    @property
    def endpoint(self):
        return "127.0.0.1:%d" % self.port

    def url(self, prefix=""):
        return "%s%s://%s/%s" % (self.kind, "s" if self.tls_context else "", self.endpoint,
                                 prefix)

    def close(self):
        with self.lock:
            if self.closing and self._server is None:
                return
            self.closing = True
            self.cv.notify_all()
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
        self._server = None
        _live_servers.discard(self)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    # -- what tests use ----------------------------------------------------------
    def set_behaviour(self, name):
        if name not in BEHAVIOURS:
            raise ValueError("unknown behaviour %r" % (name,))
        if name == "stall_tls_handshake" and self.tls_context is None:
            raise ValueError("stall_tls_handshake needs a TLS fake")
        with self.lock:
            self.behaviour = name
            self.gen += 1
            self.cv.notify_all()
            # Established connections would never handshake again: cut them.
            conns = list(self._conns) if name == "stall_tls_handshake" else []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def compact(self):
        """etcd: the next watch (or the one running) is cancelled as compacted,
        once; cfgfs must re-read the whole prefix."""
        with self.lock:
            self._compact = True
            self.gen += 1      # wakes the running stream
            self.cv.notify_all()

    def take_compaction(self):
        with self.lock:
            c, self._compact = getattr(self, "_compact", False), False
            return c

    def put(self, key, value):
        """Set key (str/bytes) to value; returns the new revision/index."""
        key = key.encode() if isinstance(key, str) else key
        value = value.encode() if isinstance(value, str) else value
        with self.lock:
            self.rev += 1
            old = self.kvs.get(key)
            create = old[1] if old else self.rev
            version = old[3] + 1 if old else 1
            self.kvs[key] = [value, create, self.rev, version]
            self.history.append((self.rev, "PUT", key, value, create, version))
            self.cv.notify_all()
            return self.rev

    def count(self, path):
        with self.lock:
            self.counts[path] = self.counts.get(path, 0) + 1

    def requests(self, path):
        with self.lock:
            return self.counts.get(path, 0)

    # -- internals ---------------------------------------------------------------
    def _track(self, sock, add):
        with self.lock:
            (self._conns.add if add else self._conns.discard)(sock)

    def _wait(self, pred, timeout):
        """Wait (at most timeout s; None: until true) for pred(); its last value."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cv:
            while not pred():
                if self.closing:
                    return True
                left = 1.0 if deadline is None else deadline - time.monotonic()
                if left <= 0:
                    return pred()
                self.cv.wait(min(left, 1.0))
            return True

    def gen_seen(self, handler):
        """For a waiting blocking query: did the behaviour change since it came in?"""
        g = getattr(handler, "_gen0", None)
        if g is None:
            handler._gen0 = g = self.gen
        return self.gen != g

    def etcd_kv(self, k, v):
        return {"key": _b64(k), "value": _b64(v[0]), "create_revision": str(v[1]),
                "mod_revision": str(v[2]), "version": str(v[3])}

    def etcd_event(self, h):
        rev, _, k, val, create, version = h
        return {"kv": {"key": _b64(k), "value": _b64(val), "create_revision": str(create),
                       "mod_revision": str(rev), "version": str(version)}}

    def watch_msg(self, rev, created=False, events=None, hdr_rev=None):
        r = {"header": {"cluster_id": "14841639068965178418", "member_id": "1",
                        "revision": str(rev if hdr_rev is None else hdr_rev),
                        "raft_term": "2"}}
        if created:
            r["created"] = True
        if events:
            r["events"] = events
        return json.dumps({"result": r}).encode() + b"\n"

    def bad_event(self, beh):
        """(rev, created, events, hdr_rev) of a hostile watch event on the victim key."""
        with self.lock:
            rev = self.rev + 1
        ev = self.etcd_event((rev, "PUT", self.victim, b"EVIL", 1, 2))
        hdr = rev
        if beh == "invalid_base64":
            ev["kv"]["value"] = "@@ not base64 @@"
        elif beh == "negative_revision":
            ev["kv"]["mod_revision"] = "-5"
        elif beh == "absurd_revision":
            ev["kv"]["mod_revision"] = str(ABSURD_REVISION)
            hdr = ABSURD_REVISION
        return rev, False, [ev], hdr

    def huge_lead(self):
        if self.kind == "etcd":
            return b'{"header":{"revision":"2"},"kvs":[{"key":"' + _b64(self.victim).encode() + \
                b'","mod_revision":"2","create_revision":"2","version":"1","value":"'
        return b'[{"Key":"' + self.victim + b'","ModifyIndex":2,"CreateIndex":2,"Value":"'

    def consul_entry(self, k, v):
        return {"Key": k.decode("utf-8", "surrogateescape"), "Value": _b64(v[0]) if v[0] else None,
                "CreateIndex": v[1], "ModifyIndex": v[2], "LockIndex": 0, "Flags": 0}

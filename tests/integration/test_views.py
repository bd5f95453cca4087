#!/usr/bin/env python3
"""Views (-o views): %#json, %#yaml, %#env and %#properties in every directory
render its subtree; each shows one store revision, follows changes, and is
read-only.  Every class runs against each store (CFGFS_STORES selects).
Run: python3 tests/integration/test_views.py [-k name]."""

import errno
import json
import os
import stat
import subprocess
import threading

import harness
from harness import read_file

FAST = 5.0   # a remote change -> visible in the view: milliseconds; generous on purpose

VIEWS = ["%#json", "%#yaml", "%#env", "%#properties"]


# -- parsers of the formats, as strict as the renderer's output allows ---------

def yaml_unquote(s):
    """A YAML double-quoted scalar (the whole of s) -> str."""
    assert s[0] == '"' and s[-1] == '"', s
    out, i, body = [], 0, s[1:-1]
    simple = {'"': '"', "\\": "\\", "0": "\0", "t": "\t", "n": "\n", "r": "\r",
              "N": "\x85", "L": "\u2028", "P": "\u2029", "/": "/", "a": "\a",
              "b": "\b", "e": "\x1b", "f": "\f", "v": "\v", " ": " ", "_": "\xa0"}
    while i < len(body):
        c = body[i]
        if c == '"':
            raise AssertionError("unescaped quote inside a scalar: %r" % s)
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = body[i + 1]
        if e in simple:
            out.append(simple[e])
            i += 2
        elif e in "xuU":
            n = {"x": 2, "u": 4, "U": 8}[e]
            out.append(chr(int(body[i + 2:i + 2 + n], 16)))
            i += 2 + n
        else:
            raise AssertionError("bad escape in %r" % s)
    return "".join(out)


def parse_yaml(text):
    """The block mappings the YAML view writes -> nested dicts of str."""
    if text == "{}\n":
        return {}
    root = {}
    stack = [(-1, root)]
    for line in text.split("\n")[:-1]:
        depth = len(line) - len(line.lstrip(" "))
        assert depth % 2 == 0, line
        body = line[depth:]
        # "name": "value" | "name": {} | "name":
        end = _scalar_end(body)
        name = yaml_unquote(body[:end])
        rest = body[end:]
        while stack[-1][0] >= depth:
            stack.pop()
        parent = stack[-1][1]
        assert name not in parent, "duplicate %r" % name
        if rest == ":":
            parent[name] = {}
            stack.append((depth, parent[name]))
        elif rest == ": {}":
            parent[name] = {}
        else:
            assert rest.startswith(": "), line
            parent[name] = yaml_unquote(rest[2:])
    return root


def _scalar_end(s):
    assert s[0] == '"', s
    i = 1
    while s[i] != '"':
        i += 2 if s[i] == "\\" else 1
    return i + 1


def parse_env(path):
    """Source the .env view in a clean shell; its variables as a dict of bytes."""
    out = subprocess.run(["env", "-i", "sh", "-c", 'set -a; . "$1"; env -0', "sh", path],
                         check=True, stdout=subprocess.PIPE).stdout
    env = dict(kv.split(b"=", 1) for kv in out.split(b"\0") if kv)
    for k in (b"PWD", b"SHLVL", b"_", b"OLDPWD"):
        env.pop(k, None)
    return env


def prop_unescape(s):
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = s[i + 1]
        if e == "u":
            out.append(chr(int(s[i + 2:i + 6], 16)))
            i += 6
        else:
            out.append({"t": "\t", "n": "\n", "r": "\r", "f": "\f"}.get(e, e))
            i += 2
    # Java strings are UTF-16: join surrogate pairs.
    return "".join(out).encode("utf-16", "surrogatepass").decode("utf-16")


def parse_properties(text):
    props = {}
    for line in text.split("\n")[:-1]:
        assert line.isascii(), line
        if line.startswith("#"):
            continue
        i = 0
        while line[i] != "=":
            i += 2 if line[i] == "\\" else 1
        key, val = prop_unescape(line[:i]), prop_unescape(line[i + 1:])
        assert key not in props, key
        props[key] = val
    return props


def read_json(path):
    return json.loads(read_file(path).decode("utf-8"))


def errno_of(fn, *args):
    try:
        fn(*args)
    except OSError as e:
        return e.errno
    return 0


@harness.all_stores
class TestViews(harness.CfgfsTestCase):

    def tree(self):
        """A small tree with awkward values."""
        items = {
            self.key("db", "host"): "db1",
            self.key("db", "port"): "5432",
            self.key("app", "name"): "it's \"quoted\"\nand = two: lines #!",
            self.key("app", "conf"): '{"a": [1, 2], "b": null}',
            self.key("app", "deep", "er", "est"): "bottom",
            self.key("top"): " leading space",
        }
        self.store.put_many(items)

    def test_absent_without_option(self):
        self.tree()
        m = self.mount()
        for d in ((), ("db",)):
            names = os.listdir(m.path(*d))
            for v in VIEWS:
                self.assertNotIn(v, names)
                self.assertEqual(errno_of(os.stat, m.path(*d, v)), errno.ENOENT)

    def test_readdir_and_attributes(self):
        self.tree()
        m = self.mount(opts=["-o", "views"])
        self.assertEqual(sorted(os.listdir(m.path())), sorted(["app", "db", "top"] + VIEWS))
        self.assertEqual(sorted(os.listdir(m.path("app", "deep"))), sorted(["er"] + VIEWS))
        # ls -l: readdirplus, then a stat of each.
        out = subprocess.run(["ls", "-la", m.path("db")], check=True,
                             stdout=subprocess.PIPE).stdout.decode()
        for v in VIEWS:
            self.assertIn(v, out)
        fst = os.stat(m.path("db", "host"))
        for v in VIEWS:
            p = m.path("db", v)
            st = os.stat(p)
            self.assertTrue(stat.S_ISREG(st.st_mode), v)
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o444, v)
            self.assertEqual((st.st_uid, st.st_gid), (fst.st_uid, fst.st_gid))
            self.assertEqual(st.st_size, len(read_file(p)), v)

    def test_readdir_of_a_long_directory(self):
        # A listing takes several requests: every key once, then the views once.
        names = ["key-%04d-%s" % (i, "x" * 100) for i in range(400)]
        self.store.put_many({self.key("big", n): "v" for n in names})
        m = self.mount(opts=["-o", "views"])
        for _ in range(2):   # cold, then from the kernel's cached listing
            got = os.listdir(m.path("big"))
            self.assertEqual(len(got), len(set(got)))
            self.assertEqual(sorted(got), sorted(names + VIEWS))
            out = subprocess.run(["ls", "-U", m.path("big")], check=True,
                                 stdout=subprocess.PIPE).stdout.decode().split("\n")
            self.assertEqual(out[-5:-1], VIEWS)
        self.assertEqual(len(read_json(m.path("big", "%#json"))), 400)

    def test_formats(self):
        self.tree()
        m = self.mount(opts=["-o", "views"])
        name = "it's \"quoted\"\nand = two: lines #!"
        self.assertEqual(read_json(m.path("%#json")), {
            "app": {"conf": {"a": [1, 2], "b": None}, "deep": {"er": {"est": "bottom"}},
                    "name": name},
            "db": {"host": "db1", "port": 5432},
            "top": " leading space"})
        self.assertEqual(read_json(m.path("db", "%#json")), {"host": "db1", "port": 5432})
        self.assertEqual(parse_yaml(read_file(m.path("%#yaml")).decode()), {
            "app": {"conf": '{"a": [1, 2], "b": null}', "deep": {"er": {"est": "bottom"}},
                    "name": name},
            "db": {"host": "db1", "port": "5432"},
            "top": " leading space"})
        self.assertEqual(parse_env(m.path("%#env")), {
            b"APP_CONF": b'{"a": [1, 2], "b": null}', b"APP_DEEP_ER_EST": b"bottom",
            b"APP_NAME": name.encode(), b"DB_HOST": b"db1", b"DB_PORT": b"5432",
            b"TOP": b" leading space"})
        self.assertEqual(parse_env(m.path("app", "deep", "%#env")), {b"ER_EST": b"bottom"})
        self.assertEqual(parse_properties(read_file(m.path("%#properties")).decode()), {
            "app.conf": '{"a": [1, 2], "b": null}', "app.deep.er.est": "bottom",
            "app.name": name, "db.host": "db1", "db.port": "5432", "top": " leading space"})

    def test_hostile_values(self):
        self.store.put(self.key("bin"), b"nul\0inside \xff\xfe not utf-8")
        self.store.put(self.key("uni"), "caf\u00e9 \U0001F600")
        self.store.put(self.key("close"), '"}\n"x": {')
        m = self.mount(opts=["-o", "views"])
        j = read_json(m.path("%#json"))
        self.assertEqual(j["bin"], "nul\0inside \ufffd\ufffd not utf-8")
        self.assertEqual(j["uni"], "caf\u00e9 \U0001F600")
        self.assertEqual(j["close"], '"}\n"x": {')
        y = parse_yaml(read_file(m.path("%#yaml")).decode())
        self.assertEqual(y, {"bin": "nul\0inside \ufffd\ufffd not utf-8",
                             "uni": "caf\u00e9 \U0001F600", "close": '"}\n"x": {'})
        env = read_file(m.path("%#env"))
        self.assertIn(b'# skipped "bin": a shell variable cannot hold a NUL byte\n', env)
        self.assertEqual(parse_env(m.path("%#env")),
                         {b"UNI": "caf\u00e9 \U0001F600".encode(), b"CLOSE": b'"}\n"x": {'})
        p = parse_properties(read_file(m.path("%#properties")).decode())
        self.assertEqual(p["bin"], "nul\0inside \ufffd\ufffd not utf-8")
        self.assertEqual(p["uni"], "caf\u00e9 \U0001F600")

    def test_value_and_prefix(self):
        # "a" next to "a/b": the directory "a" holding "%value" (README "Names").
        self.store.put(self.key("a"), "A")
        self.store.put(self.key("a", "b"), "B")
        m = self.mount(opts=["-o", "views"])
        self.assertEqual(read_json(m.path("%#json")), {"a": {"%value": "A", "b": "B"}})
        self.assertEqual(parse_env(m.path("%#env")), {b"A": b"A", b"A_B": b"B"})
        self.assertEqual(parse_properties(read_file(m.path("%#properties")).decode()),
                         {"a": "A", "a.b": "B"})

    def test_change_shows_promptly(self):
        self.tree()
        m = self.mount(opts=["-o", "views"])
        root, db = m.path("%#json"), m.path("db", "%#json")
        self.assertEqual(read_json(db)["host"], "db1")
        self.assertEqual(read_json(root)["db"]["host"], "db1")
        # Held open: the descriptor keeps the revision it opened.
        fd = os.open(root, os.O_RDONLY)
        self.addCleanup(os.close, fd)
        before = os.pread(fd, 1 << 20, 0)
        self.store.put(self.key("db", "host"), "db-two")
        self.wait_equal(lambda: read_json(db)["host"], "db-two", FAST, what="db/%#json")
        self.wait_equal(lambda: read_json(root)["db"]["host"], "db-two", FAST, what="%#json")
        self.wait_equal(lambda: parse_env(m.path("db", "%#env"))[b"HOST"], b"db-two", FAST,
                        what="db/%#env")
        self.assertEqual(os.pread(fd, 1 << 20, 0), before)
        # A new key, and a deleted one, in every ancestor's view; a sibling's view is left.
        app = read_file(m.path("app", "%#json"))
        self.store.put(self.key("db", "new"), "N")
        self.wait_equal(lambda: read_json(root)["db"].get("new"), "N", FAST, what="new key")
        self.store.delete(self.key("db", "port"))
        self.wait_equal(lambda: sorted(read_json(db)), ["host", "new"], FAST,
                        what="deleted key gone from db/%#json")
        self.assertEqual(read_file(m.path("app", "%#json")), app)
        for v in VIEWS:
            p = m.path("db", v)
            self.assertEqual(os.stat(p).st_size, len(read_file(p)))

    def test_edit_through_the_mount_shows_once_committed(self):
        self.tree()
        m = self.mount(opts=["-o", "views"])
        db = m.path("db", "%#json")
        self.assertEqual(read_json(db)["host"], "db1")
        with open(m.path("db", "host"), "wb") as f:
            f.write(b"edited")
            f.flush()
            os.fsync(f.fileno())   # the commit point: the store has it now
        self.wait_equal(lambda: read_json(db)["host"], "edited", FAST, what="the edit in the view")
        self.assertEqual(self.store.get(self.key("db", "host"))["value"], b"edited")
        # A new file, committed at close, and its removal.
        with open(m.path("db", "user"), "wb") as f:
            f.write(b"admin")
        self.wait_equal(lambda: read_json(db).get("user"), "admin", FAST, what="the new key")
        os.unlink(m.path("db", "user"))
        self.wait_equal(lambda: "user" in read_json(db), False, FAST, what="the deleted key")

    def test_transaction_never_half_applied(self):
        names = ["f%d" % i for i in range(6)]
        self.store.txn_put_many({self.key("tls", n): "v0" for n in names})
        m = self.mount(opts=["-o", "views"])
        views = [m.path("%#json"), m.path("tls", "%#json")]
        stop = threading.Event()
        seen, torn, errors = set(), [], []
        sweeps = [0]

        def reader():
            try:
                while not stop.is_set():
                    sweeps[0] += 1
                    for i, p in enumerate(views):
                        raw = read_file(p)
                        vals = set((json.loads(raw)["tls"] if i == 0 else json.loads(raw))
                                   .values())
                        if len(vals) != 1:
                            torn.append(raw)
                        seen.update(vals)
            except Exception as e:   # reported below, not swallowed
                errors.append(e)
        t = threading.Thread(target=reader)
        t.start()
        try:
            rounds = 150
            for n in range(1, rounds + 1):
                self.store.txn_put_many({self.key("tls", k): "v%d" % n for k in reversed(names)})
                if n % 10 == 0:
                    # A store that takes 150 transactions faster than the reader renders two
                    # views (ZooKeeper under ASan did) would leave it too few states to check.
                    done = sweeps[0]
                    self.wait_until(lambda: sweeps[0] >= done + 2 or errors, 30,
                                    what="the reader to read the views again")
            self.wait_equal(lambda: read_json(views[1]), {k: "v%d" % rounds for k in names},
                            FAST, what="the last transaction in tls/%#json")
        finally:
            stop.set()
            t.join(30)
        self.assertEqual(errors, [])
        self.assertEqual(torn[:3], [], "%d views showed half a transaction" % len(torn))
        self.assertGreater(len(seen), 2, "the reader saw too few states to mean anything")

    def test_read_only(self):
        self.tree()
        m = self.mount(opts=["-o", "views"])
        v = m.path("db", "%#json")
        before = read_file(v)
        self.assertEqual(errno_of(lambda: open(v, "wb").close()), errno.EACCES)

        def append():
            # Root passes the mode bits at open: then the write is refused.
            fd = os.open(v, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, b"x")
            finally:
                os.close(fd)
        self.assertEqual(errno_of(append), errno.EACCES)
        self.assertEqual(errno_of(os.truncate, v, 0), errno.EACCES)
        self.assertEqual(errno_of(os.chmod, v, 0o644), errno.EACCES)
        self.assertEqual(errno_of(os.unlink, v), errno.EACCES)
        self.assertEqual(errno_of(os.rename, v, m.path("db", "x")), errno.EACCES)
        self.assertEqual(errno_of(os.rename, m.path("db", "host"), v), errno.EACCES)
        self.assertEqual(errno_of(os.mkdir, m.path("db", "%#yaml")), errno.EEXIST)
        self.assertEqual(errno_of(os.open, m.path("db", "%#env"),
                                  os.O_CREAT | os.O_EXCL | os.O_WRONLY), errno.EEXIST)
        self.assertEqual(read_file(v), before)
        self.assertEqual(read_file(m.path("db", "host")), b"db1")
        _, kvs = self.store_snapshot()
        self.assertFalse([k for k in kvs if b"%#" in k], kvs.keys())

    def test_rm_r_removes_the_keys(self):
        # rm -r cannot unlink the views and says so, but every key goes. (It then does not
        # try to rmdir their directories: where the store keeps a directory of its own, a
        # ZooKeeper parent, it stays, empty but for its views.)
        self.tree()
        m = self.mount(opts=["-o", "views"])
        cp = subprocess.run(["rm", "-rf", m.path("app")], stderr=subprocess.PIPE)
        self.assertNotEqual(cp.returncode, 0)
        self.assertIn(b"%#json", cp.stderr)

        def values_left():   # unlinked keys are deleted a moment later (README "Writing")
            _, kvs = self.store_snapshot()
            return [k for k, kv in kvs.items() if b"/app/" in k and kv["value"]]
        self.wait_equal(values_left, [], FAST, what="every key under app deleted")

        def leaves(o):
            return sum(leaves(v) for v in o.values()) if isinstance(o, dict) else 1
        self.wait_equal(lambda: leaves(read_json(m.path("%#json")).get("app", {})), 0, FAST,
                        what="no value left under app in %#json")


if __name__ == "__main__":
    harness.main()

#!/usr/bin/env python3
"""Real editors saving through the mount (vim, nano, emacs; interactive ones
under a private tmux server): each save is ONE update of the edited key
(create_revision kept, no delete ever visible), swap/lock/backup/auto-save
files stay on this host, and a conflicting save is refused through fsync.
Every class runs against each store (TestVimEtcd, TestVimConsul, ...;
CFGFS_STORES selects); on Consul the edited key carries flags
(harness.EDIT_FLAGS) that every save must keep.
Run: python3 tests/integration/test_editors.py [-k name]"""

import os
import re
import shutil
import subprocess
import tempfile

import harness
from harness import assert_stays, cfgfs_state, read_file

STARTUP = 10.0      # editor start / screen updates under tmux
PROPAGATE = 5.0
NEGATIVE = 0.6

OLD = b"alpha=1\nbeta=2\n"


def exists(path):
    try:
        os.lstat(path)
        return True
    except FileNotFoundError:
        return False


class EditorTestCase(harness.CfgfsTestCase):

    def setUp(self):
        super().setUp()
        self.k = self.key("app.conf")
        self.put_flagged(self.k, OLD)
        self.store.put(self.key("other"), "untouched\n")
        self.m = self.mount()
        self.p = self.m.path("app.conf")
        # An empty HOME: only the system-wide configuration applies (Debian's
        # /etc/vim/vimrc + defaults.vim, /etc/nanorc), and viminfo, nano
        # history and the like land in a throwaway directory.
        self.home = tempfile.mkdtemp(prefix="cfgfs-home-")
        self.addCleanup(shutil.rmtree, self.home, True)
        env = {k: v for k, v in os.environ.items()
               if not re.match(r"(VIM|MYVIMRC|EXINIT|XDG_|EMACS|TMUX)", k)}
        env.update(HOME=self.home, TERM="xterm", LANG="C.UTF-8")
        self.env = env

    def require(self, *programs):
        for p in programs:
            if shutil.which(p) is None:
                self.skipTest("%s is not installed" % p)

    def run_batch(self, argv, timeout=30):
        r = subprocess.run(argv, cwd=self.m.mountpoint, env=self.env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=timeout)
        self.assertEqual(r.returncode, 0, "%r: status %d\n%s%s" % (argv, r.returncode, r.stdout,
                                                                  r.stderr))
        return r

    def tmux(self, argv):
        self.require("tmux")
        t = harness.Tmux()
        self.addCleanup(t.close)
        t.start(argv, env=self.env, cwd=self.m.mountpoint)
        return t

    def store_keys(self):
        return set(self.store_snapshot()[1])

    def assert_local_only(self, name, content_prefix=None):
        """name exists in the mount, is local-only, and is not a store key."""
        path = self.m.path(name)
        self.assertTrue(exists(path), "%s should exist in the mount; listing %r"
                        % (name, os.listdir(self.m.mountpoint)))
        if not os.path.islink(path):
            self.assertEqual(cfgfs_state(path), "local", "state of %s" % name)
        if content_prefix is not None:
            self.assertTrue(read_file(path).startswith(content_prefix),
                            "%s starts with %r: %r" % (name, content_prefix, read_file(path)[:20]))
        self.assertNotIn(self.key(name).encode(), self.store_keys())

    def listing(self):
        return sorted(os.listdir(self.m.mountpoint))


@harness.all_stores
class TestVim(EditorTestCase):

    def test_vim_interactive_debian_defaults(self):
        self.require("vim")
        before = self.store_snapshot()
        t = self.tmux(["vim", "app.conf"])
        t.wait_for("alpha=1", STARTUP)
        t.type(":%s/alpha/beta/")
        t.send("Enter")
        t.wait_for(re.compile(r"^beta=1$", re.M), STARTUP)
        # The buffer is modified; the swap file is here and local only.
        self.wait_until(lambda: read_file(self.m.path(".app.conf.swp")).startswith(b"b0VIM"),
                        STARTUP, what="vim's swap file")
        self.assert_local_only(".app.conf.swp", b"b0VIM")
        self.assertEqual(self.store_snapshot(), before, "nothing sent before :w")
        # Debian defaults: backupcopy=auto + writebackup, i.e. the 4913 probe and
        # the rename of app.conf to app.conf~ before a new app.conf is written.
        t.type(":set backupcopy? writebackup? backup?")
        t.send("Enter")
        t.wait_for(re.compile(r"backupcopy=auto\s+writebackup\s+nobackup"), STARTUP)
        t.type(":wq")
        t.send("Enter")
        t.wait_exit(STARTUP)
        self.assert_one_update(before, self.m.mountpoint, self.p, self.k, b"beta=1\nbeta=2\n")
        self.assertEqual(self.listing(), ["app.conf", "other"], "vim's scratch files are gone")

    def vim_batch(self, *setup, compatible=False):
        self.require("vim")
        before = self.store_snapshot()
        argv = ["vim"] + ([] if compatible else ["-Nu", "NONE", "-i", "NONE"]) + ["-es"]
        for cmd in list(setup) + ["%s/alpha/beta/", "wq"]:
            argv += ["-c", cmd]
        self.run_batch(argv + ["app.conf"])
        return before

    def test_vim_batch_rename_mode(self):
        before = self.vim_batch()   # backupcopy=auto: probe 4913, rename to app.conf~
        self.assert_one_update(before, self.m.mountpoint, self.p, self.k, b"beta=1\nbeta=2\n")
        self.assertEqual(self.listing(), ["app.conf", "other"])

    def test_vim_batch_backupcopy_yes(self):
        before = self.vim_batch("set backupcopy=yes")
        self.assert_one_update(before, self.m.mountpoint, self.p, self.k, b"beta=1\nbeta=2\n")
        self.assertEqual(self.listing(), ["app.conf", "other"])

    def test_vim_batch_backupcopy_no(self):
        before = self.vim_batch("set backupcopy=no")
        self.assert_one_update(before, self.m.mountpoint, self.p, self.k, b"beta=1\nbeta=2\n")
        self.assertEqual(self.listing(), ["app.conf", "other"])

    def test_vim_batch_compatible_copy_mode(self):
        before = self.vim_batch(compatible=True)   # no -u: compatible, backupcopy=yes
        self.assert_one_update(before, self.m.mountpoint, self.p, self.k, b"beta=1\nbeta=2\n")
        self.assertEqual(self.listing(), ["app.conf", "other"])

    def test_vim_batch_set_backup_keeps_local_backup(self):
        before = self.vim_batch("set backup")   # rename mode, app.conf~ left behind
        self.assert_one_update(before, self.m.mountpoint, self.p, self.k, b"beta=1\nbeta=2\n")
        self.assertEqual(self.listing(), ["app.conf", "app.conf~", "other"])
        self.assert_local_only("app.conf~")
        self.assertEqual(read_file(self.m.path("app.conf~")), OLD)

    def test_vim_interactive_conflict_is_refused_by_fsync(self):
        self.require("vim")
        t = self.tmux(["vim", "app.conf"])
        t.wait_for("alpha=1", STARTUP)
        t.type(":%s/alpha/beta/")
        t.send("Enter")
        t.wait_for(re.compile(r"^beta=1$", re.M), STARTUP)
        base = self.store.get(self.k)["mod_revision"]
        remote = self.store.put(self.k, b"remote=1\n")
        # Wait until cfgfs has applied the put WITHOUT reading the file: a read
        # on this host would make the remote revision the base of vim's save.
        self.wait_equal(lambda: os.getxattr(self.p, "user.cfgfs.mod_revision"),
                        str(remote).encode(), PROPAGATE, what="cfgfs to see the remote put")
        t.type(":w")
        t.send("Enter")
        # vim notices the new mtime and asks first.
        screen = t.wait_for(re.compile(r"\(y/n\)|E667"), STARTUP)
        if "E667" not in screen:
            t.send("y")
        t.wait_for("E667: Fsync failed", STARTUP)
        # vim rolled back (unlink app.conf, rename app.conf~ back): the file
        # exists and shows the store's value; the store was not touched.
        self.wait_equal(lambda: read_file(self.p), b"remote=1\n", PROPAGATE,
                        what="file to show the store's value")
        kv = self.store.get(self.k)
        self.assertEqual((kv["value"], kv["mod_revision"]), (b"remote=1\n", remote))
        self.assertEqual(read_file(self.p + ".rejected"), b"beta=1\nbeta=2\n")
        self.assert_local_only("app.conf.rejected")
        self.assertNotIn("app.conf~", self.listing())
        t.send("Enter")
        t.type(":q!")
        t.send("Enter")
        t.wait_exit(STARTUP)
        harness.wait_settled(self.m.mountpoint)
        self.assert_writes(remote, self.prefix_revision(), 0, "nothing after the remote put")
        self.assertEqual(self.listing(), ["app.conf", "app.conf.rejected", "other"])
        self.assertEqual(read_file(self.p), b"remote=1\n")
        self.assertEqual(cfgfs_state(self.p), "synced")


@harness.all_stores
class TestNano(EditorTestCase):

    def test_nano_interactive(self):
        self.require("nano")
        before = self.store_snapshot()
        t = self.tmux(["nano", "app.conf"])
        t.wait_for("alpha=1", STARTUP)
        t.type("gamma=3")
        t.send("Enter")
        t.wait_for("app.conf *", STARTUP)   # nano marks the buffer modified
        # Debian's /etc/nanorc has `set locking`: a vim-compatible lock file.
        self.wait_until(lambda: read_file(self.m.path(".app.conf.swp")).startswith(b"b0nano"),
                        STARTUP, what="nano's lock file")
        self.assert_local_only(".app.conf.swp", b"b0nano")
        self.assertEqual(self.store_snapshot(), before, "nothing sent before ^O")
        t.send("C-o")
        t.wait_for("File Name to Write", STARTUP)
        t.send("Enter")
        t.wait_for("Wrote 3 lines", STARTUP)
        # nano fsyncs: the commit is done when "Wrote" shows.
        self.assertEqual(self.store.get(self.k)["value"], b"gamma=3\nalpha=1\nbeta=2\n")
        t.send("C-x")
        t.wait_exit(STARTUP)
        self.assert_one_update(before, self.m.mountpoint, self.p, self.k,
                               b"gamma=3\nalpha=1\nbeta=2\n")
        self.assertEqual(self.listing(), ["app.conf", "other"])


@harness.all_stores
class TestEmacs(EditorTestCase):

    def test_emacs_batch(self):
        self.require("emacs")
        before = self.store_snapshot()
        # In batch mode: lock symlink .#app.conf at the first change, backup by
        # renaming app.conf to app.conf~, a new app.conf written in two
        # chunks, no fsync (so the commit comes after the quiet period).
        self.run_batch(["emacs", "--batch", "--eval",
                        '(progn (find-file "app.conf") (goto-char (point-max))'
                        ' (insert "gamma=3\\n") (save-buffer))'])
        self.assert_one_update(before, self.m.mountpoint, self.p, self.k,
                               OLD + b"gamma=3\n")
        self.assertEqual(self.listing(), ["app.conf", "app.conf~", "other"])
        self.assert_local_only("app.conf~")
        self.assertEqual(read_file(self.m.path("app.conf~")), OLD)

    def test_emacs_batch_numbered_backups(self):
        self.require("emacs")
        expected = OLD
        for n in (1, 2):
            before = self.store_snapshot()
            self.run_batch(["emacs", "--batch", "--eval",
                            '(progn (setq version-control t) (find-file "app.conf")'
                            ' (goto-char (point-max)) (insert "n=%d\\n") (save-buffer))' % n])
            self.assert_one_update(before, self.m.mountpoint, self.p, self.k,
                                   expected + b"n=%d\n" % n)
            self.assert_local_only("app.conf.~%d~" % n)
            self.assertEqual(read_file(self.m.path("app.conf.~%d~" % n)), expected)
            expected += b"n=%d\n" % n
        self.assertEqual(self.listing(), ["app.conf", "app.conf.~1~", "app.conf.~2~", "other"])

    def test_emacs_interactive_lock_and_auto_save_stay_local(self):
        self.require("emacs")
        before = self.store_snapshot()
        t = self.tmux(["emacs", "-nw", "-Q", "app.conf"])
        t.wait_for("alpha=1", STARTUP)
        t.send("M-<")
        t.type("gamma=3")
        t.send("Enter")
        t.wait_for("gamma=3", STARTUP)
        # The lock is a (dangling) symlink, local only.
        self.wait_until(lambda: os.path.islink(self.m.path(".#app.conf")), STARTUP,
                        what="emacs's lock symlink .#app.conf")
        self.assertRegex(os.readlink(self.m.path(".#app.conf")), r"@")
        self.assert_local_only(".#app.conf")
        t.send("M-x")
        t.type("do-auto-save")
        t.send("Enter")
        self.wait_until(lambda: exists(self.m.path("#app.conf#")), STARTUP,
                        what="emacs's auto-save file #app.conf#")
        self.wait_equal(lambda: read_file(self.m.path("#app.conf#")), b"gamma=3\n" + OLD,
                        STARTUP)
        self.assert_local_only("#app.conf#")
        assert_stays(lambda: self.store_snapshot() == before, NEGATIVE,
                     what="nothing sent before C-x C-s")
        t.send("C-x", "C-s")
        t.wait_for("Wrote ", STARTUP)
        t.send("C-x", "C-c")
        t.wait_exit(STARTUP)
        self.assert_one_update(before, self.m.mountpoint, self.p, self.k, b"gamma=3\n" + OLD)
        self.assertEqual(self.listing(), ["app.conf", "app.conf~", "other"],
                         "lock and auto-save gone, backup kept locally")
        self.assert_local_only("app.conf~")


if __name__ == "__main__":
    harness.main()

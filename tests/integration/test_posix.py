#!/usr/bin/env python3
"""POSIX conformance of cfgfs, measured against a local filesystem.

Every case is a function in CASES (name -> function).  It runs the same
sequence of system calls (the os module, renameat2/utimensat through ctypes)
twice, each time in a fresh directory: once on the reference (a tmpfs,
/dev/shm, or CFGFS_POSIX_REF=DIR) and once on a real cfgfs mount of a real
store (-o allow_other, so a child process that drops to nobody can check
permissions).  Each call records its outcome - a return value or an errno
name - and after the case the directory's state is compared too: names,
types, modes, sizes, link counts, contents and symlink targets (directory
sizes and link counts are left to the cases that ask for them).  Timestamps
are compared as "which of atime/mtime/ctime changed" (t.mark() waits until
the clock has ticked past a path's timestamps, so a change always shows).

A case's verdict is one of
  match              every outcome and the state are the same;
  different by design  listed in DIFFERENT_BY_DESIGN (only what README says
                     cfgfs refuses), and cfgfs gave exactly the outcome that
                     entry expects where the reference succeeded;
  mismatch           anything else.  Mismatches that are known today are in
                     KNOWN_MISMATCHES with what was observed; the test fails
                     on any other mismatch, and on an entry of either dict
                     whose case now matches (remove the entry).
Each test method runs one group of cases; the class prints the summary table
at the end.

cfgfs commits asynchronously (a new file after a quiet period, an unlinked
key about a second later): files a case starts from are created through the
mount and settled, and after each case cfgfs is settled - nothing pending,
the store agrees with the files, and every unlinked name the case reused is
watched for a while longer, so a late delete would show - before the state
is taken.  t.settle() inside a case does the same (a no-op on the reference).

Run: python3 tests/integration/test_posix.py [-k name]
Environment: CFGFS_POSIX_REF=DIR (reference directory, default /dev/shm),
CFGFS_POSIX_VERBOSE=1 (every difference of every mismatch in the summary),
CFGFS_POSIX_DUMP=case,case|all (every step and the state of both runs)."""

import ctypes
import errno
import hashlib
import json
import mmap
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time

import harness

SETTLE = 10.0        # commit (quiet period, or the lease at close) and delayed delete
HOLD = 1.6           # a reused name is watched this long for a late delete
                     # (README: "rm NAME deletes the key a second later")
NOBODY = 65534
OLD_NS = 946684800 * 10**9 + 123456789      # 2000-01-01, a time in the past
OLD2_NS = 978307200 * 10**9 + 987654321     # 2001-01-01

N255 = "n" * 255
N256 = "n" * 256
D255 = "d" * 255

# Known mismatches that are races: a run may miss them, which is no news.
RACES = {"rename_over_file_nlink_100_times"}

# ---------------------------------------------------------------------------
# What is allowed to differ
# ---------------------------------------------------------------------------

# Only what README says cfgfs refuses.  name -> (reason, {step label: the
# outcome cfgfs must give instead of the reference's}); a callable value is
# called with the store's harness.STORE_LIMITS entry.  The state may differ
# as a consequence (no link, no fifo).
DIFFERENT_BY_DESIGN = {
    "link_file": ("README: hard links are refused (EPERM)",
                  {"link(f, g)": "EPERM", "lstat(f) nlink": "1"}),
    "link_new_uncommitted_file": ("README: hard links are refused (EPERM)",
                                  {"link(n, g)": "EPERM"}),
    "link_symlink_itself": ("README: hard links are refused (EPERM)",
                            {"link(l, g)": "EPERM"}),
    "link_scratch_file": ("README: hard links are refused (EPERM), scratch files too",
                          {"link(f~, g~)": "EPERM"}),
    "link_into_subdir": ("README: hard links are refused (EPERM)",
                         {"link(f, d/g)": "EPERM"}),
    "link_tmpfile_into_tree": ("README: hard links are refused (EPERM)",
                               {"link(/proc/self/fd/fd1, t)": "EPERM"}),
    "mknod_fifo": ("README: fifos are refused (EPERM)",
                   {"mknod(p, fifo 0644)": "EPERM"}),
    "mkfifo_fifo": ("README: fifos are refused (EPERM)",
                    {"mkfifo(p, 0644)": "EPERM"}),
    "mknod_char_device": ("README: devices are refused (EPERM)",
                          {"mknod(c, chr 0644, 1:3)": "EPERM"}),
    "mknod_block_device": ("README: devices are refused (EPERM)",
                           {"mknod(b, blk 0644, 7:0)": "EPERM"}),
    "name_invalid_escape": ("README: a name no key can produce (%41, %value) cannot be created",
                            {"open(%41, O_WRONLY|O_CREAT)": "EINVAL",
                             "mkdir(%value, 0777)": "EINVAL", "listdir(.)": "(empty)"}),
    "chown_other_user": ("README: chown is accepted, every file shows the mount's owner",
                         {"lstat(f) uid gid": "uid=0 gid=0"}),
    "new_file_owner_is_creator": ("README: every file shows the mount's owner, so the file "
                                  "nobody created belongs to root (0644)",
                                  {"nobody write(d/n)": "EACCES", "nobody chmod(d/n)": "EPERM",
                                   "lstat(d/n) mode": "0644", "content(d/n)": "b''"}),
    "sticky_dir_own_file": ("README: every file shows the mount's owner, so nobody's own "
                            "file in a sticky directory belongs to root",
                            {"nobody unlink(s/n)": "EPERM", "listdir(s)": "n"}),
    "rename_dir_beyond_one_txn": ("README: a directory rename that does not fit one "
                                  "transaction fails with EXDEV",
                                  {"rename(big, moved)": "EXDEV", "lstat(big) type": "dir",
                                   "lstat(moved) type": "ENOENT"}),
    "write_beyond_store_limit": ("README: a value larger than the store accepts fails "
                                 "with EFBIG at write() time",
                                 {"write 2 MiB in 512 B chunks":
                                  lambda lim: "EFBIG after %d bytes" % lim.max_value}),
    # POSIX write(): "only as many bytes as there is room for shall be written".
    "write_straddling_store_limit": ("README: a value larger than the store accepts fails "
                                     "with EFBIG at write() time",
                                     {"write(fd1, 100 bytes at limit-10)": "10",
                                      "write(fd1, b'z')": "EFBIG",
                                      "lstat(f) size": lambda lim: str(lim.max_value)}),
    "truncate_beyond_store_limit": ("README/harness: a size beyond the store's limit "
                                    "fails with EFBIG (write()/truncate() time)",
                                    {"truncate(f, 2097152)": "EFBIG",
                                     "lstat(f) size": "3"}),
}

# Mismatches observed today (what each side did); the engineers remove an
# entry when they fix it.  A value may be a dict {store kind: text} when only
# some stores differ.
_ONE_TIME_AM = "one timestamp: atime moves with mtime (%s changed mc, cfgfs amc; m and c are right)"
_NO_CTIME = "ctime-only change not shown: tmpfs changed c, cfgfs unchanged (%s)"
_UTIME = ("utime(atime=2000, mtime=2001): tmpfs keeps both, cfgfs shows atime = mtime = 2001 "
          "(one timestamp)")
KNOWN_MISMATCHES = {
    # timestamps: cfgfs keeps one (atime = mtime = ctime)
    "o_trunc": _ONE_TIME_AM % "O_TRUNC: tmpfs",
    "truncate_times": _ONE_TIME_AM % "truncate: tmpfs",
    "ftruncate_times": _ONE_TIME_AM % "ftruncate: tmpfs",
    "file_times_write": _ONE_TIME_AM % "write: tmpfs",
    "dir_times_create_file": _ONE_TIME_AM % "parent dir on create: tmpfs",
    "dir_times_unlink": _ONE_TIME_AM % "parent dir on unlink: tmpfs",
    "dir_times_mkdir_rmdir": _ONE_TIME_AM % "parent dir on mkdir and rmdir: tmpfs",
    "dir_times_rename_within": _ONE_TIME_AM % "parent dir on rename: tmpfs",
    "dir_times_symlink": _ONE_TIME_AM % "parent dir on symlink: tmpfs",
    "dir_times_rename_over_existing": _ONE_TIME_AM % "parent dir on rename over a file: tmpfs",
    "file_times_chown": _NO_CTIME % "chown",
    "rename_file_to_new_name": "renamed file's ctime unchanged (tmpfs c); parent dir amc (tmpfs mc)",
    "rename_across_dirs_times": "moved file's and dir's ctime unchanged (tmpfs c); both parents "
                                "amc (tmpfs mc)",
    "file_times_read_updates_atime": "read() never updates atime: tmpfs changed a (relatime, "
                                     "atime older than mtime), cfgfs unchanged",
    "dir_times_readdir_updates_atime": "readdir never updates atime: tmpfs changed a, cfgfs "
                                       "unchanged",
    "file_times_utime_explicit": _UTIME,
    "file_times_utimensat_omit": "utimensat(OMIT, 2001) then (2001, OMIT): cfgfs shows atime = "
                                 "mtime (one timestamp)",
    "dir_times_utime": _UTIME + ", on a directory",
    "file_times_mtime_from_utime_survives_write_commit": _UTIME + "; mtime does survive the "
                                                                  "commit",
    "symlink_times_not_following": _UTIME + ", on a symlink (lutimes)",
    # rename
    "renameat2_exchange_files": "renameat2(RENAME_EXCHANGE) of two files: tmpfs swaps them, "
                                "cfgfs EINVAL",
    "renameat2_exchange_file_and_dir": "renameat2(RENAME_EXCHANGE) of a file and a dir: tmpfs "
                                       "swaps them, cfgfs EINVAL",
    "rename_over_file_nlink_100_times": "lstat of the name right after a rename replaced a file "
                                        "shows nlink 0 in about 1 of 12-25 renames (tmpfs: never)",
    # names
    "name_256_bytes": {"zookeeper": "a 256-byte name is a valid name on ZooKeeper (znode names "
                                    "go to 1024 bytes): tmpfs ENAMETOOLONG, cfgfs creates it"},
    "name_256_bytes_errno_order": {"zookeeper": "NAME/x with a 258-byte NAME: tmpfs "
                                                "ENAMETOOLONG, cfgfs ENOENT (a valid znode name)"},
    "link_errno_order": {"zookeeper": "link(f, 256-byte name): tmpfs ENAMETOOLONG, cfgfs EPERM "
                                      "(znode names go to 1024 bytes, so the name is valid and "
                                      "the link refusal comes first)"},
    "mknod_errno_order": {"zookeeper": "mknod(256-byte name, fifo): tmpfs ENAMETOOLONG, cfgfs "
                                       "EPERM (a valid znode name: the fifo refusal comes first)"},
    "name_percent": "a file named '%' (README: the key 'DIR/' with a value) in a mkdir'ed "
                    "directory: its commit is refused and it becomes '%.rejected'",
    "name_percent_empty_file": "an empty file named '%' in a mkdir'ed directory becomes "
                               "'%.rejected'",
    "name_non_utf8_bytes": {"consul": "a file named b'bin\\xff\\xfe' is created, then its "
                                      "commit is refused and it becomes NAME.rejected (Consul "
                                      "keys are UTF-8)",
                            "zookeeper": "a file named b'bin\\xff\\xfe' is created, then its "
                                         "commit is refused and it becomes NAME.rejected "
                                         "(znode names are UTF-8)"},
    "name_special_bytes": {"zookeeper": "files named with a newline or a tab are created, then "
                                        "their commits are refused and they become "
                                        "NAME.rejected (ZooKeeper refuses control characters)"},
    "name_invalid_escape": {"zookeeper": "'%41' is a name as it is on ZooKeeper (names are "
                                         "the znodes' own, '%' and all), so it is created; "
                                         "'%value' stays reserved (EINVAL)"},
    # other
    "o_tmpfile": "open(dir, O_TMPFILE): tmpfs ok, cfgfs EOPNOTSUPP",
    "link_tmpfile_into_tree": "O_TMPFILE gives EOPNOTSUPP, so the link refusal cannot be "
                              "checked (tmpfs links the tmpfile in)",
    "unix_socket": "bind() of an AF_UNIX socket: tmpfs ok, cfgfs EPERM (README lists devices "
                   "and fifos, not sockets)",
    "write_straddling_store_limit": "a write() that crosses the store limit fails whole with "
                                    "EFBIG, nothing written; POSIX writes what fits (short "
                                    "write) and fails the next write",
}

# ---------------------------------------------------------------------------
# libc pieces the os module lacks
# ---------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                            ctypes.c_uint]
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2
CLOCK_REALTIME_COARSE = 5


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_libc.utimensat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(Timespec),
                            ctypes.c_int]


def renameat2(olddirfd, old, newdirfd, new, flags):
    if _libc.renameat2(olddirfd, os.fsencode(old), newdirfd, os.fsencode(new), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def utimensat(dirfd, path, atime, mtime):
    """atime/mtime: ns since the epoch, or UTIME_NOW / UTIME_OMIT (as nsec)."""
    ts = (Timespec * 2)()
    for i, v in enumerate((atime, mtime)):
        if v in (UTIME_NOW, UTIME_OMIT):
            ts[i].tv_sec, ts[i].tv_nsec = 0, v
        else:
            ts[i].tv_sec, ts[i].tv_nsec = divmod(v, 10**9)
    if _libc.utimensat(dirfd, os.fsencode(path), ts, 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


# ---------------------------------------------------------------------------
# Formatting of outcomes
# ---------------------------------------------------------------------------

_OFLAGS = [(getattr(os, n), n) for n in
           ("O_WRONLY", "O_RDWR", "O_CREAT", "O_EXCL", "O_TRUNC", "O_APPEND", "O_DIRECTORY",
            "O_NOFOLLOW", "O_PATH", "O_NOATIME", "O_SYNC", "O_DSYNC", "O_NONBLOCK")]


def oflags(flags):
    if flags & os.O_TMPFILE == os.O_TMPFILE:
        flags &= ~os.O_TMPFILE
        names = ["O_TMPFILE"]
    else:
        names = []
    names += [n for v, n in _OFLAGS if flags & v == v and v]
    if flags & os.O_SYNC == os.O_SYNC:
        names.remove("O_DSYNC")
    return "|".join(names) or "O_RDONLY"


def short(x):
    """A path or value as it appears in a step label or outcome."""
    if isinstance(x, str):
        if len(x) > 24:
            return "<%d bytes %s...>" % (len(x.encode()), x[:6])
        return x
    if isinstance(x, (bytes, bytearray)):
        x = bytes(x)
        if len(x) > 40:
            return "<%d bytes sha1 %s %r...>" % (len(x), hashlib.sha1(x).hexdigest()[:10],
                                                 x[:12])
        return repr(x)
    return str(x)


def errname(e):
    return errno.errorcode.get(e, "errno %d" % e)


def ftype(mode):
    for test, name in ((stat.S_ISREG, "reg"), (stat.S_ISDIR, "dir"), (stat.S_ISLNK, "lnk"),
                       (stat.S_ISFIFO, "fifo"), (stat.S_ISCHR, "chr"), (stat.S_ISBLK, "blk"),
                       (stat.S_ISSOCK, "sock")):
        if test(mode):
            return name
    return "?"


def stat_fields(st, fields):
    if not fields:
        return "ok"
    out = []
    for f in fields:
        if f == "type":
            out.append(ftype(st.st_mode))
        elif f == "mode":
            out.append("%04o" % stat.S_IMODE(st.st_mode))
        elif f in ("uid", "gid"):
            out.append("%s=%d" % (f, getattr(st, "st_" + f)))
        elif f in ("atime", "mtime"):
            out.append("%s=%d" % (f, getattr(st, "st_%s_ns" % f)))
        else:
            out.append(str(getattr(st, "st_" + f)))
    return " ".join(out)


TIMES = (("a", "st_atime_ns"), ("m", "st_mtime_ns"), ("c", "st_ctime_ns"))


class FD:
    """An open descriptor with a name that is the same on both sides."""

    def __init__(self, fd, alias):
        self.fd, self.alias = fd, alias

    def __str__(self):
        return self.alias


class Link:
    """A symlink in a given() spec."""

    def __init__(self, target):
        self.target = target


DIR = object()   # a directory in a given() spec


# ---------------------------------------------------------------------------
# One run of one case on one side
# ---------------------------------------------------------------------------

class Ops:
    """What a case uses: system calls relative to its fresh directory (via
    dir_fd, so path lengths are the same on both sides), each recorded as
    (label, outcome)."""

    def __init__(self, side, name):
        self.side = side
        self.name = name
        self.dir = os.path.join(side.base, name)
        os.mkdir(self.dir, 0o755)
        self.dfd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        self.ofd = os.open(side.outside, os.O_RDONLY | os.O_DIRECTORY)
        self.limits = side.limits
        self.steps = []
        self.fds = []
        self.removed = set()     # names unlinked, rmdir'ed or renamed away
        self._nfd = 0

    # -- recording -------------------------------------------------------------
    def rec(self, label, fn, *a, fmt=None, **kw):
        """Run fn; record its outcome under label; return its value (None on error)."""
        try:
            v = fn(*a, **kw)
        except OSError as e:
            self.steps.append((label, errname(e.errno)))
            return None
        self.steps.append((label, fmt(v) if fmt else ("ok" if v is None else short(v))))
        return v if v is not None else True

    def check(self, label, value):
        """Record a value the case computed (e.g. a comparison)."""
        self.steps.append((label, short(value)))

    def path(self, p):
        return os.path.join(self.dir, p)

    def finish(self):
        for f in self.fds:
            try:
                os.close(f.fd)
            except OSError:
                pass
        self.fds = []
        os.close(self.dfd)
        os.close(self.ofd)

    # -- setup (not recorded) ---------------------------------------------------
    def given(self, spec):
        """Create files (bytes), directories (DIR) and symlinks (Link) in order;
        on cfgfs wait until they are keys (nothing pending)."""
        for p, v in spec.items():
            if v is DIR:
                os.mkdir(p, 0o777, dir_fd=self.dfd)
            elif isinstance(v, Link):
                os.symlink(v.target, p, dir_fd=self.dfd)
            else:
                fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666, dir_fd=self.dfd)
                try:
                    os.write(fd, v)
                    os.fsync(fd)
                finally:
                    os.close(fd)
        self.side.settle_given(self)

    def settle(self):
        """cfgfs: wait until nothing is pending and the store agrees (recorded)."""
        self.steps.append(("settle", self.side.settle(self) or "ok"))

    # -- descriptors -------------------------------------------------------------
    def open(self, p, flags, mode=0o666, label=None):
        label = label or "open(%s, %s)" % (short(p), oflags(flags))
        self._nfd += 1
        alias = "fd%d" % self._nfd
        fd = self.rec(label, os.open, p, flags, mode, dir_fd=self.dfd, fmt=lambda v: alias)
        f = FD(fd, alias)          # fd None: the open failed; calls on it record "(no fd)"
        if fd is not None:
            self.fds.append(f)
        return f

    def _fdop(self, label, fd, fn, *a, fmt=None):
        if fd.fd is None:
            self.steps.append((label, "(no fd)"))
            return None
        return self.rec(label, fn, fd.fd, *a, fmt=fmt)

    @staticmethod
    def raw(fd):
        """The descriptor number; EBADF (recorded) if the open had failed."""
        if fd.fd is None:
            raise OSError(errno.EBADF, "the open failed")
        return fd.fd

    def close(self, fd):
        if fd in self.fds:
            self.fds.remove(fd)
        return self._fdop("close(%s)" % fd, fd, os.close)

    def write(self, fd, data):
        return self._fdop("write(%s, %s)" % (fd, short(data)), fd, os.write, data)

    def pwrite(self, fd, data, off):
        return self._fdop("pwrite(%s, %s, %d)" % (fd, short(data), off), fd, os.pwrite, data, off)

    def read(self, fd, n=65536):
        return self._fdop("read(%s)" % fd, fd, os.read, n)

    def pread(self, fd, n=65536, off=0):
        return self._fdop("pread(%s, %d, %d)" % (fd, n, off), fd, os.pread, n, off)

    def lseek(self, fd, off, how=os.SEEK_SET):
        return self._fdop("lseek(%s, %d, %d)" % (fd, off, how), fd, os.lseek, off, how)

    def fsync(self, fd):
        return self._fdop("fsync(%s)" % fd, fd, os.fsync)

    def fdatasync(self, fd):
        return self._fdop("fdatasync(%s)" % fd, fd, os.fdatasync)

    def ftruncate(self, fd, n):
        return self._fdop("ftruncate(%s, %d)" % (fd, n), fd, os.ftruncate, n)

    def fchmod(self, fd, mode):
        return self._fdop("fchmod(%s, %04o)" % (fd, mode), fd, os.fchmod, mode)

    def fstat(self, fd, *fields):
        return self._fdop("fstat(%s) %s" % (fd, " ".join(fields)), fd, os.fstat,
                          fmt=lambda st: stat_fields(st, fields))

    def write_until(self, fd, total, chunk, label):
        """Write total bytes in chunks; records "wrote N" or "ERR after N bytes"."""
        if fd.fd is None:
            self.steps.append((label, "(no fd)"))
            return
        done = 0
        buf = b"z" * chunk
        try:
            while done < total:
                done += os.write(fd.fd, buf[:min(chunk, total - done)])
            self.steps.append((label, "wrote %d" % done))
        except OSError as e:
            self.steps.append((label, "%s after %d bytes" % (errname(e.errno), done)))

    # -- names -------------------------------------------------------------------
    def stat(self, p, *fields, follow=False):
        label = "%s(%s) %s" % ("stat" if follow else "lstat", short(p), " ".join(fields))
        return self.rec(label.strip(), os.stat, p, dir_fd=self.dfd, follow_symlinks=follow,
                        fmt=lambda st: stat_fields(st, fields))

    def exists(self, p):
        return self.rec("exists(%s)" % short(p), os.stat, p, dir_fd=self.dfd,
                        follow_symlinks=False, fmt=lambda st: "yes")

    def mkdir(self, p, mode=0o777):
        return self.rec("mkdir(%s, %04o)" % (short(p), mode), os.mkdir, p, mode, dir_fd=self.dfd)

    def _gone(self, ok, *names):
        """Remember names a successful call removed (settle checks the store)."""
        if ok is not None:
            self.removed.update(n.rstrip("/") for n in names)
        return ok

    def rmdir(self, p):
        return self._gone(self.rec("rmdir(%s)" % short(p), os.rmdir, p, dir_fd=self.dfd), p)

    def unlink(self, p):
        return self._gone(self.rec("unlink(%s)" % short(p), os.unlink, p, dir_fd=self.dfd), p)

    def rename(self, a, b, outside=False):
        label = "rename(%s, %s%s)" % (short(a), "OUTSIDE/" if outside else "", short(b))
        return self._gone(self.rec(label, os.rename, a, b, src_dir_fd=self.dfd,
                                   dst_dir_fd=self.ofd if outside else self.dfd), a)

    def renameat2(self, a, b, flags):
        names = [n for v, n in ((RENAME_NOREPLACE, "NOREPLACE"), (RENAME_EXCHANGE, "EXCHANGE"))
                 if flags & v]
        return self._gone(self.rec("renameat2(%s, %s, %s)" % (short(a), short(b),
                                                             "|".join(names) or "0"),
                                   renameat2, self.dfd, a, self.dfd, b, flags), a, b)

    def symlink(self, target, p):
        return self.rec("symlink(%s, %s)" % (short(target), short(p)), os.symlink, target, p,
                        dir_fd=self.dfd)

    def readlink(self, p):
        return self.rec("readlink(%s)" % short(p), os.readlink, p, dir_fd=self.dfd)

    def link(self, a, b, outside=False, label=None, follow=False):
        label = label or "link(%s, %s%s)" % (short(a), "OUTSIDE/" if outside else "", short(b))
        return self.rec(label, os.link, a, b, src_dir_fd=self.dfd,
                        dst_dir_fd=self.ofd if outside else self.dfd, follow_symlinks=follow)

    def mknod(self, p, mode, dev=0):
        kind = {stat.S_IFREG: "reg", stat.S_IFIFO: "fifo", stat.S_IFCHR: "chr",
                stat.S_IFBLK: "blk", stat.S_IFSOCK: "sock"}[stat.S_IFMT(mode)]
        label = "mknod(%s, %s %04o%s)" % (short(p), kind, stat.S_IMODE(mode),
                                         ", %d:%d" % (os.major(dev), os.minor(dev)) if dev else "")
        return self.rec(label, os.mknod, p, mode, dev, dir_fd=self.dfd)

    def mkfifo(self, p, mode=0o666):
        return self.rec("mkfifo(%s, %04o)" % (short(p), mode & ~0o022), os.mkfifo, p, mode,
                        dir_fd=self.dfd)

    def chmod(self, p, mode):
        return self.rec("chmod(%s, %04o)" % (short(p), mode), os.chmod, p, mode, dir_fd=self.dfd)

    def chown(self, p, uid, gid):
        return self.rec("chown(%s, %d, %d)" % (short(p), uid, gid), os.chown, p, uid, gid,
                        dir_fd=self.dfd)

    def utime(self, p, ns=None):
        label = "utime(%s, %s)" % (short(p), "now" if ns is None else "%d, %d" % ns)
        if ns is None:
            return self.rec(label, os.utime, p, dir_fd=self.dfd)
        return self.rec(label, os.utime, p, ns=ns, dir_fd=self.dfd)

    def utimensat(self, p, atime, mtime):
        def name(v):
            return {UTIME_NOW: "NOW", UTIME_OMIT: "OMIT"}.get(v, str(v))
        return self.rec("utimensat(%s, %s, %s)" % (short(p), name(atime), name(mtime)),
                        utimensat, self.dfd, p, atime, mtime)

    def truncate(self, p, n):
        return self.rec("truncate(%s, %d)" % (short(p), n), os.truncate, self.path(p), n)

    def listdir(self, p="."):
        def names():
            fd = os.open(p, os.O_RDONLY | os.O_DIRECTORY, dir_fd=self.dfd)
            try:
                return sorted(os.listdir(fd))
            finally:
                os.close(fd)
        return self.rec("listdir(%s)" % short(p), names,
                        fmt=lambda v: " ".join(short(n) for n in v) or "(empty)")

    def content(self, p):
        def get():
            fd = os.open(p, os.O_RDONLY, dir_fd=self.dfd)
            try:
                out = b""
                for _ in range(1000):
                    b = os.read(fd, 1 << 20)
                    if not b:
                        return out
                    out += b
                raise AssertionError("%s: more than 1000 MiB?" % p)
            finally:
                os.close(fd)
        return self.rec("content(%s)" % short(p), get)

    # -- timestamps ----------------------------------------------------------------
    def _st(self, what):
        if isinstance(what, FD):
            if what.fd is None:
                raise OSError(errno.EBADF, "no fd")
            return os.fstat(what.fd)
        return os.stat(what, dir_fd=self.dfd, follow_symlinks=False)

    def mark(self, *whats):
        """Stat each path (or FD) and wait until the clock is past every
        timestamp seen, so that any later change makes a different timestamp.
        Returns the stats, for changed()."""
        sts = [self._st(w) for w in whats]
        newest = max(getattr(st, f) for st in sts for _, f in TIMES)
        harness.wait_until(lambda: time.clock_gettime_ns(CLOCK_REALTIME_COARSE) > newest,
                           timeout=2.0, interval=0.001, what="the clock to tick")
        return sts[0] if len(sts) == 1 else sts

    def changed(self, what, before):
        """Record which of a, m, c changed since mark()."""
        label = "times(%s)" % short(str(what))
        try:
            st = self._st(what)
        except OSError as e:
            self.steps.append((label, errname(e.errno)))
            return
        ch = "".join(k for k, f in TIMES if getattr(st, f) != getattr(before, f))
        self.steps.append((label, "changed " + ch if ch else "unchanged"))

    def same_inode(self, label, a, b):
        try:
            self.check(label, "same" if self._st(a).st_ino == self._st(b).st_ino else "different")
        except OSError as e:
            self.steps.append((label, errname(e.errno)))

    # -- another user ----------------------------------------------------------------
    def nobody(self, *ops):
        """Run ops as uid/gid 65534 (a child that calls os.setuid); each op is
        (verb, path[, arg]) with verb read, write, create, list, stat, unlink,
        chmod; each outcome is recorded."""
        req = [(op[0], self.path(op[1]), op[2] if len(op) > 2 else None) for op in ops]
        r = subprocess.run([sys.executable, "-c", NOBODY_CHILD, json.dumps(req)], cwd="/",
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise AssertionError("nobody child failed: %s" % r.stderr)
        for op, out in zip(ops, json.loads(r.stdout)):
            self.steps.append(("nobody %s(%s)" % (op[0], short(op[1])), out))


NOBODY_CHILD = r'''
import errno, json, os, sys
os.setgroups([])
os.setgid(65534)
os.setuid(65534)
out = []
for verb, path, arg in json.loads(sys.argv[1]):
    try:
        if verb == "read":
            fd = os.open(path, os.O_RDONLY)
            os.read(fd, 4096)
            os.close(fd)
        elif verb == "write":
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            os.write(fd, arg.encode())
            os.close(fd)
        elif verb == "create":
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.close(fd)
        elif verb == "list":
            os.listdir(path)
        elif verb == "stat":
            os.stat(path)
        elif verb == "unlink":
            os.unlink(path)
        elif verb == "chmod":
            os.chmod(path, int(arg))
        else:
            raise SystemExit("unknown verb " + verb)
        out.append("ok")
    except OSError as e:
        out.append(errno.errorcode.get(e.errno, str(e.errno)))
print(json.dumps(out))
'''


# ---------------------------------------------------------------------------
# The state of a case's directory
# ---------------------------------------------------------------------------

def snapshot(top):
    """{relative path: description} of everything under top (not top itself).
    Directory sizes and link counts are filesystem-specific and left out."""
    out = {}
    for root, dirs, files, rootfd in os.fwalk(top):
        rel = os.path.relpath(root, top)
        for name in dirs + files:
            p = name if rel == "." else rel + "/" + name
            st = os.stat(name, dir_fd=rootfd, follow_symlinks=False)
            d = {"type": ftype(st.st_mode), "mode": "%04o" % stat.S_IMODE(st.st_mode)}
            if stat.S_ISREG(st.st_mode):
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=rootfd)
                try:
                    data = b""
                    for _ in range(100):
                        b = os.read(fd, 1 << 20)
                        if not b:
                            break
                        data += b
                finally:
                    os.close(fd)
                d.update(size=st.st_size, nlink=st.st_nlink, content=short(data))
            elif stat.S_ISLNK(st.st_mode):
                d["target"] = short(os.readlink(name, dir_fd=rootfd))
            out[short(p)] = d
    return out


def describe(d):
    if d is None:
        return "absent"
    return " ".join("%s=%s" % (k, v) for k, v in d.items())


# ---------------------------------------------------------------------------
# The two sides
# ---------------------------------------------------------------------------

class RefSide:
    """The reference: a local filesystem (tmpfs by default)."""

    def __init__(self, base, outside, limits, fstype):
        self.base, self.outside, self.limits = base, outside, limits
        self.name = fstype

    def settle_given(self, t):
        pass

    def settle(self, t):
        return None

    def after_case(self, t):
        return []


class CfgfsSide:
    """A cfgfs mount of this test's prefix; case directories are keys
    PREFIX/CASE/."""

    name = "cfgfs"

    def __init__(self, tc, mount, outside):
        self.tc, self.m = tc, mount
        self.base, self.outside, self.limits = mount.mountpoint, outside, tc.limits

    def key(self, t, rel):
        """The store key (bytes) of a path relative to the case dir (README, "Names")."""
        return b"/".join([os.fsencode(self.tc.key(t.name))] +
                         [key_piece(n) for n in os.fsencode(rel).split(b"/")])

    def _files(self, t):
        """{rel: content} of the regular files under the case dir that are
        (or should be) keys, and {rel: kind} of everything."""
        files, kinds = {}, {}
        for root, dirs, names, rootfd in os.fwalk(t.dir):
            rel = os.path.relpath(root, t.dir)
            for n in dirs + names:
                p = n if rel == "." else rel + "/" + n
                st = os.stat(n, dir_fd=rootfd, follow_symlinks=False)
                kinds[p] = ftype(st.st_mode)
                if stat.S_ISREG(st.st_mode):
                    fd = os.open(n, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=rootfd)
                    try:
                        if os.getxattr(fd, "user.cfgfs.state") == b"local":
                            kinds[p] = "local"
                            continue
                        data = b""
                        for _ in range(100):
                            b = os.read(fd, 1 << 20)
                            if not b:
                                break
                            data += b
                    finally:
                        os.close(fd)
                    files[p] = data
        return files, kinds

    def _agree(self, t):
        """None if the store holds exactly the case's files and none of its
        removed names (unless a file has it again); else what differs."""
        files, kinds = self._files(t)
        _, kvs = self.tc.store.range_prefix_kvs(self.tc.key(t.name) + "/")
        problems = []
        for p, data in files.items():
            kv = kvs.get(self.key(t, p))
            if kv is None or kv["value"] != data:
                problems.append("%s: file %s, store %s" % (short(p), short(data),
                                                          short(kv["value"]) if kv else "no key"))
        for p in t.removed:
            if p not in files and self.key(t, p) in kvs:
                problems.append("%s: %s here, the store still has the key"
                                % (short(p), kinds.get(p, "absent")))
        return "; ".join(problems) or None

    def settle(self, t):
        try:
            harness.wait_settled(t.dir, SETTLE)
        except AssertionError as e:
            return "never settled: %s" % e
        last = [None]

        def agreed():
            last[:] = [self._agree(t)]
            return last[0] is None
        try:
            harness.wait_until(agreed, SETTLE, interval=0.01)
        except AssertionError:
            return "store disagrees: %s" % last[0]
        return None

    def settle_given(self, t):
        problem = self.settle(t)
        if problem:
            raise AssertionError("cfgfs: the files case %s starts from did not settle: %s"
                                 % (t.name, problem))

    def after_case(self, t):
        """Settle; when a removed name exists again as a file, watch for a late
        delete.  Returns problems (steps only cfgfs records)."""
        steps = []
        problem = self.settle(t)
        if problem:
            return [("cfgfs settled after the case", problem)]
        files, _ = self._files(t)
        if any(p in files for p in t.removed):
            before = snapshot(t.dir)
            deadline = time.monotonic() + HOLD
            while time.monotonic() < deadline:    # a negative check: it must stay so
                now, problem = snapshot(t.dir), self._agree(t)
                if now != before or problem:
                    steps.append(("cfgfs state stays for %.1fs" % HOLD,
                                  problem or "changed: %s" % diff_states(before, now)))
                    break
                time.sleep(0.05)
        return steps


def key_piece(name):
    """The key piece a file name stands for (README, "Names"; no hashed names here)."""
    special = {b"%": b"", b"%2E": b".", b"%2E%2E": b".."}
    if name in special:
        return special[name]
    out, i = b"", 0
    while i < len(name):
        esc = name[i:i + 3]
        if esc in (b"%25", b"%00"):
            out += b"%" if esc == b"%25" else b"\0"
            i += 3
        else:
            out += name[i:i + 1]
            i += 1
    return out


def diff_states(a, b, an="before", bn="after", limit=4):
    out = []
    for p in sorted(set(a) | set(b)):
        if a.get(p) != b.get(p):
            out.append("%s: %s %s, %s %s" % (p, an, describe(a.get(p)), bn, describe(b.get(p))))
    if len(out) > limit:
        out[limit:] = ["(%d more paths differ)" % (len(out) - limit)]
    return "; ".join(out)


# ---------------------------------------------------------------------------
# The cases
# ---------------------------------------------------------------------------

CASES = {}     # name -> (group, function)


def case(group):
    def deco(fn):
        if fn.__name__ in CASES:
            raise ValueError("duplicate case " + fn.__name__)
        CASES[fn.__name__] = (group, fn)
        return fn
    return deco


RO, WO, RW = os.O_RDONLY, os.O_WRONLY, os.O_RDWR
CREAT, EXCL, TRUNC, APPEND = os.O_CREAT, os.O_EXCL, os.O_TRUNC, os.O_APPEND

# -- errno of error cases, and which comes first ---------------------------------


@case("errors")
def open_missing(t):
    t.open("nope", RO)
    t.open("nope", WO)
    t.open("nope/f", RO)
    t.open("nope/f", WO | CREAT)


@case("errors")
def open_through_a_file(t):
    t.given({"f": b"x"})
    t.open("f/x", RO)
    t.open("f/x", WO | CREAT)
    t.stat("f/x")
    t.stat("f/", follow=True)
    t.open("f/", RO)
    t.open("f/.", RO)


@case("errors")
def open_creat_trailing_slash(t):
    t.open("new/", WO | CREAT)
    t.open("new/", RO | CREAT | EXCL)
    t.exists("new")


@case("errors")
def mkdir_existing(t):
    t.given({"f": b"x", "d": DIR, "l": Link("nope")})
    t.mkdir("f")
    t.mkdir("d")
    t.mkdir("d/")
    t.mkdir("l")
    t.mkdir(".")
    t.mkdir("..")


@case("errors")
def mkdir_missing_parent_or_file_parent(t):
    t.given({"f": b"x"})
    t.mkdir("nope/x")
    t.mkdir("f/x")
    t.mkdir("nope/f/x")


@case("errors")
def rmdir_errors(t):
    t.given({"d": DIR, "d/x": b"x", "e": DIR, "f": b"x", "l": Link("e")})
    t.rmdir("d")
    t.rmdir("f")
    t.rmdir("f/")
    t.rmdir("nope")
    t.rmdir(".")
    t.rmdir("e/.")
    t.rmdir("d/..")
    t.rmdir("l")
    t.rmdir("l/")
    t.rmdir("f/x")
    t.listdir()


@case("errors")
def unlink_errors(t):
    t.given({"d": DIR, "f": b"x", "l": Link("d")})
    t.unlink("d")
    t.unlink("d/")
    t.unlink("nope")
    t.unlink("f/x")
    t.unlink("f/")
    t.unlink("nope/x")
    t.unlink("l/")
    t.unlink(".")
    t.listdir()


@case("errors")
def open_dir_for_writing(t):
    t.given({"d": DIR})
    t.open("d", WO)
    t.open("d", RW)
    t.open("d", RO | TRUNC)
    t.open("d", WO | TRUNC)
    fd = t.open("d", RO)
    t.read(fd)
    t.write(fd, b"x")
    t.close(fd)


@case("errors")
def wrong_access_mode_fds(t):
    t.given({"f": b"abc"})
    r = t.open("f", RO)
    t.write(r, b"x")
    t.ftruncate(r, 0)
    w = t.open("f", WO)
    t.read(w)
    t.close(r)
    t.close(w)


@case("errors")
def symlink_errors(t):
    t.given({"f": b"x", "d": DIR})
    t.symlink("x", "f")
    t.symlink("x", "d")
    t.symlink("x", "nope/l")
    t.symlink("x", "f/l")
    t.symlink("", "empty")
    t.readlink("f")
    t.readlink("d")
    t.readlink("nope")


@case("errors")
def dangling_symlink_and_loop(t):
    t.symlink("target", "l")
    t.stat("l", "type", follow=True)
    t.stat("l", "type", "size")
    t.readlink("l")
    t.symlink("b", "a")
    t.symlink("a", "b")
    t.stat("a", follow=True)
    t.open("a", RO)


@case("errors")
def creat_through_dangling_symlink(t):
    t.symlink("target", "l")
    fd = t.open("l", WO | CREAT)
    t.write(fd, b"via link")
    t.close(fd)
    t.stat("target", "type", "size")
    t.open("l", WO | CREAT | EXCL)


@case("errors")
def missing_names_for_attr_calls(t):
    t.chmod("nope", 0o600)
    t.chown("nope", 0, 0)
    t.utime("nope")
    t.truncate("nope", 0)
    t.readlink("nope")
    t.stat("nope")


@case("errors")
def create_in_removed_dir(t):
    t.given({"d": DIR})
    d = t.open("d", RO | os.O_DIRECTORY)
    t.rmdir("d")

    def creat_in(p):
        return os.close(os.open(p, WO | CREAT, 0o644, dir_fd=d.fd))
    t.rec("openat(d-fd, x, O_WRONLY|O_CREAT)", creat_in, "x")
    t.rec("mkdirat(d-fd, s)", os.mkdir, "s", dir_fd=d.fd)
    t.rec("listdir(d-fd)", lambda: sorted(os.listdir(d.fd)),
          fmt=lambda v: " ".join(v) or "(empty)")
    t.close(d)


@case("errors")
def rename_errno_order(t):
    t.given({"f": b"x", "d": DIR, "e": DIR, "e/y": b"y"})
    t.rename("nope", "x")
    t.rename("nope", "nope2/x")
    t.rename("f", "nope/x")
    t.rename("f", "f/x")
    t.rename("f", "d/")
    t.rename("f/", "g")
    t.rename("d", "e")
    t.rename("d", "f")
    t.rename("f", "e")
    t.rename(".", "x")
    t.rename("d/..", "x")
    t.rename("d", "d/x")
    t.listdir()


# -- names: 255/256 bytes, PATH_MAX, what names may be ----------------------------


@case("names")
def name_255_bytes(t):
    fd = t.open(N255, WO | CREAT | EXCL)
    t.write(fd, b"long")
    t.close(fd)
    t.stat(N255, "type", "size")
    t.listdir()
    t.rename(N255, "m" * 255)
    t.mkdir(D255)
    fd = t.open(D255 + "/" + N255, WO | CREAT)
    t.close(fd)
    t.symlink("m" * 255, "l" * 255)
    t.readlink("l" * 255)
    t.listdir()


@case("names")
def name_256_bytes(t):
    t.given({"f": b"x", "d": DIR})
    t.open(N256, WO | CREAT)
    t.open(N256, RO)
    t.stat(N256)
    t.mkdir(N256)
    t.symlink("x", N256)
    t.unlink(N256)
    t.rmdir(N256)
    t.rename("f", N256)
    t.rename(N256, "g")
    t.rename("d", N256)
    t.mknod(N256, stat.S_IFREG | 0o644)
    t.link("f", N256)
    t.listdir()


@case("names")
def name_256_bytes_errno_order(t):
    t.given({"f": b"x"})
    t.open("nope/" + N256, WO | CREAT)
    t.open(N256 + "/x", RO)
    t.mkdir("f/" + N256)
    t.open(N256 + "/x", WO | CREAT)


@case("names")
def path_max(t):
    dirs = "/".join([D255] * 15)           # 15 * 256 - 1 bytes
    p = ""
    for _ in range(15):
        p = (p + "/" if p else "") + D255
        t.mkdir(p)
    p4095 = dirs + "/" + N255               # 4095 bytes: the longest path
    p4096 = "./" + dirs + "/" + "n" * 254   # 4096 bytes: one too many
    t.check("lengths", "%d %d" % (len(p4095), len(p4096)))
    fd = t.open(p4095, WO | CREAT | EXCL)
    t.write(fd, b"deep")
    t.close(fd)
    t.stat(p4095, "type", "size")
    t.open(p4096, RO)
    t.open(p4096, WO | CREAT)
    t.mkdir(p4096)
    t.rename(p4095, dirs + "/" + "m" * 255)
    t.symlink("x" * 4095, "longtarget")
    t.readlink("longtarget")
    t.symlink("x" * 4096, "longertarget")


@case("names")
def name_special_bytes(t):
    names = ["sp ace", "tab\tx", "nl\nx", "back\\slash", "colon:x", "star*", "q?",
             "utf8-\u00e9\u4e2d", "-dash", "#hash#", ".dot", "..dotdot", "x.swp~"]
    for n in names:
        fd = t.open(n, WO | CREAT | EXCL)
        t.write(fd, n.encode())
        t.close(fd)
    t.listdir()
    t.settle()
    t.listdir()


@case("names")
def name_non_utf8_bytes(t):
    n = b"bin\xff\xfe"

    def create():
        os.close(os.open(n, WO | CREAT | EXCL, 0o644, dir_fd=t.dfd))
    t.rec("open(b'bin\\xff\\xfe', O_CREAT)", create)
    t.rec("listdir bytes", lambda: sorted(os.listdir(os.fsencode(t.dir))), fmt=repr)


@case("names")
def name_percent(t):
    for n, data in (("%", b"pct"), ("%25", b"pct25"), ("a%25b", b"x"), ("%2E", b"dot")):
        fd = t.open(n, WO | CREAT | EXCL)
        t.write(fd, data)
        t.close(fd)
    t.settle()
    t.listdir()
    t.content("%")
    t.content("%25")


@case("names")
def name_percent_empty_file(t):
    fd = t.open("%", WO | CREAT | EXCL)
    t.close(fd)
    t.settle()
    t.listdir()
    t.stat("%", "type", "size")


@case("names")
def name_invalid_escape(t):
    t.open("%41", WO | CREAT)
    t.mkdir("%value")
    t.listdir()


@case("names")
def scratch_files_behave_like_files(t):
    t.given({"f": b"orig"})
    for n in (".f.swp", "f~", "#f#", "4913", ".#f"):
        fd = t.open(n, RW | CREAT | EXCL, 0o600)
        t.write(fd, b"scratch " + n.encode())
        t.pread(fd, 100, 0)
        t.fstat(fd, "type", "mode", "size", "nlink")
        t.close(fd)
    t.rename("f", "f~~")
    t.rename("f~", "f")
    t.unlink(".f.swp")
    t.unlink("4913")
    t.listdir()


# -- open flags ----------------------------------------------------------------


@case("open")
def o_excl(t):
    t.given({"f": b"x", "d": DIR})
    t.open("f", WO | CREAT | EXCL)
    t.open("d", RO | CREAT | EXCL)
    t.symlink("target", "l")
    t.open("l", WO | CREAT | EXCL)
    t.exists("target")
    fd = t.open("n", WO | CREAT | EXCL, 0o600)
    t.open("n", WO | CREAT | EXCL)
    t.close(fd)
    t.open("n", WO | CREAT | EXCL)
    t.stat("n", "type", "mode", "size")


@case("open")
def o_trunc(t):
    t.given({"f": b"hello", "e": b""})
    before = t.mark("f")
    fd = t.open("f", WO | TRUNC)
    t.fstat(fd, "size")
    t.changed("f", before)
    t.close(fd)
    before = t.mark("e")
    fd = t.open("e", WO | TRUNC)
    t.changed("e", before)
    t.close(fd)
    fd = t.open("f", RO | TRUNC)
    t.close(fd)
    t.content("f")


@case("open")
def o_trunc_rdonly_truncates(t):
    t.given({"f": b"hello"})
    fd = t.open("f", RO | TRUNC)
    t.fstat(fd, "size")
    t.read(fd)
    t.close(fd)
    t.stat("f", "size")


@case("open")
def o_append(t):
    t.given({"f": b"abc"})
    fd = t.open("f", WO | APPEND)
    t.lseek(fd, 0)
    t.write(fd, b"def")
    t.lseek(fd, 0, os.SEEK_CUR)
    t.pwrite(fd, b"ghi", 0)
    t.fstat(fd, "size")
    t.close(fd)
    t.content("f")


@case("open")
def o_append_two_descriptors(t):
    t.given({"f": b""})
    a = t.open("f", WO | APPEND)
    b = t.open("f", WO | APPEND)
    for i in range(3):
        t.write(a, b"a%d " % i)
        t.write(b, b"b%d " % i)
    t.close(a)
    t.close(b)
    t.content("f")


@case("open")
def o_append_rdwr_reads_from_start(t):
    t.given({"f": b"12345"})
    fd = t.open("f", RW | APPEND)
    t.read(fd, 2)
    t.write(fd, b"67")
    t.read(fd)
    t.pread(fd, 100, 0)
    t.close(fd)


@case("open")
def o_directory(t):
    t.given({"f": b"x", "d": DIR, "ld": Link("d"), "lf": Link("f")})
    t.open("f", RO | os.O_DIRECTORY)
    t.open("lf", RO | os.O_DIRECTORY)
    t.open("nope", RO | os.O_DIRECTORY)
    fd = t.open("d", RO | os.O_DIRECTORY)
    t.fstat(fd, "type")
    t.close(fd)
    fd = t.open("ld", RO | os.O_DIRECTORY)
    t.close(fd)
    t.open("new", RO | CREAT | os.O_DIRECTORY)
    t.open("d", WO | os.O_DIRECTORY)
    t.exists("new")


@case("open")
def o_nofollow(t):
    t.given({"f": b"x", "d": DIR, "lf": Link("f"), "ld": Link("d")})
    t.open("lf", RO | os.O_NOFOLLOW)
    t.open("lf", WO | CREAT | os.O_NOFOLLOW)
    t.open("ld", RO | os.O_DIRECTORY | os.O_NOFOLLOW)
    fd = t.open("f", RO | os.O_NOFOLLOW)
    t.close(fd)
    fd = t.open("lf", os.O_PATH | os.O_NOFOLLOW)
    t.fstat(fd, "type")
    t.close(fd)
    fd = t.open("ld/", RO | os.O_NOFOLLOW)
    t.close(fd)


@case("open")
def o_creat_on_existing_dir(t):
    t.given({"d": DIR, "ld": Link("d")})
    t.open("d", WO | CREAT)
    t.open("d", RO | CREAT)
    t.open("d", RW | CREAT | TRUNC)
    t.open("ld", WO | CREAT)
    t.open("d/", WO | CREAT)
    t.stat("d", "type")


@case("open")
def o_creat_mode(t):
    fd = t.open("ro", RW | CREAT | EXCL, 0o444)
    t.write(fd, b"written through the creating fd")
    t.fstat(fd, "mode", "size")
    t.close(fd)
    t.stat("ro", "mode", "size")
    fd = t.open("ro", WO)         # root: permitted anyway
    t.close(fd)
    for name, mode in (("m777", 0o777), ("m600", 0o600), ("m000", 0), ("m4755", 0o4755)):
        fd = t.open(name, WO | CREAT | EXCL, mode)
        t.close(fd)
        t.stat(name, "mode")
    t.settle()
    for name in ("ro", "m777", "m600", "m000", "m4755"):
        t.stat(name, "mode")


@case("open")
def o_tmpfile(t):
    fd = t.open(".", os.O_TMPFILE | RW, 0o600)
    t.write(fd, b"anonymous")
    t.pread(fd, 100, 0)
    t.fstat(fd, "type", "mode", "size", "nlink")
    t.close(fd)
    t.listdir()


@case("open")
def rdwr_write_then_read_back(t):
    fd = t.open("f", RW | CREAT | EXCL)
    t.write(fd, b"hello world")
    t.lseek(fd, 0)
    t.read(fd, 5)
    t.read(fd)
    t.read(fd)
    t.pread(fd, 5, 6)
    t.pread(fd, 10, 100)
    t.pwrite(fd, b"!", 20)
    t.fstat(fd, "size")
    t.pread(fd, 100, 0)
    t.lseek(fd, 0, os.SEEK_END)
    t.lseek(fd, -100, os.SEEK_SET)
    t.close(fd)


@case("open")
def two_descriptors_see_each_others_writes(t):
    t.given({"f": b"old content"})
    w = t.open("f", WO)
    r = t.open("f", RO)
    t.write(w, b"NEW")
    t.pread(r, 100, 0)
    t.ftruncate(w, 5)
    t.pread(r, 100, 0)
    t.fstat(r, "size")
    t.close(w)
    t.pread(r, 100, 0)
    t.close(r)


@case("open")
def write_zero_bytes_and_fsyncs(t):
    t.given({"f": b"x"})
    before = t.mark("f")
    fd = t.open("f", WO)
    t.write(fd, b"")
    t.changed("f", before)
    t.fsync(fd)
    t.fdatasync(fd)
    t.close(fd)
    fd = t.open("f", RO)
    t.fsync(fd)
    t.close(fd)
    d = t.open(".", RO | os.O_DIRECTORY)
    t.fsync(d)
    t.close(d)
    fd = t.open("s", WO | CREAT | os.O_SYNC)
    t.write(fd, b"sync")
    t.close(fd)


@case("open")
def mknod_regular_file(t):
    t.mknod("r", stat.S_IFREG | 0o600)
    t.stat("r", "type", "mode", "size")
    t.mknod("r", stat.S_IFREG | 0o600)
    fd = t.open("r", WO)
    t.write(fd, b"data")
    t.close(fd)
    t.content("r")


@case("open")
def posix_fallocate_extends(t):
    t.given({"f": b"ab"})
    fd = t.open("f", RW)
    t.rec("posix_fallocate(fd1, 0, 10)", lambda: os.posix_fallocate(t.raw(fd), 0, 10))
    t.fstat(fd, "size")
    t.pread(fd, 100, 0)
    t.close(fd)


@case("open")
def mmap_shared_write(t):
    t.given({"f": b"hello"})
    fd = t.open("f", RW)

    def poke():
        m = mmap.mmap(t.raw(fd), 5)
        try:
            m[0:1] = b"J"
            m.flush()
        finally:
            m.close()
    t.rec("mmap MAP_SHARED write + msync", poke)
    t.pread(fd, 100, 0)
    t.close(fd)
    t.settle()
    t.content("f")


@case("open")
def large_value_within_store_limit(t):
    data = bytes(range(256)) * 1600        # 400 KiB: fits every store
    fd = t.open("big", WO | CREAT | EXCL)
    t.write(fd, data)
    t.close(fd)
    t.settle()
    t.stat("big", "size")
    t.content("big")


@case("open")
def readdir_types_and_inodes(t):
    t.given({"f": b"x", "d": DIR, "l": Link("f")})

    def entries():
        out = []
        with os.scandir(t.dir) as it:
            for e in it:
                st = os.stat(e.name, dir_fd=t.dfd, follow_symlinks=False)
                out.append("%s:%s:%s" % (e.name, "dir" if e.is_dir(follow_symlinks=False) else
                                         "lnk" if e.is_symlink() else "reg",
                                         "ino-ok" if e.inode() == st.st_ino else "ino-differs"))
        return " ".join(sorted(out))
    t.rec("scandir d_type and d_ino", entries)


# -- truncate ------------------------------------------------------------------


@case("truncate")
def truncate_extend_and_shrink(t):
    t.given({"f": b"abcdef"})
    t.truncate("f", 10)
    t.content("f")
    t.truncate("f", 2)
    t.content("f")
    t.truncate("f", 0)
    t.stat("f", "size")
    t.settle()
    t.stat("f", "size")


@case("truncate")
def truncate_times(t):
    t.given({"f": b"abcdef"})
    before = t.mark("f")
    t.truncate("f", 6)
    t.changed("f", before)
    before = t.mark("f")
    t.truncate("f", 3)
    t.changed("f", before)
    before = t.mark("f")
    t.truncate("f", 8)
    t.changed("f", before)


@case("truncate")
def ftruncate_times(t):
    t.given({"f": b"abcdef"})
    fd = t.open("f", RW)
    before = t.mark("f")
    t.ftruncate(fd, 6)
    t.changed("f", before)
    before = t.mark("f")
    t.ftruncate(fd, 2)
    t.changed("f", before)
    t.close(fd)


@case("truncate")
def ftruncate_keeps_offset(t):
    t.given({"f": b"abcdef"})
    fd = t.open("f", RW)
    t.lseek(fd, 0, os.SEEK_END)
    t.ftruncate(fd, 0)
    t.write(fd, b"x")
    t.fstat(fd, "size")
    t.pread(fd, 100, 0)
    t.close(fd)
    t.content("f")


@case("truncate")
def truncate_errors(t):
    t.given({"f": b"abc", "d": DIR})
    t.truncate("f", -1)
    t.truncate("d", 0)
    t.truncate("nope", 0)
    t.truncate("f/x", 0)
    fd = t.open("f", RO)
    t.ftruncate(fd, 0)
    t.close(fd)
    fd = t.open("f", WO)
    t.ftruncate(fd, -1)
    t.close(fd)
    d = t.open("d", RO)
    t.ftruncate(d, 0)
    t.close(d)
    t.content("f")


@case("truncate")
def truncate_through_symlink_and_mode_0(t):
    t.given({"f": b"abcdef", "l": Link("f")})
    t.truncate("l", 3)
    t.stat("l", "type", "size")
    t.content("f")
    t.chmod("f", 0)
    t.truncate("f", 1)
    t.content("f")


@case("truncate")
def truncate_new_file_then_write(t):
    fd = t.open("n", RW | CREAT | EXCL)
    t.ftruncate(fd, 4)
    t.pwrite(fd, b"x", 6)
    t.pread(fd, 100, 0)
    t.close(fd)
    t.settle()
    t.content("n")


@case("truncate")
def truncate_seen_by_open_reader(t):
    t.given({"f": b"abcdef"})
    r = t.open("f", RO)
    t.truncate("f", 2)
    t.pread(r, 100, 0)
    t.fstat(r, "size")
    t.truncate("f", 4)
    t.pread(r, 100, 0)
    t.close(r)


# -- rename ---------------------------------------------------------------------


@case("rename")
def rename_onto_itself(t):
    t.given({"f": b"x", "d": DIR, "d/y": b"y"})
    sf, sd, sdot = t.mark("f", "d", ".")
    t.rename("f", "f")
    t.rename("d", "d")
    t.rename("d/y", "d/../d/y")
    t.changed("f", sf)
    t.changed("d", sd)
    t.changed(".", sdot)
    t.listdir()


@case("rename")
def rename_file_to_new_name(t):
    t.given({"f": b"content"})
    sf, sdot = t.mark("f", ".")
    ino = sf.st_ino
    t.rename("f", "g")
    t.changed("g", sf)
    t.changed(".", sdot)
    t.rec("ino of g is f's", lambda: os.stat("g", dir_fd=t.dfd).st_ino == ino)
    t.stat("f")
    t.content("g")


@case("rename")
def rename_file_over_file(t):
    t.given({"f": b"AAA", "g": b"BBBBBB"})
    t.rename("f", "g")
    t.content("g")
    t.stat("g", "size")
    t.stat("f")


@case("rename")
def rename_over_file_nlink_100_times(t):
    # Right after a rename replaced a file, the name's link count is 1.  Once
    # only it may come out right by luck, so this asks a hundred times.
    t.given({"g": b"old"})
    odd = []
    for i in range(100):
        t.given({"f": b"new %d" % i})
        os.rename("f", "g", src_dir_fd=t.dfd, dst_dir_fd=t.dfd)
        n = os.stat("g", dir_fd=t.dfd, follow_symlinks=False).st_nlink
        if n != 1:
            odd.append(n)
    t.check("rename(f, g) x100: lstat(g) nlink != 1",
            "%d times (nlink %s)" % (len(odd), sorted(set(odd))) if odd else "never")
    t.content("g")


@case("rename")
def rename_dir_onto_empty_dir(t):
    t.given({"d": DIR, "d/x": b"x", "e": DIR})
    t.rename("d", "e")
    t.listdir("e")
    t.stat("d")
    t.content("e/x")


@case("rename")
def rename_dir_onto_non_empty_dir(t):
    t.given({"d": DIR, "e": DIR, "e/y": b"y"})
    t.rename("d", "e")
    t.given({"d/x": b"x"})
    t.rename("d", "e")
    t.listdir("e")


@case("rename")
def rename_dir_into_own_subdir(t):
    t.given({"d": DIR, "d/s": DIR, "d/s/f": b"x"})
    t.rename("d", "d/x")
    t.rename("d", "d/s/x")
    t.rename("d", "d/s")
    t.rename("d/s", "d")
    t.rename("d/s", ".")
    t.listdir("d/s")


@case("rename")
def rename_file_onto_dir_and_reverse(t):
    t.given({"f": b"x", "d": DIR, "e": DIR, "e/y": b"y"})
    t.rename("f", "d")
    t.rename("f", "e")
    t.rename("d", "f")
    t.rename("e", "f")
    t.rename("f", "d/")
    t.rename("d", "g/")
    t.rename("g/", "d")
    t.listdir()


@case("rename")
def rename_across_dirs_times(t):
    t.given({"a": DIR, "a/f": b"x", "b": DIR, "a/s": DIR})
    sa, sb, sf, ss = t.mark("a", "b", "a/f", "a/s")
    t.rename("a/f", "b/f")
    t.changed("a", sa)
    t.changed("b", sb)
    t.changed("b/f", sf)
    sa, sb = t.mark("a", "b")
    t.rename("a/s", "b/s")
    t.changed("a", sa)
    t.changed("b", sb)
    t.changed("b/s", ss)
    t.stat("a", "nlink")
    t.stat("b", "nlink")


@case("rename")
def rename_out_of_the_filesystem(t):
    t.given({"f": b"x", "d": DIR})
    t.rename("f", "f-moved", outside=True)
    t.rename("d", "d-moved", outside=True)
    t.rename("nope", "x", outside=True)
    t.link("f", "f-linked", outside=True)
    t.listdir()


@case("rename")
def renameat2_noreplace(t):
    t.given({"f": b"F", "g": b"G", "d": DIR, "e": DIR})
    t.renameat2("f", "g", RENAME_NOREPLACE)
    t.renameat2("d", "e", RENAME_NOREPLACE)
    t.renameat2("f", "d", RENAME_NOREPLACE)
    t.renameat2("nope", "g", RENAME_NOREPLACE)
    t.renameat2("f", "h", RENAME_NOREPLACE)
    t.content("g")
    t.content("h")
    t.stat("f")


@case("rename")
def renameat2_exchange_files(t):
    t.given({"f": b"FFF", "g": b"GG"})
    sf, sg = t.mark("f", "g")
    t.renameat2("f", "g", RENAME_EXCHANGE)
    t.changed("f", sg)
    t.changed("g", sf)
    t.content("f")
    t.content("g")


@case("rename")
def renameat2_exchange_file_and_dir(t):
    t.given({"f": b"FFF", "d": DIR, "d/x": b"x"})
    t.renameat2("f", "d", RENAME_EXCHANGE)
    t.stat("f", "type")
    t.stat("d", "type")
    t.listdir("f")


@case("rename")
def renameat2_exchange_errors(t):
    t.given({"f": b"F", "d": DIR, "d/s": DIR})
    t.renameat2("f", "nope", RENAME_EXCHANGE)
    t.renameat2("nope", "f", RENAME_EXCHANGE)
    t.renameat2("f", "f", RENAME_EXCHANGE)
    t.renameat2("d", "d/s", RENAME_EXCHANGE)
    t.renameat2("f", "g", RENAME_EXCHANGE | RENAME_NOREPLACE)
    t.renameat2("f", "g", 1 << 7)
    t.listdir()


@case("rename")
def rename_new_uncommitted_file(t):
    fd = t.open("tmp", WO | CREAT | EXCL)
    t.write(fd, b"temp content")
    t.close(fd)
    t.rename("tmp", "final")
    t.content("final")
    t.stat("tmp")


@case("rename")
def rename_while_open_for_writing(t):
    t.given({"f": b"start"})
    fd = t.open("f", WO | APPEND)
    t.rename("f", "g")
    t.write(fd, b"+more")
    t.close(fd)
    t.content("g")
    t.stat("f")
    t.settle()
    t.content("g")


@case("rename")
def rename_then_recreate_old_name(t):
    t.given({"f": b"first"})
    t.rename("f", "g")
    fd = t.open("f", WO | CREAT | EXCL)
    t.write(fd, b"second")
    t.close(fd)
    t.content("f")
    t.content("g")


@case("rename")
def rename_chain_before_commit(t):
    fd = t.open("a", WO | CREAT | EXCL)
    t.write(fd, b"chain")
    t.close(fd)
    t.rename("a", "b")
    t.rename("b", "c")
    t.given({"d": DIR})
    t.rename("c", "d/e")
    t.listdir()
    t.content("d/e")


@case("rename")
def rename_keeps_mode_and_size(t):
    t.given({"f": b"12345"})
    t.chmod("f", 0o600)
    t.rename("f", "g")
    t.stat("g", "mode", "size")
    t.settle()
    t.stat("g", "mode", "size")


@case("rename")
def rename_parent_while_file_open(t):
    t.given({"d": DIR, "d/f": b"start"})
    fd = t.open("d/f", WO | APPEND)
    t.rename("d", "e")
    t.write(fd, b"+more")
    t.close(fd)
    t.content("e/f")
    t.settle()
    t.content("e/f")
    t.listdir()


@case("rename")
def rename_parent_of_uncommitted_file(t):
    t.given({"d": DIR})
    fd = t.open("d/n", WO | CREAT | EXCL)
    t.write(fd, b"new file")
    t.rename("d", "e")
    t.write(fd, b"+after")
    t.close(fd)
    t.settle()
    t.listdir("e")
    t.content("e/n")


@case("rename")
def rename_symlink(t):
    t.given({"f": b"x"})
    t.symlink("f", "l")
    t.rename("l", "m")
    t.readlink("m")
    t.stat("m", "type")
    t.stat("l")


@case("rename")
def rename_dir_with_tree(t):
    t.given({"d": DIR, "d/a": b"a", "d/s": DIR, "d/s/b": b"b", "d/e": DIR})
    t.rename("d", "n")
    t.listdir("n")
    t.listdir("n/s")
    t.content("n/s/b")
    t.stat("d")
    t.settle()
    t.listdir("n")


@case("rename")
def rename_dir_beyond_one_txn(t):
    spec = {"big": DIR}
    for i in range(t.limits.dir_rename_max_keys + 1):
        spec["big/k%03d" % i] = b"%d" % i
    t.given(spec)
    t.rename("big", "moved")
    t.stat("big", "type")
    t.stat("moved", "type")


# -- timestamps -------------------------------------------------------------------


@case("times")
def dir_times_create_file(t):
    s = t.mark(".")
    fd = t.open("f", WO | CREAT | EXCL)
    t.changed(".", s)
    s = t.mark(".")
    t.write(fd, b"data")
    t.close(fd)
    t.changed(".", s)


@case("times")
def dir_times_unlink(t):
    t.given({"f": b"x"})
    s = t.mark(".")
    t.unlink("f")
    t.changed(".", s)


@case("times")
def dir_times_mkdir_rmdir(t):
    s = t.mark(".")
    t.mkdir("d")
    t.changed(".", s)
    s = t.mark(".")
    t.rmdir("d")
    t.changed(".", s)


@case("times")
def dir_times_rename_within(t):
    t.given({"f": b"x"})
    s = t.mark(".")
    t.rename("f", "g")
    t.changed(".", s)


@case("times")
def dir_times_symlink(t):
    s = t.mark(".")
    t.symlink("x", "l")
    t.changed(".", s)


@case("times")
def dir_times_rename_over_existing(t):
    t.given({"f": b"x", "g": b"y"})
    s = t.mark(".")
    t.rename("f", "g")
    t.changed(".", s)


@case("times")
def dir_times_chmod_dir(t):
    t.given({"d": DIR})
    s = t.mark("d")
    t.chmod("d", 0o700)
    t.changed("d", s)


@case("times")
def file_times_write(t):
    t.given({"f": b"x"})
    s = t.mark("f")
    fd = t.open("f", WO)
    t.changed("f", s)
    t.write(fd, b"y")
    t.changed(fd, s)
    t.close(fd)
    t.changed("f", s)


@case("times")
def file_times_open_close_without_io(t):
    t.given({"f": b"x"})
    s = t.mark("f")
    fd = t.open("f", RO)
    t.close(fd)
    fd = t.open("f", WO)
    t.close(fd)
    fd = t.open("f", RW)
    t.close(fd)
    t.changed("f", s)


@case("times")
def file_times_chmod(t):
    t.given({"f": b"x"})
    s = t.mark("f")
    t.chmod("f", 0o600)
    t.changed("f", s)
    s = t.mark("f")
    t.chmod("f", 0o600)
    t.changed("f", s)


@case("times")
def file_times_chown(t):
    t.given({"f": b"x"})
    s = t.mark("f")
    t.chown("f", 0, 0)
    t.changed("f", s)
    s = t.mark("f")
    t.chown("f", -1, -1)
    t.changed("f", s)


@case("times")
def file_times_rename(t):
    t.given({"f": b"x"})
    s = t.mark("f")
    t.rename("f", "g")
    t.changed("g", s)


@case("times")
def file_times_read_updates_atime(t):
    t.given({"f": b"content"})
    t.utime("f", (OLD_NS, OLD_NS))
    s = t.mark("f")
    fd = t.open("f", RO)
    t.read(fd)
    t.close(fd)
    t.changed("f", s)
    s = t.mark("f")
    fd = t.open("f", RO)
    t.read(fd)
    t.close(fd)
    t.changed("f", s)


@case("times")
def file_times_o_noatime(t):
    t.given({"f": b"content"})
    t.utime("f", (OLD_NS, OLD_NS))
    s = t.mark("f")
    fd = t.open("f", RO | os.O_NOATIME)
    t.read(fd)
    t.close(fd)
    t.changed("f", s)


@case("times")
def dir_times_readdir_updates_atime(t):
    t.given({"d": DIR, "d/x": b"x"})
    t.utime("d", (OLD_NS, OLD_NS))
    s = t.mark("d")
    t.listdir("d")
    t.changed("d", s)


@case("times")
def file_times_utime_explicit(t):
    t.given({"f": b"x"})
    s = t.mark("f")
    t.utime("f", (OLD_NS, OLD2_NS))
    t.stat("f", "atime", "mtime")
    t.changed("f", s)
    t.settle()
    t.stat("f", "atime", "mtime")


@case("times")
def file_times_utime_now(t):
    t.given({"f": b"x"})
    t.utime("f", (OLD_NS, OLD_NS))
    s = t.mark("f")
    t.utime("f")
    t.changed("f", s)


@case("times")
def file_times_utimensat_omit(t):
    t.given({"f": b"x"})
    t.utime("f", (OLD_NS, OLD_NS))
    t.utimensat("f", UTIME_OMIT, OLD2_NS)
    t.stat("f", "atime", "mtime")
    t.utimensat("f", OLD2_NS, UTIME_OMIT)
    t.stat("f", "atime", "mtime")
    s = t.mark("f")
    t.utimensat("f", UTIME_OMIT, UTIME_OMIT)
    t.changed("f", s)


@case("times")
def dir_times_utime(t):
    t.given({"d": DIR})
    t.utime("d", (OLD_NS, OLD2_NS))
    t.stat("d", "atime", "mtime")


@case("times")
def file_times_stable_after_commit(t):
    fd = t.open("f", WO | CREAT | EXCL)
    t.write(fd, b"new")
    t.close(fd)
    s = t.mark("f")
    t.settle()
    t.changed("f", s)
    t.given({"g": b"x"})
    fd = t.open("g", WO | APPEND)
    t.write(fd, b"more")
    t.close(fd)
    s = t.mark("g")
    t.settle()
    t.changed("g", s)


@case("times")
def file_times_mtime_from_utime_survives_write_commit(t):
    fd = t.open("f", WO | CREAT | EXCL)
    t.write(fd, b"data")
    t.close(fd)
    t.utime("f", (OLD_NS, OLD2_NS))
    t.settle()
    t.stat("f", "atime", "mtime")


@case("times")
def symlink_times_not_following(t):
    t.given({"f": b"x"})
    t.symlink("f", "l")
    s = t.mark("f")
    t.rec("lutimes(l, old)", os.utime, "l", ns=(OLD_NS, OLD2_NS), dir_fd=t.dfd,
          follow_symlinks=False)
    t.stat("l", "atime", "mtime")
    t.changed("f", s)


@case("times")
def dir_times_rename_dir_to_other_parent(t):
    t.given({"a": DIR, "a/d": DIR, "b": DIR})
    sd = t.mark("a/d")
    t.rename("a/d", "b/d")
    t.changed("b/d", sd)


# -- modes, owners, permissions ------------------------------------------------------


@case("perms")
def mkdir_mode_argument(t):
    for name, mode in (("m700", 0o700), ("m777", 0o777), ("m000", 0), ("m555", 0o555),
                       ("m1777", 0o1777), ("m2755", 0o2755)):
        t.mkdir(name, mode)
        t.stat(name, "type", "mode")
    t.settle()
    for name in ("m700", "m777", "m000", "m555", "m1777", "m2755"):
        t.stat(name, "mode")


@case("perms")
def mkdir_mode_0_root_still_works_inside(t):
    t.mkdir("d", 0)
    fd = t.open("d/f", WO | CREAT)
    t.close(fd)
    t.listdir("d")


@case("perms")
def chmod_modes(t):
    t.given({"f": b"x", "d": DIR})
    for mode in (0, 0o4755, 0o2755, 0o1777, 0o7777, 0o600):
        t.chmod("f", mode)
        t.stat("f", "mode")
    t.chmod("d", 0o700)
    t.stat("d", "mode")
    fd = t.open("f", RO)
    t.fchmod(fd, 0o640)
    t.fstat(fd, "mode")
    t.close(fd)
    t.symlink("f", "l")
    t.chmod("l", 0o604)
    t.stat("f", "mode")
    t.stat("l", "type", "mode")
    t.settle()
    t.stat("f", "mode")
    t.stat("d", "mode")


@case("perms")
def chmod_survives_later_write(t):
    t.given({"f": b"x"})
    t.chmod("f", 0o600)
    fd = t.open("f", WO | APPEND)
    t.write(fd, b"y")
    t.close(fd)
    t.settle()
    t.stat("f", "mode")
    t.content("f")


@case("perms")
def chmod_0_enforced_for_another_user(t):
    t.given({"f": b"secret"})
    t.chmod("f", 0)
    t.nobody(("read", "f"), ("write", "f", "x"), ("stat", "f"), ("chmod", "f", "420"))
    fd = t.open("f", RO)       # root may
    t.read(fd)
    t.close(fd)
    t.chmod("f", 0o644)
    t.nobody(("read", "f"), ("write", "f", "x"))
    t.chmod("f", 0o666)
    t.nobody(("write", "f", "+nobody"))
    t.content("f")


@case("perms")
def dir_modes_enforced_for_another_user(t):
    t.given({"d": DIR, "d/f": b"x"})
    t.chmod("d", 0o700)
    t.nobody(("list", "d"), ("read", "d/f"), ("stat", "d/f"))
    t.chmod("d", 0o711)
    t.nobody(("list", "d"), ("read", "d/f"))
    t.chmod("d", 0o755)
    t.nobody(("list", "d"), ("create", "d/n"), ("unlink", "d/f"))
    t.chmod("d", 0o777)
    t.nobody(("create", "d/n"), ("unlink", "d/n"))
    t.chmod("d", 0)
    t.nobody(("stat", "d"), ("list", "d"))
    t.listdir("d")


@case("perms")
def sticky_dir_other_users_file(t):
    t.mkdir("s", 0o777)
    t.chmod("s", 0o1777)
    fd = t.open("s/r", WO | CREAT)
    t.close(fd)
    t.chmod("s/r", 0o666)
    t.nobody(("unlink", "s/r"), ("write", "s/r", "w"))
    t.listdir("s")


@case("perms")
def sticky_dir_own_file(t):
    t.mkdir("s", 0o777)
    t.chmod("s", 0o1777)
    t.nobody(("create", "s/n"), ("unlink", "s/n"))
    t.listdir("s")


@case("perms")
def chown_other_user(t):
    t.given({"f": b"x"})
    t.chown("f", NOBODY, NOBODY)
    t.stat("f", "uid", "gid")


@case("perms")
def new_file_owner_is_creator(t):
    t.given({"d": DIR})
    t.chmod("d", 0o777)
    t.nobody(("create", "d/n"), ("write", "d/n", "by nobody"), ("chmod", "d/n", "384"))
    t.stat("d/n", "mode")
    t.content("d/n")


# -- link counts --------------------------------------------------------------------


@case("nlink")
def dir_link_counts(t):
    t.mkdir("d")
    t.stat("d", "nlink")
    t.mkdir("d/a")
    t.mkdir("d/b")
    fd = t.open("d/f", WO | CREAT)
    t.close(fd)
    t.stat("d", "nlink")
    t.rmdir("d/a")
    t.stat("d", "nlink")
    t.rename("d/b", "b")
    t.stat("d", "nlink")
    t.stat("b", "nlink")


@case("nlink")
def file_link_counts(t):
    fd = t.open("f", WO | CREAT)
    t.fstat(fd, "nlink")
    t.close(fd)
    t.stat("f", "nlink")
    t.symlink("f", "l")
    t.stat("l", "nlink")
    t.stat("f", "nlink")


# -- hard links and special files: refused by design, other errors first ----------------


@case("links")
def link_file(t):
    t.given({"f": b"x"})
    t.link("f", "g")
    t.stat("f", "nlink")


@case("links")
def link_new_uncommitted_file(t):
    fd = t.open("n", WO | CREAT | EXCL)
    t.close(fd)
    t.link("n", "g")


@case("links")
def link_symlink_itself(t):
    t.symlink("target", "l")
    t.link("l", "g")


@case("links")
def link_scratch_file(t):
    fd = t.open("f~", WO | CREAT | EXCL)
    t.close(fd)
    t.link("f~", "g~")


@case("links")
def link_into_subdir(t):
    t.given({"f": b"x", "d": DIR})
    t.link("f", "d/g")


@case("links")
def link_tmpfile_into_tree(t):
    fd = t.open(".", os.O_TMPFILE | RW, 0o600)
    t.write(fd, b"x")
    if fd.fd is None:
        t.check("link(/proc/self/fd/fd1, t)", "(no fd)")
    else:
        t.link("/proc/self/fd/%d" % fd.fd, "t", follow=True, label="link(/proc/self/fd/fd1, t)")
    t.close(fd)


@case("links")
def link_errno_order(t):
    t.given({"f": b"x", "g": b"y", "d": DIR})
    t.link("nope", "new")
    t.link("nope", "g")
    t.link("f", "g")
    t.link("f", "d")
    t.link("f", "nope/new")
    t.link("f", "g/new")
    t.link("d", "newd")
    t.link("f", "new", outside=True)
    t.link("f", N256)
    t.link("f", "f")
    t.link("f/", "new")
    t.listdir()


@case("links")
def mknod_fifo(t):
    t.mknod("p", stat.S_IFIFO | 0o644)


@case("links")
def mkfifo_fifo(t):
    t.mkfifo("p", 0o644)


@case("links")
def mknod_char_device(t):
    t.mknod("c", stat.S_IFCHR | 0o644, os.makedev(1, 3))


@case("links")
def mknod_block_device(t):
    t.mknod("b", stat.S_IFBLK | 0o644, os.makedev(7, 0))


@case("links")
def mknod_errno_order(t):
    t.given({"f": b"x", "d": DIR})
    t.mknod("f", stat.S_IFIFO | 0o644)
    t.mknod("d", stat.S_IFIFO | 0o644)
    t.mknod("nope/p", stat.S_IFIFO | 0o644)
    t.mknod("f/p", stat.S_IFIFO | 0o644)
    t.mknod(N256, stat.S_IFIFO | 0o644)
    t.mknod("f", stat.S_IFCHR | 0o644, os.makedev(1, 3))
    t.mknod("nope/c", stat.S_IFCHR | 0o644, os.makedev(1, 3))
    t.mkfifo("f")
    t.listdir()


@case("links")
def unix_socket(t):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        t.rec("bind(AF_UNIX, sock)", s.bind, t.path("sock"))
    finally:
        s.close()
    t.listdir()


# -- descriptors that outlive their name; names reused at once ---------------------------


@case("unlinked")
def unlink_open_file_keeps_bytes(t):
    t.given({"f": b"abc"})
    fd = t.open("f", RW | APPEND)
    t.unlink("f")
    t.write(fd, b"def")
    t.pread(fd, 100, 0)
    t.fstat(fd, "size", "nlink")
    t.stat("f")
    t.listdir()
    t.close(fd)


@case("unlinked")
def unlink_open_file_written_before(t):
    # What was written through a descriptor before the unlink stays readable through it.
    t.given({"f": b"abc"})
    fd = t.open("f", RW)
    t.pwrite(fd, b"new bytes!", 0)
    t.unlink("f")
    t.pread(fd, 100, 0)
    t.fstat(fd, "size", "nlink")
    t.pwrite(fd, b"more", 10)
    t.pread(fd, 100, 0)
    t.settle()
    t.pread(fd, 100, 0)
    t.close(fd)
    t.listdir()


@case("unlinked")
def unlink_open_file_across_the_delete(t):
    t.given({"f": b"abc"})
    r = t.open("f", RO)
    w = t.open("f", RW)
    t.unlink("f")
    t.settle()                   # the store has deleted the key by now
    t.pread(r, 100, 0)
    t.pwrite(w, b"XYZ!", 1)
    t.pread(r, 100, 0)
    t.fstat(r, "size", "nlink")
    t.fsync(w)
    t.fchmod(w, 0o600)
    t.ftruncate(w, 2)
    t.pread(w, 100, 0)
    t.close(w)
    t.pread(r, 100, 0)
    t.close(r)
    t.listdir()


@case("unlinked")
def unlink_open_new_file(t):
    fd = t.open("n", RW | CREAT | EXCL)
    t.write(fd, b"abc")
    t.unlink("n")
    t.write(fd, b"def")
    t.pread(fd, 100, 0)
    t.fstat(fd, "size", "nlink")
    t.fsync(fd)
    t.close(fd)
    t.listdir()


@case("unlinked")
def unlink_open_then_recreate(t):
    t.given({"f": b"old"})
    old = t.open("f", RW)
    t.unlink("f")
    new = t.open("f", RW | CREAT | EXCL)
    t.write(new, b"new!")
    t.pwrite(old, b"X", 0)
    t.pread(old, 100, 0)
    t.pread(new, 100, 0)
    t.same_inode("fd1 and f same inode", old, "f")
    t.close(new)
    t.pread(old, 100, 0)
    t.close(old)
    t.content("f")


@case("unlinked")
def rename_over_open_reader(t):
    t.given({"f": b"old", "g": b"new"})
    r = t.open("f", RO)
    t.rename("g", "f")
    t.pread(r, 100, 0)
    t.fstat(r, "size", "nlink")
    t.content("f")
    t.same_inode("fd1 and f same inode", r, "f")
    t.settle()
    t.pread(r, 100, 0)
    t.close(r)


@case("unlinked")
def rename_over_file_open_for_writing(t):
    t.given({"f": b"old", "g": b"new"})
    w = t.open("f", WO | APPEND)
    t.rename("g", "f")
    t.write(w, b"+written to the replaced file")
    t.fstat(w, "size", "nlink")
    t.close(w)
    t.settle()
    t.content("f")


@case("unlinked")
def unlink_open_for_writing_then_close(t):
    t.given({"f": b"old"})
    w = t.open("f", WO | APPEND)
    t.unlink("f")
    t.write(w, b"+late")
    t.close(w)
    t.settle()
    t.listdir()


@case("unlinked")
def unlink_open_then_rmdir_parent(t):
    t.given({"d": DIR, "d/f": b"inside"})
    fd = t.open("d/f", RO)
    t.unlink("d/f")
    t.rmdir("d")
    t.pread(fd, 100, 0)
    t.close(fd)
    t.listdir()


@case("unlinked")
def unlink_then_unlink_again(t):
    t.given({"f": b"x"})
    t.unlink("f")
    t.unlink("f")
    t.stat("f")
    t.open("f", RO)
    t.listdir()
    t.open("f", WO | CREAT | EXCL)
    t.listdir()


@case("unlinked")
def rm_then_create_file_again(t):
    t.given({"f": b"old"})
    t.unlink("f")
    fd = t.open("f", WO | CREAT | EXCL)
    t.write(fd, b"new")
    t.close(fd)
    t.content("f")


@case("unlinked")
def rm_then_mkdir_same_name(t):
    t.given({"f": b"old"})
    t.unlink("f")
    t.mkdir("f")
    t.stat("f", "type")
    fd = t.open("f/inside", WO | CREAT)
    t.close(fd)
    t.settle()
    t.stat("f", "type")
    t.listdir("f")


@case("unlinked")
def rm_then_mkdir_same_name_empty(t):
    t.given({"f": b"old"})
    t.unlink("f")
    t.mkdir("f")
    t.settle()
    t.stat("f", "type")


@case("unlinked")
def rm_then_symlink_same_name(t):
    t.given({"f": b"old", "target": b"t"})
    t.unlink("f")
    t.symlink("target", "f")
    t.settle()
    t.readlink("f")
    t.content("f")


@case("unlinked")
def rmdir_then_create_file_same_name(t):
    t.given({"d": DIR})
    t.rmdir("d")
    fd = t.open("d", WO | CREAT | EXCL)
    t.write(fd, b"now a file")
    t.close(fd)
    t.settle()
    t.stat("d", "type")


@case("unlinked")
def rmdir_then_mkdir_same_name(t):
    t.given({"d": DIR, "d/x": b"x"})
    t.unlink("d/x")
    t.rmdir("d")
    t.mkdir("d")
    t.settle()
    t.listdir("d")


@case("unlinked")
def rm_tree_then_recreate_it(t):
    t.given({"d": DIR, "d/a": b"a", "d/b": b"b", "d/s": DIR, "d/s/c": b"c"})
    for p in ("d/a", "d/b", "d/s/c"):
        t.unlink(p)
    t.rmdir("d/s")
    t.rmdir("d")
    t.mkdir("d")
    fd = t.open("d/a", WO | CREAT | EXCL)
    t.write(fd, b"a2")
    t.close(fd)
    t.settle()
    t.listdir("d")
    t.content("d/a")


@case("unlinked")
def rm_then_rename_onto_the_name(t):
    t.given({"f": b"old", "g": b"replacement"})
    t.unlink("f")
    t.rename("g", "f")
    t.content("f")


@case("unlinked")
def open_descriptors_distinct_inodes(t):
    t.given({"f": b"old"})
    fd = t.open("f", RO)
    t.unlink("f")
    new = t.open("f", WO | CREAT | EXCL)
    t.close(new)
    t.same_inode("unlinked fd1 vs new f", fd, "f")
    t.close(fd)


@case("limits")
def write_beyond_store_limit(t):
    fd = t.open("huge", WO | CREAT | EXCL)
    t.write_until(fd, 2 << 20, 512, "write 2 MiB in 512 B chunks")
    t.close(fd)
    t.unlink("huge")


@case("limits")
def write_straddling_store_limit(t):
    fd = t.open("f", WO | CREAT | EXCL)
    n = t.limits.max_value - 10
    t.rec("ftruncate(fd1, limit-10)", lambda: os.ftruncate(t.raw(fd), n))
    t.lseek(fd, 0, os.SEEK_END)
    t.rec("write(fd1, 100 bytes at limit-10)", lambda: os.write(t.raw(fd), b"y" * 100))
    t.write(fd, b"z")
    t.close(fd)
    t.stat("f", "size")
    t.unlink("f")


@case("limits")
def truncate_beyond_store_limit(t):
    t.given({"f": b"abc"})
    t.truncate("f", 2 << 20)
    t.stat("f", "size")


# ---------------------------------------------------------------------------
# The runner
# ---------------------------------------------------------------------------

_unknown = (set(DIFFERENT_BY_DESIGN) | set(KNOWN_MISMATCHES)) - set(CASES)
if _unknown:
    raise RuntimeError("DIFFERENT_BY_DESIGN/KNOWN_MISMATCHES name no case: %s"
                       % ", ".join(sorted(_unknown)))

GROUPS = []
for _g, _ in CASES.values():
    if _g not in GROUPS:
        GROUPS.append(_g)


def reference_base():
    return os.environ.get("CFGFS_POSIX_REF") or "/dev/shm"


def fs_type(path):
    best = None
    path = os.path.realpath(path)
    for _, target, fstype, _ in harness.mount_entries():
        if path == target or path.startswith(target.rstrip("/") + "/"):
            if best is None or len(target) >= len(best[0]):
                best = (target, fstype)
    return best[1] if best else "?"


def other_fs_dir(path, parent_of_temp):
    """A new temp dir on another filesystem than path."""
    dev = os.stat(path).st_dev
    for cand in (parent_of_temp, "/var/tmp", "/dev/shm", "/tmp"):
        if os.path.isdir(cand) and os.stat(cand).st_dev != dev:
            return tempfile.mkdtemp(prefix="cfgfs-posix-out-", dir=cand)
    raise AssertionError("no directory on another filesystem than %s" % path)


class Result:
    def __init__(self, name, group, verdict, diffs, note=None):
        self.name, self.group, self.verdict, self.diffs, self.note = \
            name, group, verdict, diffs, note


def compare(ref, cf, ref_name):
    """Differences between the two runs, as lines."""
    out = []
    rs, cs = ref["steps"], cf["steps"]
    for i in range(max(len(rs), len(cs))):
        r = rs[i] if i < len(rs) else ("(no step)", "-")
        c = cs[i] if i < len(cs) else ("(no step)", "-")
        if r != c:
            if r[0] == c[0]:
                out.append("%s: %s %s, cfgfs %s" % (r[0], ref_name, r[1], c[1]))
            else:
                out.append("step %d: %s %s -> %s, cfgfs %s -> %s"
                           % (i + 1, ref_name, r[0], r[1], c[0], c[1]))
    if ref["state"] != cf["state"]:
        out.append("state " + diff_states(ref["state"], cf["state"], ref_name, "cfgfs"))
    return out


def known_for(table, name, kind):
    v = table.get(name)
    return v.get(kind) if isinstance(v, dict) else v


class TestPosix(harness.CfgfsTestCase):
    """cfgfs against a local filesystem, case by case (see the module docstring)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.results = []

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "results", None):
            sys.stderr.write(summary(cls.results, cls.store_kind, cls.ref_name))
        super().tearDownClass()

    def run_group(self, group):
        old_umask = os.umask(0o022)
        self.addCleanup(os.umask, old_umask)
        m = self.mount(opts=["-o", "allow_other"])
        os.chmod(m.tmpdir, 0o755)            # so that nobody reaches the mount
        base = tempfile.mkdtemp(prefix="cfgfs-posix-ref-", dir=reference_base())
        self.addCleanup(shutil.rmtree, base, True)
        os.chmod(base, 0o755)
        ref_out = other_fs_dir(base, "/var/tmp")
        self.addCleanup(shutil.rmtree, ref_out, True)
        cf_out = tempfile.mkdtemp(prefix="out-", dir=m.tmpdir)   # ext4 or tmpfs, not cfgfs
        type(self).ref_name = fs_type(base)
        ref_side = RefSide(base, ref_out, self.limits, type(self).ref_name)
        cf_side = CfgfsSide(self, m, cf_out)
        bad = []
        for name, (g, fn) in CASES.items():
            if g != group:
                continue
            runs = []
            for side in (ref_side, cf_side):
                t = Ops(side, name)
                try:
                    fn(t)
                finally:
                    t.finish()
                t.steps += side.after_case(t)
                runs.append({"steps": t.steps, "state": snapshot(t.dir)})
            dump = os.environ.get("CFGFS_POSIX_DUMP", "")
            if dump == "all" or name in dump.split(","):
                sys.stderr.write(dump_case(name, runs, ref_side.name))
            res = self.verdict(name, group, runs[0], runs[1], ref_side.name)
            type(self).results.append(res)
            if res.verdict in ("MISMATCH", "STALE"):
                bad.append(res)
        if bad:
            self.fail("%d case(s) of group %s:\n%s" % (len(bad), group, "\n".join(
                "  %s %s: %s" % (r.verdict, r.name, r.note or "; ".join(r.diffs))
                for r in bad)))

    def verdict(self, name, group, ref, cf, ref_name):
        diffs = compare(ref, cf, ref_name)
        design = DIFFERENT_BY_DESIGN.get(name)
        known = known_for(KNOWN_MISMATCHES, name, self.store_kind)
        if design:
            reason, expect = design
            expect = {k: (v(self.limits) if callable(v) else v) for k, v in expect.items()}
            want = [(label, expect.get(label, out)) for label, out in ref["steps"]]
            if not diffs:
                return Result(name, group, "STALE", diffs,
                              "now matches: remove it from DIFFERENT_BY_DESIGN")
            if cf["steps"] == want:
                return Result(name, group, "by design", diffs, reason)
            wrong = ["%s: expected %s, cfgfs %s" % (l, w, c[1])
                     for (l, w), c in zip(want, cf["steps"]) if (l, w) != c]
            diffs = ["not as DIFFERENT_BY_DESIGN expects: " + "; ".join(wrong)] + diffs
        if not diffs:
            if known and name not in RACES:
                return Result(name, group, "STALE", diffs,
                              "now matches: remove it from KNOWN_MISMATCHES")
            return Result(name, group, "match", diffs)
        if known:
            return Result(name, group, "known", diffs, known)
        return Result(name, group, "MISMATCH", diffs)


def dump_case(name, runs, ref_name):
    lines = ["", "--- case %s" % name]
    for side, run in zip((ref_name, "cfgfs"), runs):
        lines.append("  %s:" % side)
        lines += ["    %s -> %s" % s for s in run["steps"]]
        lines += ["    state %s: %s" % (p, describe(d)) for p, d in sorted(run["state"].items())]
    return "\n".join(lines) + "\n"


def summary(results, kind, ref_name):
    n = len(results)
    count = {}
    for r in results:
        count[r.verdict] = count.get(r.verdict, 0) + 1
    verbose = os.environ.get("CFGFS_POSIX_VERBOSE")
    lines = ["", "=" * 78,
             "POSIX conformance, cfgfs (%s) against %s" % (kind, ref_name),
             "  %-28s %5s %6s %8s %8s %6s" % ("group", "cases", "match", "design",
                                              "mismatch", "new")]
    for g in GROUPS:
        rs = [r for r in results if r.group == g]
        if rs:
            lines.append("  %-28s %5d %6d %8d %8d %6d" % (
                g, len(rs), sum(r.verdict == "match" for r in rs),
                sum(r.verdict == "by design" for r in rs),
                sum(r.verdict in ("known", "MISMATCH") for r in rs),
                sum(r.verdict in ("MISMATCH", "STALE") for r in rs)))
    lines.append("  %-28s %5d %6d %8d %8d %6d" % (
        "total", n, count.get("match", 0), count.get("by design", 0),
        count.get("known", 0) + count.get("MISMATCH", 0),
        count.get("MISMATCH", 0) + count.get("STALE", 0)))
    for title, verdicts in (("different by design", ("by design",)),
                            ("mismatches (known)", ("known",)),
                            ("NEW mismatches", ("MISMATCH",)),
                            ("STALE entries (the case matches now)", ("STALE",))):
        rs = [r for r in results if r.verdict in verdicts]
        if not rs:
            continue
        lines.append("-- %s: %d" % (title, len(rs)))
        for r in rs:
            if r.verdict == "by design":
                lines.append("  %s: %s" % (r.name, r.note))
                continue
            lines.append("  %s: %s" % (r.name, r.note or "(what each side did:)"))
            shown = r.diffs if verbose else r.diffs[:4]
            lines += ["      " + d for d in shown]
            if len(r.diffs) > len(shown):
                lines.append("      (%d more; CFGFS_POSIX_VERBOSE=1 shows them)"
                             % (len(r.diffs) - len(shown)))
    lines.append("=" * 78 + "\n")
    return "\n".join(lines)


def _add_group_tests():
    for g in GROUPS:
        def test(self, g=g):
            self.run_group(g)
        test.__name__ = "test_%s" % g
        test.__doc__ = "The %s cases." % g
        setattr(TestPosix, test.__name__, test)


_add_group_tests()
harness.all_stores(TestPosix)

if __name__ == "__main__":
    harness.main()

"""Network namespaces, for cutting one etcd member off from its peers while
it still answers clients (test_cluster.py).  Needs root, `ip` (iproute2),
`unshare` and `nsenter` (util-linux); no iptables or nft: the cut is made
of blackhole routes, one in each namespace concerned.

The layout (everything private to this test process, nothing in the host's
own network namespace):

  enter_private_netns()  moves this process (and every child it starts
        later) into a new network namespace with only `lo` (up); the host's
        interfaces, routes and addresses are neither seen nor touched, and
        whatever is left when the process dies goes with it.
  Bridge  a bridge there, 10.213.0.1/24: the test process, cfgfs and the
        harness's clients talk to the members through it.
  NetnsHost  one more namespace per member, kept alive by a holder process
        (`unshare --net sleep infinity`, killed with us by PR_SET_PDEATHSIG),
        linked to the bridge by a veth pair; its address is 10.213.0.(10+i).
        command(argv) runs argv inside (nsenter -n).  blackhole(addr) drops
        every packet this namespace would send to addr (a /32 blackhole
        route: connect() fails, established connections hang).

Cutting member A off from B and C is A.blackhole(B), A.blackhole(C),
B.blackhole(A), C.blackhole(A): no packet between A and its peers in
either direction, while the bridge address (.1: cfgfs, the tests) still
reaches A.  heal() deletes exactly those routes."""

import ctypes
import itertools
import os
import signal
import shutil
import subprocess
import threading
import time

from .base import _live_servers

__all__ = ["netns_unusable_reason", "enter_private_netns", "Bridge", "NetnsHost"]

CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
SUBNET = "10.213.0"
BRIDGE = "cfgfsbr0"

_libc = ctypes.CDLL(None, use_errno=True)
_veth_numbers = itertools.count()
_reason = []
_entered = []
_bridge_made = []


def _run(argv, timeout=10):
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError("%s failed (status %d): %s" % (" ".join(argv), r.returncode,
                                                          (r.stderr or r.stdout).strip()))
    return r.stdout


def netns_unusable_reason():
    """None if namespaces, bridges, veth pairs and blackhole routes work
    here (tried once, in a throwaway namespace), else why not."""
    if not _reason:
        reason = None
        if os.geteuid() != 0:
            reason = "network namespaces need root"
        else:
            missing = [t for t in ("ip", "unshare", "nsenter") if shutil.which(t) is None]
            if missing:
                reason = "not installed: %s (iproute2, util-linux)" % " ".join(missing)
        if reason is None:
            probe = ("ip link set lo up && ip link add cfgfsprobe0 type bridge && "
                     "ip link add cfgfsprobe1 type veth peer name cfgfsprobe2 && "
                     "ip link set cfgfsprobe1 master cfgfsprobe0 && "
                     "ip route add blackhole 10.213.9.9/32")
            try:
                _run(["unshare", "--net", "--", "sh", "-c", probe])
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                reason = "cannot build a private network here (%s)" % e
        _reason.append(reason)
    return _reason[0]


def enter_private_netns():
    """Move this process into a network namespace of its own (once; main
    thread only, before any other thread exists that needs the network).
    Servers started before this are no longer reachable."""
    if _entered:
        return
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("enter_private_netns() must be called from the main thread")
    if _libc.unshare(CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "unshare(CLONE_NEWNET): %s" % os.strerror(e))
    _entered.append(True)
    _run(["ip", "link", "set", "lo", "up"])


def _ns_id(pid):
    try:
        return os.readlink("/proc/%d/ns/net" % pid)
    except OSError:
        return None


def _pdeathsig():
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Bridge:
    """The segment the member namespaces hang off, in our private namespace
    (entered here if not yet); we are SUBNET.1."""

    def __init__(self):
        enter_private_netns()
        if not _bridge_made:       # (not /sys/class/net: sysfs shows the host's namespace)
            _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
            _run(["ip", "addr", "add", SUBNET + ".1/24", "dev", BRIDGE])
            _run(["ip", "link", "set", BRIDGE, "up"])
            _bridge_made.append(True)
        self.address = SUBNET + ".1"

    @staticmethod
    def host_address(index):
        return "%s.%d" % (SUBNET, 10 + index)


class NetnsHost:
    """A network namespace on the bridge with address Bridge.host_address(index)."""

    def __init__(self, bridge, index):
        self.index = index
        self.address = bridge.host_address(index)
        self.veth = "cfgfsv%d" % next(_veth_numbers)   # unique: an old one may still be going
        self.blackholed = set()
        self.holder = subprocess.Popen(["unshare", "--net", "--", "sleep", "infinity"],
                                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, start_new_session=True,
                                       preexec_fn=_pdeathsig)
        _live_servers.add(self)
        ours = _ns_id(os.getpid())
        deadline = time.monotonic() + 10
        while _ns_id(self.holder.pid) in (None, ours):
            if self.holder.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError("unshare --net did not make a namespace (status %r)"
                                   % self.holder.poll())
            time.sleep(0.002)
        pid = str(self.holder.pid)
        # An earlier host at this address had another MAC address.
        subprocess.run(["ip", "neigh", "flush", "to", self.address], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=10)
        _run(["ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0",
              "netns", pid])
        _run(["ip", "link", "set", self.veth, "master", BRIDGE, "up"])
        self.ip("link", "set", "lo", "up")
        self.ip("addr", "add", self.address + "/24", "dev", "eth0")
        self.ip("link", "set", "eth0", "up")

    def command(self, argv):
        """argv run inside this namespace (nsenter execs it: same pid)."""
        return ["nsenter", "-t", str(self.holder.pid), "-n", "--"] + list(argv)

    def ip(self, *args):
        return _run(self.command(["ip"] + list(args)))

    def blackhole(self, address):
        """Drop everything this namespace sends to address."""
        if address not in self.blackholed:
            self.ip("route", "add", "blackhole", address + "/32")
            self.blackholed.add(address)

    def unblackhole(self, address):
        if address in self.blackholed:
            self.ip("route", "del", "blackhole", address + "/32")
            self.blackholed.discard(address)

    def routes(self):
        return self.ip("route", "show")

    def close(self):
        if self.holder is not None and self.holder.poll() is None:
            self.holder.kill()
            self.holder.wait(10)
        _live_servers.discard(self)

    def __repr__(self):
        return "NetnsHost(%s, holder pid %s)" % (self.address, self.holder.pid)

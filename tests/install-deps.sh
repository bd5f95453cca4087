#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Installs the Debian 12 packages that building cfgfs (and its demo, or its tests) needs,
# skipping what is already installed, so a fresh machine and CI start from the same list.
#
#   tests/install-deps.sh build   compiler, libraries, fuse3, etcd: enough for the demo
#   tests/install-deps.sh test    all of that, plus what the test suite drives
#   tests/install-deps.sh bench   all of that, plus what the benchmark uses
#   tests/install-deps.sh ci      the test profile, plus valgrind
#   tests/install-deps.sh --list PROFILE   print a profile's packages, install nothing
set -euo pipefail

build=(autoconf automake make gcc libc6-dev pkg-config libfuse3-dev fuse3
       libcurl4-openssl-dev libjansson-dev etcd-server curl ca-certificates)
# The tests drive real tools: editors under tmux, getfattr, python3 for the harness,
# openssl for throwaway certificates, iproute2 (ip) for the etcd cluster's namespaces, and a
# real ZooKeeper (the zk:// store is built when libzookeeper-mt-dev is there).
test=(libcmocka-dev python3 attr vim nano emacs-nox tmux perl procps clang-format openssl
      iproute2 libzookeeper-mt-dev zookeeper)

# The benchmark also counts the daemon's network calls with strace.
bench=(python3 strace iproute2)

# CI also runs the unit tests under valgrind (tests/sanitize.sh; ASan and TSan come with gcc).
ci=(valgrind)

list=false
if [ "${1:-}" = --list ]; then
	list=true
	shift
fi
case "${1:-test}" in
build) want=("${build[@]}") ;;
test) want=("${build[@]}" "${test[@]}") ;;
bench) want=("${build[@]}" "${test[@]}" "${bench[@]}") ;;
ci) want=("${build[@]}" "${test[@]}" "${ci[@]}") ;;
*) echo "usage: $0 build|test|bench|ci" >&2; exit 2 ;;
esac
if $list; then
	printf '%s\n' "${want[@]}"
	exit 0
fi

as_root() {
	if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for p in "${want[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
	echo "install-deps: installing ${missing[*]}" >&2
	as_root apt-get update -q
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Some fresh VMs have the module but no device node until it is loaded.
if [ ! -c /dev/fuse ]; then
	as_root modprobe fuse 2>/dev/null || true
fi
if [ ! -c /dev/fuse ]; then
	echo "install-deps: /dev/fuse is missing and 'modprobe fuse' did not create it" >&2
	exit 1
fi

#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Runs one of README's two commands in a fresh Debian 12 root, as a newcomer's machine would
# be: a debootstrap minbase chroot with /dev/fuse bound in, its own PID namespace and /proc,
# and a copy of this checkout (committed files only). It catches what the developer's
# machine hides: a package that is installed here but missing from the project's own lists.
#
#   tests/fresh-root.sh demo|check [DIR]
#
# DIR (default /var/tmp/cfgfs-fresh) keeps a pristine minbase root between runs, so only the
# first run downloads it; every run starts from a new copy of it. Needs root and network
# access to the Debian archive the host's apt sources name.
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-}
case "$what" in
demo) cmd=./examples/demo.sh ;;
check) cmd=./tests/check.sh ;;
*) echo "usage: $0 demo|check [DIR]" >&2; exit 2 ;;
esac
dir=${2:-/var/tmp/cfgfs-fresh}
if [ "$(id -u)" -ne 0 ]; then
	echo "fresh-root: needs root (debootstrap, chroot, mounts)" >&2
	exit 2
fi
command -v debootstrap >/dev/null || apt-get install -y -q debootstrap >/dev/null

# The archive the host already uses (deb822 or one-line sources), not a hard-coded host.
mirror=$( (cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null || true) |
	grep -E '^(URIs:|deb )' | grep -oE 'https?://[^ ]+/debian/?( |$)' | head -n1 | tr -d ' ')
mirror=${mirror:-http://deb.debian.org/debian}

base=$dir/base
if [ ! -x "$base/bin/bash" ]; then
	rm -rf "$base"
	mkdir -p "$dir"
	echo "fresh-root: debootstrap minbase bookworm from $mirror" >&2
	debootstrap --variant=minbase bookworm "$base.tmp" "$mirror" >"$dir/debootstrap.log" 2>&1 ||
		{ tail -n 20 "$dir/debootstrap.log" >&2; exit 1; }
	mv "$base.tmp" "$base"
fi

root=$(mktemp -d "$dir/run.XXXXXX")
cleanup() {
	for m in "$root/dev/fuse" "$root/dev/pts" "$root/dev/shm" "$root/proc" "$root/sys"; do
		mountpoint -q "$m" 2>/dev/null && umount -l "$m" || true
	done
	rm -rf --one-file-system "$root"
}
trap cleanup EXIT
cp -a "$base/." "$root/"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# A checkout as a newcomer gets it: what is committed, nothing built.
mkdir -p "$root/src/cfgfs"
git archive HEAD | tar -x -C "$root/src/cfgfs"
touch "$root/dev/fuse"
mount --bind /dev/fuse "$root/dev/fuse"
mkdir -p "$root/dev/pts" "$root/dev/shm" "$root/sys"
mount -t devpts devpts "$root/dev/pts" -o newinstance,ptmxmode=0666
# A machine has /dev/shm as a tmpfs of its own (the POSIX tests compare against one).
mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm"
mount -t sysfs sysfs "$root/sys"
start=$(date +%s)
set +e
unshare --pid --fork --mount-proc="$root/proc" \
	chroot "$root" /usr/bin/env -i HOME=/root TERM=xterm PATH=/usr/sbin:/usr/bin:/sbin:/bin \
	bash -c "cd /src/cfgfs && $cmd"
rc=$?
set -e
echo "fresh-root: '$cmd' exited $rc after $(($(date +%s) - start)) s" >&2
exit $rc

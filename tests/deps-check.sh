#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Catches a package that this machine has but the project's install lists lack: the kind of
# mistake that makes README's first command fail on a fresh machine while every test passes
# here. It builds a view of this machine that holds only what a newcomer would have after
# `tests/install-deps.sh build` (Essential packages, the build list and what they depend
# on): a PATH of their programs and a pkg-config path of their libraries. In that view it
# runs autoreconf and configure on a copy of the checkout, then the demo itself with the
# cfgfs just built.
# (tests/fresh-root.sh does the same in a real fresh root; it needs a download.)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
cfgfs=${CFGFS:-$PWD/src/cfgfs}

if ! command -v dpkg-query >/dev/null || ! command -v apt-cache >/dev/null; then
	echo "deps-check: not a Debian system (no dpkg-query/apt-cache)" >&2
	exit 1
fi
work=$(mktemp -d /var/tmp/cfgfs-deps.XXXXXX)
trap 'rm -rf "$work"' EXIT

mapfile -t want < <("$src/tests/install-deps.sh" --list build)
# What debootstrap --variant=minbase installs: Essential and Priority required packages.
mapfile -t essential < <(dpkg-query -W -f='${Package} ${Essential} ${Priority}\n' |
	awk '$2 == "yes" || $3 == "required" {print $1}')
# Everything those pull in, as installed here (":any" and virtual names resolved by apt).
mapfile -t allowed < <(apt-cache depends --recurse --installed --no-recommends --no-suggests \
	--no-conflicts --no-breaks --no-replaces --no-enhances "${want[@]}" "${essential[@]}" \
	2>/dev/null | grep -v '^ ' | grep -v '^<' | sed 's/:.*//' | sort -u)

mkdir -p "$work/bin" "$work/pkgconfig"
for p in "${allowed[@]}"; do
	dpkg-query -L "$p" 2>/dev/null || true
done >"$work/files"
grep '/pkgconfig/.*\.pc$' "$work/files" | while read -r f; do
	ln -sf "$f" "$work/pkgconfig/${f##*/}"
done
# Programs by where they really are: names set up by update-alternatives (aclocal,
# automake, cc) belong to no package, but point into one.
grep -E '^(/usr)?/s?bin/' "$work/files" | xargs -r realpath -e 2>/dev/null | sort -u >"$work/real"
find /usr/bin /usr/sbin /bin/ /sbin/ -maxdepth 1 -executable ! -type d >"$work/names"
xargs -r -d '\n' readlink -m <"$work/names" | paste - "$work/names" |
	awk -F'\t' 'NR == FNR { ok[$1] = 1; next } ($1 in ok) { print $2 }' "$work/real" - |
	while read -r f; do ln -sf "$f" "$work/bin/${f##*/}"; done
# Usr-merged systems list programs under /bin in dpkg's database but run them from /usr/bin.
view=(env -i HOME="$HOME" PATH="$work/bin" PKG_CONFIG_LIBDIR="$work/pkgconfig" LANG=C)

# A copy of the checkout as a newcomer has it: committed and staged files, nothing generated
# (from a tree without git, such as an archive: a copy cleaned by `make distclean`).
mkdir -p "$work/src"
if command -v git >/dev/null && git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
	git -C "$src" ls-files -z | (cd "$src" && xargs -0 cp --parents -t "$work/src")
else
	cp -a "$src/." "$work/src/"
	if [ -f "$work/src/Makefile" ]; then
		make -s -C "$work/src" distclean >/dev/null 2>&1 || true
	fi
fi

fail=0
if ! (cd "$work/src" && "${view[@]}" sh -c 'autoreconf -fi && ./configure --quiet' \
	>"$work/configure.log" 2>&1); then
	echo "deps-check: autoreconf/configure fail with only the 'build' packages installed:" >&2
	tail -n 5 "$work/configure.log" >&2
	fail=1
fi
if ! (cd "$work/src" && "${view[@]}" CFGFS="$cfgfs" ./examples/demo.sh </dev/null \
	>"$work/demo.log" 2>&1); then
	echo "deps-check: examples/demo.sh fails with only the 'build' packages installed:" >&2
	tail -n 10 "$work/demo.log" >&2
	fail=1
elif ! grep -q 'new bytes readable' "$work/demo.log"; then
	echo "deps-check: the demo did not show the change reaching the file:" >&2
	tail -n 10 "$work/demo.log" >&2
	fail=1
fi
if [ "$fail" -eq 0 ]; then
	echo "deps-check: configure and the demo work with only the 'build' packages (${#allowed[@]} with dependencies)"
fi
exit "$fail"

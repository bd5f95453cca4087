#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Keeps the layers of src/ (README "Layout") what they are: each folder includes only its own
# headers and those of the folders below it, no modules include each other in a circle, and
# each library's header appears in one place.
#
#   src/       leaves (log, clock, blob) and main.c, which may include anything
#   core/      the mirror: leaves and core only
#   store/     the stores: leaves, core and store
#   run/       threads between store and mirror: leaves, core, store and run
#   fuse/      the FUSE side: anything but main.c
set -euo pipefail
top=${srcdir:-$(dirname "$0")/..}
cd "$top/src"

fail=0
say() {
	echo "layers-check: $*" >&2
	fail=1
}
layer_of() { # HEADER -> its folder ("." for the leaves), or nothing if it is not ours
	for d in . core store run fuse; do
		[ -f "$d/$1" ] && { echo "$d"; return; }
	done
}
allowed() { # FOLDER -> the folders it may include from
	case "$1" in
	.) echo ". core store run fuse" ;; # main.c only; the leaves include only leaves (below)
	core) echo ". core" ;;
	store) echo ". core store" ;;
	run) echo ". core store run" ;;
	fuse) echo ". core store run fuse" ;;
	esac
}
for f in *.[ch] */*.[ch]; do
	dir=$(dirname "$f")
	ok=$(allowed "$dir")
	[ "$dir" = . ] && [ "$f" != main.c ] && ok="."
	while read -r h; do
		l=$(layer_of "$h")
		[ -n "$l" ] || continue
		case " $ok " in *" $l "*) ;; *) say "$f includes $l/$h, a layer above it" ;; esac
	done < <(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f")
done
# One place speaks each library.
only() { # HEADER-PATTERN FILES-OR-FOLDERS/-ALLOWED...
	local pat=$1
	shift
	for f in $(grep -l -E "^#include <$pat>" *.[ch] */*.[ch] || true); do
		case " $* " in *" $f "* | *" $(dirname "$f")/ "*) ;; *) say "$f includes <$pat>: only $* may" ;; esac
	done
}
edges=$(mktemp)
# No two modules include each other, directly or through others (X_int.h is part of X).
for f in *.[ch] */*.[ch]; do
	m=$(basename "${f%.*}")
	m=${m%_int}
	sed -n 's/^#include "\([^"]*\)\.h".*/\1/p' "$f" | while read -r h; do
		h=${h%_int}
		[ "$h" = "$m" ] || echo "$m $h"
	done
done >"$edges"
if ! loop=$(tsort "$edges" 2>&1 >/dev/null); then
	say "modules include each other in a circle:$(echo "$loop" | sed -n 's/^tsort: \([^ :]*\)$/ \1/p' | tr -d '\n')"
fi
rm -f "$edges"
only 'curl/curl\.h' store/http.c
only 'jansson\.h' store/json_int.h
only 'zookeeper/zookeeper\.h' store/zk_int.h
only 'fuse(3/)?_?[a-z_]*\.h' fuse/
exit $fail

#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The test suite under a checker: builds a copy of this tree (tracked files as they are in the
# work tree) with AddressSanitizer+UBSan, ThreadSanitizer, or for valgrind, runs `make check`
# there, and fails if the checker reported anything, even in a test that passed.
#
#   tests/sanitize.sh asan|tsan|valgrind [TEST...]    (default: every test)
#
# Reports land in $dir/reports (dir: $CFGFS_SANITIZE_DIR, default /var/tmp/cfgfs-MODE), one file
# per process. Under valgrind the unit tests and every cfgfs a test starts run in valgrind.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
mode=${1:?usage: tests/sanitize.sh asan|tsan|valgrind [TEST...]}
shift
dir=${CFGFS_SANITIZE_DIR:-/var/tmp/cfgfs-$mode}
reports=$dir/reports
common="-g -O1 -fno-omit-frame-pointer"
case "$mode" in
asan) flags="$common -fsanitize=address,undefined -fno-sanitize-recover=undefined" ;;
tsan) flags="$common -fsanitize=thread" ;;
valgrind)
	flags="$common"
	command -v valgrind >/dev/null || {
		echo "sanitize: valgrind is not installed (apt-get install valgrind)" >&2
		exit 2
	}
	;;
*)
	echo "sanitize: unknown mode '$mode' (asan, tsan or valgrind)" >&2
	exit 2
	;;
esac

rm -rf "$dir"
mkdir -p "$dir/tree" "$reports"
# The tracked files as they are in the work tree; without git (an archive, CI's copy), the
# whole tree cleaned by make distclean.
if command -v git >/dev/null && git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
	(cd "$src" && git ls-files -z | tar --null -T - -cf -) | tar -xf - -C "$dir/tree"
else
	cp -a "$src/." "$dir/tree/"
	[ ! -f "$dir/tree/Makefile" ] || make -s -C "$dir/tree" distclean >/dev/null 2>&1 || true
fi
cd "$dir/tree"
autoreconf -fi >/dev/null 2>&1
./configure --quiet --with-cmocka CFLAGS="$flags" LDFLAGS="$flags"
make -j"$(nproc)" >/dev/null

# halt_on_error=0 and exitcode=0: a report must not change what a test sees (a daemon that
# dies at unmount would fail the next test for the wrong reason); the reports are counted below.
export ASAN_OPTIONS="log_path=$reports/asan:detect_leaks=1:halt_on_error=0:exitcode=0"
export LSAN_OPTIONS="suppressions=$src/tests/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="log_path=$reports/ubsan:print_stacktrace=1"
export TSAN_OPTIONS="log_path=$reports/tsan:halt_on_error=0:exitcode=0:second_deadlock_stack=1"
# Timing-dependent tests get more time under a checker.
export CFGFS_TEST_TIMEOUT=${CFGFS_TEST_TIMEOUT:-600}
# Tests that bound memory or time loosen those bounds under a checker.
export CFGFS_SANITIZER=$mode
args=()
if [ "$mode" = valgrind ]; then
	vg="valgrind --quiet --error-exitcode=0 --leak-check=full --errors-for-leak-kinds=definite"
	vg="$vg --show-leak-kinds=definite --log-file=$reports/valgrind.%p"
	printf '#!/bin/sh\nexec %s %s "$@"\n' "$vg" "$dir/tree/src/cfgfs" >"$dir/cfgfs"
	chmod 755 "$dir/cfgfs"
	export CFGFS=$dir/cfgfs
	args+=("LOG_COMPILER=$vg")
fi
[ $# -gt 0 ] && args+=("TESTS=$*")
rc=0
make -j1 check "${args[@]}" || rc=$?

# valgrind's own notices ("--PID-- WARNING: unhandled amd64-linux syscall: 434" for the
# hook runner's pidfd_open, which then falls back to polling) are about valgrind, not cfgfs:
# its reports of errors and leaks are the "==PID==" lines.
if [ "$mode" = valgrind ]; then
	find "$reports" -type f -name 'valgrind.*' -exec sed -i -E '/^--[0-9]+-- /d' {} +
fi
# valgrind writes a file per process even when it has nothing to say.
find "$reports" -type f -empty -delete
# Some reports reach stderr whatever log_path says (UBSan inside ASan's runtime): the test logs.
grep -l -E "runtime error:|ERROR: (Address|Thread|Leak)Sanitizer|WARNING: ThreadSanitizer" \
	tests/*.log tests/*/*.log 2>/dev/null | while read -r f; do
	cp "$f" "$reports/in-$(echo "$f" | tr / _)"
done || true # grep finds nothing: the usual case
n=$(find "$reports" -type f | wc -l)
if [ "$n" -gt 0 ]; then
	echo "sanitize: $mode reported in $n process(es):" >&2
	for f in "$reports"/*; do
		echo "==== $f" >&2
		head -60 "$f" >&2
	done
	exit 1
fi
[ "$rc" -eq 0 ] || {
	echo "sanitize: $mode: no reports, but make check failed (see $dir/tree/test-suite.log)" >&2
	exit "$rc"
}
echo "sanitize: $mode: no reports, every test passed"

#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Fails when a C file differs from what .clang-format makes of it (run `clang-format -i` to fix).
set -euo pipefail
top=${srcdir:-$(dirname "$0")/..}
cd "$top"
if ! command -v clang-format >/dev/null; then
	echo "clang-format not installed: skipping" >&2
	exit 77
fi
clang-format --dry-run --Werror src/*.c src/*.h src/*/*.c src/*/*.h tests/unit/*.c tests/unit/*.h tests/helpers/*.c \
	tests/bench/*.c

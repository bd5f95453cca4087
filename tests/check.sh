#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# One command for a fresh Debian 12 machine (and CI): install what is missing, build,
# run the whole test suite (unit tests and real mounts against real stores).
set -euo pipefail
cd "$(dirname "$0")/.."

tests/install-deps.sh test
# Debian 12 has no Consul: fetch Debian 11's once (cached), so a failure shows here, not in a test.
tests/fetch-consul.sh consul >/dev/null
autoreconf -fi
./configure --quiet --with-cmocka --with-zookeeper
make -j"$(nproc)"
# The integration tests mount for real and time-sensitive readers share the two cores:
# run them one after another.
if ! make -j1 check; then
	echo "---- failing test logs (test-suite.log) ----" >&2
	cat test-suite.log >&2 || true
	exit 1
fi

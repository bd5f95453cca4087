#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The newcomer's first command: install what is missing, build, start a throwaway etcd on
# loopback holding examples/app, mount it with cfgfs, and show a change reaching a file.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

tests/install-deps.sh build
# CFGFS names a cfgfs already built (tests/deps-check.sh runs the demo that way).
cfgfs=${CFGFS:-}
if [ -z "$cfgfs" ]; then
	if [ ! -f Makefile ]; then
		autoreconf -fi
		./configure --quiet
	fi
	make -j"$(nproc)" src/cfgfs
	cfgfs=$repo/src/cfgfs
fi

work=$(mktemp -d /var/tmp/cfgfs-demo.XXXXXX)
mnt=$work/app-config
etcd_pid=
# The cfgfs serving $mnt, if any (no procps on a minimal system: read /proc).
daemon_pid() {
	local p
	for p in /proc/[0-9]*; do
		if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q -- "cfgfs .*$mnt"; then
			echo "${p#/proc/}"
			return
		fi
	done
}
cleanup() {
	local pid
	pid=$(daemon_pid)
	if mountpoint -q "$mnt" 2>/dev/null; then
		fusermount3 -u "$mnt" || fusermount3 -uz "$mnt" || true
	fi
	# cfgfs exits once unmounted; etcd goes after it, or cfgfs would log etcd's going.
	for _ in $(seq 50); do
		[ -n "$pid" ] && [ -d "/proc/$pid" ] || break
		sleep 0.1
	done
	if [ -n "$etcd_pid" ]; then
		kill "$etcd_pid" 2>/dev/null || true
		wait "$etcd_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

# A port nothing listens on (the demo must not collide with a system etcd on 2379).
free_port() {
	local p
	for _ in $(seq 100); do
		p=$((20000 + RANDOM % 30000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	echo "demo: no free port found" >&2
	exit 1
}
client=$(free_port)
peer=$(free_port)
endpoint=127.0.0.1:$client

b64() { printf '%s' "$1" | base64 -w0; }
put() { # KEY VALUE-FILE
	curl -sf -X POST "http://$endpoint/v3/kv/put" \
		-d "{\"key\":\"$(b64 "$1")\",\"value\":\"$(base64 -w0 <"$2")\"}" >/dev/null
}

echo "==> starting etcd on $endpoint (data in $work/etcd)"
etcd --name demo --data-dir "$work/etcd" \
	--listen-client-urls "http://$endpoint" --advertise-client-urls "http://$endpoint" \
	--listen-peer-urls "http://127.0.0.1:$peer" \
	--initial-advertise-peer-urls "http://127.0.0.1:$peer" \
	--initial-cluster "demo=http://127.0.0.1:$peer" >"$work/etcd.log" 2>&1 &
etcd_pid=$!
for _ in $(seq 200); do
	curl -sf -X POST "http://$endpoint/v3/kv/range" -d '{"key":"AA=="}' >/dev/null 2>&1 && break
	sleep 0.05
done

echo "==> loading examples/app into etcd under the prefix app/"
(cd examples && find app -type f | sort | while read -r f; do put "$f" "$f"; done)

mkdir -p "$mnt"
echo "==> cfgfs etcd://$endpoint/app $mnt"
"$cfgfs" "etcd://$endpoint/app" "$mnt"

echo
echo "==> ls -lR $mnt"
ls -lR "$mnt"
echo
echo "==> cat $mnt/db/host"
cat "$mnt/db/host"

echo
echo "==> someone changes app/db/host in etcd (not through the mount)"
printf 'db2.internal\n' >"$work/new-host"
put app/db/host "$work/new-host"
acked=${EPOCHREALTIME/./}
# The read builtin, not cat: spawning a process per poll would dominate the measurement.
line=
until [ "$line" = "db2.internal" ]; do IFS= read -r line <"$mnt/db/host" || true; done
seen=${EPOCHREALTIME/./}
echo "==> cat $mnt/db/host"
cat "$mnt/db/host"
echo "    (new bytes readable $((seen - acked)) us after etcd acknowledged the write)"

echo
echo "==> what cfgfs knows about the file (getfattr -d)"
getfattr -d "$mnt/db/host" 2>/dev/null || echo "    (install 'attr' for getfattr)"

if [ -t 0 ]; then
	echo
	echo "The mount stays up until you press Enter: try cat, vim, tail -f, grep -r in $mnt"
	read -r _
fi
echo "==> fusermount3 -u $mnt"

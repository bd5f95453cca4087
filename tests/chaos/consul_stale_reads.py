#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Consul (1.8, one server as the harness runs it) answers default-mode reads
right after a restart from a state OLDER than what it acknowledged before the
restart: its Raft log is not replayed yet. ?consistent reads wait for it.
cfgfs's blocking query and its re-read after a reconnect are default-mode
reads, so a mount can go back to older contents for a moment after an agent
restart (found by the chaos run, tests/chaos/chaos.py --store consul).

    python3 tests/chaos/consul_stale_reads.py      exit 1 if the stale reads showed
"""
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness  # noqa: E402

N = 600
s = harness.ConsulServer()
s.start()
try:
    c = s.client()
    for i in range(1, N + 1):     # a log that takes a moment to replay: 5 x 4 KB per write
        c.txn_put_many({"x/k": str(i), **{"x/pad%d" % j: "p" * 4000 for j in range(5)}})
    print("acknowledged x/k = %d (index %d); SIGKILL, start, reading meanwhile" % (N, c.revision()))
    seen = {"default": set(), "consistent": set()}
    stop = threading.Event()

    def reader(mode):
        while not stop.is_set():
            try:
                st, _, raw = s.client(timeout=1).request(
                    "GET", "/v1/kv/x/k", query="consistent" if mode == "consistent" else None,
                    ok=(200, 404))
                seen[mode].add(int(harness.unb64(json.loads(raw)[0]["Value"])) if st == 200 else 0)
            except (harness.StoreError, OSError, ValueError):
                pass     # down, or no leader yet
    s.kill()
    ts = [threading.Thread(target=reader, args=(m,), daemon=True) for m in seen]
    for t in ts:
        t.start()
    s.start()
    time.sleep(1)        # keep reading for a second after the restart (observation window)
    stop.set()
    for t in ts:
        t.join()
    for m, vals in seen.items():
        print("%-10s reads returned x/k = %s" % (m, sorted(vals)))
    stale = sorted(v for v in seen["default"] if v < N)
    print("stale default-mode reads: %s" % (stale or "none (not shown this time; rerun)"))
    sys.exit(1 if stale else 0)
finally:
    s.close()

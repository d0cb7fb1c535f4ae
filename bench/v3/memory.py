#!/usr/bin/env python3
"""Memory per million v3 keys with history: N keys of 256-byte values written through the JSON gateway in
transactions of 128 puts, then each key overwritten once (2N revisions kept, no compaction). Prints the server's
RSS and data directory size before, after the first pass and after the overwrite.
Usage: bench/v3/memory.py URL PID DATA_DIR [N]; run it against a fresh Cairn and a fresh etcd 3.4 (RESULTS.md)."""
import base64
import http.client
import json
import os
import sys
import time
import urllib.parse

if len(sys.argv) < 4:
    sys.exit(__doc__)
url, pid, data_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
N = int(sys.argv[4]) if len(sys.argv) > 4 else 1_000_000
OPS_PER_TXN = 128  # etcd's --max-txn-ops default
p = urllib.parse.urlsplit(url)
c = http.client.HTTPConnection(p.hostname, p.port, timeout=30)


def rss_mib() -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def disk_mib() -> float:
    total = 0
    for root, _, files in os.walk(data_dir):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total / (1 << 20)


def write_pass(fill: bytes):
    value = base64.b64encode(fill * 256).decode()
    for first in range(0, N, OPS_PER_TXN):
        puts = [{"request_put": {"key": base64.b64encode(b"mem/%08d" % i).decode(), "value": value}}
                for i in range(first, min(first + OPS_PER_TXN, N))]
        c.request("POST", "/v3/kv/txn", body=json.dumps({"success": puts}))
        r = c.getresponse()
        body = r.read()
        assert r.status == 200, body


def report(stage: str, seconds: float = 0.0):
    print(f"{stage}: RSS {rss_mib():.0f} MiB, data dir {disk_mib():.0f} MiB" + (f", {seconds:.0f} s" if seconds else ""),
          flush=True)


report("fresh")
t = time.monotonic()
write_pass(b"a")
report(f"{N} keys", time.monotonic() - t)
t = time.monotonic()
write_pass(b"b")
time.sleep(2)
report(f"{N} keys, each overwritten once ({2 * N} revisions)", time.monotonic() - t)

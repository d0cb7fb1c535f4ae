#!/usr/bin/env python3
"""Writes COUNT keys of VALUE_BYTES each under PREFIX through URL with THREADS keep-alive connections.

usage: fill.py URL PREFIX COUNT VALUE_BYTES [THREADS]   prints the seconds it took.
"""
import http.client
import sys
import threading
import time
import urllib.parse

url = urllib.parse.urlparse(sys.argv[1])
prefix, count, size = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
threads = int(sys.argv[5]) if len(sys.argv) > 5 else 16
body = ("value=" + "x" * size).encode()
headers = {"Content-Type": "application/x-www-form-urlencoded"}
failures = []


def worker(t):
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    for k in range(t, count, threads):
        for attempt in range(5):
            try:
                conn.request("PUT", f"/v2/keys/{prefix}/k{k:07d}", body=body, headers=headers)
                r = conn.getresponse()
                r.read()
                if r.status in (200, 201):
                    break
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
            time.sleep(0.05)
        else:
            failures.append(k)


start = time.monotonic()
pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
for p in pool:
    p.start()
for p in pool:
    p.join()
if failures:
    sys.exit(f"{len(failures)} writes failed")
print(f"{time.monotonic() - start:.2f}")

#!/usr/bin/env python3
"""The v3 JSON gateway, one client: sequential puts, linearizable and serializable ranges on one keep-alive connection,
and the time from a put to its watch event. Usage: bench/v3/gateway.py URL [N]; run it against a fresh Cairn and a fresh etcd
3.4 started with the same flags (bench/v3/RESULTS.md)."""
import http.client, json, sys, time, threading, base64, statistics, urllib.parse
if len(sys.argv) < 2:
    sys.exit(__doc__)
url = sys.argv[1]; N = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
p = urllib.parse.urlsplit(url)
def conn(): return http.client.HTTPConnection(p.hostname, p.port, timeout=10)
c = conn()
def post(path, body):
    c.request("POST", path, body=json.dumps(body)); r = c.getresponse(); d = r.read(); assert r.status == 200, d; return d
k = lambda i: base64.b64encode(b"bench/%06d" % (i % 1000)).decode()
v = base64.b64encode(b"x" * 100).decode()
t = time.perf_counter()
for i in range(N): post("/v3/kv/put", {"key": k(i), "value": v})
put = N / (time.perf_counter() - t)
t = time.perf_counter()
for i in range(N): post("/v3/kv/range", {"key": k(i)})
rng = N / (time.perf_counter() - t)
t = time.perf_counter()
for i in range(N): post("/v3/kv/range", {"key": k(i), "serializable": True})
srng = N / (time.perf_counter() - t)
# watch latency: one watcher, put, time until the event line arrives
w = conn(); w.request("POST", "/v3/watch", body=json.dumps({"create_request": {"key": base64.b64encode(b"wl").decode()}}))
resp = w.getresponse(); resp.readline()
lat = []
for i in range(200):
    t = time.perf_counter(); post("/v3/kv/put", {"key": base64.b64encode(b"wl").decode(), "value": v}); resp.readline(); lat.append((time.perf_counter() - t) * 1000)
print(f"{url}: put {put:.0f}/s, range (linearizable) {rng:.0f}/s, range (serializable) {srng:.0f}/s, put->watch event median {statistics.median(lat):.2f} ms p99 {sorted(lat)[197]:.2f} ms (sequential, one connection, {N} ops, 100-byte values)")

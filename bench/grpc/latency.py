#!/usr/bin/env python3
"""gRPC latency and watch fan-out against one member: sequential unary Put and Range (linearizable) on one channel,
percentiles of each call; then W watchers on one Watch stream and the time from a Put until every watcher has its
event. Usage: bench/grpc/latency.py HOST:PORT [N] [W] (stubs compiled from proto/ with grpcio-tools)."""
import atexit, os, queue, shutil, statistics, sys, tempfile, threading, time
import grpc
from grpc_tools import protoc
if len(sys.argv) < 2:
    sys.exit(__doc__)
target = sys.argv[1]; N = int(sys.argv[2]) if len(sys.argv) > 2 else 2000; W = int(sys.argv[3]) if len(sys.argv) > 3 else 100
out = tempfile.mkdtemp(); atexit.register(shutil.rmtree, out, ignore_errors=True); root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto")
assert protoc.main(["protoc", "-I" + root, "--python_out=" + out, "--grpc_python_out=" + out, "mvccpb/kv.proto", "authpb/auth.proto", "etcdserverpb/rpc.proto"]) == 0
sys.path.insert(0, out)
from etcdserverpb import rpc_pb2 as pb, rpc_pb2_grpc as pbg  # noqa: E402
ch = grpc.insecure_channel(target); kv = pbg.KVStub(ch)
def pct(xs, p): xs = sorted(xs); return xs[min(len(xs) - 1, int(len(xs) * p))]
def timed(f):
    lat = []
    for i in range(N):
        t = time.perf_counter(); f(i); lat.append((time.perf_counter() - t) * 1000)
    return lat
value = b"x" * 100
put = timed(lambda i: kv.Put(pb.PutRequest(key=b"bench/%06d" % (i % 1000), value=value)))
rng = timed(lambda i: kv.Range(pb.RangeRequest(key=b"bench/%06d" % (i % 1000))))
requests = queue.Queue(); answers = queue.Queue()
for i in range(W):
    requests.put(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"fan")))
stream = pbg.WatchStub(ch).Watch(iter(requests.get, None))
def read():
    try:
        for a in stream: answers.put(a)
    except grpc.RpcError:  # the cancel at the end
        pass
threading.Thread(target=read, daemon=True).start()
created = 0
while created < W: created += answers.get(timeout=10).created
fan = []
for i in range(50):
    t = time.perf_counter(); kv.Put(pb.PutRequest(key=b"fan", value=value)); got = 0
    while got < W: got += len(answers.get(timeout=10).events)
    fan.append((time.perf_counter() - t) * 1000)
requests.put(None); stream.cancel()
f = lambda xs: f"p50 {statistics.median(xs):.2f} ms, p99 {pct(xs, 0.99):.2f} ms"
print(f"{target}: sequential Put {f(put)}; Range (linearizable) {f(rng)}; a Put's event to {W} watchers on one stream {f(fan)} ({N} calls each, 100-byte values, Python grpcio client)")

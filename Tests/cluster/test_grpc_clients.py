"""etcd's v3 gRPC API from a Python gRPC client (grpcio, stubs compiled from proto/ at run time) replaying Kubernetes'
patterns on three members while the leader is killed, etcd's error codes, and hostile HTTP/2 gRPC frames (h2). Skipped
when grpcio, grpcio-tools or h2 is missing; passes against etcd 3.4 too."""
import atexit
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from cluster import HOST, is_etcd

grpc = pytest.importorskip("grpc")
protoc = pytest.importorskip("grpc_tools.protoc")
ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
RETRY_S = 20


def _stubs():
    out = tempfile.mkdtemp(prefix="cairn-grpc-stubs-")
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    status = protoc.main(["protoc", "-I" + os.path.join(ROOT, "proto"), "--python_out=" + out, "--grpc_python_out=" + out,
                          "mvccpb/kv.proto", "authpb/auth.proto", "etcdserverpb/rpc.proto"])
    assert status == 0, "protoc failed"
    sys.path.insert(0, out)
    from etcdserverpb import rpc_pb2, rpc_pb2_grpc  # noqa: E402
    return rpc_pb2, rpc_pb2_grpc


pb, pbg = _stubs()


def prefix_end(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


class Client:
    """A client over every member, as the API server's: a call goes to the preferred member and, while members are
    unavailable (killed, electing), to the next, for at most RETRY_S."""

    def __init__(self, members):
        self.members = members
        self.channels = {m.idx: grpc.insecure_channel(f"{HOST}:{m.client_port}") for m in members}
        self.preferred = 0

    def close(self):
        for ch in self.channels.values():
            ch.close()

    def call(self, service, method, request):
        deadline = time.monotonic() + RETRY_S
        attempt = 0
        while True:
            m = self.members[(self.preferred + attempt) % len(self.members)]
            stub = getattr(pbg, service + "Stub")(self.channels[m.idx])
            try:
                return getattr(stub, method)(request, timeout=5)
            except grpc.RpcError as e:
                if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) \
                        or time.monotonic() > deadline:
                    raise
                attempt += 1
                time.sleep(0.2)


def create(client, key, value):
    """Kubernetes' create: put only if the key does not exist (mod_revision 0); a retry that finds its own value wins."""
    txn = pb.TxnRequest(compare=[pb.Compare(key=key, target=pb.Compare.MOD, result=pb.Compare.EQUAL, mod_revision=0)],
                        success=[pb.RequestOp(request_put=pb.PutRequest(key=key, value=value))],
                        failure=[pb.RequestOp(request_range=pb.RangeRequest(key=key))])
    r = client.call("KV", "Txn", txn)
    if r.succeeded:
        return r.header.revision
    kv = r.responses[0].response_range.kvs[0]
    assert kv.value == value, (key, kv)
    return kv.mod_revision


def update(client, key, value):
    """Kubernetes' GuaranteedUpdate: read, then put only if mod_revision is unchanged; retried on conflict."""
    for _ in range(20):
        current = client.call("KV", "Range", pb.RangeRequest(key=key)).kvs[0]
        if current.value == value:
            return current.mod_revision
        txn = pb.TxnRequest(
            compare=[pb.Compare(key=key, target=pb.Compare.MOD, result=pb.Compare.EQUAL, mod_revision=current.mod_revision)],
            success=[pb.RequestOp(request_put=pb.PutRequest(key=key, value=value))],
            failure=[pb.RequestOp(request_range=pb.RangeRequest(key=key))])
        r = client.call("KV", "Txn", txn)
        if r.succeeded:
            return r.header.revision
    raise AssertionError(f"update of {key} kept conflicting")


def list_all(client, prefix, limit, revision):
    """Kubernetes' paginated list at one revision: continue from the last key + \\0 until `more` is false."""
    keys, start, pages = [], prefix, 0
    while True:
        r = client.call("KV", "Range", pb.RangeRequest(key=start, range_end=prefix_end(prefix), limit=limit,
                                                     revision=revision))
        pages += 1
        keys += [kv.key for kv in r.kvs]
        if not r.more:
            return keys, pages
        start = r.kvs[-1].key + b"\x00"


class Watch:
    """One Watch stream on a member's client port; requests sent as the test puts them, answers (or the stream's
    error) queued by a thread as they come. Shared with test_grpc_differential.py."""

    def __init__(self, port, create_request):
        self.channel = grpc.insecure_channel(f"{HOST}:{port}")
        self.requests = queue.Queue()
        self.requests.put(pb.WatchRequest(create_request=create_request))
        self.answers = queue.Queue()
        self.call = pbg.WatchStub(self.channel).Watch(iter(self.requests.get, None))
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            for answer in self.call:
                self.answers.put(answer)
        except grpc.RpcError as e:
            self.answers.put(e)

    def next(self, timeout=10):
        answer = self.answers.get(timeout=timeout)
        assert not isinstance(answer, grpc.RpcError), answer
        return answer

    def close(self):
        self.requests.put(None)
        self.call.cancel()
        self.channel.close()


def test_kubernetes_patterns_while_the_leader_is_killed(make_cluster):
    c = make_cluster(3)
    leader = c.wait_leader()
    followers = [i for i in range(3) if i != leader]
    client = Client(c.members)
    client.preferred = leader
    try:
        status = client.call("Maintenance", "Status", pb.StatusRequest())
        assert status.version.startswith("3.4."), status
        lease = client.call("Lease", "LeaseGrant", pb.LeaseGrantRequest(TTL=60))
        client.call("KV", "Put", pb.PutRequest(key=b"/registry/events/e0", value=b"event", lease=lease.ID))

        prefix = b"/registry/pods/"
        first = 0
        for i in range(12):
            rev = create(client, prefix + b"p%02d" % i, b"v0")
            first = first or rev
        listed_at = client.call("KV", "Range", pb.RangeRequest(key=prefix, range_end=prefix_end(prefix), count_only=True))
        keys, pages = list_all(client, prefix, 5, listed_at.header.revision)
        assert keys == [prefix + b"p%02d" % i for i in range(12)] and pages == 3, (keys, pages)

        # A watch from the list's revision on a member that survives, with prev_kv and progress notifications.
        watch = Watch(c[followers[0]].client_port, pb.WatchCreateRequest(
            key=prefix, range_end=prefix_end(prefix), start_revision=listed_at.header.revision + 1, prev_kv=True,
            progress_notify=True))
        created = watch.next()
        assert created.created and not created.canceled, created

        acknowledged = {}
        for i in range(6):
            acknowledged[update(client, prefix + b"p%02d" % i, b"v1")] = prefix + b"p%02d" % i
        c.kill(leader)
        client.preferred = followers[1]
        for i in range(6, 12):
            acknowledged[update(client, prefix + b"p%02d" % i, b"v1")] = prefix + b"p%02d" % i

        seen = {}
        deadline = time.monotonic() + RETRY_S
        while len(seen) < len(acknowledged) and time.monotonic() < deadline:
            answer = watch.next()
            for event in answer.events:
                assert event.kv.mod_revision not in seen, "an event was delivered twice"
                assert event.prev_kv.value == b"v0" and event.kv.value == b"v1", event
                seen[event.kv.mod_revision] = event.kv.key
        assert seen == acknowledged
        assert list(seen) == sorted(seen), "events out of revision order"

        # A progress request: answered with watch ID -1 at a revision no earlier than the last event.
        watch.requests.put(pb.WatchRequest(progress_request=pb.WatchProgressRequest()))
        progress = watch.next()
        assert progress.watch_id == -1 and not progress.events and progress.header.revision >= max(seen), progress
        watch.close()

        # Kubernetes' compaction: a txn on the compaction key's version, then Compact.
        key = b"compact_rev_key"
        txn = pb.TxnRequest(compare=[pb.Compare(key=key, target=pb.Compare.VERSION, result=pb.Compare.EQUAL, version=0)],
                            success=[pb.RequestOp(request_put=pb.PutRequest(key=key, value=b"%d" % first))],
                            failure=[pb.RequestOp(request_range=pb.RangeRequest(key=key))])
        assert client.call("KV", "Txn", txn).succeeded
        client.call("KV", "Compact", pb.CompactionRequest(revision=first))
        with pytest.raises(grpc.RpcError) as refused:
            client.call("KV", "Range", pb.RangeRequest(key=prefix, revision=first - 1))
        assert refused.value.code() == grpc.StatusCode.OUT_OF_RANGE
        assert refused.value.details() == "etcdserver: mvcc: required revision has been compacted"
    finally:
        client.close()


def test_etcds_error_codes_and_messages(make_cluster):
    c = make_cluster(1)
    client = Client(c.members)
    try:
        def refused(service, method, request):
            with pytest.raises(grpc.RpcError) as e:
                client.call(service, method, request)
            return e.value.code(), e.value.details()

        put = lambda k: pb.RequestOp(request_put=pb.PutRequest(key=k, value=b"v"))  # noqa: E731
        assert refused("KV", "Range", pb.RangeRequest()) == (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: key is not provided")
        assert refused("KV", "Txn", pb.TxnRequest(success=[put(b"a"), put(b"a")])) == \
            (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: duplicate key given in txn request")
        assert refused("KV", "Txn", pb.TxnRequest(success=[put(b"k%d" % i) for i in range(129)])) == \
            (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: too many operations in txn request")
        assert refused("KV", "Range", pb.RangeRequest(key=b"a", revision=1000)) == \
            (grpc.StatusCode.OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision")
        assert refused("Lease", "LeaseRevoke", pb.LeaseRevokeRequest(ID=12345)) == \
            (grpc.StatusCode.NOT_FOUND, "etcdserver: requested lease not found")
        assert refused("Cluster", "MemberRemove", pb.MemberRemoveRequest(ID=12345)) == \
            (grpc.StatusCode.NOT_FOUND, "etcdserver: member not found")
        # gzip-compressed messages both ways (grpc-encoding: gzip); etcd 3.4 has no gzip decompressor and says so.
        kv = pbg.KVStub(client.channels[0])
        if is_etcd():
            with pytest.raises(grpc.RpcError) as e:
                kv.Put(pb.PutRequest(key=b"zipped", value=b"z"), timeout=5, compression=grpc.Compression.Gzip)
            assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
        else:
            kv.Put(pb.PutRequest(key=b"zipped", value=b"z" * 5000), timeout=5, compression=grpc.Compression.Gzip)
            got = kv.Range(pb.RangeRequest(key=b"zipped"), timeout=5, compression=grpc.Compression.Gzip)
            assert got.kvs[0].value == b"z" * 5000
        ttl = client.call("Lease", "LeaseTimeToLive", pb.LeaseTimeToLiveRequest(ID=12345))
        assert ttl.TTL == -1
        channel = client.channels[0]
        health = channel.unary_unary("/grpc.health.v1.Health/Check", request_serializer=bytes,
                                     response_deserializer=bytes)
        assert health(b"", timeout=5) == b"\x08\x01"  # status: SERVING
        unknown = channel.unary_unary("/etcdserverpb.KV/Nope", request_serializer=bytes, response_deserializer=bytes)
        with pytest.raises(grpc.RpcError) as e:
            unknown(b"", timeout=5)
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
        # A request past --max-request-bytes (1.5 MiB) plus gRPC's 512 KiB.
        with pytest.raises(grpc.RpcError) as e:
            client.call("KV", "Put", pb.PutRequest(key=b"big", value=b"x" * (2 * 1024 * 1024 + 10)))
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        with pytest.raises(grpc.RpcError) as e:
            client.call("KV", "Put", pb.PutRequest(key=b"big", value=b"x" * (1024 * 1024 + 600 * 1024)))
        assert e.value.details() == "etcdserver: request is too large", e.value
    finally:
        client.close()


def test_hostile_grpc_frames_get_a_status_and_the_member_keeps_serving(make_cluster):
    h2 = pytest.importorskip("h2.connection")
    h2config = pytest.importorskip("h2.config")
    h2events = pytest.importorskip("h2.events")
    c = make_cluster(1)
    range_request = pb.RangeRequest(key=b"a").SerializeToString()
    framed = b"\x00" + len(range_request).to_bytes(4, "big") + range_request
    cases = [
        ("a bad flag", "/etcdserverpb.KV/Range", {}, b"\x07" + framed[1:]),
        ("compressed without an encoding", "/etcdserverpb.KV/Range", {}, b"\x01" + framed[1:]),
        ("a gigabyte announced", "/etcdserverpb.KV/Range", {}, b"\x00\x40\x00\x00\x00"),
        ("cut inside a message", "/etcdserverpb.KV/Range", {}, framed[:-2]),
        ("garbage protobuf", "/etcdserverpb.KV/Range", {}, b"\x00\x00\x00\x00\x03\xff\xff\xff"),
        ("an unknown encoding", "/etcdserverpb.KV/Range", {"grpc-encoding": "snappy"}, framed),
        ("a malformed timeout", "/etcdserverpb.KV/Range", {"grpc-timeout": "soon"}, framed),
        ("garbage on the watch stream", "/etcdserverpb.Watch/Watch", {}, b"\x00\x00\x00\x00\x02\xff\xff"),
        ("an unknown service", "/nope.Nope/Nope", {}, framed),
        # A unary call is answered on its first message, as grpc-go's server (etcd) answers it: the second is not read.
        ("two messages on a unary call", "/etcdserverpb.KV/Range", {}, framed + framed),
    ]
    for name, path, extra, body in cases:
        sock = socket.create_connection((HOST, c[0].client_port), timeout=5)
        conn = h2.H2Connection(config=h2config.H2Configuration(client_side=True))
        conn.initiate_connection()
        headers = [(":method", "POST"), (":path", path), (":scheme", "http"), (":authority", f"{HOST}:{c[0].client_port}"),
                   ("content-type", "application/grpc"), ("te", "trailers")] + list(extra.items())
        conn.send_headers(1, headers)
        conn.send_data(1, body, end_stream=True)
        sock.sendall(conn.data_to_send())
        status = None
        deadline = time.monotonic() + 10
        while status is None and time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, (h2events.ResponseReceived, h2events.TrailersReceived)):
                    fields = {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
                              for k, v in event.headers}
                    if "grpc-status" in fields:
                        status = int(fields["grpc-status"])
                elif isinstance(event, h2events.StreamReset):
                    status = -1
            sock.sendall(conn.data_to_send())
        sock.close()
        if name.startswith("two messages"):
            assert status == 0, (name, status)
        else:
            assert status is not None and status != 0, (name, status)
    # The member still answers.
    client = Client(c.members)
    try:
        assert client.call("KV", "Range", pb.RangeRequest(key=b"a")).header.revision >= 1
    finally:
        client.close()


def test_grpc_calls_need_a_token_once_auth_is_on(make_cluster):
    """Auth enabled through the gateway: gRPC calls without `token` metadata are refused as etcd refuses them; with a
    token, key permissions decide (a user may write under her prefix only, root everywhere), admin calls need root."""
    import json
    import urllib.request
    c = make_cluster(1)

    def gateway(path, body, token=None):
        request = urllib.request.Request(f"{c[0].client_url}/v3/{path}", data=json.dumps(body).encode(), method="POST")
        if token:
            request.add_header("Authorization", token)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    gateway("auth/role/add", {"name": "root"})
    gateway("auth/user/add", {"name": "root", "password": "rootpw"})
    gateway("auth/user/grant", {"user": "root", "role": "root"})
    gateway("auth/user/add", {"name": "alice", "password": "alicepw"})
    gateway("auth/role/add", {"name": "app"})
    b64 = lambda raw: __import__("base64").b64encode(raw).decode()  # noqa: E731
    gateway("auth/role/grant", {"name": "app", "perm": {"permType": "READWRITE", "key": b64(b"app/"), "range_end": b64(b"app0")}})
    gateway("auth/user/grant", {"user": "alice", "role": "app"})
    gateway("auth/enable", {})
    root = gateway("auth/authenticate", {"name": "root", "password": "rootpw"})["token"]
    alice = gateway("auth/authenticate", {"name": "alice", "password": "alicepw"})["token"]
    channel = grpc.insecure_channel(f"{HOST}:{c[0].client_port}")
    kv, maintenance = pbg.KVStub(channel), pbg.MaintenanceStub(channel)
    try:
        with pytest.raises(grpc.RpcError) as e:
            kv.Put(pb.PutRequest(key=b"k", value=b"v"), timeout=5)
        assert (e.value.code(), e.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: user name is empty")
        with pytest.raises(grpc.RpcError) as e:
            kv.Put(pb.PutRequest(key=b"k", value=b"v"), timeout=5, metadata=[("token", "not-a-token")])
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED, e.value
        with pytest.raises(grpc.RpcError) as e:
            kv.Put(pb.PutRequest(key=b"k", value=b"v"), timeout=5, metadata=[("token", alice)])
        assert (e.value.code(), e.value.details()) == (grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied")
        # alice's role lets her write under app/ only.
        kv.Put(pb.PutRequest(key=b"app/x", value=b"v"), timeout=5, metadata=[("token", alice)])
        kv.Put(pb.PutRequest(key=b"k", value=b"v"), timeout=5, metadata=[("token", root)])
        assert kv.Range(pb.RangeRequest(key=b"k"), timeout=5, metadata=[("token", root)]).kvs[0].value == b"v"
        assert maintenance.Status(pb.StatusRequest(), timeout=5).version.startswith("3.4.")
        # A watch alice may not read is created and canceled at once, with etcd's reason; root's is created.
        for token, readable in ((alice, False), (root, True)):
            stream = pbg.WatchStub(channel).Watch(iter([pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"k"))]),
                                                  timeout=5, metadata=[("token", token)])
            first = next(stream)
            stream.cancel()
            assert first.created and first.canceled != readable and first.watch_id == (0 if readable else -1), first
            if not readable:
                assert first.cancel_reason == "rpc error: code = PermissionDenied desc = etcdserver: permission denied"
        # Member changes and snapshots are root's.
        with pytest.raises(grpc.RpcError) as e:
            pbg.ClusterStub(channel).MemberRemove(pb.MemberRemoveRequest(ID=1), timeout=5, metadata=[("token", alice)])
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED, e.value
        # Authenticate over gRPC, as `etcdctl --user` does before its calls.
        token = pbg.AuthStub(channel).Authenticate(pb.AuthenticateRequest(name="root", password="rootpw"), timeout=10).token
        assert kv.Range(pb.RangeRequest(key=b"k"), timeout=5, metadata=[("token", token)]).kvs[0].value == b"v"
        with pytest.raises(grpc.RpcError) as e:
            pbg.AuthStub(channel).Authenticate(pb.AuthenticateRequest(name="root", password="wrong"), timeout=10)
        assert e.value.details() == "etcdserver: authentication failed, invalid user ID or password", e.value
        env = dict(os.environ, ETCDCTL_API="3")
        done = subprocess.run(["etcdctl", "--endpoints", c[0].client_url, "--user", "root:rootpw", "put", "k2", "v2"],
                              env=env, capture_output=True, text=True, timeout=20)
        assert done.returncode == 0 and done.stdout.strip() == "OK", done
        done = subprocess.run(["etcdctl", "--endpoints", c[0].client_url, "--user", "alice:alicepw", "get", "k2"],
                              env=env, capture_output=True, text=True, timeout=20)
        assert done.returncode != 0 and "etcdserver: permission denied" in done.stderr, done
    finally:
        channel.close()

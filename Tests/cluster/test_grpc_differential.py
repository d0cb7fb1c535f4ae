"""etcd's v3 gRPC answers, live: the same calls to a fresh etcd 3.4 member and a fresh member of the server under test,
every answer (message or status code and message) compared field for field after normalising what must differ
between two clusters (IDs, terms, drawn lease IDs, status sizes and indexes, the reported version)."""
import os
import queue
import shutil
import subprocess
import tempfile
import time

import pytest

from cluster import HOST, free_ports

grpc = pytest.importorskip("grpc")
pytest.importorskip("grpc_tools.protoc")
from test_grpc_clients import Watch, pb, pbg  # noqa: E402  (stubs compiled from proto/)
from google.protobuf import json_format  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd not installed")


@pytest.fixture
def etcd_member():
    client, peer = free_ports(2)
    data = tempfile.mkdtemp(prefix="cairn-grpc-diff-etcd-")
    proc = subprocess.Popen(["etcd", "--data-dir", data, "--listen-client-urls", f"http://{HOST}:{client}",
                             "--advertise-client-urls", f"http://{HOST}:{client}",
                             "--listen-peer-urls", f"http://{HOST}:{peer}",
                             "--initial-advertise-peer-urls", f"http://{HOST}:{peer}",
                             "--initial-cluster", f"default=http://{HOST}:{peer}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        yield client
    finally:
        proc.kill()
        proc.wait(timeout=10)
        shutil.rmtree(data, ignore_errors=True)


def normalised(message):
    d = json_format.MessageToDict(message, preserving_proto_field_name=True)

    def walk(node, parent_key=""):
        if isinstance(node, dict):
            for key in list(node):
                if key in ("cluster_id", "member_id", "raft_term", "leader", "raftIndex", "raftTerm",
                           "raftAppliedIndex", "dbSize", "dbSizeInUse", "version") and not isinstance(node[key], dict):
                    node[key] = "N"
                elif key == "ID" and parent_key in ("", "leases", "members", "member"):
                    node[key] = "ID"
                elif key in ("peerURLs", "clientURLs"):
                    node[key] = ["URL"]
                elif key == "name":
                    node[key] = "NAME"
                elif key == "TTL" and parent_key == "ttl":
                    node[key] = "LEFT"
                else:
                    walk(node[key], key)
        elif isinstance(node, list):
            for item in node:
                walk(item, parent_key)
    walk(d)
    return d


def script(port):
    """The calls, in order, against one member; each answer normalised, or (code, message) for a refusal."""
    channel = grpc.insecure_channel(f"{HOST}:{port}")
    kv, lease, cluster, maintenance = (pbg.KVStub(channel), pbg.LeaseStub(channel), pbg.ClusterStub(channel),
                                       pbg.MaintenanceStub(channel))
    deadline = time.monotonic() + 20
    while True:
        try:
            kv.Range(pb.RangeRequest(key=b"ready"), timeout=2)
            break
        except grpc.RpcError:
            assert time.monotonic() < deadline, f"no member answering on {port}"
            time.sleep(0.2)
    answers = []

    def ask(name, method, request, transform=normalised):
        try:
            answers.append((name, transform(method(request, timeout=5))))
        except grpc.RpcError as e:
            answers.append((name, (e.code().name, e.details())))

    put = lambda k, v, **kw: pb.PutRequest(key=k, value=v, **kw)  # noqa: E731
    ask("put a", kv.Put, put(b"a", b"1"))
    ask("put a prev_kv", kv.Put, put(b"a", b"2", prev_kv=True))
    ask("put b", kv.Put, put(b"b", b"3"))
    ask("put c", kv.Put, put(b"c", b"4"))
    ask("range a", kv.Range, pb.RangeRequest(key=b"a"))
    ask("range all sorted desc limit", kv.Range, pb.RangeRequest(key=b"\x00", range_end=b"\x00", limit=2,
                                                                 sort_order=pb.RangeRequest.DESCEND))
    ask("range keys only", kv.Range, pb.RangeRequest(key=b"a", range_end=b"z", keys_only=True))
    ask("range count only", kv.Range, pb.RangeRequest(key=b"a", range_end=b"z", count_only=True))
    ask("range at rev 2", kv.Range, pb.RangeRequest(key=b"a", revision=2))
    ask("range future", kv.Range, pb.RangeRequest(key=b"a", revision=100))
    ask("range empty key", kv.Range, pb.RangeRequest())
    ask("put ignore_value missing", kv.Put, pb.PutRequest(key=b"nope", ignore_value=True))
    ask("put ignore_value with value", kv.Put, pb.PutRequest(key=b"a", value=b"x", ignore_value=True))
    ask("delete b prev_kv", kv.DeleteRange, pb.DeleteRangeRequest(key=b"b", prev_kv=True))
    ask("delete none", kv.DeleteRange, pb.DeleteRangeRequest(key=b"zz"))
    compare = pb.Compare(key=b"a", target=pb.Compare.VALUE, result=pb.Compare.EQUAL, value=b"2")
    ops = [pb.RequestOp(request_range=pb.RangeRequest(key=b"a")),
           pb.RequestOp(request_put=pb.PutRequest(key=b"d", value=b"5", prev_kv=True)),
           pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=b"c", prev_kv=True)),
           pb.RequestOp(request_txn=pb.TxnRequest(success=[pb.RequestOp(request_range=pb.RangeRequest(key=b"d"))]))]
    ask("txn success", kv.Txn, pb.TxnRequest(compare=[compare], success=ops))
    ask("txn failure", kv.Txn, pb.TxnRequest(compare=[compare], failure=[ops[0]]))
    ask("txn mod 0 create", kv.Txn, pb.TxnRequest(
        compare=[pb.Compare(key=b"e", target=pb.Compare.MOD, result=pb.Compare.EQUAL, mod_revision=0)],
        success=[pb.RequestOp(request_put=pb.PutRequest(key=b"e", value=b"6"))]))
    ask("txn duplicate", kv.Txn, pb.TxnRequest(success=[ops[1], ops[1]]))
    ask("txn empty op", kv.Txn, pb.TxnRequest(success=[pb.RequestOp()]))
    ask("compact 3", kv.Compact, pb.CompactionRequest(revision=3))
    ask("compact 2 again", kv.Compact, pb.CompactionRequest(revision=2))
    ask("range compacted", kv.Range, pb.RangeRequest(key=b"a", revision=2))
    ask("compact future", kv.Compact, pb.CompactionRequest(revision=1000))
    ask("lease grant", lease.LeaseGrant, pb.LeaseGrantRequest(TTL=60, ID=7))
    ask("lease grant same id", lease.LeaseGrant, pb.LeaseGrantRequest(TTL=60, ID=7))
    ask("put with lease", kv.Put, put(b"l", b"v", lease=7))
    ask("put unknown lease", kv.Put, put(b"l", b"v", lease=8))
    ask("timetolive keys", lease.LeaseTimeToLive, pb.LeaseTimeToLiveRequest(ID=7, keys=True))
    ask("timetolive unknown", lease.LeaseTimeToLive, pb.LeaseTimeToLiveRequest(ID=8))
    ask("leases", lease.LeaseLeases, pb.LeaseLeasesRequest())
    keepalive = lease.LeaseKeepAlive(iter([pb.LeaseKeepAliveRequest(ID=7), pb.LeaseKeepAliveRequest(ID=8)]), timeout=5)
    answers.append(("keep-alive stream", [normalised(a) for a in keepalive]))
    ask("revoke", lease.LeaseRevoke, pb.LeaseRevokeRequest(ID=7))
    ask("revoke again", lease.LeaseRevoke, pb.LeaseRevokeRequest(ID=7))
    ask("range after revoke", kv.Range, pb.RangeRequest(key=b"l"))
    ask("status", maintenance.Status, pb.StatusRequest())
    ask("alarm list", maintenance.Alarm, pb.AlarmRequest())
    ask("member list", cluster.MemberList, pb.MemberListRequest())
    ask("member add bad url", cluster.MemberAdd, pb.MemberAddRequest(peerURLs=["not a url"]))
    ask("member remove unknown", cluster.MemberRemove, pb.MemberRemoveRequest(ID=1234))
    ask("defragment", maintenance.Defragment, pb.DefragmentRequest())

    # A watch stream: a watcher replaying history with prev_kv, one whose start is compacted, then a cancel once
    # the history has arrived (etcd replays from another goroutine, so a cancel sent at once may overtake it).
    # Answers of different watchers may interleave either way: compared per watch ID, in order.
    watch = Watch(port, pb.WatchCreateRequest(key=b"a", range_end=b"z", start_revision=4, prev_kv=True))
    got = {}

    def collect(seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                answer = watch.answers.get(timeout=max(0.01, end - time.monotonic()))
            except queue.Empty:
                return
            got.setdefault(answer.watch_id, []).append(normalised(answer))

    collect(1.5)
    watch.requests.put(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"e", start_revision=1)))
    collect(1.0)
    watch.requests.put(pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=0)))
    collect(1.0)
    watch.requests.put(pb.WatchRequest(progress_request=pb.WatchProgressRequest()))
    collect(1.0)
    watch.close()
    answers.append(("watch stream", got))
    channel.close()
    return answers


def test_grpc_answers_match_etcd(make_cluster, etcd_member):
    c = make_cluster(1)
    theirs = script(etcd_member)
    ours = script(c[0].client_port)
    mismatches = [(name, want, got) for (name, want), (_, got) in zip(theirs, ours) if want != got]
    for name, want, got in mismatches:
        print(f"--- {name}\n etcd:  {want}\n ours:  {got}")
    assert not mismatches, [m[0] for m in mismatches]

"""A stranger on every member's peer port (Cairn only: the peer protocol is Cairn's own framing).

It speaks the framing correctly (length, type, CRC32C over type and payload; Sources/CairnPeer/PeerFrame.swift)
and sends what the issue saw kill a whole cluster: hellos claiming cluster ID 0 or a member ID it does not have,
a heartbeat with term 2^64-1, a forged proposal writing /injected-by-stranger, appends carrying undecodable
entries, damaged payloads with correct checksums, and a 64 MB frame announced before any hello. Every member
must stay up, refuse all of it, keep taking writes, agree with the others, and come back from a restart."""
import os
import random
import socket
import struct
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from cluster import HOST, flatten, is_etcd  # noqa: E402
from conftest import record  # noqa: E402

pytestmark = pytest.mark.skipif(is_etcd(), reason="the peer protocol under attack is Cairn's own")

HELLO, RAFT, PROPOSE = 250, 1, 2
APPEND, HEARTBEAT, VOTE = 4, 6, 2
NORMAL = 3


def _crc32c_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def frame(kind: int, payload: bytes) -> bytes:
    return struct.pack("<IBI", len(payload), kind, crc32c(bytes([kind]) + payload)) + payload


def hello(cluster: int, sender: int, target: int) -> bytes:
    return frame(HELLO, struct.pack("<QQQB", cluster, sender, target, 0))


def put_command(path: str, value: str) -> bytes:
    """A StoreCommand (Sources/CairnStore/CommandEncoding.swift): version 1, PUT, no flags."""
    text = b"".join(struct.pack("<I", len(s)) + s for s in (path.encode(), value.encode(), b""))
    return struct.pack("<BBBBQq", 1, 0, 0, 0, 0, 0) + text


def proposal(origin: int, command: bytes, body_kind: int = 0) -> bytes:
    """A Proposal (Sources/CairnServer/NodeWire.swift): version 1, origin, incarnation, sequence, no session."""
    return struct.pack("<BQQQBB", 1, origin, 7, 1, 0, body_kind) + command


def raft_message(kind: int, sender: int, target: int, term: int, log_term=0, index=0, commit=0,
                 entries=(), data=b"") -> bytes:
    """A Raft Message (Sources/CairnRaft/RaftCodec.swift)."""
    out = struct.pack("<BB", kind, 0)
    out += struct.pack("<11Q", sender, target, term, log_term, index, commit, 0, 0, 0, 0, 0)
    out += struct.pack("<I", len(data)) + data + struct.pack("<I", len(entries))
    for e_term, e_index, e_kind, e_data in entries:
        out += struct.pack("<QQQB", e_term, e_index, 0, e_kind) + struct.pack("<I", len(e_data)) + e_data
    return out


def send_and_watch(port: int, data: bytes, wait_s: float = 3.0) -> bool:
    """Sends `data` on a new connection; True when the member closed it within `wait_s`."""
    s = socket.create_connection((HOST, port), timeout=wait_s)
    try:
        try:
            s.sendall(data)
        except OSError:
            return True
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(4096)
            except socket.timeout:
                return False
            except OSError:
                return True
            if not chunk:
                return True
        return False
    finally:
        s.close()


def mutate(payload: bytes, rng: random.Random) -> bytes:
    b = bytearray(payload)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(4)
        pos = rng.randrange(len(b)) if b else 0
        if op == 0 and b:
            b[pos] ^= 1 << rng.randrange(8)
        elif op == 1:
            b.insert(pos, rng.randrange(256))
        elif op == 2 and len(b) >= 8:
            at = rng.randrange(len(b) - 7)
            b[at:at + 8] = struct.pack("<Q", rng.choice([0, 2**64 - 1, 2**63, 2**62, 2**32]))
        else:
            del b[pos:]
    return bytes(b)


def test_a_stranger_on_every_peer_port_changes_nothing(make_cluster):
    c = make_cluster(3)
    seed = int(os.environ.get("CLUSTER_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    for k in range(10):
        c.put_retry(f"st/before{k}", f"b{k}")
    r = c.members[0].request("GET", "/v2/members")
    ids = [int(m["id"], 16) for m in r.json["members"]]
    cluster_id = int(r.headers["X-Etcd-Cluster-Id"], 16)
    stranger = 0x5757_5757
    mutated_closed = mutated_sent = 0
    for target_index, member in enumerate(c.members):
        target = ids[[m["name"] for m in r.json["members"]].index(member.name)]
        other = next(i for i in ids if i != target)
        forged_put = proposal(stranger, put_command("/injected-by-stranger", "x"))
        attacks = [
            # Not a member: refused at the hello, whatever follows.
            hello(cluster_id, stranger, target) + frame(PROPOSE, forged_put),
            hello(0, stranger, target) + frame(RAFT, raft_message(HEARTBEAT, stranger, target, 2**64 - 1)),
            hello(0, stranger, target) + frame(PROPOSE, proposal(stranger, put_command("/injected-by-stranger", "y"))),
            # A 64 MB frame announced before any hello.
            struct.pack("<IBI", 64 << 20, HELLO, 0) + bytes(60_000),
            # Claiming a member's ID: every frame is validated; out of range or undecodable closes the link.
            hello(cluster_id, other, target) + frame(RAFT, raft_message(HEARTBEAT, other, target, 2**64 - 1)),
            hello(cluster_id, other, target) + frame(RAFT, raft_message(VOTE, other, target, 2**63, log_term=2**63, index=2**64 - 1)),
            hello(cluster_id, other, target) + frame(PROPOSE, proposal(other, b"", body_kind=232)),
            hello(cluster_id, other, target) + frame(PROPOSE, proposal(stranger, put_command("/injected-by-stranger", "z"))),
            hello(cluster_id, other, target) + frame(RAFT, raft_message(
                APPEND, other, target, 1, entries=[(1, 1, NORMAL, proposal(other, b"", body_kind=232))])),
            hello(cluster_id, other, target) + frame(RAFT, raft_message(
                APPEND, other, target, 1, index=5, entries=[(1, 2**63, NORMAL, forged_put)])),
        ]
        for n, data in enumerate(attacks):
            assert send_and_watch(member.peer_port, data), f"{member.name} kept the connection of attack {n}"
        # In range but far above any real term: dropped by Raft (else no member could campaign again).
        send_and_watch(member.peer_port, hello(cluster_id, other, target)
                       + frame(RAFT, raft_message(HEARTBEAT, other, target, 2**62 - 1)), wait_s=0.5)
        # Damaged payloads behind a member's hello (term 0, so what survives the damage is stale and harmless);
        # some damage leaves a valid message, which is then served like any other.
        valid = [raft_message(HEARTBEAT, other, target, 0), raft_message(APPEND, other, target, 0),
                 proposal(other, put_command("/st/p", "v"))]
        for _ in range(30):
            payload = mutate(rng.choice(valid), rng)
            mutated_sent += 1
            mutated_closed += send_and_watch(member.peer_port, hello(cluster_id, other, target)
                                             + frame(rng.choice([RAFT, PROPOSE, 3, 5, 77]), payload), wait_s=1.0)
        assert all(m.alive for m in c.members), f"a member died under attack on {member.name} (seed {seed})"
    record(f"stranger: {3 * 10} forged connections refused; {mutated_closed} of {mutated_sent} damaged frames "
           f"refused with their link (seed {seed})")

    # Writes go on and every member agrees; nothing the stranger sent was applied.
    for k in range(10):
        c.put_retry(f"st/after{k}", f"a{k}")
    tree = flatten(c.wait_converged(timeout=20, expect=lambda t: flatten(t).get("/st/after9") == "a9"))
    assert "/injected-by-stranger" not in tree, "a stranger's proposal was applied"
    assert all(tree[f"/st/before{k}"] == f"b{k}" for k in range(10))

    # Every member restarts and stays up (nothing poisoned its log or hard state).
    for i in range(c.n):
        c.kill(i)
        c.restart(i)
        c.wait_leader(timeout=20)
        c.put_retry(f"st/restart{i}", "ok")
    time.sleep(1.0)
    assert all(m.alive for m in c.members), "a member died after its restart"
    tree = flatten(c.wait_converged(timeout=20, expect=lambda t: flatten(t).get(f"/st/restart{c.n - 1}") == "ok"))
    assert "/injected-by-stranger" not in tree

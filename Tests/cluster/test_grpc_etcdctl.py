"""etcd's v3 gRPC API through etcdctl (ETCDCTL_API=3) as an operator uses it, on one member and on three through
every endpoint: put/get/del, txn from stdin, watch (live and from a revision), leases, members, endpoint status and
health, compaction, lock, elect and snapshot save. Every command is bounded by a timeout; passes against etcd too."""
import hashlib
import json
import os
import subprocess
import threading
import time

import pytest

from cluster import is_etcd, server_command

ETCDCTL_S = 20
pytestmark = pytest.mark.skipif(subprocess.run(["which", "etcdctl"], capture_output=True).returncode != 0,
                                reason="etcdctl not installed")


def etcdctl(endpoints, *args, stdin=None, timeout=ETCDCTL_S, check=True):
    """etcdctl v3 against `endpoints` (members or URLs); returns stdout (stderr appended on failure)."""
    urls = ",".join(e if isinstance(e, str) else e.client_url for e in endpoints)
    done = subprocess.run(["etcdctl", "--endpoints", urls, "--command-timeout=10s", *args],
                          env=dict(os.environ, ETCDCTL_API="3"), input=stdin, capture_output=True, text=True,
                          timeout=timeout)
    if check:
        assert done.returncode == 0, f"etcdctl {' '.join(args)}: exit {done.returncode}\n{done.stdout}{done.stderr}"
        return done.stdout
    return done.returncode, done.stdout + done.stderr


def get_json(endpoints, *args):
    return json.loads(etcdctl(endpoints, "get", "-w", "json", *args))


class Background:
    """An etcdctl that runs until it exits or `seconds` pass (then it is killed), its output collected."""

    def __init__(self, endpoints, *args, seconds=8):
        urls = ",".join(e.client_url for e in endpoints)
        self.proc = subprocess.Popen(["etcdctl", "--endpoints", urls, *args], env=dict(os.environ, ETCDCTL_API="3"),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self.lines = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.timer = threading.Timer(seconds, self.stop)
        self.timer.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_lines(self, count, timeout=8):
        deadline = time.monotonic() + timeout
        while len(self.lines) < count and time.monotonic() < deadline and self.proc.poll() is None:
            time.sleep(0.05)
        return self.lines[:]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=5)
        self.timer.cancel()
        self.reader.join(timeout=5)
        return self.lines


def check_kv(ep):
    """put/get with prefix, limit, revision and keys-only, and del."""
    assert etcdctl(ep, "put", "/k/a", "1").strip() == "OK"
    etcdctl(ep, "put", "/k/b", "2")
    first = get_json(ep, "/k/a")["header"]["revision"]
    etcdctl(ep, "put", "/k/a", "3")
    assert etcdctl(ep, "get", "--prefix", "/k/").split() == ["/k/a", "3", "/k/b", "2"]
    limited = get_json(ep, "--prefix", "/k/", "--limit", "1")
    assert len(limited["kvs"]) == 1 and limited["more"] is True and limited["count"] == 2
    assert etcdctl(ep, "get", "--rev", str(first), "/k/a").split() == ["/k/a", "1"]
    assert etcdctl(ep, "get", "--prefix", "--keys-only", "/k/").split() == ["/k/a", "/k/b"]
    assert etcdctl(ep, "del", "/k/b").strip() == "1"
    assert etcdctl(ep, "get", "/k/b") == ""
    status, out = etcdctl(ep, "get", "", check=False)
    assert status != 0 and "etcdserver: key is not provided" in out, out


def check_txn(ep):
    """An interactive transaction from stdin: compares, success and failure branches."""
    etcdctl(ep, "put", "/t/x", "yes")
    out = etcdctl(ep, "txn", stdin='value("/t/x") = "yes"\n\nput /t/y took-success\n\nput /t/y took-failure\n\n')
    assert out.splitlines()[0] == "SUCCESS", out
    assert etcdctl(ep, "get", "--print-value-only", "/t/y").strip() == "took-success"
    out = etcdctl(ep, "txn", stdin='mod("/t/x") = "0"\n\nput /t/y a\n\nput /t/z b\n\n')
    assert out.splitlines()[0] == "FAILURE", out
    assert etcdctl(ep, "get", "--print-value-only", "/t/z").strip() == "b"
    status, out = etcdctl(ep, "txn", stdin="\n\nput /t/d 1\nput /t/d 2\n\n\n", check=False)
    assert status != 0 and "etcdserver: duplicate key given in txn request" in out, out


def check_watch(writer, watcher):
    """A live watch on one endpoint sees writes through another; a watch from a revision replays history."""
    start = get_json(writer, "/w/none")["header"]["revision"] + 1
    live = Background(watcher, "watch", "--prefix", "/w/")
    time.sleep(1.0)  # the watch is created before the writes (etcdctl prints nothing until an event)
    etcdctl(writer, "put", "/w/1", "one")
    etcdctl(writer, "del", "/w/1")
    lines = live.wait_lines(5)
    live.stop()
    assert lines[:5] == ["PUT", "/w/1", "one", "DELETE", "/w/1"], lines
    replay = Background(watcher, "watch", "--rev", str(start), "--prefix", "/w/", seconds=4)
    lines = replay.wait_lines(5)
    replay.stop()
    assert lines[:5] == ["PUT", "/w/1", "one", "DELETE", "/w/1"], lines


def check_leases(ep):
    out = etcdctl(ep, "lease", "grant", "100")
    lease = out.split()[1]
    etcdctl(ep, "put", "--lease", lease, "/l/key", "v")
    assert f"lease {lease} keepalived with TTL(100)" in etcdctl(ep, "lease", "keep-alive", "--once", lease)
    ttl = etcdctl(ep, "lease", "timetolive", "--keys", lease)
    assert f"lease {lease} granted with TTL(100s)" in ttl and "attached keys([/l/key])" in ttl, ttl
    assert lease in etcdctl(ep, "lease", "list")
    assert f"lease {lease} revoked" in etcdctl(ep, "lease", "revoke", lease)
    assert etcdctl(ep, "get", "/l/key") == ""
    status, out = etcdctl(ep, "lease", "revoke", lease, check=False)
    assert status != 0 and "etcdserver: requested lease not found" in out, out


def check_compaction(ep):
    etcdctl(ep, "put", "/c/k", "1")
    old = get_json(ep, "/c/k")["header"]["revision"]
    etcdctl(ep, "put", "/c/k", "2")
    assert f"compacted revision {old + 1}" in etcdctl(ep, "compaction", str(old + 1))
    status, out = etcdctl(ep, "get", "--rev", str(old), "/c/k", check=False)
    assert status != 0 and "etcdserver: mvcc: required revision has been compacted" in out, out


def check_lock_and_elect(ep, other):
    assert etcdctl(ep, "lock", "/locks/one", "echo", "held").strip() == "held"
    leader = Background(ep, "elect", "/elections/e", "proposal-1", seconds=6)
    lines = leader.wait_lines(2)
    assert len(lines) == 2 and lines[0].startswith("/elections/e/") and lines[1] == "proposal-1", lines
    observer = Background(other, "elect", "--listen", "/elections/e", seconds=4)
    seen = observer.wait_lines(2)
    observer.stop()
    leader.stop()
    assert seen[:2] == lines[:2], seen


def check_status_and_health(members):
    for row in json.loads(etcdctl(members, "endpoint", "status", "-w", "json")):
        assert row["Status"]["version"].startswith("3.4."), row
    # etcdctl 3.4 prints its health lines on stderr.
    status, out = etcdctl(members, "endpoint", "health", check=False)
    assert status == 0 and out.count("is healthy: successfully committed proposal") == len(members), out


def check_snapshot(ep, path):
    """etcdctl accepts the stream (its length is 32 past a multiple of 512, ending in the digest of the rest)."""
    etcdctl(ep, "snapshot", "save", path)
    data = open(path, "rb").read()
    assert len(data) % 512 == 32 and hashlib.sha256(data[:-32]).digest() == data[-32:]
    if not is_etcd():
        # Cairn's own checks of the file inside: `cairn snapshot status` reads etcdctl's copy as it is.
        out = subprocess.run([server_command()[0], "snapshot", "status", path], capture_output=True, text=True,
                             timeout=ETCDCTL_S)
        assert out.returncode == 0, out.stdout + out.stderr


def test_etcdctl_v3_on_one_member(make_cluster, tmp_path):
    c = make_cluster(1)
    ep = [c[0]]
    check_kv(ep)
    check_txn(ep)
    check_watch(ep, ep)
    check_leases(ep)
    check_compaction(ep)
    check_lock_and_elect(ep, ep)
    check_status_and_health(ep)
    members = etcdctl(ep, "member", "list").splitlines()
    assert len(members) == 1 and ", started, m0, " in members[0], members
    check_snapshot(ep, str(tmp_path / "one.db"))


def test_etcdctl_v3_on_three_members_through_every_endpoint(make_cluster, tmp_path):
    c = make_cluster(3)
    c.wait_leader()
    # A write through a follower just after the first election is sometimes lost and times out after 7 s, through
    # v2, the JSON gateway and gRPC alike (about 1 cluster start in 15; a known issue of the member, not of gRPC):
    # each endpoint's first write is retried, once, before the checks.
    for i in range(3):
        status, out = etcdctl([c[i]], "put", "/warm-up", str(i), check=False)
        if status != 0:
            assert "request timed out" in out or "deadline exceeded" in out, out
            etcdctl([c[i]], "put", "/warm-up", str(i))
    for i in range(3):
        ep, other = [c[i]], [c[(i + 1) % 3]]
        etcdctl(ep, "put", f"/every/{i}", f"via-{i}")
        # A linearizable read through another member sees the write at once.
        assert etcdctl(other, "get", "--print-value-only", f"/every/{i}").strip() == f"via-{i}"
        check_txn(ep)
        check_watch(ep, other)
        check_leases(ep)
    check_kv([c[1]])
    check_compaction([c[2]])
    check_lock_and_elect([c[0]], [c[2]])
    check_status_and_health(c.members)
    listed = etcdctl([c[2]], "member", "list").splitlines()
    assert len(listed) == 3 and all(", started, " in line for line in listed), listed

    # HashKV: every member holding the same history gives the same hash (once all have applied the last write).
    etcdctl(c.members, "put", "/hash/last", "x")
    deadline = time.monotonic() + 10
    while len({row["HashKV"]["hash"] for row in json.loads(etcdctl(c.members, "endpoint", "hashkv", "-w", "json"))}) != 1:
        assert time.monotonic() < deadline, "members' HashKV differ"
        time.sleep(0.2)

    # Add a member through one endpoint, see it through another, remove it (it never starts).
    new = c.new_member()
    out = etcdctl([c[1]], "member", "add", "extra", "--peer-urls", new.peer_url)
    assert "added to cluster" in out, out
    new_id = out.split()[1]
    assert any(line.startswith(new_id + ", unstarted") for line in etcdctl([c[0]], "member", "list").splitlines())
    # etcdctl pads the ID to 16 columns ("Member  3584b931e8c4387 removed ...").
    assert etcdctl([c[2]], "member", "remove", new_id).split()[:3] == ["Member", new_id, "removed"]
    assert len(etcdctl([c[0]], "member", "list").splitlines()) == 3
    check_snapshot([c[1]], str(tmp_path / "three.db"))

    # move-leader, last: a write through a follower just after a leader change can be lost like one just after the
    # first election (see the warm-up above). etcdctl finds the leader and asks it to hand over to the member named.
    statuses = json.loads(etcdctl(c.members, "endpoint", "status", "-w", "json"))
    leader_id = next(row["Status"]["leader"] for row in statuses if row["Status"].get("leader"))
    target = next(row["Status"]["header"]["member_id"] for row in statuses
                  if row["Status"]["header"]["member_id"] != leader_id)
    out = etcdctl(c.members, "move-leader", format(target, "x"))
    assert f"Leadership transferred from {format(leader_id, 'x')} to {format(target, 'x')}" in out, out
    deadline = time.monotonic() + 10
    while not all(row["Status"].get("leader") == target
                  for row in json.loads(etcdctl(c.members, "endpoint", "status", "-w", "json"))):
        assert time.monotonic() < deadline, "not every member follows the new leader"
        time.sleep(0.2)
    status, out = etcdctl(c.members, "move-leader", "1234", check=False)
    assert status != 0 and "bad leader transferee" in out, out

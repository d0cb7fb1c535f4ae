"""Multi-process cluster tests: failover, catch-up, partitions, forwarding and a linearizability run under a
nemesis. The server is CLUSTER_SERVER (`etcd`, the default, or a path to `cairn`); see cluster.py."""
import os
import random
import subprocess
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import linearizability as lin  # noqa: E402
from cluster import NotSent, flatten, free_ports, is_etcd  # noqa: E402
from conftest import record  # noqa: E402

ETCD = is_etcd()


def etcd_error_or_timeout(fn):
    """Run a request that a minority must refuse. Returns a description; fails on a success."""
    t0 = time.monotonic()
    try:
        r = fn()
    except NotSent as e:
        raise AssertionError(f"member not reachable at all: {e}")
    except Exception as e:  # timeout or reset: the member did not answer
        return f"no answer ({type(e).__name__}) after {time.monotonic() - t0:.1f}s"
    dt = time.monotonic() - t0
    assert r.status >= 500, f"minority answered {r!r}"
    assert isinstance(r.json, dict) and "errorCode" in r.json and "message" in r.json, r
    return f"{r.status} errorCode {r.json['errorCode']} {r.json['message']!r} ({r.json.get('cause')!r}) after {dt:.1f}s"


class Writer(threading.Thread):
    """Writes distinct keys (prefix/NNNNN) through random members until stopped; keeps the acknowledged ones."""

    def __init__(self, c, prefix, members=None, timeout=1.5):
        super().__init__(daemon=True)
        self.c, self.prefix, self.members, self.timeout = c, prefix, members, timeout
        self.acked = {}
        self.attempts = 0
        self.stop_ev = threading.Event()
        self.rng = random.Random(7)

    def run(self):
        n = 0
        while not self.stop_ev.is_set() and n < 100_000:
            key = f"{self.prefix}/{n:05d}"
            val = f"v{n}"
            n += 1
            self.attempts += 1
            members = self.members if self.members is not None else range(self.c.n)
            i = self.rng.choice(list(members))
            try:
                r = self.c.put(i, key, val, timeout=self.timeout)
                if r.status in (200, 201):
                    self.acked["/" + key] = val
            except Exception:
                time.sleep(0.01)

    def stop(self):
        self.stop_ev.set()
        self.join(10)


def check_all_acked(c, prefix, acked, members=None):
    """Every acknowledged write is there, read with quorum=true from every member."""
    members = range(c.n) if members is None else members
    for i in members:
        deadline = time.monotonic() + 15
        while True:
            try:
                r = c.members[i].request("GET", f"/v2/keys/{prefix}",
                                         {"recursive": "true", "sorted": "true", "quorum": "true"}, timeout=3)
                if r.status == 200:
                    break
            except Exception:
                r = None
            assert time.monotonic() < deadline, f"{c.members[i].name}: no quorum read of /{prefix}: {r!r}"
            time.sleep(0.1)
        got = flatten(r.json)
        missing = {k: v for k, v in acked.items() if got.get(k) != v}
        assert not missing, f"{c.members[i].name} lost {len(missing)} acknowledged writes, e.g. {list(missing.items())[:5]}"


# ---------------------------------------------------------------------------------------------------------


def test_leader_failover(make_cluster):
    c = make_cluster(3)
    for k in range(20):
        c.put_retry(f"fo/base{k:02d}", f"b{k}")
    w = Writer(c, "fo/w")
    w.start()
    time.sleep(1.0)
    old = c.wait_leader()
    t0 = time.monotonic()
    c.kill(old)
    survivors = c.followers(old)
    new = c.wait_leader(among=survivors, timeout=10 * c.election_ms / 1000)
    t_leader = time.monotonic() - t0
    c.put_retry("fo/after", "x", members=survivors)
    t_write = time.monotonic() - t0
    acked_at_failover = len(w.acked)
    time.sleep(1.5)
    record(f"failover: leader {c[old].name} killed -> {c[new].name} leads after {t_leader * 1000:.0f} ms, "
           f"first write acknowledged after {t_write * 1000:.0f} ms (election timeout {c.election_ms} ms)")
    assert t_leader < 6 * c.election_ms / 1000, "no new leader within a few election timeouts"
    # writes continue after the failover
    before = len(w.acked)
    time.sleep(1.0)
    assert len(w.acked) > before, "writes stopped after the failover"
    w.stop()
    assert acked_at_failover > 0
    c.restart(old)
    c.wait_leader()
    acked = dict(w.acked)
    acked.update({f"/fo/base{k:02d}": f"b{k}" for k in range(20)})
    acked["/fo/after"] = "x"
    check_all_acked(c, "fo", acked)
    c.wait_converged(timeout=20)
    record(f"failover: {len(acked)} acknowledged writes of {w.attempts + 21} attempted, none lost, on all 3 members")


def test_restarted_follower_catches_up(make_cluster):
    c = make_cluster(3)
    li = c.wait_leader()
    f = c.followers(li)[0]
    c.put_retry("cu/before", "1")
    c.kill(f)
    for k in range(200):
        c.put_retry(f"cu/k{k:03d}", f"v{k}", members=[li])
    t0 = time.monotonic()
    c.restart(f)
    tree = c.wait_converged(timeout=20, expect=lambda t: flatten(t).get("/cu/k199") == "v199")
    record(f"catch-up: restarted follower has all 200 writes after {(time.monotonic() - t0) * 1000:.0f} ms")
    got = flatten(tree)
    assert all(got[f"/cu/k{k:03d}"] == f"v{k}" for k in range(200)) and got["/cu/before"] == "1"
    r = c.get(f, "cu/k150")
    assert r.status == 200 and r.json["node"]["value"] == "v150"


@pytest.mark.skipif(ETCD, reason="etcd needs member remove/add to rejoin with an empty data dir")
def test_wiped_follower_catches_up_by_snapshot(make_cluster):
    c = make_cluster(3, snapshot_count=100)
    li = c.wait_leader()
    f = c.followers(li)[0]
    c.kill(f)
    for k in range(400):
        c.put_retry(f"snap/k{k:03d}", f"v{k}", members=[li])
    t0 = time.monotonic()
    c.wipe_and_restart(f)
    c.wait_converged(timeout=30, expect=lambda t: len([k for k in flatten(t) if k.startswith("/snap/")]) == 400)
    record(f"snapshot catch-up: wiped follower has all 400 keys after {(time.monotonic() - t0) * 1000:.0f} ms")
    c.put_retry("snap/after", "1", members=[f])
    c.wait_converged(timeout=10, expect=lambda t: "/snap/after" in flatten(t))


def cairn_snapshot(c, *args):
    """Runs `cairn snapshot ARGS...`; returns (exit status, stdout + stderr)."""
    done = subprocess.run([c.server, "snapshot", *args], capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.skipif(ETCD, reason="`cairn snapshot` is Cairn's own (etcdctl's snapshot commands are v3)")
def test_cluster_restored_from_a_backup_has_every_key(make_cluster):
    a = make_cluster(3, snapshot_count=200)
    li = a.wait_leader()
    f = a.followers(li)[0]
    for k in range(500):
        a.put_retry(f"data/d{k % 7}/k{k:03d}", f"v{k}", members=[li])
    a.put_retry("data/gone", "x", members=[li])
    assert a.members[li].request("DELETE", "/v2/keys/data/gone").status == 200
    # Acknowledged by the leader just before the backup is asked of a follower: the backup must hold it.
    assert a.put(li, "data/last", "final").status in (200, 201)
    backup = os.path.join(a.dir, "backup.snap")
    dead = f"http://127.0.0.1:{free_ports(1)[0]}"
    status, out = cairn_snapshot(a, "save", backup, "--endpoints", f"{dead},{a.members[f].client_url}")
    assert status == 0, out
    saved_index = int(a.get(f, "data/last").headers["X-Etcd-Index"])
    expected = flatten(a.get(li, "data", quorum=True, recursive="true").json)
    assert len(expected) == 501 and expected["/data/last"] == "final" and "/data/gone" not in expected
    status, out = cairn_snapshot(a, "status", backup)
    assert status == 0 and f"etcd index: {saved_index}" in out, out
    a.stop()

    # A damaged copy is refused by status and restore alike, and restore never touches a non-empty directory.
    damaged = backup + ".damaged"
    data = bytearray(open(backup, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(damaged, "wb").write(bytes(data))
    assert cairn_snapshot(a, "status", damaged)[0] != 0

    b = make_cluster(3, start=False)
    for m in b.members:
        flags = ["--name", m.name, "--data-dir", m.data_dir, "--initial-cluster", b.initial_cluster,
                 "--initial-cluster-token", b.token, "--initial-advertise-peer-urls", f"http://127.0.0.1:{m.proxy_port}"]
        status, out = cairn_snapshot(b, "restore", damaged, *flags)
        assert status != 0 and not os.path.exists(os.path.join(m.data_dir, "member")), out
        status, out = cairn_snapshot(b, "restore", backup, *flags)
        assert status == 0, out
        status, out = cairn_snapshot(b, "restore", backup, *flags)
        assert status != 0 and "not empty" in out, out
    b.start()
    for i in range(b.n):
        r = b.get(i, "data", quorum=True, recursive="true")
        assert r.status == 200, r
        assert flatten(r.json) == expected, f"{b.members[i].name} differs from the backup"
        assert int(r.headers["X-Etcd-Index"]) >= saved_index
    names = sorted(m["name"] for m in b.members[0].request("GET", "/v2/members").json["members"])
    assert names == [m.name for m in b.members]
    bi = b.wait_leader()
    assert b.put(bi, "data/after", "1").status in (200, 201)
    assert int(b.get(bi, "data/after").json["node"]["modifiedIndex"]) > saved_index
    record(f"backup and restore: {len(expected)} keys, {os.path.getsize(backup)} bytes, read back from 3 new members")


@pytest.mark.skipif(ETCD, reason="--linearizable-reads is Cairn's own flag")
def test_linearizable_reads_flag_makes_plain_gets_linearizable(make_cluster):
    c = make_cluster(3, extra_args=("--linearizable-reads",))
    li = c.wait_leader()
    f = c.followers(li)[0]
    c.put_retry("lin/k", "old", members=[li])
    c.wait_converged(expect=lambda t: flatten(t).get("/lin/k") == "old")
    c.isolate(f)
    c.put_retry("lin/k", "new", members=[li])
    # Without quorum=true the cut-off follower would answer "old" from its own state; with the flag it cannot answer.
    try:
        r = c.get(f, "lin/k", timeout=3)
    except Exception:
        r = None  # no answer within 3 s: the minority cannot confirm a read
    assert r is None or (r.status >= 500 and r.json.get("errorCode") == 300), f"a cut-off member answered a plain GET: {r!r}"
    c.heal()
    deadline = time.monotonic() + 15
    while True:
        try:
            r = c.get(f, "lin/k", timeout=3)
            if r.status == 200:
                break
        except Exception:
            pass
        assert time.monotonic() < deadline, "no linearizable read after healing"
        time.sleep(0.1)
    assert r.json["node"]["value"] == "new"


def test_member_added_then_leader_removed(make_cluster):
    """etcd's runtime reconfiguration: POST /v2/members, start the new member with --initial-cluster-state existing;
    it catches up and counts for the majority. Then DELETE the leader itself: the others elect a new one."""
    c = make_cluster(3)
    li = c.wait_leader()
    for k in range(50):
        c.put_retry(f"mem/k{k:02d}", f"v{k}", members=[li])
    via = c.followers(li)[0]
    t0 = time.monotonic()
    new, answer = c.add_member(via)
    assert answer.status == 201, answer
    assert answer.json["peerURLs"] == [f"http://127.0.0.1:{new.proxy_port}"] and answer.json["clientURLs"] == []
    c.wait_converged(timeout=30, expect=lambda t: flatten(t).get("/mem/k49") == "v49")
    record(f"membership: added member {new.name} has all 50 keys after {(time.monotonic() - t0) * 1000:.0f} ms")
    deadline = time.monotonic() + 20
    while True:
        listed = c[via].request("GET", "/v2/members").json["members"]
        mine = [m for m in listed if m["peerURLs"] == [f"http://127.0.0.1:{new.proxy_port}"]]
        if len(listed) == 4 and mine and mine[0]["name"] == new.name and mine[0]["clientURLs"] == [new.client_url]:
            break
        assert time.monotonic() < deadline, f"members: {listed}"
        time.sleep(0.1)
    # Four members need three: with one original follower gone, the newcomer's vote is needed to commit.
    gone = [i for i in c.followers(li) if i != new.idx][0]
    c.kill(gone)
    c.put_retry("mem/four", "1", members=[li], deadline_s=20)
    c.restart(gone)
    t0 = time.monotonic()
    r = c.remove_member(li, via=li)
    assert r.status == 204, r
    rest = [i for i in range(c.n) if i != li]
    nl = c.wait_leader(among=rest, timeout=20)
    record(f"membership: leader {c[li].name} removed itself; {c[nl].name} leads after {(time.monotonic() - t0) * 1000:.0f} ms")
    c.put_retry("mem/after", "1", members=rest, deadline_s=20)
    listed = c[nl].request("GET", "/v2/members").json["members"]
    assert len(listed) == 3 and all(m["name"] != c[li].name for m in listed), listed
    c.wait_converged(members=rest, timeout=20, expect=lambda t: "/mem/after" in flatten(t))


@pytest.mark.parametrize("who", ["follower", "leader"])
def test_partitioned_minority(make_cluster, who):
    c = make_cluster(3)
    li = c.wait_leader()
    m = li if who == "leader" else c.followers(li)[0]
    majority = [i for i in range(3) if i != m]
    c.put_retry("pt/before", "1")
    c.wait_converged(expect=lambda t: "/pt/before" in flatten(t))
    c.isolate(m)
    # the majority elects (or keeps) a leader and keeps serving
    t0 = time.monotonic()
    new = c.wait_leader(among=majority, timeout=15)
    c.put_retry("pt/majority", "2", members=majority)
    record(f"partition ({who} {c[m].name} isolated): majority leader {c[new].name}, write acknowledged after "
           f"{(time.monotonic() - t0) * 1000:.0f} ms")
    put = etcd_error_or_timeout(lambda: c.put(m, "pt/minority", "3", timeout=3))
    qget = etcd_error_or_timeout(lambda: c.get(m, "pt/before", quorum=True, timeout=3))
    plain = c.get(m, "pt/majority", timeout=2)
    record(f"partition ({who} isolated): minority PUT -> {put}; quorum GET -> {qget}; plain GET of a majority "
           f"write -> {plain.status} {plain.error_code or ''} (served locally)")
    r = c.get(majority[0], "pt/majority", quorum=True)
    assert r.status == 200 and r.json["node"]["value"] == "2"
    c.heal()
    tree = c.wait_converged(timeout=20, expect=lambda t: flatten(t).get("/pt/majority") == "2")
    got = flatten(tree)
    record(f"partition ({who} isolated): after healing all members agree; the refused minority write "
           f"{'was applied later' if '/pt/minority' in got else 'is absent'}")
    assert got["/pt/before"] == "1"
    # and the healed member serves linearizable reads and writes again
    c.put_retry("pt/healed", "4", members=[m])
    r = c.get(m, "pt/healed", quorum=True)
    assert r.status == 200 and r.json["node"]["value"] == "4"


def test_five_members_lose_two(make_cluster):
    c = make_cluster(5)
    li = c.wait_leader()
    minority = [li, c.followers(li)[0]]
    majority = [i for i in range(5) if i not in minority]
    c.partition([minority, majority])
    new = c.wait_leader(among=majority, timeout=15)
    assert new in majority
    for k in range(20):
        c.put_retry(f"five/k{k}", str(k), members=majority)
    etcd_error_or_timeout(lambda: c.put(minority[1], "five/minority", "x", timeout=3))
    c.heal()
    tree = c.wait_converged(timeout=20, expect=lambda t: flatten(t).get("/five/k19") == "19")
    assert all(flatten(tree)[f"/five/k{k}"] == str(k) for k in range(20))
    record(f"five members: leader {c[li].name} and one follower cut off; {c[new].name} led the other three; converged")


def test_follower_forwards_reads_and_writes(make_cluster):
    c = make_cluster(3)
    li = c.wait_leader()
    f = c.followers(li)[0]
    r = c.put(f, "fw/k", "v1")
    assert r.status == 201 and r.json["action"] == "set" and r.json["node"]["value"] == "v1", r
    r = c.get(f, "fw/k", quorum=True)
    assert r.status == 200 and r.json["node"]["value"] == "v1", r
    r = c.put(f, "fw/k", "v2", prevValue="v1")
    assert r.status == 200 and r.json["action"] == "compareAndSwap" and r.json["prevNode"]["value"] == "v1", r
    r = c.put(f, "fw/k", "v3", prevValue="v1")
    assert r.status == 412 and r.error_code == 101, r
    r = c.get(li, "fw/k", quorum=True)
    assert r.status == 200 and r.json["node"]["value"] == "v2", r
    r = c.members[f].request("DELETE", "/v2/keys/fw/k")
    assert r.status == 200 and r.json["action"] == "delete", r
    r = c.get(f, "fw/k", quorum=True)
    assert r.status == 404 and r.error_code == 100, r
    c.wait_converged(timeout=10, expect=lambda t: "/fw/k" not in flatten(t))


@pytest.mark.skipif(ETCD, reason="etcd records its smoothed round trip once every 30 s; Cairn records each probe")
def test_every_member_times_round_trips_to_every_peer(make_cluster):
    c = make_cluster(3)
    c.wait_leader()
    ids = [m.stats_self()["id"] for m in c.members]
    prefix = 'etcd_network_peer_round_trip_time_seconds_count{To="'

    def timed(i):
        text = c.members[i].request("GET", "/metrics").raw.decode()
        return {line[len(prefix):].split('"')[0]: float(line.split()[-1]) for line in text.splitlines()
                if line.startswith(prefix)}

    deadline = time.monotonic() + 10
    while any(set(timed(i)) != set(ids) - {ids[i]} for i in range(3)) and time.monotonic() < deadline:
        time.sleep(0.2)
    for i in range(3):
        counts = timed(i)
        assert set(counts) == set(ids) - {ids[i]} and all(n >= 1 for n in counts.values()), (i, counts)


# ---------------------------------------------------------------------------------------------------------
# Linearizability under a nemesis


LIN_SECONDS = float(os.environ.get("CLUSTER_LIN_SECONDS", "18"))


class Nemesis(threading.Thread):
    """One fault at a time, chosen at random: kill -9 and restart, SIGSTOP/SIGCONT, isolate (a random member
    or the leader). Bounded: stops at `until`."""

    def __init__(self, c, until, seed):
        super().__init__(daemon=True)
        self.c, self.until = c, until
        self.rng = random.Random(seed)
        self.log = []
        self.counts = {}
        self.error = None

    ACTIONS = ["kill", "kill-leader", "pause", "pause-leader", "isolate", "isolate-leader"]

    def run(self):
        try:
            plan = []
            while time.monotonic() < self.until - 1.0:
                time.sleep(self.rng.uniform(0.3, 1.0))
                if not plan:  # every kind of fault before any repeats
                    plan = self.rng.sample(self.ACTIONS, len(self.ACTIONS))
                action = plan.pop()
                target = None
                if action.endswith("leader"):
                    target = self.c.leader()
                if target is None:
                    target = self.rng.randrange(self.c.n)
                hold = self.rng.uniform(0.8, 2.0)
                self.counts[action] = self.counts.get(action, 0) + 1
                self.log.append((round(time.monotonic(), 3), action, target, round(hold, 2)))
                if action.startswith("kill"):
                    self.c.kill(target)
                    time.sleep(hold)
                    self.c.restart(target)
                elif action.startswith("pause"):
                    self.c.pause(target)
                    time.sleep(hold)
                    self.c.resume(target)
                else:
                    self.c.isolate(target)
                    time.sleep(hold)
                    self.c.heal()
        except Exception as e:  # pragma: no cover - reported by the test
            self.error = e
        finally:
            self.c.heal()
            for m in self.c.members:
                if m.paused:
                    m.resume()


class Client(threading.Thread):
    def __init__(self, cid, c, history, keys, until, seed, recent):
        super().__init__(daemon=True)
        self.cid, self.c, self.h, self.keys, self.until = cid, c, history, keys, until
        self.rng = random.Random(seed)
        self.recent = recent          # key -> list of recently seen/written values (shared, for useful CAS)
        self.statuses = {}
        self.n = 0

    def run(self):
        while time.monotonic() < self.until and self.n < 50_000:
            self.n += 1
            key = self.rng.choice(self.keys)
            i = self.rng.randrange(self.c.n)
            x = self.rng.random()
            val = f"c{self.cid}-{self.n}"
            if x < 0.4:
                self._read(i, key)
            elif x < 0.7:
                self._write(i, key, val)
            else:
                olds = self.recent.get(key) or ["none"]
                self._cas(i, key, self.rng.choice(olds[-3:]), val)

    def _note(self, what, r):
        k = (what, r.status, r.error_code) if r is not None else (what, "exception", None)
        self.statuses[k] = self.statuses.get(k, 0) + 1

    def _remember(self, key, v):
        lst = self.recent.setdefault(key, [])
        lst.append(v)
        del lst[:-10]

    def _read(self, i, key):
        op = self.h.invoke(self.cid, key, lin.READ)
        try:
            r = self.c.get(i, key, quorum=True, timeout=1.5)
        except NotSent:
            self.h.failed(op)
            time.sleep(0.02)
            return
        except Exception:
            self._note("read", None)
            self.h.indeterminate(op)
            return
        self._note("read", r)
        if r.status == 200:
            self.h.ok(op, r.json["node"].get("value"))
            self._remember(key, r.json["node"].get("value"))
        elif r.status == 404 and r.error_code == 100:
            self.h.ok(op, None)
        else:
            self.h.indeterminate(op)

    def _write(self, i, key, val):
        op = self.h.invoke(self.cid, key, lin.WRITE, val)
        try:
            r = self.c.put(i, key, val, timeout=1.5)
        except NotSent:
            self.h.failed(op)
            time.sleep(0.02)
            return
        except Exception:
            self._note("write", None)
            self.h.indeterminate(op)
            return
        self._note("write", r)
        if r.status in (200, 201):
            self.h.ok(op)
            self._remember(key, val)
        else:
            self.h.indeterminate(op)

    def _cas(self, i, key, old, new):
        op = self.h.invoke(self.cid, key, lin.CAS, (old, new))
        try:
            r = self.c.put(i, key, new, timeout=1.5, prevValue=old)
        except NotSent:
            self.h.failed(op)
            time.sleep(0.02)
            return
        except Exception:
            self._note("cas", None)
            self.h.indeterminate(op)
            return
        self._note("cas", r)
        if r.status == 200:
            self.h.ok(op, True)
            self._remember(key, new)
        elif (r.status == 412 and r.error_code == 101) or (r.status == 404 and r.error_code == 100):
            self.h.ok(op, False)
        else:
            self.h.indeterminate(op)


def save_history(ops, path):
    """The history as JSON lines (kept with the member logs when the test fails); lin.load_history reads it."""
    import json
    with open(path, "w") as f:
        for o in ops:
            f.write(json.dumps({"client": o.client, "key": o.key, "kind": o.kind, "value": o.value,
                                "output": o.output, "call": o.call, "ret": None if o.indeterminate else o.ret,
                                "indeterminate": o.indeterminate}) + "\n")


def stale_read_copy(ops, latest=False):
    """Copy the history and make one read return the value of a write that a later write had overwritten
    before the read began (both acknowledged): the copy must be judged illegal. Returns the checker's result,
    or None when no read qualifies. Refuting costs a search over the orders of the indeterminate operations
    pending at the bad read, so the latest read is the hard case (the earliest, the cheap one)."""
    import copy
    ops = copy.deepcopy(ops)
    writes = sorted((o for o in ops if o.kind == lin.WRITE and not o.indeterminate), key=lambda o: o.call)
    reads = sorted((o for o in ops if o.kind == lin.READ), key=lambda o: o.call)
    for r in (reversed(reads) if latest else reads):
        kw = [w for w in writes if w.key == r.key and w.ret < r.call]
        for w2 in reversed(kw):
            older = [w for w in kw if w.ret < w2.call and w.value != r.output]
            if older:
                r.output = older[-1].value
                return lin.check(ops, max_steps=5_000_000)
    return None


def test_linearizable_under_nemesis(make_cluster):
    seed = int(os.environ.get("CLUSTER_SEED", str(random.randrange(1 << 30))))
    c = make_cluster(3)
    keys = ["lin/a", "lin/b", "lin/c"]
    h = lin.History()
    until = time.monotonic() + LIN_SECONDS
    recent = {}
    clients = [Client(k, c, h, keys, until, seed + k, recent) for k in range(6)]
    nemesis = Nemesis(c, until, seed)
    for t in clients:
        t.start()
    nemesis.start()
    for t in clients:
        t.join(LIN_SECONDS + 10)
    nemesis.join(10)
    assert nemesis.error is None, nemesis.error
    for m in c.members:
        if not m.alive:
            m.start()
    c.wait_leader(timeout=20)
    # A final quorum read of every key, after the faults, pins down what the indeterminate writes did.
    for key in keys:
        deadline = time.monotonic() + 15
        while True:
            op = h.invoke(99, key, lin.READ)
            try:
                r = c.get(c.leader() or 0, key, quorum=True, timeout=2)
                if r.status == 200:
                    h.ok(op, r.json["node"].get("value"))
                    break
                if r.status == 404 and r.error_code == 100:
                    h.ok(op, None)
                    break
            except Exception:
                pass
            assert time.monotonic() < deadline, f"no final read of {key}"
            time.sleep(0.1)
    ops = h.ops()
    save_history(ops, os.path.join(c.dir, "history.json"))
    t0 = time.monotonic()
    result = lin.check(ops, max_steps=5_000_000)
    statuses = {}
    for t in clients:
        for k, v in t.statuses.items():
            statuses[k] = statuses.get(k, 0) + v
    record(f"linearizability (seed {seed}): {result.ops} operations checked, {result.indeterminate} indeterminate, "
           f"{sum(1 for o in ops if o.kind == lin.CAS and o.output is True)} CAS succeeded, "
           f"result {result.status} in {time.monotonic() - t0:.1f}s; nemesis {nemesis.counts}")
    record("linearizability: answers " + ", ".join(f"{w} {s}{'/' + str(e) if e else ''}: {n}"
                                                   for (w, s, e), n in sorted(statuses.items(), key=str)))
    assert result.ops > 200, "too few operations completed to say anything"
    assert result.status == "ok", f"{result}\nnemesis: {nemesis.log}"
    # The checker's own sanity on this real history: a copy with a stale read injected must be rejected
    # (never accepted; "unknown" is tolerated only for the hard, late injection).
    early, late = stale_read_copy(ops), stale_read_copy(ops, latest=True)
    record(f"linearizability: checker self-check on this history with a stale read injected: earliest read -> "
           f"{early.status if early else 'n/a'}, latest read -> {late.status if late else 'n/a'}"
           f"{f' ({max(k.steps for k in late.keys.values())} steps)' if late else ''}")
    assert early is None or early.status == "illegal", f"stale copy (earliest read): {early}"
    assert late is None or late.status != "ok", f"stale copy (latest read): {late}"
    c.wait_converged(timeout=20)

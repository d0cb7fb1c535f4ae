"""The v2 members API on a real cluster, through etcdctl (ETCDCTL_API=2) as an operator uses it: member list,
add, update, remove and cluster-health; and GET /v2/members/leader with a leader and during an election."""
import os
import re
import subprocess
import time

import pytest

from cluster import HOST, PeerProxy, free_ports

ETCDCTL_S = 20
pytestmark = pytest.mark.skipif(subprocess.run(["which", "etcdctl"], capture_output=True).returncode != 0,
                                reason="etcdctl not installed")


def etcdctl(c, *args, members=None):
    """etcdctl v2 against the given members (all live ones by default); returns (exit status, stdout + stderr)."""
    members = [m for m in c.members if m.alive] if members is None else [c[i] for i in members]
    endpoints = ",".join(m.client_url for m in members)
    done = subprocess.run(["etcdctl", "--endpoints", endpoints, *args], env=dict(os.environ, ETCDCTL_API="2"),
                          capture_output=True, text=True, timeout=ETCDCTL_S)
    return done.returncode, done.stdout + done.stderr


def member_lines(output):
    """`member list` lines by member name ("(unstarted)" for one not started): (ID, peer URLs, client URLs, isLeader)."""
    listed = {}
    for line in output.splitlines():
        unstarted = re.fullmatch(r"([0-9a-f]+)\[unstarted\]: peerURLs=(\S*)", line)
        if unstarted:
            listed["(unstarted)"] = (unstarted.group(1), unstarted.group(2), "", False)
            continue
        match = re.fullmatch(r"([0-9a-f]+): name=(\S+) peerURLs=(\S*) clientURLs=(\S*) isLeader=(true|false)", line)
        assert match, f"unexpected member list line {line!r} in {output!r}"
        mid, name, peers, clients, leader = match.groups()
        listed[name] = (mid, peers, clients, leader == "true")
    return listed


def wait_for(what, check, timeout=20):
    """Polls `check` (returning a truthy result or None) until it holds; bounded in time."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout}s"
        time.sleep(0.2)


def wait_published(c, via):
    """etcd publishes a member's name and client URLs before it serves clients; Cairn just after it starts. Every
    member must have applied every publication (starting with `via`): etcdctl may ask any of them."""
    def published_everywhere():
        order = [c[via]] + [m for m in c.members if m is not c[via] and m.alive]
        return all(all(entry["clientURLs"] for entry in m.request("GET", "/v2/members").json["members"]) for m in order)
    wait_for("every member published its client URLs", published_everywhere)


def test_etcdctl_member_list_add_update_remove_and_cluster_health(make_cluster):
    c = make_cluster(3)
    li = c.wait_leader()
    wait_published(c, li)
    ids = {m.name: m.stats_self(timeout=2)["id"] for m in c.members}

    status, out = etcdctl(c, "member", "list")
    assert status == 0, out
    listed = member_lines(out)
    assert set(listed) == {m.name for m in c.members}, out
    for m in c.members:
        assert listed[m.name] == (ids[m.name], m.peer_url, m.client_url, m.idx == li), out

    status, out = etcdctl(c, "cluster-health")
    assert status == 0, out
    assert out.splitlines()[-1] == "cluster is healthy", out
    for m in c.members:
        assert f"member {ids[m.name]} is healthy: got healthy result from {m.client_url}" in out, out

    # Add: etcdctl prints the environment to start the new member with; the cluster knows it as unstarted.
    # etcd refuses (500) a change until every member has been connected for 5 s; the refusal changes nothing.
    new = c.new_member()
    status, out = wait_for("the cluster accepts a new member",
                           lambda: (lambda o: o if o[0] == 0 else None)(etcdctl(c, "member", "add", new.name, new.peer_url)))
    added = re.search(r"Added member named (\S+) with ID ([0-9a-f]+) to cluster", out)
    assert added and added.group(1) == new.name, out
    new_id = added.group(2)
    assert f'ETCD_NAME="{new.name}"' in out and 'ETCD_INITIAL_CLUSTER_STATE="existing"' in out, out
    assert f"{new.name}={new.peer_url}" in out, out
    status, out = etcdctl(c, "member", "list")
    assert status == 0 and member_lines(out)["(unstarted)"] == (new_id, new.peer_url, "", False), out

    # Asked through the first three: a joining Cairn member serves clients before it has caught up (etcd's does
    # not), and etcdctl, syncing its endpoints from it, would find no client URLs there.
    c.join(new)
    listed = wait_for("the new member starts and publishes its name",
                      lambda: (lambda o: o[0] == 0 and new.name in member_lines(o[1]) and member_lines(o[1]))(
                          etcdctl(c, "member", "list", members=[0, 1, 2])))
    assert listed[new.name] == (new_id, new.peer_url, new.client_url, False)
    c.put_retry("members/added", "1")
    c.wait_converged(timeout=30, expect=lambda t: "/members" in str(t))
    wait_for("cluster-health shows four healthy members",
             lambda: (lambda o: o[0] == 0 and o[1].count(" is healthy: ") == 4 and o[1].endswith("cluster is healthy\n"))(
                 etcdctl(c, "cluster-health")))

    # A peer URL of another member is refused, and changes nothing.
    status, out = etcdctl(c, "member", "update", new_id, f"{new.peer_url},{c[0].peer_url}")
    assert status != 0 and "membership: peerURL exists" in out, out

    # Update: the new member's peers now reach it through another proxy, and the old one is closed, so only the
    # updated URL works.
    (moved_port,) = free_ports(1)
    moved = f"http://{HOST}:{moved_port}"
    c.proxies.append(PeerProxy(c, new.idx, moved_port, new.peer_port))
    status, out = etcdctl(c, "member", "update", new_id, moved)
    assert status == 0 and out == f"Updated member with ID {new_id} in cluster\n", out
    status, out = etcdctl(c, "member", "list")
    assert status == 0 and member_lines(out)[new.name][1] == moved, out
    c.proxies[new.idx].close()
    c.put_retry("members/updated", "2")
    c.wait_converged(timeout=30, expect=lambda t: "updated" in str(t))

    # Remove: the cluster is three again and healthy.
    status, out = etcdctl(c, "member", "remove", new_id)
    assert status == 0 and out == f"Removed member {new_id} from cluster\n", out
    # The member that answered the removal has applied it; the list is each member's own applied table (as etcd's
    # is), so the leader's may show the removal a moment later.
    wait_for("the leader lists three members",
             lambda: (lambda o: o[0] == 0 and set(member_lines(o[1])) == {m.name for m in c.members[:3]})(
                 etcdctl(c, "member", "list", members=[li])))
    new.kill()
    c.put_retry("members/removed", "3", members=[0, 1, 2])
    status, out = etcdctl(c, "cluster-health", members=[0, 1, 2])
    assert status == 0 and out.count(" is healthy: ") == 3 and out.endswith("cluster is healthy\n"), out

    # One member down: etcdctl names it unreachable and the cluster degraded.
    down = c.followers(li)[0]
    c.kill(down)
    status, out = etcdctl(c, "cluster-health", members=[li])
    assert f"member {ids[c[down].name]} is unreachable" in out and out.endswith("cluster is degraded\n"), out


def test_leader_with_a_leader_and_during_an_election(make_cluster):
    c = make_cluster(3)
    li = c.wait_leader()
    leader = c[li].stats_self(timeout=2)
    wait_published(c, li)
    cluster_id = c[li].request("GET", "/v2/members").headers["X-Etcd-Cluster-Id"]
    for m in c.members:
        r = m.request("GET", "/v2/members/leader")
        assert r.status == 200 and r.headers["Content-Type"] == "application/json", r
        assert r.headers["X-Etcd-Cluster-Id"] == cluster_id, r
        assert r.raw == (f'{{"id":"{leader["id"]}","name":"{c[li].name}","peerURLs":["{c[li].peer_url}"],'
                         f'"clientURLs":["{c[li].client_url}"]}}\n').encode(), r

    # The leader and one follower gone: the last member campaigns and never wins. etcd's answer, recorded live
    # (etcd 3.4.23): 503, application/json, the cluster ID, and this body with no newline after it.
    survivor = c.followers(li)[1]
    c.kill(li)
    c.kill(c.followers(li)[0])
    r = wait_for("the survivor knows no leader",
                 lambda: (lambda r: r if r.status != 200 else None)(c[survivor].request("GET", "/v2/members/leader")))
    assert r.status == 503 and r.raw == b'{"message":"During election"}', r
    assert r.headers["Content-Type"] == "application/json" and r.headers["X-Etcd-Cluster-Id"] == cluster_id, r

"""A member restarted while the rest of the cluster is down serves what it knew was committed (Cairn records the
commit index with every batch), never an empty store. etcd answers nothing until the member rejoins.
"""
import time

import pytest

import cluster as harness
from cluster import flatten

pytestmark = pytest.mark.skipif(harness.is_etcd(), reason="etcd serves nothing until the member rejoins")


@pytest.mark.parametrize("who", ["follower", "leader"])
def test_a_member_restarted_alone_serves_every_acknowledged_write(make_cluster, who):
    c = make_cluster(3)
    li = c.wait_leader()
    for k in range(30):
        c.put_retry(f"lone/k{k:02d}", f"v{k}", members=[li])
    # Every member has applied the last write, so each knows it is committed; then the whole cluster stops.
    c.wait_converged(timeout=20, expect=lambda t: flatten(t).get("/lone/k29") == "v29")
    for i in range(3):
        c.kill(i)
    target = li if who == "leader" else c.followers(li)[0]
    c.restart(target)
    deadline = time.monotonic() + 20
    first = None
    while first is None and time.monotonic() < deadline:
        try:
            first = c.get(target, "lone/k29")
        except Exception:
            time.sleep(0.05)
    assert first is not None, "the restarted member never answered"
    assert first.status == 200 and first.json["node"]["value"] == "v29", f"the first answer: {first}"
    got = flatten(c.tree(target))
    assert all(got[f"/lone/k{k:02d}"] == f"v{k}" for k in range(30))
    assert c[target].stats_self()["leaderInfo"]["leader"] == "", "no leader: served from its own committed state"

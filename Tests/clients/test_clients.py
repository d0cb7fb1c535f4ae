"""Real etcd v2 clients against a running Cairn: python-etcd 0.4.5 and `ETCDCTL_API=2 etcdctl`.

CAIRN_URL names the member (its advertised client URL must be the same, as clients discover members through it).
"""
import os
import subprocess
import threading
import time
import uuid

import etcd
import pytest

URL = os.environ["CAIRN_URL"]
HOST, PORT = URL.split("//")[1].split(":")


@pytest.fixture
def client():
    return etcd.Client(host=HOST, port=int(PORT))


@pytest.fixture
def base():
    return "/test-" + uuid.uuid4().hex[:8]


def test_write_read_delete(client, base):
    client.write(base + "/k", "v1")
    assert client.read(base + "/k").value == "v1"
    client.delete(base + "/k")
    with pytest.raises(etcd.EtcdKeyNotFound):
        client.read(base + "/k")


def test_test_and_set(client, base):
    client.write(base + "/cas", "old")
    client.test_and_set(base + "/cas", "new", "old")
    assert client.read(base + "/cas").value == "new"
    with pytest.raises(ValueError):
        client.test_and_set(base + "/cas", "other", "old")


def test_ttl(client, base):
    result = client.write(base + "/ttl", "x", ttl=2)
    assert result.ttl in (1, 2)
    time.sleep(3.2)
    with pytest.raises(etcd.EtcdKeyNotFound):
        client.read(base + "/ttl")


def test_directory_listing(client, base):
    client.write(base + "/dir/a", "1")
    client.write(base + "/dir/b/c", "2")
    top = client.read(base + "/dir")
    assert sorted(child.key for child in top.children) == [base + "/dir/a", base + "/dir/b"]
    deep = client.read(base + "/dir", recursive=True)
    assert sorted(child.key for child in deep.leaves) == [base + "/dir/a", base + "/dir/b/c"]
    with pytest.raises(etcd.EtcdNotFile):
        client.delete(base + "/dir")
    client.delete(base + "/dir", recursive=True)


def test_in_order_append(client, base):
    first = client.write(base + "/queue", "job1", append=True)
    second = client.write(base + "/queue", "job2", append=True)
    assert int(first.key.rsplit("/", 1)[1]) < int(second.key.rsplit("/", 1)[1])
    listing = client.read(base + "/queue", sorted=True)
    assert [child.value for child in listing.children] == ["job1", "job2"]


def test_watch_and_watch_with_index(client, base):
    written = client.write(base + "/w", "first")

    def later():
        time.sleep(0.5)
        client.write(base + "/w", "second")

    threading.Thread(target=later).start()
    assert client.watch(base + "/w", timeout=10).value == "second"
    assert client.watch(base + "/w", index=written.modifiedIndex, timeout=10).value == "first"


def test_members_and_leader(client):
    assert client.machines == [URL]
    assert client.leader["clientURLs"] == [URL]


def etcdctl(*args):
    env = dict(os.environ, ETCDCTL_API="2")
    return subprocess.run(["etcdctl", "--endpoints", URL, *args], env=env, capture_output=True, text=True, timeout=20)


@pytest.mark.skipif(subprocess.run(["which", "etcdctl"], capture_output=True).returncode != 0, reason="etcdctl not installed")
def test_etcdctl_v2(base):
    assert etcdctl("set", base + "/a", "hello").stdout == "hello\n"
    assert etcdctl("get", base + "/a").stdout == "hello\n"
    assert etcdctl("mk", base + "/a", "again").returncode != 0
    assert etcdctl("mk", base + "/b", "made").stdout == "made\n"
    assert etcdctl("mkdir", base + "/d").returncode == 0
    assert etcdctl("update", base + "/a", "changed").stdout == "changed\n"
    listing = etcdctl("ls", "--recursive", base).stdout.split()
    assert sorted(listing) == [base + "/a", base + "/b", base + "/d"]
    assert etcdctl("rm", base + "/b").returncode == 0
    watcher = subprocess.Popen(["etcdctl", "--endpoints", URL, "watch", base + "/a"], env=dict(os.environ, ETCDCTL_API="2"),
                               stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    etcdctl("set", base + "/a", "watched")
    assert watcher.communicate(timeout=10)[0] == "watched\n"


@pytest.mark.skipif(subprocess.run(["which", "etcdctl"], capture_output=True).returncode != 0, reason="etcdctl not installed")
def test_etcdctl_v2_member_list_and_cluster_health():
    """etcdctl asks GET /v2/members/leader before it lists the members (it failed with a 404 here once)."""
    listed = etcdctl("member", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.endswith(f" clientURLs={URL} isLeader=true\n") and listed.stdout.count("\n") == 1, listed.stdout
    health = etcdctl("cluster-health")
    assert health.returncode == 0 and health.stdout.endswith(f"is healthy: got healthy result from {URL}\ncluster is healthy\n"), health.stdout


def test_metrics_parse_as_prometheus_text(client, base):
    """/metrics through a real Prometheus text parser: etcd's names, a leader, the WAL fsync histogram counting,
    answers by method and code."""
    import urllib.request
    from prometheus_client.parser import text_string_to_metric_families

    client.write(base + "/m", "v")
    with pytest.raises(etcd.EtcdKeyNotFound):
        client.read(base + "/missing")
    with urllib.request.urlopen(URL + "/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        families = {f.name: f for f in text_string_to_metric_families(response.read().decode())}
    value = lambda name: families[name].samples[0].value
    assert value("etcd_server_has_leader") == 1 and value("etcd_server_is_leader") == 1
    assert value("etcd_server_proposals_applied_total") >= 1
    fsync = {s.name: s.value for s in families["etcd_disk_wal_fsync_duration_seconds"].samples}
    assert fsync["etcd_disk_wal_fsync_duration_seconds_count"] >= 1
    received = [s for s in families["etcd_http_received"].samples if s.labels.get("method") == "PUT"]
    assert received and received[0].value >= 1
    answered = lambda family, method, code: sum(s.value for s in families[family].samples
                                                if s.labels == {"method": method, "code": code})
    assert answered("cairn_http_responses", "PUT", "201") >= 1
    assert answered("cairn_http_responses", "GET", "404") >= 1
    assert answered("etcd_http_failed", "GET", "404") >= 1
    assert all(int(s.labels["code"]) >= 400 for s in families["etcd_http_failed"].samples)

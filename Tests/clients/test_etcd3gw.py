"""The real v3 gateway client etcd3gw (OpenStack's, under tooz) against a running Cairn: keys, prefixes, a
transaction, a lease whose keys expire, and watches.

CAIRN_URL names the member.
"""
import os
import threading
import time
import uuid

import etcd3gw
import pytest

URL = os.environ["CAIRN_URL"]
HOST, PORT = URL.split("//")[1].split(":")


@pytest.fixture
def client():
    return etcd3gw.client(host=HOST, port=int(PORT))


@pytest.fixture
def base():
    return "/v3test-" + uuid.uuid4().hex[:8]


def test_put_get_delete(client, base):
    assert client.put(base + "/k", "v1")
    assert client.get(base + "/k") == [b"v1"]
    [(value, meta)] = client.get(base + "/k", metadata=True)
    assert value == b"v1" and meta["version"] == "1"
    assert client.delete(base + "/k")
    assert client.get(base + "/k") == []
    assert not client.delete(base + "/k")


def test_prefix(client, base):
    for name in ("a", "b", "c"):
        client.put(base + "/p/" + name, name)
    client.put(base + "/q", "outside")
    assert sorted(value for value, _ in client.get_prefix(base + "/p/")) == [b"a", b"b", b"c"]
    assert client.delete_prefix(base + "/p/")
    assert client.get_prefix(base + "/p/") == []
    assert client.get(base + "/q") == [b"outside"]


def test_create_and_replace_are_transactions(client, base):
    assert client.create(base + "/c", "first")
    assert not client.create(base + "/c", "second")
    assert client.replace(base + "/c", "first", "swapped")
    assert not client.replace(base + "/c", "first", "again")
    assert client.get(base + "/c") == [b"swapped"]


def test_lease_with_keys_expires(client, base):
    lease = client.lease(ttl=2)
    assert lease.id > 0
    client.put(base + "/leased", "v", lease=lease)
    assert lease.keys() == [(base + "/leased").encode()]
    assert lease.refresh() == 2
    assert 0 <= lease.ttl() <= 2
    deadline = time.time() + 10
    while client.get(base + "/leased") and time.time() < deadline:
        time.sleep(0.2)
    assert client.get(base + "/leased") == []
    assert lease.ttl() == -1


def test_lease_revoke_deletes_keys(client, base):
    lease = client.lease(ttl=60)
    client.put(base + "/r", "v", lease=lease)
    assert lease.revoke()
    assert client.get(base + "/r") == []


def test_watch_sees_puts_and_deletes(client, base):
    events, cancel = client.watch(base + "/w")
    seen = []

    def collect():
        for event in events:
            seen.append((event["type"] if "type" in event else "PUT", event["kv"].get("value")))
            if len(seen) == 2:
                break

    reader = threading.Thread(target=collect)
    reader.start()
    time.sleep(0.3)
    client.put(base + "/w", "1")
    client.delete(base + "/w")
    reader.join(10)
    cancel()
    assert [kind for kind, _ in seen] == ["PUT", "DELETE"]


def test_watch_prefix_once(client, base):
    result = {}

    def wait():
        result["event"] = client.watch_prefix_once(base + "/once/", timeout=10)

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.3)
    client.put(base + "/once/x", "hello")
    waiter.join(15)
    assert result["event"]["kv"]["key"] == (base + "/once/x").encode()


def test_status_and_members(client):
    assert client.status()["version"] == "3.4.31"  # Status reports 3.4.31 (Kubernetes' progress-request floor)
    [member] = client.members()
    assert member["name"]

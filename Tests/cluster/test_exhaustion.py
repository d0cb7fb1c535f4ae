"""Resource exhaustion a member must survive by itself: no descriptor left (idle connections up to the limit)
and a full disk (a tmpfs in a private mount namespace). Both pass once the condition does, without a restart.

Cairn only: the expected answers while the condition lasts (a 503 /health, `storageFailure`) are Cairn's own.
"""
import http.client
import os
import shutil
import socket
import subprocess
import time
import urllib.parse

import pytest

import cluster as harness

pytestmark = pytest.mark.skipif(harness.is_etcd(), reason="Cairn's own recovery from resource exhaustion")

SEGMENT_BYTES = 64 << 20  # WALOptions.segmentBytesMax: a segment rollover needs this much free space
VALUE_BYTES = 512 << 10


class KeptConnection:
    """One keep-alive client connection opened before the descriptors run out (a new one could not be accepted)."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection(harness.HOST, port, timeout=10)

    def put(self, key: str, value: str) -> "tuple[int, bytes]":
        body = urllib.parse.urlencode({"value": value}).encode()
        self.conn.request("PUT", "/v2/keys/" + key, body=body,
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
        r = self.conn.getresponse()
        return r.status, r.read()

    def close(self):
        self.conn.close()


def wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def healthy(member) -> bool:
    try:
        return member.request("GET", "/health").status == 200
    except Exception:
        return False


def test_writes_resume_after_idle_connections_took_every_descriptor(make_cluster):
    if not shutil.which("prlimit"):
        pytest.skip("prlimit (util-linux) is not installed")
    c = make_cluster(1, start=False)
    m = c[0]
    limit = 96
    plain_args = m.args
    m.args = lambda state: ["prlimit", f"--nofile={limit}:{limit}", "--"] + plain_args(state)
    c.start()
    writer = KeptConnection(m.client_port)
    assert writer.put("before", "x")[0] in (200, 201)
    idle = []
    try:
        # Idle connections until the member holds every descriptor it may (the kernel queues the rest).
        for _ in range(2 * limit):
            if open_descriptors(m.proc.pid) >= limit:
                break
            s = socket.create_connection((harness.HOST, m.client_port), timeout=2)
            idle.append(s)
            wait_until(lambda: open_descriptors(m.proc.pid) >= limit or len(idle) > 2 * limit, 0.05)
        assert wait_until(lambda: open_descriptors(m.proc.pid) >= limit, 10), "the member never reached its limit"
        # Enough log to need a new segment (a new file and a directory fsync) while no descriptor is free.
        statuses = [writer.put(f"big{n}", "v" * VALUE_BYTES)[0] for n in range(SEGMENT_BYTES // VALUE_BYTES + 8)]
        print(f"statuses of writes at the descriptor limit: {sorted(set(statuses))}")
    finally:
        for s in idle:
            s.close()
    # Without a restart: writes are taken again and the member says it is healthy.
    closed = time.monotonic()
    assert wait_until(lambda: writer.put("after", "y")[0] in (200, 201), 30), "writes never resumed"
    assert wait_until(lambda: healthy(m), 10)
    print(f"a write succeeded {time.monotonic() - closed:.1f} s after the idle connections closed")
    assert c.get(0, "after").json["node"]["value"] == "y"
    assert c.get(0, "before").json["node"]["value"] == "x"
    writer.close()


def can_mount_tmpfs() -> bool:
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "d=$(mktemp -d) && mount -t tmpfs -o size=1m tmpfs $d"],
                           capture_output=True)
    return probe.returncode == 0 and shutil.which("nsenter") is not None


def test_a_full_disk_is_reported_and_survived_once_space_is_freed(make_cluster):
    if not can_mount_tmpfs():
        pytest.skip("cannot mount a tmpfs in a private mount namespace (needs root, unshare and nsenter)")
    c = make_cluster(1, start=False)
    m = c[0]
    os.makedirs(m.data_dir)
    # Room for two segments and a little more: the second cannot be made while the filler holds the rest.
    size_mb = 2 * (SEGMENT_BYTES >> 20) + 16
    plain_args = m.args
    m.args = lambda state: ["unshare", "-m", "sh", "-c",
                            f'mount -t tmpfs -o size={size_mb}m tmpfs "{m.data_dir}" && exec "$@"', "sh"] + plain_args(state)
    c.start()

    def in_namespace(*command):
        subprocess.run(["nsenter", "-t", str(m.proc.pid), "-m", "--"] + list(command), check=True)

    filler = os.path.join(m.data_dir, "filler")
    in_namespace("sh", "-c", f'fallocate -l $(( $(df --output=avail -B1 "{m.data_dir}" | tail -1) - (8 << 20) )) "{filler}"')
    writer = KeptConnection(m.client_port)
    assert writer.put("before", "x")[0] in (200, 201)
    refused = None
    for n in range(SEGMENT_BYTES // VALUE_BYTES + 8):
        status, body = writer.put(f"big{n}", "v" * VALUE_BYTES)
        if status not in (200, 201):
            refused = (status, body)
            break
    assert refused is not None, "the disk never filled"
    status, body = refused
    assert status == 500 and b'"errorCode":300' in body and b"storage unavailable" in body, refused
    health = m.request("GET", "/health")
    # etcd 3.4's shape under its NOSPACE alarm (Go's http.Error): 503, nosniff, the JSON and a line feed.
    assert (health.status, health.raw, health.headers["X-Content-Type-Options"]) == (503, b'{"health":"false"}\n', "nosniff")
    assert "No space left on device" in m.stats_self()["storageFailure"]
    assert "cairn_storage_failing 1" in m.request("GET", "/metrics").raw.decode()
    assert c.get(0, "before").json["node"]["value"] == "x", "plain reads are still served"
    in_namespace("rm", filler)
    freed = time.monotonic()
    assert wait_until(lambda: writer.put("after", "y")[0] in (200, 201), 30), "writes never resumed"
    print(f"writes resumed {time.monotonic() - freed:.1f} s after space was freed")
    assert healthy(m)
    assert "storageFailure" not in m.stats_self()
    assert "cairn_storage_failing 0" in m.request("GET", "/metrics").raw.decode()
    for n in range(3):
        assert c.get(0, f"big{n}").json["node"]["value"] == "v" * VALUE_BYTES
    writer.close()


def snapshot_files_open(pid: int) -> "list[str]":
    names = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if ".snap" in target:
            names.append(target)
    return names


def test_one_backup_at_a_time_and_a_stalled_reader_is_cut_off(make_cluster):
    c = make_cluster(1)
    m = c[0]
    writer = KeptConnection(m.client_port)
    for n in range(48):  # a 24 MiB snapshot: more than the socket buffers hold
        assert writer.put(f"big{n}", "v" * VALUE_BYTES)[0] in (200, 201)
    writer.close()
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect((harness.HOST, m.client_port))
    stalled.sendall(f"GET /cairn/snapshot HTTP/1.1\r\nHost: {harness.HOST}\r\n\r\n".encode())
    try:
        assert wait_until(lambda: snapshot_files_open(m.proc.pid), 20), "the backup never started streaming"
        second = m.request("GET", "/cairn/snapshot", timeout=10)
        assert second.status == 429, second
        assert "already running" in second.json["message"]
        # The reader takes nothing: within BackupFile.backupPieceSecondsMax (10 s) the stream is cut, the file closed.
        assert wait_until(lambda: not snapshot_files_open(m.proc.pid), 30), "a stalled backup keeps its file open"
    finally:
        stalled.close()
    again = m.request("GET", "/cairn/snapshot", timeout=30)
    assert again.status == 200 and len(again.raw) > 24 * VALUE_BYTES

"""Patroni (PostgreSQL high availability, Debian's `patroni`) in its `etcd3` mode on a 3-member cluster: it
talks to the v3 JSON gateway (leader lock with a lease, transactions, watches), bootstraps a primary, streams a
replica, survives the loss of the cluster's Raft leader, and fails over when its own primary dies."""
import base64
import glob
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request

import pytest

from cluster import HOST, free_ports

PATRONI = shutil.which("patroni")
PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
SCOPE = "cairn-ha"
TTL_S = 30
# Patroni's own timeouts, generous so a loaded machine (a debug build, CI) does not read as a lost DCS.
RETRY_TIMEOUT_S = 10

pytestmark = pytest.mark.skipif(not PATRONI or not PG_BIN, reason="patroni and postgresql are not installed")


def v3_get(member, key: str) -> "str | None":
    body = json.dumps({"key": base64.b64encode(key.encode()).decode()}).encode()
    with urllib.request.urlopen(f"{member.client_url}/v3/kv/range", data=body, timeout=2.0) as r:
        kvs = json.loads(r.read()).get("kvs", [])
    return base64.b64decode(kvs[0]["value"]).decode() if kvs else None


class PatroniNode:
    """One Patroni with its PostgreSQL, run as the `postgres` user when the tests run as root (PostgreSQL
    refuses root), in a process group of its own so a kill takes the postmaster with it."""

    def __init__(self, root: str, name: str, hosts: str):
        self.name = name
        self.rest_port, self.pg_port = free_ports(2)
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir, mode=0o700)
        self.log_path = os.path.join(root, name + ".log")
        config = f"""scope: {SCOPE}
name: {name}
restapi: {{listen: '{HOST}:{self.rest_port}', connect_address: '{HOST}:{self.rest_port}'}}
etcd3: {{hosts: '{hosts}'}}
bootstrap:
  dcs: {{ttl: {TTL_S}, loop_wait: 1, retry_timeout: {RETRY_TIMEOUT_S}, maximum_lag_on_failover: 1048576}}
  initdb: [{{encoding: UTF8}}]
  pg_hba: ['host replication replicator 127.0.0.1/32 trust', 'host all all 127.0.0.1/32 trust']
postgresql:
  listen: '{HOST}:{self.pg_port}'
  connect_address: '{HOST}:{self.pg_port}'
  data_dir: {self.dir}/data
  bin_dir: {os.path.dirname(PG_BIN[-1])}
  pgpass: {self.dir}/pgpass
  authentication:
    replication: {{username: replicator, password: replicator}}
    superuser: {{username: postgres, password: postgres}}
  parameters: {{unix_socket_directories: '{self.dir}'}}
"""
        self.config_path = os.path.join(self.dir, "patroni.yml")
        with open(self.config_path, "w") as f:
            f.write(config)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            shutil.chown(self.config_path, "postgres")
        self.proc = None

    def start(self):
        command = [PATRONI, self.config_path]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--"] + command
        log = open(self.log_path, "ab")
        # In its own directory: the postgres user may not enter the test's (a fresh clone under a 0700 mktemp
        # directory), and Patroni's worker processes change to the parent's directory.
        self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True, cwd=self.dir)
        log.close()

    def kill(self):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        # A postmaster that left the group (it should not) is found by its data directory.
        subprocess.run(["pkill", "-9", "-f", self.dir + "/data"], check=False)

    def status(self) -> dict:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.rest_port}/patroni", timeout=1.0) as r:
                return json.loads(r.read())
        except Exception:
            return {}

    def role(self) -> "str | None":
        s = self.status()
        if s.get("state") != "running":
            return None
        return {"master": "primary", "primary": "primary", "replica": "replica"}.get(s.get("role"))

    def wait_role(self, role: str, timeout: float):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.role() == role:
                return
            time.sleep(0.25)
        raise AssertionError(f"{self.name} is not {role} after {timeout}s: {self.status()}\n{self.log_tail()}")

    def sql(self, statement: str) -> str:
        out = subprocess.run([os.path.join(os.path.dirname(PG_BIN[-1]), "psql"), "-h", HOST, "-p", str(self.pg_port),
                              "-U", "postgres", "-d", "postgres", "-tAc", statement],
                             capture_output=True, text=True, timeout=10)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def log_tail(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-30:])
        except OSError:
            return ""


@pytest.mark.no_watchdog  # every wait below is bounded; together they can pass the default 90 s on a loaded machine
def test_patroni_bootstraps_replicates_and_fails_over(make_cluster):
    c = make_cluster(3)
    root = tempfile.mkdtemp(prefix="cairn-patroni-")
    os.chmod(root, 0o755)
    hosts = ",".join(f"{HOST}:{m.client_port}" for m in c.members)
    nodes = [PatroniNode(root, f"pg{i}", hosts) for i in range(2)]
    try:
        nodes[0].start()
        nodes[0].wait_role("primary", timeout=120)
        nodes[1].start()
        nodes[1].wait_role("replica", timeout=120)
        assert v3_get(c[0], f"/service/{SCOPE}/leader") == "pg0"
        nodes[0].sql("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")

        # The cluster's Raft leader dies: Patroni's client moves to another member and keeps its lock.
        raft_leader = c.wait_leader()
        c.kill(raft_leader)
        survivors = [i for i in range(3) if i != raft_leader]
        c.wait_leader(among=survivors, timeout=10)
        time.sleep(TTL_S + 2)
        assert nodes[0].role() == "primary", nodes[0].log_tail()
        assert nodes[1].role() == "replica", nodes[1].log_tail()

        # The primary dies: its lock's lease runs out and the replica takes over with the data.
        t0 = time.monotonic()
        nodes[0].kill()
        nodes[1].wait_role("primary", timeout=TTL_S + 60)
        elapsed = time.monotonic() - t0
        assert nodes[1].sql("SELECT x FROM kept") == "42"
        assert v3_get(c[survivors[0]], f"/service/{SCOPE}/leader") == "pg1"
        from conftest import record
        record(f"patroni: primary killed -> replica promoted after {elapsed:.1f} s (ttl {TTL_S} s)")
    except BaseException:
        for n in nodes:
            print(f"===== {n.name} =====\n{n.log_tail()}")
        raise
    finally:
        for n in nodes:
            n.kill()
        shutil.rmtree(root, ignore_errors=True)

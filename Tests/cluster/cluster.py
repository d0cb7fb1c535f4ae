"""A multi-process cluster harness for Cairn (and, to validate the tests, real etcd 3.4).

`Cluster(n)` starts n members (3 by default; 5 works too) on 127.0.0.1 with free ports. The server is chosen by
the environment variable CLUSTER_SERVER: `etcd` (the default; runs `etcd --enable-v2=true ...`) or a path to a
`cairn` binary, which takes the same flags:

    --name --data-dir --listen-client-urls --advertise-client-urls --listen-peer-urls
    --initial-advertise-peer-urls --initial-cluster --initial-cluster-state new --initial-cluster-token
    --heartbeat-interval (ms) --election-timeout (ms) [--snapshot-count N]

Member operations: kill (-9), restart (same data dir), wipe_and_restart (empty data dir, rejoining with
`--initial-cluster-state existing`; Cairn only: etcd needs a member remove/add for that), pause/resume
(SIGSTOP/SIGCONT), and network partitions.

How partitions work (no network namespaces, no root needed)
------------------------------------------------------------
Every member's peer traffic goes through a TCP proxy run by this harness (one thread per direction per
connection). Member i listens for peers on its real port (`--listen-peer-urls`), but `--initial-cluster` and
`--initial-advertise-peer-urls` name its proxy port, so every connection a member opens to member i arrives at
i's proxy. The proxy identifies who is connecting: it looks the connecting socket (127.0.0.1:ephemeral ->
127.0.0.1:proxy) up in /proc/net/tcp to get its inode, then finds which member process holds a file
descriptor `socket:[inode]` in /proc/PID/fd. That gives the ordered pair (origin -> target) of every peer
connection, so the harness can cut any set of links: `block(i, j)` cuts both directions between i and j by
closing every live proxied connection between them and refusing new ones (the proxy accepts and closes at
once), `isolate(i)` blocks i from everyone, `partition([[0], [1, 2]])` blocks every pair across groups, and
`heal()` removes all blocks. A connection whose origin cannot be identified (its process has gone) is
refused while the target has any block, which errs toward more isolation, never less. Client traffic (the
tests' HTTP requests) goes straight to the members' client ports and is never blocked, so a test can talk
to both sides of a partition. This works the same for etcd and Cairn (it does not look inside the peer
protocol) and leaves nothing behind: the proxies are threads of the test process.

Everything waits with a bound in time; every process is killed at the end (try/finally through the context
manager, plus an atexit hook); each member's log is kept in the cluster's temp dir (`Member.log_path`) and
`Cluster.dump_logs()` prints their tails (the conftest does that when a test fails).
"""
from __future__ import annotations

import atexit
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse

HOST = "127.0.0.1"

_live_clusters: "set[Cluster]" = set()


def _kill_all_at_exit():
    for c in list(_live_clusters):
        try:
            c.stop()
        except Exception:
            pass


atexit.register(_kill_all_at_exit)


def server_command() -> "tuple[str, bool]":
    """The server binary and whether it is etcd."""
    s = os.environ.get("CLUSTER_SERVER", "etcd")
    if s == "etcd":
        path = shutil.which("etcd")
        if not path:
            raise RuntimeError("etcd not found: apt-get install -y etcd-server etcd-client")
        return path, True
    path = os.path.abspath(s)
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"CLUSTER_SERVER={s}: not an executable")
    return path, os.path.basename(path).startswith("etcd")


def is_etcd() -> bool:
    return server_command()[1]


def free_ports(k: int) -> "list[int]":
    socks = []
    try:
        for _ in range(k):
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# ---------------------------------------------------------------------------------------------------------
# HTTP


class NotSent(Exception):
    """The connection could not be opened: the request certainly did not reach the server."""


class Response:
    def __init__(self, status: int, body: bytes, headers):
        self.status = status
        self.raw = body
        self.headers = headers
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    @property
    def error_code(self):
        return self.json.get("errorCode") if isinstance(self.json, dict) else None

    def __repr__(self):
        return f"<{self.status} {self.raw[:200]!r}>"


def http_request(port: int, method: str, path: str, params: "dict | None" = None, form: "dict | None" = None,
                 timeout: float = 2.0) -> Response:
    """One request on a fresh connection. Raises NotSent if the connection failed (nothing was sent); any
    other exception (timeout, reset) means the request may or may not have been applied."""
    if params:
        path = path + "?" + urllib.parse.urlencode(params)
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        try:
            conn.connect()
        except OSError as e:
            raise NotSent(str(e)) from e
        body = urllib.parse.urlencode(form).encode() if form is not None else None
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        return Response(r.status, r.read(), r.headers)
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------------------
# Peer proxy


def _hex_addr(ip: str, port: int) -> str:
    a = socket.inet_aton(ip)
    return "%08X:%04X" % (int.from_bytes(a, "little"), port)


def _socket_inode(local: "tuple[str, int]", remote: "tuple[str, int]") -> "str | None":
    want_l, want_r = _hex_addr(*local), _hex_addr(*remote)
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    l, r = parts[1], parts[2]
                    if table.endswith("6"):  # IPv4-mapped: 0000000000000000FFFF00000100007F:PORT
                        l, r = l[-13:], r[-13:]
                    if l == want_l and r == want_r:
                        return parts[9]
        except (OSError, StopIteration):
            continue
    return None


def _pids_with_socket(inode: str, pids: "dict[int, int]") -> "int | None":
    target = f"socket:[{inode}]"
    for pid, idx in pids.items():
        fd_dir = f"/proc/{pid}/fd"
        try:
            for fd in os.listdir(fd_dir):
                try:
                    if os.readlink(os.path.join(fd_dir, fd)) == target:
                        return idx
                except OSError:
                    continue
        except OSError:
            continue
    return None


class _Link:
    def __init__(self, origin, target, a: socket.socket, b: socket.socket):
        self.origin, self.target, self.a, self.b = origin, target, a, b
        self._closed = False
        self._lock = threading.Lock()

    def close(self):
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for s in (self.a, self.b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass


class PeerProxy:
    def __init__(self, cluster: "Cluster", target: int, listen_port: int, target_port: int):
        self.cluster, self.target, self.target_port = cluster, target, target_port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, listen_port))
        self.sock.listen(64)
        self.port = listen_port
        self.links: "set[_Link]" = set()
        self.lock = threading.Lock()
        self.stopped = False
        self.refused = 0
        threading.Thread(target=self._accept_loop, daemon=True, name=f"proxy-{target}").start()

    def _accept_loop(self):
        while not self.stopped:
            try:
                conn, addr = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn, addr), daemon=True).start()

    def _handle(self, conn: socket.socket, addr):
        origin = self.cluster._identify(addr, self.port)
        if self.stopped or self.cluster._is_blocked(origin, self.target):
            self.refused += 1
            conn.close()
            return
        try:
            up = socket.create_connection((HOST, self.target_port), timeout=2)
            up.settimeout(None)
        except OSError:
            conn.close()
            return
        for s in (conn, up):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = _Link(origin, self.target, conn, up)
        with self.lock:
            self.links.add(link)
        # The block may have been set between the check and now: re-check.
        if self.cluster._is_blocked(origin, self.target):
            self._drop(link)
            return
        threading.Thread(target=self._pump, args=(link, conn, up), daemon=True).start()
        threading.Thread(target=self._pump, args=(link, up, conn), daemon=True).start()

    def _pump(self, link: _Link, src: socket.socket, dst: socket.socket):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        self._drop(link)

    def _drop(self, link: _Link):
        link.close()
        with self.lock:
            self.links.discard(link)

    def cut(self):
        """Close every live link that is now blocked."""
        with self.lock:
            links = list(self.links)
        for l in links:
            if self.cluster._is_blocked(l.origin, l.target):
                self._drop(l)

    def close(self):
        self.stopped = True
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            links = list(self.links)
        for l in links:
            self._drop(l)


# ---------------------------------------------------------------------------------------------------------
# Members and the cluster


class Member:
    def __init__(self, cluster: "Cluster", idx: int, client_port: int, peer_port: int, proxy_port: int):
        self.cluster = cluster
        self.idx = idx
        self.name = f"m{idx}"
        self.client_port = client_port
        self.peer_port = peer_port
        self.proxy_port = proxy_port
        self.data_dir = os.path.join(cluster.dir, self.name + ".data")
        self.log_path = os.path.join(cluster.dir, self.name + ".log")
        self.proc: "subprocess.Popen | None" = None
        self.paused = False
        self.starts = 0

    @property
    def client_url(self):
        return f"http://{HOST}:{self.client_port}"

    @property
    def peer_url(self):
        """The peer URL the cluster knows this member by: its proxy's."""
        return f"http://{HOST}:{self.proxy_port}"

    @property
    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def args(self, state: str) -> "list[str]":
        c = self.cluster
        a = [c.server, "--enable-v2=true",
             "--name", self.name,
             "--data-dir", self.data_dir,
             "--listen-client-urls", self.client_url,
             "--advertise-client-urls", self.client_url,
             "--listen-peer-urls", f"http://{HOST}:{self.peer_port}",
             "--initial-advertise-peer-urls", f"http://{HOST}:{self.proxy_port}",
             "--initial-cluster", c.initial_cluster,
             "--initial-cluster-state", state,
             "--initial-cluster-token", c.token,
             "--heartbeat-interval", str(c.heartbeat_ms),
             "--election-timeout", str(c.election_ms)]
        if c.snapshot_count is not None:
            a += ["--snapshot-count", str(c.snapshot_count)]
        return a + list(c.extra_args)

    def start(self, state: str = "new"):
        assert not self.alive, f"{self.name} already running"
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(f"\n===== harness: start #{self.starts} of {self.name} ({state}) at {time.time():.3f}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(self.args(state), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.paused = False

    def kill(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.paused = False

    def pause(self):
        if self.alive:
            os.kill(self.proc.pid, signal.SIGSTOP)
            self.paused = True

    def resume(self):
        if self.alive:
            os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def request(self, method, path, params=None, form=None, timeout=2.0) -> Response:
        return http_request(self.client_port, method, path, params, form, timeout)

    def stats_self(self, timeout=0.5) -> "dict | None":
        try:
            r = self.request("GET", "/v2/stats/self", timeout=timeout)
        except Exception:
            return None
        return r.json if r.status == 200 and isinstance(r.json, dict) else None

    def __repr__(self):
        return f"<{self.name} client={self.client_port} alive={self.alive} paused={self.paused}>"


class Cluster:
    def __init__(self, n: int = 3, heartbeat_ms: "int | None" = None, election_ms: "int | None" = None,
                 snapshot_count: "int | None" = None, extra_args=(), start: bool = True):
        self.server, self.etcd = server_command()
        self.n = n
        self.heartbeat_ms = heartbeat_ms or int(os.environ.get("CLUSTER_HEARTBEAT_MS", "100"))
        self.election_ms = election_ms or int(os.environ.get("CLUSTER_ELECTION_MS", "1000"))
        self.snapshot_count = snapshot_count
        self.extra_args = extra_args
        self.dir = tempfile.mkdtemp(prefix="cairn-cluster-")
        self.token = "cluster-" + os.path.basename(self.dir)
        ports = free_ports(3 * n)
        self.members = [Member(self, i, ports[3 * i], ports[3 * i + 1], ports[3 * i + 2]) for i in range(n)]
        self.initial_cluster = ",".join(f"{m.name}=http://{HOST}:{m.proxy_port}" for m in self.members)
        self._blocked: "set[frozenset]" = set()
        self._block_lock = threading.Lock()
        self.proxies = [PeerProxy(self, m.idx, m.proxy_port, m.peer_port) for m in self.members]
        self._stopped = False
        _live_clusters.add(self)
        if start:
            try:
                self.start()
            except BaseException:
                self.dump_logs()
                self.stop()
                raise

    # -- lifecycle

    def start(self, timeout: float = 30):
        for m in self.members:
            m.start("new")
        self.wait_leader(timeout=timeout)

    def stop(self):
        if self._stopped:
            return
        self._stopped = True
        for m in self.members:
            try:
                m.resume()
            except Exception:
                pass
            m.kill()
        for p in self.proxies:
            p.close()
        _live_clusters.discard(self)

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def __getitem__(self, i) -> Member:
        return self.members[i]

    # -- member operations

    def kill(self, i: int):
        self.members[i].kill()

    def restart(self, i: int, state: str = "new"):
        m = self.members[i]
        m.kill()
        m.start(state)

    def new_member(self) -> Member:
        """A member not yet in the cluster, with fresh ports: add it through the members API (its peer URL is
        `Member.peer_url`), then `join` it."""
        client_port, peer_port, proxy_port = free_ports(3)
        return Member(self, self.n, client_port, peer_port, proxy_port)

    def join(self, m: Member):
        """Starts a member the cluster has just added with `--initial-cluster-state existing`, as etcd's
        documentation says to, behind its own peer proxy."""
        self.members.append(m)
        self.proxies.append(PeerProxy(self, m.idx, m.proxy_port, m.peer_port))
        self.n += 1
        self.initial_cluster += f",{m.name}=http://{HOST}:{m.proxy_port}"
        m.start("existing")

    def add_member(self, via: int) -> "tuple[Member, Response]":
        """Adds a member through `POST /v2/members` on member `via` (its peer URL is a new proxy) and starts it with
        `--initial-cluster-state existing`, as etcd's documentation says to. Returns it and the POST's answer."""
        m = self.new_member()
        body = json.dumps({"peerURLs": [m.peer_url]}).encode()
        conn = http.client.HTTPConnection(HOST, self.members[via].client_port, timeout=10)
        try:
            conn.request("POST", "/v2/members", body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            answer = Response(resp.status, resp.read(), resp.getheaders())
        finally:
            conn.close()
        if answer.status != 201:
            return m, answer
        self.join(m)
        return m, answer

    def remove_member(self, i: int, via: int) -> Response:
        """`DELETE /v2/members/<id of member i>` on member `via`."""
        mid = self.members[i].stats_self(timeout=2)["id"]
        return self.members[via].request("DELETE", f"/v2/members/{mid}", timeout=10)

    def wipe_and_restart(self, i: int):
        m = self.members[i]
        m.kill()
        shutil.rmtree(m.data_dir, ignore_errors=True)
        m.start("existing")

    def pause(self, i: int):
        self.members[i].pause()

    def resume(self, i: int):
        self.members[i].resume()

    # -- partitions

    def _identify(self, addr, proxy_port) -> "int | None":
        inode = _socket_inode((addr[0], addr[1]), (HOST, proxy_port))
        if inode is None:
            return None
        pids = {m.proc.pid: m.idx for m in self.members if m.alive}
        return _pids_with_socket(inode, pids)

    def _is_blocked(self, origin: "int | None", target: int) -> bool:
        with self._block_lock:
            if origin is None:
                return any(target in pair for pair in self._blocked)
            return frozenset((origin, target)) in self._blocked

    def block(self, i: int, j: int):
        with self._block_lock:
            self._blocked.add(frozenset((i, j)))
        for p in self.proxies:
            p.cut()

    def partition(self, groups: "list[list[int]]"):
        """Cut every link between members of different groups (members in no group keep all their links)."""
        with self._block_lock:
            for a in range(len(groups)):
                for b in range(a + 1, len(groups)):
                    for i in groups[a]:
                        for j in groups[b]:
                            self._blocked.add(frozenset((i, j)))
        for p in self.proxies:
            p.cut()

    def isolate(self, i: int):
        self.partition([[i], [j for j in range(self.n) if j != i]])

    def heal(self):
        with self._block_lock:
            self._blocked.clear()

    def connected(self, i: int, j: int) -> bool:
        return not self._is_blocked(i, j)

    # -- leaders

    def leader(self, among=None) -> "int | None":
        """The member (index) that says it is the leader and that a majority of the cluster follows, or None."""
        among = range(self.n) if among is None else among
        stats = {}
        for i in among:
            m = self.members[i]
            if m.alive and not m.paused:
                s = m.stats_self()
                if s:
                    stats[i] = s
        leaders = [i for i, s in stats.items() if s.get("state") == "StateLeader"]
        for li in leaders:
            lid = stats[li].get("id")
            followers = sum(1 for i, s in stats.items()
                            if i != li and (s.get("leaderInfo") or {}).get("leader") == lid
                            and s.get("state") == "StateFollower" and self.connected(i, li))
            if followers + 1 >= self.n // 2 + 1:
                return li
        return None

    def wait_leader(self, among=None, timeout: float = 20, exclude=()) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            li = self.leader(among)
            if li is not None and li not in exclude:
                return li
            time.sleep(0.02)
        raise TimeoutError(f"no leader within {timeout}s: {[m.stats_self() for m in self.members]}")

    def followers(self, leader: int) -> "list[int]":
        return [i for i in range(self.n) if i != leader]

    # -- key helpers (retrying where safe)

    def put(self, i: int, key: str, value: str, timeout=2.0, **params) -> Response:
        return self.members[i].request("PUT", "/v2/keys/" + key.lstrip("/"), params or None,
                                       {"value": value}, timeout)

    def get(self, i: int, key: str, quorum=False, timeout=2.0, **params) -> Response:
        if quorum:
            params["quorum"] = "true"
        return self.members[i].request("GET", "/v2/keys/" + key.lstrip("/"), params or None, None, timeout)

    def put_retry(self, key: str, value: str, members=None, deadline_s: float = 15) -> "tuple[int, Response]":
        """Set key=value through any of `members` until one acknowledges it; a plain set is idempotent, so a
        retry after an ambiguous failure is harmless. Returns (member, response)."""
        members = list(range(self.n)) if members is None else list(members)
        deadline = time.monotonic() + deadline_s
        last = None
        k = 0
        while time.monotonic() < deadline:
            i = members[k % len(members)]
            k += 1
            try:
                r = self.put(i, key, value)
                if r.status in (200, 201):
                    return i, r
                last = r
            except Exception as e:
                last = e
            time.sleep(0.05)
        raise TimeoutError(f"put {key} not acknowledged within {deadline_s}s: {last!r}")

    def tree(self, i: int, timeout=2.0):
        """Member i's whole key space as stored locally (a plain, non-quorum read)."""
        r = self.members[i].request("GET", "/v2/keys/", {"recursive": "true", "sorted": "true"}, None, timeout)
        if r.status != 200:
            raise RuntimeError(f"{self.members[i].name}: tree: {r!r}")
        return r.json

    def wait_converged(self, members=None, timeout: float = 20, expect=None):
        """Wait until every member in `members` has the same local tree (and, if given, `expect(tree)` holds).
        Returns the tree."""
        members = list(range(self.n)) if members is None else list(members)
        deadline = time.monotonic() + timeout
        trees = {}
        while time.monotonic() < deadline:
            trees = {}
            for i in members:
                try:
                    trees[i] = self.tree(i)
                except Exception as e:
                    trees[i] = repr(e)
            first = trees[members[0]]
            if all(t == first for t in trees.values()) and isinstance(first, dict) \
                    and (expect is None or expect(first)):
                return first
            time.sleep(0.1)
        summary = {i: (json.dumps(t)[:300] if isinstance(t, dict) else t) for i, t in trees.items()}
        raise AssertionError(f"members did not converge within {timeout}s: {summary}")

    # -- logs

    def dump_logs(self, lines: int = 60):
        for m in self.members:
            print(f"----- {m.name} log ({m.log_path}), last {lines} lines -----")
            try:
                with open(m.log_path, "rb") as f:
                    tail = f.read().decode(errors="replace").splitlines()[-lines:]
                print("\n".join(tail))
            except OSError as e:
                print(f"(no log: {e})")


def flatten(tree) -> "dict[str, str]":
    """key -> value for every leaf in a recursive GET answer."""
    out = {}

    def walk(node):
        if node.get("dir"):
            for c in node.get("nodes", []) or []:
                walk(c)
        else:
            out[node["key"]] = node.get("value")

    if tree and "node" in tree:
        walk(tree["node"])
    return out

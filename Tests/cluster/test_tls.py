"""TLS on the client and peer ports, with certificates made by Tests/tls/make-certs (openssl) in a temp dir.

Three members speak TLS to clients (client-certificate auth with a CRL) and mutual TLS to each other
(`--peer-client-cert-auth`, `--peer-cert-allowed-cn member`); they elect a leader and replicate. etcdctl (v2) and
curl (HTTP/1.1 and HTTP/2 by ALPN) work with the client certificate and are refused without one, or with an
untrusted, expired or revoked one; so does the v3 JSON gateway. A stranger on a peer port with an untrusted certificate is dropped in the
handshake. A member's certificate is rotated on disk while a client stays connected. Runs against etcd too.
"""
import base64
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from cluster import HOST, free_ports, is_etcd, server_command  # noqa: E402
from test_stranger import hello, frame, put_command, PROPOSE  # noqa: E402

MAKE_CERTS = os.path.join(os.path.dirname(__file__), "..", "tls", "make-certs")


def make_certs(directory: str) -> str:
    subprocess.run(["sh", MAKE_CERTS, directory], check=True, capture_output=True, timeout=60)
    return directory


def member_command(name, data_dir, client_port, peer_port, initial_cluster, certs, server_cert="server"):
    binary, etcd = server_command()
    c = lambda f: os.path.join(certs, f)  # noqa: E731
    command = [
        binary, "--name", name, "--data-dir", data_dir,
        "--listen-client-urls", f"https://{HOST}:{client_port}", "--advertise-client-urls", f"https://{HOST}:{client_port}",
        "--listen-peer-urls", f"https://{HOST}:{peer_port}", "--initial-advertise-peer-urls", f"https://{HOST}:{peer_port}",
        "--initial-cluster", initial_cluster, "--initial-cluster-state", "new", "--initial-cluster-token", "tls-test",
        "--cert-file", c(f"{server_cert}.crt"), "--key-file", c(f"{server_cert}.key"),
        "--client-cert-auth", "--trusted-ca-file", c("ca.crt"), "--client-crl-file", c("ca.crl"),
        "--peer-cert-file", c("peer.crt"), "--peer-key-file", c("peer.key"), "--peer-client-cert-auth",
        "--peer-trusted-ca-file", c("ca.crt"), "--peer-cert-allowed-cn", "member",
    ]
    return command + (["--enable-v2=true"] if etcd else [])


class TLSCluster:
    def __init__(self, n: int, root: str):
        self.root = root
        self.certs = make_certs(os.path.join(root, "certs"))
        ports = free_ports(2 * n)
        self.client_ports, self.peer_ports = ports[:n], ports[n:]
        initial = ",".join(f"m{i}=https://{HOST}:{p}" for i, p in enumerate(self.peer_ports))
        self.logs = [os.path.join(root, f"m{i}.log") for i in range(n)]
        self.procs = []
        for i in range(n):
            command = member_command(f"m{i}", os.path.join(root, f"m{i}"), self.client_ports[i], self.peer_ports[i], initial, self.certs)
            with open(self.logs[i], "wb") as log:
                self.procs.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))

    def cert(self, name: str) -> str:
        return os.path.join(self.certs, name)

    def etcdctl(self, i: int, *args, client="client", timeout=10):
        command = ["etcdctl", "--endpoints", f"https://{HOST}:{self.client_ports[i]}", "--ca-file", self.cert("ca.crt")]
        if client:
            command += ["--cert-file", self.cert(f"{client}.crt"), "--key-file", self.cert(f"{client}.key")]
        env = dict(os.environ, ETCDCTL_API="2")
        return subprocess.run(command + list(args), capture_output=True, text=True, timeout=timeout, env=env)

    def curl(self, i: int, path: str, *options, client="client"):
        command = ["curl", "-sS", "--max-time", "10", "--cacert", self.cert("ca.crt"), "-w", "\n%{http_version}"]
        if client:
            command += ["--cert", self.cert(f"{client}.crt"), "--key", self.cert(f"{client}.key")]
        return subprocess.run(command + list(options) + [f"https://{HOST}:{self.client_ports[i]}{path}"],
                              capture_output=True, text=True, timeout=20)

    def log(self, i: int) -> str:
        with open(self.logs[i], "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)


@pytest.fixture(scope="module")
def tls_cluster():
    root = tempfile.mkdtemp(prefix="cairn-tls-cluster-")
    cluster = TLSCluster(3, root)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if cluster.etcdctl(0, "set", "/tls/ready", "yes").returncode == 0:
                break
            time.sleep(0.2)
        else:
            pytest.fail("no write succeeded over TLS within 30 s:\n" + cluster.log(0)[-3000:])
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_three_members_over_peer_mtls_elect_and_replicate(tls_cluster):
    c = tls_cluster
    assert c.etcdctl(0, "set", "/tls/key", "replicated").returncode == 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        got = [c.etcdctl(i, "get", "/tls/key").stdout.strip() for i in (1, 2)]
        if got == ["replicated", "replicated"]:
            break
        time.sleep(0.1)
    assert got == ["replicated", "replicated"]
    members = c.etcdctl(2, "member", "list").stdout
    for port in c.peer_ports:
        assert f"peerURLs=https://{HOST}:{port}" in members, members
    for port in c.client_ports:
        assert f"clientURLs=https://{HOST}:{port}" in members, members


def test_curl_over_http1_and_http2_by_alpn(tls_cluster):
    c = tls_cluster
    one = c.curl(1, "/v2/keys/tls/ready", "--http1.1")
    two = c.curl(1, "/v2/keys/tls/ready", "--http2")
    assert one.stdout.endswith("\n1.1") and '"value":"yes"' in one.stdout, one
    assert two.stdout.endswith("\n2") and '"value":"yes"' in two.stdout, two


def test_v3_json_gateway_over_tls(tls_cluster):
    c = tls_cluster
    key, value = base64.b64encode(b"tls-v3").decode(), base64.b64encode(b"over TLS").decode()
    put = c.curl(0, "/v3/kv/put", "-X", "POST", "-d", json.dumps({"key": key, "value": value}))
    assert put.returncode == 0 and '"header"' in put.stdout, put
    deadline = time.monotonic() + 10
    while True:
        got = c.curl(2, "/v3/kv/range", "--http2", "-X", "POST", "-d", json.dumps({"key": key}))
        if f'"value":"{value}"' in got.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert f'"value":"{value}"' in got.stdout and got.stdout.endswith("\n2"), got
    refused = c.curl(1, "/v3/kv/range", "-X", "POST", "-d", json.dumps({"key": key}), client=None)
    assert refused.returncode != 0 and '"kvs"' not in refused.stdout, refused


def test_v3_grpc_over_tls_with_client_certificates(tls_cluster):
    """etcdctl v3 speaks gRPC over TLS (HTTP/2 by ALPN) with the client certificate; without one it is refused."""
    c = tls_cluster

    def etcdctl3(i, *args, client="client"):
        command = ["etcdctl", "--endpoints", f"https://{HOST}:{c.client_ports[i]}", "--cacert", c.cert("ca.crt"),
                   "--command-timeout=5s", "--dial-timeout=3s"]
        if client:
            command += ["--cert", c.cert(f"{client}.crt"), "--key", c.cert(f"{client}.key")]
        return subprocess.run(command + list(args), capture_output=True, text=True, timeout=20,
                              env=dict(os.environ, ETCDCTL_API="3"))

    put = etcdctl3(0, "put", "tls-grpc", "over TLS")
    assert put.returncode == 0 and put.stdout.strip() == "OK", put
    got = etcdctl3(1, "get", "--print-value-only", "tls-grpc")
    assert got.returncode == 0 and got.stdout.strip() == "over TLS", got
    refused = etcdctl3(2, "get", "tls-grpc", client=None)
    assert refused.returncode != 0 and "over TLS" not in refused.stdout, refused


@pytest.mark.parametrize("client", [None, "untrusted", "expired", "revoked"])
def test_client_without_a_valid_certificate_is_refused(tls_cluster, client):
    c = tls_cluster
    result = c.etcdctl(0, "set", "/tls/refused", "no", client=client)
    assert result.returncode != 0, result
    curl = c.curl(0, "/v2/keys/tls/ready", client=client)
    assert curl.returncode != 0 and '"value"' not in curl.stdout, curl
    assert c.etcdctl(0, "get", "/tls/refused").returncode != 0


def test_stranger_with_untrusted_certificate_refused_before_any_frame(tls_cluster):
    c = tls_cluster
    context = ssl.create_default_context(cafile=c.cert("ca.crt"))
    context.load_cert_chain(c.cert("untrusted.crt"), c.cert("untrusted.key"))
    for port in c.peer_ports:
        raw = socket.create_connection((HOST, port), timeout=10)
        closed = False
        try:
            stranger = context.wrap_socket(raw, server_hostname=HOST)
            # TLS 1.3: the client's handshake ends before the member checks its certificate; what it sends next
            # (a hello claiming member ID 1 and a proposal) must never be read as frames.
            stranger.sendall(hello(0, 1, 1) + frame(PROPOSE, put_command("/injected-by-stranger", "x")))
            closed = stranger.recv(4096) == b""
        except (ssl.SSLError, ConnectionError):
            closed = True
        finally:
            raw.close()
        assert closed
    assert c.etcdctl(0, "get", "/injected-by-stranger").returncode != 0
    assert c.etcdctl(0, "set", "/tls/after-stranger", "ok").returncode == 0
    if not is_etcd():
        assert "refused a connection from 127.0.0.1:" in c.log(0) and "TLS handshake" in c.log(0)


def test_certificate_rotation_while_a_client_stays_connected():
    root = tempfile.mkdtemp(prefix="cairn-tls-rotate-")
    try:
        certs = make_certs(os.path.join(root, "certs"))
        live = os.path.join(root, "live")
        os.mkdir(live)

        def install(name):
            for suffix in ("crt", "key"):
                shutil.copy(os.path.join(certs, f"{name}.{suffix}"), os.path.join(live, f"tls.{suffix}.new"))
                os.replace(os.path.join(live, f"tls.{suffix}.new"), os.path.join(live, f"tls.{suffix}"))
        install("server")
        shutil.copy(os.path.join(certs, "ca.crt"), os.path.join(live, "ca.crt"))
        for f in ("ca.crl", "peer.crt", "peer.key", "client.crt", "client.key"):
            shutil.copy(os.path.join(certs, f), os.path.join(live, f))
        client_port, peer_port = free_ports(2)
        command = member_command("m0", os.path.join(root, "m0"), client_port, peer_port, f"m0=https://{HOST}:{peer_port}", live, server_cert="tls")
        log_path = os.path.join(root, "m0.log")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            context = ssl.create_default_context(cafile=os.path.join(live, "ca.crt"))
            context.load_cert_chain(os.path.join(live, "client.crt"), os.path.join(live, "client.key"))

            def connect():
                deadline = time.monotonic() + 20
                while True:
                    try:
                        conn = http.client.HTTPSConnection(HOST, client_port, context=context, timeout=10)
                        conn.connect()
                        return conn
                    except OSError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.1)

            def common_name(conn):
                return dict(x[0] for x in conn.sock.getpeercert()["subject"])["commonName"]

            def health(conn):
                conn.request("GET", "/health")
                response = conn.getresponse()
                return response.status, response.read()

            kept = connect()
            assert common_name(kept) == "server"
            assert health(kept)[0] == 200
            kept_socket = kept.sock
            install("server2")
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                fresh = connect()
                name = common_name(fresh)
                fresh.close()
                if name == "server-rotated":
                    break
                time.sleep(0.2)
            assert name == "server-rotated"
            assert health(kept)[0] == 200
            assert kept.sock is kept_socket and common_name(kept) == "server"
            kept.close()
        finally:
            proc.kill()
            proc.wait(timeout=10)
    finally:
        shutil.rmtree(root, ignore_errors=True)


README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")


def readme_block(name: str) -> str:
    """The indented block after `<!-- secure-a-cluster: NAME -->` in the README, dedented."""
    with open(README) as f:
        lines = f.read().split("\n")
    start = lines.index(f"<!-- secure-a-cluster: {name} -->") + 1
    block = []
    for line in lines[start:]:
        if not line.startswith("    "):
            break
        block.append(line[4:])
    return "\n".join(block) + "\n"


@pytest.mark.skipif(is_etcd(), reason="the README starts cairn")
def test_readme_secure_a_cluster_commands_run():
    """The README's commands as written, with its ports (2379-2384) swapped for free ones and its binary for the
    one under test; each client command must succeed but the one marked refused."""
    import re

    ports = dict(zip(range(2379, 2385), free_ports(6)))

    def adapt(text):
        text = re.sub(r"\b(23(79|8[0-4]))\b", lambda m: str(ports[int(m.group(1))]), text)
        return text.replace("b=.build/release/cairn", f"b={server_command()[0]}")

    root = tempfile.mkdtemp(prefix="cairn-tls-readme-")
    members = None
    try:
        subprocess.run(["bash", "-euo", "pipefail", "-c", readme_block("certificates")], cwd=root, check=True,
                       capture_output=True, timeout=60)
        members = subprocess.Popen(["bash", "-euo", "pipefail", "-c", adapt(readme_block("members"))], cwd=root,
                                   start_new_session=True)
        members.wait(timeout=10)
        ready = ["curl", "-s", "--cacert", "ca.crt", "--cert", "client.crt", "--key", "client.key",
                 f"https://{HOST}:{ports[2379]}/health"]
        deadline = time.monotonic() + 30
        while subprocess.run(ready, cwd=root, capture_output=True, text=True).stdout != '{"health":"true"}':
            assert time.monotonic() < deadline, "the README's cluster did not become healthy"
            time.sleep(0.2)
        # A Cairn member serves before it has published its client URLs (etcd's waits): wait for all three.
        listing = ready[:-1] + [f"https://{HOST}:{ports[2379]}/v2/members"]
        while subprocess.run(listing, cwd=root, capture_output=True, text=True).stdout.count('"clientURLs":["https') < 3:
            assert time.monotonic() < deadline, "the README's members did not publish their client URLs"
            time.sleep(0.2)
        outputs = []
        for line in adapt(readme_block("clients")).strip().split("\n"):
            result = subprocess.run(["bash", "-c", line], cwd=root, capture_output=True, text=True, timeout=20)
            if "# refused" in line:
                assert result.returncode != 0, (line, result)
            else:
                assert result.returncode == 0, (line, result)
            outputs.append(result.stdout)
        assert f'"clientURLs":["https://{HOST}:{ports[2379]}"]' in outputs[0]
        assert '"value":"1"' in outputs[2]
        assert outputs[3].strip() == "1"
        assert '"revision"' in outputs[4], outputs[4]
    finally:
        if members is not None:
            try:
                os.killpg(members.pid, 9)
            except ProcessLookupError:
                pass
        shutil.rmtree(root, ignore_errors=True)


def test_three_members_over_peer_auto_tls_replicate():
    """`--peer-auto-tls`: each member makes a self-signed certificate; the peer links are encrypted, unverified."""
    root = tempfile.mkdtemp(prefix="cairn-tls-auto-")
    procs = []
    try:
        ports = free_ports(6)
        clients, peers = ports[:3], ports[3:]
        initial = ",".join(f"a{i}=https://{HOST}:{p}" for i, p in enumerate(peers))
        binary, etcd = server_command()
        for i in range(3):
            command = [binary, "--name", f"a{i}", "--data-dir", os.path.join(root, f"a{i}"),
                       "--listen-client-urls", f"http://{HOST}:{clients[i]}", "--advertise-client-urls", f"http://{HOST}:{clients[i]}",
                       "--listen-peer-urls", f"https://{HOST}:{peers[i]}", "--initial-advertise-peer-urls", f"https://{HOST}:{peers[i]}",
                       "--initial-cluster", initial, "--initial-cluster-token", "auto-tls", "--peer-auto-tls"]
            with open(os.path.join(root, f"a{i}.log"), "wb") as log:
                procs.append(subprocess.Popen(command + (["--enable-v2=true"] if etcd else []), stdout=log, stderr=subprocess.STDOUT))
        env = dict(os.environ, ETCDCTL_API="2")

        def etcdctl(i, *args):
            return subprocess.run(["etcdctl", "--endpoints", f"http://{HOST}:{clients[i]}", *args], capture_output=True,
                                  text=True, timeout=10, env=env)

        deadline = time.monotonic() + 30
        while etcdctl(0, "set", "/auto", "tls").returncode != 0:
            assert time.monotonic() < deadline, "no write within 30 s over peer auto TLS"
            time.sleep(0.2)
        deadline = time.monotonic() + 10
        while [etcdctl(i, "get", "/auto").stdout.strip() for i in (1, 2)] != ["tls", "tls"]:
            assert time.monotonic() < deadline, "not replicated"
            time.sleep(0.1)
        for i in range(3):
            assert os.path.exists(os.path.join(root, f"a{i}", "fixtures", "peer", "cert.pem"))
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)

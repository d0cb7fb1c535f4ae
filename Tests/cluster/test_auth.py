"""v3 auth on a 3-member cluster through the JSON gateway: users and roles made on one member bind on every member,
a token handed out by one member works on the others, permissions hold for ranges, watches, leases and backups, and
the auth state survives a restart and reaches a wiped member by snapshot (Cairn only: etcd needs a member re-add)."""
import base64
import json
import os
import time
import urllib.error
import urllib.request

import pytest

import cluster as harness


def b(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def call(member, path: str, body: dict, token: "str | None" = None, timeout: float = 5.0) -> "tuple[int, dict]":
    request = urllib.request.Request(f"{member.client_url}/v3/{path}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": token} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")
    except OSError as e:  # not serving yet (a restarted member)
        return 0, {"error": str(e)}


def until(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


def setup_auth(m):
    for path, body in [("auth/user/add", {"name": "root", "password": "rootpw"}),
                       ("auth/user/grant", {"user": "root", "role": "root"}),
                       ("auth/role/add", {"name": "app"}),
                       ("auth/role/grant", {"name": "app", "perm": {"permType": "READWRITE", "key": b("app/"), "range_end": b("app0")}}),
                       ("auth/user/add", {"name": "alice", "password": "alicepw"}),
                       ("auth/user/grant", {"user": "alice", "role": "app"}),
                       ("auth/enable", {})]:
        status, answer = call(m, path, body)
        assert status == 200, (path, answer)


def token(m, name: str, password: str) -> str:
    status, answer = call(m, "auth/authenticate", {"name": name, "password": password})
    assert status == 200, answer
    return answer["token"]


def test_auth_binds_on_every_member_and_survives_restarts(make_cluster):
    c = make_cluster(3, snapshot_count=50)
    setup_auth(c[0])
    alice = token(c[1], "alice", "alicepw")
    root = token(c[2], "root", "rootpw")
    # The token was logged, so every member knows it (a follower may apply it a moment later).
    assert until(lambda: call(c[0], "kv/put", {"key": b("app/x"), "value": b("1")}, alice)[0] == 200)
    for m in c.members:
        assert call(m, "kv/range", {"key": b("app/x")}, alice)[1]["kvs"][0]["value"] == b("1")
        assert call(m, "kv/put", {"key": b("other"), "value": b("1")}, alice)[1]["message"] == "etcdserver: permission denied"
        assert call(m, "kv/range", {"key": b("app/x")})[1]["message"] == "etcdserver: user name is empty"
    status, answer = call(c[0], "kv/put", {"key": b("app/y"), "value": b("1")}, "forged.1")
    assert (status, answer["code"]) == (401, 16)
    assert call(c[0], "auth/authenticate", {"name": "alice", "password": "wrong"})[1]["code"] == 3

    # A watch alice may not read is created and cancelled at once, as etcd answers it.
    request = urllib.request.Request(f"{c[1].client_url}/v3/watch", method="POST", headers={"Authorization": alice},
                                     data=json.dumps({"create_request": {"key": b("other")}}).encode())
    with urllib.request.urlopen(request, timeout=5) as r:
        line = json.loads(r.readline())["result"]
    assert line.get("created") and line.get("canceled") and line["cancel_reason"] == "rpc error: code = PermissionDenied desc = etcdserver: permission denied"

    # Backups and member changes take root.
    def backup(tok):
        req = urllib.request.Request(f"{c[0].client_url}/cairn/snapshot", headers={"Authorization": tok} if tok else {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, len(r.read())
        except urllib.error.HTTPError as e:
            return e.code, 0
    if not c.etcd:
        assert backup(alice)[0] == 403 and backup(None)[0] == 400
        status, size = backup(root)
        assert status == 200 and size > 0
        # `cairn snapshot save` authenticates with --user, as etcdctl does.
        import subprocess
        target = os.path.join(c.dir, "backup.snap")
        refused = subprocess.run([c.server, "snapshot", "save", target, "--endpoints", c[1].client_url], capture_output=True, text=True)
        assert refused.returncode != 0 and "user name is empty" in refused.stderr, refused.stderr
        saved = subprocess.run([c.server, "snapshot", "save", target, "--endpoints", c[1].client_url, "--user", "root:rootpw"],
                               capture_output=True, text=True)
        assert saved.returncode == 0 and os.path.getsize(target) > 0, saved.stderr
    assert call(c[0], "cluster/member/remove", {"ID": "5"}, alice)[1]["code"] == 7

    # Enough writes for snapshots, then every member restarted: users, roles and tokens come back from disk.
    for n in range(120):
        assert call(c[n % 3], "kv/put", {"key": b(f"app/{n}"), "value": b("v")}, alice)[0] == 200
    for i in range(3):
        c.restart(i)
    c.wait_leader(timeout=20)
    if c.etcd:
        # etcd keeps simple tokens in memory only; Cairn logs them, so they outlive a restart.
        alice = until(lambda: call(c[0], "auth/authenticate", {"name": "alice", "password": "alicepw"})[1].get("token"), timeout=15)
    assert until(lambda: call(c[0], "kv/put", {"key": b("app/after"), "value": b("1")}, alice)[0] == 200, timeout=15)
    assert call(c[1], "kv/put", {"key": b("nope"), "value": b("1")}, alice)[0] == 403

    if not c.etcd:
        # A wiped member rebuilds everything, auth included, from a snapshot sent by the leader.
        c.wipe_and_restart(2)
        assert until(lambda: call(c[2], "kv/range", {"key": b("app/after"), "serializable": True}, alice)[1].get("kvs"), timeout=20)
        assert call(c[2], "kv/put", {"key": b("nope"), "value": b("1")}, alice)[0] == 403
        # A ReadIndex round on the rebuilt member may time out while it finds the leader: retried as a client would.
        listed = until(lambda: call(c[2], "auth/user/list", {}, root)[1].get("users"))
        assert listed == ["alice", "root"], call(c[2], "auth/user/list", {}, root)


def call_v2(member) -> int:
    try:
        with urllib.request.urlopen(f"{member.client_url}/v2/keys/app/x", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_python_etcd_v2_auth(make_cluster):
    """The v2 auth API through python-etcd's own `etcd.auth` module, then basic auth on every member."""
    etcd = pytest.importorskip("etcd")
    from etcd import auth
    c = make_cluster(3)
    admin = etcd.Client(host=harness.HOST, port=c[0].client_port)
    root = auth.EtcdUser(admin, "root")
    root.password = "rootpw"
    root.write()
    role = auth.EtcdRole(admin, "app")
    role.grant("/app/*", "RW")
    role.write()
    alice = auth.EtcdUser(admin, "alice")
    alice.password = "alicepw"
    alice.roles = {"app"}
    alice.write()
    auth.Auth(admin).active = True
    rooted = etcd.Client(host=harness.HOST, port=c[1].client_port, username="root", password="rootpw")
    assert until(lambda: auth.Auth(rooted).active)
    # Unauthenticated requests get the guest role; take its default access away.
    guest = auth.EtcdRole(rooted, "guest")
    guest.read()
    guest.revoke("/*", "RW")
    guest.write()
    assert until(lambda: all(call_v2(m) == 401 for m in c.members))
    for m in c.members:
        client = etcd.Client(host=harness.HOST, port=m.client_port, username="alice", password="alicepw")
        client.write(f"/app/{m.name}", "1")
        assert client.read(f"/app/{m.name}").value == "1"
        with pytest.raises(etcd.EtcdException):
            client.write("/other", "1")
        with pytest.raises(etcd.EtcdException):
            etcd.Client(host=harness.HOST, port=m.client_port).read(f"/app/{m.name}")
    # (python-etcd's EtcdUser.read cannot take etcd 3.4's answer, whose roles are objects: read it directly.)
    assert [r["role"] for r in json.loads(rooted.api_execute("/v2/auth/users/alice", "GET").data)["roles"]] == ["app"]
    auth.Auth(rooted).active = False
    assert until(lambda: call_v2(c[2]) != 401)
    assert etcd.Client(host=harness.HOST, port=c[2].client_port).read("/app/m0").value == "1"


@pytest.mark.parametrize("sign_method", ["RS256", "ES256"])
def test_jwt_tokens_work_on_every_member_until_auth_changes(make_cluster, tmp_path, sign_method):
    """`--auth-token jwt,...`: a token signed by one member is checked by any member holding the public key, and
    refused as etcd refuses it once users or roles change (`revision of auth store is old`) or when forged."""
    import subprocess
    key, pub = tmp_path / "jwt.key", tmp_path / "jwt.pub"
    if sign_method == "RS256":
        subprocess.run(["openssl", "genrsa", "-out", key, "2048"], check=True, capture_output=True)
        subprocess.run(["openssl", "rsa", "-in", key, "-pubout", "-out", pub], check=True, capture_output=True)
    else:
        subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key], check=True, capture_output=True)
        subprocess.run(["openssl", "ec", "-in", key, "-pubout", "-out", pub], check=True, capture_output=True)
    option = f"jwt,pub-key={pub},priv-key={key},sign-method={sign_method},ttl=10m"
    c = make_cluster(3, extra_args=("--auth-token", option))
    setup_auth(c[0])
    alice = until(lambda: call(c[1], "auth/authenticate", {"name": "alice", "password": "alicepw"})[1].get("token"))
    assert alice and alice.count(".") == 2
    for m in c.members:
        assert until(lambda: call(m, "kv/put", {"key": b("app/jwt"), "value": b("1")}, alice)[0] == 200)
        assert call(m, "kv/put", {"key": b("other"), "value": b("1")}, alice)[1]["code"] == 7
    forged = alice[: alice.rindex(".") + 1] + ("A" * 20)
    assert call(c[0], "kv/range", {"key": b("app/jwt")}, forged)[1]["message"] == "etcdserver: invalid auth token"
    root = token(c[2], "root", "rootpw")
    assert call(c[2], "auth/role/add", {"name": "later"}, root)[0] == 200
    status, answer = until(lambda: (lambda r: r if r[0] != 200 else None)(call(c[0], "kv/range", {"key": b("app/jwt")}, alice)))
    assert (status, answer["message"]) == (400, "etcdserver: revision of auth store is old")
    fresh = token(c[0], "alice", "alicepw")
    assert call(c[0], "kv/range", {"key": b("app/jwt")}, fresh)[0] == 200


def test_etcdctl_v3_with_users_over_grpc(make_cluster, tmp_path):
    """etcdctl v3 (gRPC) with `--user`: users and roles made through gRPC on one member, then a token from each
    member's Authenticate in `token` metadata; refusals worded as etcd's."""
    import shutil
    import subprocess
    if not shutil.which("etcdctl"):
        pytest.skip("etcdctl is not installed")
    c = make_cluster(3)

    def ctl(i, *args, user=None):
        command = ["etcdctl", "--endpoints", c[i].client_url, "--command-timeout=10s"] + (["--user", user] if user else []) + list(args)
        out = subprocess.run(command, capture_output=True, text=True, timeout=30, env={**os.environ, "ETCDCTL_API": "3"})
        return out.returncode, out.stdout + out.stderr

    for args in [("user", "add", "root:rootpw", "--interactive=false"), ("user", "grant-role", "root", "root"),
                 ("role", "add", "app"), ("role", "grant-permission", "app", "readwrite", "app/", "--prefix=true"),
                 ("user", "add", "alice:alicepw", "--interactive=false"), ("user", "grant-role", "alice", "app"),
                 ("auth", "enable")]:
        code, out = ctl(0, *args)
        assert code == 0, (args, out)
    alice, root = "alice:alicepw", "root:rootpw"
    for i in range(3):
        assert until(lambda: ctl(i, "put", f"app/{i}", "v", user=alice)[0] == 0)
        code, out = ctl(i, "put", "other", "v", user=alice)
        assert code != 0 and "etcdserver: permission denied" in out
        code, out = ctl(i, "get", f"app/{i}")
        assert code != 0 and "etcdserver: user name is empty" in out
        assert ctl(i, "get", f"app/{i}", "--print-value-only", user=alice) == (0, "v\n")
    code, out = ctl(1, "get", "app/0", user="alice:wrong")
    assert code != 0 and "authentication failed, invalid user ID or password" in out
    assert ctl(2, "user", "list", user=root)[1].split() == ["alice", "root"]
    code, out = ctl(2, "user", "list", user=alice)
    assert code != 0 and "permission denied" in out
    code, out = ctl(1, "snapshot", "save", str(tmp_path / "a.db"), user=alice)
    assert code != 0 and "auth: permission denied" in out
    code, out = ctl(1, "snapshot", "save", str(tmp_path / "r.db"), user=root)
    assert code == 0, out
    assert ctl(0, "auth", "disable", user=root)[0] == 0
    assert until(lambda: ctl(2, "get", "app/0", "--print-value-only") == (0, "v\n"))


def test_a_client_certificate_names_its_user(tmp_path):
    """`--client-cert-auth`: without a token (or basic auth), a verified client certificate whose CN is a user acts
    as that user, over gRPC (etcdctl v3 with --cert) and for the v2 API, as etcd does."""
    import shutil
    import subprocess
    if not shutil.which("etcdctl"):
        pytest.skip("etcdctl is not installed")
    certs = str(tmp_path / "certs")
    os.makedirs(certs)
    subprocess.run([os.path.join(os.path.dirname(__file__), "..", "tls", "make-certs"), certs], check=True, capture_output=True)
    server, _ = harness.server_command()
    client_port, peer_port = harness.free_ports(2)
    url = f"https://127.0.0.1:{client_port}"
    member = subprocess.Popen([server, "--enable-v2=true", "--name", "solo", "--data-dir", str(tmp_path / "data"),
                               "--listen-client-urls", url, "--advertise-client-urls", url,
                               "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
                               "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
                               "--initial-cluster", f"solo=http://127.0.0.1:{peer_port}",
                               "--cert-file", f"{certs}/server.crt", "--key-file", f"{certs}/server.key",
                               "--client-cert-auth", "--trusted-ca-file", f"{certs}/ca.crt"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    tls = ["--cacert", f"{certs}/ca.crt", "--cert", f"{certs}/client.crt", "--key", f"{certs}/client.key"]

    def ctl(*args, user=None):
        command = ["etcdctl", "--endpoints", url, "--command-timeout=10s"] + tls + (["--user", user] if user else []) + list(args)
        out = subprocess.run(command, capture_output=True, text=True, timeout=30, env={**os.environ, "ETCDCTL_API": "3"})
        return out.returncode, out.stdout + out.stderr

    try:
        assert until(lambda: ctl("endpoint", "health")[0] == 0, timeout=20)
        for args in [("user", "add", "root:rootpw", "--interactive=false"), ("user", "grant-role", "root", "root"),
                     ("role", "add", "app"), ("role", "grant-permission", "app", "readwrite", "app/", "--prefix=true"),
                     ("user", "add", "client:unused", "--interactive=false"), ("user", "grant-role", "client", "app"),
                     ("auth", "enable")]:
            code, out = ctl(*args)
            assert code == 0, (args, out)
        assert ctl("put", "app/x", "1")[0] == 0
        code, out = ctl("put", "other", "1")
        assert code != 0 and "permission denied" in out
        # A token still wins over the certificate.
        code, out = ctl("put", "other", "1", user="root:rootpw")
        assert code == 0, out
        # v2: the certificate's user for /v2/keys once v2 auth is on (its own users, as in etcd).
        curl = ["curl", "-s", "--cacert", f"{certs}/ca.crt", "--cert", f"{certs}/client.crt", "--key", f"{certs}/client.key"]
        for path, body in [("/v2/auth/users/root", '{"user":"root","password":"rootpw"}'),
                           ("/v2/auth/roles/app", '{"role":"app","permissions":{"kv":{"read":["/app/*"],"write":["/app/*"]}}}'),
                           ("/v2/auth/users/client", '{"user":"client","password":"x","roles":["app"]}'),
                           ("/v2/auth/roles/guest", '{"role":"guest","revoke":{"kv":{"read":["/*"],"write":["/*"]}}}')]:
            subprocess.run(curl + ["-X", "PUT", "-H", "Content-Type: application/json", url + path, "-d", body], check=True, capture_output=True)
        subprocess.run(curl + ["-X", "PUT", url + "/v2/auth/enable"], check=True, capture_output=True)
        written = subprocess.run(curl + ["-X", "PUT", url + "/v2/keys/app/y", "-d", "value=1"], capture_output=True, text=True)
        assert '"action":"set"' in written.stdout, written.stdout
        refused = subprocess.run(curl + ["-X", "PUT", url + "/v2/keys/other", "-d", "value=1"], capture_output=True, text=True)
        assert '"errorCode":110' in refused.stdout, refused.stdout
    finally:
        member.kill()
        member.wait(timeout=10)


def test_a_simple_token_expires_after_its_ttl_unused(make_cluster):
    """`--auth-token-ttl`: a simple token unused for longer than the TTL is refused (`invalid auth token`), one in use
    stays valid, and a new one can be had at once."""
    c = make_cluster(1, extra_args=("--auth-token-ttl", "2"))
    setup_auth(c[0])
    idle, busy = token(c[0], "alice", "alicepw"), token(c[0], "alice", "alicepw")
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        assert call(c[0], "kv/range", {"key": b("app/x")}, busy)[0] == 200
        time.sleep(0.5)
    status, answer = call(c[0], "kv/range", {"key": b("app/x")}, idle)
    assert (status, answer.get("message")) == (401, "etcdserver: invalid auth token"), answer
    assert call(c[0], "kv/range", {"key": b("app/x")}, busy)[0] == 200
    assert call(c[0], "kv/range", {"key": b("app/x")}, token(c[0], "alice", "alicepw"))[0] == 200

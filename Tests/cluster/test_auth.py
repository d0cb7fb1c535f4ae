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

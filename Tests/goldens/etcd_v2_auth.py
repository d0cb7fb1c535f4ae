#!/usr/bin/env python3
"""etcd 3.4's v2 auth API (`/v2/auth`, basic auth on `/v2/keys` and `/v2/members`), live: the same requests to a
fresh etcd and a fresh Cairn (started with the same member flags), answers compared.

  diff ETCD_URL CAIRN_URL

Compared: status, Content-Type, X-Etcd-Cluster-Id presence and the body (index numbers normalised). Exits 1 on any
difference and prints the N passed line.
"""
import base64
import http.client
import re
import sys
import urllib.parse

ALICE = ("alice", "alicepw")
ROOT = ("root", "rootpw")
J = {"Content-Type": "application/json"}
F = {"Content-Type": "application/x-www-form-urlencoded"}

# (method, path, body, headers, credentials). In order: each case sees the state the earlier ones left.
CASES = [
    ("GET", "/v2/auth/enable", None, {}, None),
    ("PUT", "/v2/auth/enable", None, {}, None),
    ("DELETE", "/v2/auth/enable", None, {}, None),
    ("POST", "/v2/auth/enable", None, {}, None),
    ("GET", "/v2/auth/users", None, {}, None),
    ("GET", "/v2/auth/roles", None, {}, None),
    ("GET", "/v2/auth/roles/", None, {}, None),
    ("GET", "/v2/auth/roles/root", None, {}, None),
    ("GET", "/v2/auth/roles/guest", None, {}, None),
    ("GET", "/v2/auth/users/nobody", None, {}, None),
    ("GET", "/v2/auth/users/a/b", None, {}, None),
    ("PUT", "/v2/auth/users/root", "notjson", J, None),
    ("PUT", "/v2/auth/users/root", '{"user":"other","password":"x"}', J, None),
    ("PUT", "/v2/auth/users/root", '{"user":"root"}', J, None),
    ("PUT", "/v2/auth/users/root", '{"user":"root","password":"rootpw"}', {}, None),
    ("PUT", "/v2/auth/users/root", '{"user":"root","password":"rootpw"}', J, None),
    ("GET", "/v2/auth/users/root", None, {}, None),
    ("PUT", "/v2/auth/roles/root", '{"role":"root"}', J, None),
    ("PUT", "/v2/auth/roles/app", '{"role":"app","permissions":{"kv":{"read":["/app/*"],"write":["/app/*"]}}}', J, None),
    ("PUT", "/v2/auth/roles/app", '{"role":"app"}', J, None),
    ("PUT", "/v2/auth/roles/ro", '{"role":"ro","permissions":{"kv":{"read":["/pub/*","/one"]}}}', J, None),
    ("PUT", "/v2/auth/roles/ro", '{"role":"ro","grant":{"kv":{"read":["/one"]}}}', J, None),
    ("PUT", "/v2/auth/roles/ro", '{"role":"ro","grant":{"kv":{"write":["/one"]}}}', J, None),
    ("PUT", "/v2/auth/roles/ro", '{"role":"ro","revoke":{"kv":{"write":["/nothere"]}}}', J, None),
    ("PUT", "/v2/auth/roles/ro", '{"role":"ro","permissions":{"kv":{"read":["/x"]}},"grant":{"kv":{"read":["/y"]}}}', J, None),
    ("PUT", "/v2/auth/roles/nope", '{"role":"nope","grant":{"kv":{"read":["/y"]}}}', J, None),
    ("PUT", "/v2/auth/users/alice", '{"user":"alice","password":"alicepw","roles":["app"]}', J, None),
    ("PUT", "/v2/auth/users/alice", '{"user":"alice","password":"alicepw","roles":["app"]}', J, None),
    ("PUT", "/v2/auth/users/bob", '{"user":"bob","password":"bobpw"}', J, None),
    ("PUT", "/v2/auth/users/bob", '{"user":"bob","grant":["ro"]}', J, None),
    ("PUT", "/v2/auth/users/bob", '{"user":"bob","grant":["ro"]}', J, None),
    ("PUT", "/v2/auth/users/bob", '{"user":"bob","revoke":["app"]}', J, None),
    ("PUT", "/v2/auth/users/bob", '{"user":"bob","roles":["x"],"grant":["app"]}', J, None),
    ("PUT", "/v2/auth/users/nobody", '{"user":"nobody","grant":["app"]}', J, None),
    ("GET", "/v2/auth/users/bob", None, {}, None),
    ("GET", "/v2/auth/users", None, {}, None),
    ("GET", "/v2/auth/roles", None, {}, None),
    ("PUT", "/v2/auth/enable", None, {}, None),
    ("GET", "/v2/auth/enable", None, {}, None),
    ("PUT", "/v2/auth/enable", None, {}, ROOT),
    ("GET", "/v2/auth/users", None, {}, None),
    ("GET", "/v2/auth/users", None, {}, ALICE),
    ("GET", "/v2/auth/users", None, {}, ("root", "wrong")),
    ("GET", "/v2/auth/roles/guest", None, {}, ROOT),
    ("PUT", "/v2/keys/app/x", "value=1", F, None),
    ("PUT", "/v2/keys/app/x", "value=2", F, ALICE),
    ("PUT", "/v2/keys/other", "value=1", F, ALICE),
    ("PUT", "/v2/keys/other", "value=1", F, ("alice", "bad")),
    ("GET", "/v2/keys/app/x", None, {}, ALICE),
    ("GET", "/v2/keys/app", None, {}, ALICE),
    ("GET", "/v2/keys/app?recursive=true", None, {}, ALICE),
    ("GET", "/v2/keys/?recursive=true", None, {}, ALICE),
    ("GET", "/v2/keys/one", None, {}, ("bob", "bobpw")),
    ("PUT", "/v2/keys/one", "value=1", F, ("bob", "bobpw")),
    ("PUT", "/v2/keys/pub/a", "value=1", F, ("bob", "bobpw")),
    ("GET", "/v2/keys/app/x", None, {"Authorization": "Bearer x"}, None),
    ("PUT", "/v2/auth/roles/guest", '{"role":"guest","revoke":{"kv":{"read":["/*"],"write":["/*"]}}}', J, ROOT),
    ("GET", "/v2/keys/app/x", None, {}, None),
    ("PUT", "/v2/keys/app/x", "value=3", F, None),
    ("PUT", "/v2/keys/app/x", "ttl=abc", F, None),
    ("POST", "/v2/members", '{"peerURLs":["http://127.0.0.1:1"]}', J, None),
    ("DELETE", "/v2/members/1234", None, {}, ALICE),
    ("PUT", "/v2/auth/users/bob", '{"user":"bob","password":"newpw"}', J, ROOT),
    ("GET", "/v2/keys/one", None, {}, ("bob", "bobpw")),
    ("GET", "/v2/keys/one", None, {}, ("bob", "newpw")),
    ("DELETE", "/v2/auth/users/root", None, {}, ROOT),
    ("DELETE", "/v2/auth/roles/root", None, {}, ROOT),
    ("DELETE", "/v2/auth/roles/nope", None, {}, ROOT),
    ("DELETE", "/v2/auth/users/nope", None, {}, ROOT),
    ("DELETE", "/v2/auth/roles/ro", None, {}, ROOT),
    ("GET", "/v2/auth/users/bob", None, {}, ROOT),
    ("DELETE", "/v2/auth/users/bob", None, {}, ROOT),
    ("DELETE", "/v2/auth/enable", None, {}, ALICE),
    ("DELETE", "/v2/auth/enable", None, {}, ROOT),
    ("DELETE", "/v2/auth/enable", None, {}, ROOT),
    ("GET", "/v2/keys/app/x", None, {}, None),
    ("GET", "/v2/auth/users", None, {}, None),
]


def request(url, method, path, body, headers, credentials):
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    headers = dict(headers)
    if credentials:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(credentials).encode()).decode()
    conn.request(method, path, body=None if body is None else body.encode(), headers=headers)
    r = conn.getresponse()
    data = r.read().decode()
    conn.close()
    data = re.sub(r'"(modifiedIndex|createdIndex|index)":\d+', r'"\1":N', data)
    return r.status, r.getheader("Content-Type"), r.getheader("X-Etcd-Cluster-Id") is not None, data


def main():
    if len(sys.argv) != 4 or sys.argv[1] != "diff":
        sys.exit(__doc__)
    failures = 0
    for case in CASES:
        want, got = request(sys.argv[2], *case), request(sys.argv[3], *case)
        if want != got:
            failures += 1
            print(f"DIFF {case}\n  etcd:  {want}\n  cairn: {got}")
    print(f"{len(CASES) - failures} passed, {failures} failed (v2 auth against etcd 3.4)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

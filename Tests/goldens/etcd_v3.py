#!/usr/bin/env python3
"""The v3 JSON gateway against etcd 3.4: the same requests to a fresh etcd and a fresh Cairn, answers compared.

  diff ETCD_URL CAIRN_URL   live: a fresh etcd and a fresh Cairn
  record ETCD_URL           a fresh etcd's answers, normalised, into etcd_v3.json
  check CAIRN_URL           a fresh Cairn against etcd_v3.json (no etcd needed)

Compared: status, Content-Type and the body. Normalised, as they must differ between two clusters: cluster_id,
member_id and raft_term in headers, member IDs and URLs, a lease ID etcd draws itself, the seconds a lease has left
(they depend on the clock) and the sizes and indexes of maintenance/status. Watches are read line by line, with
writes made while they are open. Exits 1 on any difference and prints the N passed line.
"""
import http.client
import json
import os
import re
import socket
import sys
import threading
import time
import urllib.parse
from base64 import b64encode


def b(text):
    return b64encode(text.encode()).decode()


# (path, JSON body as text). Kept in order: each case sees the state the earlier ones left. {self_id} and {self_peer}
# stand for the member's own ID and peer URL.
CASES = [
    ("/v3/kv/range", "{}"),
    ("/v3/kv/range", ""),
    ("/v3/kv/range", "notjson"),
    ("/v3/kv/range", "[]"),
    ("/v3/kv/range", '{"key":"Zm9"}'),
    ("/v3/kv/put", json.dumps({"key": b("foo"), "value": b("bar")})),
    ("/v3/kv/put", json.dumps({"key": b("foo"), "value": b("baz"), "prev_kv": True})),
    ("/v3/kv/put", json.dumps({"key": b("foo/1"), "value": b("one")})),
    ("/v3/kv/put", json.dumps({"key": b("foo/2"), "value": b("two")})),
    ("/v3beta/kv/put", json.dumps({"key": b("zed"), "value": ""})),
    ("/v3/kv/range", json.dumps({"key": b("foo")})),
    ("/v3/kv/range", json.dumps({"key": b("foo/"), "range_end": b("foo0")})),
    ("/v3/kv/range", json.dumps({"key": b("\0"), "range_end": b("\0"), "limit": 2})),
    ("/v3/kv/range", json.dumps({"key": b("\0"), "range_end": b("\0"), "count_only": True})),
    ("/v3/kv/range", json.dumps({"key": b("\0"), "range_end": b("\0"), "keys_only": True, "sort_order": "DESCEND"})),
    ("/v3/kv/range", json.dumps({"key": b("\0"), "range_end": b("\0"), "sort_target": "MOD", "sort_order": "DESCEND"})),
    ("/v3/kv/range", json.dumps({"key": b("foo"), "revision": 2})),
    ("/v3/kv/range", json.dumps({"key": b("foo"), "revision": 100})),
    ("/v3/kv/range", json.dumps({"key": b("foo"), "serializable": True})),
    ("/v3/kv/range", json.dumps({"key": b("\0"), "range_end": b("\0"), "min_mod_revision": 4})),
    ("/v3/kv/range", '{"key":"Zm9v","limit":"abc"}'),
    ("/v3/kv/put", json.dumps({"key": "", "value": b("x")})),
    ("/v3/kv/put", json.dumps({"key": b("foo"), "value": b("x"), "ignore_value": True})),
    ("/v3/kv/put", json.dumps({"key": b("nokey"), "ignore_value": True})),
    ("/v3/kv/put", json.dumps({"key": b("foo"), "value": b("x"), "lease": 12})),
    ("/v3/kv/deleterange", json.dumps({"key": b("foo/1"), "prev_kv": True})),
    ("/v3/kv/deleterange", json.dumps({"key": b("nothing")})),
    ("/v3/kv/deleterange", "{}"),
    ("/v3/kv/txn", json.dumps({"compare": [{"key": b("foo"), "target": "VALUE", "result": "EQUAL", "value": b("baz")}],
                               "success": [{"request_put": {"key": b("t"), "value": b("1")}}, {"request_range": {"key": b("t")}}],
                               "failure": [{"request_range": {"key": b("foo")}}]})),
    ("/v3/kv/txn", json.dumps({"compare": [{"key": b("foo"), "target": "VERSION", "result": "GREATER", "version": 5}],
                               "failure": [{"request_range": {"key": b("foo")}}, {"request_delete_range": {"key": b("t")}}]})),
    ("/v3/kv/txn", json.dumps({"compare": [{"key": b("foo"), "target": "MOD", "result": "LESS", "mod_revision": 100},
                                           {"key": b("nope"), "target": "CREATE", "result": "EQUAL", "create_revision": 0}],
                               "success": [{"request_txn": {"success": [{"request_put": {"key": b("n"), "value": b("2")}}]}}]})),
    ("/v3/kv/txn", json.dumps({"success": [{"request_put": {"key": b("d"), "value": b("1")}},
                                           {"request_put": {"key": b("d"), "value": b("2")}}]})),
    ("/v3/kv/txn", json.dumps({"success": [{}]})),
    ("/v3/kv/compaction", json.dumps({"revision": 3})),
    ("/v3/kv/compaction", json.dumps({"revision": 3})),
    ("/v3/kv/compaction", json.dumps({"revision": 1000})),
    ("/v3/kv/range", json.dumps({"key": b("foo"), "revision": 2})),
    ("/v3/lease/grant", json.dumps({"TTL": 30, "ID": 1000})),
    ("/v3/lease/grant", json.dumps({"TTL": 30, "ID": 1000})),
    ("/v3/lease/grant", json.dumps({"TTL": 1, "ID": 1001})),
    ("/v3/lease/grant", json.dumps({"TTL": "9000000001"})),
    ("/v3/lease/grant", json.dumps({"TTL": 60})),
    ("/v3/kv/put", json.dumps({"key": b("leased"), "value": b("v"), "lease": 1000})),
    ("/v3/lease/timetolive", json.dumps({"ID": 1000, "keys": True})),
    ("/v3/kv/lease/timetolive", json.dumps({"ID": 1000})),
    ("/v3/lease/timetolive", json.dumps({"ID": 99})),
    ("/v3/lease/keepalive", json.dumps({"ID": 1000})),
    ("/v3/lease/keepalive", json.dumps({"ID": 99})),
    ("/v3/lease/revoke", json.dumps({"ID": 99})),
    ("/v3/kv/lease/revoke", json.dumps({"ID": 1000})),
    ("/v3/kv/range", json.dumps({"key": b("leased")})),
    ("/v3/lease/revoke", json.dumps({"ID": 1001})),
    ("/v3/cluster/member/list", "{}"),
    ("/v3/cluster/member/add", "{}"),
    ("/v3/cluster/member/add", '{"peerURLs":["notaurl"]}'),
    ("/v3/cluster/member/add", '{"peerURLs":["{self_peer}"]}'),
    ("/v3/cluster/member/remove", "{}"),
    ("/v3/cluster/member/update", '{"ID":"5","peerURLs":["http://127.0.0.1:2"]}'),
    ("/v3/cluster/member/promote", '{"ID":"{self_id}"}'),
    ("/v3/cluster/member/promote", '{"ID":"5"}'),
    ("/v3/maintenance/status", "{}"),
    ("/v3/maintenance/alarm", "{}"),
    ("/v3/maintenance/alarm", '{"action":"DEACTIVATE","alarm":"NOSPACE","memberID":"{self_id}"}'),
    ("/v3/kv/nothing", "{}"),
    ("/v3alpha/kv/range", "{}"),
    ("GET /v3/kv/range", None),
]

# Auth, last (it leaves auth on): (path, body, whose token goes in the Authorization header). An authenticate case's
# token is kept under its user's name for the cases after it.
AUTH = [
    ("/v3/auth/enable", "{}", None),
    ("/v3/auth/authenticate", '{"name":"root","password":"pw"}', None),
    ("/v3/auth/user/add", '{"name":"root","password":"pw"}', None),
    ("/v3/auth/user/add", '{"name":"root","password":"pw"}', None),
    ("/v3/auth/user/add", '{"name":"","password":"pw"}', None),
    ("/v3/auth/enable", "{}", None),
    ("/v3/auth/role/add", '{"name":"root"}', None),
    ("/v3/auth/role/add", '{"name":""}', None),
    ("/v3/auth/user/grant", '{"user":"root","role":"root"}', None),
    ("/v3/auth/user/grant", '{"user":"root","role":"nope"}', None),
    ("/v3/auth/user/grant", '{"user":"nobody","role":"root"}', None),
    ("/v3/auth/user/get", '{"name":"root"}', None),
    ("/v3/auth/user/get", '{"name":"x"}', None),
    ("/v3/auth/role/add", '{"name":"r1"}', None),
    ("/v3/auth/role/add", '{"name":"r1"}', None),
    ("/v3/auth/role/grant", json.dumps({"name": "r1", "perm": {"permType": "READWRITE", "key": b("a"), "range_end": b("b")}}), None),
    ("/v3/auth/role/grant", json.dumps({"name": "r1", "perm": {"key": b("c")}}), None),
    ("/v3/auth/role/grant", json.dumps({"name": "r1", "perm": {"permType": "WRITE", "key": b("w/"), "range_end": b("w0")}}), None),
    ("/v3/auth/role/grant", json.dumps({"name": "nope", "perm": {"key": b("c")}}), None),
    ("/v3/auth/role/get", '{"role":"r1"}', None),
    ("/v3/auth/role/get", '{"role":"nope"}', None),
    ("/v3/auth/role/list", "{}", None),
    ("/v3/auth/user/list", "{}", None),
    ("/v3/auth/user/add", '{"name":"u1","password":"p1"}', None),
    ("/v3/auth/user/grant", '{"user":"u1","role":"r1"}', None),
    ("/v3/auth/user/add", '{"name":"np","options":{"no_password":true}}', None),
    ("/v3/auth/role/revoke", json.dumps({"role": "r1", "key": b("z")}), None),
    ("/v3/auth/user/revoke", '{"name":"u1","role":"zz"}', None),
    ("/v3/auth/enable", "{}", None),
    ("/v3/kv/put", json.dumps({"key": b("a"), "value": b("v")}), None),
    ("/v3/kv/put", json.dumps({"key": b("a"), "value": b("v")}), "bogus"),
    ("/v3/kv/compaction", '{"revision":"1"}', None),
    ("/v3/kv/compaction", '{"revision":"1"}', "bogus"),
    ("/v3/lease/grant", '{"TTL":"60","ID":"77"}', None),
    ("/v3/lease/grant", '{"TTL":"60","ID":"79"}', "bogus"),
    ("/v3/lease/keepalive", '{"ID":"77"}', "bogus"),
    ("/v3/lease/timetolive", '{"ID":"77"}', "bogus"),
    ("/v3/maintenance/alarm", "{}", None),
    ("/v3/maintenance/alarm", "{}", "bogus"),
    ("/v3/maintenance/status", "{}", "bogus"),
    ("/v3/cluster/member/list", "{}", "bogus"),
    ("/v3/lease/revoke", '{"ID":"77"}', "bogus"),
    ("/v3/lease/revoke", '{"ID":"77"}', None),
    ("/v3/cluster/member/remove", '{"ID":"5"}', None),
    ("/v3/cluster/member/remove", '{"ID":"5"}', "bogus"),
    ("/v3/auth/user/list", "{}", None),
    ("/v3/auth/authenticate", '{"name":"u1","password":"p1"}', "bogus"),
    ("/v3/auth/authenticate", '{"name":"u1","password":"bad"}', None),
    ("/v3/auth/authenticate", '{"name":"nobody","password":"bad"}', None),
    ("/v3/auth/authenticate", '{"name":"np","password":""}', None),
    ("/v3/auth/authenticate", '{"name":"u1","password":"p1"}', None),
    ("/v3/auth/authenticate", '{"name":"root","password":"pw"}', None),
    ("/v3/kv/put", json.dumps({"key": b("a"), "value": b("v")}), "u1"),
    ("/v3/kv/put", json.dumps({"key": b("b"), "value": b("v")}), "u1"),
    ("/v3/kv/range", json.dumps({"key": b("c")}), "u1"),
    ("/v3/kv/put", json.dumps({"key": b("c"), "value": b("v")}), "u1"),
    ("/v3/kv/range", json.dumps({"key": b("a"), "range_end": b("c")}), "u1"),
    ("/v3/kv/range", json.dumps({"key": b("a"), "range_end": b("b")}), "u1"),
    ("/v3/kv/put", json.dumps({"key": b("w/1"), "value": b("v")}), "u1"),
    ("/v3/kv/put", json.dumps({"key": b("w/1"), "value": b("v"), "prev_kv": True}), "u1"),
    ("/v3/kv/txn", json.dumps({"compare": [{"key": b("a"), "target": "VERSION", "result": "GREATER", "version": 0}],
                               "success": [{"request_put": {"key": b("a"), "value": b("2")}}]}), "u1"),
    ("/v3/kv/txn", json.dumps({"compare": [{"key": b("c"), "target": "VERSION", "result": "GREATER", "version": 0}],
                               "success": [{"request_put": {"key": b("c"), "value": b("2")}}]}), "u1"),
    ("/v3/kv/deleterange", json.dumps({"key": b("a"), "prev_kv": True}), "u1"),
    ("/v3/lease/grant", '{"TTL":"60","ID":"78"}', "u1"),
    ("/v3/kv/put", json.dumps({"key": b("a"), "value": b("v"), "lease": 78}), "u1"),
    ("/v3/kv/put", json.dumps({"key": b("x"), "value": b("v"), "lease": 78}), "root"),
    ("/v3/lease/revoke", '{"ID":"78"}', "u1"),
    ("/v3/lease/revoke", '{"ID":"78"}', None),
    ("/v3/lease/revoke", '{"ID":"78"}', "root"),
    ("/v3/kv/compaction", '{"revision":"1"}', "u1"),
    ("/v3/maintenance/status", "{}", None),
    ("/v3/cluster/member/list", "{}", None),
    ("/v3/cluster/member/remove", '{"ID":"5"}', "u1"),
    ("/v3/auth/user/list", "{}", "u1"),
    ("/v3/auth/user/list", "{}", "root"),
    ("/v3/auth/user/get", '{"name":"u1"}', "u1"),
    ("/v3/auth/role/get", '{"role":"r1"}', "u1"),
    ("/v3/auth/user/get", '{"name":"root"}', "u1"),
    ("/v3/auth/user/changepw", '{"name":"u1","password":"p2"}', "u1"),
    ("/v3/auth/user/changepw", '{"name":"u1","password":"p2"}', "root"),
    ("/v3/kv/range", json.dumps({"key": b("c")}), "u1"),
    ("/v3/auth/authenticate", '{"name":"u1","password":"p1"}', None),
    ("/v3/auth/role/delete", '{"role":"root"}', "root"),
    ("/v3/auth/user/delete", '{"name":"root"}', "root"),
    ("/v3/auth/user/revoke", '{"name":"root","role":"root"}', "root"),
    ("/v3/auth/role/revoke", json.dumps({"role": "r1", "key": b("c")}), "root"),
    ("/v3/auth/role/get", '{"role":"r1"}', "root"),
    ("/v3/auth/role/delete", '{"role":"r1"}', "root"),
    ("/v3/auth/user/get", '{"name":"u1"}', "root"),
    ("/v3/auth/user/delete", '{"name":"np"}', "root"),
    ("/v3/auth/nothing", "{}", "root"),
    ("/v3/auth/disable", "{}", "root"),
    ("/v3/auth/disable", "{}", None),
    ("/v3/kv/range", json.dumps({"key": b("c")}), None),
]

# (watch body, writes made while it is open, lines to read).
WATCHES = [
    (json.dumps({"create_request": {"key": b("w"), "start_revision": 1}}), [("/v3/kv/put", json.dumps({"key": b("w"), "value": b("1")}))], 2),
    (json.dumps({"create_request": {"key": b("w"), "prev_kv": True}}),
     [("/v3/kv/put", json.dumps({"key": b("w"), "value": b("2")})), ("/v3/kv/deleterange", json.dumps({"key": b("w")}))], 3),
    (json.dumps({"create_request": {"key": b("w"), "range_end": b("x"), "start_revision": 2, "filters": ["NODELETE"], "prev_kv": True}}), [], 2),
    (json.dumps({"create_request": {"key": b("foo"), "start_revision": 2}}), [], 2),
    (json.dumps({"create_request": {"key": b("\0"), "range_end": b("\0"), "filters": ["NOPUT"]}}),
     [("/v3/kv/put", json.dumps({"key": b("q"), "value": b("1")})), ("/v3/kv/deleterange", json.dumps({"key": b("q")}))], 2),
    ("garbage", [], 1),
]


def request(url, path, body, method="POST", token=None):
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request(method, path, body=None if body is None else body.encode(), headers={"Authorization": token} if token else {})
    response = conn.getresponse()
    data = response.read().decode()
    conn.close()
    return response.status, response.getheader("Content-Type"), data


def watch(url, body, writes, lines):
    """Opens a watch, makes `writes` once it is created, and returns its first `lines` lines (fewer on timeout)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    conn.request("POST", "/v3/watch", body=body.encode())
    response = conn.getresponse()
    got = []
    try:
        while len(got) < lines:
            line = response.readline()
            if not line:
                break
            got.append(line.decode())
            if len(got) == 1:
                for path, write in writes:
                    request(url, path, write)
    except (socket.timeout, TimeoutError):
        pass
    conn.close()
    return response.status, response.getheader("Content-Type"), "".join(got)


def normalise(text):
    text = re.sub(r'"(cluster_id|member_id)":"\d+"', r'"\1":"ID"', text)
    text = re.sub(r'"raft_term":"\d+"', '"raft_term":"T"', text)
    # A lease ID the server drew; a lease's seconds left; status sizes and indexes; member IDs and URLs.
    text = re.sub(r'"ID":"\d{6,}"', '"ID":"DRAWN"', text)
    text = re.sub(r'("ID":"\d+"),"TTL":"\d+","grantedTTL"', r'\1,"TTL":"LEFT","grantedTTL"', text)
    text = re.sub(r'"(dbSize|dbSizeInUse|raftIndex|raftAppliedIndex|raftTerm|leader)":"\d+"', r'"\1":"N"', text)
    text = re.sub(r'"(peerURLs|clientURLs)":\["[^"]*"\]', r'"\1":["URL"]', text)
    text = re.sub(r'"token":"[^"]+"', '"token":"TOKEN"', text)
    text = re.sub(r'("ID":"DRAWN","name":)"[^"]*"', r'\1"NAME"', text)
    # Status: Cairn reports 3.4.31 (the first 3.4 Kubernetes sends progress requests to); the etcd here may be older.
    text = re.sub(r'"version":"3\.4\.\d+"', '"version":"3.4.x"', text)
    return text


def run(url):
    answers = []
    [me] = json.loads(request(url, "/v3/cluster/member/list", "{}")[2])["members"]
    for path, body in CASES:
        if body:
            body = body.replace("{self_id}", me["ID"]).replace("{self_peer}", me["peerURLs"][0])
        method = "POST"
        if path.startswith("GET "):
            method, path = "GET", path[4:]
        answers.append((f"{method} {path} {body}", request(url, path, body, method)))
    for body, writes, lines in WATCHES:
        answers.append((f"WATCH {body}", watch(url, body, writes, lines)))
    tokens = {"bogus": "bogus.1"}
    for path, body, who in AUTH:
        answer = request(url, path, body, token=tokens.get(who))
        if path.endswith("/authenticate") and answer[0] == 200:
            tokens[json.loads(body)["name"]] = json.loads(answer[2])["token"]
        answers.append((f"POST {path} {body} as {who}", answer))
    return answers


GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "etcd_v3.json")


def normalised(answers):
    return [(name, [status, content_type, normalise(body)]) for name, (status, content_type, body) in answers]


def main():
    modes = {"diff": 4, "record": 3, "check": 3}
    if len(sys.argv) < 2 or modes.get(sys.argv[1]) != len(sys.argv):
        sys.exit(__doc__)
    if sys.argv[1] == "record":
        with open(GOLDEN, "w") as f:
            json.dump(normalised(run(sys.argv[2])), f, indent=1, ensure_ascii=False)
            f.write("\n")
        return print(f"recorded {len(CASES) + len(WATCHES) + len(AUTH)} answers into {GOLDEN}")
    if sys.argv[1] == "diff":
        etcd, cairn, label = normalised(run(sys.argv[2])), normalised(run(sys.argv[3])), "against etcd 3.4, live"
    else:
        with open(GOLDEN) as f:
            etcd = [(name, answer) for name, answer in json.load(f)]
        cairn, label = normalised(run(sys.argv[2])), "against etcd 3.4's recorded answers"
    failures = 0
    for (name, want), (_, got) in zip(etcd, cairn):
        if want != got:
            failures += 1
            print(f"DIFF {name}\n  etcd:  {want}\n  cairn: {got}")
    print(f"{len(etcd) - failures} passed, {failures} failed (v3 gateway {label})")
    sys.exit(1 if failures or len(etcd) != len(cairn) else 0)


if __name__ == "__main__":
    main()

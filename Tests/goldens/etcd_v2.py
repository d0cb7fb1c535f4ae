#!/usr/bin/env python3
"""Recorded etcd 3.4 answers for the v2 keys API, and a checker that replays them against Cairn.

  record URL    run every case against a fresh etcd (--enable-v2=true) and write etcd_v2.json
  diff ETCD_URL CAIRN_URL
                run every case against a fresh etcd and a fresh Cairn, live, and compare
  check URL [--advertised RECORDED_URL]
                run every case against a fresh Cairn and compare with etcd_v2.json

Both servers must be started fresh with the same --name, --initial-advertise-peer-urls and token, so member and
cluster IDs match. Compared: status, X-Etcd-Index, X-Etcd-Cluster-Id, Allow, Content-Type, and the body, with
expiration timestamps and TTLs normalised (they depend on the clock), unsorted listings compared in key order
(etcd's order there is Go's random map order) and the ID of a member added through the API compared as ADDED
(etcd draws it from the clock). Exits 1 on any difference and prints the N passed line.
"""
import http.client
import json
import os
import re
import sys
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "etcd_v2.json")

# (method, path, body or None[, content type]). Without a content type a body is sent as a form
# (application/x-www-form-urlencoded); with one, as it is, and None sends no Content-Type. In paths and bodies {id}
# and {peer} stand for the member's own ID and peer URL.
CASES = [
    ("GET", "/v2/keys/", None),
    ("GET", "/v2/keys", None),
    ("PUT", "/v2/keys/foo", "value=bar"),
    ("PUT", "/v2/keys/foo", "value=baz"),
    ("GET", "/v2/keys/foo", None),
    ("HEAD", "/v2/keys/foo", None),
    ("GET", "/v2/keys/nokey", None),
    ("GET", "/v2/keys/foo/bar", None),
    ("PUT", "/v2/keys/foo/bar", "value=x"),
    ("PUT", "/v2/keys/dir1/a", "value=1&ttl=100"),
    ("PUT", "/v2/keys/dir1/b/c", "value=deep"),
    ("GET", "/v2/keys/dir1", None),
    ("GET", "/v2/keys/dir1?recursive=true&sorted=true", None),
    ("PUT", "/v2/keys/dir1", "value=x"),
    ("PUT", "/v2/keys/foo?prevExist=false", "value=x"),
    ("PUT", "/v2/keys/new?prevExist=false", "value=created"),
    ("PUT", "/v2/keys/missing?prevExist=true", "value=x"),
    ("PUT", "/v2/keys/foo?prevExist=true", "value=updated"),
    ("PUT", "/v2/keys/foo?prevValue=nope", "value=x"),
    ("PUT", "/v2/keys/foo?prevIndex=99", "value=x"),
    ("PUT", "/v2/keys/foo?prevIndex=99&prevValue=nope", "value=x"),
    ("PUT", "/v2/keys/foo?prevValue=updated", "value=swapped"),
    ("PUT", "/v2/keys/foo?prevValue=", "value=x"),
    ("PUT", "/v2/keys/foo?ttl=abc", "value=x"),
    ("PUT", "/v2/keys/foo?prevIndex=-1", "value=x"),
    ("PUT", "/v2/keys/foo?recursive=maybe", "value=x"),
    ("PUT", "/v2/keys/foo?wait=true", "value=x"),
    ("PUT", "/v2/keys/foo?refresh=true", "value=x"),
    ("PUT", "/v2/keys/foo?refresh=true", None),
    ("PUT", "/v2/keys/foo?refresh=true&ttl=50", None),
    ("PUT", "/v2/keys/foo?prevExist=true&refresh=true&ttl=60", None),
    ("PUT", "/v2/keys/foo", "value=permanent"),
    ("PUT", "/v2/keys/foo?noValueOnSuccess=true", "value=quiet"),
    ("PUT", "/v2/keys/q%20uoted%2Fkey", "value=a%26b%3Cc%3E%22"),
    ("GET", "/v2/keys/q%20uoted%2Fkey", None),
    ("PUT", "/v2/keys/unicode", "value=%C3%A9%E2%80%A8x"),
    ("GET", "/v2/keys/unicode", None),
    ("POST", "/v2/keys/queue", "value=job1"),
    ("POST", "/v2/keys/queue", "value=job2"),
    ("GET", "/v2/keys/queue?sorted=true", None),
    ("POST", "/v2/keys/foo", "value=x"),
    ("DELETE", "/v2/keys/dir1", None),
    ("DELETE", "/v2/keys/dir1?dir=true", None),
    ("DELETE", "/v2/keys/dir1?recursive=true", None),
    ("PUT", "/v2/keys/emptydir?dir=true", None),
    ("PUT", "/v2/keys/emptydir?dir=true", None),
    ("PUT", "/v2/keys/emptydir?prevExist=true&dir=true&ttl=30", None),
    ("DELETE", "/v2/keys/emptydir?dir=true", None),
    ("PUT", "/v2/keys/cad", "value=one"),
    ("DELETE", "/v2/keys/cad?prevValue=two", None),
    ("DELETE", "/v2/keys/cad?prevValue=one", None),
    ("DELETE", "/v2/keys/nokey", None),
    ("PUT", "/v2/keys/", "value=x"),
    ("DELETE", "/v2/keys/?recursive=true", None),
    ("PUT", "/v2/keys/_hidden", "value=h"),
    ("GET", "/v2/keys/_hidden", None),
    ("GET", "/v2/keys/?recursive=true&sorted=true", None),
    ("GET", "/v2/keys/foo?wait=true&waitIndex=4", None),
    ("GET", "/v2/keys/dir1?wait=true&waitIndex=1&recursive=true", None),
    ("GET", "/v2/keys/dir1/b/c?wait=true&waitIndex=12", None),
    ("GET", "/v2/keys/foo?wait=true&waitIndex=abc", None),
    ("GET", "/v2/keys/foo?wait=yes", None),
    ("PATCH", "/v2/keys/foo", None),
    ("GET", "/v2/members", None),
    ("GET", "/version", None),
    ("GET", "/health", None),
    ("GET", "/v2/nothing", None),
    # Paths: cleaning, encoding, depth.
    ("PUT", "/v2/keys//double//slash", "value=1"),
    ("GET", "/v2/keys/double/slash", None),
    ("PUT", "/v2/keys/a/./b/../c", "value=2"),
    ("GET", "/v2/keys/a?recursive=true", None),
    ("PUT", "/v2/keys/deep/1/2/3/4/5/6/7/8", "value=deep"),
    ("GET", "/v2/keys/deep?recursive=true", None),
    ("GET", "/v2/keys/deep/1", None),
    ("PUT", "/v2/keys/sp%20ace", "value=x+y"),
    ("GET", "/v2/keys/sp%20ace", None),
    ("PUT", "/v2/keys/plus+key", "value=p"),
    ("GET", "/v2/keys/plus+key", None),
    ("PUT", "/v2/keys/emptyvalue", "value="),
    ("GET", "/v2/keys/emptyvalue", None),
    ("PUT", "/v2/keys/novalue", ""),
    ("GET", "/v2/keys/novalue", None),
    ("PUT", "/v2/keys/ctl", "value=%01%1f%7f"),
    ("GET", "/v2/keys/ctl", None),
    # Parameters from the query and the body: the body's first value wins.
    ("PUT", "/v2/keys/prec?value=query", "value=body"),
    ("GET", "/v2/keys/prec", None),
    ("PUT", "/v2/keys/prec2?value=query", None),
    ("GET", "/v2/keys/prec2", None),
    ("PUT", "/v2/keys/rep", "value=first&value=second"),
    ("GET", "/v2/keys/rep", None),
    ("PUT", "/v2/keys/badform", "value=%zz"),
    ("PUT", "/v2/keys/semi?a=1;b=2", "value=x"),
    # Booleans as Go parses them.
    ("GET", "/v2/keys/deep?recursive=1", None),
    ("GET", "/v2/keys/deep?recursive=T", None),
    ("GET", "/v2/keys/deep?recursive=FALSE", None),
    ("GET", "/v2/keys/deep?recursive=", None),
    ("GET", "/v2/keys/deep?sorted=nope", None),
    ("GET", "/v2/keys/deep?quorum=true", None),
    ("GET", "/v2/keys/deep?quorum=2", None),
    ("GET", "/v2/keys/deep?stream=x", None),
    ("PUT", "/v2/keys/b1?dir=maybe", None),
    ("PUT", "/v2/keys/b2?prevExist=maybe", "value=x"),
    ("PUT", "/v2/keys/b3?refresh=maybe", "value=x"),
    ("PUT", "/v2/keys/b4?noValueOnSuccess=maybe", "value=x"),
    ("PUT", "/v2/keys/b5?noValueOnSuccess=false", "value=x"),
    ("PUT", "/v2/keys/b5?noValueOnSuccess=true&prevExist=true", "value=y"),
    ("DELETE", "/v2/keys/b5?noValueOnSuccess=true", None),
    # Numbers as Go parses them.
    ("PUT", "/v2/keys/n1?ttl=", "value=x"),
    ("GET", "/v2/keys/n1", None),
    ("PUT", "/v2/keys/n2?ttl=-5", "value=x"),
    ("PUT", "/v2/keys/n3?ttl=1.5", "value=x"),
    ("PUT", "/v2/keys/n4?ttl=99999999999999999999", "value=x"),
    ("PUT", "/v2/keys/n5?prevIndex=", "value=x"),
    ("PUT", "/v2/keys/n6?prevIndex=0", "value=x"),
    ("GET", "/v2/keys/n6", None),
    ("PUT", "/v2/keys/n6?prevIndex=abc", "value=x"),
    ("GET", "/v2/keys/n6?wait=true&waitIndex=-1", None),
    # TTLs.
    ("PUT", "/v2/keys/ttl/a", "value=1&ttl=500"),
    ("PUT", "/v2/keys/ttl/a?prevExist=true", "value=2"),
    ("GET", "/v2/keys/ttl/a", None),
    ("PUT", "/v2/keys/ttl/b?ttl=500", "value=3"),
    ("PUT", "/v2/keys/ttl/b?prevValue=3&ttl=600", "value=4"),
    ("GET", "/v2/keys/ttl?recursive=true", None),
    ("PUT", "/v2/keys/ttldir?dir=true&ttl=500", None),
    ("GET", "/v2/keys/ttldir", None),
    ("PUT", "/v2/keys/ttldir/child", "value=c"),
    ("GET", "/v2/keys/ttldir?recursive=true", None),
    ("PUT", "/v2/keys/ttl/b?refresh=true&ttl=700", None),
    ("PUT", "/v2/keys/ttl/missing?refresh=true&ttl=700", None),
    ("PUT", "/v2/keys/ttl/b?refresh=true&ttl=700&prevValue=4", None),
    ("PUT", "/v2/keys/ttl/b?refresh=true&ttl=700&prevValue=5", None),
    # Directories.
    ("PUT", "/v2/keys/dirs/x?dir=true", None),
    ("PUT", "/v2/keys/dirs/x?dir=true", None),
    ("PUT", "/v2/keys/dirs/x", "value=file"),
    ("PUT", "/v2/keys/dirs/x?prevExist=true", "value=file"),
    ("PUT", "/v2/keys/dirs/x?prevExist=true", ""),
    ("PUT", "/v2/keys/dirs/x?prevValue=a", "value=b"),
    ("DELETE", "/v2/keys/dirs/x?prevValue=a", None),
    ("DELETE", "/v2/keys/dirs/x?prevIndex=1", None),
    ("PUT", "/v2/keys/dirs/file", "value=f"),
    ("PUT", "/v2/keys/dirs/file?dir=true", None),
    ("GET", "/v2/keys/dirs?recursive=true", None),
    ("PUT", "/v2/keys/dirs/file/under", "value=u"),
    ("POST", "/v2/keys/dirs/file", "value=u"),
    ("DELETE", "/v2/keys/dirs/file/under", None),
    ("DELETE", "/v2/keys/dirs?dir=true", None),
    ("DELETE", "/v2/keys/dirs?dir=true&recursive=true", None),
    ("GET", "/v2/keys/dirs", None),
    ("PUT", "/v2/keys/_h/visible", "value=v"),
    ("GET", "/v2/keys/_h", None),
    ("PUT", "/v2/keys/vis/_inner", "value=i"),
    ("PUT", "/v2/keys/vis/outer", "value=o"),
    ("GET", "/v2/keys/vis?recursive=true", None),
    # In-order keys.
    ("POST", "/v2/keys/ordered", "value=a"),
    ("POST", "/v2/keys/ordered?dir=true", None),
    ("POST", "/v2/keys/ordered", "value=c&ttl=500"),
    ("GET", "/v2/keys/ordered?sorted=true&recursive=true", None),
    ("POST", "/v2/keys/ordered?prevExist=true", "value=d"),
    # Compare-and-delete, compare-and-swap by index.
    ("PUT", "/v2/keys/cx", "value=1"),
    ("DELETE", "/v2/keys/cx?prevIndex=1", None),
    ("PUT", "/v2/keys/cx?prevExist=true&prevValue=1", "value=2"),
    ("DELETE", "/v2/keys/cx?prevValue=", None),
    ("DELETE", "/v2/keys/cx?prevValue=2&prevIndex=1", None),
    ("DELETE", "/v2/keys/cx?prevValue=nope", None),
    ("DELETE", "/v2/keys/cx?recursive=true", None),
    ("DELETE", "/v2/keys/cx", None),
    # The root.
    ("POST", "/v2/keys/", "value=x"),
    ("PUT", "/v2/keys/?dir=true", None),
    ("DELETE", "/v2/keys/", None),
    ("DELETE", "/v2/keys/?dir=true", None),
    ("PUT", "/v2/keys/?prevExist=true", "value=x"),
    ("PUT", "/v2/keys/?prevValue=x", "value=y"),
    ("HEAD", "/v2/keys/", None),
    ("HEAD", "/v2/keys/missing", None),
    # Watches answered from history.
    ("GET", "/v2/keys/ttl?wait=true&recursive=true&waitIndex=1", None),
    ("GET", "/v2/keys/cx?wait=true&waitIndex=1", None),
    ("GET", "/v2/keys/ordered?wait=true&recursive=true&waitIndex=1", None),
    ("GET", "/v2/keys/vis?wait=true&recursive=true&waitIndex=1", None),
    ("GET", "/v2/keys/dirs/file?wait=true&waitIndex=1", None),
    ("POST", "/v2/keys/foo?wait=true", "value=x"),
    ("DELETE", "/v2/keys/foo?wait=true", None),
    ("GET", "/v2/members/", None),
    ("PUT", "/version", None),
    ("DELETE", "/health", None),
    # The members API. A single member: a member added through the API never starts, and etcd then has no quorum
    # (Cairn adds it as a learner and keeps one), so the one successful add comes last.
    ("GET", "/v2/members/leader", None),
    ("GET", "/v2/members/leader/", None),
    ("GET", "/v2/members/{id}", None),
    ("GET", "/v2/members/xyz", None),
    ("HEAD", "/v2/members", None),
    ("HEAD", "/v2/members/leader", None),
    ("PATCH", "/v2/members", None),
    ("PATCH", "/v2/members/{id}", None),
    ("DELETE", "/v2/members", None),
    ("DELETE", "/v2/members/", None),
    ("PUT", "/v2/members", '{"peerURLs":["http://127.0.0.1:1"]}', "application/json"),
    ("DELETE", "/v2/members/xyz", None),
    ("DELETE", "/v2/members/0x10", None),
    ("DELETE", "/v2/members/-1", None),
    ("DELETE", "/v2/members/a/b", None),
    ("DELETE", "/v2/members/ABC", None),
    ("DELETE", "/v2/members/00000000000000001", None),
    ("DELETE", "/v2/members/10000000000000000", None),
    ("DELETE", "/v2/members/leader", None),
    ("DELETE", "/v2/members/{id}", None),
    ("PUT", "/v2/members/abc", '{"peerURLs":["http://127.0.0.1:1"]}', None),
    ("PUT", "/v2/members/abc", '{"peerURLs":["http://127.0.0.1:1"]}', "text/plain"),
    ("PUT", "/v2/members/xyz", '{"peerURLs":["http://127.0.0.1:1"]}', "text/plain"),
    ("PUT", "/v2/members/abc", '{bad', "application/json"),
    ("PUT", "/v2/members/abc", '{"peerURLs":["http://127.0.0.1:1"]}', "application/json"),
    ("PUT", "/v2/members/{id}", '{"peerURLs":["{peer}"]}', "application/json"),
    ("PUT", "/v2/members/{id}", '{"peerURLs":["http://127.0.0.1:3","http://127.0.0.1:20"]}', "application/json"),
    ("GET", "/v2/members", None),
    ("GET", "/v2/members/leader", None),
    ("PUT", "/v2/members/{id}", '{"peerURLs":["{peer}"]}', "application/json"),
    ("GET", "/v2/members", None),
    ("POST", "/v2/members", '{"peerURLs":["http://127.0.0.1:1"]}', None),
    ("POST", "/v2/members", '{"peerURLs":["http://127.0.0.1:1"]}', "application/x-www-form-urlencoded"),
    ("POST", "/v2/members", '{"peerURLs":["http://127.0.0.1:1"]}', "Application/JSON"),
    ("POST", "/v2/members", '{"peerURLs":["http://127.0.0.1:1"]}', "text/json; charset=utf-8"),
    ("POST", "/v2/members", "{bad", "application/json"),
    ("POST", "/v2/members", "", "application/json"),
    ("POST", "/v2/members", "   ", "application/json"),
    ("POST", "/v2/members", "{}", "application/json"),
    ("POST", "/v2/members", "[]", "application/json"),
    ("POST", "/v2/members", "null", "application/json"),
    ("POST", "/v2/members", '"x"', "application/json"),
    ("POST", "/v2/members", "12", "application/json"),
    ("POST", "/v2/members", "tru", "application/json"),
    ("POST", "/v2/members", "nul!", "application/json"),
    ("POST", "/v2/members", '{"peerURLs":[]}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":null}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":"x"}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":{}}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":[1]}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":[true,"{peer}"]}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":[null]}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":["{peer}"]} trailing', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":["{peer}"],}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs" ["{peer}"]}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":["{peer}" "x"]}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":["\\q"]}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":["\\u12G4"]}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":["a\tb"]}', "application/json"),
    ("POST", "/v2/members", '{"a":-x}', "application/json"),
    ("POST", "/v2/members", '{"a":1.}', "application/json"),
    ("POST", "/v2/members", '{"a":1e+}', "application/json"),
    ("POST", "/v2/members", '{"a":01}', "application/json"),
    ("POST", "/v2/members", '{"a":[1,2', "application/json"),
    ("POST", "/v2/members", '{"a":\'x\'}', "application/json"),
    ("POST", "/v2/members", '{"a":"\u00e9",\x01}', "application/json"),
    ("POST", "/v2/members", '{"a":{"b":[{}]},"peerURLs":["ftp://127.0.0.1:1"]}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":["http://127.0.0.1"]}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":["http://127.0.0.1:1/path"]}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":["http://127.0.0.1:1/"]}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":["://bad"]}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":["127.0.0.1:1"]}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":["localhost:1"]}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":["http://127.0.0.1:abc"]}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":["http://a b:1"]}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":["http://a%zz:1"]}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":["http://[::1:1"]}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":["http://::1:1"]}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":["http:127.0.0.1:1"]}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":["http://127.0.0.1:1\\u0001"]}', "application/json"),
    # Valid URLs beside the member's own: etcd checks them all, then refuses the one already in use.
    ("POST", "/v2/members", '{"peerURLs":["{peer}"]}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":["http://127.0.0.1:1","{peer}"]}', "application/json; charset=utf-8"),
    ("POST", "/v2/members", '{"peerURLs":[" {peer}\\n"]}', "application/json"),
    ("POST", "/v2/members", '{"PEERURLS":["{peer}"],"other":[1]}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":["x"],"peerURLs":["{peer}"]}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":["unix://host:1","https://[::1]:1","HTTP://127.0.0.1:1?q#f","{peer}"]}',
     "application/json"),
    ("GET", "/v2/members/leader?x=1", None),
    ("GET", "/v2/members//", None),
    ("DELETE", "/v2/members/%41", None),
    ("DELETE", "/v2/members/%C3%A9", None),
    ("DELETE", "/v2/members/ffffffffffffffff", None),
    ("DELETE", "/v2/members/+1", None),
    ("DELETE", "/v2/members/1_0", None),
    ("PUT", "/v2/members/ffffffffffffffff", '{"peerURLs":["{peer}"]}', "application/json"),
    ("PUT", "/v2/members/{id}", '{"peerURLs":[]}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":["\\ud800","{peer}"]}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":["http://h\\u00e9:1","{peer}"]}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":["http://[::1]:1x"]}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":["http://[::1]"]}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":["http://u@h:1","http://h:","http://:1","http://h%80:1","{peer}"]}',
     "application/json"),
    ("POST", "/v2/members", '{"peerURLs":["http://h:1#frag","http://h:1?","\\u0085http://h:2","{peer}"]}',
     "application/json"),
    ("POST", "/v2/members", '{"peerURLs":["http://%41:1"]}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":["http:///x"]}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":["a:b/c"]}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":["/x:y"]}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":[""]}', "application/json"),
    ("POST", "/v2/members", '{"a":tx}', "application/json"),
    ("POST", "/v2/members", '{"a":"\\', "application/json"),
    ("POST", "/v2/members", '{"a":"\\u12', "application/json"),
    ("POST", "/v2/members", '{"a":"abc', "application/json"),
    ("POST", "/v2/members", '{"a"', "application/json"),
    ("POST", "/v2/members", "-", "application/json"),
    ("POST", "/v2/members", "1e", "application/json"),
    ("POST", "/v2/members", "\xa0", "application/json"),
    ("POST", "/v2/members", "true", "application/json"),
    ("POST", "/v2/members", '{"peerURLs":["{peer}"],"peerURLs":3}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":[{"a":1},[1],"{peer}"]}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":["{peer}"]}', "application/json ; x"),
    ("POST", "/v2/members", '{"peerURLs":["{peer}"]}', " application/json"),
    ("POST", "/v2/members", '{"peerURLs":["{peer}"]}', "APPLICATION/JSON;"),
    ("POST", "/v2/members/{id}", '{"peerURLs":["{peer}"]}', "application/json"),
    ("POST", "/v2/members", '{"peerURLs":["http://127.0.0.1:3","http://127.0.0.1:20"]}', "application/json"),
    ("GET", "/v2/members", None),
]


def normalise(body):
    body = re.sub(r'"expiration":"[^"]*"', '"expiration":"T"', body)
    body = re.sub(r'"ttl":\d+', '"ttl":N', body)
    return body


def unordered(request, body):
    """etcd lists a directory in Go's random map order unless sorted=true: compare such listings as sets."""
    if not request.startswith("GET ") or "sorted=true" in request or '"nodes"' not in body:
        return body

    def sort_nodes(node):
        if "nodes" in node:
            node["nodes"] = sorted((sort_nodes(child) for child in node["nodes"]), key=lambda child: child["key"])
        return node

    document = json.loads(body.replace('"ttl":N', '"ttl":-1'))
    for field in ("node", "prevNode"):
        if field in document:
            sort_nodes(document[field])
    return json.dumps(document, sort_keys=True)


def member_listing(body):
    """A members listing in ID order after the added member's ID became ADDED (the order etcd's random ID gave)."""
    try:
        document = json.loads(body)
    except ValueError:
        return body
    if not isinstance(document, dict) or not isinstance(document.get("members"), list):
        return body
    document["members"].sort(key=lambda member: member.get("id", ""))
    return json.dumps(document, sort_keys=True)


def run(base):
    url = urllib.parse.urlparse(base)

    def request(method, path, body, headers):
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        text = response.read().decode("utf-8", "replace")
        connection.close()
        return response, text

    # The member's own ID and peer URL, for the {id} and {peer} of the members cases.
    me = json.loads(request("GET", "/v2/members", None, {})[1])["members"][0]
    fill = lambda text: text.replace("{id}", me["id"]).replace("{peer}", me["peerURLs"][0])
    added = []
    results = []
    for method, path, body, *content_type in CASES:
        if content_type:
            headers = {"Content-Type": content_type[0]} if content_type[0] is not None else {}
        else:
            headers = {"Content-Type": "application/x-www-form-urlencoded"} if body is not None else {}
        response, text = request(method, fill(path), fill(body).encode() if body is not None else None, headers)
        if method == "POST" and path.startswith("/v2/members") and response.status == 201:
            added.append(json.loads(text)["id"])
        for member_id in added:
            text = text.replace(f'"{member_id}"', '"ADDED"')
        results.append({
            "request": f"{method} {path}" + (f" <{body}>" if body is not None else "")
                       + (f" [{content_type[0]}]" if content_type else ""),
            "status": response.status,
            "x-etcd-index": response.getheader("X-Etcd-Index"),
            "x-etcd-cluster-id": response.getheader("X-Etcd-Cluster-Id"),
            "allow": response.getheader("Allow"),
            "content-type": response.getheader("Content-Type"),
            "body": member_listing(normalise(text)) if added else normalise(text),
        })
    return results


def main():
    mode, base = sys.argv[1], sys.argv[2]
    if mode == "diff":
        # Live: the same cases against a fresh etcd (argv[2]) and a fresh Cairn (argv[3]); each advertises itself.
        expected = run(base)
        for result in expected:
            result["body"] = result["body"].replace(base, "ADVERTISED")
        base = sys.argv[3]
        results = run(base)
        for result in results:
            result["body"] = result["body"].replace(base, "ADVERTISED")
        return compare(expected, results, "etcd-differential")
    results = run(base)
    # The member under test advertises its own client URL; the recording advertised this one.
    if "--advertised" in sys.argv:
        recorded = sys.argv[sys.argv.index("--advertised") + 1]
        for result in results:
            result["body"] = result["body"].replace(base, recorded)
    if mode == "record":
        with open(GOLDEN, "w") as f:
            json.dump(results, f, indent=1, ensure_ascii=False)
            f.write("\n")
        print(f"recorded {len(results)} answers")
        return 0
    with open(GOLDEN) as f:
        expected = json.load(f)
    return compare(expected, results, "etcd-goldens")


def compare(expected, results, label):
    failed = 0
    for want, got in zip(expected, results):
        want["body"] = unordered(want["request"], want["body"])
        got["body"] = unordered(got["request"], got["body"])
        for field in ("status", "x-etcd-index", "x-etcd-cluster-id", "allow", "content-type", "body"):
            if want.get(field) != got.get(field):
                failed += 1
                print(f"DIFF {want['request']}: {field}\n  etcd:  {want.get(field)!r}\n  cairn: {got.get(field)!r}")
                break
    print(f"{label}: {len(expected) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

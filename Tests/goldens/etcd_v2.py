#!/usr/bin/env python3
"""Recorded etcd 3.4 answers for the v2 keys API, and a checker that replays them against Cairn.

  record URL    run every case against a fresh etcd (--enable-v2=true) and write etcd_v2.json
  check URL [--advertised RECORDED_URL]
                run every case against a fresh Cairn and compare with etcd_v2.json

Both servers must be started fresh with the same --name, --initial-advertise-peer-urls and token, so member and
cluster IDs match. Compared: status, X-Etcd-Index, X-Etcd-Cluster-Id, Content-Type, and the body, with expiration
timestamps and TTLs normalised (they depend on the clock). Exits 1 on any difference and prints the N passed line.
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

# (method, path, form body or None, headers-to-compare). A body is sent as application/x-www-form-urlencoded.
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
]


def normalise(body):
    body = re.sub(r'"expiration":"[^"]*"', '"expiration":"T"', body)
    body = re.sub(r'"ttl":\d+', '"ttl":N', body)
    return body


def run(base):
    url = urllib.parse.urlparse(base)
    results = []
    for method, path, form in CASES:
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if form is not None else {}
        connection.request(method, path, body=form, headers=headers)
        response = connection.getresponse()
        body = response.read().decode("utf-8", "replace")
        connection.close()
        results.append({
            "request": f"{method} {path}" + (f" <{form}>" if form is not None else ""),
            "status": response.status,
            "x-etcd-index": response.getheader("X-Etcd-Index"),
            "x-etcd-cluster-id": response.getheader("X-Etcd-Cluster-Id"),
            "content-type": response.getheader("Content-Type"),
            "body": normalise(body),
        })
    return results


def main():
    mode, base = sys.argv[1], sys.argv[2]
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
    failed = 0
    for want, got in zip(expected, results):
        for field in ("status", "x-etcd-index", "x-etcd-cluster-id", "content-type", "body"):
            if want[field] != got[field]:
                failed += 1
                print(f"DIFF {want['request']}: {field}\n  etcd:  {want[field]!r}\n  cairn: {got[field]!r}")
                break
    print(f"etcd-goldens: {len(expected) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

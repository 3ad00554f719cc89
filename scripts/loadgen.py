#!/usr/bin/env python3
"""Signed webhook load for demos: N events from a few users, counts 202s and failures.

usage: loadgen.py URL SECRET EVENTS [CONCURRENCY]   (stdlib only)
"""
import hashlib, hmac, json, sys, time, urllib.error, urllib.request
from concurrent.futures import ThreadPoolExecutor

url, secret, total = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3])
workers = int(sys.argv[4]) if len(sys.argv) > 4 else 8


def send(i):
    body = json.dumps({"user_id": f"demo-user-{i % 10}", "data_type": "steps", "value": i,
                       "timestamp": "2026-01-01T00:00:00Z"}).encode()
    ts = str(int(time.time()))
    sig = "sha256=" + hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    req = urllib.request.Request(url, data=body, headers={
        "content-type": "application/json", "x-auren-timestamp": ts, "x-auren-signature": sig})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get("x-auren-release")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("x-auren-release")
    except OSError:
        return 0, None


started = time.time()
with ThreadPoolExecutor(workers) as pool:
    results = list(pool.map(send, range(total)))
accepted = sum(1 for s, _ in results if s == 202)
releases = {}
for s, rel in results:
    releases[rel] = releases.get(rel, 0) + 1
print(json.dumps({"sent": total, "accepted": accepted, "failed": total - accepted,
                  "seconds": round(time.time() - started, 2), "by_release": releases}))

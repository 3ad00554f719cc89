#!/usr/bin/env python3
"""Sends a fixed number of signed webhooks over keep-alive connections (stdlib only): the backlog
of `make bench`'s consumer figure. Every event is distinct (its own user and value; unsigned
runtimes give each a fresh id) and the number is exact: no request is dropped at a deadline, as
wrk drops those in flight when it stops.

usage: bench-send.py HOST:PORT SECRET REQUESTS [--batch N] [--connections C] [--first I]

Each request carries one event (`/webhooks/oura`) or N events (`/webhooks/oura/batch`).
Exits 1 unless every request was answered 202; prints `accepted=<requests> events=<events>`.
"""
import argparse, hashlib, hmac, http.client, json, sys, threading, time

p = argparse.ArgumentParser()
p.add_argument("address")
p.add_argument("secret")
p.add_argument("requests", type=int)
p.add_argument("--batch", type=int, default=0, help="events per request; 0: single-event route")
p.add_argument("--connections", type=int, default=8)
p.add_argument("--first", type=int, default=0, help="index of the first event (distinct runs)")
a = p.parse_args()
host, port = a.address.rsplit(":", 1)
secret = a.secret.encode()


def event(i):
    return {"user_id": f"bench-{i % 500}", "data_type": "steps", "value": i % 100000,
            "timestamp": "2026-01-01T00:00:00Z"}


def request(i):
    if a.batch:
        first = a.first + i * a.batch
        return "/webhooks/oura/batch", json.dumps([event(first + k) for k in range(a.batch)])
    return "/webhooks/oura", json.dumps(event(a.first + i))


failures = []
lock = threading.Lock()


def worker(indices):
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    for i in indices:
        path, body = request(i)
        ts = str(int(time.time()))
        sig = "sha256=" + hmac.new(secret, f"{ts}.{body}".encode(), hashlib.sha256).hexdigest()
        conn.request("POST", path, body=body, headers={
            "content-type": "application/json", "x-auren-timestamp": ts, "x-auren-signature": sig})
        r = conn.getresponse()
        r.read()
        if r.status != 202:
            with lock:
                failures.append((i, r.status))


threads = [threading.Thread(target=worker, args=(range(c, a.requests, a.connections),))
           for c in range(a.connections)]
for t in threads:
    t.start()
for t in threads:
    t.join()
if failures:
    print(f"not accepted: {len(failures)} of {a.requests}, first {failures[:3]}", file=sys.stderr)
    sys.exit(1)
print(f"accepted={a.requests} events={a.requests * max(a.batch, 1)}")

#!/usr/bin/env python3
"""Sends `make bench` an exact number of requests over keep-alive connections (stdlib only).

- batch (default): 100-event batch webhooks to an api running with WEBHOOK_AUTH=disabled, which
  gives every event a fresh id: the consumer's backlog. The count is exact: no request is dropped
  at a deadline, as wrk drops those in flight when it stops (their events still reach Kafka,
  unanswered).
- single: signed single-event webhooks (--secret), one per request;
- live: `GET /live`, the baseline.
The last two, on one connection, are what callgrind counts instructions per request of.

usage: bench-send.py HOST:PORT REQUESTS [--connections C] [--kind batch|single|live] [--secret S]

Exits 1 unless every request was answered as it should be; prints `events=<events>`.
"""
import argparse, hashlib, hmac, http.client, json, sys, threading, time

BATCH = 100
p = argparse.ArgumentParser()
p.add_argument("address")
p.add_argument("requests", type=int)
p.add_argument("--connections", type=int, default=8)
p.add_argument("--kind", choices=["batch", "single", "live"], default="batch")
p.add_argument("--secret", default="")
a = p.parse_args()
host, port = a.address.rsplit(":", 1)
EVENTS = {"batch": BATCH, "single": 1, "live": 0}[a.kind]


def reading(i):
    return {"user_id": f"bench-{i % 500}", "data_type": "steps", "value": i % 100000,
            "timestamp": "2026-01-01T00:00:00Z"}


def request(i):
    """(method, path, body, headers, status expected) of request i."""
    if a.kind == "live":
        return "GET", "/live", None, {}, 200
    headers = {"content-type": "application/json"}
    if a.kind == "batch":
        first = i * BATCH
        return "POST", "/webhooks/oura/batch", json.dumps(
            [reading(n) for n in range(first, first + BATCH)]), headers, 202
    body = json.dumps(reading(i))
    ts = str(int(time.time()))
    sig = hmac.new(a.secret.encode(), f"{ts}.{body}".encode(), hashlib.sha256).hexdigest()
    headers.update({"x-auren-timestamp": ts, "x-auren-signature": f"sha256={sig}"})
    return "POST", "/webhooks/oura", body, headers, 202


failures = []
lock = threading.Lock()


def worker(requests):
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    for i in requests:
        method, path, body, headers, expected = request(i)
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        r.read()
        if r.status != expected:
            with lock:
                failures.append((i, r.status))


threads = [threading.Thread(target=worker, args=(range(c, a.requests, a.connections),))
           for c in range(a.connections)]
for t in threads:
    t.start()
for t in threads:
    t.join()
if failures:
    print(f"not answered as expected: {len(failures)} of {a.requests}, first {failures[:3]}",
          file=sys.stderr)
    sys.exit(1)
print(f"events={a.requests * EVENTS}")

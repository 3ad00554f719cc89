#!/usr/bin/env python3
"""Feeds `make bench`'s consumer backlog (stdlib only): a fixed number of 100-event batch
webhooks over keep-alive connections to an api running with WEBHOOK_AUTH=disabled, which gives
every event a fresh id. The count is exact: no request is dropped at a deadline, as wrk drops
those in flight when it stops (their events still reach Kafka, unanswered).

usage: bench-send.py HOST:PORT REQUESTS [--connections C]

Exits 1 unless every request was answered 202; prints `events=<events>`.
"""
import argparse, http.client, json, sys, threading

BATCH = 100
p = argparse.ArgumentParser()
p.add_argument("address")
p.add_argument("requests", type=int)
p.add_argument("--connections", type=int, default=8)
a = p.parse_args()
host, port = a.address.rsplit(":", 1)


def body(request):
    first = request * BATCH
    return json.dumps([{"user_id": f"bench-{i % 500}", "data_type": "steps", "value": i % 100000,
                        "timestamp": "2026-01-01T00:00:00Z"} for i in range(first, first + BATCH)])


failures = []
lock = threading.Lock()


def worker(requests):
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    for i in requests:
        conn.request("POST", "/webhooks/oura/batch", body=body(i),
                     headers={"content-type": "application/json"})
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
print(f"events={a.requests * BATCH}")

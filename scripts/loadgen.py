#!/usr/bin/env python3
"""Signed webhook load for demos (stdlib only): counts answers per status and per release.

usage: loadgen.py URL SECRET [EVENTS] [CONCURRENCY] [--duration S] [--pause S] [--user PREFIX]
                  [--markers FILE]

Sends signed oura events to URL (`http://ip:port/webhooks/oura`). It stops after EVENTS events
(0 = no limit), after --duration seconds, or on SIGTERM/SIGINT, whichever comes first, and
prints one JSON summary line: sent, accepted (202), failed, seconds, by_release (answers per
`x-auren-release` header: {"accepted": n, "failed": n}), statuses, and a few failures.
Every request opens its own connection, so each one follows the Service's current endpoints.
Each event's reading time (`timestamp`) is a marker no other request of any loadgen run
carries (the process id in seconds after 2024-01-01, plus the request's index in
microseconds), so scripts/stored-once.py can tell the same request stored twice under two
ids; --markers FILE writes one "marker status" line per request.
"""
import argparse, datetime, hashlib, hmac, json, os, signal, threading, time, urllib.error, urllib.request

p = argparse.ArgumentParser()
p.add_argument("url")
p.add_argument("secret")
p.add_argument("events", type=int, nargs="?", default=0, help="0: until --duration or a signal")
p.add_argument("concurrency", type=int, nargs="?", default=8)
p.add_argument("--duration", type=float, default=0, help="seconds; 0: no limit")
p.add_argument("--pause", type=float, default=0, help="seconds each worker waits between requests")
p.add_argument("--user", default="demo-user", help="user id prefix (10 users)")
p.add_argument("--markers", help="file: one 'marker status' line per request")
a = p.parse_args()
secret = a.secret.encode()
stop = threading.Event()
for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, lambda *_: stop.set())

lock = threading.Lock()
counter = [0]
results = []  # (status, release, detail)


def next_index():
    with lock:
        if stop.is_set() or (a.events and counter[0] >= a.events):
            return None
        counter[0] += 1
        return counter[0] - 1


MARKER_BASE = datetime.datetime(2024, 1, 1) + datetime.timedelta(seconds=os.getpid())


def marker(i):
    """Unique while a run sends fewer than a million requests (pids differ by a second)."""
    return (MARKER_BASE + datetime.timedelta(microseconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def send(i):
    body = json.dumps({"user_id": f"{a.user}-{i % 10}", "data_type": "steps", "value": i,
                       "timestamp": marker(i)}).encode()
    ts = str(int(time.time()))
    sig = "sha256=" + hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    req = urllib.request.Request(a.url, data=body, headers={
        "content-type": "application/json", "x-auren-timestamp": ts, "x-auren-signature": sig})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get("x-auren-release"), None
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("x-auren-release"), e.read(200).decode(errors="replace")
    except OSError as e:
        return 0, None, str(e)


def worker():
    while (i := next_index()) is not None:
        r = send(i)
        with lock:
            results.append(r + (marker(i),))
        if a.pause:
            stop.wait(a.pause)


started = time.time()
threads = [threading.Thread(target=worker, daemon=True) for _ in range(a.concurrency)]
for t in threads:
    t.start()
if a.duration:
    stop.wait(a.duration)
    stop.set()
while any(t.is_alive() for t in threads):
    for t in threads:
        t.join(0.2)

by_release, statuses, failures = {}, {}, []
for status, rel, detail, _ in results:
    entry = by_release.setdefault(rel or "none", {"accepted": 0, "failed": 0})
    entry["accepted" if status == 202 else "failed"] += 1
    statuses[str(status)] = statuses.get(str(status), 0) + 1
    if status != 202 and len(failures) < 5:
        failures.append({"status": status, "release": rel, "detail": detail})
accepted = sum(1 for r in results if r[0] == 202)
if a.markers:
    with open(a.markers, "w") as f:
        f.writelines(f"{m} {s}\n" for s, _, _, m in results)
print(json.dumps({"sent": len(results), "accepted": accepted, "failed": len(results) - accepted,
                  "seconds": round(time.time() - started, 2), "by_release": by_release,
                  "statuses": statuses, "failures": failures}), flush=True)

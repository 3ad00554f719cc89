#!/usr/bin/env python3
"""Every request a loadgen run got 202 for is stored exactly once (stdlib + psql).

usage: stored-once.py DATABASE_URL MARKERS_FILE... [--timeout S]

MARKERS_FILE: what `loadgen.py --markers` wrote, one "marker status" line per request. The
events table's primary key is the event id, so counting rows against distinct ids can never
see a request stored twice under two ids; this counts rows per marker (the payload's
`timestamp`, unique per request) instead: every accepted marker exactly once, no marker sent
by these runs twice. Waits up to --timeout seconds for the accepted ones to arrive and fails
at once on a duplicate. Prints one summary line; exits 1 with the offending markers otherwise.
"""
import argparse, collections, subprocess, sys, time

p = argparse.ArgumentParser()
p.add_argument("database_url")
p.add_argument("markers", nargs="+")
p.add_argument("--timeout", type=float, default=60)
a = p.parse_args()

sent, accepted = set(), set()
for path in a.markers:
    with open(path) as f:
        for line in f:
            marker, status = line.split()
            sent.add(marker)
            if status == "202":
                accepted.add(marker)


def stored():
    out = subprocess.run(["psql", a.database_url, "-qAtc", "SELECT payload->>'timestamp' FROM events"],
                         capture_output=True, text=True)
    return collections.Counter(out.stdout.split()) if out.returncode == 0 else None


def fail(what, markers):
    print(f"stored-once: {len(markers)} {what}: {sorted(markers)[:5]}", file=sys.stderr)
    sys.exit(1)


if not accepted:
    fail("accepted: nothing to check", [])
deadline = time.time() + a.timeout
while True:
    counts = stored()
    if counts is not None:
        twice = [m for m in sent if counts[m] > 1]
        if twice:
            fail("requests stored more than once", twice)
        missing = [m for m in accepted if counts[m] == 0]
        if not missing:
            rows = sum(counts.values())
            print(f"{rows} rows; each of the {len(accepted)} accepted requests stored once, none twice")
            sys.exit(0)
    if time.time() > deadline:
        fail(f"of {len(accepted)} accepted requests not stored after {a.timeout:.0f} s", missing if counts is not None else accepted)
    time.sleep(0.5)

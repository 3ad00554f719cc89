#!/usr/bin/env python3
"""Where the CPU of a profile goes, by part of the path: reads folded stacks (inferno-collapse-perf
output: `frame;frame;...;leaf weight`) and prints the CPU seconds sampled and each part's share.
A sample counts for the part of the deepest frame that names one, so a memcpy inside serde_json
is JSON and mimalloc under anything is the allocator.

usage: profile-summary.py < folded
"""
import re
import sys

# (part, pattern on one frame); the first part whose pattern matches, from the leaf up, wins.
PARTS = [
    ("allocator", r"\bmi_|_mi_|mimalloc|\bmalloc|\bfree\b|\bcfree|realloc|_int_malloc|_int_free"),
    ("lz4", r"LZ4|lz4"),
    ("signature", r"hmac|sha2::|sha256|Sha256"),
    ("JSON", r"serde_json|serde::"),
    ("normalisation", r"auren_runtime::ingest"),
    ("librdkafka", r"\brd_|rdk|rdkafka"),
    ("sqlx / PostgreSQL protocol", r"sqlx"),
    ("kernel (sockets, futex, scheduling)", r"_\[k\]$|entry_SYSCALL|syscall"),
    ("HTTP (hyper, axum)", r"hyper|axum|\bh1\b|httparse|tower"),
    ("tokio", r"tokio"),
]
COMPILED = [(name, re.compile(p)) for name, p in PARTS]


def part_of(frames):
    for frame in reversed(frames):
        for name, pattern in COMPILED:
            if pattern.search(frame):
                return name
    return "other"


totals, weight = {}, 0
for line in sys.stdin:
    stack, _, count = line.rstrip("\n").rpartition(" ")
    if not stack or not count.isdigit():
        continue
    n = int(count)
    weight += n
    part = part_of(stack.split(";"))
    totals[part] = totals.get(part, 0) + n

shares = sorted(totals.items(), key=lambda kv: -kv[1])
cells = ", ".join(f"{name} {100 * n / max(weight, 1):.0f} %" for name, n in shares if n * 50 >= weight)
print(f"{weight / 1e9:.1f} CPU s sampled: {cells}")

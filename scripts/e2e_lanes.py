#!/usr/bin/env python3
"""Runs the e2e crate's test files side by side on the one local cluster.

Usage: e2e_lanes.py --stage LANE [LANE ...] [--stage ...]   (from the workspace root)
       e2e_lanes.py --self-test       (proves a failing or forgotten file fails the run)

A LANE is test files joined by commas (`canary,operator`): they run one after another. The
lanes of a stage run at the same time, and the stages one after another. Every file under
e2e/tests/ must be named exactly once, so a new file is never left out. Each file is its own
test binary (libtest, `--test-threads=1`); its tests keep their own namespace, broker,
PostgreSQL and operator, so files in different lanes share only the cluster. A file that
stops the cluster's own daemons (control_plane_faults) gets a stage of its own.

A file's output is printed whole once it ends, so lanes never interleave. Like
`cargo test --no-fail-fast`, every file runs; the exit status is 1 when any failed.
"""

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

E2E = "e2e"


def plan_from(stages):
    """[[['canary', 'operator'], ['faults']], ...] from the --stage arguments."""
    return [[lane.split(",") for lane in stage] for stage in stages]


def plan_errors(plan, files):
    """What is wrong with a plan for these test files: unknown, doubled or forgotten ones."""
    named = [f for stage in plan for lane in stage for f in lane]
    errors = [f"{f}: no such e2e test file" for f in sorted(set(named) - set(files))]
    errors += [f"{f}: named twice" for f in sorted({f for f in named if named.count(f) > 1})]
    errors += [f"{f}: in no lane (add it to scripts/e2e.sh)" for f in sorted(set(files) - set(named))]
    return errors


def test_files(root):
    tests = os.path.join(root, E2E, "tests")
    return sorted(n[:-3] for n in os.listdir(tests) if n.endswith(".rs"))


def build_test_binaries(root):
    """{file: executable} of the e2e crate's test targets (cargo builds them if needed)."""
    out = subprocess.run(
        ["cargo", "test", "--locked", "-p", E2E, "--no-run", "--message-format=json-render-diagnostics"],
        cwd=root, stdout=subprocess.PIPE, check=True, text=True,
    ).stdout
    binaries = {}
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("executable") and "test" in msg["target"]["kind"]:
            binaries[msg["target"]["name"]] = msg["executable"]
    return binaries


class Run:
    """The files' results and one lock so that each file's output is printed whole."""

    def __init__(self, commands, cwd):
        self.commands, self.cwd = commands, cwd
        self.failed, self.lock, self.started = [], threading.Lock(), time.monotonic()

    def file(self, name):
        began = time.monotonic()
        with self.lock:
            print(f"e2e lanes: {name} starts at +{began - self.started:.0f}s", flush=True)
        proc = subprocess.run(self.commands[name], cwd=self.cwd, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, errors="replace")
        took = time.monotonic() - began
        verdict = "passed" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
        with self.lock:
            if proc.returncode != 0:
                self.failed.append(name)
            print(f"==== e2e file {name}: {verdict} in {took:.0f}s ====", flush=True)
            if proc.stdout:
                print(proc.stdout.rstrip("\n"), flush=True)

    def lane(self, files):
        for name in files:
            self.file(name)

    def stage(self, lanes):
        threads = [threading.Thread(target=self.lane, args=(lane,)) for lane in lanes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def run_plan(plan, commands, cwd):
    """Runs every stage; returns the files that failed."""
    run = Run(commands, cwd)
    for stage in plan:
        print("e2e lanes: stage " + " | ".join(" → ".join(lane) for lane in stage), flush=True)
        run.stage(stage)
    print(f"e2e lanes: every file ran in {time.monotonic() - run.started:.0f}s; "
          f"failed: {', '.join(run.failed) or 'none'}", flush=True)
    return run.failed


def self_test():
    """A failing file fails the run and a forgotten one is refused; both lanes run at once."""
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        marks = os.path.join(tmp, "marks")
        slow = ["sh", "-c", f"echo a >> {marks}; sleep 1; echo b >> {marks}"]
        commands = {"good": ["true"], "bad": ["sh", "-c", "echo planted failure; exit 3"],
                    "slow1": slow, "slow2": slow}
        failed = run_plan(plan_from([["good,bad", "slow1"], ["slow2"]]), commands, tmp)
        assert failed == ["bad"], f"planted failure not reported: {failed}"
        with open(marks) as f:
            order = f.read().split()
        assert order == ["a", "b", "a", "b"], f"stages overlapped: {order}"
        began = time.monotonic()
        run_plan(plan_from([["slow1", "slow2"]]), commands, tmp)
        assert time.monotonic() - began < 1.9, "two lanes did not run at the same time"
    errors = plan_errors(plan_from([["a,b", "b"]]), ["a", "b", "c"])
    assert errors == ["b: named twice", "c: in no lane (add it to scripts/e2e.sh)"], errors
    assert plan_errors(plan_from([["x"]]), []) == ["x: no such e2e test file"]
    print("e2e_lanes.py self-test: a planted failure fails the run, a forgotten file is refused")


def main():
    if sys.argv[1:] == ["--self-test"]:
        self_test()
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stage", nargs="+", action="append", required=True, metavar="LANE")
    args = parser.parse_args()
    root = os.getcwd()
    plan = plan_from(args.stage)
    errors = plan_errors(plan, test_files(root))
    if errors:
        print("e2e lanes: " + "; ".join(errors), file=sys.stderr)
        return 2
    binaries = build_test_binaries(root)
    commands = {name: [path, "--test-threads=1"] for name, path in binaries.items()}
    os.environ["CARGO_MANIFEST_DIR"] = os.path.join(root, E2E)
    return 1 if run_plan(plan, commands, os.path.join(root, E2E)) else 0


if __name__ == "__main__":
    sys.exit(main())

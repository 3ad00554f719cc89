#!/usr/bin/env bash
# Tests every Argo CD resource customization under argocd/resource_customizations with Lua 5.1
# (the Lua Argo CD embeds). The YAML test files (Argo CD's layout: health_test.yaml and
# actions/action_test.yaml, fixtures beside them) are turned into one JSON bundle by Python,
# which test.lua runs. Needs: lua5.1, lua-cjson, a python3 with PyYAML ($PYTHON, default python3).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
PYTHON="${PYTHON:-python3}"
bundle="$(mktemp "${TMPDIR:-/tmp}/argocd-tests.XXXXXX.json")"
trap 'rm -f "$bundle"' EXIT

"$PYTHON" - "$here/resource_customizations" > "$bundle" <<'PY'
import json, os, sys, yaml

def load(base, rel):
    with open(os.path.join(base, rel)) as f:
        return yaml.safe_load(f)

root, bundle = sys.argv[1], []
for group in sorted(os.listdir(root)):
    for kind in sorted(os.listdir(os.path.join(root, group))):
        d = os.path.join(root, group, kind)
        entry = {"dir": d, "name": group + "/" + kind, "health": [], "discovery": [], "actions": []}
        if os.path.exists(os.path.join(d, "health_test.yaml")):
            for t in load(d, "health_test.yaml")["tests"]:
                entry["health"].append({"inputPath": t["inputPath"],
                                        "input": load(d, t["inputPath"]),
                                        "healthStatus": t["healthStatus"]})
        a = os.path.join(d, "actions")
        if os.path.exists(os.path.join(a, "action_test.yaml")):
            spec = load(a, "action_test.yaml")
            for t in spec.get("discoveryTests", []):
                entry["discovery"].append({"inputPath": t["inputPath"],
                                           "input": load(a, t["inputPath"]),
                                           "result": t["result"]})
            for t in spec.get("actionTests", []):
                entry["actions"].append({"action": t["action"], "inputPath": t["inputPath"],
                                         "input": load(a, t["inputPath"]),
                                         "expected": load(a, t["expectedOutputPath"])})
        bundle.append(entry)
json.dump(bundle, sys.stdout, default=str)
PY

lua5.1 "$here/test.lua" "$bundle"

"""Python helpers of scripts/package-checks.sh (run in its venv: PyYAML and jsonschema).

  examples CRD FILE...    validate every AurenRuntime in FILEs against the CRD's
                          openAPIV3Schema, strictly (unknown fields are errors, as with
                          `kubectl apply --validate=strict`), and self-test that check
  chart RENDERED.yaml     assert the operator Deployment has the HA and security settings
  rbac ALL.yaml WATCHED.yaml RELEASE_NS WATCH_NS SECRET
                          the operator's RBAC in both scopes: all namespaces (a ClusterRole)
                          and one (watchNamespace: Roles only, nothing cluster-wide), Secret
                          verbs exactly get/create; and self-test those checks
  argocd-cm CM.yaml DIR   assert the generated argocd-cm entries equal the tested scripts
"""
import copy
import os
import re
import sys

import jsonschema
import yaml

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def fail(msg):
    print(f"FAIL {msg}", file=sys.stderr)
    sys.exit(1)


def docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def to_json_schema(s, root=False):
    """OpenAPI v3 structural schema -> JSON Schema (draft 4), Kubernetes semantics."""
    s = copy.deepcopy(s)
    for key in ("properties", "patternProperties"):
        if key in s:
            s[key] = {k: to_json_schema(v) for k, v in s[key].items()}
    if isinstance(s.get("items"), dict):
        s["items"] = to_json_schema(s["items"])
    if isinstance(s.get("additionalProperties"), dict):
        s["additionalProperties"] = to_json_schema(s["additionalProperties"])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in s:
            s[key] = [to_json_schema(x) for x in s[key]]
    if s.pop("x-kubernetes-int-or-string", False):
        s["type"] = ["integer", "string"]
    if s.pop("nullable", False) and "type" in s:
        s["type"] = (s["type"] if isinstance(s["type"], list) else [s["type"]]) + ["null"]
    preserve = s.pop("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in s and "additionalProperties" not in s and not preserve and not root:
        s["additionalProperties"] = False
    return s


def crd_validator(crd_path):
    (crd,) = docs(crd_path)
    (version,) = [v for v in crd["spec"]["versions"] if v.get("served", True)]
    schema = to_json_schema(version["schema"]["openAPIV3Schema"], root=True)
    # The apiserver validates metadata itself; the parts an example can get wrong:
    schema["properties"]["metadata"] = {
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string", "maxLength": 253, "pattern": DNS_SUBDOMAIN.pattern}},
    }
    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata", "spec"})
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    return jsonschema.Draft4Validator(schema), f"{group}/{version['name']}", kind


def errors_of(validator, obj):
    return [f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in validator.iter_errors(obj)]


def check_examples(crd_path, files):
    validator, api_version, kind = crd_validator(crd_path)
    sample = None
    count = 0
    for path in files:
        for d in docs(path):
            if d.get("kind") != kind:
                continue
            if d.get("apiVersion") != api_version:
                fail(f"{path}: apiVersion {d.get('apiVersion')} is not {api_version}")
            errs = errors_of(validator, d)
            if errs:
                fail(f"{path} ({d['metadata'].get('name')}):\n  " + "\n  ".join(errs))
            print(f"ok   {path}: {kind} {d['metadata']['name']}")
            sample = sample or d
            count += 1
    if count == 0:
        fail("no AurenRuntime found in the examples")
    # Self-test: the validator must refuse what the apiserver would refuse.
    broken = {
        "unknown field": lambda o: o["spec"].__setitem__("replicas", 3),
        "snake_case field": lambda o: o["spec"].__setitem__("progress_deadline_seconds", 60),
        "bad image": lambda o: o["spec"].__setitem__("image", "Not An Image"),
        "bad enum": lambda o: o["spec"].setdefault("analysis", {}).__setitem__("noDataPolicy", "skip"),
        "out of range": lambda o: o["spec"].__setitem__("progressDeadlineSeconds", 1),
        "no image": lambda o: o["spec"].pop("image"),
    }
    for name, mutate in broken.items():
        obj = copy.deepcopy(sample)
        mutate(obj)
        if not errors_of(validator, obj):
            fail(f"the schema check accepted a spec with a {name}")
    print(f"ok   the schema check refuses {len(broken)} kinds of broken spec")


def check_chart(rendered):
    objs = docs(rendered)
    (dep,) = [o for o in objs if o["kind"] == "Deployment"]
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    env = {e["name"]: e for e in c.get("env", [])}
    checks = {
        "2 replicas": dep["spec"]["replicas"] == 2,
        "POD_NAME from the downward API": env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
        "POD_NAMESPACE from the downward API": env.get("POD_NAMESPACE", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace",
        "liveness /healthz": c["livenessProbe"]["httpGet"]["path"] == "/healthz",
        "readiness /readyz": c["readinessProbe"]["httpGet"]["path"] == "/readyz",
        "probes on the metrics port 8080": c["ports"][0]["containerPort"] == 8080,
        "resources set": bool(c.get("resources", {}).get("requests")) and bool(c.get("resources", {}).get("limits")),
        "runAsNonRoot": pod["securityContext"].get("runAsNonRoot") is True and c["securityContext"].get("runAsNonRoot") is True,
        "seccomp RuntimeDefault": pod["securityContext"].get("seccompProfile", {}).get("type") == "RuntimeDefault",
        "readOnlyRootFilesystem": c["securityContext"].get("readOnlyRootFilesystem") is True,
        "no privilege escalation": c["securityContext"].get("allowPrivilegeEscalation") is False,
        "drops ALL capabilities": c["securityContext"].get("capabilities", {}).get("drop") == ["ALL"],
        "image defaults to auren/operator:<appVersion>": re.fullmatch(r"auren/operator:\d+\.\d+\.\d+.*", c["image"]) is not None,
    }
    kinds = sorted({o["kind"] for o in objs})
    for kind in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount", "Service", "PodDisruptionBudget"):
        checks[f"renders a {kind}"] = kind in kinds
    (role,) = [o for o in objs if o["kind"] == "ClusterRole"]
    rules = role["rules"]
    checks["no wildcards in the ClusterRole"] = all("*" not in r.get(k, []) for r in rules for k in ("apiGroups", "resources", "verbs"))
    checks["no Lease rights cluster-wide"] = all("leases" not in r["resources"] for r in rules)
    bad = [name for name, ok in checks.items() if not ok]
    if bad:
        fail(f"{rendered}: " + "; ".join(bad))
    print(f"ok   {len(checks)} properties of the rendered chart")


# The verbs the operator needs on Secrets, and why (operator/RBAC.md): get reads the admin-token
# and notification Secrets, create makes the generated admin token when it is missing.
SECRET_VERBS = {"get", "create"}


def secret_rules(role):
    return [r for r in role.get("rules", []) if "secrets" in r.get("resources", []) and "" in r.get("apiGroups", [])]


def rbac_problems(objs, scope, release_ns, watch_ns, secret):
    """What is wrong with the rendered RBAC objects `objs` for `scope` ("all" or "watched")."""
    problems = []
    by_kind = lambda kind: [o for o in objs if o.get("kind") == kind]
    roles = {(o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in by_kind("Role")}
    if scope == "watched":
        cluster = by_kind("ClusterRole") + by_kind("ClusterRoleBinding")
        if cluster:
            problems.append(f"watchNamespace renders cluster-wide RBAC: {[(o['kind'], o['metadata']['name']) for o in cluster]}")
        bound = [b for b in by_kind("RoleBinding") if b["metadata"].get("namespace") == watch_ns]
        granted = [roles.get((watch_ns, b["roleRef"]["name"])) for b in bound if b["roleRef"]["kind"] == "Role"]
        granted = [g for g in granted if g]
        if not granted:
            problems.append(f"no Role bound in the watched namespace {watch_ns}")
        main = granted
    else:
        main = by_kind("ClusterRole")
        if len(main) != 1 or len(by_kind("ClusterRoleBinding")) != 1:
            problems.append("expected one ClusterRole and one ClusterRoleBinding")
    for role in main:
        verbs = {v for r in secret_rules(role) for v in r["verbs"]}
        if verbs != SECRET_VERBS:
            problems.append(f"{role['kind']} {role['metadata']['name']}: secrets verbs {sorted(verbs)}, expected {sorted(SECRET_VERBS)}")
        if any(r.get("resourceNames") for r in secret_rules(role)):
            problems.append(f"{role['kind']} {role['metadata']['name']}: unexpected resourceNames on secrets")
    for (ns, name), role in roles.items():
        if role in main:
            continue
        for rule in secret_rules(role):
            if rule["verbs"] != ["get"] or rule.get("resourceNames") != [secret] or ns != release_ns:
                problems.append(f"Role {ns}/{name}: secrets rule {rule}: only get on the default notification Secret {secret}")
    for b in by_kind("RoleBinding") + by_kind("ClusterRoleBinding"):
        subjects = [(s["kind"], s.get("namespace")) for s in b.get("subjects", [])]
        if subjects != [("ServiceAccount", release_ns)]:
            problems.append(f"{b['kind']} {b['metadata']['name']}: subjects {subjects}")
    return problems


def check_rbac(all_path, watched_path, release_ns, watch_ns, secret):
    rbac_kinds = {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    renders = {scope: [o for o in docs(path) if o.get("kind") in rbac_kinds]
               for scope, path in (("all", all_path), ("watched", watched_path))}
    for scope, objs in renders.items():
        problems = rbac_problems(objs, scope, release_ns, watch_ns, secret)
        if problems:
            fail(f"RBAC ({scope} namespaces): " + "; ".join(problems))
        print(f"ok   RBAC ({scope}): {sorted((o['kind'], o['metadata'].get('namespace') or '-') for o in objs)}")
    # Self-test: each planted violation must be found.
    watched = renders["watched"]
    main_role = next(o for o in watched if o["kind"] == "Role" and o["metadata"]["namespace"] == watch_ns)

    def with_extra_cluster_binding(objs):
        binding = copy.deepcopy(next(o for o in objs if o["kind"] == "RoleBinding"))
        binding["kind"] = "ClusterRoleBinding"
        binding["metadata"].pop("namespace", None)
        return objs + [binding]

    def with_secret_verb(verb, objs):
        objs = copy.deepcopy(objs)
        role = next(o for o in objs if o == main_role)
        secret_rules(role)[0]["verbs"].append(verb)
        return objs

    def with_open_release_secret(objs):
        objs = copy.deepcopy(objs)
        for role in objs:
            for rule in secret_rules(role) if role["kind"] == "Role" and role != main_role else []:
                rule.pop("resourceNames", None)
        return objs

    planted = {
        "a ClusterRoleBinding": with_extra_cluster_binding(watched),
        "list on secrets": with_secret_verb("list", watched),
        "delete on secrets": with_secret_verb("delete", watched),
        "the notification Secret rule without its name": with_open_release_secret(watched),
    }
    for name, objs in planted.items():
        if not rbac_problems(objs, "watched", release_ns, watch_ns, secret):
            fail(f"the RBAC check accepted a chart with {name}")
    print(f"ok   the RBAC check finds {len(planted)} planted violations")


def check_argocd_cm(cm_path, base):
    def read(rel):
        with open(os.path.join(base, rel)) as f:
            return f.read()

    data = docs(cm_path)[0]["data"]
    if data["resource.customizations.health.auren.io_AurenRuntime"] != read("health.lua"):
        fail("argocd-cm health entry differs from health.lua")
    actions = yaml.safe_load(data["resource.customizations.actions.auren.io_AurenRuntime"])
    if actions["discovery.lua"] != read("actions/discovery.lua"):
        fail("argocd-cm discovery.lua differs")
    for d in actions["definitions"]:
        if d["action.lua"] != read(f"actions/{d['name']}/action.lua"):
            fail(f"argocd-cm action {d['name']} differs")
    if [d["name"] for d in actions["definitions"]] != ["promote", "abort", "retry"]:
        fail("argocd-cm: expected the actions promote, abort, retry")
    print("ok   argocd-cm entries equal the tested scripts")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "examples":
        check_examples(args[0], args[1:])
    elif cmd == "chart":
        check_chart(args[0])
    elif cmd == "rbac":
        check_rbac(*args)
    elif cmd == "argocd-cm":
        check_argocd_cm(args[0], args[1])
    else:
        fail(f"unknown command {cmd}")

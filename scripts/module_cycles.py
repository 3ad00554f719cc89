#!/usr/bin/env python3
"""Import circles between the modules of a Rust crate.

Usage: module_cycles.py <crate>/src ...   (exit 1 and print each circle when there is one)
       module_cycles.py --self-test       (proves it finds a planted circle)

A module A depends on a sibling B when a file under A names a path under B (`crate::b::...`,
`super::b::...`, in `use` lines or inline; comments do not count). Test modules
(`#[cfg(test)] mod tests`, inline or in `tests.rs`/`tests/`) and bin targets are left out.
Two modules that name each other, or any longer loop, is a circle: it means neither can be
read, tested or moved without the other.
"""

import os
import re
import sys
import tempfile


def module_of(root, path):
    parts = os.path.relpath(path, root)[: -len(".rs")].split(os.sep)
    return tuple(parts[:-1] if parts[-1] in ("mod", "lib", "main") else parts)


def references(module, text):
    text = re.split(r"#\[cfg\(test\)\]\s*mod tests", text)[0]
    text = re.sub(r"//.*", "", text)  # comments and doc links are not dependencies
    refs = {tuple(m.group(1).split("::")) for m in re.finditer(r"\bcrate::((?:\w+::)*\w+)", text)}
    for m in re.finditer(r"\b((?:super::)+)((?:\w+::)*\w+)", text):
        up = m.group(1).count("super::")
        refs.add(module[: max(len(module) - up, 0)] + tuple(m.group(2).split("::")))
    return refs


def sibling_graph(root):
    refs = {}
    for folder, _, files in os.walk(root):
        if os.path.relpath(folder, root).split(os.sep)[0] == "bin":
            continue
        for name in files:
            if name.endswith(".rs"):
                path = os.path.join(folder, name)
                module = module_of(root, path)
                if "tests" in module:  # a test module in its own file, like an inline one
                    continue
                with open(path, encoding="utf-8") as f:
                    refs.setdefault(module, set()).update(references(module, f.read()))
    modules = set(refs)
    graph = {}
    for source, targets in refs.items():
        for target in targets:
            target = next((target[:k] for k in range(len(target), 0, -1) if target[:k] in modules), None)
            if target is None:
                continue
            common = 0
            while common < min(len(source), len(target)) and source[common] == target[common]:
                common += 1
            if common in (len(source), len(target)):
                continue  # an ancestor or a descendant, not a sibling
            graph.setdefault(source[: common + 1], set()).add(target[: common + 1])
    return graph


def circles(graph):
    found, state, stack = [], {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        state[node] = "done"
        stack.pop()

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def check(root):
    found = circles(sibling_graph(root))
    for circle in found:
        print(f"{root}: import circle: " + " -> ".join("::".join(m) for m in circle))
    return found


def self_test():
    with tempfile.TemporaryDirectory() as src:
        os.makedirs(os.path.join(src, "rollout"))
        files = {
            "lib.rs": "pub mod plugin;\npub mod dashboard;\npub mod rollout;\n",
            "plugin.rs": "use crate::dashboard::serve;\n",
            "dashboard.rs": "pub fn serve() { crate::plugin::run(); }\n",
            "rollout/mod.rs": "mod decide;\nmod render;\n",
            "rollout/decide.rs": "use super::render::render;\n",
            "rollout/render.rs": "pub fn render() {}\n",
        }
        for name, text in files.items():
            with open(os.path.join(src, name), "w", encoding="utf-8") as f:
                f.write(text)
        found = circles(sibling_graph(src))
        assert found == [[("dashboard",), ("plugin",), ("dashboard",)]], found
        with open(os.path.join(src, "rollout/render.rs"), "a", encoding="utf-8") as f:
            f.write("use super::decide::Decision;\n")
        found = circles(sibling_graph(src))
        assert [("rollout", "decide"), ("rollout", "render"), ("rollout", "decide")] in found, found
    print("module_cycles self-test: planted circles found")


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        self_test()
        sys.exit(0)
    roots = sys.argv[1:]
    if not roots:
        sys.exit(__doc__)
    sys.exit(1 if sum(len(check(r)) for r in roots) else 0)

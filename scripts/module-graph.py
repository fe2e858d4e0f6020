#!/usr/bin/env python3
"""Prints the server crate's module import graph and its cycles.

A module is a file under crates/server/src (`apply/mod.rs` is `apply`,
`apply/kv.rs` is `apply::kv`). An edge A -> B means A names `crate::B...`
(in a `use` or a path). Cycles are the strongly connected components with
more than one module. Usage: scripts/module-graph.py [--edges] [--top]
(--top folds every module into its top-level one).
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(__file__), "..", "crates", "server", "src")


def module_of(path):
    rel = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return "::".join(rel) or "crate"


def code_only(text):
    """Drops `#[cfg(test)] mod tests` and comments (doc links are not imports)."""
    i = text.find("#[cfg(test)]\nmod tests")
    text = text if i < 0 else text[:i]
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))


def main():
    top = "--top" in sys.argv
    modules = {}
    for d, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".rs"):
                p = os.path.join(d, f)
                modules[module_of(p)] = code_only(open(p).read())
    names = set(modules)
    fold = (lambda m: m.split("::")[0]) if top else (lambda m: m)
    edges = {}
    path_re = re.compile(r"crate::((?:[a-z_][a-z0-9_]*::)*[a-z_][a-z0-9_]*)")
    group_re = re.compile(r"use crate::\{([^;]*)\};", re.S)
    for m, text in modules.items():
        targets = set()
        refs = path_re.findall(text)
        for g in group_re.findall(text):
            refs += [x.strip().split("::")[0] + ("::" + x.strip().split("::")[1] if "::" in x else "")
                     for x in g.split(",") if x.strip()]
        for ref in refs:
            parts = ref.split("::")
            # The longest prefix that is a module.
            for n in range(len(parts), 0, -1):
                cand = "::".join(parts[:n])
                if cand in names:
                    targets.add(cand)
                    break
        for t in targets:
            a, b = fold(m), fold(t)
            if a != b and a not in ("crate", "main") and b != "crate":
                edges.setdefault(a, set()).add(b)
    nodes = sorted({fold(m) for m in names} - {"crate", "main"})
    # Tarjan's strongly connected components.
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in nodes:
        if v not in index:
            visit(v)
    if "--edges" in sys.argv:
        for a in nodes:
            for b in sorted(edges.get(a, ())):
                print(f"{a} -> {b}")
    cycles = [c for c in sccs if len(c) > 1]
    print(f"{len(nodes)} modules, {sum(len(v) for v in edges.values())} edges, {len(cycles)} cycles")
    for c in cycles:
        print(f"cycle of {len(c)}: {' '.join(c)}")
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main())

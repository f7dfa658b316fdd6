#!/usr/bin/env bash
# Prints the top-level module graph of handler/src, read from its `crate::` paths (use lines and
# paths in code, comments left out): one "from -> to" line per dependency between top-level modules, then every
# cycle (strongly connected group of modules). `cargo modules` gives the same graph but takes
# minutes to install; this takes milliseconds. Then every transport name below `api`.
# Usage: scripts/module-graph.sh [--check] [src dir]; --check exits 1 on a cycle or a transport
# name below api (scripts/test.sh runs it so).
set -euo pipefail
check=0
if [[ "${1:-}" == "--check" ]]; then check=1; shift; fi
src=${1:-"$(dirname "$0")/../handler/src"}
python3 - "$src" "$check" <<'PY'
import pathlib, re, sys
src = pathlib.Path(sys.argv[1])
check = sys.argv[2] == "1"
edges = set()
for f in sorted(src.rglob("*.rs")):
    rel = f.relative_to(src)
    top = rel.parts[0].removesuffix(".rs")
    if top in ("main", "lib"):
        continue
    # Code only: a module named in a comment or doc link is not a dependency, and neither is a
    # unit-test module (its `super::` is the file's own module, and tests may reach anywhere).
    source = re.split(r"\n#\[cfg\(test\)\]\nmod tests", f.read_text())[0]
    lines = (re.sub(r"\s// .*$", "", l) for l in source.splitlines())
    text = "\n".join(l for l in lines if not l.lstrip().startswith("//"))
    targets = set(re.findall(r"\bcrate::([a-z_]+)", text))
    if len(rel.parts) == 1 or rel.name == "mod.rs" and len(rel.parts) == 2:
        targets |= set(re.findall(r"\bsuper::([a-z_]+)", text))
    edges |= {(top, t) for t in targets if t != top}
for a, b in sorted(edges):
    print(f"{a} -> {b}")
# Tarjan's strongly connected components: each group of 2+ modules is a cycle.
graph = {}
for a, b in edges:
    graph.setdefault(a, set()).add(b)
    graph.setdefault(b, set())
index, low, stack, on, groups, counter = {}, {}, [], set(), [], [0]
def visit(v):
    index[v] = low[v] = counter[0]; counter[0] += 1
    stack.append(v); on.add(v)
    for w in graph[v]:
        if w not in index:
            visit(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        group = []
        while True:
            w = stack.pop(); on.discard(w); group.append(w)
            if w == v:
                break
        if len(group) > 1:
            groups.append(sorted(group))
for v in sorted(graph):
    if v not in index:
        visit(v)
print("cycles:", "none" if not groups else "")
for g in groups:
    print("  " + " <-> ".join(g))
# The transport stays at the edge: nothing below `api` (the use cases, the store, the domain, the
# queue client, metrics, auth) names axum, hyper, the `http` crate or OpenAPI (utoipa).
# azure_core::http is the Azure SDK's own and is fine.
below = ("service", "store", "domain", "queue", "metrics", "auth")
# The domain is its own crate (domain/src), re-exported by the handler as `crate::domain`.
domain = src.parent.parent / "domain" / "src"
leaks = []
files = [(f, f.relative_to(src)) for f in sorted(src.rglob("*.rs"))]
files += [(f, pathlib.Path("domain") / f.relative_to(domain)) for f in sorted(domain.rglob("*.rs"))]
for f, rel in files:
    if rel.parts[0].removesuffix(".rs") not in below:
        continue
    for n, line in enumerate(f.read_text().splitlines(), 1):
        code = re.sub(r"//.*$", "", line)
        if re.search(r"\b(axum|hyper|utoipa)::|(?<![:\w])http::|\buse (axum|hyper|http|utoipa)\b", code):
            leaks.append(f"  {rel}:{n}: {line.strip()}")
print("transport below api:", "none" if not leaks else "")
print("\n".join(leaks))
if check and (groups or leaks):
    sys.exit("module-graph: a cycle or a transport name below api (above)")
PY

#!/usr/bin/env python3
"""The operations contract (docs/operations-contract.md) must list exactly the environment
variables the service reads, and every variable the manifests set.

What the service reads is taken from its source (handler/src, test modules left out):
  * a string literal passed to an environment lookup: `.var("X")`, `env("X")`,
    `std::env::var("X")` / `var_os("X")`, or a helper called as `f(env, "X")`;
  * a prefix read with `with_prefix(CONST)`: CONST's string value, documented as `CONST<setting>`;
  * variables read inside a library, recognised by the call that makes the library read them
    (LIBRARY_READS below).
The contract lists variables in the first column of the table under "## Configuration" (service
variables), "## Test-only variables" (read only by builds with a test feature, never set in a
deployment) and "## Read by the Functions host" (host variables, set only in functions-host mode).

Findings:
  * read by the code, in neither the Configuration nor the Test-only table (an operator cannot
    know it exists);
  * in either of those tables, read nowhere (a stale promise);
  * set in a rendered manifest (--manifests), in neither table.

Usage: operations_contract.py --src handler/src --doc docs/operations-contract.md [--manifests FILE ...]
Exit status: 0 = contract and code agree, 1 = findings, 2 = usage error.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

NAME = r'"([A-Za-z_][A-Za-z0-9_]*)"'
LOOKUPS = [
    re.compile(r"\.var\(\s*" + NAME),
    re.compile(r"\b(?:env::)?var(?:_os)?\(\s*" + NAME),
    re.compile(r"\benv\(\s*" + NAME),
    re.compile(r"\(\s*&?env\s*,\s*" + NAME),
]
PREFIX_READ = re.compile(r"with_prefix\(\s*(?:[a-z_]+::)*([A-Z][A-Z0-9_]*)\s*\)")
# Variables a library reads, and the code that makes it read them.
LIBRARY_READS = {
    "RUST_LOG": "EnvFilter::try_from_default_env",  # tracing-subscriber
    "AZURE_TENANT_ID": "WorkloadIdentityCredential::new",  # azure_identity (workload identity)
    "AZURE_FEDERATED_TOKEN_FILE": "WorkloadIdentityCredential::new",  # azure_identity (workload identity)
}


def strip_tests(code: str) -> str:
    """Drops `#[cfg(test)] mod ... { ... }` blocks (balanced braces)."""
    out, index = [], 0
    for match in re.finditer(r"#\[cfg\(test\)\]\s*(?:pub\s+)?mod\s+\w+\s*\{", code):
        if match.start() < index:
            continue
        out.append(code[index:match.start()])
        depth, pos = 1, match.end()
        while depth and pos < len(code):
            depth += {"{": 1, "}": -1}.get(code[pos], 0)
            pos += 1
        index = pos
    out.append(code[index:])
    return "".join(out)


def read_by_code(src: Path) -> dict[str, str]:
    """Variable (or `PREFIX<setting>`) -> first place it is read."""
    files = {path: strip_tests(path.read_text(encoding="utf-8")) for path in sorted(src.rglob("*.rs"))}
    constants = {}
    for code in files.values():
        constants.update(re.findall(r"const\s+([A-Z][A-Z0-9_]*)\s*:\s*&str\s*=\s*\"([^\"]+)\"", code))
    found: dict[str, str] = {}
    for path, code in files.items():
        for pattern in LOOKUPS:
            for match in pattern.finditer(code):
                line = code.count("\n", 0, match.start()) + 1
                found.setdefault(match.group(1), f"{path}:{line}")
        for match in PREFIX_READ.finditer(code):
            prefix = constants.get(match.group(1))
            if prefix:
                found.setdefault(f"{prefix}<setting>", f"{path} ({match.group(1)})")
        for variable, marker in LIBRARY_READS.items():
            if marker in code:
                found.setdefault(variable, f"{path} ({marker})")
    return found


def documented(doc: Path, heading: str) -> set[str]:
    """Backticked names in the first column of the table under `## heading`."""
    text = doc.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(heading)}\s*$(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    if not match:
        return set()
    names = set()
    for line in match.group(1).splitlines():
        if line.startswith("|") and not line.startswith("|---") and not line.startswith("| variable"):
            first = line.split("|")[1]
            names.update(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*(?:<setting>)?)`", first))
    return names


def set_by_manifests(paths: list[Path]) -> dict[str, str]:
    found = {}
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not doc or doc.get("kind") != "Deployment":
                continue
            for container in doc["spec"]["template"]["spec"]["containers"]:
                for env in container.get("env", []):
                    found.setdefault(env["name"], f"{path.name} container {container['name']}")
    return found


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, required=True)
    parser.add_argument("--doc", type=Path, required=True)
    parser.add_argument("--manifests", type=Path, nargs="*", default=[])
    args = parser.parse_args(argv)

    code = read_by_code(args.src)
    service = documented(args.doc, "Configuration (environment only)")
    test_only = documented(args.doc, "Test-only variables")
    host = documented(args.doc, "Read by the Functions host")
    problems = []
    if not code:
        problems.append(f"no environment lookup found under {args.src} (has the lookup code changed shape?)")
    if not service:
        problems.append(f"{args.doc}: no variables under '## Configuration (environment only)'")
    for name, where in sorted(code.items()):
        if name not in service | test_only:
            problems.append(f"{name} is read ({where}) but not documented in {args.doc} (Configuration)")
    for name in sorted((service | test_only) - set(code)):
        problems.append(f"{name} is documented in {args.doc} but the code never reads it")
    for name, where in sorted(set_by_manifests(args.manifests).items()):
        if name in test_only:
            problems.append(f"{name} is set in {where} but is a test-only variable")
        elif name not in service | host:
            problems.append(f"{name} is set in {where} but documented nowhere in {args.doc}")
    for problem in problems:
        print(f"operations_contract: {problem}", file=sys.stderr)
    if not problems:
        print(f"operations_contract: {len(code)} variables read by the code, all documented; "
              f"{len(host)} Functions-host variables; manifests agree")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

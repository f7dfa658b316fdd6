#!/usr/bin/env python3
"""Validate azure-pipelines.yml against check-jsonschema's vendored Azure Pipelines schema.

Azure DevOps reads every YAML scalar as a string (`true`, `1.11`, `0` are all text), and the
schema is written for that, so the file is loaded with PyYAML's BaseLoader (all scalars stay
strings), written out as JSON and handed to check-jsonschema with
`--builtin-schema vendor.azure-pipelines --regex-variant nonunicode`.

Usage: azure_pipelines_check.py [FILE ...]   (default: azure-pipelines.yml)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml


def main(argv: list[str]) -> int:
    files = [Path(a) for a in argv] or [Path("azure-pipelines.yml")]
    check = Path(sys.executable).with_name("check-jsonschema")
    status = 0
    with tempfile.TemporaryDirectory() as tmp:
        for source in files:
            try:
                document = yaml.load(source.read_text(encoding="utf-8"), Loader=yaml.BaseLoader)
            except (OSError, yaml.YAMLError) as exc:
                print(f"ERROR {source}: cannot read YAML: {exc}")
                status = 1
                continue
            as_json = Path(tmp) / (source.name + ".json")
            as_json.write_text(json.dumps(document), encoding="utf-8")
            result = subprocess.run(
                [str(check), "--builtin-schema", "vendor.azure-pipelines", "--regex-variant", "nonunicode",
                 "--output-format", "text", str(as_json)],
                capture_output=True, text=True, check=False,
            )
            output = (result.stdout + result.stderr).replace(str(as_json), str(source)).strip()
            # On failure check-jsonschema prints the whole document per error; keep it readable.
            for line in output.splitlines():
                print(line if len(line) <= 400 else line[:400] + " ...")
            status = status or result.returncode
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

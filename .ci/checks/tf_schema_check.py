#!/usr/bin/env python3
"""Offline stand-in for `terraform validate`: check every resource, data and ephemeral block
of a Terraform configuration against provider schemas (`terraform providers schema -json`).

Per block, recursively through nested blocks and `dynamic` blocks, it reports:
  * an unknown argument or nested block (with a "did you mean" for misspellings),
  * a missing required argument, or fewer nested blocks than the schema's min_items,
  * more static nested blocks than max_items,
  * a deprecated argument or nested block,
  * a read-only (computed-only) attribute being set,
  * an argument written as a block or a block written as an argument,
  * a block type that no loaded schema knows.

Parsing uses python-hcl2 (>= 8, blocks marked with `__is_block__`). Expressions are not
evaluated: values are not type-checked; that part stays with `terraform validate` in the pipeline.

Usage:
  tf_schema_check.py [--schema-dir DIR] [--schema FILE ...] PATH [PATH ...]
PATH is a .tf file or a directory (searched recursively, `.terraform/` skipped).
Exit status: 0 = no finding, 1 = findings, 2 = usage or parse error.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

try:
    import hcl2
    from hcl2.utils import SerializationOptions
except ImportError as exc:  # pragma: no cover - environment problem, explained to the user
    sys.exit(f"tf_schema_check: python-hcl2 >= 8 is required ({exc}); install .ci/checks/requirements-infra.txt")

# Providers without a vendored schema. Hand-written from the providers' documentation (only the
# types this repository uses), so the check stays total: a type nobody describes is an error.
SUPPLEMENTARY_SCHEMAS: dict[str, dict] = {
    "format": "tf_schema_check supplement",
    # hashicorp/random >= 3.7: ephemeral "random_password".
    "ephemeral_resource_schemas": {
        "random_password": {
            "block": {
                "attributes": {
                    "length": {"type": "number", "required": True},
                    "lower": {"type": "bool", "optional": True, "computed": True},
                    "min_lower": {"type": "number", "optional": True, "computed": True},
                    "min_numeric": {"type": "number", "optional": True, "computed": True},
                    "min_special": {"type": "number", "optional": True, "computed": True},
                    "min_upper": {"type": "number", "optional": True, "computed": True},
                    "numeric": {"type": "bool", "optional": True, "computed": True},
                    "override_special": {"type": "string", "optional": True},
                    "special": {"type": "bool", "optional": True, "computed": True},
                    "upper": {"type": "bool", "optional": True, "computed": True},
                    "bcrypt_hash": {"type": "string", "computed": True, "sensitive": True},
                    "result": {"type": "string", "computed": True, "sensitive": True},
                }
            }
        },
        # hashicorp/azurerm >= 4.x: ephemeral "azurerm_key_vault_secret" (not in the vendored
        # azurerm schema, which has no ephemeral resources); from the provider's documentation.
        "azurerm_key_vault_secret": {
            "block": {
                "attributes": {
                    "name": {"type": "string", "required": True},
                    "key_vault_id": {"type": "string", "required": True},
                    "version": {"type": "string", "optional": True},
                    "expiration_date": {"type": "string", "computed": True},
                    "not_before_date": {"type": "string", "computed": True},
                    "value": {"type": "string", "computed": True, "sensitive": True},
                }
            }
        },
    },
    # hashicorp/time >= 0.9: resource "time_sleep".
    "resource_schemas": {
        # hashicorp/azurerm >= 3.x: resource "azurerm_storage_container_immutability_policy" (not
        # among the vendored schema's types); from the provider's documentation.
        "azurerm_storage_container_immutability_policy": {
            "block": {
                "attributes": {
                    "storage_container_resource_manager_id": {"type": "string", "required": True},
                    "immutability_period_in_days": {"type": "number", "required": True},
                    "locked": {"type": "bool", "optional": True},
                    "protected_append_writes_all_enabled": {"type": "bool", "optional": True},
                    "protected_append_writes_enabled": {"type": "bool", "optional": True},
                    "id": {"type": "string", "optional": True, "computed": True},
                }
            }
        },
        "time_sleep": {
            "block": {
                "attributes": {
                    "create_duration": {"type": "string", "optional": True},
                    "destroy_duration": {"type": "string", "optional": True},
                    "triggers": {"type": ["map", "string"], "optional": True},
                    "id": {"type": "string", "computed": True},
                }
            }
        }
    },
    "data_source_schemas": {},
}

# Meta-arguments Terraform accepts on every block of a kind (not part of provider schemas).
META_ATTRIBUTES = {
    "resource": {"count", "for_each", "depends_on", "provider"},
    "data": {"count", "for_each", "depends_on", "provider"},
    "ephemeral": {"count", "for_each", "depends_on", "provider"},
}
META_BLOCKS = {
    "resource": {"lifecycle", "provisioner", "connection"},
    "data": {"lifecycle"},
    "ephemeral": {"lifecycle"},
}
LIFECYCLE_ATTRIBUTES = {"create_before_destroy", "prevent_destroy", "ignore_changes", "replace_triggered_by"}
LIFECYCLE_BLOCKS = {"precondition", "postcondition"}
SCHEMA_KEY = {"resource": "resource_schemas", "data": "data_source_schemas", "ephemeral": "ephemeral_resource_schemas"}
DYNAMIC_KEYS = {"for_each", "iterator", "labels", "content"}


@dataclass
class Finding:
    file: Path
    line: int
    address: str
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.address}.{self.path}" if self.path else self.address
        return f"{self.file}:{self.line}: {where}: {self.message}"


@dataclass
class Schemas:
    by_kind: dict[str, dict[str, dict]] = field(default_factory=lambda: {k: {} for k in SCHEMA_KEY})
    sources: list[str] = field(default_factory=list)

    def add(self, document: dict, source: str, override: bool = True) -> None:
        # Accept both the vendored layout and the full `terraform providers schema -json` output.
        if "provider_schemas" in document:
            for provider in document["provider_schemas"].values():
                self.add(provider, source, override)
            return
        for kind, key in SCHEMA_KEY.items():
            for type_name, schema in (document.get(key) or {}).items():
                if override or type_name not in self.by_kind[kind]:
                    self.by_kind[kind][type_name] = schema
        self.sources.append(source)

    def lookup(self, kind: str, type_name: str) -> dict | None:
        return self.by_kind[kind].get(type_name)


def unquote(label: str) -> str:
    return label[1:-1] if len(label) >= 2 and label[0] == label[-1] == '"' else label


def is_block_list(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) and v.get("__is_block__") for v in value)


def is_dynamic_list(value: object) -> bool:
    """`dynamic "label" { ... }` blocks parse as [{'"label"': {..., "__is_block__": True}}, ...]."""
    return isinstance(value, list) and bool(value) and all(
        isinstance(item, dict) and all(k.startswith("__") or (isinstance(v, dict) and v.get("__is_block__")) for k, v in item.items())
        for item in value
    )


def suggest(name: str, candidates: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.75)
    return f' (did you mean "{close[0]}"?)' if close else ""


class Checker:
    def __init__(self, schemas: Schemas) -> None:
        self.schemas = schemas
        self.findings: list[Finding] = []
        self.blocks_checked = 0

    def check_file(self, path: Path) -> None:
        text = path.read_text(encoding="utf-8")
        try:
            document = hcl2.loads(text, serialization_options=SerializationOptions(with_comments=False))
        except Exception as exc:  # python-hcl2 raises lark errors of several kinds
            self.findings.append(Finding(path, 1, "(file)", "", f"cannot parse HCL: {exc}".splitlines()[0]))
            return
        for kind in SCHEMA_KEY:
            for group in document.get(kind, []):
                for type_label, named in group.items():
                    for name_label, body in named.items():
                        type_name, name = unquote(type_label), unquote(name_label)
                        line = self.line_of(text, kind, type_name, name)
                        self.check_top_block(path, line, kind, type_name, name, body)

    @staticmethod
    def line_of(text: str, kind: str, type_name: str, name: str) -> int:
        pattern = re.compile(rf'^[ \t]*{kind}[ \t]+"{re.escape(type_name)}"\s+"{re.escape(name)}"', re.MULTILINE)
        match = pattern.search(text)
        return text.count("\n", 0, match.start()) + 1 if match else 1

    def check_top_block(self, path: Path, line: int, kind: str, type_name: str, name: str, body: dict) -> None:
        prefix = "data." if kind == "data" else ("ephemeral." if kind == "ephemeral" else "")
        address = f"{prefix}{type_name}.{name}"
        self.blocks_checked += 1

        def report(where: str, message: str) -> None:
            self.findings.append(Finding(path, line, address, where, message))

        schema = self.schemas.lookup(kind, type_name)
        if schema is None:
            known = set(self.schemas.by_kind[kind])
            report("", f"{kind} type \"{type_name}\" is not in any loaded provider schema{suggest(type_name, known)}")
            return

        for meta in META_BLOCKS[kind] & set(body):
            if meta == "lifecycle":
                for block in body[meta] if is_block_list(body[meta]) else []:
                    for key in block:
                        if key.startswith("__"):
                            continue
                        if key not in LIFECYCLE_ATTRIBUTES | LIFECYCLE_BLOCKS:
                            report("lifecycle", f'unknown lifecycle argument "{key}"')
        content = {k: v for k, v in body.items() if k not in META_ATTRIBUTES[kind] and k not in META_BLOCKS[kind]}
        self.check_body(schema["block"], content, "", report)

    def check_body(self, schema: dict, body: dict, where: str, report) -> None:
        attributes: dict = schema.get("attributes") or {}
        block_types: dict = schema.get("block_types") or {}
        known = set(attributes) | set(block_types)
        block_counts: dict[str, int] = {}
        dynamic_names: set[str] = set()

        def at(name: str) -> str:
            return f"{where}.{name}" if where else name

        for key, value in body.items():
            if key.startswith("__"):
                continue
            if key == "dynamic" and "dynamic" not in known and is_dynamic_list(value):
                for dynamic in value:
                    for label, dyn_body in dynamic.items():
                        if label.startswith("__"):
                            continue
                        name = unquote(label)
                        dynamic_names.add(name)
                        if name not in block_types:
                            if name in attributes:
                                report(at(f"dynamic.{name}"), f'"{name}" is an argument, not a block; "dynamic" only generates nested blocks')
                            else:
                                report(at(f"dynamic.{name}"), f'unknown nested block "{name}"{suggest(name, set(block_types))}')
                            continue
                        self.check_dynamic(block_types[name], dyn_body, at(f"dynamic.{name}"), report)
                continue

            if key in block_types:
                if not is_block_list(value):
                    report(at(key), f'"{key}" is a nested block: write `{key} {{ ... }}`, not `{key} = ...`')
                    continue
                spec = block_types[key]
                if spec["block"].get("deprecated"):
                    report(at(key), f'nested block "{key}" is deprecated')
                block_counts[key] = block_counts.get(key, 0) + len(value)
                for index, nested in enumerate(value):
                    label = f"{key}[{index}]" if len(value) > 1 else key
                    self.check_body(spec["block"], nested, at(label), report)
                continue

            if key in attributes:
                if is_block_list(value):
                    report(at(key), f'"{key}" is an argument: write `{key} = ...`, not a block')
                    continue
                spec = attributes[key]
                if spec.get("deprecated"):
                    report(at(key), f'argument "{key}" is deprecated')
                if spec.get("computed") and not spec.get("optional") and not spec.get("required"):
                    report(at(key), f'"{key}" is read-only (computed by the provider) and cannot be set')
                continue

            kind_word = "nested block" if is_block_list(value) else "argument"
            report(at(key), f'unknown {kind_word} "{key}"{suggest(key, known)}')

        for name, spec in sorted(attributes.items()):
            if spec.get("required") and name not in body:
                report(at(name), f'required argument "{name}" is missing')
        for name, spec in sorted(block_types.items()):
            count = block_counts.get(name, 0)
            minimum, maximum = spec.get("min_items") or 0, spec.get("max_items") or 0
            if count < minimum and name not in dynamic_names:
                report(at(name), f'at least {minimum} "{name}" block(s) required, found {count}')
            if maximum and count > maximum:
                report(at(name), f'at most {maximum} "{name}" block(s) allowed, found {count}')

    def check_dynamic(self, spec: dict, body_list: object, where: str, report) -> None:
        bodies = body_list if isinstance(body_list, list) else [body_list]
        for body in bodies:
            if not isinstance(body, dict):
                report(where, "malformed dynamic block")
                continue
            if spec["block"].get("deprecated"):
                report(where, "nested block is deprecated")
            for key in body:
                if not key.startswith("__") and key not in DYNAMIC_KEYS:
                    report(f"{where}.{key}", f'unknown argument "{key}" in a dynamic block (expected for_each, iterator, labels, content)')
            if "for_each" not in body:
                report(where, 'dynamic block needs "for_each"')
            contents = body.get("content")
            if not is_block_list(contents):
                report(where, 'dynamic block needs one "content" block')
                continue
            for content in contents:
                self.check_body(spec["block"], content, f"{where}.content", report)


def tf_files(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(p for p in sorted(path.rglob("*.tf")) if ".terraform" not in p.parts)
        elif path.suffix == ".tf" and path.exists():
            found.append(path)
        else:
            sys.exit(f"tf_schema_check: {path}: not a .tf file or directory")
    return found


def main(argv: list[str]) -> int:
    repo_root = Path(__file__).resolve().parents[2]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, help=".tf files or directories")
    parser.add_argument("--schema-dir", type=Path, default=repo_root.parent / "shared" / "schemas" / "terraform",
                        help="directory of provider schema JSON files (default: ../shared/schemas/terraform)")
    parser.add_argument("--schema", type=Path, action="append", default=[], help="extra schema JSON file (repeatable)")
    parser.add_argument("--quiet", action="store_true", help="print findings only")
    args = parser.parse_args(argv)

    schemas = Schemas()
    files = sorted(args.schema_dir.glob("*.json")) if args.schema_dir.is_dir() else []
    files += args.schema
    if not files:
        print(f"tf_schema_check: no provider schemas found in {args.schema_dir}", file=sys.stderr)
        return 2
    for schema_file in files:
        schemas.add(json.loads(schema_file.read_text(encoding="utf-8")), str(schema_file))
    # The supplement only fills gaps: a real provider schema for the same type wins.
    schemas.add(SUPPLEMENTARY_SCHEMAS, "built-in supplement (random_password, time_sleep, azurerm_storage_container_immutability_policy, ephemeral azurerm_key_vault_secret)", override=False)

    checker = Checker(schemas)
    targets = tf_files(args.paths)
    if not targets:
        print("tf_schema_check: no .tf files found", file=sys.stderr)
        return 2
    for target in targets:
        checker.check_file(target)

    for finding in checker.findings:
        print(f"ERROR {finding}")
    if not args.quiet:
        print(f"tf_schema_check: {checker.blocks_checked} blocks in {len(targets)} files against "
              f"{len(schemas.sources)} schemas: {len(checker.findings)} finding(s)")
    return 1 if checker.findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

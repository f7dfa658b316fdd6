#!/usr/bin/env python3
"""Validate rendered Kubernetes manifests offline: custom resources against CRD JSON schemas.

Every document in the input files is sorted into one of three groups:
  * a built-in API group (apps/v1, policy/v1, ...): written to --core-out, for kubernetes-validate;
  * a custom resource with a schema at <schemas>/<group>/<kind>_<version>.json (the kubeconform
    layout of shared/schemas/kubernetes; --schemas may be given more than once, e.g. for the
    project's hand-written .ci/checks/schemas): validated here with jsonschema, plus a minimal
    ObjectMeta check (the CRD schemas leave metadata open);
  * anything else: an error ("unknown kind"), so a typo in apiVersion or kind cannot slip through.

With --settings FILE (KEY=VALUE lines, the kustomize settings.env), it also checks that the
rendering used every setting: no field still holds a placeholder (a KEY name, REGISTRY/, :TAG) and
every value appears somewhere in the output.

Exit status: 0 when everything is valid, 1 otherwise (each problem printed on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import yaml

# API groups served by kube-apiserver itself; kubernetes-validate knows their schemas.
BUILTIN_GROUPS = {
    "",  # core: v1
    "apps",
    "batch",
    "policy",
    "autoscaling",
    "networking.k8s.io",
    "rbac.authorization.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "certificates.k8s.io",
    "node.k8s.io",
}

OBJECT_META_SCHEMA = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253},
        "namespace": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def documents(paths: list[Path]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yields (where, document) for every non-empty YAML document."""
    for path in paths:
        with path.open(encoding="utf-8") as stream:
            for index, doc in enumerate(yaml.safe_load_all(stream)):
                if doc is not None:
                    yield f"{path}#{index}", doc


def describe(doc: dict[str, Any]) -> str:
    name = (doc.get("metadata") or {}).get("name", "?")
    return f"{doc.get('apiVersion')}/{doc.get('kind')} {name}"


def schema_errors(schema: dict[str, Any], doc: Any) -> list[str]:
    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
        for error in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    ]


def scalars(node: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """Yields (field name, value) for every string in a document."""
    if isinstance(node, dict):
        for name, value in node.items():
            yield from scalars(value, str(name))
    elif isinstance(node, list):
        for value in node:
            yield from scalars(value, key)
    elif isinstance(node, str):
        yield key, node


def read_settings(path: Path) -> dict[str, str]:
    settings = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    return settings


def settings_problems(settings: dict[str, str], docs: list[dict[str, Any]]) -> list[str]:
    fields = [field for doc in docs for field in scalars(doc)]
    problems = []
    for key, text in fields:
        # An env var may be named like a setting (name: COSMOS_ENDPOINT); its value may not.
        if key != "name" and (text in settings or text.startswith("REGISTRY/") or text.endswith(":TAG")):
            problems.append(f"{key}: placeholder {text!r} was not replaced from settings.env")
    blob = "\n".join(text for _, text in fields)
    for key, value in settings.items():
        if value not in blob:
            problems.append(f"setting {key}={value} does not appear in the rendered manifests")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--schemas", type=Path, required=True, action="append",
                        help="folder with <group>/<kind>_<version>.json (repeatable; the first that has the kind wins)")
    parser.add_argument("--core-out", type=Path, required=True, help="where to write the built-in kinds")
    parser.add_argument("--settings", type=Path, help="settings.env whose values the rendering must use")
    parser.add_argument("files", type=Path, nargs="+")
    args = parser.parse_args()

    problems: list[str] = []
    core: list[dict[str, Any]] = []
    rendered: list[dict[str, Any]] = []
    for where, doc in documents(args.files):
        if not isinstance(doc, dict) or not isinstance(doc.get("apiVersion"), str) or not doc.get("kind"):
            problems.append(f"{where}: not a Kubernetes object (apiVersion and kind required)")
            continue
        rendered.append(doc)
        group, _, version = doc["apiVersion"].rpartition("/")
        if group in BUILTIN_GROUPS:
            core.append(doc)
            continue
        candidates = [folder / group / f"{str(doc['kind']).lower()}_{version}.json" for folder in args.schemas]
        schema_file = next((c for c in candidates if c.is_file()), None)
        if schema_file is None:
            problems.append(f"{where}: {describe(doc)}: unknown kind (no schema {' or '.join(map(str, candidates))})")
            continue
        schema = json.loads(schema_file.read_text(encoding="utf-8"))
        errors = schema_errors(schema, doc) + [f"metadata/{e}" for e in schema_errors(OBJECT_META_SCHEMA, doc.get("metadata"))]
        problems += [f"{where}: {describe(doc)}: {error}" for error in errors]
        if not errors:
            print(f"valid: {describe(doc)} ({schema_file.name})")

    if args.settings:
        problems += settings_problems(read_settings(args.settings), rendered)

    args.core_out.write_text(yaml.safe_dump_all(core, sort_keys=False), encoding="utf-8")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Turns CustomResourceDefinition YAML files into JSON Schemas in the kubeconform layout that
k8s_crd_validate.py reads: <out>/<group>/<kind>_<version>.json, apiVersion and kind pinned, and
additionalProperties: false on every object that does not preserve unknown fields.

Used by the pipeline, where ../shared/schemas is absent but the network is not: it downloads the
CRDs at the pinned revisions (see ../shared/schemas/README.md) and converts them with this.
Usage: crd_to_jsonschema.py OUT_DIR CRD.yaml [CRD.yaml ...]
"""
import json
import sys
from pathlib import Path

import yaml


def close_objects(schema: dict) -> dict:
    """additionalProperties: false wherever the CRD lists properties and keeps no unknown fields."""
    if not isinstance(schema, dict):
        return schema
    for key in ("properties", "patternProperties"):
        for child in schema.get(key, {}).values():
            close_objects(child)
    for key in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(key), dict):
            close_objects(schema[key])
    for key in ("allOf", "anyOf", "oneOf"):
        for child in schema.get(key, []):
            close_objects(child)
    if (
        schema.get("type") == "object"
        and "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        schema["additionalProperties"] = False
    return schema


def main() -> int:
    out = Path(sys.argv[1])
    written = 0
    for path in sys.argv[2:]:
        for crd in yaml.safe_load_all(Path(path).read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = close_objects(json.loads(json.dumps(version["schema"]["openAPIV3Schema"])))
                props = schema.setdefault("properties", {})
                props["apiVersion"] = {"type": "string", "enum": [f"{group}/{version['name']}"]}
                props["kind"] = {"type": "string", "enum": [kind]}
                target = out / group / f"{kind.lower()}_{version['name']}.json"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(json.dumps(schema, indent=1))
                written += 1
    print(f"crd_to_jsonschema: {written} schemas written to {out}")
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())

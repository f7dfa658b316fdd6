#!/usr/bin/env python3
"""Offline checks that tie the monitoring and routing manifests to the code.

Subcommands (each exits 0 when fine, 1 with the findings on stderr):

  rules PROMETHEUSRULE OUT
      write the PrometheusRule's spec (its rule groups) as a plain Prometheus rules file, for
      `promtool check rules` and `promtool test rules`.
  dashboard-rules DASHBOARD OUT
      write every query of the Grafana dashboard as a recording rule, so `promtool check rules`
      parses each one (Grafana's $__rate_interval becomes 5m).
  metrics METRICS_RS FILE...
      every `mediflow_*` series named in FILEs (rules, dashboard, ScaledObject) must be one the
      service exports: a name registered in handler/src/metrics.rs with the exposition suffix of
      its type (counter: _total; histogram: _bucket/_sum/_count; gauge: none). Other series
      must be in EXTERNAL_METRICS (what the cluster's exporters provide; see the operations
      contract).
  routes DEFINITIONS_DIR RENDERED_YAML
      the HTTP functions that are public (every HTTP function but the probes) must be exactly the
      routes the Ingress exposes and the routes the KEDA prometheus trigger counts. Invocation
      envelopes (/<name> of a function the Functions host invokes instead of forwarding) must not
      be counted: the request an envelope carries is observed again under its own route.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

# Series from outside the service that the dashboard and alerts rely on.
EXTERNAL_METRICS = {
    "keda_scaler_metrics_value",  # KEDA operator (kube-system), the azure-queue scaler's queue length
    "kube_pod_info",  # kube-state-metrics
    "kube_node_labels",  # kube-state-metrics, with metricLabelsAllowlist nodes=[kubernetes.io/arch]
    "kube_pod_status_ready",  # kube-state-metrics
}
# Probes: reachable by the kubelet on the pod, never through the Ingress, never scaled on.
PROBE_FUNCTIONS = {"health", "ready"}
SUFFIXES = {"Counter": ["_total"], "Histogram": ["_bucket", "_sum", "_count"], "Gauge": [""]}


def fail(problems: list[str]) -> int:
    for problem in problems:
        print(f"monitoring_check: {problem}", file=sys.stderr)
    return 1 if problems else 0


def cmd_rules(source: Path, out: Path) -> int:
    doc = yaml.safe_load(source.read_text(encoding="utf-8"))
    groups = (doc.get("spec") or {}).get("groups")
    if not groups:
        return fail([f"{source}: no spec.groups"])
    out.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False), encoding="utf-8")
    return 0


def dashboard_queries(path: Path) -> list[tuple[str, str]]:
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    found = []
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets", []):
            found.append((f"panel {panel.get('id')} {panel.get('title')!r} {target.get('refId')}", target.get("expr", "")))
    return found


def cmd_dashboard_rules(source: Path, out: Path) -> int:
    queries = dashboard_queries(source)
    problems = [f"{where}: empty query" for where, expr in queries if not expr.strip()]
    if not queries:
        problems.append(f"{source}: no panel queries")
    rules = [{"record": f"dashboard:query_{i}", "expr": expr.replace("$__rate_interval", "5m")}
             for i, (_, expr) in enumerate(queries)]
    out.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, sort_keys=False), encoding="utf-8")
    return fail(problems)


def exported_series(metrics_rs: Path) -> set[str]:
    code = metrics_rs.read_text(encoding="utf-8")
    prefix = re.search(r'Registry::with_prefix\("([a-z_]+)"\)', code)
    field_types = dict(re.findall(r"pub\s+([a-z_]+)\s*:\s*(?:Family<\s*\w+\s*,\s*)?(Counter|Histogram|Gauge)\b", code))
    series = set()
    for name, field in re.findall(r'register\(\s*"([a-z_]+)"\s*,\s*"[^"]*"\s*,\s*([a-z_]+)\.clone\(\)', code):
        full = f"{prefix.group(1)}_{name}" if prefix else name
        kind = field_types.get(field)
        for suffix in SUFFIXES.get(kind, [""]):
            series.add(full + suffix)
    return series


def used_series(text: str) -> set[str]:
    # A metric name is followed by a selector, a range or the end of the expression.
    return set(re.findall(r"\b([a-z_][a-z0-9_]*)\s*(?=\{|\[|\)|$)", text, re.MULTILINE)) - PROMQL_WORDS


PROMQL_WORDS = {"sum", "max", "min", "avg", "count", "rate", "increase", "irate", "histogram_quantile", "by", "without",
                "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "vector", "le", "route", "method",
                "status", "operation", "outcome", "namespace", "node", "label_kubernetes_io_arch", "abs", "clamp_min",
                "scalar", "time", "humanize", "offset", "bool", "reason"}


def cmd_metrics(metrics_rs: Path, files: list[Path]) -> int:
    exported = exported_series(metrics_rs)
    if not exported:
        return fail([f"{metrics_rs}: no registered metric found (has the registration code changed shape?)"])
    problems = []
    for path in files:
        if path.suffix == ".json":
            texts = [expr for _, expr in dashboard_queries(path)]
        else:
            texts = []
            for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
                if not doc:
                    continue
                for group in (doc.get("spec") or {}).get("groups", []) if doc.get("kind") == "PrometheusRule" else []:
                    texts += [str(rule["expr"]) for rule in group.get("rules", [])]
                for trigger in (doc.get("spec") or {}).get("triggers", []) if doc.get("kind") == "ScaledObject" else []:
                    if "query" in trigger.get("metadata", {}):
                        texts.append(trigger["metadata"]["query"])
        if not texts:
            problems.append(f"{path}: no query found")
        for text in texts:
            for name in sorted(used_series(text)):
                if name.startswith("mediflow_") and name not in exported:
                    problems.append(f"{path}: {name} is not exported by the service ({metrics_rs} exports {sorted(exported)})")
                elif not name.startswith("mediflow_") and name not in EXTERNAL_METRICS:
                    problems.append(f"{path}: {name} is neither the service's nor a known external metric")
    print(f"monitoring_check: metric names ok ({len(exported)} exported series known)")
    return fail(problems)


def public_routes(definitions: Path) -> tuple[set[str], set[str]]:
    """(HTTP routes of the public functions, invocation routes of the ones not forwarded)."""
    routes, invoked = set(), set()
    for function_json in sorted(definitions.glob("*/function.json")):
        name = function_json.parent.name
        bindings = json.loads(function_json.read_text(encoding="utf-8"))["bindings"]
        triggers = [b for b in bindings if b.get("type") == "httpTrigger" and b.get("direction") == "in"]
        if not triggers or name in PROBE_FUNCTIONS:
            continue
        routes.add("/" + triggers[0]["route"].strip("/"))
        forwarded = len(bindings) == 2 and any(b.get("type") == "http" and b.get("direction") == "out" for b in bindings)
        if not forwarded:
            invoked.add(f"/{name}")
    return routes, invoked


def cmd_routes(definitions: Path, rendered: Path) -> int:
    routes, invoked = public_routes(definitions)
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(rendered.read_text(encoding="utf-8")) if d}
    problems = []
    ingress = docs.get(("Ingress", "mediflow"))
    if ingress is None:
        return fail([f"{rendered}: no Ingress mediflow"])
    paths = [(p["path"], p["pathType"]) for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    for route in sorted(routes):
        if not any(route == path or (kind == "Prefix" and route.startswith(path.rstrip("/") + "/")) for path, kind in paths):
            problems.append(f"Ingress does not route the public function route {route}")
    for path, kind in paths:
        if not any(route == path or (kind == "Prefix" and route.startswith(path.rstrip("/") + "/")) for route in routes):
            problems.append(f"Ingress path {path} ({kind}) serves no public function (probes, /metrics and /admin stay private)")
    so = docs[("ScaledObject", "mediflow")]
    query = next(t["metadata"]["query"] for t in so["spec"]["triggers"] if t["type"] == "prometheus")
    match = re.search(r'route=~"([^"]*)"', query)
    if not match:
        problems.append('the prometheus trigger must select routes with route=~"..." (an allow-list)')
    else:
        counted = {alt.replace("\\\\", "\\").replace("\\{", "{").replace("\\}", "}").replace("\\.", ".") for alt in match.group(1).split("|")}
        if counted != routes:
            problems.append(f"the prometheus trigger counts {sorted(counted)}, want the public functions {sorted(routes)}"
                            f" (never the invocation envelopes {sorted(invoked)})")
    print(f"monitoring_check: public routes {sorted(routes)}, invoked {sorted(invoked)}")
    return fail(problems)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    command, args = argv[0], [Path(a) for a in argv[1:]]
    if command == "rules" and len(args) == 2:
        return cmd_rules(*args)
    if command == "dashboard-rules" and len(args) == 2:
        return cmd_dashboard_rules(*args)
    if command == "metrics" and len(args) >= 2:
        return cmd_metrics(args[0], args[1:])
    if command == "routes" and len(args) == 2:
        return cmd_routes(*args)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

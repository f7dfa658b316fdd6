#!/usr/bin/env bash
# Terraform as the pipeline runs it (azure-pipelines.yml), one script for every job:
#
#   pipeline-terraform.sh install                 Terraform $TERRAFORM_VERSION (checksum-verified)
#   pipeline-terraform.sh plan-readonly ENV OUT   branches and pull requests, read-only connection:
#                                                 init + validate + plan -refresh=false -lock=false
#                                                 with read_only_plan=true; Azure CLI auth (no
#                                                 System.AccessToken), Key Vault firewalls untouched
#   pipeline-terraform.sh plan  ENVIRONMENT OUT   main, writing connection: init + validate + plan
#                                                 -detailed-exitcode; sets the output variable
#                                                 plan.changes; with no changes, writes OUT/outputs.json
#   pipeline-terraform.sh apply ENVIRONMENT OUT   main, writing connection: init + plan + apply,
#                                                 then OUT/outputs.json
#
# ENVIRONMENT picks infra/env/ENVIRONMENT.hcl and the state blob mediflow-ENVIRONMENT.tfstate in
# the environment's own container tfstate-ENVIRONMENT (refused otherwise: one container per
# environment, each with its own role assignments). Runs inside AzureCLI@2 (az signed in as the
# service connection). Reads TF_STATE_RESOURCE_GROUP, TF_STATE_STORAGE_ACCOUNT, TF_STATE_CONTAINER
# (variable group mediflow-ENVIRONMENT); plan and apply also ARM_OIDC_AZURE_SERVICE_CONNECTION_ID
# and SYSTEM_ACCESSTOKEN. For plan and apply the Key Vaults (default deny) are opened for the
# agent's address and closed on exit (key-vault-agent-access.sh).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
infra="$(dirname "$here")"
action="${1:?install|plan|apply}"

if [[ "$action" == install ]]; then
  version="${TERRAFORM_VERSION:?}"
  dir="${AGENT_TOOLSDIRECTORY:?}/terraform/$version"
  if [[ ! -x "$dir/terraform" ]]; then
    base="https://releases.hashicorp.com/terraform/$version"
    zip="terraform_${version}_linux_amd64.zip"
    tmp="$(mktemp -d)"
    curl -fsSLo "$tmp/$zip" "$base/$zip"
    curl -fsSLo "$tmp/SHA256SUMS" "$base/terraform_${version}_SHA256SUMS"
    (cd "$tmp" && grep " $zip\$" SHA256SUMS | sha256sum -c -)
    mkdir -p "$dir" && unzip -q -o "$tmp/$zip" -d "$dir"
  fi
  echo "##vso[task.prependpath]$dir"
  exit 0
fi

environment="${2:?environment (dev, prod)}"
out="${3:?output folder}"
var_file="$infra/env/$environment.hcl"
[[ -f "$var_file" ]] || { echo "##vso[task.logissue type=error]no $var_file"; exit 1; }

# One state container per environment: a plan or apply of one environment cannot reach another's.
state_container="${TF_STATE_CONTAINER:?}"
if [[ "$state_container" != "tfstate-$environment" ]]; then
  echo "##vso[task.logissue type=error]TF_STATE_CONTAINER is '$state_container', want 'tfstate-$environment' (docs/deploy-to-azure.md, step 3)"
  exit 1
fi

case "$action" in
  plan-readonly)
    # The read-only identity: Terraform uses the Azure CLI session of this task (its token lasts
    # the plan); no provider registration (a write), no refresh (would read Key Vault secrets'
    # metadata through a closed firewall), no state lock (a lease is a write).
    export ARM_USE_CLI=true ARM_RESOURCE_PROVIDER_REGISTRATIONS=none
    ARM_SUBSCRIPTION_ID="$(az account show --query id -o tsv)"
    export ARM_SUBSCRIPTION_ID
    args=(-input=false -lock=false -refresh=false -var-file="$var_file" -var "read_only_plan=true")
    ;;
  plan | apply)
    # Terraform signs in as the service connection through OIDC and refreshes its token from
    # Azure DevOps itself (long applies outlive the task's token).
    case "${ARM_OIDC_AZURE_SERVICE_CONNECTION_ID:-}" in
      "" | 00000000-0000-0000-0000-000000000000)
        echo "##vso[task.logissue type=error]Set azureServiceConnectionId in the variable group mediflow-$environment (docs/deploy-to-azure.md)"
        exit 1
        ;;
    esac
    export ARM_ADO_PIPELINE_SERVICE_CONNECTION_ID="$ARM_OIDC_AZURE_SERVICE_CONNECTION_ID" ARM_USE_OIDC=true
    ARM_CLIENT_ID="$(az account show --query user.name -o tsv)"
    ARM_TENANT_ID="$(az account show --query tenantId -o tsv)"
    ARM_SUBSCRIPTION_ID="$(az account show --query id -o tsv)"
    export ARM_CLIENT_ID ARM_TENANT_ID ARM_SUBSCRIPTION_ID
    # The vaults' firewalls: open for this agent, closed whatever happens next.
    group="rg-mediflow-$environment"
    agent_range="$("$here/key-vault-agent-access.sh" open "$group")"
    trap '"$here/key-vault-agent-access.sh" close "$group" "$agent_range"' EXIT
    args=(-input=false -lock-timeout=10m -var-file="$var_file" -var "pipeline_agent_ip_ranges=[\"$agent_range\"]")
    ;;
  *)
    echo "usage: $0 install | plan-readonly ENVIRONMENT OUT | plan ENVIRONMENT OUT | apply ENVIRONMENT OUT" >&2
    exit 2
    ;;
esac

terraform -chdir="$infra" init -input=false \
  -backend-config="resource_group_name=${TF_STATE_RESOURCE_GROUP:?}" \
  -backend-config="storage_account_name=${TF_STATE_STORAGE_ACCOUNT:?}" \
  -backend-config="container_name=$state_container" \
  -backend-config="key=mediflow-$environment.tfstate"

write_outputs() {
  mkdir -p "$out"
  terraform -chdir="$infra" output -json >"$out/outputs.json"
}

case "$action" in
  plan-readonly)
    terraform -chdir="$infra" validate
    terraform -chdir="$infra" plan "${args[@]}"
    ;;
  plan)
    terraform -chdir="$infra" validate
    set +e
    terraform -chdir="$infra" plan "${args[@]}" -detailed-exitcode -out=tfplan
    rc=$?
    set -e
    rm -f "$infra/tfplan"
    case "$rc" in
      0) echo "##vso[task.setvariable variable=changes;isOutput=true]false"; write_outputs ;;
      2) echo "##vso[task.setvariable variable=changes;isOutput=true]true" ;;
      *) echo "terraform plan failed (exit $rc)"; exit "$rc" ;;
    esac
    ;;
  apply)
    # Plans again rather than taking a plan file: plan files embed the prior state.
    terraform -chdir="$infra" plan "${args[@]}" -out=tfplan
    terraform -chdir="$infra" apply -input=false -lock-timeout=10m tfplan
    rm -f "$infra/tfplan"
    write_outputs
    ;;
  *)
    echo "usage: $0 install | plan-readonly ENVIRONMENT OUT | plan ENVIRONMENT OUT | apply ENVIRONMENT OUT" >&2
    exit 2
    ;;
esac

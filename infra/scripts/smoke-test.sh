#!/usr/bin/env bash
# Smoke test of a deployed environment through its public HTTPS endpoint, as a client sees it:
# TLS with the certificate from the TLS Key Vault, the pipeline-smoke client's key from Key Vault, then
#   POST /records + GET /records/{id}     (a synthetic record)
#   POST /batches + GET /batches/{id}     (a synthetic batch, until the queue trigger has stored it)
#   GET /metrics, /health, /ready         (must NOT be reachable through the ingress: 404)
#
#   smoke-test.sh OUTPUTS_JSON BUILD_ID
#
# Writes only synthetic records: site_id SYNTHETIC (reserved, docs/operations-contract.md) and
# notes "synthetic: ...". Needs az (signed in, Key Vault Secrets Officer and Certificates Officer
# through Terraform's deployer role assignments), kubectl with cluster credentials, curl, jq.
# The vaults must admit this machine (key-vault-agent-access.sh open).
set -euo pipefail

outputs="${1:?terraform output -json file}"
build="${2:?build id}"
out() { jq -r ".$1.value" "$outputs"; }

host="$(out ingress_host)"
environment="$(out resource_group_name)"
environment="${environment#rg-mediflow-}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The ingress's public address (the add-on's NGINX Service); DNS may not point at it yet, so curl
# is told the address and still checks the certificate against the host name.
address=""
for _ in $(seq 1 60); do
  address="$(kubectl -n mediflow get ingress mediflow -o jsonpath='{.status.loadBalancer.ingress[0].ip}' 2>/dev/null || true)"
  [[ -n "$address" ]] && break
  sleep 5
done
[[ -n "$address" ]] || { echo "the Ingress got no address in 5 minutes" >&2; exit 1; }

az keyvault certificate download --vault-name "$(out tls_key_vault_name)" --name "$(out tls_certificate_name)" \
  --encoding PEM --file "$work/tls.pem" --only-show-errors
# The smoke test is an ordinary client, "pipeline-smoke" in the environment's clients map (roles
# submit + read, site SYNTHETIC); line 1 of its secret is its current key.
smoke_secret="$(jq -r '.client_secret_names.value["pipeline-smoke"] // empty' "$outputs")"
[[ -n "$smoke_secret" ]] || { echo "no client \"pipeline-smoke\" in infra/env/$environment.hcl (clients)" >&2; exit 1; }
api_key="$(az keyvault secret show --vault-name "$(out key_vault_name)" --name "$smoke_secret" \
  --query value -o tsv | head -n 1 | tr -d '\r')"
echo "##vso[task.setvariable variable=smokeApiKey;issecret=true]$api_key"

base="https://$host"
call() {
  curl -sS --fail-with-body --max-time 30 --resolve "$host:443:$address" --cacert "$work/tls.pem" \
    -H "X-API-Key: $api_key" -H 'Content-Type: application/json' "$@"
}
status_of() {
  curl -sS -o /dev/null -w '%{http_code}' --max-time 30 --resolve "$host:443:$address" --cacert "$work/tls.pem" "$1"
}

# The endpoint may take a minute after the rollout (certificate sync, DNS, NGINX reload).
for _ in $(seq 1 30); do
  [[ "$(status_of "$base/openapi.json")" == 200 ]] && break
  sleep 5
done
echo "openapi.json over TLS: $(status_of "$base/openapi.json")"

record="{\"site_id\":\"SYNTHETIC\",\"trial_phase\":\"II\",\"submission_date\":\"2025-03-15\",\"status\":\"pending\",\"patient_count\":1,\"notes\":\"synthetic: pipeline smoke test, build $build, $environment\"}"
created="$(call -X POST "$base/records" -H "Idempotency-Key: smoke-$build" -d "$record")"
id="$(jq -r .id <<<"$created")"
[[ -n "$id" && "$id" != null ]] || { echo "POST /records answered $created" >&2; exit 1; }
fetched="$(call "$base/records/$id")"
[[ "$(jq -c 'del(.id)' <<<"$fetched")" == "$(jq -c 'del(.id)' <<<"$created")" ]] || { echo "GET /records/$id answered $fetched" >&2; exit 1; }
echo "record round trip over TLS ok: $id"

batch_id="$(cat /proc/sys/kernel/random/uuid)"
batch="{\"batch_id\":\"$batch_id\",\"records\":[{\"site_id\":\"SYNTHETIC\",\"trial_phase\":\"I\",\"submission_date\":\"2025-03-15\",\"status\":\"pending\",\"patient_count\":2,\"notes\":\"synthetic: pipeline smoke batch, build $build\"}]}"
call -X POST "$base/batches" -d "$batch" >/dev/null
state=""
for _ in $(seq 1 60); do
  state="$(call "$base/batches/$batch_id" | jq -r .status)"
  [[ "$state" != queued ]] && break
  sleep 2
done
echo "batch $batch_id: $state"
[[ "$state" == completed ]] || { echo "the batch did not complete through the queue" >&2; exit 1; }

for path in /metrics /health /ready; do
  code="$(status_of "$base$path")"
  [[ "$code" == 404 ]] || { echo "$path answered $code through the ingress; it must not be public" >&2; exit 1; }
done
echo "metrics and probes are not routed publicly"

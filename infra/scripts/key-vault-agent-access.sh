#!/usr/bin/env bash
# Opens (or closes) the firewalls of the environment's two Key Vaults for the public address of the
# machine running this script, for the length of one pipeline job. Both vaults deny by default
# (infra/main.keyvault.tf, main.ingress.tf); a Microsoft-hosted agent has a new address every run.
#
#   key-vault-agent-access.sh open  RESOURCE_GROUP   -> prints the address as a.b.c.d/32
#   key-vault-agent-access.sh close RESOURCE_GROUP ADDRESS
#
# `open` tolerates a resource group or vault that does not exist yet (first apply: Terraform creates
# the vaults with the address already allowed, because the pipeline passes it as
# pipeline_agent_ip_ranges). Needs `az` signed in with rights to change the vaults (the pipeline's
# service connection). Run `close` in a step that always runs.
set -euo pipefail

action="${1:?open|close}"
group="${2:?resource group}"

vaults() {
  az keyvault list --resource-group "$group" --query '[].name' -o tsv 2>/dev/null || true
}

case "$action" in
  open)
    address="$(curl -fsS --max-time 10 https://api.ipify.org)"
    [[ "$address" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "no public IPv4 address found: $address" >&2; exit 1; }
    for vault in $(vaults); do
      az keyvault network-rule add --name "$vault" --resource-group "$group" --ip-address "$address/32" --only-show-errors >/dev/null
      echo "opened $vault for $address/32" >&2
    done
    # Firewall changes take a few seconds to reach the data plane.
    [ -n "$(vaults)" ] && sleep 20
    echo "$address/32"
    ;;
  close)
    address="${3:?address a.b.c.d/32}"
    for vault in $(vaults); do
      az keyvault network-rule remove --name "$vault" --resource-group "$group" --ip-address "$address" --only-show-errors >/dev/null || true
      echo "closed $vault for $address" >&2
    done
    ;;
  *)
    echo "usage: $0 open RESOURCE_GROUP | close RESOURCE_GROUP ADDRESS" >&2
    exit 2
    ;;
esac

# Key Vaults (RBAC, purge protection, default deny, delete lock, prevent_destroy): the API keys
# vault and the ingress TLS vault. The API keys vault holds one secret per client
# (mediflow-client-<id>, its key, handed out by client_key_reader_ids) and the service's key table
# (mediflow-api-keys: JSON with each client's roles, sites and the SHA-256 of its keys, never a key),
# which the CSI driver mounts as /mnt/secrets/api-keys (MEDIFLOW_API_KEYS_FILE).
#
# Keys are ephemeral values written through write-only arguments: they never reach the state or a
# plan (the read-only plan identity can read the state, so nothing secret may be in it). The table
# is built from the client secrets as they are in Key Vault after this apply wrote them (read back
# ephemerally), so it always lists exactly the keys the clients hold.
#
# Rotation with overlap, per client (docs/deploy-to-azure.md, "Rotate a client's key"): raising
# clients[id].key_version writes "<new key>\n<previous current key>\n" to that client's secret and
# both digests to the table; keep_previous_key = false drops the old key at once (leaked key).

# The project's two vaults, one definition: alike in every setting, apart in what they hold, so no
# identity that reads one can read the other. `api_keys`: the service's API keys file (below).
# `tls`: the ingress TLS certificate, read by the application routing add-on (main.ingress.tf).
locals {
  key_vaults = {
    api_keys = local.names.key_vault
    tls      = local.names.tls_key_vault
  }
}

resource "azurerm_key_vault" "this" {
  #checkov:skip=CKV_AZURE_189:Public network access stays enabled only so the firewall rules apply: default_action is Deny, the AKS subnet (service endpoint) and the listed IP ranges (Terraform, people importing certificates, the pipeline agent) are the only way in, and every call needs an Entra ID token with an RBAC role.
  #checkov:skip=CKV2_AZURE_32:A private endpoint would need self-hosted pipeline agents inside the VNet; the firewall denies by default instead (see CKV_AZURE_189).
  for_each = local.key_vaults

  name                          = each.value
  location                      = azurerm_resource_group.this.location
  resource_group_name           = azurerm_resource_group.this.name
  tenant_id                     = data.azurerm_client_config.current.tenant_id
  sku_name                      = "standard"
  rbac_authorization_enabled    = true
  purge_protection_enabled      = true
  soft_delete_retention_days    = var.key_vault_soft_delete_retention_days
  public_network_access_enabled = true
  tags                          = local.tags

  # Default deny. The CSI driver and the ingress add-on read from the AKS subnet (service
  # endpoint). Terraform, the smoke test and people importing certificates come from the IP ranges
  # in key_vault_allowed_ip_ranges; a Microsoft-hosted pipeline agent adds its own address for the
  # length of its job (infra/scripts/key-vault-agent-access.sh) and passes it as
  # pipeline_agent_ip_ranges, so the refreshed state and the configuration agree.
  network_acls {
    default_action             = "Deny"
    bypass                     = "None"
    virtual_network_subnet_ids = [azurerm_subnet.aks.id]
    ip_rules                   = local.key_vault_ip_rules
  }

  # Losing a vault loses every client key and the ingress certificate: Terraform refuses to plan
  # its destruction, and the delete lock below stops the portal and the CLI too.
  lifecycle {
    prevent_destroy = true
  }
}

resource "azurerm_management_lock" "key_vault" {
  for_each = local.key_vaults

  name       = "lock-${each.value}"
  scope      = azurerm_key_vault.this[each.key].id
  lock_level = "CanNotDelete"
  notes      = "Holds the API client keys or the ingress certificate; remove only by a reviewed change."
}

# The vaults were two blocks before (azurerm_key_vault.this and .tls): the same objects, now
# instances of the one block. Without these, a plan would replace both vaults.
moved {
  from = azurerm_key_vault.this
  to   = azurerm_key_vault.this["api_keys"]
}

moved {
  from = azurerm_key_vault.tls
  to   = azurerm_key_vault.this["tls"]
}

locals {
  key_vault_ip_rules = distinct(concat(var.key_vault_allowed_ip_ranges, var.pipeline_agent_ip_ranges))
}

# The pipeline identity writes the secret (and reads it for the smoke test).
resource "azurerm_role_assignment" "deployer_kv_secrets_officer" {
  count = var.deployer_role_assignments_enabled ? 1 : 0

  scope                = azurerm_key_vault.this["api_keys"].id
  role_definition_name = "Key Vault Secrets Officer"
  principal_id         = data.azurerm_client_config.current.object_id
  description          = "Terraform writes the generated API keys; the pipeline smoke test reads the current one."
}

# Azure RBAC assignments take up to a few minutes to reach the Key Vault data plane.
resource "time_sleep" "kv_rbac_propagation" {
  create_duration = "90s"

  triggers = {
    role_assignment = try(azurerm_role_assignment.deployer_kv_secrets_officer[0].id, "none")
  }
}

locals {
  # Key Vault secret names allow letters, digits and dashes only (the ids are validated unique).
  client_secret_names = { for id, c in var.clients : id => "mediflow-client-${replace(replace(id, ".", "-"), "_", "-")}" }
  # Clients whose rotation keeps the key that is current until now.
  clients_keeping_previous = var.read_only_plan ? {} : { for id, c in var.clients : id => c if c.key_version > 1 && c.keep_previous_key }
}

# One new key per client and run; it is written only when that client's key_version changes.
ephemeral "random_password" "client_key" {
  for_each = var.clients

  length  = var.api_key_length
  special = false
  upper   = true
  lower   = true
  numeric = true
}

# A client's secret as it is now (read only when its rotation keeps the previous key): line 1 is
# the current key, which becomes the previous one. Ephemeral: the value is never stored.
ephemeral "azurerm_key_vault_secret" "client_current" {
  for_each = local.clients_keeping_previous

  name         = local.client_secret_names[each.key]
  key_vault_id = azurerm_key_vault.this["api_keys"].id
}

locals {
  client_previous_key = { for id, s in ephemeral.azurerm_key_vault_secret.client_current : id => trimspace(split("\n", s.value)[0]) }
}

# What a client is handed: "<current key>\n" or, after a rotation that keeps the old one,
# "<current key>\n<previous key>\n".
resource "azurerm_key_vault_secret" "client" {
  #checkov:skip=CKV_AZURE_41:Rotation is explicit per client (key_version, with overlap); an expiry date would silently lock the client out when it passes.
  for_each = var.clients

  name             = local.client_secret_names[each.key]
  key_vault_id     = azurerm_key_vault.this["api_keys"].id
  content_type     = "text/plain; API key of client ${each.key}, current first, then the previous one during a rotation"
  value_wo         = try("${ephemeral.random_password.client_key[each.key].result}\n${local.client_previous_key[each.key]}\n", "${ephemeral.random_password.client_key[each.key].result}\n")
  value_wo_version = each.value.key_version
  tags             = merge(local.tags, { mediflow_client = each.key })

  depends_on = [time_sleep.kv_rbac_propagation]
}

# The client secrets as this apply left them: `version` is unknown while a secret is being
# written, so Terraform opens these only after the write (and reads exactly that version).
ephemeral "azurerm_key_vault_secret" "client_written" {
  for_each = var.read_only_plan ? {} : var.clients

  name         = azurerm_key_vault_secret.client[each.key].name
  key_vault_id = azurerm_key_vault.this["api_keys"].id
  version      = azurerm_key_vault_secret.client[each.key].version
}

locals {
  # The service's key table (docs/operations-contract.md): digests only, lower-case hex SHA-256 of
  # each key a client may present (two during a rotation's overlap).
  api_keys_table = jsonencode({
    clients = [for id, c in var.clients : {
      id         = id
      key_sha256 = [for line in try(split("\n", ephemeral.azurerm_key_vault_secret.client_written[id].value), []) : sha256(trimspace(line)) if trimspace(line) != ""]
      roles      = c.roles
      sites      = c.sites
    }]
  })
  # The table is rewritten whenever a client is added, removed, rotated or changes roles or sites.
  api_keys_table_version = parseint(substr(sha256(jsonencode({ for id, c in var.clients : id => [c.key_version, c.keep_previous_key, c.roles, c.sites] })), 0, 12), 16)
}

resource "azurerm_key_vault_secret" "api_keys" {
  #checkov:skip=CKV_AZURE_41:The table changes with the clients map; an expiry date would lock every client out when it passes.
  name             = local.contract.api_keys_secret
  key_vault_id     = azurerm_key_vault.this["api_keys"].id
  content_type     = "application/json; MediFlow API key table: clients with roles, sites and key SHA-256 digests"
  value_wo         = local.api_keys_table
  value_wo_version = local.api_keys_table_version
  tags             = local.tags

  depends_on = [time_sleep.kv_rbac_propagation]
}

# The service's identity reads only the key table (the SecretProviderClass uses its client id);
# it cannot read any client's key.
resource "azurerm_role_assignment" "app_kv_secrets_user" {
  scope                = azurerm_key_vault_secret.api_keys.resource_versionless_id
  role_definition_name = "Key Vault Secrets User"
  principal_id         = azurerm_user_assigned_identity.app.principal_id
  principal_type       = "ServicePrincipal"
  description          = "CSI driver mounts the key table mediflow-api-keys for the service (workload identity)."
}

# The people who hand keys to clients read the client secrets, never the table.
resource "azurerm_role_assignment" "client_key_readers" {
  for_each = { for pair in setproduct(var.client_key_reader_ids, keys(var.clients)) : "${pair[0]}/${pair[1]}" => { principal = pair[0], client = pair[1] } }

  scope                = azurerm_key_vault_secret.client[each.value.client].resource_versionless_id
  role_definition_name = "Key Vault Secrets User"
  principal_id         = each.value.principal
  description          = "Hands the current key (line 1) to client ${each.value.client}."
}

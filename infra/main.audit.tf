# The second, immutable copy of the audit trail (docs/audit-export.md). The primary trail is the
# Cosmos container `audit` (main.cosmos.tf), append-only for the service. Exports land here, in
# a storage account of its own (shared keys off, default deny, no public blobs) whose container
# `audit-exports` has a LOCKED time-based retention policy: once locked, no one can shorten it
# or delete a blob younger than var.audit_export.retention_days, not even the subscription owner.
# Terraform builds the account, the container and the locked policy; running the export is a
# documented, scheduled procedure (docs/audit-export.md).

resource "azurerm_storage_account" "audit" {
  #checkov:skip=CKV2_AZURE_1:Customer-managed keys need a Key Vault key and its lifecycle; Microsoft-managed keys with infrastructure encryption are accepted for the exported audit copies.
  #checkov:skip=CKV2_AZURE_33:Exporters reach the account through the AKS subnet or their listed IP ranges (default deny); a private endpoint would need them inside a peered network.
  #checkov:skip=CKV_AZURE_59:Public network access stays enabled only so the VNet and exporter IP rules apply; default_action is Deny.
  #checkov:skip=CKV_AZURE_43:The name is computed (staudit + validated 2-5 letter environment + 6 hex characters = 15-18 lower-case alphanumerics), which checkov cannot evaluate.
  #checkov:skip=CKV_AZURE_206:Replication follows var.storage_replication_type (ZRS by default); the primary copy of the trail is the Cosmos container with 30-day continuous backup.
  #checkov:skip=CKV_AZURE_33:The account has no queues; the queue logging policy does not apply.
  name                              = local.names.audit_storage
  location                          = azurerm_resource_group.this.location
  resource_group_name               = azurerm_resource_group.this.name
  account_kind                      = "StorageV2"
  account_tier                      = "Standard"
  account_replication_type          = var.storage_replication_type
  shared_access_key_enabled         = false
  default_to_oauth_authentication   = true
  local_user_enabled                = false
  sftp_enabled                      = false
  allow_nested_items_to_be_public   = false
  cross_tenant_replication_enabled  = false
  https_traffic_only_enabled        = true
  min_tls_version                   = "TLS1_2"
  infrastructure_encryption_enabled = true
  public_network_access_enabled     = true
  tags                              = local.tags

  network_rules {
    default_action             = "Deny"
    bypass                     = ["AzureServices", "Logging", "Metrics"]
    virtual_network_subnet_ids = [azurerm_subnet.aks.id]
    ip_rules                   = var.audit_export.ip_ranges
  }

  sas_policy {
    expiration_period = "00.01:00:00"
    expiration_action = "Block"
  }

  blob_properties {
    delete_retention_policy {
      days = 7
    }
    container_delete_retention_policy {
      days = 7
    }
  }

  lifecycle {
    prevent_destroy = true
  }
}

resource "azurerm_storage_container" "audit_exports" {
  #checkov:skip=CKV2_AZURE_21:Blob reads and writes of the exports go to Log Analytics through the diagnostic setting diag-audit_exports-audit (main.monitoring.tf), which checkov does not relate to the container.
  name                  = "audit-exports"
  storage_account_id    = azurerm_storage_account.audit.id
  container_access_type = "private"
}

# Time-based retention, locked in the same apply (a locked policy can only ever be extended).
# Append writes stay allowed so a day's export can grow as one append blob; existing blocks can
# never be changed or deleted.
resource "azurerm_storage_container_immutability_policy" "audit_exports" {
  storage_container_resource_manager_id = azurerm_storage_container.audit_exports.id
  immutability_period_in_days           = var.audit_export.retention_days
  protected_append_writes_enabled       = true
  locked                                = true
}

# The exporters write (and list) the exports; immutability forbids overwrite and delete anyway.
resource "azurerm_role_assignment" "audit_exporters" {
  for_each = toset(var.audit_export.writer_ids)

  scope                = azurerm_storage_container.audit_exports.id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = each.value
  description          = "Writes audit trail exports (docs/audit-export.md)."
}

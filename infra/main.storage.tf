# Storage account for the batch queue: shared keys off (Entra ID only), reachable from the AKS
# subnet only. Queues are created through Azure Resource Manager (storage_account_id).

resource "azurerm_storage_account" "this" {
  #checkov:skip=CKV2_AZURE_1:Customer-managed keys need a Key Vault key and its lifecycle; Microsoft-managed keys (with infrastructure encryption) are accepted for queue messages.
  #checkov:skip=CKV2_AZURE_33:Private endpoint not used; the firewall denies all networks except the AKS subnet (service endpoint).
  #checkov:skip=CKV_AZURE_33:Queue logging is sent to Log Analytics through azurerm_monitor_diagnostic_setting (main.monitoring.tf); the legacy queue_properties logging is deprecated and needs shared keys.
  #checkov:skip=CKV_AZURE_59:Public network access stays enabled only so the VNet rule applies; default_action is Deny.
  #checkov:skip=CKV_AZURE_43:The name is computed (st + mediflow + validated 2-5 letter environment + 6 hex characters = 18-21 lower-case alphanumerics), which checkov cannot evaluate.
  #checkov:skip=CKV_AZURE_206:Replication is a variable (ZRS by default); GRS is not needed for transient queue messages.
  name                              = local.names.storage
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
}

resource "azurerm_storage_queue" "this" {
  for_each = toset([local.contract.queue_name, local.contract.poison_queue_name])

  name               = each.value
  storage_account_id = azurerm_storage_account.this.id
}

# The service receives, deletes and poisons messages on both queues.
resource "azurerm_role_assignment" "app_queue_contributor" {
  for_each = azurerm_storage_queue.this

  scope                = each.value.id
  role_definition_name = "Storage Queue Data Contributor"
  principal_id         = azurerm_user_assigned_identity.app.principal_id
  principal_type       = "ServicePrincipal"
  description          = "MediFlow service consumes ${each.key}."
}

# KEDA only reads the length of the batch queue.
resource "azurerm_role_assignment" "keda_queue_reader" {
  scope                = azurerm_storage_queue.this[local.contract.queue_name].id
  role_definition_name = "Storage Queue Data Reader"
  principal_id         = azurerm_user_assigned_identity.keda.principal_id
  principal_type       = "ServicePrincipal"
  description          = "KEDA azure-queue scaler reads the queue length."
}

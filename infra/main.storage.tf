# Storage account for the batch queue: shared keys off (Entra ID only), reachable from the AKS
# subnet, from the submitters' IP ranges and (optionally) through a private endpoint for the queue
# service. Queues and containers are created through Azure Resource Manager (storage_account_id).

resource "azurerm_storage_account" "this" {
  #checkov:skip=CKV2_AZURE_1:Customer-managed keys need a Key Vault key and its lifecycle; Microsoft-managed keys (with infrastructure encryption) are accepted for queue messages.
  #checkov:skip=CKV2_AZURE_33:The private endpoint for the queue service is optional (var.queue_submitter_network.private_endpoint); without it the firewall denies all networks except the AKS subnet and the submitters' listed IP ranges.
  #checkov:skip=CKV_AZURE_33:Queue logging is sent to Log Analytics through azurerm_monitor_diagnostic_setting (main.monitoring.tf); the legacy queue_properties logging is deprecated and needs shared keys.
  #checkov:skip=CKV_AZURE_59:Public network access stays enabled only so the VNet and submitter IP rules apply; default_action is Deny.
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
    ip_rules                   = var.queue_submitter_network.ip_ranges
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

# Batch submitters (people, groups, service principals) may only add messages to the batch queue:
# they cannot read, delete or peek, nor touch the poison queue. They send with Entra ID
# (`az storage message put --auth-mode login`, docs/deploy-to-azure.md).
resource "azurerm_role_assignment" "queue_submitters" {
  for_each = { for s in var.queue_submitters : s.object_id => s }

  scope                = azurerm_storage_queue.this[local.contract.queue_name].id
  role_definition_name = "Storage Queue Data Message Sender"
  principal_id         = each.value.object_id
  principal_type       = each.value.type
  description          = "Batch submitter: ${each.value.description}"
}

# Optional private endpoint for the queue service, for submitters inside a peered network.
resource "azurerm_private_endpoint" "queue" {
  count = var.queue_submitter_network.private_endpoint == null ? 0 : 1

  name                = local.names.queue_pe
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  subnet_id           = var.queue_submitter_network.private_endpoint.subnet_id
  tags                = local.tags

  private_service_connection {
    name                           = "queue"
    private_connection_resource_id = azurerm_storage_account.this.id
    subresource_names              = ["queue"]
    is_manual_connection           = false
  }

  dynamic "private_dns_zone_group" {
    for_each = var.queue_submitter_network.private_endpoint.private_dns_zone_id == null ? [] : [var.queue_submitter_network.private_endpoint.private_dns_zone_id]
    content {
      name                 = "queue"
      private_dns_zone_ids = [private_dns_zone_group.value]
    }
  }
}

# Functions-host overlay: the host keeps its lock leases and host keys as blobs in
# AzureWebJobsStorage (this account, identity-based). The containers are created here so the
# app identity's blob role can be scoped to exactly these two, not the account.
resource "azurerm_storage_container" "functions_host" {
  #checkov:skip=CKV2_AZURE_21:Blob read logging goes to Log Analytics through the diagnostic setting diag-blobs-audit (main.monitoring.tf, functions-host mode), which checkov does not relate to the container.
  for_each = var.overlay == "functions-host" ? toset(local.functions_host_containers) : toset([])

  name                  = each.value
  storage_account_id    = azurerm_storage_account.this.id
  container_access_type = "private"
}

resource "azurerm_role_assignment" "app_functions_host_blobs" {
  for_each = azurerm_storage_container.functions_host

  scope                = each.value.id
  role_definition_name = "Storage Blob Data Owner"
  principal_id         = azurerm_user_assigned_identity.app.principal_id
  principal_type       = "ServicePrincipal"
  description          = "Functions host state (${each.key}) in AzureWebJobsStorage."
}

locals {
  # The Functions host (v4) names: host id locks and timers, and host keys (secret storage "blob").
  functions_host_containers = ["azure-webjobs-hosts", "azure-webjobs-secrets"]
}

# KEDA only reads the length of the batch queue, and must not be able to read its messages
# (patient data). What KEDA's azure-queue scaler calls, read in kedacore/keda at 8b4f083c (the
# revision of the CRDs in ../shared/schemas), pkg/scalers/azure_queue_scaler.go, getMessageCount:
# with queueLengthStrategy "all" (keda/base/scaledobject.yaml) it calls only
# QueueClient.GetProperties, the Get Queue Metadata operation (GET ?comp=metadata), and reads
# ApproximateMessagesCount; PeekMessages is called only for "visibleonly". So the role holds the
# queue metadata read and nothing under messages/ (the built-in "Storage Queue Data Reader"
# includes messages/read, i.e. peek).
resource "azurerm_role_definition" "keda_queue_length_reader" {
  name        = local.names.keda_role
  scope       = azurerm_storage_account.this.id
  description = "Reads a queue's properties (approximate message count) for KEDA's azure-queue scaler; no access to messages."

  permissions {
    actions      = ["Microsoft.Storage/storageAccounts/queueServices/queues/read"]
    data_actions = ["Microsoft.Storage/storageAccounts/queueServices/queues/metadata/read"]
  }

  assignable_scopes = [azurerm_storage_account.this.id]
}

resource "azurerm_role_assignment" "keda_queue_length_reader" {
  scope              = azurerm_storage_queue.this[local.contract.queue_name].id
  role_definition_id = azurerm_role_definition.keda_queue_length_reader.role_definition_resource_id
  principal_id       = azurerm_user_assigned_identity.keda.principal_id
  principal_type     = "ServicePrincipal"
  description        = "KEDA azure-queue scaler reads the queue length (Get Queue Metadata), never messages."
}

# Logs: Log Analytics for container insights and the audit logs of every stateful service.
# Metrics: the service's Prometheus metrics are scraped in the cluster (prometheus-operator,
# installed by the pipeline in namespace `monitoring`, see docs/deploy-to-azure.md), where the
# KEDA prometheus scaler queries them; nothing to create in Azure for that.

resource "azurerm_log_analytics_workspace" "this" {
  name                         = local.names.log_analytics
  location                     = azurerm_resource_group.this.location
  resource_group_name          = azurerm_resource_group.this.name
  sku                          = "PerGB2018"
  retention_in_days            = var.log_retention_days
  local_authentication_enabled = false
  tags                         = local.tags
}

# Audit and data-plane logs of the stateful services to Log Analytics.
locals {
  diagnostic_targets = {
    key_vault = { id = azurerm_key_vault.this.id, category_group = "audit" }
    cosmos    = { id = azurerm_cosmosdb_account.this.id, category_group = "audit" }
    queues    = { id = "${azurerm_storage_account.this.id}/queueServices/default", category_group = "audit" }
    aks       = { id = azurerm_kubernetes_cluster.this.id, category_group = "audit" }
    acr       = { id = azurerm_container_registry.this.id, category_group = "audit" }
  }
}

resource "azurerm_monitor_diagnostic_setting" "audit" {
  for_each = local.diagnostic_targets

  name                           = "diag-${each.key}-audit"
  target_resource_id             = each.value.id
  log_analytics_workspace_id     = azurerm_log_analytics_workspace.this.id
  log_analytics_destination_type = "Dedicated"

  enabled_log {
    category_group = each.value.category_group
  }
}

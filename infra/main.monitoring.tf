# Logs: Log Analytics for container insights (data collection rule below) and the audit logs of
# every stateful service. Metrics, dashboard and alerts: the service's Prometheus metrics are
# scraped in the cluster (kube-prometheus-stack, installed by the pipeline in namespace
# `monitoring`, with Grafana and Alertmanager; dashboard and PrometheusRule in keda/monitoring/),
# where the KEDA prometheus scaler queries them too; nothing to create in Azure for that.

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
    key_vault = { id = azurerm_key_vault.this["api_keys"].id, category_group = "audit" }
    tls_vault = { id = azurerm_key_vault.this["tls"].id, category_group = "audit" }
    cosmos    = { id = azurerm_cosmosdb_account.this.id, category_group = "audit" }
    queues    = { id = "${azurerm_storage_account.this.id}/queueServices/default", category_group = "audit" }
    aks       = { id = azurerm_kubernetes_cluster.this.id, category_group = "audit" }
    acr       = { id = azurerm_container_registry.this.id, category_group = "audit" }
    # Who read or wrote the immutable audit exports (main.audit.tf).
    audit_exports = { id = "${azurerm_storage_account.audit.id}/blobServices/default", category_group = "audit" }
  }
  # The blob service holds state only in functions-host mode (main.storage.tf).
  blob_diagnostic_targets = var.overlay == "functions-host" ? {
    blobs = { id = "${azurerm_storage_account.this.id}/blobServices/default", category_group = "audit" }
  } : {}
}

resource "azurerm_monitor_diagnostic_setting" "audit" {
  for_each = merge(local.diagnostic_targets, local.blob_diagnostic_targets)

  name                           = "diag-${each.key}-audit"
  target_resource_id             = each.value.id
  log_analytics_workspace_id     = azurerm_log_analytics_workspace.this.id
  log_analytics_destination_type = "Dedicated"

  enabled_log {
    category_group = each.value.category_group
  }
}

# Container insights with managed-identity auth: the monitoring agent (oms_agent in main.aks.tf)
# collects only what a data collection rule associated with the cluster tells it to. Without this
# rule and association no container log reaches the workspace. ContainerLogV2 holds stdout/stderr
# (the service's JSON log lines); the rest of the default group is inventory and performance.
resource "azurerm_monitor_data_collection_rule" "container_insights" {
  name                = local.names.ci_dcr
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  kind                = "Linux"
  description         = "Container insights for ${local.names.aks}: container logs (v2), inventory and performance."
  tags                = local.tags

  destinations {
    log_analytics {
      name                  = "workspace"
      workspace_resource_id = azurerm_log_analytics_workspace.this.id
    }
  }

  data_flow {
    streams      = ["Microsoft-ContainerInsights-Group-Default"]
    destinations = ["workspace"]
  }

  data_sources {
    extension {
      name           = "ContainerInsightsExtension"
      extension_name = "ContainerInsights"
      streams        = ["Microsoft-ContainerInsights-Group-Default"]
      extension_json = jsonencode({
        dataCollectionSettings = {
          interval               = "1m"
          namespaceFilteringMode = "Off"
          enableContainerLogV2   = true
        }
      })
    }
  }
}

resource "azurerm_monitor_data_collection_rule_association" "container_insights" {
  name                    = "ContainerInsightsExtension"
  target_resource_id      = azurerm_kubernetes_cluster.this.id
  data_collection_rule_id = azurerm_monitor_data_collection_rule.container_insights.id
  description             = "Sends the cluster's container insights to ${local.names.log_analytics}."
}

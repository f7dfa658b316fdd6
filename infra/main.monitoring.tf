# Logs (Log Analytics: container insights + diagnostic logs) and metrics (Azure Monitor
# workspace = managed Prometheus, scraped by the AKS metrics add-on, queried by KEDA).

resource "azurerm_log_analytics_workspace" "this" {
  name                         = local.names.log_analytics
  location                     = azurerm_resource_group.this.location
  resource_group_name          = azurerm_resource_group.this.name
  sku                          = "PerGB2018"
  retention_in_days            = var.log_retention_days
  local_authentication_enabled = false
  tags                         = local.tags
}

resource "azurerm_monitor_workspace" "this" {
  name                = local.names.monitor_workspace
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  tags                = local.tags
}

resource "azurerm_monitor_data_collection_endpoint" "prometheus" {
  name                = local.names.dce
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  kind                = "Linux"
  tags                = local.tags
}

resource "azurerm_monitor_data_collection_rule" "prometheus" {
  name                        = local.names.dcr
  location                    = azurerm_resource_group.this.location
  resource_group_name         = azurerm_resource_group.this.name
  kind                        = "Linux"
  data_collection_endpoint_id = azurerm_monitor_data_collection_endpoint.prometheus.id
  description                 = "Prometheus metrics of ${local.names.aks} to ${local.names.monitor_workspace}."
  tags                        = local.tags

  destinations {
    monitor_account {
      monitor_account_id = azurerm_monitor_workspace.this.id
      name               = "MonitoringAccount"
    }
  }

  data_flow {
    streams      = ["Microsoft-PrometheusMetrics"]
    destinations = ["MonitoringAccount"]
  }

  data_sources {
    prometheus_forwarder {
      name    = "PrometheusDataSource"
      streams = ["Microsoft-PrometheusMetrics"]
    }
  }
}

resource "azurerm_monitor_data_collection_rule_association" "prometheus_rule" {
  name                    = "dcra-${local.names.aks}-prometheus"
  target_resource_id      = azurerm_kubernetes_cluster.this.id
  data_collection_rule_id = azurerm_monitor_data_collection_rule.prometheus.id
  description             = "Send the cluster's Prometheus metrics to the Azure Monitor workspace."
}

# The configuration-access endpoint association has this fixed name.
resource "azurerm_monitor_data_collection_rule_association" "prometheus_endpoint" {
  name                        = "configurationAccessEndpoint"
  target_resource_id          = azurerm_kubernetes_cluster.this.id
  data_collection_endpoint_id = azurerm_monitor_data_collection_endpoint.prometheus.id
  description                 = "Data collection endpoint of the metrics add-on."
}

# KEDA's prometheus scaler queries the workspace with the KEDA identity.
resource "azurerm_role_assignment" "keda_prometheus_reader" {
  scope                = azurerm_monitor_workspace.this.id
  role_definition_name = "Monitoring Data Reader"
  principal_id         = azurerm_user_assigned_identity.keda.principal_id
  principal_type       = "ServicePrincipal"
  description          = "KEDA prometheus scaler queries managed Prometheus."
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

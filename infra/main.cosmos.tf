# Cosmos DB (NoSQL): Entra ID only (local/key auth disabled), reachable from the AKS subnet only,
# continuous backup (7-day point-in-time restore). Database `mediflow`, container `records`, partition
# key /id, autoscale throughput. Indexing policy from policies/cosmos-indexing-policy.json: only
# /site_id and /submission_date are indexed (every other path is excluded), plus the composite index
# (site_id, submission_date, id, all descending) that GET /records?site_id= pages through newest
# first (docs/adr/0007-listing-by-site.md); reads by id need no index. The service's identity gets
# data-plane RBAC on this one container.

resource "azurerm_cosmosdb_account" "this" {
  #checkov:skip=CKV_AZURE_100:Customer-managed keys need a Key Vault key and its lifecycle; Cosmos encrypts at rest with service-managed keys, accepted for this workload.
  #checkov:skip=CKV_AZURE_140:False positive: checkov 3.3 only reads the deprecated local_authentication_disabled; this account sets its azurerm 4.x replacement local_authentication_enabled = false.
  #checkov:skip=CKV_AZURE_101:Public network access is required for VNet service-endpoint rules; the firewall admits only the AKS subnet (is_virtual_network_filter_enabled) and no IP ranges.
  name                                  = local.names.cosmos
  location                              = azurerm_resource_group.this.location
  resource_group_name                   = azurerm_resource_group.this.name
  offer_type                            = "Standard"
  kind                                  = "GlobalDocumentDB"
  local_authentication_enabled          = false
  access_key_metadata_writes_enabled    = false
  minimal_tls_version                   = "Tls12"
  public_network_access_enabled         = true
  is_virtual_network_filter_enabled     = true
  network_acl_bypass_for_azure_services = false
  automatic_failover_enabled            = false
  tags                                  = local.tags

  consistency_policy {
    consistency_level = var.cosmos_consistency_level
  }

  geo_location {
    location          = azurerm_resource_group.this.location
    failover_priority = 0
    zone_redundant    = var.cosmos_zone_redundant
  }

  virtual_network_rule {
    id = azurerm_subnet.aks.id
  }

  # Point-in-time restore for clinical data.
  backup {
    type = "Continuous"
    tier = "Continuous7Days"
  }
}

resource "azurerm_cosmosdb_sql_database" "this" {
  name                = local.contract.cosmos_database
  resource_group_name = azurerm_resource_group.this.name
  account_name        = azurerm_cosmosdb_account.this.name
}

resource "azurerm_cosmosdb_sql_container" "records" {
  name                  = local.contract.cosmos_container
  resource_group_name   = azurerm_resource_group.this.name
  account_name          = azurerm_cosmosdb_account.this.name
  database_name         = azurerm_cosmosdb_sql_database.this.name
  partition_key_paths   = [local.contract.cosmos_partition]
  partition_key_kind    = "Hash"
  partition_key_version = 2

  autoscale_settings {
    max_throughput = var.cosmos_max_throughput
  }

  indexing_policy {
    indexing_mode = lower(local.cosmos_indexing_policy.indexingMode)

    dynamic "included_path" {
      for_each = try(local.cosmos_indexing_policy.includedPaths, [])
      content {
        path = included_path.value.path
      }
    }

    dynamic "excluded_path" {
      for_each = try(local.cosmos_indexing_policy.excludedPaths, [])
      content {
        path = excluded_path.value.path
      }
    }

    dynamic "spatial_index" {
      for_each = try(local.cosmos_indexing_policy.spatialIndexes, [])
      content {
        path = spatial_index.value.path
      }
    }

    dynamic "composite_index" {
      for_each = try(local.cosmos_indexing_policy.compositeIndexes, [])
      content {
        dynamic "index" {
          for_each = composite_index.value
          content {
            path  = index.value.path
            order = index.value.order
          }
        }
      }
    }
  }
}

# Data-plane RBAC: "Cosmos DB Built-in Data Contributor" for the service, on its container only.
resource "azurerm_cosmosdb_sql_role_assignment" "app_data_contributor" {
  resource_group_name = azurerm_resource_group.this.name
  account_name        = azurerm_cosmosdb_account.this.name
  role_definition_id  = "${azurerm_cosmosdb_account.this.id}/sqlRoleDefinitions/00000000-0000-0000-0000-000000000002"
  principal_id        = azurerm_user_assigned_identity.app.principal_id
  scope               = "${azurerm_cosmosdb_account.this.id}/dbs/${azurerm_cosmosdb_sql_database.this.name}/colls/${azurerm_cosmosdb_sql_container.records.name}"
}

# Cosmos DB (NoSQL): Entra ID only (local/key auth disabled), reachable from the AKS subnet only,
# continuous backup (30-day point-in-time restore), a delete lock and prevent_destroy. Database `mediflow`, container `records`, partition
# key /id, autoscale throughput. Indexing policy from policies/cosmos-indexing-policy.json: only
# /site_id and /submission_date are indexed (every other path is excluded), plus the composite index
# (site_id, submission_date, id, all descending) that GET /records?site_id= pages through newest
# first (docs/adr/0007-listing-by-site.md); reads by id need no index. Container `audit` (partition
# key /chain): the audit trail, append-only for the service. The service's identity gets two
# custom data-plane roles, each on one container: records (create, read, query, upsert, replace;
# no delete) and audit (create, read, query only).

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

  # Point-in-time restore for clinical data and the audit trail, 30 days back.
  backup {
    type = "Continuous"
    tier = "Continuous30Days"
  }

  # The account holds the clinical records and the audit trail: Terraform refuses to plan its
  # destruction (a rename or a ForceNew change must be a deliberate, reviewed migration), and the
  # delete lock below stops the portal and the CLI too.
  lifecycle {
    prevent_destroy = true
  }
}

resource "azurerm_management_lock" "cosmos" {
  name       = "lock-${local.names.cosmos}"
  scope      = azurerm_cosmosdb_account.this.id
  lock_level = "CanNotDelete"
  notes      = "Clinical records and the audit trail; remove only by a reviewed change."
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

# The audit trail: one hash chain per partition (/chain); the indexing policy is
# policies/cosmos-audit-indexing-policy.json (time, client, record_ids, seq).
resource "azurerm_cosmosdb_sql_container" "audit" {
  name                  = local.contract.cosmos_audit_container
  resource_group_name   = azurerm_resource_group.this.name
  account_name          = azurerm_cosmosdb_account.this.name
  database_name         = azurerm_cosmosdb_sql_database.this.name
  partition_key_paths   = [local.contract.cosmos_audit_partition]
  partition_key_kind    = "Hash"
  partition_key_version = 2

  autoscale_settings {
    max_throughput = var.cosmos_audit_max_throughput
  }

  indexing_policy {
    indexing_mode = lower(local.cosmos_audit_indexing_policy.indexingMode)

    dynamic "included_path" {
      for_each = try(local.cosmos_audit_indexing_policy.includedPaths, [])
      content {
        path = included_path.value.path
      }
    }

    dynamic "excluded_path" {
      for_each = try(local.cosmos_audit_indexing_policy.excludedPaths, [])
      content {
        path = excluded_path.value.path
      }
    }

    dynamic "composite_index" {
      for_each = try(local.cosmos_audit_indexing_policy.compositeIndexes, [])
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

# Data-plane RBAC: custom roles with only the data actions the store uses (the built-in Data
# Contributor would add delete, stored procedures, triggers, the change feed). Cosmos data actions:
# https://learn.microsoft.com/azure/cosmos-db/nosql/security/reference-data-plane-actions
locals {
  cosmos_items = "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items"
  cosmos_data_roles = {
    # Records: create, point reads, queries, upsert (batch reports) and replace (a review's
    # compare-and-replace); never delete.
    records = {
      name      = "MediFlow records writer (no delete)"
      container = azurerm_cosmosdb_sql_container.records.name
      data_actions = [
        "Microsoft.DocumentDB/databaseAccounts/readMetadata",
        "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/executeQuery",
        "${local.cosmos_items}/create",
        "${local.cosmos_items}/read",
        "${local.cosmos_items}/upsert",
        "${local.cosmos_items}/replace",
      ]
    }
    # Audit trail: append and read only; no upsert, replace or delete, so the service cannot
    # rewrite its own history.
    audit = {
      name      = "MediFlow audit appender (create and read only)"
      container = azurerm_cosmosdb_sql_container.audit.name
      data_actions = [
        "Microsoft.DocumentDB/databaseAccounts/readMetadata",
        "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/executeQuery",
        "${local.cosmos_items}/create",
        "${local.cosmos_items}/read",
      ]
    }
  }
}

resource "azurerm_cosmosdb_sql_role_definition" "app" {
  for_each = local.cosmos_data_roles

  # A stable GUID per role, so a plan never replaces the definition under its assignment.
  role_definition_id  = uuidv5("url", "https://mediflow.invalid/${var.environment}/cosmos-role/${each.key}")
  name                = each.value.name
  resource_group_name = azurerm_resource_group.this.name
  account_name        = azurerm_cosmosdb_account.this.name
  type                = "CustomRole"
  assignable_scopes   = ["${azurerm_cosmosdb_account.this.id}/dbs/${azurerm_cosmosdb_sql_database.this.name}/colls/${each.value.container}"]

  permissions {
    data_actions = each.value.data_actions
  }
}

resource "azurerm_cosmosdb_sql_role_assignment" "app" {
  for_each = local.cosmos_data_roles

  resource_group_name = azurerm_resource_group.this.name
  account_name        = azurerm_cosmosdb_account.this.name
  role_definition_id  = azurerm_cosmosdb_sql_role_definition.app[each.key].id
  principal_id        = azurerm_user_assigned_identity.app.principal_id
  scope               = "${azurerm_cosmosdb_account.this.id}/dbs/${azurerm_cosmosdb_sql_database.this.name}/colls/${each.value.container}"
}

# Everything the manifests (keda/) and the pipeline need. No output is sensitive: identities are
# referenced by client id, the API key is only in Key Vault.

output "resource_group_name" {
  description = "Resource group holding every resource. Example: rg-mediflow-prod"
  value       = azurerm_resource_group.this.name
}

output "location" {
  description = "Azure region. Example: swedencentral"
  value       = azurerm_resource_group.this.location
}

output "tenant_id" {
  description = "Entra tenant of the identities (settings TENANT_ID)."
  value       = data.azurerm_client_config.current.tenant_id
}

output "aks_name" {
  description = "AKS cluster name, for `az aks get-credentials`."
  value       = azurerm_kubernetes_cluster.this.name
}

output "aks_oidc_issuer_url" {
  description = "OIDC issuer of the cluster (trusted by the federated credentials)."
  value       = azurerm_kubernetes_cluster.this.oidc_issuer_url
}

output "acr_name" {
  description = "Container registry name, for `az acr login --name`."
  value       = azurerm_container_registry.this.name
}

output "acr_login_server" {
  description = "Registry host for image references. Example: crmediflowprod1a2b3c.azurecr.io"
  value       = azurerm_container_registry.this.login_server
}

output "app_client_id" {
  description = "Client id of the service identity: ServiceAccount mediflow/mediflow annotation and SecretProviderClass clientID (settings APP_CLIENT_ID)."
  value       = azurerm_user_assigned_identity.app.client_id
}

output "keda_client_id" {
  description = "Client id of the KEDA identity: keda-operator annotation / TriggerAuthentication identityId (settings KEDA_CLIENT_ID)."
  value       = azurerm_user_assigned_identity.keda.client_id
}

output "key_vault_name" {
  description = "Key Vault holding the API keys secret (settings KEY_VAULT_NAME)."
  value       = azurerm_key_vault.this["api_keys"].name
}

output "api_keys_secret_name" {
  description = "Key Vault secret with the service's key table (JSON, digests only), mounted as MEDIFLOW_API_KEYS_FILE. Example: mediflow-api-keys"
  value       = azurerm_key_vault_secret.api_keys.name
}

output "client_secret_names" {
  description = "Client id => Key Vault secret holding that client's key (line 1 current). Example: { \"site001-uploader\" = \"mediflow-client-site001-uploader\" }"
  value       = { for id, secret in azurerm_key_vault_secret.client : id => secret.name }
}

output "cosmos_audit_container" {
  description = "Cosmos DB container of the audit trail, COSMOS_AUDIT_CONTAINER. Example: audit"
  value       = azurerm_cosmosdb_sql_container.audit.name
}

output "audit_export_storage_account_name" {
  description = "Storage account of the immutable audit exports (container audit-exports). Example: stauditprod1a2b3c"
  value       = azurerm_storage_account.audit.name
}

output "overlay" {
  description = "Which keda/overlays/<overlay> the pipeline deploys. Example: standalone"
  value       = var.overlay
}

output "tls_key_vault_name" {
  description = "Key Vault holding the ingress TLS certificate (import it here). Example: kvtls-mf-prod-1a2b3c"
  value       = azurerm_key_vault.this["tls"].name
}

output "tls_certificate_name" {
  description = "Name of the ingress TLS certificate in tls_key_vault_name. Example: mediflow-tls"
  value       = var.ingress.certificate_name
}

output "ingress_host" {
  description = "Public HTTPS host of the HTTP functions. Example: mediflow.example.org"
  value       = var.ingress.host
}

output "storage_account_name" {
  description = "Storage account of the batch queue; KEDA azure-queue accountName (settings STORAGE_ACCOUNT_NAME)."
  value       = azurerm_storage_account.this.name
}

output "queue_service_uri" {
  description = "Queue endpoint without trailing slash, MEDIFLOW_QUEUE__queueServiceUri (settings QUEUE_SERVICE_URI)."
  value       = trimsuffix(azurerm_storage_account.this.primary_queue_endpoint, "/")
}

output "queue_name" {
  description = "Batch queue name. Example: mediflow-batches"
  value       = azurerm_storage_queue.this[local.contract.queue_name].name
}

output "poison_queue_name" {
  description = "Poison queue name. Example: mediflow-batches-poison"
  value       = azurerm_storage_queue.this[local.contract.poison_queue_name].name
}

output "cosmos_endpoint" {
  description = "Cosmos DB account endpoint, COSMOS_ENDPOINT. Example: https://cosmos-mediflow-prod-1a2b3c.documents.azure.com:443/"
  value       = azurerm_cosmosdb_account.this.endpoint
}

output "cosmos_database" {
  description = "Cosmos DB database, COSMOS_DATABASE. Example: mediflow"
  value       = azurerm_cosmosdb_sql_database.this.name
}

output "cosmos_container" {
  description = "Cosmos DB container, COSMOS_CONTAINER. Example: records"
  value       = azurerm_cosmosdb_sql_container.records.name
}

output "log_analytics_workspace_id" {
  description = "Log Analytics workspace resource id (container insights and audit logs)."
  value       = azurerm_log_analytics_workspace.this.id
}

# One map with the settings-file keys that come from Azure. The pipeline writes
# keda/settings/settings.env from it (one KEY=VALUE per line) and adds IMAGE and
# PROMETHEUS_SERVER_ADDRESS, which it owns (the image it built, the Prometheus it installed).
# .ci/checks/manifests.sh checks that these keys plus those two are exactly settings.env's keys.
output "kubernetes_settings" {
  description = "KEY => value for keda/settings/settings.env (all keys except IMAGE and PROMETHEUS_SERVER_ADDRESS)."
  value = {
    APP_CLIENT_ID          = azurerm_user_assigned_identity.app.client_id
    KEDA_CLIENT_ID         = azurerm_user_assigned_identity.keda.client_id
    TENANT_ID              = data.azurerm_client_config.current.tenant_id
    KEY_VAULT_NAME         = azurerm_key_vault.this["api_keys"].name
    STORAGE_ACCOUNT_NAME   = azurerm_storage_account.this.name
    QUEUE_SERVICE_URI      = trimsuffix(azurerm_storage_account.this.primary_queue_endpoint, "/")
    COSMOS_ENDPOINT        = azurerm_cosmosdb_account.this.endpoint
    COSMOS_DATABASE        = azurerm_cosmosdb_sql_database.this.name
    COSMOS_CONTAINER       = azurerm_cosmosdb_sql_container.records.name
    COSMOS_AUDIT_CONTAINER = azurerm_cosmosdb_sql_container.audit.name
    INGRESS_HOST           = var.ingress.host
    # Empty list = open: NGINX then gets the all-addresses range.
    INGRESS_SOURCE_RANGES = length(var.ingress.allowed_source_ranges) == 0 ? "0.0.0.0/0" : join(",", var.ingress.allowed_source_ranges)
    TLS_CERT_URI          = local.tls_certificate_uri
  }
}

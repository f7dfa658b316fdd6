# Container registry for the service images (pushed by the pipeline, pulled by the kubelet).

resource "azurerm_container_registry" "this" {
  #checkov:skip=CKV_AZURE_139:Microsoft-hosted pipeline agents push over the public endpoint (no fixed IPs); every push and pull needs an Entra ID token, admin user and anonymous pull are off.
  #checkov:skip=CKV_AZURE_164:Docker Content Trust is deprecated by ACR (retired in favour of Notation); image integrity comes from immutable build-id tags.
  #checkov:skip=CKV_AZURE_165:Geo-replication doubles registry cost; the cluster runs in one region and image pulls are cached on nodes.
  #checkov:skip=CKV_AZURE_166:Quarantine would block every pulled image until an external scanner releases it; no such scanner is part of this deployment.
  #checkov:skip=CKV_AZURE_163:Vulnerability scanning is Microsoft Defender for Containers, a subscription-level plan outside this workload's state.
  #checkov:skip=CKV_AZURE_233:Zone redundancy depends on the region offering zones; left to the region default.
  name                          = local.names.acr
  location                      = azurerm_resource_group.this.location
  resource_group_name           = azurerm_resource_group.this.name
  sku                           = var.acr_sku
  admin_enabled                 = false
  anonymous_pull_enabled        = false
  public_network_access_enabled = true
  data_endpoint_enabled         = var.acr_sku == "Premium"
  retention_policy_in_days      = var.acr_sku == "Premium" ? 7 : null
  tags                          = local.tags
}

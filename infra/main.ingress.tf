# Public HTTPS for the HTTP functions: the AKS application routing add-on (managed NGINX) terminates
# TLS with a certificate it reads from Key Vault and, when a DNS zone is given, publishes the host
# name in Azure DNS. Why this and not Application Gateway for Containers: docs/adr/0008-ingress.md.
#
# The certificate lives in its own vault, so the add-on's identity (which reads it) can never read
# the API keys in the service's vault. Terraform does not create the certificate: it comes from the
# team's CA (imported once, see docs/deploy-to-azure.md) or, for a test environment, a self-signed
# certificate created with `az keyvault certificate create`.

resource "azurerm_key_vault" "tls" {
  #checkov:skip=CKV_AZURE_189:Public network access stays enabled only so the firewall rules apply: default_action is Deny, only the AKS subnet and the listed IP ranges (people importing certificates, the pipeline agent) get in, each call needs an Entra ID token with an RBAC role.
  #checkov:skip=CKV2_AZURE_32:A private endpoint would need self-hosted pipeline agents inside the VNet; the firewall denies by default instead (see CKV_AZURE_189).
  name                          = local.names.tls_key_vault
  location                      = azurerm_resource_group.this.location
  resource_group_name           = azurerm_resource_group.this.name
  tenant_id                     = data.azurerm_client_config.current.tenant_id
  sku_name                      = "standard"
  rbac_authorization_enabled    = true
  purge_protection_enabled      = true
  soft_delete_retention_days    = var.key_vault_soft_delete_retention_days
  public_network_access_enabled = true
  tags                          = local.tags

  network_acls {
    default_action             = "Deny"
    bypass                     = "None"
    virtual_network_subnet_ids = [azurerm_subnet.aks.id]
    ip_rules                   = local.key_vault_ip_rules
  }
}

# Whoever imports or renews the certificate (the named certificate officers and, when enabled,
# the pipeline identity, whose smoke test downloads the public certificate to verify TLS).
resource "azurerm_role_assignment" "tls_certificate_officers" {
  for_each = toset(concat(
    var.ingress.certificate_officer_ids,
    var.deployer_role_assignments_enabled ? [data.azurerm_client_config.current.object_id] : [],
  ))

  scope                = azurerm_key_vault.tls.id
  role_definition_name = "Key Vault Certificates Officer"
  principal_id         = each.value
  description          = "Imports and renews the ingress TLS certificate."
}

# The add-on's managed NGINX reads the certificate (and its private key) from this vault only.
resource "azurerm_role_assignment" "ingress_tls_reader" {
  scope                = azurerm_key_vault.tls.id
  role_definition_name = "Key Vault Certificate User"
  principal_id         = azurerm_kubernetes_cluster.this.web_app_routing[0].web_app_routing_identity[0].object_id
  principal_type       = "ServicePrincipal"
  description          = "Application routing add-on reads the ingress TLS certificate."
}

# With a DNS zone, the add-on's external-dns writes the A record of the ingress host.
resource "azurerm_role_assignment" "ingress_dns" {
  count = var.ingress.dns_zone_id == null ? 0 : 1

  scope                = var.ingress.dns_zone_id
  role_definition_name = "DNS Zone Contributor"
  principal_id         = azurerm_kubernetes_cluster.this.web_app_routing[0].web_app_routing_identity[0].object_id
  principal_type       = "ServicePrincipal"
  description          = "Application routing add-on publishes the ingress host name."
}

locals {
  # Versionless: the add-on follows renewals of the certificate without a manifest change.
  tls_certificate_uri = "${azurerm_key_vault.tls.vault_uri}certificates/${var.ingress.certificate_name}"
}

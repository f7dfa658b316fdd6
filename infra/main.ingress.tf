# Public HTTPS for the HTTP functions: the AKS application routing add-on (managed NGINX) terminates
# TLS with a certificate it reads from Key Vault and, when a DNS zone is given, publishes the host
# name in Azure DNS. Why this and not Application Gateway for Containers: docs/adr/0008-ingress.md.
#
# The certificate lives in its own vault (azurerm_key_vault.this["tls"], declared with the API keys
# vault in main.keyvault.tf), so the add-on's identity (which reads it) can never read the API keys.
# Terraform does not create the certificate: it comes from the team's CA (imported once, see
# docs/deploy-to-azure.md) or, for a test environment, a self-signed certificate created with
# `az keyvault certificate create`.

# Whoever imports or renews the certificate (the named certificate officers and, when enabled,
# the pipeline identity, whose smoke test downloads the public certificate to verify TLS).
resource "azurerm_role_assignment" "tls_certificate_officers" {
  for_each = toset(concat(
    var.ingress.certificate_officer_ids,
    var.deployer_role_assignments_enabled ? [data.azurerm_client_config.current.object_id] : [],
  ))

  scope                = azurerm_key_vault.this["tls"].id
  role_definition_name = "Key Vault Certificates Officer"
  principal_id         = each.value
  description          = "Imports and renews the ingress TLS certificate."
}

# The add-on's managed NGINX reads the certificate (and its private key) from this vault only.
resource "azurerm_role_assignment" "ingress_tls_reader" {
  scope                = azurerm_key_vault.this["tls"].id
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
  tls_certificate_uri = "${azurerm_key_vault.this["tls"].vault_uri}certificates/${var.ingress.certificate_name}"
}

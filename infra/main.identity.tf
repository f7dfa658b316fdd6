# User-assigned identities. No secrets anywhere: pods get tokens through AKS workload identity,
# which trusts the cluster's OIDC issuer for exactly one ServiceAccount per identity.

# Control plane of the cluster (manages the load balancer and node NICs in our subnet).
resource "azurerm_user_assigned_identity" "aks" {
  name                = local.names.aks_identity
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  tags                = local.tags
}

resource "azurerm_role_assignment" "aks_subnet_network_contributor" {
  scope                = azurerm_subnet.aks.id
  role_definition_name = "Network Contributor"
  principal_id         = azurerm_user_assigned_identity.aks.principal_id
  principal_type       = "ServicePrincipal"
  description          = "AKS control plane manages load balancers and NICs in its subnet."
}

# The service (Deployment mediflow, ServiceAccount mediflow/mediflow): Cosmos, queues, API key.
resource "azurerm_user_assigned_identity" "app" {
  name                = local.names.app_identity
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  tags                = local.tags
}

resource "azurerm_federated_identity_credential" "app" {
  name                      = "aks-${local.contract.namespace}-${local.contract.service_account}"
  user_assigned_identity_id = azurerm_user_assigned_identity.app.id
  issuer                    = azurerm_kubernetes_cluster.this.oidc_issuer_url
  subject                   = local.app_federated_subject
  audience                  = ["api://AzureADTokenExchange"]
}

# The KEDA operator of the AKS add-on (kube-system/keda-operator): reads the queue length and
# queries managed Prometheus for the scalers.
resource "azurerm_user_assigned_identity" "keda" {
  name                = local.names.keda_identity
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  tags                = local.tags
}

resource "azurerm_federated_identity_credential" "keda" {
  name                      = "aks-${local.contract.keda_namespace}-${local.contract.keda_sa}"
  user_assigned_identity_id = azurerm_user_assigned_identity.keda.id
  issuer                    = azurerm_kubernetes_cluster.this.oidc_issuer_url
  subject                   = local.keda_federated_subject
  audience                  = ["api://AzureADTokenExchange"]
}

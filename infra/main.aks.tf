# AKS: OIDC issuer + workload identity, the KEDA add-on, the Key Vault CSI driver with rotation,
# the application routing add-on (ingress, main.ingress.tf), an amd64 system pool and an arm64
# user pool, both autoscaled, plus an amd64 user pool for the functions-host overlay. Entra ID +
# Azure RBAC only.

data "azurerm_kubernetes_service_versions" "available" {
  location        = var.location
  include_preview = false
}

resource "azurerm_kubernetes_cluster" "this" {
  #checkov:skip=CKV_AZURE_6:Authorized IP ranges are var.aks_api_authorized_ip_ranges (validated); empty keeps the API server reachable from Microsoft-hosted agents, which have no fixed ranges; access always needs Entra ID (local accounts are disabled).
  #checkov:skip=CKV_AZURE_115:Private cluster would need self-hosted agents inside the VNet to deploy; the public API server is Entra-ID-only.
  #checkov:skip=CKV_AZURE_117:Disk encryption with customer-managed keys needs a Disk Encryption Set and key lifecycle; platform-managed keys are accepted for this workload.
  #checkov:skip=CKV_AZURE_171:The Kubernetes patch version is pinned by var.kubernetes_version and upgraded through a reviewed change; an auto-upgrade channel would drift from it. Node OS images are patched by node_os_upgrade_channel.
  #checkov:skip=CKV_AZURE_226:Ephemeral OS disks need a VM cache/temp disk; the default v5/v6 sizes have none, so managed OS disks are used.
  #checkov:skip=CKV_AZURE_227:Encryption at host needs the EncryptionAtHost feature registered on the subscription (a manual step this deployment avoids); disks are encrypted at rest by the platform.
  name                      = local.names.aks
  location                  = azurerm_resource_group.this.location
  resource_group_name       = azurerm_resource_group.this.name
  node_resource_group       = local.names.aks_node_rg
  dns_prefix                = local.names.aks
  kubernetes_version        = var.kubernetes_version
  sku_tier                  = var.aks_sku_tier
  node_os_upgrade_channel   = "NodeImage"
  automatic_upgrade_channel = null

  # Identity: no local accounts, Entra ID users and groups through Azure RBAC.
  local_account_disabled            = true
  role_based_access_control_enabled = true
  azure_active_directory_role_based_access_control {
    azure_rbac_enabled = true
    tenant_id          = data.azurerm_client_config.current.tenant_id
  }

  # Workload identity: pods exchange their ServiceAccount token for an Entra token.
  oidc_issuer_enabled       = true
  workload_identity_enabled = true

  # KEDA add-on (needs workload identity for Azure scalers).
  workload_autoscaler_profile {
    keda_enabled                    = true
    vertical_pod_autoscaler_enabled = false
  }

  # Secrets Store CSI driver + Azure Key Vault provider, polling for rotated secrets.
  key_vault_secrets_provider {
    secret_rotation_enabled  = true
    secret_rotation_interval = var.secrets_rotation_interval
  }

  # Application routing add-on: managed NGINX ingress controller with Key Vault certificates and,
  # when a zone is given, DNS records (main.ingress.tf, docs/adr/0008-ingress.md).
  web_app_routing {
    dns_zone_ids             = var.ingress.dns_zone_id == null ? [] : [var.ingress.dns_zone_id]
    default_nginx_controller = var.ingress.load_balancer
  }

  # Who may reach the API server at all (before Entra ID): var.aks_api_authorized_ip_ranges;
  # empty = any address.
  dynamic "api_server_access_profile" {
    for_each = length(var.aks_api_authorized_ip_ranges) > 0 ? [var.aks_api_authorized_ip_ranges] : []
    content {
      authorized_ip_ranges = api_server_access_profile.value
    }
  }

  azure_policy_enabled = true

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.aks.id]
  }

  default_node_pool {
    name                         = "system"
    temporary_name_for_rotation  = "systemtmp"
    vm_size                      = var.system_node_pool.vm_size
    orchestrator_version         = var.kubernetes_version
    auto_scaling_enabled         = true
    min_count                    = var.system_node_pool.min_count
    max_count                    = var.system_node_pool.max_count
    max_pods                     = 110
    only_critical_addons_enabled = true
    os_sku                       = "AzureLinux"
    os_disk_type                 = "Managed"
    vnet_subnet_id               = azurerm_subnet.aks.id
    zones                        = var.availability_zones
    tags                         = local.tags

    upgrade_settings {
      max_surge                     = "33%"
      drain_timeout_in_minutes      = 30
      node_soak_duration_in_minutes = 0
    }
  }

  network_profile {
    network_plugin      = "azure"
    network_plugin_mode = "overlay"
    network_data_plane  = "cilium"
    network_policy      = "cilium"
    load_balancer_sku   = "standard"
    outbound_type       = "loadBalancer"
    pod_cidr            = var.pod_cidr
    service_cidr        = var.service_cidr
    dns_service_ip      = cidrhost(var.service_cidr, 10)
  }

  # Container insights (logs) through the Azure Monitor agent with managed identity auth; what it
  # collects and where it sends it is the data collection rule in main.monitoring.tf.
  oms_agent {
    log_analytics_workspace_id      = azurerm_log_analytics_workspace.this.id
    msi_auth_for_monitoring_enabled = true
  }

  tags = local.tags

  lifecycle {
    precondition {
      condition     = contains(data.azurerm_kubernetes_service_versions.available.versions, var.kubernetes_version)
      error_message = "kubernetes_version is not offered by AKS in this region; run `az aks get-versions --location <region> -o table` and pick one."
    }
  }

  depends_on = [
    azurerm_role_assignment.aks_subnet_network_contributor,
    azurerm_subnet_network_security_group_association.aks,
  ]
}

# Arm64 user pool for the service (multi-arch standalone image).
resource "azurerm_kubernetes_cluster_node_pool" "arm64" {
  #checkov:skip=CKV_AZURE_227:Encryption at host needs a subscription feature registration (manual step); platform encryption at rest applies.
  name                        = "arm64"
  temporary_name_for_rotation = "arm64tmp"
  kubernetes_cluster_id       = azurerm_kubernetes_cluster.this.id
  mode                        = "User"
  os_type                     = "Linux"
  os_sku                      = "AzureLinux"
  vm_size                     = var.arm64_node_pool.vm_size
  orchestrator_version        = var.kubernetes_version
  auto_scaling_enabled        = true
  min_count                   = var.arm64_node_pool.min_count
  max_count                   = var.arm64_node_pool.max_count
  max_pods                    = 110
  os_disk_type                = "Managed"
  vnet_subnet_id              = azurerm_subnet.aks.id
  zones                       = var.availability_zones
  node_labels                 = { "mediflow.io/pool" = "arm64" }
  tags                        = local.tags

  upgrade_settings {
    max_surge                     = "33%"
    drain_timeout_in_minutes      = 30
    node_soak_duration_in_minutes = 0
  }
}

# amd64 user pool for the Functions host image (amd64-only): always with the functions-host
# overlay, otherwise only when asked for.
resource "azurerm_kubernetes_cluster_node_pool" "amd64" {
  #checkov:skip=CKV_AZURE_227:Encryption at host needs a subscription feature registration (manual step); platform encryption at rest applies.
  count = local.amd64_pool_enabled ? 1 : 0

  name                        = "amd64"
  temporary_name_for_rotation = "amd64tmp"
  kubernetes_cluster_id       = azurerm_kubernetes_cluster.this.id
  mode                        = "User"
  os_type                     = "Linux"
  os_sku                      = "AzureLinux"
  vm_size                     = var.amd64_node_pool.vm_size
  orchestrator_version        = var.kubernetes_version
  auto_scaling_enabled        = true
  min_count                   = var.amd64_node_pool.min_count
  max_count                   = var.amd64_node_pool.max_count
  max_pods                    = 110
  os_disk_type                = "Managed"
  vnet_subnet_id              = azurerm_subnet.aks.id
  zones                       = var.availability_zones
  node_labels                 = { "mediflow.io/pool" = "amd64" }
  tags                        = local.tags

  upgrade_settings {
    max_surge                     = "33%"
    drain_timeout_in_minutes      = 30
    node_soak_duration_in_minutes = 0
  }
}

# Deploy rights: the pipeline identity and the named admins (Azure RBAC for Kubernetes).
resource "azurerm_role_assignment" "aks_admins" {
  for_each = toset(concat(
    var.aks_admin_principal_ids,
    var.deployer_role_assignments_enabled ? [data.azurerm_client_config.current.object_id] : [],
  ))

  scope                = azurerm_kubernetes_cluster.this.id
  role_definition_name = "Azure Kubernetes Service RBAC Cluster Admin"
  principal_id         = each.value
  description          = "Kubernetes admin through Entra ID (local accounts are disabled)."
}

# Image pulls: the kubelet identity pulls from ACR (no pull secrets, admin user off).
resource "azurerm_role_assignment" "kubelet_acr_pull" {
  scope                = azurerm_container_registry.this.id
  role_definition_name = "AcrPull"
  principal_id         = azurerm_kubernetes_cluster.this.kubelet_identity[0].object_id
  principal_type       = "ServicePrincipal"
  description          = "AKS kubelet pulls the service images."
}

variable "kubernetes_version" {
  type        = string
  description = <<-EOT
    Full Kubernetes version (major.minor.patch) for the control plane and every node pool. Pinned
    on purpose: upgrades go through a reviewed change of this value. The plan fails early when the
    region does not offer it (`az aks get-versions --location <region> -o table` lists them).
    The KEDA add-on needs 1.32 or later for KEDA 2.15+ (workload identity only).
    Example: "1.34.1"
  EOT
  default     = "1.34.1"

  validation {
    condition = (
      can(regex("^1\\.[0-9]+\\.[0-9]+$", var.kubernetes_version))
      && try(tonumber(split(".", var.kubernetes_version)[1]) >= 32, false)
    )
    error_message = "kubernetes_version must be a full version 1.MINOR.PATCH with MINOR >= 32, e.g. \"1.34.1\"."
  }
}

variable "aks_sku_tier" {
  type        = string
  description = <<-EOT
    AKS control-plane tier. "Standard" has the uptime SLA and is the production default.
    Example: "Standard"
  EOT
  default     = "Standard"

  validation {
    condition     = contains(["Free", "Standard", "Premium"], var.aks_sku_tier)
    error_message = "aks_sku_tier must be one of Free, Standard, Premium."
  }
}

variable "availability_zones" {
  type        = list(string)
  description = <<-EOT
    Availability zones for the node pools; empty list = no zone pinning (for regions without
    zones or without the VM size in every zone).
    Example: ["1", "2", "3"]
  EOT
  default     = []

  validation {
    condition     = alltrue([for z in var.availability_zones : contains(["1", "2", "3"], z)])
    error_message = "availability_zones may only contain \"1\", \"2\" and \"3\"."
  }
}

variable "system_node_pool" {
  type = object({
    vm_size   = optional(string, "Standard_D2s_v5")
    min_count = optional(number, 2)
    max_count = optional(number, 3)
  })
  description = <<-EOT
    System node pool (amd64; only critical add-ons such as CoreDNS, KEDA, the CSI driver run here).
    Autoscaling between min_count and max_count.
    Example: { vm_size = "Standard_D2s_v5", min_count = 2, max_count = 3 }
  EOT
  default     = {}

  validation {
    condition = (
      var.system_node_pool.min_count >= 1
      && var.system_node_pool.max_count >= var.system_node_pool.min_count
      && var.system_node_pool.max_count <= 10
    )
    error_message = "system_node_pool needs 1 <= min_count <= max_count <= 10."
  }
}

variable "arm64_node_pool" {
  type = object({
    vm_size   = optional(string, "Standard_D2ps_v6")
    min_count = optional(number, 1)
    max_count = optional(number, 5)
  })
  description = <<-EOT
    User node pool for the service (linux/arm64; the standalone image is multi-arch). The VM size
    must be an Arm64 size (a "p" in the feature letters, e.g. D2ps_v6, D4pds_v6, E2ps_v6).
    Autoscaling between min_count and max_count; KEDA adds pods, the cluster autoscaler nodes.
    Example: { vm_size = "Standard_D2ps_v6", min_count = 1, max_count = 5 }
  EOT
  default     = {}

  validation {
    condition     = can(regex("^Standard_[A-Z]+[0-9]+p[a-z]*_v[5-9]$", var.arm64_node_pool.vm_size))
    error_message = "arm64_node_pool.vm_size must be an Arm64 size such as \"Standard_D2ps_v6\"."
  }

  validation {
    condition = (
      var.arm64_node_pool.min_count >= 0
      && var.arm64_node_pool.max_count >= max(var.arm64_node_pool.min_count, 1)
      && var.arm64_node_pool.max_count <= 100
    )
    error_message = "arm64_node_pool needs 0 <= min_count <= max_count, 1 <= max_count <= 100."
  }
}

variable "amd64_node_pool" {
  type = object({
    enabled   = optional(bool, false)
    vm_size   = optional(string, "Standard_D2s_v5")
    min_count = optional(number, 0)
    max_count = optional(number, 3)
  })
  description = <<-EOT
    amd64 user pool for the Azure Functions host image (amd64-only, overlay
    keda/overlays/functions-host). Created whenever var.overlay is "functions-host", whatever
    `enabled` says; `enabled = true` adds it to a standalone deployment too.
    Example: { enabled = true, vm_size = "Standard_D2s_v5", min_count = 0, max_count = 3 }
  EOT
  default     = {}

  validation {
    condition = (
      var.amd64_node_pool.min_count >= 0
      && var.amd64_node_pool.max_count >= max(var.amd64_node_pool.min_count, 1)
      && var.amd64_node_pool.max_count <= 100
    )
    error_message = "amd64_node_pool needs 0 <= min_count <= max_count, 1 <= max_count <= 100."
  }

  validation {
    condition     = !can(regex("^Standard_[A-Z]+[0-9]+p[a-z]*_v[5-9]$", var.amd64_node_pool.vm_size))
    error_message = "amd64_node_pool.vm_size must be an x86-64 size (not an Arm64 \"p\" size)."
  }
}

variable "aks_admin_principal_ids" {
  type        = list(string)
  description = <<-EOT
    Object ids of Entra users or groups that get "Azure Kubernetes Service RBAC Cluster Admin"
    (local accounts are disabled, so this and the pipeline identity are the only admins).
    Example: ["00000000-0000-0000-0000-000000000000"]
  EOT
  default     = []

  validation {
    condition     = alltrue([for id in var.aks_admin_principal_ids : can(regex("^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$", id))])
    error_message = "aks_admin_principal_ids must be object ids (GUIDs)."
  }
}

variable "aks_api_authorized_ip_ranges" {
  type        = list(string)
  description = <<-EOT
    Public IPv4 ranges (CIDR) allowed to reach the AKS API server; everything else is refused
    before authentication. Empty = open to the internet (Entra ID still required). Set it to the
    administrators' and self-hosted agents' ranges: Microsoft-hosted agents have no fixed range,
    so with a non-empty list the Deploy stage needs a self-hosted agent (docs/deploy-to-azure.md).
    Example: ["203.0.113.0/28"]
  EOT
  default     = []

  validation {
    condition     = alltrue([for r in var.aks_api_authorized_ip_ranges : can(cidrhost(r, 0)) && can(regex("^[0-9.]+/[0-9]+$", r)) && !startswith(r, "0.0.0.0/")])
    error_message = "aks_api_authorized_ip_ranges must be IPv4 CIDRs such as \"203.0.113.0/28\" (not 0.0.0.0/x)."
  }
}

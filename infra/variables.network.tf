variable "vnet_address_space" {
  type        = string
  description = <<-EOT
    Address space (CIDR) of the virtual network. Pods use an overlay range, so a /16 is plenty.
    Example: "10.42.0.0/16"
  EOT
  default     = "10.42.0.0/16"

  validation {
    condition     = can(cidrhost(var.vnet_address_space, 0)) && tonumber(split("/", var.vnet_address_space)[1]) <= 24
    error_message = "vnet_address_space must be an IPv4 CIDR of /24 or larger, e.g. \"10.42.0.0/16\"."
  }
}

variable "aks_subnet_prefix" {
  type        = string
  description = <<-EOT
    CIDR of the subnet for the AKS nodes; must lie inside vnet_address_space. With Azure CNI
    overlay only the nodes take addresses from it.
    Example: "10.42.0.0/22"
  EOT
  default     = "10.42.0.0/22"

  validation {
    condition     = can(cidrhost(var.aks_subnet_prefix, 0)) && tonumber(split("/", var.aks_subnet_prefix)[1]) <= 27
    error_message = "aks_subnet_prefix must be an IPv4 CIDR of /27 or larger, e.g. \"10.42.0.0/22\"."
  }
}

variable "pod_cidr" {
  type        = string
  description = <<-EOT
    Overlay CIDR for pod IPs (Azure CNI overlay); must not overlap the VNet or peered networks.
    Example: "10.244.0.0/16"
  EOT
  default     = "10.244.0.0/16"

  validation {
    condition     = can(cidrhost(var.pod_cidr, 0))
    error_message = "pod_cidr must be an IPv4 CIDR, e.g. \"10.244.0.0/16\"."
  }
}

variable "service_cidr" {
  type        = string
  description = <<-EOT
    CIDR for Kubernetes Service IPs; must not overlap the VNet or pod_cidr. The DNS service takes
    its 10th address.
    Example: "10.0.0.0/16"
  EOT
  default     = "10.0.0.0/16"

  validation {
    condition     = can(cidrhost(var.service_cidr, 10))
    error_message = "service_cidr must be an IPv4 CIDR with at least 16 addresses, e.g. \"10.0.0.0/16\"."
  }
}

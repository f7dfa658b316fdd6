variable "storage_replication_type" {
  type        = string
  description = <<-EOT
    Replication of the queue storage account. ZRS survives a zone outage; use LRS in a region
    without zones.
    Example: "ZRS"
  EOT
  default     = "ZRS"

  validation {
    condition     = contains(["LRS", "ZRS", "GRS", "GZRS", "RAGRS", "RAGZRS"], var.storage_replication_type)
    error_message = "storage_replication_type must be one of LRS, ZRS, GRS, GZRS, RAGRS, RAGZRS."
  }
}

variable "queue_submitters" {
  type = list(object({
    object_id   = string
    type        = string
    description = string
  }))
  description = <<-EOT
    Who may send batches to the queue: Entra users, groups or service principals, each given
    "Storage Queue Data Message Sender" on the batch queue only (not the poison queue, not read).
    type is the principal type: "User", "Group" or "ServicePrincipal".
    Example: [{ object_id = "00000000-0000-0000-0000-000000000000", type = "Group", description = "site uploaders" }]
  EOT
  default     = []

  validation {
    condition = alltrue([for s in var.queue_submitters :
      can(regex("^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$", s.object_id))
      && contains(["User", "Group", "ServicePrincipal"], s.type)
    && length(s.description) > 0])
    error_message = "queue_submitters: object_id must be a GUID, type User, Group or ServicePrincipal, description non-empty."
  }
}

variable "queue_submitter_network" {
  type = object({
    ip_ranges = optional(list(string), [])
    private_endpoint = optional(object({
      subnet_id           = string
      private_dns_zone_id = optional(string)
    }))
  })
  description = <<-EOT
    How submitters reach the queue through the storage firewall (default deny; the AKS subnet is
    always allowed). ip_ranges: public IPv4 addresses or CIDR ranges (storage firewall rules take a
    bare address for one host; /31 and /32 are refused by Azure). private_endpoint: a subnet (in
    this or a peered VNet) for a private endpoint of the queue service, and optionally the
    privatelink.queue.core.windows.net private DNS zone to register it in.
    Example: { ip_ranges = ["203.0.113.0/28"] }
  EOT
  default     = {}

  validation {
    condition = alltrue([for r in var.queue_submitter_network.ip_ranges :
    can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+(/([0-9]|[12][0-9]|30))?$", r)) && !startswith(r, "0.0.0.0")])
    error_message = "queue_submitter_network.ip_ranges: IPv4 addresses or CIDRs up to /30 (Azure refuses /31 and /32), not 0.0.0.0."
  }
}

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

variable "audit_export" {
  type = object({
    retention_days = optional(number, 2557)
    writer_ids     = optional(list(string), [])
    ip_ranges      = optional(list(string), [])
  })
  description = <<-EOT
    The second, immutable copy of the audit trail (docs/audit-export.md): a storage account whose
    container `audit-exports` has a LOCKED time-based retention policy, so no one (the writer,
    an owner, Microsoft support) can change or delete an exported blob before retention_days.
    - retention_days: days each exported blob stays immutable (1-146000; a locked policy can be
      extended later, never shortened). Default 2557 (7 years).
    - writer_ids: object ids (users, groups, service principals) that run the export; they get
      "Storage Blob Data Contributor" on that container only (immutability still forbids
      overwrite and delete).
    - ip_ranges: public IPv4 addresses or CIDRs (up to /30) the exporters come from, besides the
      AKS subnet.
    Example: { retention_days = 2557, writer_ids = ["00000000-0000-0000-0000-000000000000"] }
  EOT
  default     = {}

  validation {
    condition     = var.audit_export.retention_days >= 1 && var.audit_export.retention_days <= 146000 && floor(var.audit_export.retention_days) == var.audit_export.retention_days
    error_message = "audit_export.retention_days must be a whole number of days between 1 and 146000."
  }

  validation {
    condition     = alltrue([for id in var.audit_export.writer_ids : can(regex("^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$", id))])
    error_message = "audit_export.writer_ids must be object ids (GUIDs)."
  }

  validation {
    condition = alltrue([for r in var.audit_export.ip_ranges :
    can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+(/([0-9]|[12][0-9]|30))?$", r)) && !startswith(r, "0.0.0.0")])
    error_message = "audit_export.ip_ranges: IPv4 addresses or CIDRs up to /30 (Azure refuses /31 and /32), not 0.0.0.0."
  }
}

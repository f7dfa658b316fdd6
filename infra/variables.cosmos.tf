variable "cosmos_consistency_level" {
  type        = string
  description = <<-EOT
    Default consistency of the Cosmos DB account. "Session" gives read-your-writes for the
    service's POST-then-GET at the lowest cost.
    Example: "Session"
  EOT
  default     = "Session"

  validation {
    condition     = contains(["Strong", "BoundedStaleness", "Session", "ConsistentPrefix", "Eventual"], var.cosmos_consistency_level)
    error_message = "cosmos_consistency_level must be Strong, BoundedStaleness, Session, ConsistentPrefix or Eventual."
  }
}

variable "cosmos_max_throughput" {
  type        = number
  description = <<-EOT
    Autoscale maximum RU/s of the `records` container (it scales between 10% and 100% of it).
    Example: 1000
  EOT
  default     = 1000

  validation {
    condition     = var.cosmos_max_throughput >= 1000 && var.cosmos_max_throughput % 1000 == 0
    error_message = "cosmos_max_throughput must be a multiple of 1000 and at least 1000."
  }
}

variable "cosmos_zone_redundant" {
  type        = bool
  description = <<-EOT
    Make the Cosmos DB region zone-redundant (needs a region with availability zones).
    Example: false
  EOT
  default     = false

  validation {
    condition     = var.cosmos_zone_redundant != null
    error_message = "cosmos_zone_redundant must be true or false."
  }
}

variable "cosmos_audit_max_throughput" {
  type        = number
  description = <<-EOT
    Autoscale maximum RU/s of the `audit` container (one small item per request and event).
    Example: 1000
  EOT
  default     = 1000

  validation {
    condition     = var.cosmos_audit_max_throughput >= 1000 && var.cosmos_audit_max_throughput % 1000 == 0
    error_message = "cosmos_audit_max_throughput must be a multiple of 1000 and at least 1000."
  }
}

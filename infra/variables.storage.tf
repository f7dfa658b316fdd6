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

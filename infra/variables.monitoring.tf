variable "log_retention_days" {
  type        = number
  description = <<-EOT
    Retention of the Log Analytics workspace (container logs, audit and diagnostic logs).
    Example: 30
  EOT
  default     = 30

  validation {
    condition     = var.log_retention_days >= 30 && var.log_retention_days <= 730
    error_message = "log_retention_days must be between 30 and 730."
  }
}

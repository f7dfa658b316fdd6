variable "acr_sku" {
  type        = string
  description = <<-EOT
    Container registry tier. "Premium" adds retention of untagged manifests, dedicated data
    endpoints and zone redundancy; "Standard" is cheaper for a test environment.
    Example: "Premium"
  EOT
  default     = "Premium"

  validation {
    condition     = contains(["Standard", "Premium"], var.acr_sku)
    error_message = "acr_sku must be Standard or Premium (Basic lacks the throughput for multi-arch pushes)."
  }
}

variable "api_key_version" {
  type        = number
  description = <<-EOT
    Version of the generated API key. Terraform writes a new random key to the Key Vault secret
    `mediflow-api-keys` only when this number changes (write-only argument: the key is never in
    the state or a plan). Bump it to rotate; the CSI driver remounts the file within its rotation
    interval and the service re-reads it.
    Example: 1
  EOT
  default     = 1

  validation {
    condition     = var.api_key_version >= 1 && floor(var.api_key_version) == var.api_key_version
    error_message = "api_key_version must be a whole number >= 1."
  }
}

variable "api_key_length" {
  type        = number
  description = <<-EOT
    Length of the generated API key (letters and digits only, so it is safe in a header and in a
    one-key-per-line file).
    Example: 48
  EOT
  default     = 48

  validation {
    condition     = var.api_key_length >= 32 && var.api_key_length <= 128
    error_message = "api_key_length must be between 32 and 128."
  }
}

variable "key_vault_soft_delete_retention_days" {
  type        = number
  description = <<-EOT
    Days a deleted vault or secret stays recoverable (purge protection is always on).
    Example: 90
  EOT
  default     = 90

  validation {
    condition     = var.key_vault_soft_delete_retention_days >= 7 && var.key_vault_soft_delete_retention_days <= 90
    error_message = "key_vault_soft_delete_retention_days must be between 7 and 90."
  }
}

variable "secrets_rotation_interval" {
  type        = string
  description = <<-EOT
    How often the Key Vault CSI driver re-reads mounted secrets (AKS add-on rotation poll).
    Example: "2m"
  EOT
  default     = "2m"

  validation {
    condition     = can(regex("^[0-9]+[smh]$", var.secrets_rotation_interval))
    error_message = "secrets_rotation_interval must be a duration such as \"2m\", \"120s\" or \"1h\"."
  }
}

variable "api_key_version" {
  type        = number
  description = <<-EOT
    Version of the generated API key. Terraform writes a new random key to the Key Vault secret
    `mediflow-api-keys` only when this number changes (write-only argument: the key is never in
    the state or a plan). Bump it to rotate: the file becomes "<new key>\n<previous key>\n", so
    both work until the next rotation (the overlap); the CSI driver remounts the file within
    secrets_rotation_interval and the service re-reads it. Procedure: docs/deploy-to-azure.md.
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

variable "api_key_keep_previous" {
  type        = bool
  description = <<-EOT
    On a rotation (api_key_version raised), keep the key that was current until now as the second
    line of the file, valid until the next rotation. Set false together with a version bump only
    to revoke a leaked key at once (every client must then switch immediately).
    Example: true
  EOT
  default     = true

  validation {
    condition     = var.api_key_keep_previous != null
    error_message = "api_key_keep_previous must be true or false."
  }
}

variable "key_vault_allowed_ip_ranges" {
  type        = list(string)
  description = <<-EOT
    Public IP ranges (CIDR) allowed through the firewalls of both Key Vaults (API keys and TLS
    certificate) besides the AKS subnet: the people or self-hosted agents that run Terraform,
    import the certificate or read the current API key. Everything else is denied.
    Example: ["203.0.113.0/28"]
  EOT
  default     = []

  validation {
    condition     = alltrue([for r in var.key_vault_allowed_ip_ranges : can(cidrhost(r, 0)) && !startswith(r, "0.0.0.0/")])
    error_message = "key_vault_allowed_ip_ranges must be IPv4 CIDRs (not 0.0.0.0/x)."
  }
}

variable "pipeline_agent_ip_ranges" {
  type        = list(string)
  description = <<-EOT
    Set by the pipeline only: the public address of the Microsoft-hosted agent running this job
    (a /32), which infra/scripts/key-vault-agent-access.sh opens before Terraform runs and closes
    when the job ends. Passing it keeps the refreshed firewall and the configuration equal, so a
    plan without changes stays without changes. Leave empty when running by hand.
    Example: ["198.51.100.7/32"]
  EOT
  default     = []

  validation {
    condition     = alltrue([for r in var.pipeline_agent_ip_ranges : can(regex("^[0-9.]+/32$", r))])
    error_message = "pipeline_agent_ip_ranges holds single addresses written as a.b.c.d/32."
  }
}

variable "api_key_reader_ids" {
  type        = list(string)
  description = <<-EOT
    Object ids of the Entra users or groups who hand the API key to clients: they get "Key Vault
    Secrets User" on the secret mediflow-api-keys only (and reach it from
    key_vault_allowed_ip_ranges). Line 1 of the secret is the current key.
    Example: ["00000000-0000-0000-0000-000000000000"]
  EOT
  default     = []

  validation {
    condition     = alltrue([for id in var.api_key_reader_ids : can(regex("^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$", id))])
    error_message = "api_key_reader_ids must be object ids (GUIDs)."
  }
}

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


variable "clients" {
  type = map(object({
    roles             = list(string)
    sites             = list(string)
    key_version       = optional(number, 1)
    keep_previous_key = optional(bool, true)
  }))
  description = <<-EOT
    The API clients, by client id. Each gets its own generated key (Key Vault secret
    mediflow-client-<id>, "." and "_" written as "-", handed out by client_key_reader_ids), and one
    line in the service's key table (secret mediflow-api-keys, mounted as MEDIFLOW_API_KEYS_FILE),
    which holds only the SHA-256 of each key, never a key.
    - roles: what the client may do, any of "submit", "read", "review", "audit".
    - sites: the sites it may act for, upper-case letters and digits (3-20), or ["*"] for all.
    - key_version: raise by one to rotate this client's key. The secret becomes
      "<new key>\n<previous key>\n" and both digests are in the table until the next rotation
      (the overlap), so the client can switch at any time before then. New clients start at 1.
    - keep_previous_key: false together with a key_version bump revokes the old key at once
      (a leaked key); the client must switch immediately.
    Example: { "site001-uploader" = { roles = ["submit"], sites = ["SITE001"] }, "monitor-eu" = { roles = ["read", "review"], sites = ["*"] } }
  EOT
  default     = {}

  validation {
    condition     = alltrue([for id in keys(var.clients) : can(regex("^[A-Za-z0-9._-]{1,64}$", id))])
    error_message = "clients: every client id must be 1-64 characters from A-Z a-z 0-9 . _ -."
  }

  validation {
    # Key Vault secret names are case-insensitive and allow only letters, digits and dashes.
    condition     = length(distinct([for id in keys(var.clients) : lower(replace(replace(id, ".", "-"), "_", "-"))])) == length(var.clients)
    error_message = "clients: two client ids map to the same Key Vault secret name (ids differing only in case or in . _ - collide)."
  }

  validation {
    condition = alltrue([for c in values(var.clients) :
    length(c.roles) > 0 && length(distinct(c.roles)) == length(c.roles) && alltrue([for r in c.roles : contains(["submit", "read", "review", "audit"], r)])])
    error_message = "clients: roles must be a non-empty list without repeats, from \"submit\", \"read\", \"review\", \"audit\"."
  }

  validation {
    condition = alltrue([for c in values(var.clients) :
      length(c.sites) > 0 && length(distinct(c.sites)) == length(c.sites)
      && ((length(c.sites) == 1 && contains(c.sites, "*")) || alltrue([for s in c.sites : can(regex("^[A-Z0-9]{3,20}$", s))]))
    ])
    error_message = "clients: sites must be [\"*\"] or a non-empty list of upper-case site ids (A-Z, 0-9, 3-20 characters) without repeats."
  }

  validation {
    condition     = alltrue([for c in values(var.clients) : c.key_version >= 1 && floor(c.key_version) == c.key_version && c.keep_previous_key != null])
    error_message = "clients: key_version must be a whole number >= 1 and keep_previous_key true or false."
  }
}

variable "client_key_reader_ids" {
  type        = list(string)
  description = <<-EOT
    Object ids of the Entra users or groups who hand the keys to the clients: they get "Key Vault
    Secrets User" on the mediflow-client-<id> secrets only (never on the key table, which the
    service alone reads), and reach them from key_vault_allowed_ip_ranges. Line 1 of a client's
    secret is its current key.
    Example: ["00000000-0000-0000-0000-000000000000"]
  EOT
  default     = []

  validation {
    condition     = alltrue([for id in var.client_key_reader_ids : can(regex("^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$", id))])
    error_message = "client_key_reader_ids must be object ids (GUIDs)."
  }
}

variable "read_only_plan" {
  type        = bool
  description = <<-EOT
    Set by the pipeline only, for plans of branches and pull requests, which run with the
    read-only service connection (Reader + state blob reader, no Key Vault data access): Terraform
    then reads nothing from Key Vault (the keys that a rotation keeps, the key table's digests) and
    the plan is run with -refresh=false -lock=false. Such a plan shows what a change would do to
    the resources; it is never applied (that identity could not). Leave false everywhere else.
    Example: false
  EOT
  default     = false

  validation {
    condition     = var.read_only_plan != null
    error_message = "read_only_plan must be true or false."
  }
}

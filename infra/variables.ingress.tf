variable "ingress" {
  type = object({
    host                    = string
    certificate_name        = optional(string, "mediflow-tls")
    dns_zone_id             = optional(string)
    load_balancer           = optional(string, "External")
    certificate_officer_ids = optional(list(string), [])
    allowed_source_ranges   = optional(list(string), [])
  })
  description = <<-EOT
    Public HTTPS endpoint of the HTTP functions (AKS application routing add-on, managed NGINX).
    - host: the DNS name clients call; the TLS certificate must cover it.
    - certificate_name: the certificate in the TLS Key Vault (output tls_key_vault_name); imported
      by hand from your CA, or created self-signed for a test environment (docs/deploy-to-azure.md).
    - dns_zone_id: resource id of an Azure DNS zone that holds host (the add-on then writes the A
      record); null = you point host at the ingress IP yourself.
    - load_balancer: "External" (public IP) or "Internal" (VNet-only IP, behind your own gateway).
    - certificate_officer_ids: object ids of the users/groups who import and renew the certificate.
    - allowed_source_ranges: client IPv4/IPv6 CIDRs the ingress accepts (NGINX answers 403 to any
      other address); empty = open to every address. Wired to the Ingress annotation
      nginx.ingress.kubernetes.io/whitelist-source-range (settings INGRESS_SOURCE_RANGES).
    Example: { host = "mediflow.example.org", dns_zone_id = "/subscriptions/…/dnszones/example.org" }
  EOT

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.ingress.host))
    error_message = "ingress.host must be a lower-case DNS name such as \"mediflow.example.org\"."
  }

  validation {
    condition     = can(regex("^[0-9A-Za-z-]{1,127}$", var.ingress.certificate_name))
    error_message = "ingress.certificate_name must be a Key Vault object name (letters, digits, dashes)."
  }

  validation {
    condition     = var.ingress.dns_zone_id == null || can(regex("(?i)^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft.Network/dnszones/[^/]+$", var.ingress.dns_zone_id))
    error_message = "ingress.dns_zone_id must be null or the resource id of an Azure DNS zone."
  }

  validation {
    condition     = contains(["External", "Internal"], var.ingress.load_balancer)
    error_message = "ingress.load_balancer must be External or Internal."
  }

  validation {
    condition     = alltrue([for id in var.ingress.certificate_officer_ids : can(regex("^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$", id))])
    error_message = "ingress.certificate_officer_ids must be object ids (GUIDs)."
  }

  validation {
    condition     = alltrue([for r in var.ingress.allowed_source_ranges : can(cidrhost(r, 0)) && can(regex("/[0-9]+$", r)) && !contains(["0.0.0.0/0", "::/0"], r)])
    error_message = "ingress.allowed_source_ranges must be CIDRs such as \"203.0.113.0/28\"; leave the list empty (not 0.0.0.0/0) for an open endpoint."
  }
}

# Environment "prod". No secrets here: names, sizes and object ids only. Replace every "example"
# value before the first apply (docs/deploy-to-azure.md, step 3). State key: mediflow-prod.tfstate.
environment = "prod"
location    = "swedencentral"
overlay     = "standalone"

aks_sku_tier       = "Standard"
availability_zones = ["1", "2", "3"]
system_node_pool   = { vm_size = "Standard_D2s_v5", min_count = 2, max_count = 3 }
arm64_node_pool    = { vm_size = "Standard_D2ps_v6", min_count = 2, max_count = 5 }

acr_sku                  = "Premium"
storage_replication_type = "ZRS"
cosmos_zone_redundant    = true
cosmos_max_throughput    = 4000

ingress = {
  host             = "mediflow.example.org"
  certificate_name = "mediflow-tls"
  # dns_zone_id    = "/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.Network/dnszones/example.org"
}

aks_admin_principal_ids     = []
client_key_reader_ids       = []
key_vault_allowed_ip_ranges = []
queue_submitters            = []
queue_submitter_network     = { ip_ranges = [] }

# Who the API clients are (roles submit/read/review/audit, sites or "*"). Raise a client's
# key_version to rotate its key (the previous one stays valid until the next rotation).
# pipeline-smoke is the pipeline's smoke test (site SYNTHETIC only).
clients = {
  "pipeline-smoke"   = { roles = ["submit", "read"], sites = ["SYNTHETIC"] }
  "site001-uploader" = { roles = ["submit"], sites = ["SITE001"] }
  "monitor-eu"       = { roles = ["read", "review"], sites = ["*"] }
}

# Source ranges: empty = open. Production should list the sites' and administrators' ranges
# (ingress.allowed_source_ranges) and the administrators' and self-hosted agents' ranges (API).
aks_api_authorized_ip_ranges = []

# Exported audit copies stay immutable for 7 years.
audit_export = { retention_days = 2557 }

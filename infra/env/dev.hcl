# Environment "dev": a small, cheap copy for the pipeline's every run on main. No secrets here:
# names, sizes and object ids only. Replace every "example" value before the first apply
# (docs/deploy-to-azure.md, step 3). State key: mediflow-dev.tfstate (the pipeline derives it).
environment = "dev"
location    = "swedencentral"
overlay     = "standalone"

aks_sku_tier     = "Free"
system_node_pool = { vm_size = "Standard_D2s_v5", min_count = 1, max_count = 2 }
arm64_node_pool  = { vm_size = "Standard_D2ps_v6", min_count = 1, max_count = 2 }

acr_sku                  = "Standard"
storage_replication_type = "LRS"
cosmos_max_throughput    = 1000

ingress = {
  host             = "mediflow-dev.example.org"
  certificate_name = "mediflow-tls"
  # dns_zone_id    = "/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.Network/dnszones/example.org"
}

# Object ids of the people who administer the cluster, import the certificate, send test batches.
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

# Source ranges: empty = open. Set them once the clients' and administrators' ranges are known.
aks_api_authorized_ip_ranges = []

audit_export = { retention_days = 30 }

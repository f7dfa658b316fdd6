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
api_key_reader_ids          = []
key_vault_allowed_ip_ranges = []
queue_submitters            = []
queue_submitter_network     = { ip_ranges = [] }

# Raise by one to rotate the API key (the previous key stays valid until the next rotation).
api_key_version = 1

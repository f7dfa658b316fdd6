# Names shared with the rest of the repository (docs/operations-contract.md) and resource names.

locals {
  # --- Operations contract: change here and in docs/operations-contract.md together. ---
  contract = {
    namespace        = "mediflow"
    service_account  = "mediflow"
    keda_namespace   = "kube-system"
    keda_sa          = "keda-operator"
    cosmos_database  = "mediflow"
    cosmos_container = "records"
    cosmos_partition = "/id"
    # The audit trail (COSMOS_AUDIT_CONTAINER): one hash chain per partition.
    cosmos_audit_container = "audit"
    cosmos_audit_partition = "/chain"
    queue_name             = "mediflow-batches"
    poison_queue_name      = "mediflow-batches-poison"
    api_keys_secret        = "mediflow-api-keys"
    image_repository       = "mediflow"
    functions_image_rep    = "mediflow-functions"
  }

  # The federated subjects must match the ServiceAccounts in keda/ exactly.
  app_federated_subject  = "system:serviceaccount:${local.contract.namespace}:${local.contract.service_account}"
  keda_federated_subject = "system:serviceaccount:${local.contract.keda_namespace}:${local.contract.keda_sa}"

  # Indexing policy of the records container: the JSON file is the single source.
  cosmos_indexing_policy = jsondecode(file("${path.module}/policies/cosmos-indexing-policy.json"))
  # Indexing policy of the audit container (queries on time, client, record_ids and seq).
  cosmos_audit_indexing_policy = jsondecode(file("${path.module}/policies/cosmos-audit-indexing-policy.json"))

  # Globally unique names get a short, stable suffix derived from subscription and environment,
  # so no one has to pick (or remember) one.
  workload = "mediflow"
  suffix   = substr(sha256("${data.azurerm_client_config.current.subscription_id}/${var.environment}"), 0, 6)
  base     = "${local.workload}-${var.environment}"

  names = {
    resource_group = "rg-${local.base}"
    vnet           = "vnet-${local.base}"
    aks_subnet     = "snet-aks"
    aks_nsg        = "nsg-${local.base}-aks"
    aks            = "aks-${local.base}"
    aks_node_rg    = "rg-${local.base}-aks-nodes"
    aks_identity   = "id-${local.base}-aks"
    app_identity   = "id-${local.base}-app"
    keda_identity  = "id-${local.base}-keda"
    acr            = "cr${local.workload}${var.environment}${local.suffix}"
    keda_role      = "MediFlow KEDA queue length reader (${var.environment})"
    key_vault      = "kv-${local.base}-${local.suffix}"
    tls_key_vault  = "kvtls-mf-${var.environment}-${local.suffix}"
    cosmos         = "cosmos-${local.base}-${local.suffix}"
    storage        = "st${local.workload}${var.environment}${local.suffix}"
    audit_storage  = "staudit${var.environment}${local.suffix}"
    log_analytics  = "log-${local.base}"
    ci_dcr         = "dcr-${local.base}-container-insights"
    queue_pe       = "pe-${local.base}-queue"
  }

  # The functions-host overlay needs the amd64 pool (no arm64 Functions host image exists).
  amd64_pool_enabled = var.overlay == "functions-host" || var.amd64_node_pool.enabled

  tags = merge(var.tags, {
    workload    = local.workload
    environment = var.environment
    managed_by  = "terraform"
  })
}

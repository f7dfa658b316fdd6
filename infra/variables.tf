# General settings shared by every part of the deployment.

variable "location" {
  type        = string
  description = <<-EOT
    Azure region for every resource. It must offer AKS, Cosmos DB and the arm64 (Cobalt/Ampere)
    VM size chosen for the user node pool.
    Example: "swedencentral"
  EOT
  default     = "swedencentral"

  validation {
    condition     = can(regex("^[a-z]+[a-z0-9]*$", var.location))
    error_message = "location must be an Azure region name in lower case without spaces, e.g. \"swedencentral\"."
  }
}

variable "environment" {
  type        = string
  description = <<-EOT
    Short environment name, used in every resource name (2-5 lower-case letters).
    Example: "prod"
  EOT
  default     = "prod"

  validation {
    condition     = can(regex("^[a-z]{2,5}$", var.environment))
    error_message = "environment must be 2-5 lower-case letters, e.g. \"prod\" or \"dev\"."
  }
}

variable "tags" {
  type        = map(string)
  description = <<-EOT
    Extra tags added to every resource (the module always sets workload and environment).
    Example: { owner = "platform-team", cost_center = "cct-042" }
  EOT
  default     = {}

  validation {
    condition     = alltrue([for k, v in var.tags : length(k) <= 512 && length(v) <= 256])
    error_message = "Azure tag names are at most 512 characters and values at most 256."
  }
}

variable "deployer_role_assignments_enabled" {
  type        = bool
  description = <<-EOT
    Grant the identity that runs Terraform (the pipeline's service connection) the data-plane roles
    the pipeline needs: Key Vault Secrets Officer (to write the API key, and read it in the smoke
    test) and Azure Kubernetes Service RBAC Cluster Admin (to deploy the manifests).
    Turn off only when those roles are granted some other way.
    Example: true
  EOT
  default     = true

  validation {
    condition     = var.deployer_role_assignments_enabled != null
    error_message = "deployer_role_assignments_enabled must be true or false."
  }
}

variable "overlay" {
  type        = string
  description = <<-EOT
    Which keda/overlays/<overlay> the pipeline deploys to this environment: "standalone" (the
    handler alone, arm64 nodes) or "functions-host" (the Azure Functions host in front of the
    handler, amd64 nodes). "functions-host" also creates the amd64 pool and the blob containers and
    roles the host keeps its state in (main.storage.tf). The pipeline reads it from the output
    `overlay`, so this variable file is the one place it is chosen.
    Example: "standalone"
  EOT
  default     = "standalone"

  validation {
    condition     = contains(["standalone", "functions-host"], var.overlay)
    error_message = "overlay must be \"standalone\" or \"functions-host\" (the folders under keda/overlays)."
  }
}

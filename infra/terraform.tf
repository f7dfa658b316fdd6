# Terraform and provider versions, and the remote state backend.
#
# Terraform >= 1.11 is needed for write-only arguments (`value_wo`) and ephemeral resources:
# the API key is generated and written to Key Vault without ever entering the state or a plan.

terraform {
  required_version = ">= 1.11.0, < 2.0.0"

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 4.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.7"
    }
    time = {
      source  = "hashicorp/time"
      version = "~> 0.13"
    }
  }

  # Partial configuration: storage account, container, key and resource group are passed by
  # `terraform init -backend-config=...` (see docs/deploy-to-azure.md). Entra ID auth only.
  backend "azurerm" {
    use_azuread_auth = true
  }
}

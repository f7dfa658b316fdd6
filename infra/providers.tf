provider "azurerm" {
  # Identity-based access everywhere: the storage account has shared keys disabled.
  storage_use_azuread = true

  features {
    key_vault {
      # Purge protection is on; never try to purge on destroy.
      purge_soft_delete_on_destroy    = false
      recover_soft_deleted_key_vaults = true
    }
    resource_group {
      prevent_deletion_if_contains_resources = true
    }
    storage {
      # The storage account is closed to the internet (only the AKS subnet may reach it); queues
      # are created through Azure Resource Manager, so the provider must not probe the data plane.
      data_plane_available = false
    }
  }
}

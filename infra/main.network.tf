# Virtual network and the AKS node subnet. Service endpoints let Cosmos DB and Storage admit
# traffic from this subnet only (their firewalls deny everything else).

resource "azurerm_virtual_network" "this" {
  name                = local.names.vnet
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  address_space       = [var.vnet_address_space]
  tags                = local.tags
}

resource "azurerm_subnet" "aks" {
  name                            = local.names.aks_subnet
  resource_group_name             = azurerm_resource_group.this.name
  virtual_network_name            = azurerm_virtual_network.this.name
  address_prefixes                = [var.aks_subnet_prefix]
  default_outbound_access_enabled = false
  service_endpoints               = ["Microsoft.AzureCosmosDB", "Microsoft.Storage", "Microsoft.KeyVault", "Microsoft.ContainerRegistry"]
}

# No custom rules: the platform defaults allow VNet and load-balancer traffic and deny inbound
# from the internet. AKS adds rules for LoadBalancer Services itself.
resource "azurerm_network_security_group" "aks" {
  name                = local.names.aks_nsg
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  tags                = local.tags
}

resource "azurerm_subnet_network_security_group_association" "aks" {
  subnet_id                 = azurerm_subnet.aks.id
  network_security_group_id = azurerm_network_security_group.aks.id
}

// Key Vault for the Dataverse client secret (client_secret mode). RBAC mode: no access policies; the
// app's identity reads secrets as Key Vault Secrets User, the operator writes the secret as Key Vault
// Secrets Officer (both granted in rbac.bicep). The secret value is never part of a deployment: the
// operator stores it with `az keyvault secret set` (docs/runbook.md 1b).
param name string
param location string
param tags object = {}

@description('Purge protection: a deleted vault (and its secret) cannot be purged before the retention period ends.')
param purgeProtection bool = true

@minValue(7)
@maxValue(90)
@description('Days a deleted vault or secret can be recovered.')
param softDeleteRetentionInDays int = 90

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    // Purge protection can be switched on but never off again; ARM rejects an explicit false.
    enablePurgeProtection: purgeProtection ? true : null
    publicNetworkAccess: 'Enabled' // Flex without VNet integration has no fixed outbound address to allow
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

output name string = vault.name
output id string = vault.id
output uri string = vault.properties.vaultUri

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
  // checkov:skip=CKV_AZURE_109:no VNet - Flex Consumption without VNet integration has no fixed outbound address to allow; access is Entra ID + RBAC only
  // checkov:skip=CKV_AZURE_189:same as CKV_AZURE_109 - public endpoint, RBAC-only data plane, one secret read by one identity
  // checkov:skip=CKV_AZURE_110:enablePurgeProtection is (purgeProtection ? true : null) because ARM rejects an explicit false; the parameter defaults to true (tests/infra asserts it)
  // checkov:skip=CKV_AZURE_42:soft delete is on and purge protection defaults to true (see CKV_AZURE_110); checkov cannot evaluate the conditional
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

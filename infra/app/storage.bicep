// The storage account: the host's AzureWebJobsStorage, the app's queues and sync-state table, and the
// Flex deployment package. Identity only: account keys (and so connection strings and SAS built from
// them) are switched off, so nothing here or in the app settings can leak a key.
param name string
param location string
param tags object = {}

@description('Queues to create: the push queue, its poison queue, the results queue and its poison queue.')
param queueNames array

@description('Tables to create: the sync-state table.')
param tableNames array

@description('Blob container that holds the Flex Consumption deployment package.')
param deploymentContainerName string

@description('Replication. Locally redundant by default: every message and state row can be rebuilt by pushing again, and the leads themselves live in Dataverse.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_RAGRS'
])
param skuName string = 'Standard_LRS'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35:no VNet - Flex Consumption without VNet integration reaches storage over its public endpoint; shared keys are off, Entra ID only
  // checkov:skip=CKV_AZURE_59:same as CKV_AZURE_35 - public endpoint, no account keys, no anonymous blob access
  // checkov:skip=CKV_AZURE_206:locally redundant by choice (skuName allows ZRS/GRS) - queue messages and sync state can be rebuilt by pushing again; leads live in Dataverse
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false // Entra ID only: the app, the host and the deployment use the managed identity
    defaultToOAuthAuthentication: true // the portal's storage browser signs in with Entra ID too
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled' // Flex without VNet integration reaches storage over its public endpoint
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for queue in queueNames: {
    parent: queueService
    name: queue
  }
]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [
  for table in tableNames: {
    parent: tableService
    name: table
  }
]

output name string = account.name
output id string = account.id
output blobEndpoint string = account.properties.primaryEndpoints.blob
output queueEndpoint string = account.properties.primaryEndpoints.queue
output tableEndpoint string = account.properties.primaryEndpoints.table

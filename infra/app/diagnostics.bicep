// Azure's audit trail into the Log Analytics workspace, as diagnostic settings on each resource:
//
//   Key Vault          AuditEvent: every secret read (the app's, an operator's), with caller and result
//   Storage            StorageRead / StorageWrite / StorageDelete of the blob, queue and table services
//                      (the queues and the sync-state table; who read or changed what)
//   Function app       FunctionAppLogs: the host's and the worker's logs, beside Application Insights
//
// Microsoft Learn: "Diagnostic settings in Azure Monitor" (Microsoft.Insights/diagnosticSettings as an
// extension resource, scope = the resource), "Azure Key Vault logging" (category AuditEvent),
// "Monitor Azure Storage" (categories StorageRead, StorageWrite, StorageDelete on each service, not on
// the account), "Monitor Azure Functions" (category FunctionAppLogs).
param keyVaultName string
param storageAccountName string
param functionAppName string

@description('Resource id of the Log Analytics workspace that receives the logs.')
param workspaceId string

var settingName = 'to-log-analytics'
var storageLogs = [
  {
    category: 'StorageRead'
    enabled: true
  }
  {
    category: 'StorageWrite'
    enabled: true
  }
  {
    category: 'StorageDelete'
    enabled: true
  }
]

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: account
  name: 'default'
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' existing = {
  parent: account
  name: 'default'
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' existing = {
  parent: account
  name: 'default'
}

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource vaultAudit 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: settingName
  scope: vault
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        category: 'AuditEvent'
        enabled: true
      }
    ]
  }
}

resource blobLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: settingName
  scope: blobService
  properties: {
    workspaceId: workspaceId
    logs: storageLogs
  }
}

resource queueLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: settingName
  scope: queueService
  properties: {
    workspaceId: workspaceId
    logs: storageLogs
  }
}

resource tableLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: settingName
  scope: tableService
  properties: {
    workspaceId: workspaceId
    logs: storageLogs
  }
}

resource functionAppLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: settingName
  scope: site
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        category: 'FunctionAppLogs'
        enabled: true
      }
    ]
  }
}

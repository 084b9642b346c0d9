// Hunter -> Dynamics 365 lead push: everything the function app needs in Azure, in one resource group.
//
//   azd up                      (reads main.parameters.json, fills it from the azd environment)
//   az deployment sub create --location <region> --template-file infra/main.bicep --parameters ...
//
// docs/deploy.md documents every parameter and what to check in the portal afterwards.
// No secret ever appears here: the app reaches storage, Key Vault and Application Insights with its
// managed identity, and the Dataverse client secret (client_secret mode only) is put into Key Vault
// by an operator (docs/runbook.md) and read by the app at run time.
targetScope = 'subscription'

// ---------------------------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------------------------

@minLength(1)
@maxLength(64)
@description('azd environment name (dev, test, prod...): names the resource group and seeds every resource name.')
param environmentName string

@minLength(1)
@description('Azure region for every resource; it must offer the Flex Consumption plan (az functionapp list-flexconsumption-locations).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Object id of the person (or pipeline) deploying. Gets Key Vault Secrets Officer (to store the Dataverse secret) and Storage Queue Data Contributor (to inspect the poison queue). Empty: no such grants.')
param principalId string = ''

@description('Kind of principal principalId names.')
@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param principalType string = 'User'

// ---------------------------------------------------------------------------------------------
// Dataverse (the HUNTER_D365_* settings; see shared/config.py)
// ---------------------------------------------------------------------------------------------

@minLength(1)
@description('HUNTER_D365_BASE_URL: the Dynamics 365 org, https://<org>.crm<N>.dynamics.com, no path.')
param d365BaseUrl string

@description('HUNTER_D365_AUTH_MODE: managed_identity (the app identity is the Dataverse application user, no secret) or client_secret (an app registration whose secret lives in Key Vault).')
@allowed([
  'managed_identity'
  'client_secret'
])
param d365AuthMode string = 'managed_identity'

@description('HUNTER_D365_TENANT_ID: tenant of the app registration (client_secret mode). Empty: the tenant of this subscription.')
param d365TenantId string = ''

@description('HUNTER_D365_CLIENT_ID: application (client) id of the app registration (client_secret mode). Unused in managed_identity mode.')
param d365ClientId string = ''

@minLength(1)
@description('HUNTER_D365_CLIENT_SECRET_NAME: name of the Key Vault secret that holds the client secret (client_secret mode).')
param d365ClientSecretName string = 'd365-client-secret'

@description('HUNTER_D365_ENABLED: the feature flag. Keep false until the go/no-go in docs/runbook.md passes; intake then answers 503 and queued messages wait.')
param d365Enabled bool = false

@description('HUNTER_D365_API_VERSION: Dataverse Web API version.')
param d365ApiVersion string = 'v9.2'

@description('HUNTER_D365_AUTHORITY_HOST: Entra ID authority (change only for sovereign clouds).')
param d365AuthorityHost string = 'https://login.microsoftonline.com'

@description('HUNTER_D365_DOMAIN_KEY: the org has an Active alternate key on hnt_domain (one request per new lead, duplicates impossible).')
param d365DomainKey bool = false

@description('HUNTER_D365_CUSTOM_FIELDS: the org has the hnt_* columns on Lead and the app should send them.')
param d365CustomFields bool = true

@minValue(1)
@description('HUNTER_D365_RETRY_BASE_SECONDS: backoff base; attempt n waits base * 2^n seconds.')
param retryBaseSeconds int = 60

@minValue(1)
@description('HUNTER_D365_RETRY_CAP_SECONDS: longest backoff delay.')
param retryCapSeconds int = 3600

@minValue(0)
@description('HUNTER_D365_RETRY_JITTER_SECONDS: random 0..jitter seconds added to each delay.')
param retryJitterSeconds int = 10

@minValue(1)
@maxValue(20)
@description('HUNTER_D365_MAX_ATTEMPTS: attempts before a push is marked error and sent to the poison queue.')
param maxAttempts int = 6

@minValue(0)
@description('HUNTER_D365_MAX_THROTTLED_SECONDS: how long 429s (service protection, which use no attempt) may keep one message waiting before it is marked error and sent to the poison queue.')
param maxThrottledSeconds int = 21600

@minValue(1)
@description('HUNTER_D365_CLAIM_LEASE_SECONDS: how long a worker claim on a domain lives.')
param claimLeaseSeconds int = 120

@minValue(1)
@description('HUNTER_D365_CLAIM_RETRY_SECONDS: how soon a message for a claimed domain comes back.')
param claimRetrySeconds int = 5

@description('HUNTER_D365_VERIFY_TTL_SECONDS: a batch skips a synced domain whose lead was found in Dynamics less than this long ago (0: always verify).')
@minValue(0)
param verifyTtlSeconds int = 3600

@description('HUNTER_D365_BULK_SIZE: leads per bulk queue message from push-leads (one lookup and one CreateMultiple each); 1 sends one message per lead.')
@minValue(1)
@maxValue(1000)
param bulkSize int = 100

@description('HUNTER_D365_RATE_BUDGET_PERCENT: the percentage of one application user\'s Dataverse request and execution-time limits the app uses in all; each instance paces on this / maximumInstanceCount of them.')
@minValue(1)
@maxValue(100)
param dataverseRateBudgetPercent int = 95

@minValue(1)
@description('HUNTER_D365_HTTP_TIMEOUT_SECONDS: timeout of one Dataverse or Entra ID request.')
param httpTimeoutSeconds int = 30

@description('HUNTER_D365_QUEUE_DEPTH_SCHEDULE: NCRONTAB (six fields, with seconds) of the queue_depth timer that reads the push and poison queue depths for the poison-backlog alert and the workbook.')
param queueDepthSchedule string = '0 */5 * * * *'

// ---------------------------------------------------------------------------------------------
// Scale: the Dataverse concurrency budget (52 concurrent requests per application user)
// ---------------------------------------------------------------------------------------------
// Only the queue worker calls the Dataverse Web API (the HTTP routes read and write Storage; the
// readiness probe asks Entra ID for a token, which is not a Dataverse request). On Flex Consumption
// the worker is its own per-function scale group, and maximumInstanceCount caps the on-demand
// instances of each group.
//
// The lowest cap a region accepts has varied while Flex Consumption rolled out: 40 in one version
// of Microsoft's page, 1 in a later one (MicrosoftDocs/azure-docs
// articles/azure-functions/event-driven-scaling.md, "Limit scale-out"). So the default is 40, which
// every region accepts, and instead of few instances with many messages each, every instance takes
// an equal share of the budget (shared/concurrency.py does the same arithmetic in the app):
//
//   per instance  = max(1, dataverseConcurrencyBudget / maximumInstanceCount)   (whole division)
//   queue trigger : batchSize = min(per instance, 32), newBatchThreshold = 0
//   in flight    <= running instances x per instance
//   defaults:        40 x 1 = 40    (12 to spare under 52; budget 44 leaves 8 for the smoke test,
//                                    an operator's script, an instance still draining)
//
// One request per instance is the floor, so the 52 hold while up to 52 instances run - 12 more
// than configured, should the platform overshoot the cap. maximumInstanceCount <= 52 keeps every
// allowed value within the limit: 52 x 1 = 52. Fewer instances where the region allows it: each
// gets more, 4 instances x 11 = 44.
// No always-ready instances are configured: they would not count toward maximumInstanceCount.
// tests/infra checks this arithmetic against shared/concurrency.py; docs/deploy.md explains it.

@minValue(1)
@maxValue(52)
@description('On-demand instances per scale group. 40 deploys in every region (some accept fewer); at most 52, one Dataverse request each.')
param maximumInstanceCount int = 40

@minValue(1)
@maxValue(52)
@description('Concurrent Dataverse requests the worker may use in total, of the 52 Dataverse allows per application user; split evenly over maximumInstanceCount instances.')
param dataverseConcurrencyBudget int = 44

@description('Memory of one instance in MB (Flex Consumption sizes). 512: one Dataverse request in flight per instance by default, a few MB of leads per batch; nothing measured needs more.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 512

// ---------------------------------------------------------------------------------------------
// Callers, operators, retention
// ---------------------------------------------------------------------------------------------

@description('Origin of the Hunter UI (https://hunter.example.com) allowed by CORS when the browser calls the API directly. Empty: no cross-origin caller.')
param hunterUiOrigin string = ''

// Who may call (docs/deploy.md "App registrations"): App Service Authentication validates an Entra
// ID token for the API's app registration on every call but the health probes; the app checks the
// app roles Leads.Read, Leads.Push and Leads.Replay itself. By default the registrations are created here
// (app/entra.bicep, Microsoft's Graph Bicep extension); createAppRegistrations=false brings your own.
@description('Create the API, SPA and backend app registrations, their service principals and app role assignments with the Microsoft Graph Bicep extension (the deployer needs rights to create applications). false: bring your own, named by apiClientId and allowedClientApplications.')
param createAppRegistrations bool = true

@description('With createAppRegistrations: grant the SPA tenant-wide consent to the API\'s access_as_user scope (needs Cloud Application Administrator or Privileged Role Administrator).')
param grantSpaConsent bool = true

@description('Application (client) id of the API\'s app registration (the audience of callers\' tokens). Required when createAppRegistrations is false; ignored otherwise.')
param apiClientId string = ''

@description('Application ID URI of the API\'s app registration (bring your own). Empty: api://<apiClientId>.')
param apiIdentifierUri string = ''

@description('Client ids allowed to call the API: the Hunter UI\'s SPA registration, Hunter\'s backend (app registration or managed identity), operators\' tools. The created SPA and backend are added; the deployment refuses an empty list (Microsoft reads [] as any client in the tenant).')
param allowedClientApplications array = []

@description('E-mail address that receives the alerts. Empty: no e-mail receiver.')
param alertEmail string = ''

@secure()
@description('Webhook that receives the alerts (a Teams workflow URL or any HTTPS endpoint taking the common alert schema). Empty: none. With neither this nor alertEmail the alerts fire in the portal only.')
param alertWebhookUrl string = ''

@description('The push-backlog alert fires when the push queue has not drained once for this long (ISO 8601 duration).')
@allowed([
  'PT15M'
  'PT30M'
  'PT45M'
  'PT1H'
  'PT2H'
  'PT6H'
])
param pushBacklogAlertWindow string = 'PT30M'

@description('The gauge-silent alert fires when no queue_depth reading arrived for this long (keep it several times queueDepthSchedule).')
@allowed([
  'PT15M'
  'PT30M'
  'PT45M'
  'PT1H'
  'PT2H'
])
param gaugeSilentAlertWindow string = 'PT30M'

@minValue(1)
@description('Failed function invocations plus exceptions within 15 minutes that raise the failed-invocations alert.')
param failedInvocationAlertThreshold int = 5

@minValue(1)
@description('Failed pushes (d365_push_failed) within 15 minutes that raise the failed-pushes alert.')
param failedPushAlertThreshold int = 1

@minValue(1)
@description('Messages in the poison queue (its approximate message count, read by the queue_depth timer) that raise the poison-backlog alert.')
param poisonBacklogAlertThreshold int = 10

@minValue(30)
@maxValue(730)
@description('Days Log Analytics keeps the logs.')
param logRetentionDays int = 30

@description('Key Vault purge protection. Keep true in production; false lets a dev environment be deleted and recreated under the same name at once.')
param keyVaultPurgeProtection bool = true

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}

// The app contract (DESIGN 4): Hunter backend writes to the queue and reads the results queue by
// these names, and the app settings below tell the code the same names.
var queueName = 'd365-lead-push'
var poisonQueueName = '${queueName}-poison'
var resultsQueueName = 'd365-lead-push-results'
var stateTableName = 'd365leadsync'
var deploymentContainerName = 'app-package-${resourceToken}'

// One object says which storage services the app reaches with its identity. The function app
// module sets an AzureWebJobsStorage__<service>ServiceUri per enabled service and the RBAC module
// grants the matching data role, so the two never drift apart.
var storageEndpointConfig = {
  enableBlob: true // the host's own blobs (locks, keys) and the Flex deployment package
  enableQueue: true // the trigger, the poison queue (written by the host and the app), the results queue
  enableTable: true // the d365leadsync sync-state table
}

resource rg 'Microsoft.Resources/resourceGroups@2021-04-01' = {
  name: '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}api-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    queueNames: [
      queueName
      poisonQueueName
      resultsQueueName
      '${resultsQueueName}-poison' // Hunter's results consumer puts what it cannot read here
    ]
    tableNames: [
      stateTableName
    ]
    deploymentContainerName: deploymentContainerName
  }
}

module keyVault 'app/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: '${abbrs.keyVaultVaults}${resourceToken}'
    location: location
    tags: tags
    purgeProtection: keyVaultPurgeProtection
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
    retentionInDays: logRetentionDays
  }
}

module entra 'app/entra.bicep' = if (createAppRegistrations) {
  name: 'entra'
  scope: rg
  params: {
    environmentName: environmentName
    spaRedirectUris: empty(hunterUiOrigin) ? [] : [hunterUiOrigin]
    operatorPrincipalId: principalId
    grantSpaConsent: grantSpaConsent
  }
}

// The API the callers' tokens are for, and who may call it: from the created registrations, or
// from the parameters (bring your own).
var effectiveApiClientId = createAppRegistrations ? entra.outputs.apiClientId : apiClientId
var byoIdentifierUri = empty(apiIdentifierUri) ? 'api://${apiClientId}' : apiIdentifierUri
var effectiveApiIdentifierUri = createAppRegistrations ? entra.outputs.apiIdentifierUri : byoIdentifierUri
var createdClients = createAppRegistrations ? [entra.outputs.spaClientId, entra.outputs.backendClientId] : []
var effectiveAllowedClients = union(allowedClientApplications, createdClients)

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    keyVaultName: keyVault.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    appPrincipalId: identity.outputs.principalId
    operatorPrincipalId: principalId
    operatorPrincipalType: principalType
    enableBlob: storageEndpointConfig.enableBlob
    enableQueue: storageEndpointConfig.enableQueue
    enableTable: storageEndpointConfig.enableTable
  }
}

module api 'app/api.bicep' = {
  name: 'api'
  scope: rg
  params: {
    planName: '${abbrs.webServerFarms}${resourceToken}'
    name: '${abbrs.webSitesFunctions}api-${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    enableBlob: storageEndpointConfig.enableBlob
    enableQueue: storageEndpointConfig.enableQueue
    enableTable: storageEndpointConfig.enableTable
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    keyVaultUri: keyVault.outputs.uri
    maximumInstanceCount: maximumInstanceCount
    dataverseConcurrencyBudget: dataverseConcurrencyBudget
    instanceMemoryMB: instanceMemoryMB
    hunterUiOrigin: hunterUiOrigin
    apiClientId: effectiveApiClientId
    apiIdentifierUri: effectiveApiIdentifierUri
    allowedClientApplications: effectiveAllowedClients
    d365Enabled: d365Enabled
    d365BaseUrl: d365BaseUrl
    d365AuthMode: d365AuthMode
    d365TenantId: empty(d365TenantId) ? tenant().tenantId : d365TenantId
    d365ClientId: d365ClientId
    d365ClientSecretName: d365ClientSecretName
    d365ApiVersion: d365ApiVersion
    d365AuthorityHost: d365AuthorityHost
    d365DomainKey: d365DomainKey
    d365CustomFields: d365CustomFields
    retryBaseSeconds: retryBaseSeconds
    retryCapSeconds: retryCapSeconds
    retryJitterSeconds: retryJitterSeconds
    maxAttempts: maxAttempts
    maxThrottledSeconds: maxThrottledSeconds
    claimLeaseSeconds: claimLeaseSeconds
    claimRetrySeconds: claimRetrySeconds
    verifyTtlSeconds: verifyTtlSeconds
    bulkSize: bulkSize
    dataverseRateBudgetPercent: dataverseRateBudgetPercent
    httpTimeoutSeconds: httpTimeoutSeconds
    queueDepthSchedule: queueDepthSchedule
    queueName: queueName
    resultsQueueName: resultsQueueName
    stateTableName: stateTableName
  }
  // The identity holds its roles before the host first starts, so the first start can reach storage.
  dependsOn: [
    rbac
  ]
}

module alerts 'app/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    actionGroupName: '${abbrs.insightsActionGroups}${resourceToken}'
    alertNamePrefix: '${abbrs.insightsScheduledQueryRules}${resourceToken}'
    alertEmail: alertEmail
    alertWebhookUrl: alertWebhookUrl
    queueName: queueName
    poisonQueueName: poisonQueueName
    failedPushThreshold: failedPushAlertThreshold
    poisonBacklogThreshold: poisonBacklogAlertThreshold
    pushBacklogWindow: pushBacklogAlertWindow
    gaugeSilentWindow: gaugeSilentAlertWindow
    failedInvocationThreshold: failedInvocationAlertThreshold
  }
}

module diagnostics 'app/diagnostics.bicep' = {
  name: 'diagnostics'
  scope: rg
  params: {
    keyVaultName: keyVault.outputs.name
    storageAccountName: storage.outputs.name
    functionAppName: api.outputs.name
    workspaceId: monitoring.outputs.logAnalyticsId
  }
}

module workbook 'app/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    location: location
    tags: tags
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    displayName: 'Hunter lead push (${environmentName})'
    poisonQueueName: poisonQueueName
  }
}

// azd writes these into .azure/<env>/.env; docs/deploy.md uses them.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output SERVICE_API_NAME string = api.outputs.name
output AZURE_FUNCTION_APP_NAME string = api.outputs.name
output AZURE_FUNCTION_URL string = api.outputs.url
output AZURE_FUNCTION_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_KEY_VAULT_URL string = keyVault.outputs.uri
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
// The registrations callers use (created or brought), and what `connect` needs (azure.yaml prints
// the command after provisioning): the Dataverse org and the client id of the app's identity there.
output HUNTER_API_CLIENT_ID string = effectiveApiClientId
output HUNTER_API_IDENTIFIER_URI string = effectiveApiIdentifierUri
output HUNTER_SPA_CLIENT_ID string = createAppRegistrations ? entra.outputs.spaClientId : ''
output HUNTER_BACKEND_CLIENT_ID string = createAppRegistrations ? entra.outputs.backendClientId : ''
output HUNTER_D365_BASE_URL string = d365BaseUrl
output HUNTER_CONNECT_APPLICATION_ID string = d365AuthMode == 'managed_identity' ? identity.outputs.clientId : d365ClientId

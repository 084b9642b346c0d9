// The function app: a Linux Flex Consumption plan running Python 3.11, signed in everywhere with its
// user-assigned identity. Every setting the code reads (shared/config.py, shared/telemetry.py) is set
// below; none holds a secret. tests/infra/test_bicep.py parses shared/config.py and checks that list.
param name string
param planName string
param location string
param tags object = {}

@description('Resource id of the user-assigned identity.')
param identityId string

@description('Client id of the user-assigned identity (what azure-identity and the host need to pick it).')
param identityClientId string

param storageAccountName string
param deploymentContainerName string
param applicationInsightsName string

@description('https://<vault>.vault.azure.net/')
param keyVaultUri string

// Which storage services the host and the app reach (main.bicep storageEndpointConfig).
param enableBlob bool = true
param enableQueue bool = true
param enableTable bool = true

@minValue(1)
@maxValue(52)
param maximumInstanceCount int = 40

@minValue(1)
@maxValue(52)
param dataverseConcurrencyBudget int = 44

@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 512

@description('The Hunter UI\'s origin: the only one CORS allows (empty: none).')
param hunterUiOrigin string = ''

@description('Application (client) id of the API\'s app registration.')
param apiClientId string

@description('Application ID URI of the API (api://...): an accepted token audience beside the client id.')
param apiIdentifierUri string

// At least one: App Service Authentication reads an empty list as "any client application in your
// tenant" (Microsoft Learn, "Configure Microsoft Entra authentication", allowedApplications), so an
// empty list fails the deployment here instead of opening the API to every app in the tenant.
@minLength(1)
@description('Client ids whose tokens App Service Authentication accepts (at least one).')
param allowedClientApplications array

param d365Enabled bool = false
param d365BaseUrl string

@allowed([
  'managed_identity'
  'client_secret'
])
param d365AuthMode string = 'managed_identity'

param d365TenantId string
param d365ClientId string = ''
param d365ClientSecretName string = 'd365-client-secret'
param d365ApiVersion string = 'v9.2'
param d365AuthorityHost string = 'https://login.microsoftonline.com'
param d365DomainKey bool = false
param d365CustomFields bool = true
param retryBaseSeconds int = 60
param retryCapSeconds int = 3600
param retryJitterSeconds int = 10
param maxAttempts int = 6
param maxThrottledSeconds int = 21600
param claimLeaseSeconds int = 120
param claimRetrySeconds int = 5
@minValue(0)
param verifyTtlSeconds int = 3600
@minValue(1)
@maxValue(1000)
param bulkSize int = 100
@minValue(1)
@maxValue(100)
param dataverseRateBudgetPercent int = 95
param httpTimeoutSeconds int = 30
@description('NCRONTAB with seconds; the host resolves the timer trigger\'s %HUNTER_D365_QUEUE_DEPTH_SCHEDULE% from it.')
param queueDepthSchedule string = '0 */5 * * * *'
param queueName string
param resultsQueueName string
param stateTableName string

resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// The Dataverse budget split over the instances (main.bicep; shared/concurrency.py does the same):
// with newBatchThreshold 0 an instance runs at most batchSize messages at once, each making its
// Dataverse calls one after another. Bicep's `/` on integers is whole division.
var perInstanceConcurrency = max(1, dataverseConcurrencyBudget / maximumInstanceCount)
var queueBatchSize = min(perInstanceConcurrency, 32)
var queueNewBatchThreshold = 0

// Identity-based AzureWebJobsStorage: no connection string, no key. The code reads the queue and
// table URIs and the client id too (shared/storage.py), for the push, poison and results queues
// and the state table.
var storageIdentitySettings = {
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
}
var blobSettings = enableBlob ? { AzureWebJobsStorage__blobServiceUri: storageAccount.properties.primaryEndpoints.blob } : {}
var queueSettings = enableQueue ? { AzureWebJobsStorage__queueServiceUri: storageAccount.properties.primaryEndpoints.queue } : {}
var tableSettings = enableTable ? { AzureWebJobsStorage__tableServiceUri: storageAccount.properties.primaryEndpoints.table } : {}

var hunterSettings = {
  // Telemetry: Entra ID ingestion with the user-assigned identity (the resource refuses keys).
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  // Queue trigger concurrency in Azure, whatever host.json says locally (the Dataverse budget).
  AzureFunctionsJobHost__extensions__queues__batchSize: '${queueBatchSize}'
  AzureFunctionsJobHost__extensions__queues__newBatchThreshold: '${queueNewBatchThreshold}'
  // One worker pool for HTTP and queue invocations (python-worker dispatcher; default min(32, cpus + 4)):
  // room for the queue batch and an HTTP burst. Dataverse calls are bounded by the settings above.
  PYTHON_THREADPOOL_THREAD_COUNT: '16'
  // The same budget for the app's own bound on Dataverse calls per instance (shared/concurrency.py).
  HUNTER_D365_MAX_INSTANCES: '${maximumInstanceCount}'
  HUNTER_D365_CONCURRENCY_BUDGET: '${dataverseConcurrencyBudget}'
  // The share of one user's request and execution-time limits the app uses in all; each instance's
  // pacer takes this / maximumInstanceCount of every limit a 429 teaches it (shared/pacing.py).
  HUNTER_D365_RATE_BUDGET_PERCENT: '${dataverseRateBudgetPercent}'
  HUNTER_D365_ENABLED: d365Enabled ? 'true' : 'false'
  HUNTER_D365_BASE_URL: d365BaseUrl
  HUNTER_D365_AUTH_MODE: d365AuthMode
  HUNTER_D365_TENANT_ID: d365TenantId
  HUNTER_D365_CLIENT_ID: d365ClientId
  // The client secret is read in code from Key Vault with the managed identity (never a value here).
  HUNTER_KEYVAULT_URL: keyVaultUri
  HUNTER_D365_CLIENT_SECRET_NAME: d365ClientSecretName
  HUNTER_MANAGED_IDENTITY_CLIENT_ID: identityClientId
  HUNTER_D365_API_VERSION: d365ApiVersion
  HUNTER_D365_AUTHORITY_HOST: d365AuthorityHost
  HUNTER_D365_DOMAIN_KEY: d365DomainKey ? 'true' : 'false'
  HUNTER_D365_CUSTOM_FIELDS: d365CustomFields ? 'true' : 'false'
  HUNTER_D365_RETRY_BASE_SECONDS: '${retryBaseSeconds}'
  HUNTER_D365_RETRY_CAP_SECONDS: '${retryCapSeconds}'
  HUNTER_D365_RETRY_JITTER_SECONDS: '${retryJitterSeconds}'
  HUNTER_D365_MAX_ATTEMPTS: '${maxAttempts}'
  HUNTER_D365_MAX_THROTTLED_SECONDS: '${maxThrottledSeconds}'
  HUNTER_D365_CLAIM_LEASE_SECONDS: '${claimLeaseSeconds}'
  HUNTER_D365_CLAIM_RETRY_SECONDS: '${claimRetrySeconds}'
  HUNTER_D365_VERIFY_TTL_SECONDS: '${verifyTtlSeconds}'
  HUNTER_D365_BULK_SIZE: '${bulkSize}'
  HUNTER_D365_HTTP_TIMEOUT_SECONDS: '${httpTimeoutSeconds}'
  // Read by the host, not by shared/config.py: the queue_depth timer's schedule (shared/monitor.py).
  // Without it the host disables that one function and the poison-backlog alert has no readings.
  HUNTER_D365_QUEUE_DEPTH_SCHEDULE: queueDepthSchedule
  HUNTER_D365_QUEUE: queueName
  HUNTER_D365_RESULTS_QUEUE: resultsQueueName
  HUNTER_D365_STATE_TABLE: stateTableName
}

// Everything the site gets (one object, so the structure tests can evaluate it against shared/config.py).
var appSettings = union(storageIdentitySettings, blobSettings, queueSettings, tableSettings, hunterSettings)

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225:zone redundancy on Flex Consumption exists only in some regions and wants always-ready instances; pending pushes wait in the queue through a zone outage
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true // Linux
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222:Hunter's browser UI and backend call the API over the internet with Entra ID tokens (App Service Authentication below); private access needs VNet integration on both sides (docs/deploy.md, hardening)
  // checkov:skip=CKV_AZURE_17:callers authenticate with Entra ID tokens; client certificates would have to be issued to every caller and break the anonymous health probes
  // checkov:skip=CKV_AZURE_212:Flex Consumption scales from zero on demand; an always-ready instance would run outside maximumInstanceCount and so outside the Dataverse budget; queued work waits
  // checkov:skip=CKV_AZURE_213:App Service health check is for dedicated instances; Flex Consumption replaces instances itself; /api/healthz/ready is checked after each deploy (docs/deploy.md)
  // checkov:skip=CKV_AZURE_78:Flex Consumption has no FTP and lists siteConfig.ftpsState as deprecated; FTP and SCM basic-auth publishing are switched off below (basicPublishingCredentialsPolicies)
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    keyVaultReferenceIdentity: identityId // should anyone use a @Microsoft.KeyVault(...) reference
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
      remoteDebuggingEnabled: false
      cors: {
        allowedOrigins: empty(hunterUiOrigin) ? [] : [hunterUiOrigin]
        supportCredentials: false
      }
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageAccount.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      // Dataverse budget (main.bicep): maximumInstanceCount x per-instance share = 40 x 1 = 40
      // concurrent requests by default, 52 x 1 = 52 at the parameter bounds; the limit is 52.
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// Basic (user name + password) publishing is off for FTP and for the deployment endpoint: azd and
// the Azure CLI deploy with Entra ID tokens.
//
// `location` is not in this type's generated definition (so Bicep would warn BCP037), yet ARM has
// answered "The parameter location has an invalid value" without it in several API versions:
// Azure/bicep-types-az issues #1317, #1504, #1526 and Azure/bicep #5531. Microsoft's verified module
// sets it too (Azure/bicep-registry-modules avm/res/web/site/basic-publishing-credentials-policy).
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  #disable-next-line BCP037 ARM wants the site's location here although the type definition omits it (see above)
  location: location
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  #disable-next-line BCP037 ARM wants the site's location here although the type definition omits it (see above)
  location: location
  properties: {
    allow: false
  }
}

// The app settings as their own child resource: an object of name -> value. checkov reads any
// Microsoft.Web/sites/config as if it were the site configuration (logging, auth, .NET version,
// network access) and flags properties this dictionary cannot have; each such skip says so.
resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov:skip=CKV_AZURE_13:misread - this is the appsettings dictionary; authentication is the authsettingsV2 resource below
  // checkov:skip=CKV_AZURE_63:misread - HTTP logging is a site property; requests are traced in Application Insights
  // checkov:skip=CKV_AZURE_65:misread - detailed error pages are a site property of IIS-hosted apps; this is a Linux Python app
  // checkov:skip=CKV_AZURE_66:misread - failed request tracing is an IIS feature; failures are traced in Application Insights
  // checkov:skip=CKV_AZURE_80:misread - .NET Framework version; this is a Python 3.11 app
  // checkov:skip=CKV_AZURE_88:misread - Azure Files content share; Flex Consumption deploys from a blob container
  // checkov:skip=CKV_AZURE_222:misread - network access is a site property; see the site resource for why it stays public
  parent: site
  name: 'appsettings'
  properties: appSettings
}

// App Service Authentication ("Easy Auth", Microsoft Learn "Configure Microsoft Entra authentication",
// ARM reference Microsoft.Web/sites/config 'authsettingsV2'): bearer tokens for the API's app
// registration are validated by the platform (v2.0 issuer of this tenant, the API's client id and
// identifier URI as audiences, only the listed client applications); a call without a valid token
// gets 401, never a redirect; the health probes stay open. The platform then adds
// X-MS-CLIENT-PRINCIPAL, from which the app reads the caller's app roles (shared/principal.py).
// The local host reads the same object (devstack.processes.easy_auth_settings, devstack/host/easyauth.py).
resource authSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov:skip=CKV_AZURE_13:misread - this resource is App Service Authentication itself (authsettingsV2, platform.enabled); the check reads only the v1 siteAuthEnabled
  // checkov:skip=CKV_AZURE_63:misread - HTTP logging is a site property; requests are traced in Application Insights
  // checkov:skip=CKV_AZURE_65:misread - detailed error pages are a site property of IIS-hosted apps; this is a Linux Python app
  // checkov:skip=CKV_AZURE_66:misread - failed request tracing is an IIS feature; failures are traced in Application Insights
  // checkov:skip=CKV_AZURE_80:misread - .NET Framework version; this is a Python 3.11 app
  // checkov:skip=CKV_AZURE_88:misread - Azure Files content share; Flex Consumption deploys from a blob container
  // checkov:skip=CKV_AZURE_222:misread - network access is a site property; see the site resource for why it stays public
  parent: site
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      excludedPaths: [
        '/api/healthz/live'
        '/api/healthz/ready'
      ]
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
          clientId: apiClientId
        }
        validation: {
          allowedAudiences: [
            apiIdentifierUri
          ]
          defaultAuthorizationPolicy: {
            allowedApplications: allowedClientApplications
          }
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
  }
}

output name string = site.name
output id string = site.id
output url string = 'https://${site.properties.defaultHostName}'

// Entra ID as code, with Microsoft's Graph Bicep extension (alias microsoftGraphV1 in
// infra/bicepconfig.json, version 1.0.0; its type definitions are pinned under
// tests/infra/types/microsoftgraph and every resource and property here is checked against them):
//
//   API application   identifier URI, app roles Leads.Read / Leads.Push / Leads.Replay, the delegated scope
//                     access_as_user for the SPA, and v2.0 access tokens (api.requestedAccessTokenVersion: 2,
//                     the issuer authsettingsV2 trusts; with v1 tokens every call answers 401)
//   SPA application   the Hunter UI (authorization code + PKCE), allowed to ask for access_as_user
//   backend app       Hunter's backend (client credentials), holding Leads.Push
//   service principals for the three, the app role assignments Bicep can make (backend: Leads.Push;
//   the deploying operator: Leads.Push and Leads.Replay) and, when asked, the tenant-wide consent of
//   the SPA to access_as_user.
//
// The deployer needs rights to create applications (Application Developer or Application.ReadWrite.All)
// and, for the assignments and the consent, Cloud Application Administrator or Privileged Role
// Administrator. Where they are missing, deploy with createAppRegistrations=false and bring your own
// registrations (docs/deploy.md). The backend registration gets no credential here: Hunter's team adds
// a certificate or a federated credential to it (secrets never pass through a template).
//
// Microsoft Learn: "Microsoft Graph Bicep extension" (resource types, uniqueName as the idempotent
// key), "Application manifest" (api.requestedAccessTokenVersion), "Add app roles to your application",
// "Restrictions on identifierUris" (api://<tenant id>/<string> is accepted for single-tenant apps).
extension microsoftGraphV1

@description('azd environment name: part of every registration\'s unique name and display name.')
param environmentName string

@description('Redirect URIs of the Hunter UI (SPA); empty: none yet.')
param spaRedirectUris array = []

@description('Object id of the deploying operator; gets Leads.Push and Leads.Replay. Empty: none.')
param operatorPrincipalId string

@description('Grant the SPA tenant-wide (admin) consent to access_as_user.')
param grantSpaConsent bool = true

var apiUniqueName = 'hunter-lead-push-api-${environmentName}'
var identifierUri = 'api://${tenant().tenantId}/${apiUniqueName}'
var scopeValue = 'access_as_user'
// Stable ids: the same environment keeps the same role and scope ids across deployments.
var readRoleId = guid(tenant().tenantId, apiUniqueName, 'Leads.Read')
var pushRoleId = guid(tenant().tenantId, apiUniqueName, 'Leads.Push')
var replayRoleId = guid(tenant().tenantId, apiUniqueName, 'Leads.Replay')
var scopeId = guid(tenant().tenantId, apiUniqueName, scopeValue)

resource apiApp 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: apiUniqueName
  displayName: 'Hunter lead push API (${environmentName})'
  signInAudience: 'AzureADMyOrg'
  identifierUris: [
    identifierUri
  ]
  api: {
    requestedAccessTokenVersion: 2
    oauth2PermissionScopes: [
      {
        id: scopeId
        value: scopeValue
        type: 'User'
        isEnabled: true
        adminConsentDisplayName: 'Push leads to Dynamics 365 as the signed-in user'
        adminConsentDescription: 'Lets the Hunter UI call the lead push API for the signed-in user; the user\'s app roles decide what they may do.'
        userConsentDisplayName: 'Push leads to Dynamics 365'
        userConsentDescription: 'Lets the Hunter UI push leads to Dynamics 365 for you.'
      }
    ]
  }
  appRoles: [
    {
      id: readRoleId
      value: 'Leads.Read'
      displayName: 'Read lead sync status'
      description: 'Read the Dynamics 365 sync status of leads, without pushing.'
      allowedMemberTypes: [
        'User'
        'Application'
      ]
      isEnabled: true
    }
    {
      id: pushRoleId
      value: 'Leads.Push'
      displayName: 'Push leads'
      description: 'Push leads to Dynamics 365 and read their sync status.'
      allowedMemberTypes: [
        'User'
        'Application'
      ]
      isEnabled: true
    }
    {
      id: replayRoleId
      value: 'Leads.Replay'
      displayName: 'Replay the poison queue'
      description: 'Move failed pushes from the poison queue back to the push queue.'
      allowedMemberTypes: [
        'User'
        'Application'
      ]
      isEnabled: true
    }
  ]
}

resource apiServicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: apiApp.appId
}

resource spaApp 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: 'hunter-lead-push-spa-${environmentName}'
  displayName: 'Hunter UI (${environmentName})'
  signInAudience: 'AzureADMyOrg'
  spa: {
    redirectUris: spaRedirectUris
  }
  requiredResourceAccess: [
    {
      resourceAppId: apiApp.appId
      resourceAccess: [
        {
          id: scopeId
          type: 'Scope'
        }
      ]
    }
  ]
}

resource spaServicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: spaApp.appId
}

resource spaConsent 'Microsoft.Graph/oauth2PermissionGrants@v1.0' = if (grantSpaConsent) {
  clientId: spaServicePrincipal.id
  consentType: 'AllPrincipals'
  resourceId: apiServicePrincipal.id
  scope: scopeValue
}

resource backendApp 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: 'hunter-lead-push-backend-${environmentName}'
  displayName: 'Hunter backend (${environmentName})'
  signInAudience: 'AzureADMyOrg'
  requiredResourceAccess: [
    {
      resourceAppId: apiApp.appId
      resourceAccess: [
        {
          id: pushRoleId
          type: 'Role'
        }
      ]
    }
  ]
}

resource backendServicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: backendApp.appId
}

resource backendPush 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  appRoleId: pushRoleId
  principalId: backendServicePrincipal.id
  resourceId: apiServicePrincipal.id
}

resource operatorPush 'Microsoft.Graph/appRoleAssignedTo@v1.0' = if (!empty(operatorPrincipalId)) {
  appRoleId: pushRoleId
  principalId: operatorPrincipalId
  resourceId: apiServicePrincipal.id
}

resource operatorReplay 'Microsoft.Graph/appRoleAssignedTo@v1.0' = if (!empty(operatorPrincipalId)) {
  appRoleId: replayRoleId
  principalId: operatorPrincipalId
  resourceId: apiServicePrincipal.id
}

output apiClientId string = apiApp.appId
output apiIdentifierUri string = identifierUri
output spaClientId string = spaApp.appId
output backendClientId string = backendApp.appId

// The app's user-assigned managed identity. It exists before the function app, so its roles are in
// place when the host first starts, and it outlives a re-created app: the Dataverse application
// user (managed_identity mode) keeps working.
param name string
param location string
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId

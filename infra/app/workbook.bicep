// The operators' workbook (Application Insights > Workbooks): pushes by outcome over time, failures
// with their reasons, poison arrivals and replays, 429s with Retry-After, and Dataverse latency.
// The queries live in infra/workbook.json; they run against this Application Insights resource.
param location string
param tags object = {}
param applicationInsightsName string
param displayName string

@description('Name of the poison queue, as the host names it in its log line.')
param poisonQueueName string

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// workbook.json holds two placeholders: the resource its queries run against, and the poison queue.
var workbookTemplate = loadTextContent('../workbook.json')
var workbookContent = replace(replace(workbookTemplate, '__APPLICATION_INSIGHTS_ID__', applicationInsights.id), '__POISON_QUEUE__', poisonQueueName)

resource workbook 'Microsoft.Insights/workbooks@2022-04-01' = {
  name: guid(resourceGroup().id, applicationInsightsName, 'hunter-lead-push-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: applicationInsights.id
    serializedData: workbookContent
    version: '1.0'
  }
}

output id string = workbook.id

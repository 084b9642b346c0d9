// The operators' alarms, as log search alerts on the app's structured events in Application Insights.
//
// Storage queue metrics are account-wide (no queue-name dimension) and hourly, so they cannot show the
// poison queue's depth. The poison backlog is therefore estimated from the events that put a message
// there (the app's d365_push_failed and worker-side d365_push_rejected, and the host's own move after
// maxDequeueCount) minus the ones d365_poison_replayed sent back. docs/deploy.md names a periodic
// poison-depth metric emitted by the app as the better signal, for later.
//
// Sampling: the host samples the traces it sends (host.json logging.applicationInsights.samplingSettings),
// its "Message has reached MaxDequeueCount" line included - and bursts, when the poison queue fills,
// are exactly when adaptive sampling keeps the fewest. A kept record carries itemCount, the number of
// events it stands for (Microsoft: Application Insights "Sampling", "itemCount"), so both rules sum
// itemCount instead of counting rows; unsampled records have itemCount 1.
//
// Each event may reach `traces` twice: once through OpenTelemetry (fields in customDimensions) and
// once through the host's own forwarding of worker logs (message only). The queries count only the
// copy that carries a field the app always sets on that event (reason on d365_push_failed,
// error_code on d365_push_rejected, replayed on d365_poison_replayed).
param location string
param tags object = {}
param applicationInsightsName string
param actionGroupName string
param alertNamePrefix string

@description('E-mail receiver of the action group; empty creates no action group.')
param alertEmail string = ''

@description('Name of the poison queue, as the host names it in its log line.')
param poisonQueueName string

@minValue(1)
param failedPushThreshold int = 1

@minValue(1)
param poisonBacklogThreshold int = 10

var hasEmail = !empty(alertEmail)

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (hasEmail) {
  name: actionGroupName
  location: 'Global'
  tags: tags
  properties: {
    groupShortName: 'hunterd365'
    enabled: true
    emailReceivers: [
      {
        name: 'operators'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

// A push gave up: authentication refused, a permanent 4xx, or retries exhausted. One alert per
// reason (authentication / error); the message is in the poison queue, replayable after the fix.
var failedPushesQuery = '''
traces
| where message == "d365_push_failed" and isnotempty(customDimensions.reason)
| extend reason = tostring(customDimensions.reason), error_code = tostring(customDimensions.error_code)
| project timestamp, reason, error_code, status_code = tostring(customDimensions.status_code), domain = tostring(customDimensions.domain), pushes = itemCount
'''

// +1 for every message that went to the poison queue, minus what the replay endpoint moved back.
// The intake's own d365_push_rejected (a bad HTTP request, nothing enqueued; source "http") is left
// out; the worker's (a bad queue message, sent to poison) carries source "queue".
var poisonBacklogQueryTemplate = '''
traces
| where (message == "d365_push_failed" and isnotempty(customDimensions.reason))
    or (message == "d365_push_rejected" and tostring(customDimensions.source) == "queue")
    or (message startswith "Message has reached MaxDequeueCount" and message contains "'__POISON_QUEUE__'")
    or (message == "d365_poison_replayed" and isnotempty(customDimensions.replayed))
| extend delta = iff(message == "d365_poison_replayed", -toint(customDimensions.replayed), 1) * itemCount
| project timestamp, delta
'''
var poisonBacklogQuery = replace(poisonBacklogQueryTemplate, '__POISON_QUEUE__', poisonQueueName)

resource failedPushesAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${alertNamePrefix}-failed-pushes'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Hunter lead push: failed pushes'
    description: 'd365_push_failed was logged: a lead could not be pushed and its message is in the poison queue. Check reason and error_code, fix the cause, then POST /api/v1/d365/poison/replay.'
    severity: 2
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: failedPushesQuery
          timeAggregation: 'Total'
          metricMeasureColumn: 'pushes'
          dimensions: [
            {
              name: 'reason'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          operator: 'GreaterThanOrEqual'
          threshold: failedPushThreshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: hasEmail ? [actionGroup.id] : []
    }
  }
}

resource poisonBacklogAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${alertNamePrefix}-poison-backlog'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Hunter lead push: poison backlog'
    description: 'Messages sent to the poison queue in the last 24 hours, less those replayed, reached the threshold. Look at the poison queue and the failures in the workbook, fix the cause, then POST /api/v1/d365/poison/replay.'
    severity: 1
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'P1D'
    criteria: {
      allOf: [
        {
          query: poisonBacklogQuery
          timeAggregation: 'Total'
          metricMeasureColumn: 'delta'
          operator: 'GreaterThanOrEqual'
          threshold: poisonBacklogThreshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: hasEmail ? [actionGroup.id] : []
    }
  }
}

output failedPushesAlertId string = failedPushesAlert.id
output poisonBacklogAlertId string = poisonBacklogAlert.id

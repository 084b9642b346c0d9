// The operators' alarms, as log search alerts on what the function app sends to Application Insights.
//
// Failed pushes: the app's structured d365_push_failed events (traces).
//
// Poison backlog: the poison queue's real depth. Storage queue platform metrics are account-wide (no
// queue-name dimension) and hourly, so the app reads the queue itself: the timer function queue_depth
// (shared/monitor.py, every 5 minutes by HUNTER_D365_QUEUE_DEPTH_SCHEDULE) records each queue's
// approximate message count on the OpenTelemetry histogram d365_queue_depth (shared/gauges.py). The
// Azure Monitor exporter sends it to the customMetrics table: name "d365_queue_depth", the `queue`
// attribute in customDimensions, and per export interval valueCount readings with valueSum, valueMin
// and valueMax (Microsoft: "Add and modify Azure Monitor OpenTelemetry", custom metrics; the classic
// customMetrics columns in "Migrate to workspace-based Application Insights resources"). Metrics are
// not sampled, and the reading includes what no event announced (messages moved by hand, expired, or
// put there by Hunter). It replaces the earlier estimate from the "Message has reached MaxDequeueCount"
// traces and the app's events, which the workbook still charts as the flow into and out of poison.
//
// Each event may reach `traces` twice: once through OpenTelemetry (fields in customDimensions) and
// once through the host's own forwarding of worker logs (message only). The failed-pushes query
// counts only the copy that carries a field the app always sets on that event (reason), and sums
// itemCount, the number of events a sampled record stands for.
param location string
param tags object = {}
param applicationInsightsName string
param actionGroupName string
param alertNamePrefix string

@description('E-mail receiver of the action group; empty creates no action group.')
param alertEmail string = ''

@description('Name of the poison queue, as the queue_depth timer reports it in the queue dimension.')
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

// The largest reading of the poison queue's depth in the window (the timer's readings; valueMax of
// the histogram rows). One timer listener runs per app (a singleton across instances), so readings
// are of the one queue, not per instance.
var poisonBacklogQueryTemplate = '''
customMetrics
| where name == "d365_queue_depth" and tostring(customDimensions.queue) == "__POISON_QUEUE__"
| project timestamp, depth = valueMax
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
    description: 'The poison queue holds at least the threshold of messages (its approximate message count, read every 5 minutes by the queue_depth function). Look at the poison queue and the failures in the workbook, fix the cause, then POST /api/v1/d365/poison/replay.'
    severity: 1
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    // Three readings per window: a backlog is seen within 5 minutes of the reading that shows it,
    // and the alert resolves itself 15 minutes after a replay emptied the queue.
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: poisonBacklogQuery
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'depth'
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

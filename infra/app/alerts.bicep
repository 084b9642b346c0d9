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
//
// Gauge silent: no d365_queue_depth reading at all in the window. The poison-backlog and push-backlog
// alerts read the gauge, so without readings they could never fire: this one says the timer stopped
// (the function disabled or failing, the schedule setting missing, telemetry not arriving). A "Count"
// of result rows below 1 fires on an empty result (Microsoft Learn, "Create or edit a log search alert
// rule": measure "Table rows", the heartbeat pattern).
//
// Push backlog: every reading of the push queue in the window saw messages waiting (its smallest
// reading, valueMin, above 0): the queue did not drain once in that long, so the oldest message is
// at least that old - the worker stopped, is throttled for that long, or cannot keep up.
//
// Failed invocations: the Functions host records every invocation in `requests` (success false when
// it threw) and what was thrown in `exceptions` (Microsoft Learn, "Monitor executions in Azure
// Functions"); any function, not only the worker (the timer, the HTTP routes).
param location string
param tags object = {}
param applicationInsightsName string
param actionGroupName string
param alertNamePrefix string

@description('E-mail receiver of the action group; empty: no e-mail receiver.')
param alertEmail string = ''

@secure()
@description('Webhook receiver of the action group: a Teams workflow URL ("When a Teams webhook request is received") or any HTTPS endpoint taking the common alert schema; empty: none. Secure: such URLs carry a signature.')
param alertWebhookUrl string = ''

@description('Name of the push queue, as the queue_depth timer reports it in the queue dimension.')
param queueName string

@description('Name of the poison queue, as the queue_depth timer reports it in the queue dimension.')
param poisonQueueName string

@minValue(1)
param failedPushThreshold int = 1

@minValue(1)
param poisonBacklogThreshold int = 10

@description('How long the push queue may hold messages without draining once before the push-backlog alert fires.')
@allowed([
  'PT15M'
  'PT30M'
  'PT45M'
  'PT1H'
  'PT2H'
  'PT6H'
])
param pushBacklogWindow string = 'PT30M'

@description('How long without a single queue_depth reading before the gauge-silent alert fires (several times HUNTER_D365_QUEUE_DEPTH_SCHEDULE).')
@allowed([
  'PT15M'
  'PT30M'
  'PT45M'
  'PT1H'
  'PT2H'
])
param gaugeSilentWindow string = 'PT30M'

@minValue(1)
@description('Failed invocations plus exceptions within 15 minutes that raise the failed-invocations alert.')
param failedInvocationThreshold int = 5

var hasEmail = !empty(alertEmail)
var hasWebhook = !empty(alertWebhookUrl)
var hasReceiver = hasEmail || hasWebhook

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (hasReceiver) {
  name: actionGroupName
  location: 'Global'
  tags: tags
  properties: {
    groupShortName: 'hunterd365'
    enabled: true
    emailReceivers: hasEmail ? [
      {
        name: 'operators'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ] : []
    webhookReceivers: hasWebhook ? [
      {
        name: 'operators-webhook'
        serviceUri: alertWebhookUrl
        useCommonAlertSchema: true
      }
    ] : []
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

// Every reading of either queue: none in the window means the gauge went silent.
var gaugeSilentQuery = '''
customMetrics
| where name == "d365_queue_depth"
| project timestamp, queue = tostring(customDimensions.queue), readings = valueCount
'''

// The push queue's smallest reading per export (valueMin); the alert takes the minimum over the window.
var pushBacklogQueryTemplate = '''
customMetrics
| where name == "d365_queue_depth" and tostring(customDimensions.queue) == "__PUSH_QUEUE__"
| project timestamp, lowest = valueMin
'''
var pushBacklogQuery = replace(pushBacklogQueryTemplate, '__PUSH_QUEUE__', queueName)

// Failed invocations (requests, success false) and exceptions, per function.
var failedInvocationsQuery = '''
union
    (requests | where success == false | project timestamp, function_name = operation_Name, failures = itemCount),
    (exceptions | project timestamp, function_name = operation_Name, failures = itemCount)
'''

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
      actionGroups: hasReceiver ? [actionGroup.id] : []
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
      actionGroups: hasReceiver ? [actionGroup.id] : []
    }
  }
}

resource gaugeSilentAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${alertNamePrefix}-gauge-silent'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Hunter lead push: queue_depth gauge silent'
    description: 'No d365_queue_depth reading arrived in the window, so the poison-backlog and push-backlog alerts cannot fire. Check that the queue_depth function is enabled and succeeding (HUNTER_D365_QUEUE_DEPTH_SCHEDULE set) and that telemetry reaches Application Insights.'
    severity: 2
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: gaugeSilentWindow
    criteria: {
      allOf: [
        {
          query: gaugeSilentQuery
          timeAggregation: 'Count'
          operator: 'LessThan'
          threshold: 1
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: hasReceiver ? [actionGroup.id] : []
    }
  }
}

resource pushBacklogAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${alertNamePrefix}-push-backlog'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Hunter lead push: push queue not draining'
    description: 'Every queue_depth reading of the push queue in the window saw messages waiting: leads have waited at least that long. Look for d365_rate_limited and failures in the workbook, and at the worker function in the portal.'
    severity: 2
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: pushBacklogWindow
    criteria: {
      allOf: [
        {
          query: pushBacklogQuery
          timeAggregation: 'Minimum'
          metricMeasureColumn: 'lowest'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: hasReceiver ? [actionGroup.id] : []
    }
  }
}

resource failedInvocationsAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${alertNamePrefix}-failed-invocations'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Hunter lead push: failed invocations'
    description: 'Function invocations failed or threw in the window (any function: the worker, the queue_depth timer, the HTTP routes). Open the exceptions in Application Insights; a bug here sends messages to poison after maxDequeueCount.'
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
          query: failedInvocationsQuery
          timeAggregation: 'Total'
          metricMeasureColumn: 'failures'
          dimensions: [
            {
              name: 'function_name'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          operator: 'GreaterThanOrEqual'
          threshold: failedInvocationThreshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: hasReceiver ? [actionGroup.id] : []
    }
  }
}

output failedPushesAlertId string = failedPushesAlert.id

output poisonBacklogAlertId string = poisonBacklogAlert.id

"""The Dataverse concurrency budget, divided among the instances the platform may run.

Dataverse lets one application user have at most 52 requests in flight (service protection API
limits: https://learn.microsoft.com/power-apps/developer/data-platform/api-limits, "Concurrent
requests"). Only the queue worker calls Dataverse, and on Flex Consumption it scales in its own
group up to `maximumInstanceCount` on-demand instances. Which caps a region accepts has varied
(40 as the lowest, later 1: MicrosoftDocs/azure-docs articles/azure-functions/event-driven-scaling.md,
"Limit scale-out"), so the deployment defaults to 40, accepted everywhere, and each instance takes
an equal share of the budget instead of the budget being spread over a few instances:

    per instance = max(1, budget // configured instances)       budget 44, 40 instances -> 1
    in flight   <= running instances x per instance             40 x 1 = 40 <= 52

and because one request per instance is the floor, the limit holds while the platform runs up to
52 // per-instance instances (52 with the defaults), past the configured cap too.

`infra/app/api.bicep` derives the queue trigger's batchSize (newBatchThreshold 0) with the same
formula; `tests/infra` checks that the two agree. The app bounds its own Dataverse calls with the
same number: one process-wide semaphore of `per_instance` slots around each Dataverse request.

Settings (set by the deployment; both optional: unset, the budget is 44 and the app is taken to be
one process on its own, which may use all of it):
    HUNTER_D365_MAX_INSTANCES       the configured maximumInstanceCount
    HUNTER_D365_CONCURRENCY_BUDGET  concurrent Dataverse requests this app may use, 1-52
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared.config_error import ConfigError

DATAVERSE_CONCURRENT_REQUEST_LIMIT = 52
# The default budget leaves 8 of the 52 for what else signs in as the same application user: the
# smoke test, an operator's script, an instance still draining after scale-in.
DEFAULT_BUDGET = 44
DEFAULT_MAX_INSTANCES = 40
# With HUNTER_D365_MAX_INSTANCES unset the app is one process on its own (`make run`, the tests, a
# laptop): it takes the whole budget. The deployment always sets the setting.
UNSET_MAX_INSTANCES = 1
# host.json extensions.queues.batchSize accepts at most 32.
QUEUE_BATCH_SIZE_MAX = 32


@dataclass(frozen=True)
class ConcurrencyPlan:
    """How many Dataverse requests one instance may have in flight, and the queue settings that
    keep the trigger within it."""

    budget: int
    max_instances: int
    per_instance: int

    @property
    def queue_batch_size(self) -> int:
        """host.json extensions.queues.batchSize: with newBatchThreshold 0 an instance runs at most
        this many messages at once, and a message makes its Dataverse calls one after another."""
        return min(self.per_instance, QUEUE_BATCH_SIZE_MAX)

    @property
    def queue_new_batch_threshold(self) -> int:
        return 0

    def in_flight(self, running_instances: int) -> int:
        """Dataverse requests in flight at most while `running_instances` instances run."""
        return running_instances * self.per_instance

    @property
    def safe_instances(self) -> int:
        """The most instances that can run, configured or not, with the 52 still held."""
        return DATAVERSE_CONCURRENT_REQUEST_LIMIT // self.per_instance


def plan(budget: int = DEFAULT_BUDGET, max_instances: int = DEFAULT_MAX_INSTANCES) -> ConcurrencyPlan:
    """The per-instance share of `budget` when up to `max_instances` instances run.

    Raises ConfigError when the budget exceeds Dataverse's limit, either number is below 1, or
    there are more instances than budget (one request each would already exceed it)."""
    if not 1 <= budget <= DATAVERSE_CONCURRENT_REQUEST_LIMIT:
        raise ConfigError(
            f"HUNTER_D365_CONCURRENCY_BUDGET: {budget} is not within 1-{DATAVERSE_CONCURRENT_REQUEST_LIMIT}"
        )
    if max_instances < 1:
        raise ConfigError(f"HUNTER_D365_MAX_INSTANCES: {max_instances} is below 1")
    if max_instances > budget:
        raise ConfigError(
            f"HUNTER_D365_MAX_INSTANCES: {max_instances} instances with one Dataverse request each exceed "
            f"the budget of {budget}; lower maximumInstanceCount"
        )
    return ConcurrencyPlan(budget=budget, max_instances=max_instances, per_instance=max(1, budget // max_instances))


def plan_from_env(env: Mapping[str, str]) -> ConcurrencyPlan:
    """The plan the deployment configured (HUNTER_D365_CONCURRENCY_BUDGET, HUNTER_D365_MAX_INSTANCES).

    Raises ConfigError for a value that is not a whole number or is out of range."""
    budget = _whole(env, "HUNTER_D365_CONCURRENCY_BUDGET", DEFAULT_BUDGET)
    instances = _whole(env, "HUNTER_D365_MAX_INSTANCES", UNSET_MAX_INSTANCES)
    return plan(budget, instances)


def _whole(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise ConfigError(f"{name}: expected a whole number, got {raw!r}")
    return int(raw)

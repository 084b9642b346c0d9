"""The Dataverse concurrency budget holds for every instance count the platform may run."""

import pytest

from shared.concurrency import (
    DATAVERSE_CONCURRENT_REQUEST_LIMIT,
    DEFAULT_BUDGET,
    DEFAULT_MAX_INSTANCES,
    QUEUE_BATCH_SIZE_MAX,
    plan,
    plan_from_env,
)
from shared.config import ConfigError


def test_defaults_deploy_anywhere_and_take_one_request_per_instance() -> None:
    # 40 is the lowest cap every region has accepted (event-driven-scaling.md, "Limit scale-out").
    defaults = plan()
    assert (defaults.max_instances, defaults.budget) == (40, 44)
    assert defaults.per_instance == 1
    assert (defaults.queue_batch_size, defaults.queue_new_batch_threshold) == (1, 0)
    assert defaults.in_flight(40) == 40 <= DATAVERSE_CONCURRENT_REQUEST_LIMIT


@pytest.mark.parametrize("budget", range(1, DATAVERSE_CONCURRENT_REQUEST_LIMIT + 1))
def test_every_configuration_stays_within_its_budget(budget: int) -> None:
    for instances in range(1, budget + 1):
        share = plan(budget, instances)
        assert share.per_instance >= 1
        assert share.in_flight(instances) <= budget
        # The trigger's own concurrency (batchSize + newBatchThreshold) never exceeds the share.
        assert share.queue_batch_size + share.queue_new_batch_threshold <= share.per_instance
        assert 1 <= share.queue_batch_size <= QUEUE_BATCH_SIZE_MAX


@pytest.mark.parametrize("instances", [1, 2, 3, 4, 10, 20, 40, 44])
def test_the_limit_holds_when_the_platform_runs_more_instances_than_configured(instances: int) -> None:
    share = plan(DEFAULT_BUDGET, instances)
    assert share.in_flight(share.safe_instances) <= DATAVERSE_CONCURRENT_REQUEST_LIMIT
    assert share.in_flight(share.safe_instances + 1) > DATAVERSE_CONCURRENT_REQUEST_LIMIT
    assert share.safe_instances >= instances


def test_defaults_tolerate_the_platform_running_past_the_cap() -> None:
    # An open host issue reports scaling past maximumInstanceCount: with the defaults the 52 hold
    # up to 52 instances, 12 more than configured.
    assert plan().safe_instances == 52
    assert plan().safe_instances - DEFAULT_MAX_INSTANCES == 12


def test_few_instances_share_the_budget_and_the_batch_size_is_capped() -> None:
    assert plan(44, 4).per_instance == 11
    assert plan(44, 3).per_instance == 14
    one = plan(52, 1)
    assert (one.per_instance, one.queue_batch_size) == (52, QUEUE_BATCH_SIZE_MAX)


@pytest.mark.parametrize(
    ("budget", "instances", "setting"),
    [
        (0, 1, "HUNTER_D365_CONCURRENCY_BUDGET"),
        (53, 1, "HUNTER_D365_CONCURRENCY_BUDGET"),
        (44, 0, "HUNTER_D365_MAX_INSTANCES"),
        (44, 45, "HUNTER_D365_MAX_INSTANCES"),
    ],
)
def test_impossible_configurations_are_refused_with_the_setting_named(
    budget: int, instances: int, setting: str
) -> None:
    with pytest.raises(ConfigError, match=setting):
        plan(budget, instances)


def test_settings_are_read_with_the_deployment_defaults() -> None:
    assert plan_from_env({}) == plan(DEFAULT_BUDGET, 1)  # one local process: the whole budget
    configured = plan_from_env({"HUNTER_D365_MAX_INSTANCES": "4", "HUNTER_D365_CONCURRENCY_BUDGET": "40"})
    assert configured.per_instance == 10
    with pytest.raises(ConfigError, match="HUNTER_D365_MAX_INSTANCES"):
        plan_from_env({"HUNTER_D365_MAX_INSTANCES": "forty"})

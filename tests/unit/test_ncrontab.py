"""The local host's NCRONTAB parser against the behaviour of NCrontab and the Timers extension
(devstack/host/timers.py names the sources); the listener, which runs in real time, is tested in
tests/integration/test_timer_listener.py."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from devstack.host.settings import HostConfigError
from devstack.host.timers import (
    ConstantSchedule,
    CronError,
    CronSchedule,
    parse_field,
    parse_schedule,
    timer_request,
)

BASE = datetime(2024, 1, 1, 10, 2, 3)  # a Monday


def nexts(expression: str, start: datetime = BASE, count: int = 3) -> list[datetime]:
    schedule = CronSchedule.parse(expression)
    found: list[datetime] = []
    moment: datetime | None = start
    for _ in range(count):
        assert moment is not None
        moment = schedule.next_after(moment)
        assert moment is not None
        found.append(moment)
    return found


@pytest.mark.parametrize(
    ("text", "low", "high", "expected"),
    [
        ("*", 0, 5, {0, 1, 2, 3, 4, 5}),
        ("*/2", 0, 5, {0, 2, 4}),
        ("1-4", 0, 5, {1, 2, 3, 4}),
        ("1-5/2", 0, 5, {1, 3, 5}),
        ("3/2", 0, 9, {3, 5, 7, 9}),  # a/n: from a to the field's maximum
        ("1,3,5", 0, 5, {1, 3, 5}),
        ("0-1,4-5", 0, 5, {0, 1, 4, 5}),
        ("7", 0, 59, {7}),
    ],
)
def test_fields_take_stars_values_ranges_steps_and_lists(text: str, low: int, high: int, expected: set[int]) -> None:
    assert parse_field(text, low, high) == expected


@pytest.mark.parametrize("text", ["", "1,,2", "60", "5-2", "*/0", "*/x", "a", "1-", "-1", "1.5"])
def test_bad_fields_are_refused(text: str) -> None:
    with pytest.raises(CronError):
        parse_field(text, 0, 59)


def test_month_and_day_names_match_by_prefix_case_insensitively() -> None:
    schedule = CronSchedule.parse("0 0 12 * jan-Mar mon,FRI")
    assert schedule.months == {1, 2, 3}
    assert schedule.days_of_week == {1, 5}
    assert CronSchedule.parse("0 0 0 * * Sunday").days_of_week == {0}
    with pytest.raises(CronError):
        CronSchedule.parse("0 0 0 * * Funday")


def test_six_fields_have_seconds_five_fields_run_on_second_zero() -> None:
    assert nexts("*/2 * * * * *") == [BASE.replace(second=s) for s in (4, 6, 8)]
    assert nexts("*/5 * * * *") == [BASE.replace(minute=m, second=0) for m in (5, 10, 15)]


@pytest.mark.parametrize("expression", ["* * * *", "* * * * * * *", "", "0 0 0 0 * *", "0 0 0 * 13 *", "0 0 0 * * 7"])
def test_wrong_field_counts_and_ranges_are_refused(expression: str) -> None:
    with pytest.raises(CronError):
        CronSchedule.parse(expression)


def test_the_next_occurrence_is_strictly_after_the_base_time() -> None:
    on_the_dot = datetime(2024, 1, 1, 10, 5, 0)
    assert CronSchedule.parse("0 */5 * * * *").next_after(on_the_dot) == datetime(2024, 1, 1, 10, 10, 0)
    assert CronSchedule.parse("0 */5 * * * *").next_after(on_the_dot.replace(microsecond=999_999)) == datetime(
        2024, 1, 1, 10, 10, 0
    )


def test_every_five_minutes_rolls_over_hours_days_months_and_years() -> None:
    assert nexts("0 */5 * * * *", datetime(2024, 12, 31, 23, 57, 0), 2) == [
        datetime(2025, 1, 1, 0, 0, 0),
        datetime(2025, 1, 1, 0, 5, 0),
    ]


def test_day_of_month_and_day_of_week_must_both_match() -> None:
    """NCrontab ANDs the two (Vixie cron would OR them): the 13th that is a Friday."""
    assert nexts("0 0 0 13 * Fri", datetime(2024, 1, 1), 2) == [datetime(2024, 9, 13), datetime(2024, 12, 13)]


def test_days_beyond_a_months_end_are_skipped_and_impossible_dates_never_come() -> None:
    assert nexts("0 0 0 31 * *", datetime(2024, 1, 31, 1), 2) == [datetime(2024, 3, 31), datetime(2024, 5, 31)]
    assert nexts("0 0 0 29 2 *", datetime(2024, 3, 1), 1) == [datetime(2028, 2, 29)]
    assert CronSchedule.parse("0 0 0 30 2 *").next_after(datetime(2024, 1, 1)) is None


def test_weekdays_at_half_past_nine() -> None:
    assert nexts("0 30 9 * * 1-5", datetime(2024, 1, 5, 10, 0, 0), 2) == [  # a Friday after 9:30
        datetime(2024, 1, 8, 9, 30),
        datetime(2024, 1, 9, 9, 30),
    ]


def test_a_schedule_comes_from_a_setting_and_falls_back_to_a_timespan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPTH_SCHEDULE", "*/2 * * * * *")
    assert isinstance(parse_schedule("%DEPTH_SCHEDULE%"), CronSchedule)
    assert parse_schedule("00:00:30") == ConstantSchedule(timedelta(seconds=30))
    monkeypatch.delenv("DEPTH_SCHEDULE")
    with pytest.raises(HostConfigError, match="DEPTH_SCHEDULE"):
        parse_schedule("%DEPTH_SCHEDULE%")
    with pytest.raises(HostConfigError, match="not recognized as a valid cron expression or timespan"):
        parse_schedule("every five minutes")


def test_the_timer_request_is_what_the_python_library_decodes_from_the_hosts_json() -> None:
    request = timer_request()
    assert request.past_due is False
    assert request.schedule == {"AdjustForDST": True}
    assert request.schedule_status == {}

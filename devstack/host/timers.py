"""Timer triggers as the Functions host runs them (the Timers extension of the WebJobs SDK).

Sources, all read, none copied:
- azure-webjobs-sdk-extensions `src/WebJobs.Extensions/Extensions/Timers/Scheduling/TimerSchedule.cs`
  (`Create`): the schedule is resolved with `INameResolver.ResolveWholeString` (`%SETTING%`), then
  parsed as a crontab (`CronSchedule.TryCreate`: five space-separated fields are minute precision,
  any other count is tried with seconds, i.e. six), else as a .NET `TimeSpan` (`ConstantSchedule`),
  else `ArgumentException`. A schedule that does not resolve or parse fails the function's indexing.
- azure-webjobs-sdk `src/Microsoft.Azure.WebJobs.Host/Indexers/FunctionIndexer.cs`: with
  `AllowPartialHostStartup` (set by azure-functions-host `ScriptHostBuilderExtensions.cs`) a function
  that fails indexing is logged "Function '…' failed indexing and will be disabled." and the host
  runs the others.
- NCrontab (atifaziz/NCrontab `NCrontab/CrontabSchedule.cs`, `CrontabFieldImpl.cs`), the parser the
  extension uses: fields second (0-59), minute (0-59), hour (0-23), day (1-31), month (1-12 or
  names), day of week (0-6, Sunday = 0, or names); each field a `*`, a value, a range `a-b`, a step
  `*/n`, `a-b/n` or `a/n` (a to the field's maximum), or a comma list of those. The next occurrence is
  strictly after the base time, and day of month and day of week must *both* match (unlike Vixie
  cron, which takes either).
- `.../Timers/Listener/TimerListener.cs`: `[Singleton(Mode = SingletonMode.Listener)]`, one
  `System.Timers.Timer` with `AutoReset = false` re-armed only after the invocation returns, and an
  invocation lock: runs of one timer never overlap; occurrences missed while a run was still going
  collapse into one immediate run (`GetNextTimerInterval`: a past `Next` becomes 1 tick).
  `RunOnStartup` schedules an immediate invocation on start; a function that fails does not stop the
  schedule. `IsPastDue` is set only by the schedule monitor (`UseMonitor`), on startup.
- `.../Timers/TimerInfo.cs`, `ScheduleStatus.cs` + azure-functions-host
  `GrpcMessageConversionExtensions.ToRpcDefault` (`JsonConvert.SerializeObject`): the worker receives
  `{"Schedule": {"AdjustForDST": true}, "ScheduleStatus": …, "IsPastDue": …}` as JSON, which the Python
  library's `azure.functions.timer.TimerRequestConverter` turns into a `TimerRequest` (`past_due`).

Kept different on purpose (docs/local-host.md): no schedule monitor, so `use_monitor` is ignored,
`past_due` is always False and `schedule_status` empty; time is the machine's local time, with no
daylight-saving adjustment (`CronSchedule.TryAdjustAmbiguousTime`).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from devstack.host.settings import HostConfigError, resolve, timespan_ms
from devstack.host.worker import InvocationFailed, Worker

logger = logging.getLogger("devstack.host")

# NCrontab CrontabFieldImpl: (minimum, maximum, names) per field, in expression order.
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")  # fmt: skip
_DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("second", 0, 59, ()),
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 6, _DAYS),
)
# A schedule that matches no real date ("0 0 0 30 2 *") has no next occurrence; NCrontab searches to
# the calendar's end. Eight years covers every leap-day schedule.
_SEARCH_YEARS = 8


class CronError(ValueError):
    """Not an NCRONTAB expression."""


def _value(text: str, low: int, names: tuple[str, ...]) -> int:
    if text[:1].isdigit():
        if not text.isdigit():
            raise CronError(f"'{text}' is not a number")
        return int(text)
    # CrontabFieldImpl.ParseValue: a name, or any prefix of one, case-insensitive (first match wins).
    for index, name in enumerate(names):
        if text and name.lower().startswith(text.lower()):
            return index + low
    raise CronError(f"'{text}' is not a valid value" + (f" (use one of {', '.join(names)})" if names else ""))


def parse_field(text: str, low: int, high: int, names: tuple[str, ...] = ()) -> frozenset[int]:
    """One crontab field → the set of values it allows.

    Raises:
        CronError: empty, malformed, out of range, or a step below 1.
    """
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError("A crontab field value cannot be empty.")
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) < 1:
                raise CronError(f"'{step_text}' is not a valid step")
            step = int(step_text)
        if base == "*":
            first, last = low, high
        elif "-" in base[1:]:
            dash = base.index("-", 1)
            first, last = _value(base[:dash], low, names), _value(base[dash + 1 :], low, names)
        else:
            first = _value(base, low, names)
            last = high if slash else first  # "a/n" runs from a to the field's maximum
        if not (low <= first <= high and low <= last <= high) or first > last:
            raise CronError(f"'{part}' is outside {low}-{high}")
        values.update(range(first, last + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronSchedule:
    """A parsed NCRONTAB expression (six fields with seconds, or five without)."""

    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]

    @classmethod
    def parse(cls, expression: str) -> CronSchedule:
        """Parse as `CronSchedule.TryCreate` does: five fields → no seconds (second 0), else six.

        Raises:
            CronError: the wrong number of fields or a bad field.
        """
        tokens = [token for token in expression.split(" ") if token]
        if len(tokens) == 5:
            tokens = ["0", *tokens]
        if len(tokens) != 6:
            raise CronError(f"'{expression}' has {len(tokens)} fields; NCRONTAB needs 6 (or 5 without seconds)")
        sets = [
            parse_field(token, low, high, names) for token, (_, low, high, names) in zip(tokens, _FIELDS, strict=True)
        ]
        return cls(expression, *sets)

    def next_after(self, now: datetime) -> datetime | None:
        """The first occurrence strictly after `now` (to the second, as NCrontab), or None if the
        schedule matches no date within eight years. Works on `now`'s wall-clock fields."""
        moment = now.replace(microsecond=0) + timedelta(seconds=1)
        limit = moment + timedelta(days=366 * _SEARCH_YEARS)
        while moment < limit:
            if moment.month not in self.months:
                year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
                moment = moment.replace(year=year, month=month, day=1, hour=0, minute=0, second=0)
            elif moment.day not in self.days or (moment.isoweekday() % 7) not in self.days_of_week:
                moment = moment.replace(hour=0, minute=0, second=0) + timedelta(days=1)
            elif moment.hour not in self.hours:
                moment = moment.replace(minute=0, second=0) + timedelta(hours=1)
            elif moment.minute not in self.minutes:
                moment = moment.replace(second=0) + timedelta(minutes=1)
            elif moment.second not in self.seconds:
                moment += timedelta(seconds=1)
            else:
                return moment
        return None

    def __str__(self) -> str:
        return f"Cron: '{self.expression}'"


@dataclass(frozen=True)
class ConstantSchedule:
    """A `TimeSpan` schedule (`ConstantSchedule.cs`): every `interval` after the last run."""

    interval: timedelta

    def next_after(self, now: datetime) -> datetime | None:
        return now + self.interval

    def __str__(self) -> str:
        return f"Constant: {self.interval}"


Schedule = CronSchedule | ConstantSchedule


def parse_schedule(expression: str) -> Schedule:
    """`TimerSchedule.Create`: resolve `%SETTING%`, then crontab, then TimeSpan.

    Raises:
        HostConfigError: a setting that does not resolve, or an expression that is neither
            (the real host fails to index the function and disables it).
    """
    resolved = resolve(expression)
    try:
        return CronSchedule.parse(resolved)
    except CronError as cron_error:
        try:
            milliseconds = timespan_ms(resolved)
        except HostConfigError:
            raise HostConfigError(
                f"The schedule expression '{resolved}' was not recognized as a valid cron expression or "
                f"timespan string. ({cron_error})"
            ) from None
    if milliseconds <= 0:
        raise HostConfigError(f"The schedule expression '{resolved}' is not a positive TimeSpan.")
    return ConstantSchedule(timedelta(milliseconds=milliseconds))


def timer_request(past_due: bool = False) -> Any:
    """The `TimerRequest` the Python worker builds from the host's JSON (no schedule monitor:
    `ScheduleStatus` is null), decoded by the Python library's own converter."""
    from azure.functions import meta
    from azure.functions.timer import TimerRequestConverter

    payload = json.dumps({"Schedule": {"AdjustForDST": True}, "ScheduleStatus": None, "IsPastDue": past_due})
    return TimerRequestConverter.decode(meta.Datum(payload, "json"), trigger_metadata={})


class TimerListener:
    """One timer trigger: a single thread that waits for the next occurrence and runs the function
    to completion before computing the one after, so runs never overlap (the listener singleton)."""

    def __init__(
        self,
        name: str,
        function: Callable[..., Any],
        trigger: dict[str, Any],
        worker: Worker,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """Raises:
        HostConfigError: the schedule does not resolve or parse (the caller disables the function).
        """
        self.name = name
        self.function = function
        self.argument = str(trigger["name"])
        self.worker = worker
        self.schedule = parse_schedule(str(trigger["schedule"]))
        self.run_on_startup = bool(trigger.get("runOnStartup", False))
        self.clock = clock or (lambda: datetime.now().astimezone())
        self.invocations = 0

    def next_occurrences(self, count: int = 5) -> list[datetime]:
        found: list[datetime] = []
        moment: datetime | None = self.clock()
        while moment is not None and len(found) < count:
            moment = self.schedule.next_after(moment)
            if moment is not None:
                found.append(moment)
        return found

    def run(self, stop: threading.Event) -> None:
        occurrences = "".join(f"\n{moment.isoformat()}" for moment in self.next_occurrences())
        logger.info(
            "The next 5 occurrences of the '%s' schedule (%s) will be:%s",
            self.name,
            self.schedule,
            occurrences,
            extra={"function": self.name, "schedule": str(self.schedule)},
        )
        due = self.schedule.next_after(self.clock())
        if self.run_on_startup and not stop.is_set():
            logger.info("Function '%s' is configured to run on startup. Executing now.", self.name)
            started = self.clock()
            self._invoke()
            due = self.schedule.next_after(started)
        while due is not None and not stop.is_set():
            if stop.wait(max(0.0, (due - self.clock()).total_seconds())):
                return
            started = self.clock()
            self._invoke()
            # TimerListener.InvokeJobFunction: a timer that fired early (clock skew) counts from the
            # occurrence it was for; a late or long run counts from its start, so what it overran
            # comes due at once, once.
            due = self.schedule.next_after(max(started, due))

    def _invoke(self) -> None:
        self.invocations += 1
        try:
            self.worker.invoke(self.name, self.function, {self.argument: timer_request(past_due=False)})
        except InvocationFailed as exc:
            # The executor logs the failure; the schedule goes on (TimerListener catches everything).
            logger.error("host_function_failed", exc_info=exc, extra={"function": self.name})

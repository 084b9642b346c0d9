"""The timer trigger that reads the push queue's and the poison queue's depth (`shared/gauges.py`).

Schedule: the app setting `HUNTER_D365_QUEUE_DEPTH_SCHEDULE`, an NCRONTAB expression with seconds
(Bicep sets `0 */5 * * * *`, every five minutes; the local stack's tests use a second or two). The
Timers extension runs one listener per app (a singleton across instances), so one reading per
occurrence reaches Application Insights however many instances run. If the setting is missing the
host disables this function alone ("failed indexing and will be disabled"); the rest of the app runs.
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared.gauges import record_depths
from shared.services import get_services

logger = logging.getLogger(__name__)
bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions' constructors are untyped


@bp.timer_trigger(arg_name="timer", schedule="%HUNTER_D365_QUEUE_DEPTH_SCHEDULE%")
def queue_depth(timer: func.TimerRequest) -> None:
    """Read both queues' approximate message counts and emit them as `d365_queue_depth`."""
    services = get_services()
    queues, settings = services.queues, services.settings
    record_depths({settings.queue_name: queues.push, settings.poison_queue_name: queues.poison})
    if timer.past_due:
        logger.info("d365_queue_depth_past_due")

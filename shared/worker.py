"""The queue trigger: one message in → `pipeline.process`. Bad messages and Dataverse failures
are handled inside the pipeline (retry by delayed re-enqueue, or the poison queue); an exception
escapes only when storage itself fails, and then the host's own retry and poison queue apply."""

from __future__ import annotations

import logging

import azure.functions as func

from shared.pipeline import process
from shared.services import get_services

logger = logging.getLogger(__name__)
bp = func.Blueprint()


@bp.queue_trigger(arg_name="msg", queue_name="%HUNTER_D365_QUEUE%", connection="AzureWebJobsStorage")
def push_worker(msg: func.QueueMessage) -> None:
    """Push the lead in `msg` to Dataverse."""
    result = process(msg.get_body(), get_services())
    logger.debug("d365_message_processed", extra={"action": result.action, "message_id": msg.id})

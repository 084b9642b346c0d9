"""The queue trigger: one message in → `engine.process_message`, which reads the message's
`schema_version` (1: one lead, 2: a bulk message) and pushes it under the one set of rules
(docs/design.md §5-§6). Bad messages and Dataverse failures are handled inside the engine (retry by
delayed re-enqueue, or the poison queue); an exception escapes only when storage itself fails (an
`AzureError`) or a state write breaks the transition table (`ForbiddenTransition`, a bug), and then
the host's own retry and poison queue apply — with the host's dequeue count handed to the engine,
which carries it into every copy it re-sends so that deferrals cannot reset it, and ends the message
itself one delivery before the host's `maxDequeueCount`.

The trigger declares `dataType: binary`. Without it the Storage Queues extension binds the message
as a string with a strict UTF-8 decoder (StorageQueueMessageToStringConverter →
`ToValidUTF8String`), so a body that is not UTF-8 fails the binding before Python runs: five wasted
invocations, then `-poison`, and the app never records why. Bound as binary the extension hands over
the raw bytes (StorageQueueMessageToByteArrayConverter → `Body.ToArray()`), and the engine rejects
such a message once as `invalid_encoding`. See docs/local-host.md."""

from __future__ import annotations

import logging

import azure.functions as func

from shared.engine import process_message
from shared.services import get_services

logger = logging.getLogger(__name__)
bp = func.Blueprint()


@bp.queue_trigger(
    arg_name="msg",
    queue_name="%HUNTER_D365_QUEUE%",
    connection="AzureWebJobsStorage",
    data_type=func.DataType.BINARY,
)
def push_worker(msg: func.QueueMessage) -> None:
    """Push the lead(s) in `msg` to Dataverse."""
    result = process_message(msg.get_body(), get_services(), dequeue_count=msg.dequeue_count or 1)
    logger.debug("d365_message_processed", extra={"action": result.action, "message_id": msg.id})

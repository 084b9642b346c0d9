"""Queue triggers as the Storage Queues extension (5.x) runs them.

Sources, all in azure-sdk-for-net `sdk/storage/`:
- Common/src/Shared/Queues/QueueListener.cs: `ReceiveMessages(batchSize, 10 min)`; a new batch is
  fetched once no more than `newBatchThreshold` messages are in flight; idle polling backs off
  (randomized exponential) from 100 ms to `maxPollingInterval`; while a function runs, its
  message's invisibility is renewed when half of the 10 minutes have passed.
- Common/src/Shared/Queues/QueueProcessor.cs: a message whose dequeue count already exceeds
  `maxDequeueCount` goes to poison before running; success deletes; failure with
  dequeueCount >= maxDequeueCount → poison, else `UpdateMessage(visibilityTimeout)`; poisoning
  logs "Message has reached MaxDequeueCount of {n}. Moving message to queue '{poison}'." (Warning).
- Queues/src/QueueServiceClientProvider.cs (MessageDecodingFailed handler): a message that is not
  base64 goes straight to poison through a client that does not encode, with the same log line.
  Azure.Storage.Queues QueueMessageCodec decodes with .NET `Convert.FromBase64String`, which skips
  spaces, tabs, CR and LF.
- Queues/src/Triggers/*Converter.cs + azure-functions-host GeneralScriptBindingProvider/
  JobHostMetadataProvider.GetDefaultType: a trigger with no `dataType` is bound as `string` by
  `Body.ToValidUTF8String()` (UTF8Encoding(false, throwOnInvalidBytes: true)): a body that is not
  UTF-8 fails the binding, which counts as a failed invocation. `dataType: binary` binds
  `Body.ToArray()`, the raw bytes. Binding data (QueueTrigger) tolerates non-UTF-8 bodies.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import os
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from devstack.host.settings import poison_queue_name, queue_name
from devstack.host.storage import queue_client
from devstack.host.worker import InvocationFailed, Worker

logger = logging.getLogger("devstack.host")
# The extension's fixed invisibility while a function runs (QueueListener: TimeSpan.FromMinutes(10)).
# Tests shorten it with this setting to watch renewal and a crashed host's message reappear.
LEASE_SECONDS = int(os.environ.get("LOCAL_HOST_MESSAGE_LEASE_SECONDS", "600"))
_BASE64_WHITESPACE = str.maketrans("", "", " \t\r\n")


class BindingError(Exception):
    """The trigger value could not be converted to the declared type."""


def decode_base64(text: str) -> bytes:
    """`Convert.FromBase64String`: whitespace ignored, otherwise strict.

    Raises:
        binascii.Error: not base64.
    """
    return base64.b64decode(text.translate(_BASE64_WHITESPACE), validate=True)


def bind_body(body: bytes, data_type: str | None) -> str | bytes:
    """The value the worker receives for the trigger.

    Raises:
        BindingError: no dataType/string and the body is not UTF-8.
    """
    if (data_type or "").lower() == "binary":
        return body
    try:
        return body.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise BindingError(f"Exception binding parameter: {exc}") from None


class QueueListener:
    """One queue trigger's listener."""

    def __init__(
        self, name: str, function: Any, trigger: dict[str, Any], options: dict[str, Any], worker: Worker
    ) -> None:
        self.name = name
        self.function = function
        self.trigger = trigger
        self.options = options
        self.worker = worker
        self.queue_name = queue_name(trigger["queueName"])
        self.poison_name = poison_queue_name(self.queue_name)
        self.connection = trigger.get("connection") or "AzureWebJobsStorage"
        self.renewals = 0

    def run(self, stop: threading.Event) -> None:
        from azure.core.exceptions import AzureError, ResourceExistsError

        queue = queue_client(self.connection, self.queue_name)
        poison = queue_client(self.connection, self.poison_name) if self.poison_name else None
        for client in (queue, poison):
            if client is not None:
                with contextlib.suppress(ResourceExistsError):
                    client.create_queue()
        opts = self.options
        # These threads only wait (the extension's async tasks); functions run on the worker pool.
        waiters = ThreadPoolExecutor(
            max_workers=opts["batchSize"] + opts["newBatchThreshold"], thread_name_prefix=f"q-{self.name}"
        )
        busy = [0]
        lock = threading.Lock()
        delay = 0.1
        logger.info(
            "host_queue_listening",
            extra={"function": self.name, "queue": self.queue_name, "batch_size": opts["batchSize"]},
        )
        while not stop.is_set():
            with lock:
                saturated = busy[0] > opts["newBatchThreshold"]
            if saturated:
                stop.wait(0.02)
                continue
            try:
                batch = list(
                    queue.receive_messages(
                        messages_per_page=opts["batchSize"],
                        max_messages=opts["batchSize"],
                        visibility_timeout=LEASE_SECONDS,
                    )
                )
            except AzureError as exc:
                logger.warning(
                    "host_queue_poll_failed", extra={"queue": self.queue_name, "error_code": type(exc).__name__}
                )
                stop.wait(2)
                continue
            if not batch:
                # RandomizedExponentialBackoffStrategy: 100 ms doubling, ±20 % jitter, capped.
                stop.wait(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, opts["maxPollingInterval"] / 1000)
                continue
            delay = 0.1
            for message in batch:
                with lock:
                    busy[0] += 1

                def process(message: Any = message) -> None:
                    try:
                        self._process(queue, poison, message)
                    except Exception:
                        logger.exception("host_queue_processing_failed", extra={"function": self.name})
                    finally:
                        with lock:
                            busy[0] -= 1

                waiters.submit(process)
        waiters.shutdown(wait=True)

    def _poison(self, queue: Any, poison: Any, message: Any, content: str) -> None:
        if poison is None:
            return  # no poison queue for this queue: the message stays invisible (QueueProcessor)
        logger.warning(
            "Message has reached MaxDequeueCount of %s. Moving message to queue '%s'.",
            self.options["maxDequeueCount"],
            self.poison_name,
            extra={"function": self.name, "message_id": message.id, "dequeue_count": message.dequeue_count},
        )
        poison.send_message(content)
        queue.delete_message(message.id, message.pop_receipt)

    def _process(self, queue: Any, poison: Any, message: Any) -> None:
        from azure.functions.queue import QueueMessage

        opts = self.options
        if opts["messageEncoding"] == "base64":
            try:
                body = decode_base64(message.content)
            except (binascii.Error, ValueError):
                logger.error("host_message_not_base64", extra={"function": self.name, "message_id": message.id})
                self._poison(queue, poison, message, message.content)
                return
        else:
            body = message.content.encode("utf-8")
        # The poison copy carries the decoded body, re-encoded by the poison queue's client.
        poison_content = base64.b64encode(body).decode() if opts["messageEncoding"] == "base64" else message.content
        if message.dequeue_count > opts["maxDequeueCount"]:
            self._poison(queue, poison, message, poison_content)
            return
        holder = {"message": message}
        renew_stop = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(queue, holder, renew_stop), daemon=True)
        renewer.start()
        try:
            value = bind_body(body, self.trigger.get("dataType"))
            msg = QueueMessage(  # type: ignore[no-untyped-call]
                id=message.id,
                body=value,
                pop_receipt=message.pop_receipt,
                dequeue_count=message.dequeue_count,
                insertion_time=message.inserted_on,
                expiration_time=message.expires_on,
                time_next_visible=message.next_visible_on,
            )
            self.worker.invoke(self.name, self.function, {self.trigger["name"]: msg})
            succeeded = True
        except (BindingError, InvocationFailed) as exc:
            succeeded = False
            logger.error(
                "host_function_failed",
                exc_info=exc,
                extra={"function": self.name, "message_id": message.id, "dequeue_count": message.dequeue_count},
            )
        finally:
            renew_stop.set()
            renewer.join()
        current = holder["message"]
        if succeeded:
            queue.delete_message(current.id, current.pop_receipt)
        elif message.dequeue_count >= opts["maxDequeueCount"]:
            self._poison(queue, poison, current, poison_content)
        else:
            queue.update_message(current.id, current.pop_receipt, visibility_timeout=opts["visibilityTimeout"] // 1000)

    def _renew(self, queue: Any, holder: dict[str, Any], stop: threading.Event) -> None:
        """Keep the running message invisible: at half the lease, extend it by the whole lease
        (QueueListener.CreateUpdateMessageVisibilityTimer)."""
        from azure.core.exceptions import AzureError

        while not stop.wait(LEASE_SECONDS / 2):
            current = holder["message"]
            try:
                receipt = queue.update_message(current.id, current.pop_receipt, visibility_timeout=LEASE_SECONDS)
            except AzureError as exc:
                logger.warning(
                    "host_visibility_renewal_failed", extra={"message_id": current.id, "error_code": type(exc).__name__}
                )
                continue
            current.pop_receipt = receipt.pop_receipt
            current.next_visible_on = receipt.next_visible_on
            self.renewals += 1
            logger.info("host_visibility_renewed", extra={"function": self.name, "message_id": current.id})

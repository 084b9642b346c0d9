"""The stand-in for the Python worker process: one thread pool for every synchronous invocation,
HTTP and queue alike, and `functionTimeout`.

- azure-functions-python-worker `dispatcher.py`: a single `ThreadPoolExecutor` (`_sync_call_tp`)
  runs every sync function; its size is `PYTHON_THREADPOOL_THREAD_COUNT`, unset meaning
  `ThreadPoolExecutor`'s own default min(32, cpus + 4).
- azure-functions-host `WebScriptHostExceptionHandler.OnTimeoutExceptionAsync`: when an invocation
  outlives `functionTimeout` the host logs "A function timeout has occurred. Restarting worker
  process executing invocationId '…'." and restarts that worker; every invocation still running
  in it fails.

Difference kept on purpose (documented in docs/local-host.md): the app runs in this process, so a
"restart" replaces the pool and fails every in-flight invocation, but Python cannot kill the old
threads; they run to the end with their results thrown away.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

logger = logging.getLogger("devstack.host")


class InvocationFailed(Exception):
    """The invocation did not succeed: the function raised, timed out, or its worker restarted."""


class _Invocation:
    def __init__(self) -> None:
        self.id = str(uuid.uuid4())
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class Worker:
    """Runs invocations on one shared pool, enforcing `functionTimeout` (ms; None: unbounded)."""

    def __init__(self, max_workers: int | None, timeout_ms: int | None) -> None:
        self.max_workers = max_workers
        self.timeout = None if timeout_ms is None else timeout_ms / 1000
        self._lock = threading.Lock()
        self._pool = self._new_pool()
        self._in_flight: set[_Invocation] = set()
        self.restarts = 0

    def _new_pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="worker")

    @property
    def size(self) -> int:
        """The pool's real size (what ThreadPoolExecutor chose when `max_workers` is None)."""
        return int(self._pool._max_workers)

    def invoke(self, name: str, function: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        """Run `function(**kwargs)` on the pool and wait for it.

        Raises:
            InvocationFailed: the function raised (chained), exceeded functionTimeout, or was
                running when the worker restarted.
        """
        invocation = _Invocation()

        def run() -> None:
            try:
                value = function(**kwargs)
            except BaseException as exc:
                error: BaseException | None = exc
                value = None
            else:
                error = None
            with self._lock:
                if invocation.done.is_set():
                    return  # failed already by a restart: the result goes nowhere, as in Azure
                invocation.result, invocation.error = value, error
                invocation.done.set()

        with self._lock:
            self._in_flight.add(invocation)
            self._pool.submit(run)
        try:
            if not invocation.done.wait(self.timeout):
                self._timed_out(name, invocation)
            if invocation.error is not None:
                raise InvocationFailed(str(invocation.error)) from invocation.error
            return invocation.result
        finally:
            with self._lock:
                self._in_flight.discard(invocation)

    def _timed_out(self, name: str, invocation: _Invocation) -> None:
        logger.warning(
            "A function timeout has occurred. Restarting worker process executing invocationId '%s'.",
            invocation.id,
            extra={"function": name, "invocation_id": invocation.id},
        )
        with self._lock:
            old = self._pool
            self._pool = self._new_pool()
            self.restarts += 1
            for running in self._in_flight:
                if not running.done.is_set():
                    running.error = TimeoutError(
                        "Timeout value of functionTimeout exceeded" if running is invocation else "worker restarted"
                    )
                    running.done.set()
        old.shutdown(wait=False, cancel_futures=True)
        logger.warning("Restart of language worker process(es) completed.")

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

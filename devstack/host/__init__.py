"""A local Azure Functions host for this app, for machines without Core Tools.

It loads `function_app.app` the way the Python worker indexes it (one `FunctionApp`,
`get_functions()` once, the binding JSON each function declares), checks names as the host does,
then serves HTTP triggers on 127.0.0.1 under host.json's `routePrefix` with function keys enforced
(http.py, keys.py) and runs queue triggers with the Storage Queues extension's semantics
(queues.py), runs timer triggers on their NCRONTAB schedules as the Timers extension does
(timers.py), every invocation on one shared worker pool with `functionTimeout` (worker.py).
Every behaviour names the Microsoft source it was read from; `docs/local-host.md` has the table.

Settings come from the environment, then `local.settings.json` `Values` (as `func start` reads them).
Run: `python -m devstack.host [--port 7071] [--settings local.settings.json]`.
"""

from devstack.host.core import FunctionHost, main

__all__ = ["FunctionHost", "main"]

"""The Functions entry point: creates `app`, registers one blueprint per trigger module, sets up
telemetry. No settings are read and no network is touched at import time."""

import azure.functions as func

from shared import http_api, monitor, telemetry, worker

telemetry.configure()

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(http_api.bp)
app.register_functions(worker.bp)
app.register_functions(monitor.bp)

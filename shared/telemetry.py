"""Telemetry: OpenTelemetry to Application Insights when a connection string is set; nothing else.

Called once from `function_app`; the exporter is imported only when it will be used, so a cold
start without Application Insights pays nothing for it.
"""

from __future__ import annotations

import os


def configure() -> bool:
    """Send logs, traces and metrics to Application Insights if configured; True if it was."""
    if not os.environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
        return False
    from azure.monitor.opentelemetry import configure_azure_monitor

    configure_azure_monitor(logger_name="shared")
    return True

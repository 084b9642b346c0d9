"""`ConfigError`, on its own so that every module that checks a setting can raise it.

`shared.config` builds the settings and `shared.concurrency` checks the Dataverse concurrency
budget they include; both raise this error, and `config` imports `concurrency`. Kept in a module
of its own (it imports nothing of the app), the error no longer ties the two into an import cycle.
`from shared.config import ConfigError` keeps working: `config` re-exports it.
"""

from __future__ import annotations


class ConfigError(Exception):
    """A setting is missing or invalid. The message names the setting, never its value."""

"""Hunter's results consumer: outcomes from `d365-lead-push-results` into Hunter's `companies` table.

Runs beside Hunter's backend, not in the function app (`.funcignore` leaves this package out of the
deployment), and depends on the app only through the wire contract of `PushOutcome`.

- `python -m hunter_results` — the loop: drain, back off while idle, until SIGTERM / Ctrl-C;
  `python -m hunter_results --once` drains what is queued now and exits (cron).
- `hunter_results.drain()` — the same drain as a function, for Hunter's own scheduler.

Settings: `hunter_results.settings`. What happens to each message: `hunter_results.consumer`;
what each outcome writes: `hunter_results.table`.
"""

from hunter_results.consumer import Consumer, Counts, drain, run
from hunter_results.outcome import Outcome, Unreadable, read_message
from hunter_results.settings import ConfigError, ConsumerSettings

__all__ = [
    "ConfigError",
    "Consumer",
    "ConsumerSettings",
    "Counts",
    "Outcome",
    "Unreadable",
    "drain",
    "read_message",
    "run",
]

"""`python -m hunter_results [--once]`: run the results consumer with settings from the environment.

Without `--once` it loops until SIGTERM or Ctrl-C (finishing the message in hand); with `--once` it
drains what is queued now, prints the counts as JSON and exits. Logs are JSON lines on stderr, one
per event (`hunter_results_applied`, `_stale`, `_unknown_domain`, `_poisoned`, `_drained`,
`_failed`), with the outcome's domain, status, lead id and correlation id — never the database URL.
Exit codes: 0 done, 1 the database or storage failed (`--once`), 2 a setting is wrong.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from typing import Any

import psycopg
from azure.core.exceptions import AzureError

from hunter_results.consumer import Consumer, describe
from hunter_results.settings import ConfigError, ConsumerSettings


class JsonLines(logging.Formatter):
    """One JSON object per record: time, level, event, and the `extra` fields."""

    _SKIP = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "event": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in self._SKIP and not k.startswith("_")})
        return json.dumps(entry, default=str)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hunter_results", description=__doc__.split("\n\n")[0])
    parser.add_argument("--once", action="store_true", help="drain what is queued now, print the counts, exit")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines())
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler], force=True)
    for noisy in ("azure", "urllib3", "msal"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        consumer = Consumer(ConsumerSettings.from_env())
    except ConfigError as exc:
        print(f"hunter_results: {exc}", file=sys.stderr)
        return 2
    if args.once:
        try:
            counts = consumer.drain()
        except (psycopg.Error, AzureError) as exc:
            print(f"hunter_results: {type(exc).__name__}: {describe(exc)}", file=sys.stderr)
            return 1
        finally:
            consumer.close()
        print(json.dumps(counts.summary()))
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    totals = consumer.run(stop)
    print(json.dumps(totals.summary()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

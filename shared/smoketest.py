"""Smoke test against the configured Dataverse (replaces the old `d365_smoketest.py`).

    python -m shared.smoketest [--push-test-lead] [--settings local.settings.json]

Checks, each printed PASS/FAIL with what it found: the settings, a token (in the configured auth
mode, from Key Vault when so configured), `WhoAmI`, and — only with `--push-test-lead` — the
creation and read-back of one clearly marked test lead (`smoketest-<time>.hunter-smoke.invalid`).
Exits 0 when every check passed, 1 otherwise. It never prints a token or a secret.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

from shared.config import ConfigError, Settings
from shared.dataverse import D365Error, DataverseClient
from shared.mapping import lead_payload
from shared.models import LeadPush


def run(env: Mapping[str, str], push_test_lead: bool = False, out: TextIO = sys.stdout) -> bool:
    """Run the checks against the Dataverse `env` describes; True when all passed."""
    from shared.services import http_session, token_provider

    def check(name: str, action: Callable[[], str]) -> bool:
        started = time.perf_counter()
        try:
            detail = action()
        except (ConfigError, D365Error) as exc:
            print(f"FAIL  {name:<14} {exc}", file=out)
            return False
        print(f"PASS  {name:<14} {detail} ({(time.perf_counter() - started) * 1000:.0f} ms)", file=out)
        return True

    holder: dict[str, Any] = {}

    def settings() -> str:
        # The smoke test touches no storage; do not make the operator configure it.
        holder["settings"] = s = Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true", **env})
        return f"{s.base_url} ({s.api_version}), auth mode {s.auth_mode}"

    if not check("settings", settings):
        return False
    s: Settings = holder["settings"]
    session = http_session(4)
    tokens = token_provider(s, session)
    client = DataverseClient(s.base_url, tokens, session, s.api_version, s.http_timeout_seconds)
    if not check("token", lambda: (tokens.get_token("smoketest"), f"acquired for {s.scope}")[1]):
        return False
    if not check("whoami", lambda: "UserId " + str(client.who_am_i("smoketest")["UserId"])):
        return False
    if not push_test_lead:
        print("SKIP  test lead      (add --push-test-lead to create one)", file=out)
        return True

    def push() -> str:
        domain = f"smoketest-{int(time.time())}.hunter-smoke.invalid"
        lead = LeadPush(
            domain=domain,
            company_name="Hunter smoke test (delete me)",
            description="Created by `python -m shared.smoketest --push-test-lead`.",
        )
        lead_id = client.create_lead(lead_payload(lead, s.custom_fields), "smoketest")
        if client.get_lead(lead_id, "smoketest") is None:
            raise D365Error("the test lead was created but cannot be read back")
        return f"{lead_id} {s.lead_url(lead_id)}"

    return check("test lead", push)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--push-test-lead", action="store_true", help="also create and read back one test lead")
    parser.add_argument(
        "--settings", default="local.settings.json", help="Values to use where the environment has none"
    )
    args = parser.parse_args(argv)
    env = dict(os.environ)
    path = Path(args.settings)
    if path.exists():
        env = {**json.loads(path.read_text()).get("Values", {}), **env}
    return 0 if run(env, args.push_test_lead) else 1


if __name__ == "__main__":
    raise SystemExit(main())

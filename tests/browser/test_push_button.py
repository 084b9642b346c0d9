"""The Hunter UI path in a real browser (issue 12): a person signs in with msal-browser against the
simulated Entra ID, pushes a lead with <d365-push-button>, and sees the badge and the link."""

from __future__ import annotations

import re
from collections.abc import Callable

import requests

from devstack import ui
from tests.browser.conftest import Demo

CONTOSO, FABRIKAM, NORTHWIND = (lead["domain"] for lead in ui.SAMPLE_LEADS)


def test_sign_in_push_and_the_badge_reaches_synced_with_the_link(demo: Callable[..., Demo]) -> None:
    page = demo()
    page.sign_in("pusher@hunter.example")
    page.wait_status(CONTOSO, "not_synced")
    page.screenshot("badge-not-synced")
    page.button(CONTOSO).locator("button").click()
    page.wait_status(CONTOSO, "synced")
    page.screenshot("badge-synced")
    [lead] = [lead for lead in page.sim.leads() if lead.get("hnt_domain") == CONTOSO]
    href = page.button(CONTOSO).locator("a").get_attribute("href") or ""
    assert href.endswith(f"main.aspx?pagetype=entityrecord&etn=lead&id={lead['leadid']}")
    assert page.button(CONTOSO).locator(".badge").text_content() == "Synced"


def test_a_user_without_the_role_sees_the_403_explained(demo: Callable[..., Demo]) -> None:
    page = demo()
    page.sign_in("viewer@hunter.example")
    page.wait_status(FABRIKAM, "forbidden")  # reading the status needs the role too
    page.button(FABRIKAM).locator("button").click()
    page.wait_status(FABRIKAM, "forbidden")
    detail = page.button(FABRIKAM).locator(".detail").text_content() or ""
    assert "Leads.Push" in detail and "viewer@hunter.example" in detail
    page.screenshot("badge-forbidden")
    assert not page.sim.leads() and page.stack.queue_length(page.stack.queue_name) == 0


def test_signed_out_shows_the_sign_in_prompt(demo: Callable[..., Demo]) -> None:
    page = demo()
    page.page.goto(page.url)
    page.page.wait_for_selector("body[data-ready=true]")
    page.wait_status(NORTHWIND, "signed_out")
    assert page.button(NORTHWIND).locator(".badge").text_content() == "Sign in to push"
    assert page.page.is_visible("#sign-in")
    page.button(NORTHWIND).locator("button").click()
    page.wait_status(NORTHWIND, "signed_out")
    page.screenshot("badge-signed-out")


def test_a_retrying_lead_shows_its_next_attempt_and_a_failed_one_its_reason(demo: Callable[..., Demo]) -> None:
    page = demo(HUNTER_D365_RETRY_BASE_SECONDS="120", HUNTER_D365_RETRY_CAP_SECONDS="600")
    page.sign_in("admin@hunter.example")
    page.button(CONTOSO).locator("button").click()
    page.wait_status(CONTOSO, "synced")
    # On the write itself (the create-only upsert with the alternate key): "*" would also reach the
    # managed-identity and token routes, whose callers retry on their own.
    page.stack.admin.add_fault("lead_upsert", status=503, times=1)
    page.button(FABRIKAM).locator("button").click()
    page.wait_status(FABRIKAM, "retrying")
    detail = page.button(FABRIKAM).locator(".detail").text_content() or ""
    assert re.search(r"next attempt \d", detail), detail
    page.stack.admin.add_fault("lead_upsert", status=400, times=1, code="0x80040203")
    page.button(NORTHWIND).locator("button").click()
    page.wait_status(NORTHWIND, "error")
    assert page.button(NORTHWIND).locator(".detail").text_content()
    page.screenshot("badges-synced-retrying-error")


def test_a_disallowed_origins_preflight_is_refused(demo: Callable[..., Demo]) -> None:
    page = demo()
    api = f"{page.stack.url}/api/v1/d365/push-lead"
    # The same request from the allowed origin passes CORS (and meets the platform's 401) …
    page.page.goto(page.url)
    allowed = page.page.evaluate(
        """async (url) => { const r = await fetch(url, {method: "POST", headers: {"Authorization": "Bearer x",
        "Content-Type": "application/json"}, body: "{}"}); return r.status; }""",
        api,
    )
    assert allowed == 401
    # … from any other origin the browser's preflight is refused and the call never happens.
    port, stop = ui.serve(0, lambda: {})
    try:
        page.page.goto(f"http://127.0.0.1:{port}/")
        refused = page.page.evaluate(
            """async (url) => { try { await fetch(url, {method: "POST", headers: {"Authorization": "Bearer x",
            "Content-Type": "application/json"}, body: "{}"}); return "sent"; } catch (e) { return e.name; } }""",
            api,
        )
    finally:
        stop()
    assert refused == "TypeError"
    preflight = requests.options(
        api, headers={"Origin": f"http://127.0.0.1:{port}", "Access-Control-Request-Method": "POST"}, timeout=10
    )
    assert "Access-Control-Allow-Origin" not in preflight.headers
    assert page.stack.events("host_cors_refused")

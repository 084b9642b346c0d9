"""The Hunter UI path in a real browser (issues 12 and 22): a person signs in with msal-browser
against the simulated Entra ID over HTTPS the browser trusts (`make trust`, no certificate error
ignored), sees each lead's status as their app roles allow, pushes a lead with <d365-push-button>,
watches its badge and opens the lead's page in the simulated Dynamics. One screenshot per state."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack import ui
from tests.browser.conftest import Demo, launch

CONTOSO, FABRIKAM, NORTHWIND = (lead["domain"] for lead in ui.SAMPLE_LEADS)


def console_errors(demo: Demo) -> list[str]:
    """Every console error the page logs from now on (a failed request logs one)."""
    errors: list[str] = []
    demo.page.on(
        "console",
        lambda message: (
            errors.append(f"{message.text} {message.location.get('url')}") if message.type == "error" else None
        ),
    )
    return errors


def open_lead_page(demo: Demo, domain: str) -> Any:
    """Click the row's "Open in Dynamics" and return the page it opens, loaded."""
    with demo.page.expect_popup() as opened:
        demo.button(domain).locator("a").click()
    popup = opened.value
    popup.wait_for_load_state()
    return popup


def assert_lead_page(demo: Demo, domain: str, company: str, screenshot: str = "") -> None:
    [lead] = [lead for lead in demo.sim.leads() if lead.get("hnt_domain") == domain]
    href = demo.button(domain).locator("a").get_attribute("href") or ""
    assert href.endswith(f"main.aspx?pagetype=entityrecord&etn=lead&id={lead['leadid']}")
    popup = open_lead_page(demo, domain)
    assert popup.text_content("h1") == f"Lead: {company}"
    assert popup.text_content("td[data-column=hnt_domain]") == domain
    if screenshot:
        demo.screenshot(screenshot, popup)
    popup.close()


@pytest.mark.parametrize("username", ["pusher@hunter.example", "admin@hunter.example"])
def test_a_person_who_may_push_signs_in_pushes_sees_synced_and_opens_the_lead_page(
    demo: Callable[..., Demo], username: str
) -> None:
    page = demo()
    errors = console_errors(page)
    page.sign_in(username)
    page.wait_status(CONTOSO, "not_synced")
    page.wait_status(NORTHWIND, "not_synced")
    # A domain never pushed reads not_synced from a 200: no failed request, no console error.
    assert errors == []
    assert page.button(CONTOSO).locator("button").is_enabled()
    admin = username.startswith("admin")
    page.page.wait_for_selector("d365-replay-button[data-ready=true]", state="attached")
    assert page.page.is_visible("d365-replay-button") == admin  # the replay control: Leads.Replay only
    page.screenshot("admin" if admin else "pusher")
    page.button(CONTOSO).locator("button").click()
    page.wait_status(CONTOSO, "synced")
    assert page.button(CONTOSO).locator(".badge").text_content() == "Synced"
    if not admin:
        page.screenshot("synced")
    assert_lead_page(page, CONTOSO, "Contoso Ltd", "" if admin else "lead-page")
    if admin:
        page.page.click("d365-replay-button button")
        page.page.wait_for_function(
            "document.querySelector('d365-replay-button').shadowRoot.querySelector('.result').textContent !== ''"
        )
        assert page.page.text_content("d365-replay-button .result") == "Replayed 0 failed pushes"
    assert errors == []


def test_the_viewer_sees_statuses_and_the_lead_page_but_may_not_push(demo: Callable[..., Demo]) -> None:
    page = demo()
    assert page.stack.push({"domain": CONTOSO, "company_name": "Contoso Ltd"}).status_code == 202
    page.stack.wait_status(CONTOSO, "synced")
    page.sign_in("viewer@hunter.example")
    page.wait_status(CONTOSO, "synced")
    page.wait_status(FABRIKAM, "not_synced")
    for domain in (CONTOSO, FABRIKAM):
        assert page.button(domain).locator("button").is_disabled()
        assert "View only: pushing needs the app role Leads.Push" in (
            page.button(domain).locator(".detail").text_content() or ""
        )
    assert not page.page.is_visible("d365-replay-button")
    page.screenshot("viewer")
    assert_lead_page(page, CONTOSO, "Contoso Ltd")
    assert len(page.sim.leads()) == 1


def test_a_user_without_any_role_sees_why_and_cannot_push(demo: Callable[..., Demo]) -> None:
    page = demo()
    page.sign_in("guest@hunter.example")
    page.wait_status(FABRIKAM, "forbidden")  # reading the status needs Leads.Read (or Leads.Push)
    detail = page.button(FABRIKAM).locator(".detail").text_content() or ""
    assert "Leads.Read" in detail and "docs/" not in detail  # the reason, not a repository path
    assert page.button(FABRIKAM).locator("button").is_disabled()
    page.screenshot("guest")
    assert not page.sim.leads() and page.stack.queue_length(page.stack.queue_name) == 0


def test_signed_out_the_buttons_are_disabled_and_say_why_once(demo: Callable[..., Demo]) -> None:
    page = demo()
    page.page.goto(page.url)
    page.page.wait_for_selector("body[data-ready=true]")
    page.wait_status(NORTHWIND, "signed_out")
    badge = page.button(NORTHWIND).locator(".badge").text_content() or ""
    detail = page.button(NORTHWIND).locator(".detail").text_content() or ""
    assert badge == "Signed out" and detail == "Sign in to see its status and push it."
    assert page.button(NORTHWIND).locator("button").is_disabled()
    assert page.page.is_visible("#sign-in") and not page.page.is_visible("d365-replay-button")
    page.screenshot("signed-out")


def test_queued_and_syncing_show_while_the_worker_has_not_finished(demo: Callable[..., Demo]) -> None:
    stopped = demo(**{"AzureWebJobs.push_worker.Disabled": "true"})
    stopped.sign_in("pusher@hunter.example")
    stopped.button(CONTOSO).locator("button").click()
    stopped.wait_status(CONTOSO, "queued")
    stopped.screenshot("queued")
    page = demo()
    page.sign_in("pusher@hunter.example")
    page.stack.admin.add_fault("lead_upsert", latency_ms=6000, times=1)  # Dataverse takes its time
    page.button(FABRIKAM).locator("button").click()
    page.wait_status(FABRIKAM, "syncing")
    page.screenshot("syncing")
    page.wait_status(FABRIKAM, "synced")


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
    page.screenshot("retrying")
    page.stack.admin.add_fault("lead_upsert", status=400, times=1, code="0x80040203")
    page.button(NORTHWIND).locator("button").click()
    page.wait_status(NORTHWIND, "error")
    assert page.button(NORTHWIND).locator(".detail").text_content()
    page.screenshot("error")


def test_the_layout_stays_put_when_the_link_appears_and_domains_do_not_wrap(demo: Callable[..., Demo]) -> None:
    page = demo()
    page.sign_in("pusher@hunter.example")
    page.wait_status(CONTOSO, "not_synced")

    def geometry() -> Any:
        return page.page.evaluate(
            """() => [...document.querySelectorAll('#leads tr')].map(row =>
                 [...row.cells].map(cell => { const r = cell.getBoundingClientRect(); return [r.x, r.width, r.height]; }))"""
        )

    before = geometry()
    page.button(CONTOSO).locator("button").click()
    page.wait_status(CONTOSO, "synced")
    assert page.button(CONTOSO).locator("a").is_visible()
    assert geometry() == before
    page.page.set_viewport_size({"width": 640, "height": 420})
    heights = page.page.evaluate(
        """() => [...document.querySelectorAll('td.domain')].map(cell => {
             const range = document.createRange(); range.selectNodeContents(cell.firstChild);
             return new Set([...range.getClientRects()].map(rect => Math.round(rect.top))).size; })"""
    )
    assert heights == [1, 1, 1]  # one line box each: no wrap at the hyphen, however narrow


def test_a_browser_that_does_not_trust_the_ca_cannot_sign_in(
    demo: Callable[..., Demo], playwright_session: Any
) -> None:
    # The same stack and page, from a Chromium whose home never ran `make trust`: the sign-in
    # page (the simulator, HTTPS) is refused, so this suite would fail if the CA were not trusted.
    page = demo()
    with tempfile.TemporaryDirectory() as bare:
        untrusting = launch(playwright_session, Path(bare))
        try:
            tab = untrusting.new_page()
            with pytest.raises(Exception, match="ERR_CERT_AUTHORITY_INVALID"):
                tab.goto(f"{page.sim.base_url}/{page.sim.tenant_id}/v2.0/.well-known/openid-configuration")
            tab = untrusting.new_page()  # the refused one is busy showing its error page
            tab.goto(page.url)
            tab.wait_for_selector("body[data-ready=true]")
            tab.click("#sign-in")
            tab.wait_for_timeout(1500)
            assert tab.url.startswith(page.origin) and tab.text_content("#who") == "Not signed in"
        finally:
            untrusting.close()


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

"""The lead's record page at Dynamics 365's deep link, so that "Open in Dynamics" opens something
locally: `GET /main.aspx?pagetype=entityrecord&etn=lead&id=<leadid>`.

The URL form is Microsoft's (Microsoft Learn, "Open apps, forms, views, dialogs, and reports with
a URL", https://learn.microsoft.com/power-apps/developer/model-driven-apps/open-forms-views-dialogs-reports-url,
"URL addressable forms and views"): every form is shown by `main.aspx`, `etn` names the table,
`pagetype=entityrecord` asks for a record's form and `id` is the record's id, in braces
(`%7B…%7D`) or without. The page shows the lead's columns as HTML; an unknown or deleted lead gets a
404 page that says so, as Dynamics shows "Record Is Unavailable". The real page needs a signed-in
Dynamics user; this local one needs nothing (the simulator only listens on loopback).
"""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING, Any

from devstack.simulator.leads import LEAD_COLUMNS, PICKLISTS
from devstack.simulator.wire import Response

if TYPE_CHECKING:
    from devstack.simulator.state import SimulatorState as Simulator
    from devstack.simulator.wire import Request

_GUID = re.compile(r"[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}")
_LABELS = {
    "subject": "Topic",
    "fullname": "Name",
    "firstname": "First name",
    "lastname": "Last name",
    "companyname": "Company",
    "websiteurl": "Website",
    "emailaddress1": "Email",
    "telephone1": "Business phone",
    "address1_city": "City",
    "address1_country": "Country/Region",
    "description": "Description",
    "leadsourcecode": "Lead source",
    "leadqualitycode": "Rating",
    "hnt_finalscore": "Hunter score",
    "hnt_segment": "Hunter segment",
    "hnt_priority": "Hunter priority",
    "hnt_domain": "Domain (alternate key)",
    "leadid": "Lead id",
    "createdon": "Created on",
    "modifiedon": "Modified on",
}
_STYLE = """
body { font: 15px "Segoe UI", system-ui, sans-serif; margin: 0; color: #242424; background: #f5f5f5; }
header { background: #0f2f5c; color: #fff; padding: .6rem 1.5rem; font-weight: 600; }
main { margin: 1.5rem auto; max-width: 52rem; background: #fff; padding: 1rem 1.5rem 1.5rem;
       border: 1px solid #e0e0e0; border-radius: 4px; }
h1 { font-size: 1.4rem; margin: .5rem 0 1rem; }
table { border-collapse: collapse; width: 100%; }
th { text-align: left; width: 14rem; color: #616161; font-weight: 400; }
th, td { padding: .4rem .5rem; border-bottom: 1px solid #eee; vertical-align: top; overflow-wrap: anywhere; }
.empty { color: #999; }
p.note { color: #616161; font-size: .875em; }
"""


def handle(sim: Simulator, request: Request) -> Response:
    """The record page of the lead `id`, or a 404 page that names what is missing."""
    query = request.query
    if query.get("pagetype") != "entityrecord" or query.get("etn") != "lead":
        return _page(
            404,
            "Page not found",
            "<p>This simulated Dynamics 365 shows lead records only: "
            "<code>main.aspx?pagetype=entityrecord&amp;etn=lead&amp;id=&lt;leadid&gt;</code>.</p>",
        )
    lead_id = query.get("id", "").strip().strip("{}").lower()
    if not _GUID.fullmatch(lead_id):
        return _page(404, "Record Is Unavailable", f"<p>{html.escape(repr(lead_id))} is not a lead id (a GUID).</p>")
    record = sim.get_lead(lead_id)
    if record is None:
        return _page(
            404,
            "Record Is Unavailable",
            f"<p>There is no lead <code>{lead_id}</code> in this Dataverse: it was deleted, or it was "
            "never created here (the simulator forgets its leads when it restarts).</p>",
        )
    title = record.get("companyname") or record.get("fullname") or record.get("hnt_domain") or lead_id
    rows = "".join(
        f'<tr><th scope="row">{html.escape(_LABELS.get(column, column))}</th><td data-column="{column}">'
        f"{_value(column, record.get(column))}</td></tr>"
        for column in [*LEAD_COLUMNS, "leadid", "createdon", "modifiedon"]
    )
    return _page(200, f"Lead: {title}", f"<table>{rows}</table>")


def _value(column: str, value: Any) -> str:
    if value is None or value == "":
        return '<span class="empty">—</span>'
    labels = dict(PICKLISTS.get(column, []))
    shown = labels.get(value, value) if isinstance(value, int) else value
    return html.escape(str(shown))


def _page(status: int, title: str, body: str) -> Response:
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">'
        f"<title>{html.escape(title)} - Dynamics 365 (simulated)</title><style>{_STYLE}</style></head>"
        f"<body><header>Dynamics 365 · Sales (local simulator)</header><main><h1>{html.escape(title)}</h1>{body}"
        '<p class="note">The simulated Dataverse of the local stack (devstack/simulator).</p></main></body></html>'
    )
    return Response(status, page.encode("utf-8"), {"Content-Type": "text/html; charset=utf-8"})

"""The simulator's lead page at Dynamics 365's deep link (`main.aspx?pagetype=entityrecord&etn=lead&id=…`):
the lead's fields as HTML, and a 404 page that says so for a deleted or unknown lead."""

from __future__ import annotations

import uuid

import requests

from devstack.simulator import Simulator


def page(sim: Simulator, query: str) -> requests.Response:
    return requests.get(f"{sim.base_url}/main.aspx?{query}", timeout=10)


def test_the_deep_link_shows_the_leads_fields(sim: Simulator) -> None:
    lead = sim.store_lead(
        {
            "companyname": "Contoso <Ltd>",
            "hnt_domain": "contoso-demo.example",
            "hnt_finalscore": 91,
            "leadqualitycode": 1,
        }
    )
    answer = page(sim, f"pagetype=entityrecord&etn=lead&id={lead['leadid']}")
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/html")
    assert "<h1>Lead: Contoso &lt;Ltd&gt;</h1>" in answer.text  # escaped, never markup
    assert 'data-column="hnt_domain">contoso-demo.example<' in answer.text
    assert 'data-column="hnt_finalscore">91<' in answer.text
    assert 'data-column="leadqualitycode">Hot<' in answer.text
    # Microsoft's form of the id, in braces and upper case, opens the same record.
    braced = page(sim, f"etn=lead&pagetype=entityrecord&id=%7B{lead['leadid'].upper()}%7D")
    assert braced.status_code == 200 and "contoso-demo.example" in braced.text


def test_a_deleted_or_unknown_lead_gets_a_404_page_that_says_so(sim: Simulator) -> None:
    lead = sim.store_lead({"companyname": "Gone", "hnt_domain": "gone.example"})
    assert sim.delete_lead(lead["leadid"])
    for lead_id in (lead["leadid"], str(uuid.uuid4())):
        answer = page(sim, f"pagetype=entityrecord&etn=lead&id={lead_id}")
        assert answer.status_code == 404 and answer.headers["Content-Type"].startswith("text/html")
        assert "Record Is Unavailable" in answer.text
        assert f"There is no lead <code>{lead_id}</code> in this Dataverse: it was deleted" in answer.text
    assert "is not a lead id" in page(sim, "pagetype=entityrecord&etn=lead&id=nope").text
    other = page(sim, "pagetype=entityrecord&etn=account&id=" + str(uuid.uuid4()))
    assert other.status_code == 404 and "shows lead records only" in other.text

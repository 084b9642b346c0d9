"""The Dataverse client's two parts without a network (issue 19): the transport (token renewal on
401, the pacing hook, error classification, the headers it sends) over a scripted session, and the
lead operations (what each request says, what each answer means) over a recording transport; and
`DataverseClient` as it was, for the code that imports it."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest
import requests

from shared.dataverse import D365APIError, D365AuthenticationError, D365RateLimitError, DataverseClient
from shared.dataverse import client as client_module
from shared.dataverse.leads import IDS_PER_QUERY, VALUES_PER_QUERY, LeadOperations, UpsertResult
from shared.dataverse.transport import BASE_HEADERS, Transport
from tests.unit.fakes import FakeTokens

LEAD_ID = "6f1c2a9e-0b7d-4c1e-9a55-3d2f8e4b1c00"
ROOT = Path(__file__).resolve().parents[2]


def response(status: int, body: Any = None, headers: dict[str, str] | None = None) -> requests.Response:
    answer = requests.Response()
    answer.status_code = status
    answer._content = b"" if body is None else json.dumps(body).encode()
    answer.headers.update(headers or {})
    return answer


class ScriptedSession(requests.Session):
    """Answers requests from a script, in order, and records what was sent."""

    def __init__(self, *answers: requests.Response) -> None:
        super().__init__()
        self.answers = list(answers)
        self.sent: list[dict[str, Any]] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        self.sent.append({"method": method, "url": url, **kwargs})
        return self.answers.pop(0)


class RecordingPacer:
    """The pacing hook as the transport calls it: a slot before, the cost or the refusal after."""

    max_wait = 5.0
    refusals = 0

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def wait(self, records: int, limit: float) -> tuple[float, float]:
        self.calls.append(("wait", records))
        return 0.0, 7.0

    def spent(self, latency_ms: float, records: int, estimate: float) -> None:
        self.calls.append(("spent", estimate))

    def released(self, estimate: float) -> None:
        self.calls.append(("released", estimate))

    def refused(self, code: str, message: str, retry_after: float) -> None:
        self.calls.append(("refused", retry_after))


def transport(*answers: requests.Response, pacer: Any = None) -> tuple[Transport, ScriptedSession]:
    session = ScriptedSession(*answers)
    return Transport("https://org.example", FakeTokens(), session, pacer=pacer), session


# -- transport ----------------------------------------------------------------------------------


def test_the_transport_sends_odata_headers_a_bearer_token_and_the_correlation_id() -> None:
    sender, session = transport(response(200, {"ok": True}))
    answer = sender.request("GET", "WhoAmI", "corr-1")
    assert answer is not None and answer.json() == {"ok": True}
    [sent] = session.sent
    assert sent["url"] == "https://org.example/api/data/v9.2/WhoAmI"
    assert sent["headers"]["Authorization"] == "Bearer fake-token"
    assert sent["headers"]["x-ms-client-request-id"] == "corr-1"
    assert all(sent["headers"][name] == value for name, value in BASE_HEADERS.items())


def test_a_refused_token_is_renewed_and_the_request_sent_once_more() -> None:
    sender, session = transport(response(401), response(200, {"ok": True}))
    assert sender.request("GET", "WhoAmI", None) is not None
    assert [s["headers"]["Authorization"] for s in session.sent] == ["Bearer fake-token", "Bearer fake-token-2"]


def test_a_second_401_is_an_authentication_error_after_two_requests() -> None:
    sender, session = transport(response(401), response(401))
    with pytest.raises(D365AuthenticationError):
        sender.request("GET", "WhoAmI", None)
    assert len(session.sent) == 2


@pytest.mark.parametrize(
    ("answer", "kind", "transient"),
    [
        (
            response(429, {"error": {"code": "0x80072322", "message": "too many"}}, {"Retry-After": "7"}),
            D365RateLimitError,
            True,
        ),
        (response(503, {"error": {"code": "0x0", "message": "busy"}}), D365APIError, True),
        (response(403, {"error": {"code": "0x80040220", "message": "no privilege"}}), D365APIError, False),
    ],
)
def test_every_other_answer_is_classified_into_a_typed_error(
    answer: requests.Response, kind: type[Exception], transient: bool
) -> None:
    sender, _ = transport(answer)
    with pytest.raises(kind) as raised:
        sender.request("POST", "leads", None, json_body={}, ok=(204,))
    assert getattr(raised.value, "transient", None) is transient


def test_an_absent_status_is_none_not_an_error() -> None:
    sender, _ = transport(response(404, {"error": {"code": "0x80040217", "message": "gone"}}))
    assert sender.request("GET", f"leads({LEAD_ID})", None, absent=(404,)) is None


def test_the_pacing_hook_reserves_before_and_reports_after() -> None:
    pacer = RecordingPacer()
    sender, _ = transport(response(204, headers={"OData-EntityId": f"leads({LEAD_ID})"}), pacer=pacer)
    sender.request("POST", "leads", None, json_body={}, ok=(204,), records=1)
    assert pacer.calls == [("wait", 1), ("spent", 7.0)]
    pacer.calls.clear()
    sender, _ = transport(
        response(429, {"error": {"code": "0x80072322", "message": "x"}}, {"Retry-After": "3"}), pacer=pacer
    )
    with pytest.raises(D365RateLimitError):
        sender.request("POST", "leads", None, json_body={}, ok=(204,))
    assert pacer.calls == [("wait", 0), ("released", 7.0), ("refused", 3.0)]


def test_the_transport_refuses_a_plain_http_org() -> None:
    with pytest.raises(ValueError, match="https"):
        Transport("http://org.example", FakeTokens())


# -- lead operations ------------------------------------------------------------------------------


class RecordingTransport(Transport):
    """Answers `request` from a script and records the calls (no session, no tokens)."""

    def __init__(self, *answers: requests.Response | None) -> None:
        super().__init__("https://org.example", FakeTokens())
        self.answers = list(answers)
        self.calls: list[dict[str, Any]] = []

    def request(self, method: str, path: str, correlation_id: str | None, **options: Any) -> requests.Response | None:
        self.calls.append({"method": method, "path": path, **options})
        answer = self.answers.pop(0)
        ok = options.get("ok", (200,))
        return answer if answer is not None and answer.status_code in ok else None


def test_create_reads_the_id_from_odata_entity_id() -> None:
    calls = RecordingTransport(
        response(204, headers={"OData-EntityId": f"https://org/api/data/v9.2/leads({LEAD_ID.upper()})"})
    )
    assert LeadOperations(calls).create_lead({"subject": "x"}) == LEAD_ID
    assert calls.calls[0]["path"] == "leads" and calls.calls[0]["ok"] == (204, 201)


def test_find_by_domain_sends_an_escaped_literal() -> None:
    calls = RecordingTransport(response(200, {"value": []}))
    assert LeadOperations(calls).find_lead("hnt_domain", "o'brien.com") is None
    assert calls.calls[0]["params"]["$filter"] == "hnt_domain eq 'o''brien.com'"


def test_the_create_only_upsert_reads_412_as_the_key_taken() -> None:
    calls = RecordingTransport(None)  # the transport's None: a status in `absent`
    assert LeadOperations(calls).create_lead_if_absent("hnt_domain", "a.com", {}) == UpsertResult(None, created=False)
    call = calls.calls[0]
    assert call["method"] == "PATCH" and call["path"] == "leads(hnt_domain='a.com')"
    assert call["headers"]["If-None-Match"] == "*" and call["absent"] == (412,)


def test_lookups_and_verification_queries_are_chunked() -> None:
    domains = [f"d{i}.com" for i in range(VALUES_PER_QUERY + 1)]
    calls = RecordingTransport(response(200, {"value": []}), response(200, {"value": []}))
    LeadOperations(calls).find_many("hnt_domain", domains)
    assert len(calls.calls) == 2 and "Microsoft.Dynamics.CRM.In(" in calls.calls[0]["params"]["$filter"]
    ids = [f"{i:08x}-0000-4000-8000-000000000000" for i in range(IDS_PER_QUERY + 1)]
    calls = RecordingTransport(response(200, {"value": []}), response(200, {"value": []}))
    assert LeadOperations(calls).read_leads(ids, ("leadid",)) == {}
    assert len(calls.calls) == 2


def test_create_multiple_without_one_id_per_record_is_transient() -> None:
    calls = RecordingTransport(response(200, {"Ids": [LEAD_ID]}))
    with pytest.raises(D365APIError) as raised:
        LeadOperations(calls).create_many([{"subject": "a"}, {"subject": "b"}])
    assert raised.value.transient and raised.value.code == "no_entity_id"
    assert calls.calls[0]["records"] == 2


# -- the facade and the layering ------------------------------------------------------------------


def test_the_client_keeps_its_import_paths_and_api() -> None:
    from shared.dataverse.client import BULK_MAX_WAIT_SECONDS, UpsertResult, odata_literal

    assert BULK_MAX_WAIT_SECONDS > 0 and UpsertResult(None, False).created is False
    assert odata_literal("a'b") == "'a''b'"
    client = DataverseClient("https://org.example/", FakeTokens(), ScriptedSession())
    assert (client.base_url, client.api_url) == ("https://org.example", "https://org.example/api/data/v9.2")
    pacer: Any = RecordingPacer()
    client.pacer = pacer
    client.api_url = "https://other.example/api/data/v9.2"
    assert client.transport.pacer is pacer and client.transport.api_url.startswith("https://other")
    assert client.last_latency_ms == 0.0 and client.tokens.get_token() == "fake-token"
    assert set(client_module.__all__) >= {"DataverseClient", "UpsertResult", "BULK_MAX_WAIT_SECONDS"}


def imports_of(module: str) -> set[str]:
    tree = ast.parse((ROOT / "shared" / "dataverse" / f"{module}.py").read_text())
    return {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}


def test_the_transport_knows_nothing_of_leads_and_the_operations_nothing_of_sending() -> None:
    assert "shared.dataverse.leads" not in imports_of("transport")
    assert not {"shared.pacing", "shared.dataverse.auth"} & imports_of("leads")

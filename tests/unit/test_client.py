"""`DataverseClient` without a network: a fake session stands in for requests (httpx's
`MockTransport` idea), so that what the client reports can be checked in milliseconds."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import requests

from shared.dataverse import D365APIError, D365RequestNotSentError, DataverseClient
from tests.unit.fakes import FakeTokens


class SlowSession(requests.Session):
    """Answers `WhoAmI` with 200; a request marked `slow` waits until `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs["headers"].get("x-ms-client-request-id") == "slow":
            self.release.wait(5)
        response = requests.Response()
        response.status_code = 200
        response._content = b'{"UserId": "u"}'
        return response


def test_latency_is_per_thread() -> None:
    session = SlowSession()
    client = DataverseClient("https://org.example", FakeTokens(), session)
    seen: dict[str, float] = {}

    def slow() -> None:
        client.who_am_i("slow")
        seen["slow"] = client.last_latency_ms

    thread = threading.Thread(target=slow)
    thread.start()
    client.who_am_i("fast")  # ends while the slow call is still waiting
    seen["fast"] = client.last_latency_ms
    threading.Event().wait(0.05)
    session.release.set()
    thread.join(5)
    assert seen["fast"] < 50 <= seen["slow"]
    assert client.last_latency_ms == seen["fast"]  # this thread's own last call


class RefusingSession(requests.Session):
    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        raise requests.ConnectTimeout("connect timed out")


def test_no_answer_is_logged_chained_and_never_names_the_token(caplog: pytest.LogCaptureFixture) -> None:
    client = DataverseClient("https://org.example", FakeTokens(), RefusingSession())
    with pytest.raises(D365RequestNotSentError) as raised:
        client.create_lead({"subject": "x"}, "c1")
    assert isinstance(raised.value, D365APIError) and raised.value.code == "connect_timeout"
    assert isinstance(raised.value.__cause__, requests.ConnectTimeout)
    [event] = [r for r in caplog.records if r.getMessage() == "d365_api_error"]
    assert (event.error_code, event.request_sent, event.status_code) == ("connect_timeout", False, 0)  # type: ignore[attr-defined]
    assert "fake-token" not in str(raised.value) and "fake-token" not in caplog.text

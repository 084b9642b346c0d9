"""The simulator's filter parser and the client's error classification."""

import socket
import ssl

import pytest
import requests
from urllib3 import HTTPSConnectionPool
from urllib3.connection import HTTPSConnection
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    SSLError,
)

from devstack.odata import FilterSyntaxError, UnknownColumn, parse_filter
from shared.dataverse.client import odata_literal
from shared.dataverse.errors import (
    TRANSIENT_STATUSES,
    D365APIError,
    D365AuthenticationError,
    D365RateLimitError,
    D365RequestNotSentError,
    D365ResponseLostError,
    error_from_response,
    is_transient_status,
    request_sent,
    transport_error,
)

COLUMNS = {"hnt_domain", "subject"}


def test_doubled_quotes_are_one_quote() -> None:
    match = parse_filter("hnt_domain eq 'o''brien.com'", COLUMNS)
    assert match({"hnt_domain": "O'Brien.com"}) and not match({"hnt_domain": "obrien.com"})


def test_escaped_injection_is_a_plain_literal() -> None:
    text = f"hnt_domain eq {odata_literal('x')}' or hnt_domain ne {odata_literal('y')}"
    with pytest.raises(FilterSyntaxError):
        parse_filter(text, COLUMNS)
    safe = parse_filter(
        f"hnt_domain eq {odata_literal(chr(120) + chr(39) + ' or hnt_domain ne ' + chr(39) + 'y')}", COLUMNS
    )
    assert not safe({"hnt_domain": "other.com"})


def test_and_or_and_unknown_columns() -> None:
    match = parse_filter("hnt_domain eq 'a.com' and subject eq 'x' or subject eq 'y'", COLUMNS)
    assert match({"hnt_domain": "b.com", "subject": "Y"})
    with pytest.raises(UnknownColumn):
        parse_filter("nope eq 'x'", COLUMNS)
    with pytest.raises(FilterSyntaxError):
        parse_filter("hnt_domain eq 'x", COLUMNS)


@pytest.mark.parametrize(
    ("status", "kind", "transient"),
    [
        (401, D365AuthenticationError, False),
        (429, D365RateLimitError, True),
        (408, D365APIError, True),
        (500, D365APIError, True),
        (502, D365APIError, True),
        (503, D365APIError, True),
        (504, D365APIError, True),
        (501, D365APIError, False),
        (505, D365APIError, False),
        (507, D365APIError, False),
        (400, D365APIError, False),
        (403, D365APIError, False),
        (404, D365APIError, False),
    ],
)
def test_errors_are_classified_by_what_the_caller_must_do(status: int, kind: type, transient: bool) -> None:
    error = error_from_response(status, b'{"error":{"code":"0x1","message":"m"}}', {"Retry-After": "9"})
    assert type(error) is kind
    assert getattr(error, "transient", False) == transient
    if status == 429:
        assert isinstance(error, D365RateLimitError) and error.retry_after == 9


def test_transient_statuses_are_exactly_the_listed_ones() -> None:
    assert {408, 500, 502, 503, 504} == TRANSIENT_STATUSES
    assert [status for status in range(400, 600) if is_transient_status(status)] == [408, 429, 500, 502, 503, 504]


@pytest.mark.parametrize("status", [400, 401, 429, 503])
def test_every_error_from_a_response_keeps_the_service_request_id(status: int) -> None:
    headers = {"x-ms-service-request-id": "c9af118d-b483-48c8-887a-baa4de679bf1", "Retry-After": "2"}
    error = error_from_response(status, b"", headers)
    assert error.service_request_id == "c9af118d-b483-48c8-887a-baa4de679bf1"
    assert "c9af118d" not in str(error)  # the stored last_error text is unchanged
    assert request_sent(error) is True


# How requests (2.x over urllib3 2.x, retries off as a Session's default) reports each failure.
_POOL = HTTPSConnectionPool("org.example", 443)
_URL = "/api/data/v9.2/leads"
_CONN = HTTPSConnection("org.example")


def _wrapped(reason: Exception) -> MaxRetryError:
    return MaxRetryError(_POOL, _URL, reason)


@pytest.mark.parametrize(
    ("exc", "kind", "code"),
    [
        (
            requests.ConnectionError(_wrapped(NewConnectionError(_CONN, "refused"))),
            D365RequestNotSentError,
            "connect_error",
        ),
        (
            requests.ConnectionError(_wrapped(NameResolutionError("org.example", _CONN, socket.gaierror()))),
            D365RequestNotSentError,
            "connect_error",
        ),
        (
            requests.ConnectTimeout(_wrapped(ConnectTimeoutError(None, "timed out"))),
            D365RequestNotSentError,
            "connect_timeout",
        ),
        (
            requests.exceptions.SSLError(_wrapped(SSLError(ssl.SSLCertVerificationError("bad cert")))),
            D365RequestNotSentError,
            "connect_error",
        ),
        (
            requests.exceptions.ProxyError(_wrapped(ProxyError("proxy", OSError()))),
            D365RequestNotSentError,
            "connect_error",
        ),
        (requests.ReadTimeout(ReadTimeoutError(_POOL, _URL, "read timed out")), D365ResponseLostError, "read_timeout"),
        (
            requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError())),
            D365ResponseLostError,
            "connection_dropped",
        ),
        (
            requests.exceptions.SSLError(_wrapped(SSLError(ssl.SSLEOFError()))),
            D365ResponseLostError,
            "connection_dropped",
        ),
        (
            requests.exceptions.ChunkedEncodingError(ProtocolError("Connection broken")),
            D365ResponseLostError,
            "connection_dropped",
        ),
    ],
    ids=["refused", "dns", "connect-timeout", "certificate", "proxy", "read-timeout", "reset", "tls-eof", "chunked"],
)
def test_no_answer_says_whether_the_request_was_sent(exc: requests.RequestException, kind: type, code: str) -> None:
    error = transport_error(exc)
    assert type(error) is kind and error.code == code
    assert error.transient and error.status == 0 and error.service_request_id is None
    assert request_sent(error) is (kind is D365ResponseLostError)

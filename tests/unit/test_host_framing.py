"""The local host frames request bodies as Kestrel does (`devstack/host/framing.py`)."""

from __future__ import annotations

import io

import pytest

from devstack.host.framing import BadRequest, read_body


def body(method: str, headers: dict[str, str], raw: bytes) -> bytes:
    return read_body(method, list(headers.items()), io.BytesIO(raw))


def test_a_chunked_body_is_decoded_and_what_follows_is_not_read() -> None:
    stream = io.BytesIO(b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\nGET / HTTP/1.1\r\n")
    assert read_body("POST", [("Transfer-Encoding", "chunked")], stream) == b"hello world"
    assert stream.read() == b"GET / HTTP/1.1\r\n"  # the next request, untouched


def test_transfer_encoding_wins_over_content_length() -> None:
    headers = {"Transfer-Encoding": "gzip, chunked", "Content-Length": "3"}
    assert body("POST", headers, b"2\r\nok\r\n0\r\n\r\n") == b"ok"


@pytest.mark.parametrize(
    ("headers", "raw", "status"),
    [
        ({"Content-Length": "-1"}, b"{}", 400),
        ({"Content-Length": "abc"}, b"{}", 400),
        ({"Content-Length": "+2"}, b"{}", 400),
        ({"Content-Length": "5"}, b"{}", 400),  # the body ends early: no waiting for ever
        ({"Transfer-Encoding": "gzip"}, b"{}", 400),
        ({"Transfer-Encoding": "chunked"}, b"zz\r\n{}\r\n0\r\n\r\n", 400),
        ({"Transfer-Encoding": "chunked"}, b"2\r\n{}XX0\r\n\r\n", 400),
    ],
)
def test_framing_kestrel_refuses(headers: dict[str, str], raw: bytes, status: int) -> None:
    with pytest.raises(BadRequest) as refused:
        body("POST", headers, raw)
    assert refused.value.status == status


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_http_1_0_without_a_length_is_411_and_http_1_1_is_an_empty_body(method: str) -> None:
    with pytest.raises(BadRequest) as refused:
        read_body(method, [], io.BytesIO(b"{}"), "HTTP/1.0")
    assert refused.value.status == 411
    assert read_body(method, [], io.BytesIO(b"{}"), "HTTP/1.1") == b""


def test_a_get_without_length_has_no_body() -> None:
    assert body("GET", {}, b"ignored") == b""

"""Request-body framing as Kestrel (the Functions host's web server) does it.

From dotnet/aspnetcore (main) `src/Servers/Kestrel/Core/src/Internal/Http/Http1MessageBody.cs`
(`For`) and `HttpRequestHeaders` (`ParseContentLength`):
- `Transfer-Encoding` present: its final coding must be `chunked` (else 400 and the connection is
  closed, RFC 7230 §3.3.3); the chunked body is decoded, and `Content-Length` is ignored.
- else `Content-Length`: a single non-negative integer (else 400, `InvalidContentLength` /
  `MultipleContentLengths`); that many bytes are the body.
- else the body is empty, except that an HTTP/1.0 POST or PUT is refused with 411 Length Required
  (`For`: "If we got here, request contains no Content-Length or Transfer-Encoding header. Reject
  with Length Required for HTTP 1.0." → `RequestRejectionReason.LengthRequiredHttp10`). An HTTP/1.1
  POST without a length has an empty body: `curl -X POST` with no `-d` sends exactly that. (Kestrel
  2.x refused HTTP/1.1 too — `RequestRejectionReason.LengthRequired` — and the Functions host runs
  on a current ASP.NET Core, so the newer rule applies.)
Python's `http.server` does none of this: it read a chunked body as empty and parsed its chunk as
a second request, and `Content-Length: -1` made it wait forever.
"""

from __future__ import annotations

from typing import Protocol


class Stream(Protocol):
    """The request's input stream (a socket file)."""

    def read(self, size: int = -1, /) -> bytes: ...

    def readline(self, size: int = -1, /) -> bytes: ...


class BadRequest(Exception):
    """The request cannot be framed: answer `status` with an empty body and close."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


# Kestrel's MaxRequestBodySize default is 30,000,000 bytes (KestrelServerLimits); the Functions
# host raises it to 100 MB for HTTP triggers. Bodies beyond that are 413.
MAX_BODY_BYTES = 100 * 1024 * 1024


def read_body(method: str, headers: list[tuple[str, str]], stream: Stream, version: str = "HTTP/1.1") -> bytes:
    """The request body from `stream`, framed by `headers` and the request's HTTP `version`.

    Raises:
        BadRequest: framing Kestrel refuses (400, 411, 413).
    """
    encodings = [v for k, v in headers if k.lower() == "transfer-encoding"]
    lengths = [v for k, v in headers if k.lower() == "content-length"]
    if encodings:
        codings = [c.strip().lower() for value in encodings for c in value.split(",") if c.strip()]
        if not codings or codings[-1] != "chunked":
            raise BadRequest(400, "final transfer coding is not chunked")
        return _chunked(stream)
    if lengths:
        if len(lengths) > 1 and len({v.strip() for v in lengths}) > 1:
            raise BadRequest(400, "multiple content lengths")
        text = lengths[0].strip()
        if not text.isdigit() or not text.isascii():
            raise BadRequest(400, f"invalid content length: {text[:20]}")
        length = int(text)
        if length > MAX_BODY_BYTES:
            raise BadRequest(413, "request body too large")
        return _exactly(stream, length)
    if version == "HTTP/1.0" and method in ("POST", "PUT"):
        raise BadRequest(411, "length required (HTTP/1.0)")
    return b""


def _exactly(stream: Stream, length: int) -> bytes:
    data = stream.read(length) if length else b""
    if len(data) != length:
        raise BadRequest(400, "unexpected end of request content")
    return data


def _line(stream: Stream) -> bytes:
    line = stream.readline(4098)
    if not line.endswith(b"\r\n"):
        raise BadRequest(400, "bad chunked request line")
    return line[:-2]


def _chunked(stream: Stream) -> bytes:
    body = bytearray()
    while True:
        size_text = _line(stream).split(b";", 1)[0].strip()  # chunk extensions are ignored
        try:
            size = int(size_text, 16)
        except ValueError:
            raise BadRequest(400, "bad chunk size") from None
        if size < 0:
            raise BadRequest(400, "bad chunk size")
        if size == 0:
            while _line(stream):  # trailers, up to the empty line
                pass
            return bytes(body)
        if len(body) + size > MAX_BODY_BYTES:
            raise BadRequest(413, "request body too large")
        body += _exactly(stream, size)
        if _line(stream):
            raise BadRequest(400, "bad chunk suffix")

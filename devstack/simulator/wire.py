"""The simulator's HTTP vocabulary: a parsed request, a response, and the two JSON shapes every
service module answers with (plain JSON and Dataverse's OData error)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from email.message import Message
from typing import Any


@dataclass(frozen=True)
class Request:
    """One request as a service module sees it: the path is percent-decoded, the query holds the
    first value of each key, header lookups are case-insensitive."""

    method: str
    path: str
    query: dict[str, str]
    body: bytes
    headers: Message

    def header(self, name: str) -> str | None:
        """The value of header `name`, or None."""
        value = self.headers.get(name)
        return None if value is None else str(value)


@dataclass
class Response:
    """What the server sends back. `drop` closes the connection without an answer instead (the
    "committed, then the connection was lost" fault)."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    # Records the request wrote (or tried to, before an all-or-nothing call failed): what the
    # service-protection model charges execution time for. Never sent.
    records: int = 0


def json_response(status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON response."""
    body = json.dumps(data).encode("utf-8")
    return Response(status, body, {"Content-Type": "application/json; odata.metadata=minimal", **(headers or {})})


def odata_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    """Dataverse's error shape."""
    return json_response(status, {"error": {"code": code, "message": message}}, headers)


def seconds(value: float) -> str:
    """A `Retry-After` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(value)))

"""The identifiers the app accepts from outside: Dataverse GUIDs and correlation ids.

One pattern each for the whole package, always matched whole (`re.fullmatch`, never `match` or a
`$` anchor, which also matches before a trailing newline: a correlation id ending in "\\n" makes
every Dataverse call fail as an invalid header).
"""

from __future__ import annotations

import re

# A GUID as Dataverse writes it (8-4-4-4-12 hex digits, either case, no braces). Also used with
# `search` to find the id inside an `OData-EntityId` URL.
GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
# What a caller may send as a correlation id: safe in a header, a log field and a queue message.
CORRELATION_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def is_guid(text: object) -> bool:
    """True when `text` is a string that is one GUID and nothing else."""
    return isinstance(text, str) and GUID.fullmatch(text) is not None


def is_correlation_id(text: object) -> bool:
    """True when `text` is a string of 1-128 characters of A-Z a-z 0-9 . _ : -, nothing else."""
    return isinstance(text, str) and CORRELATION_ID.fullmatch(text) is not None

"""Property: a generated hostile lead — lone surrogates, NaN and Infinity, integers past Python's
4,300-digit limit, control characters, emoji at the length limits, odd dots and `www.`, long
domains, unknown field names — parses to a valid LeadPush or raises InputError naming a field.
Nothing else: any other exception is the 500 (HTTP) or the crash loop (queue) of issue 14.

A lead that passes is checked for what the rest of the app relies on: it serialises to UTF-8, the
worker decodes its message to the same lead (so normalising twice cannot move it to another key),
its Dataverse payload fits every column, and without custom columns the website written is the
value the lookup searches for.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from shared.domains import normalize_domain
from shared.mapping import LEAD_MAX_LENGTHS, WEBSITE_COLUMN, canonical_website, lead_payload
from shared.models import (
    LEAD_FIELDS,
    STRING_FIELDS,
    InputError,
    LeadPush,
    decode_message,
    parse_json,
    utf16_length,
)

HUGE = "__HUGE_INTEGER__"  # replaced by 5,000 digits after json.dumps (which cannot write them)
NASTY_PIECES = st.sampled_from(
    [
        *["\ud800", "\udfff", "\x00", "\x1b", "\x7f", "\x85", "\x9f", "\t", "\n", "\r", "\u200d", "\u2028", "\ufeff"],
        *["\U0001f600", "\U0001f469\u200d\U0001f4bb", "é", "ß", "ς", "。", "．", "www.", " ", "'", '"', "\\"],
    ]
)
HOSTILE_TEXT = st.one_of(
    st.lists(st.one_of(NASTY_PIECES, st.characters()), max_size=12).map("".join),
    st.builds(lambda piece, n: piece * n, NASTY_PIECES, st.sampled_from([49, 50, 51, 99, 100, 101, 1000, 1001])),
    st.builds(lambda n: "\U0001f600" * n, st.integers(0, 1100)),
)
HOSTILE_NUMBER = st.one_of(
    st.sampled_from([float("nan"), float("inf"), float("-inf"), HUGE, 2**31, -(2**31), 1e308, -0.0, True]),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
)
GOOD_LABELS = st.one_of(
    st.sampled_from(["www", "WWW", "ｗｗｗ", "acme", "faß", "σοφος", "xn--fa-hia", "com", "de", "a" * 63]),
    st.text(st.sampled_from(list("abcxyz0189-ÖßςЖक्")), min_size=1, max_size=40),
)
NASTY_LABELS = st.text(st.sampled_from(list("abz09-Öß\u200d\u00ad_*'\x00\ud800")), min_size=1, max_size=8)
DOMAIN_LABEL = st.one_of(GOOD_LABELS, GOOD_LABELS, GOOD_LABELS, NASTY_LABELS)  # one in four is nasty


@st.composite
def hostile_domains(draw: st.DrawFn) -> str:
    labels = draw(st.lists(DOMAIN_LABEL, min_size=1, max_size=4))
    dots = st.sampled_from([".", ".", ".", ".", "。", "．", "｡", ".."])
    host = labels[0] + "".join(draw(dots) + label for label in labels[1:])
    host += draw(st.sampled_from([".com", ".de", "。com", ""]))
    prefix = draw(st.sampled_from(["", "", "https://", "www.", "ｗｗｗ。", "http://www."]))
    return prefix + host + draw(st.sampled_from(["", "", ".", "。", "/x", ":443", "\n"]))


HOSTILE_VALUE = st.one_of(HOSTILE_TEXT, HOSTILE_NUMBER, st.none(), st.lists(st.integers(), max_size=2), st.just({}))
VALID_GUID = "6f9619ff-8b86-d011-b42d-00c04fc964ff"


@st.composite
def hostile_leads(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly the right shape with hostile contents, sometimes the wrong shape: a generator that
    only ever makes unknown fields or bad domains would never reach the checks behind them."""
    rare = st.sampled_from([False] * 9 + [True])  # shrinks towards False
    lead: dict[str, Any] = {"domain": draw(HOSTILE_VALUE) if draw(rare) else draw(hostile_domains())}
    for name in draw(st.lists(st.sampled_from(LEAD_FIELDS[1:]), max_size=6, unique=True)):
        if draw(rare):
            lead[name] = draw(HOSTILE_VALUE)  # the wrong type, or anything at all
        elif name in STRING_FIELDS:
            lead[name] = draw(HOSTILE_TEXT)
        elif name in ("final_score", "priority"):
            lead[name] = draw(HOSTILE_NUMBER)
        elif name == "force":
            lead[name] = draw(st.booleans())
        else:
            lead[name] = draw(st.sampled_from([VALID_GUID, VALID_GUID.upper(), VALID_GUID + "\n"]))
    if draw(rare):
        lead[draw(HOSTILE_TEXT)] = draw(HOSTILE_VALUE)  # an unknown field, maybe with a hostile name
    return lead


def to_json_text(data: Any) -> str:
    """JSON as a hostile sender would write it: lone surrogates as `\\ud800`, NaN, huge integers."""
    return json.dumps(data, ensure_ascii=True).replace(f'"{HUGE}"', "1" + "0" * 5000)


def assert_named(error: InputError, data: Any) -> None:
    event(f"rejected: {error.code}")
    # Only a body too large as a whole has no one field to blame.
    whole = error.code in ("too_large", "payload_too_large")
    assert error.field or whole or not isinstance(data, dict), f"an error without a field: {error}"
    json.dumps(error.to_dict(), ensure_ascii=False).encode("utf-8")  # the 400 body can be sent


def assert_usable(lead: LeadPush) -> None:
    event("accepted")
    lead.to_json().encode("utf-8")  # the queue client can send it
    assert normalize_domain(lead.domain) == lead.domain
    assert decode_message(lead.to_json().encode("utf-8")) == lead  # the worker sees the same lead
    assert lead.final_score is None or math.isfinite(lead.final_score)
    for name, spec in STRING_FIELDS.items():
        value = getattr(lead, name)
        assert value is None or utf16_length(value) <= spec.max_length, name
    for custom_fields in (True, False):
        payload = lead_payload(lead, custom_fields)
        for column, limit in LEAD_MAX_LENGTHS.items():
            assert not isinstance(payload.get(column), str) or utf16_length(payload[column]) <= limit, column
    assert lead_payload(lead, custom_fields=False)[WEBSITE_COLUMN] == canonical_website(lead.domain)


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(hostile_leads())
@example({"domain": "www。dupwww.example", "company_name": "Dup"})
@example({"domain": "nan-score.example", "final_score": float("nan")})
@example({"domain": "huge.example", "priority": HUGE})
@example({"domain": "acme.com", "\ud800": 1})
@example({"domain": "acme.com", "company_name": "\U0001f600" * 51})
@example({"domain": ".".join(["a" * 63, "b" * 63, "c" * 61, "com"])})
def test_a_hostile_request_is_a_lead_or_a_named_input_error(data: dict[str, Any]) -> None:
    text = to_json_text(data)
    try:
        lead = LeadPush.from_request(parse_json(text, "the body"))
    except InputError as exc:
        assert_named(exc, data)
        return
    assert_usable(lead)


ENVELOPE_CORRELATION: st.SearchStrategy[dict[str, Any]] = st.one_of(
    st.just({}),
    st.just({"correlation_id": "hunter-1:a.b_c"}),
    st.fixed_dictionaries({"correlation_id": st.one_of(HOSTILE_TEXT, HOSTILE_VALUE)}),
)
ENVELOPE_ATTEMPT: st.SearchStrategy[dict[str, Any]] = st.one_of(
    st.just({}),
    st.fixed_dictionaries({"attempt": st.integers(0, 20)}),
    st.fixed_dictionaries({"attempt": HOSTILE_NUMBER}),
)


@SETTINGS
@given(hostile_leads(), ENVELOPE_CORRELATION, ENVELOPE_ATTEMPT)
@example({"domain": "acme.com"}, {"correlation_id": "abc\n"}, {})
@example({"domain": "acme.com"}, {}, {"attempt": HUGE})
def test_a_hostile_queue_message_is_a_lead_or_a_named_input_error(
    data: dict[str, Any], correlation: dict[str, Any], attempt: dict[str, Any]
) -> None:
    message = {"schema_version": 1, **data, **correlation, **attempt}
    try:
        lead = decode_message(to_json_text(message).encode("utf-8"))
    except InputError as exc:
        assert_named(exc, message)
        return
    assert_usable(lead)

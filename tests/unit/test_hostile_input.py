"""Hostile and unlucky input (issue 14): every case ends as a valid lead or an InputError naming
the field — never another exception, never an error text that cannot be sent as UTF-8 JSON."""

from __future__ import annotations

import json

import azure.functions as func
import pytest

from devstack.simulator import validate_lead
from shared.http_api import _body, _correlation_id
from shared.mapping import LEAD_MAX_LENGTHS, canonical_website, fit, lead_payload
from shared.models import InputError, LeadPush, decode_message, parse_json, utf16_length

HUGE = "1" + "0" * 5000  # past Python's 4,300-digit int-string limit
EMOJI = "\U0001f600"  # 2 UTF-16 code units, as Dataverse counts


def _request_error(text: str) -> InputError:
    with pytest.raises(InputError) as raised:
        LeadPush.from_request(parse_json(text, "the body"))
    return raised.value


def _sendable(error: InputError) -> None:
    """The 400 body must survive json.dumps(ensure_ascii=False) + UTF-8, as the HTTP layer sends it."""
    json.dumps(error.to_dict(), ensure_ascii=False).encode("utf-8")


@pytest.mark.parametrize(
    ("text", "field", "code"),
    [
        ('{"domain": "acme.com", "company_name": "a\\ud800b"}', "company_name", "invalid_characters"),
        ('{"domain": "acme.com", "description": "\\udfff"}', "description", "invalid_characters"),
        ('{"domain": "acme.com", "email": "a\\ud800@acme.com"}', "email", "invalid_characters"),
        ('{"domain": "acme\\ud800.com"}', "domain", "invalid_domain"),
        ('{"domain": "acme.com", "\\ud800": 1}', "\\ud800", "unknown_field"),
        ('{"domain": "acme.com", "bad\\u001bname": 1}', "bad\\u001bname", "unknown_field"),
        ('{"domain": "acme.com", "final_score": NaN}', "final_score", "invalid_field"),
        ('{"domain": "acme.com", "final_score": Infinity}', "final_score", "invalid_field"),
        ('{"domain": "acme.com", "final_score": -Infinity}', "final_score", "invalid_field"),
        ('{"domain": "acme.com", "final_score": 1e999}', "final_score", "invalid_field"),
        ('{"domain": "acme.com", "priority": NaN}', "priority", "invalid_field"),
        ('{"domain": "acme.com", "priority": ' + HUGE + "}", "priority", "invalid_field"),
        ('{"domain": "acme.com", "final_score": -' + HUGE + "}", "final_score", "invalid_field"),
        ('{"domain": "acme.com", "company_name": ' + HUGE + "}", "company_name", "invalid_type"),
        ('{"domain": ' + HUGE + "}", "domain", "invalid_domain"),
        ('{"domain": "acme.com", "force": ' + HUGE + "}", "force", "invalid_type"),
        ('{"domain": "acme.com", "company_name": "Acme\\u0000"}', "company_name", "invalid_characters"),
        ('{"domain": "acme.com", "company_name": "\\u001b[31mAcme"}', "company_name", "invalid_characters"),
        ('{"domain": "acme.com", "city": "Ber\\nlin"}', "city", "invalid_characters"),
        ('{"domain": "acme.com", "segment": "a\\u0085b"}', "segment", "invalid_characters"),
        ('{"domain": "acme.com", "description": "a\\u0000b"}', "description", "invalid_characters"),
        ('{"domain": "acme.com", "description": "a\\u007fb"}', "description", "invalid_characters"),
        ('{"domain": "acme.com", "d365_lead_id": "6f9619ff-8b86-d011-b42d-00c04fc964ff\\n"}', "d365_lead_id", None),
        ('{"domain": "acme.com", "email": "a@acme.com\\nBcc: x@y.com"}', "email", "invalid_characters"),
        ('{"domain": "acme.com", "company_name": "' + EMOJI * 51 + '"}', "company_name", "too_long"),
    ],
)
def test_hostile_request_fields_are_named(text: str, field: str, code: str | None) -> None:
    error = _request_error(text)
    assert error.field == field
    assert code is None or error.code == code
    _sendable(error)


def test_free_text_keeps_tabs_and_line_breaks() -> None:
    lead = LeadPush.from_request({"domain": "acme.com", "description": "line one\r\n\tline two\n"})
    assert lead.description == "line one\r\n\tline two"


def test_lengths_are_counted_in_utf16_code_units() -> None:
    assert utf16_length(EMOJI * 50) == 100
    assert LeadPush.from_request({"domain": "acme.com", "company_name": EMOJI * 50}).company_name == EMOJI * 50
    assert LeadPush.from_request({"domain": "acme.com", "company_name": "é" * 100}).company_name == "é" * 100
    error = _request_error(json.dumps({"domain": "acme.com", "company_name": EMOJI * 50 + "x"}))
    assert error.code == "too_long" and "(got 101)" in str(error)


def test_the_simulator_counts_lengths_as_dataverse_does() -> None:
    fields, refused = validate_lead({"companyname": EMOJI * 50, "lastname": "x"})
    assert refused is None and fields is not None
    fields, refused = validate_lead({"companyname": EMOJI * 50 + "x", "lastname": "x"})
    assert fields is None and refused is not None


def test_the_mapping_cuts_in_utf16_units_without_splitting_a_character() -> None:
    cut = fit(EMOJI * 30, 50)
    assert utf16_length(cut) <= 50 and cut == EMOJI * 24 + "…"
    lead = LeadPush.from_request({"domain": "acme.com", "company_name": EMOJI * 50, "description": EMOJI * 1000})
    payload = lead_payload(lead, custom_fields=True)
    for column, limit in LEAD_MAX_LENGTHS.items():
        if isinstance(payload.get(column), str):
            assert utf16_length(payload[column]) <= limit, column
            payload[column].encode("utf-8")  # no half of a surrogate pair left behind


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"correlation_id": "abc\n"}, "correlation_id"),
        ({"correlation_id": "abc\r\n"}, "correlation_id"),
        ({"company_name": "\ud800"}, "company_name"),
        ({"final_score": float("nan")}, "final_score"),
        ({"\ud800": 1}, "\\ud800"),
    ],
)
def test_hostile_queue_messages_are_input_errors_naming_the_field(body: dict[str, object], field: str) -> None:
    message = json.dumps({"schema_version": 1, "domain": "acme.com", **body}).encode("utf-8")
    with pytest.raises(InputError) as raised:
        decode_message(message)
    assert raised.value.field == field
    _sendable(raised.value)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"schema_version": 1, "domain": "acme.com", "attempt": ' + HUGE + "}", "attempt"),
        ('{"schema_version": ' + HUGE + ', "domain": "acme.com"}', "schema_version"),
        ('{"schema_version": 1, "domain": "acme.com", "final_score": NaN}', "final_score"),
        ('{"schema_version": 1, "domain": "acme.com", "priority": ' + HUGE + "}", "priority"),
    ],
)
def test_queue_messages_with_hostile_numbers_name_the_field(text: str, field: str) -> None:
    with pytest.raises(InputError) as raised:
        decode_message(text.encode("utf-8"))
    assert raised.value.field == field


def test_a_lead_that_passes_intake_always_serialises() -> None:
    lead = LeadPush.from_request({"domain": "acme.com", "company_name": EMOJI + "é", "final_score": 99.5})
    lead.to_json().encode("utf-8")
    lead_payload(lead, custom_fields=True)


# --- the HTTP layer's parsing (no host, no I/O) ---------------------------------------------------


def _request(body: bytes = b"{}", headers: dict[str, str] | None = None) -> func.HttpRequest:
    return func.HttpRequest(
        method="POST", url="http://127.0.0.1:7071/api/v1/d365/push-lead", headers=headers or {}, body=body
    )


@pytest.mark.parametrize("given", ["abc\n", "abc\r\n", "\nabc", "a b", "x" * 129])
def test_a_malformed_correlation_header_is_replaced_not_carried(given: str) -> None:
    assert _correlation_id(_request(headers={"x-correlation-id": given})) != given


def test_a_clean_correlation_header_is_carried() -> None:
    assert _correlation_id(_request(headers={"x-correlation-id": "hunter-42:a.b_c"})) == "hunter-42:a.b_c"


def test_a_body_with_a_huge_integer_parses_so_the_field_can_be_named() -> None:
    data = _body(_request(('{"domain": "acme.com", "priority": ' + HUGE + "}").encode()), 64 * 1024)
    with pytest.raises(InputError) as raised:
        LeadPush.from_request(data)
    assert raised.value.field == "priority"


# --- the key written is the key searched (HUNTER_D365_CUSTOM_FIELDS=false) ------------------------


def test_the_longest_domain_is_written_exactly_as_it_is_searched() -> None:
    domain = ".".join(["a" * 63, "b" * 63, "c" * 60, "com"])
    lead = LeadPush.from_request({"domain": domain})
    assert lead_payload(lead, custom_fields=False)["websiteurl"] == canonical_website(lead.domain)


def test_a_domain_too_long_for_websiteurl_is_refused_at_intake() -> None:
    domain = ".".join(["a" * 63, "b" * 63, "c" * 61, "com"])  # 193 characters: a cut URL would dup
    with pytest.raises(InputError) as raised:
        LeadPush.from_request({"domain": domain})
    assert raised.value.field == "domain" and raised.value.code == "invalid_domain"
    with pytest.raises(ValueError):
        canonical_website(domain)  # the bug guard: never a cut key

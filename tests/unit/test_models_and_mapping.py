"""Lead validation, the queue message and the Hunter → lead mapping."""

import base64
import json

import pytest
from azure.data.tables._serialize import _add_entity_properties

from shared.ids import is_correlation_id, is_guid
from shared.mapping import LEAD_MAX_LENGTHS, lead_payload
from shared.models import (
    ALREADY_EXISTS,
    CREATED,
    RECREATED,
    RETRYING,
    STRING_FIELDS,
    SYNCED,
    InputError,
    LeadPush,
    Outcome,
    PushOutcome,
    SyncState,
    SyncStatus,
    decode_message,
)


def test_request_is_validated_and_normalised() -> None:
    lead = LeadPush.from_request({"domain": "HTTPS://www.Acme.com/", "company_name": " Acme ", "final_score": 82})
    assert lead.domain == "acme.com" and lead.company_name == "Acme" and lead.final_score == 82.0


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({}, "domain", "missing_field"),
        ({"domain": "not a domain"}, "domain", "invalid_domain"),
        ({"domain": "acme.com", "email": "x" * 101}, "email", "too_long"),
        ({"domain": "acme.com", "email": "nope"}, "email", "invalid_field"),
        ({"domain": "acme.com", "final_score": "high"}, "final_score", "invalid_type"),
        ({"domain": "acme.com", "priority": 1.5}, "priority", "invalid_type"),
        ({"domain": "acme.com", "priority": True}, "priority", "invalid_type"),
        ({"domain": "acme.com", "d365_lead_id": "123"}, "d365_lead_id", "invalid_field"),
        ({"domain": "acme.com", "force": "yes"}, "force", "invalid_type"),
        ({"domain": "acme.com", "colour": "red"}, "colour", "unknown_field"),
        ({"domain": "acme.com", "description": "d" * 2001}, "description", "too_long"),
    ],
)
def test_bad_fields_name_the_field(body: dict[str, object], field: str, code: str) -> None:
    with pytest.raises(InputError) as raised:
        LeadPush.from_request(body)
    assert raised.value.field == field and raised.value.code == code
    assert raised.value.to_dict()["field"] == field


def test_message_round_trip_keeps_datetimes_as_iso_strings() -> None:
    lead = LeadPush.from_request({"domain": "acme.com", "d365_lead_id": "6F9619FF-8B86-D011-B42D-00C04FC964FF"})
    wire = json.loads(LeadPush.from_message({**lead.to_dict(), "enqueued_at": "2026-01-30T10:00:00Z"}).to_json())
    assert wire["enqueued_at"] == "2026-01-30T10:00:00.000Z"
    assert wire["d365_lead_id"] == "6f9619ff-8b86-d011-b42d-00c04fc964ff"
    assert wire["schema_version"] == 1 and wire["attempt"] == 0


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"\xff\xfe", "invalid_encoding"),
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "invalid_message"),
        (json.dumps({"schema_version": 2, "domain": "acme.com"}).encode(), "unsupported_schema"),
        (json.dumps({"schema_version": 1, "domain": "acme.com", "attempt": -1}).encode(), "invalid_type"),
        (json.dumps({"schema_version": 1, "domain": "acme.com", "enqueued_at": "yesterday"}).encode(), "invalid_field"),
        (b"[" * 100_000, "too_large"),
        (b"[" * 5000 + b"]" * 5000, "invalid_json"),
    ],
)
def test_bad_messages_are_input_errors(body: bytes, code: str) -> None:
    with pytest.raises(InputError) as raised:
        decode_message(body)
    assert raised.value.code == code


def test_base64_is_the_queue_encoding_not_the_message_format() -> None:
    encoded = base64.b64encode(b'{"schema_version":1,"domain":"acme.com"}')
    with pytest.raises(InputError):
        decode_message(encoded)


def test_payload_respects_every_length() -> None:
    lead = LeadPush(domain="acme.com", company_name="A" * 100, description="d" * 2000, segment="s" * 100)
    payload = lead_payload(lead, custom_fields=True)
    for column, limit in LEAD_MAX_LENGTHS.items():
        if column in payload:
            assert len(payload[column]) <= limit, column
    assert payload["lastname"].endswith("…") and len(payload["lastname"]) == 50
    assert payload["hnt_domain"] == "acme.com" and payload["leadsourcecode"] == 8


def test_payload_without_custom_columns_keys_on_the_website() -> None:
    lead = LeadPush(domain="acme.com", website="https://acme.com/en", final_score=55, priority=2)
    payload = lead_payload(lead, custom_fields=False)
    assert not any(key.startswith("hnt_") for key in payload)
    assert payload["websiteurl"] == "https://acme.com" and payload["leadqualitycode"] == 2


@pytest.mark.parametrize(
    "text",
    [
        "6f9619ff-8b86-d011-b42d-00c04fc964ff\n",
        " 6f9619ff-8b86-d011-b42d-00c04fc964ff",
        "{6f9619ff-8b86-d011-b42d-00c04fc964ff}",
        42,
    ],
)
def test_a_guid_is_matched_whole(text: object) -> None:
    assert is_guid("6f9619ff-8b86-d011-b42d-00C04FC964FF")
    assert not is_guid(text)


@pytest.mark.parametrize("text", ["abc\n", "", "a" * 129, "a b", "é", None])
def test_a_correlation_id_is_matched_whole(text: object) -> None:
    assert is_correlation_id("corr-123_x.y:z") and is_correlation_id("a" * 128)
    assert not is_correlation_id(text)


def test_statuses_and_outcomes_travel_as_plain_strings() -> None:
    state = SyncState("acme.com", status=SYNCED, last_outcome=CREATED)
    assert json.dumps(state.public()) == json.dumps({**state.public(), "status": "synced", "last_outcome": "created"})
    outcome = PushOutcome("acme.com", SyncStatus.ERROR, Outcome.FAILED, "c1")
    assert '"status":"error","outcome":"failed"' in outcome.to_json()
    entity = _add_entity_properties({"status": SYNCED, "last_outcome": ALREADY_EXISTS})
    assert entity == _add_entity_properties({"status": "synced", "last_outcome": "already_exists"})
    assert f"{RETRYING}" == "retrying" and str(RECREATED) == "recreated"


def test_the_field_table_names_the_columns_the_mapping_writes() -> None:
    values = {name: f"v-{name}" for name in STRING_FIELDS}
    lead = LeadPush.from_request({"domain": "acme.com", **values, "email": "v-email@acme.com"})
    values["email"] = "v-email@acme.com"
    payload = lead_payload(lead, custom_fields=True)
    for name, spec in STRING_FIELDS.items():
        if spec.column is None:
            assert values[name] not in payload.values()
        else:
            assert payload[spec.column] == values[name], name
            assert LEAD_MAX_LENGTHS[spec.column] == spec.max_length

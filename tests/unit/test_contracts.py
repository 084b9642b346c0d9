"""The published contracts and the settings documentation stay in step with the code."""

import json
import re
from pathlib import Path

from shared.models import BATCH_FIELDS, BATCH_LEAD_FIELDS, LEAD_FIELDS, MESSAGE_FIELDS, STRING_FIELDS

ROOT = Path(__file__).resolve().parents[2]


def test_message_schema_lists_exactly_the_message_fields() -> None:
    schema = json.loads((ROOT / "docs" / "lead-push-message.schema.json").read_text())["$defs"]
    assert set(schema["single"]["properties"]) == set(MESSAGE_FIELDS)
    assert set(schema["batch"]["properties"]) == set(BATCH_FIELDS)
    assert set(schema["batchLead"]["properties"]) == set(BATCH_LEAD_FIELDS)
    for name, spec in STRING_FIELDS.items():
        assert schema["single"]["properties"][name]["maxLength"] == spec.max_length
        assert schema["batchLead"]["properties"][name]["maxLength"] == spec.max_length


def test_openapi_lead_lists_exactly_the_lead_fields() -> None:
    text = (ROOT / "docs" / "openapi.yaml").read_text()
    lead = text.split("    Lead:\n", 1)[1].split("    Accepted:\n", 1)[0]
    documented = set(re.findall(r"^        (\w+): \{", lead, re.MULTILINE))
    assert documented == set(LEAD_FIELDS)
    routes = set(re.findall(r"^  (/[\w/{}.-]+):$", text, re.MULTILINE))
    code = (ROOT / "shared" / "http_api.py").read_text()
    assert routes == {"/" + r for r in re.findall(r'route="([^"]+)"', code)}


def test_every_setting_the_code_reads_is_documented() -> None:
    code = (ROOT / "shared" / "config.py").read_text()
    read = set(re.findall(r'"((?:HUNTER_|AzureWebJobsStorage)[A-Za-z0-9_]*)"', code))
    example = json.loads((ROOT / "local.settings.json.example").read_text())["Values"]
    readme = (ROOT / "docs" / "operations.md").read_text()  # the settings table moved there from the README
    identity_only = {
        "AzureWebJobsStorage__queueServiceUri",
        "AzureWebJobsStorage__tableServiceUri",
        "AzureWebJobsStorage__clientId",
    }
    assert read - identity_only <= set(example), "missing from local.settings.json.example"
    missing = {name for name in read if name not in readme}
    assert not missing, f"not described in docs/operations.md: {missing}"

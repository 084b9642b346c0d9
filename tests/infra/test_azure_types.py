"""The type check passes on infra/ and fails on copies with the mistakes it exists to catch.

Each mutation test copies infra/ to a temporary folder, changes one line, and runs the same check
infra/check.sh runs (tests/infra/azure_types.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("pycep", reason="the infra checks run in .venv-infra (infra/check.sh)")

from tests.infra import azure_types

INFRA = Path(__file__).resolve().parents[2] / "infra"


@pytest.fixture(scope="module")
def library() -> azure_types.TypeLibrary:
    return azure_types.TypeLibrary()


def mutated(tmp_path: Path, relative: str, old: str, new: str) -> Path:
    copy = tmp_path / "infra"
    shutil.copytree(INFRA, copy)
    target = copy / relative
    text = target.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{relative}: expected {old!r} once"
    target.write_text(text.replace(old, new), encoding="utf-8")
    return copy


def messages(folder: Path, library: azure_types.TypeLibrary) -> list[str]:
    return [str(finding) for finding in azure_types.check(folder, library)]


def test_the_templates_match_azures_type_definitions(library: azure_types.TypeLibrary) -> None:
    assert messages(INFRA, library) == []


def test_every_resource_type_and_version_used_has_its_definition_committed(library: azure_types.TypeLibrary) -> None:
    for path in sorted(INFRA.rglob("*.bicep")):
        for name, resource in (azure_types.parse_bicep(path).get("resources") or {}).items():
            assert library.body(resource["type"], resource["api_version"]), f"{path.name}: {name}"


def test_a_misspelt_property_fails(tmp_path: Path, library: azure_types.TypeLibrary) -> None:
    folder = mutated(tmp_path, "app/api.bicep", "    httpsOnly: true", "    httpsOnyl: true")
    assert any("site.properties.httpsOnyl: unknown property of SiteProperties" in m for m in messages(folder, library))


def test_a_misspelt_nested_property_fails(tmp_path: Path, library: azure_types.TypeLibrary) -> None:
    folder = mutated(
        tmp_path,
        "app/api.bicep",
        "        instanceMemoryMB: instanceMemoryMB",
        "        instanceMemoryMb: instanceMemoryMB",
    )
    found = messages(folder, library)
    assert any("scaleAndConcurrency.instanceMemoryMb: wrong case: Azure calls it instanceMemoryMB" in m for m in found)


def test_a_non_existent_api_version_fails(tmp_path: Path, library: azure_types.TypeLibrary) -> None:
    folder = mutated(
        tmp_path,
        "app/keyvault.bicep",
        "Microsoft.KeyVault/vaults@2023-07-01' = {",
        "Microsoft.KeyVault/vaults@2023-07-31' = {",
    )
    found = messages(folder, library)
    assert any("vault: Microsoft.KeyVault/vaults has no API version 2023-07-31" in m for m in found), found


def test_an_unknown_closed_enum_value_fails(tmp_path: Path, library: azure_types.TypeLibrary) -> None:
    folder = mutated(tmp_path, "app/storage.bicep", "publicAccess: 'None'", "publicAccess: 'Private'")
    found = messages(folder, library)
    assert any(
        "properties.publicAccess: 'Private' is not one of the allowed values 'Blob', 'Container', 'None'" in m
        for m in found
    )


def test_an_unknown_value_of_an_open_enum_fails(tmp_path: Path, library: azure_types.TypeLibrary) -> None:
    folder = mutated(tmp_path, "app/monitoring.bicep", "name: 'PerGB2018'", "name: 'PerGB2019'")
    assert any("'PerGB2019' is not one of the known values" in m for m in messages(folder, library))


def test_a_parameter_whose_allowed_values_azure_refuses_fails(tmp_path: Path, library: azure_types.TypeLibrary) -> None:
    folder = mutated(tmp_path, "app/storage.bicep", "  'Standard_RAGRS'\n", "  'Standard_RAGRS'\n  'Standard_XRS'\n")
    assert any(
        "account.sku.name: 'Standard_XRS' is not one of the known values" in m for m in messages(folder, library)
    )


def test_a_read_only_property_fails(tmp_path: Path, library: azure_types.TypeLibrary) -> None:
    folder = mutated(
        tmp_path, "app/api.bicep", "    httpsOnly: true", "    httpsOnly: true\n    defaultHostName: 'x.example.com'"
    )
    assert any("properties.defaultHostName: read-only property" in m for m in messages(folder, library))


def test_a_string_longer_than_azure_allows_fails(tmp_path: Path, library: azure_types.TypeLibrary) -> None:
    # The action group's short name is bounded in the definitions: at most 12 characters.
    folder = mutated(
        tmp_path, "app/alerts.bicep", "groupShortName: 'hunterd365'", "groupShortName: 'hunter-d365-operators'"
    )
    assert any("groupShortName: 'hunter-d365-operators' is longer than 12" in m for m in messages(folder, library))


def test_reading_a_property_azure_does_not_return_fails(tmp_path: Path, library: azure_types.TypeLibrary) -> None:
    folder = mutated(tmp_path, "app/api.bicep", "site.properties.defaultHostName", "site.properties.defaultHostname")
    assert any("site.properties.defaultHostname: no such property to read" in m for m in messages(folder, library))


def test_the_location_on_publishing_policies_is_accepted_only_with_its_directive(
    tmp_path: Path, library: azure_types.TypeLibrary
) -> None:
    text = (INFRA / "app" / "api.bicep").read_text(encoding="utf-8")
    assert text.count("#disable-next-line BCP037") == 2
    copy = tmp_path / "infra"
    shutil.copytree(INFRA, copy)
    stripped = "\n".join(line for line in text.splitlines() if "#disable-next-line BCP037" not in line)
    (copy / "app" / "api.bicep").write_text(stripped, encoding="utf-8")
    found = messages(copy, library)
    assert any(m.startswith("infra/app/api.bicep: ftpPublishing.location: unknown property") for m in found), found
    assert any(m.startswith("infra/app/api.bicep: scmPublishing.location: unknown property") for m in found), found


def test_publishing_policies_carry_the_site_location() -> None:
    parsed = azure_types.parse_bicep(INFRA / "app" / "api.bicep")
    for name in ("ftpPublishing", "scmPublishing"):
        assert parsed["resources"][name]["config"]["location"] == "location"


# -- Microsoft Graph (Entra ID) resources, against the pinned Graph extension types --


def test_a_misspelt_graph_property_fails(tmp_path: Path, library: azure_types.TypeLibrary) -> None:
    folder = mutated(
        tmp_path, "app/entra.bicep", "    requestedAccessTokenVersion: 2", "    accessTokenAcceptedVersion: 2"
    )
    found = messages(folder, library)
    assert any(
        "apiApp.api.accessTokenAcceptedVersion: unknown property of MicrosoftGraphApiApplication" in m for m in found
    )


def test_a_graph_resource_missing_a_required_property_fails(tmp_path: Path, library: azure_types.TypeLibrary) -> None:
    folder = mutated(tmp_path, "app/entra.bicep", "  uniqueName: apiUniqueName\n", "")
    assert any("apiApp" in m and "uniqueName" in m for m in messages(folder, library))


def test_a_graph_resource_type_the_extension_lacks_fails(tmp_path: Path, library: azure_types.TypeLibrary) -> None:
    folder = mutated(
        tmp_path,
        "app/entra.bicep",
        "'Microsoft.Graph/oauth2PermissionGrants@v1.0'",
        "'Microsoft.Graph/permissionGrants@v1.0'",
    )
    assert any("spaConsent" in m and "Microsoft.Graph/permissionGrants" in m for m in messages(folder, library))


def test_graph_resources_need_the_extension_at_the_pinned_version(
    tmp_path: Path, library: azure_types.TypeLibrary
) -> None:
    folder = mutated(tmp_path, "app/entra.bicep", "extension microsoftGraphV1\n", "\n")
    assert any("need `extension microsoftGraphV1`" in m for m in messages(folder, library))
    other = tmp_path / "other"
    other.mkdir()
    folder = mutated(other, "bicepconfig.json", "v1.0:1.0.0", "v1.0:0.1.8-preview")
    assert any("the version whose types are pinned" in m for m in messages(folder, library))

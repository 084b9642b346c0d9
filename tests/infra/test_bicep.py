"""Structure tests for infra/: what a Bicep compiler would not tell us, checked offline.

Every Bicep file is parsed with pycep-parser, the version checkov pins, and the tests check the
security properties, the role GUIDs, the Dataverse concurrency budget, the alerts and the workbook,
and that the function app gets every setting the code reads. That list is derived from the code
(`shared/config.py` and the other `shared/` modules), never copied, so a new setting in the code
fails here until the Bicep sets it.

Run in the infra tool venv: `infra/check.sh`, or
`.venv-infra/bin/python -m pytest --confcutdir=tests/infra tests/infra`. The app's own venv has no
pycep, so there the whole module is skipped.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

pycep = pytest.importorskip("pycep", reason="the infra checks run in .venv-infra (infra/check.sh)")
yaml = pytest.importorskip("yaml")

from tests.infra import azure_types  # noqa: E402  (after the skip: it needs the infra venv's pycep)

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
SHARED = ROOT / "shared"

# Dataverse service protection: concurrent requests per application user.
DATAVERSE_CONCURRENCY_LIMIT = 52
# What the defaults must leave for others under that limit: the smoke test, an instance still
# draining after a scale-in, an operator's script using the same application user.
DEFAULT_HEADROOM = 8

# Built-in role definitions: the same GUID in every tenant.
ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}

# Settings the code reads that the deployment deliberately does not set, and why.
NOT_SET_IN_AZURE = {
    # The connection-string form. In Azure the identity-based AzureWebJobsStorage__* settings take
    # its place: a connection string would carry an account key, and the account has none.
    "AzureWebJobsStorage": "identity-based __credential/__clientId/__*ServiceUri instead",
    # The secret itself. The deployment has the code read it from Key Vault with the managed
    # identity (HUNTER_KEYVAULT_URL + HUNTER_D365_CLIENT_SECRET_NAME); in managed_identity mode
    # there is no secret at all. Should it ever be set, then only as a Key Vault reference.
    "HUNTER_D365_CLIENT_SECRET": "read from Key Vault in code",
    # Put there by the platform for its managed-identity endpoint; an app setting must not.
    "IDENTITY_ENDPOINT": "set by App Service",
    "MSI_ENDPOINT": "set by App Service",
}

# Settings Flex Consumption rejects or ignores (the runtime and the package come from
# functionAppConfig), and the key-based storage settings this deployment must never have.
FORBIDDEN_SETTINGS = {
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_CONTENTSHARE",
    "AzureWebJobsStorage",
    "APPINSIGHTS_INSTRUMENTATIONKEY",
}

STORAGE_SERVICES = {
    "enableBlob": ("AzureWebJobsStorage__blobServiceUri", "Storage Blob Data Owner"),
    "enableQueue": ("AzureWebJobsStorage__queueServiceUri", "Storage Queue Data Contributor"),
    "enableTable": ("AzureWebJobsStorage__tableServiceUri", "Storage Table Data Contributor"),
}


# --- reading the templates -----------------------------------------------------------------------


@functools.cache
def bicep(relative: str) -> dict[str, Any]:
    """One Bicep file, parsed (an `extension` line blanked first: azure_types.pycep_text)."""
    text = azure_types.pycep_text((INFRA / relative).read_text(encoding="utf-8"))
    return cast(dict[str, Any], pycep.BicepParser().parse(text=text))


def bicep_files() -> list[str]:
    return sorted(str(path.relative_to(INFRA)) for path in INFRA.rglob("*.bicep"))


def body(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource's properties, under any `if (...)` condition or `for` loop."""
    config = cast(dict[str, Any], resource["config"])
    while "config" in config and ("condition" in config or "loop_type" in config):
        config = config["config"]
    return config


def condition(resource: dict[str, Any]) -> Any:
    return resource["config"].get("condition")


def accessor(node: Any) -> list[str] | None:
    """`a.b.c` as ["a", "b", "c"]; None if `node` is not a property access."""
    if isinstance(node, str):
        return [node]
    operator = node.get("operator") if isinstance(node, dict) else None
    if not operator or operator["type"] != "property_accessor":
        return None
    head = accessor(operator["operands"]["operand_1"])
    tail = accessor(operator["operands"]["operand_2"])
    return head + tail if head is not None and tail is not None else None


def function(node: Any, name: str) -> dict[str, Any]:
    """The arguments of a call to Bicep function `name` (pycep's snake_case name)."""
    assert isinstance(node, dict) and "function" in node, f"expected {name}(...), got {node!r}"
    assert node["function"]["type"] == name, f"expected {name}(...), got {node['function']['type']}(...)"
    return cast(dict[str, Any], node["function"]["parameters"])


def decorator(param: dict[str, Any], kind: str) -> Any:
    for item in param.get("decorators", []):
        if item["type"] == kind:
            return item["argument"]
    return None


def resources(relative: str, resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        name: resource
        for name, resource in bicep(relative).get("resources", {}).items()
        if resource["type"] == resource_type and not resource["existing"]
    }


def the_resource(relative: str, resource_type: str) -> dict[str, Any]:
    found = resources(relative, resource_type)
    assert len(found) == 1, f"{relative}: expected one {resource_type}, found {sorted(found)}"
    return next(iter(found.values()))


def comment_of(relative: str, text: str) -> str:
    """The `// comment` at the end of the line in `relative` that holds `text`."""
    for line in (INFRA / relative).read_text(encoding="utf-8").splitlines():
        if text in line and "//" in line:
            return line.split("//", 1)[1].strip()
    return ""


class Evaluator:
    """Evaluates the few Bicep expressions the tests need: variable references, literal objects,
    union(), a ? b : c, and property access into literal objects. Anything else is returned as is."""

    def __init__(self, variables: dict[str, Any], known: dict[str, Any] | None = None) -> None:
        self.variables = variables
        self.known = known or {}

    def __call__(self, node: Any) -> Any:
        if isinstance(node, str):
            if node in self.known:
                return self.known[node]
            if node in self.variables:
                return self(self.variables[node]["value"])
            return node
        if not isinstance(node, dict):
            return node
        if "function" in node and node["function"]["type"] == "union":
            merged: dict[str, Any] = {}
            for argument in node["function"]["parameters"].values():
                part = self(argument)
                assert isinstance(part, dict), f"union() of a non-object: {part!r}"
                merged.update(part)
            return merged
        operator = node.get("operator")
        if operator and operator["type"] == "conditional":
            test = self(operator["operands"]["condition"])
            assert isinstance(test, bool), f"cannot decide condition {operator['operands']['condition']!r}"
            return self(operator["operands"]["true_value" if test else "false_value"])
        path = accessor(node)
        if operator and path and path[0] in self.variables:
            value = self(path[0])
            for key in path[1:]:
                if not isinstance(value, dict) or key not in value:
                    return node
                value = value[key]
            return value
        return node


def main_value(node: Any) -> Any:
    return Evaluator(bicep("main.bicep").get("variables", {}))(node)


def module_params(module: str) -> dict[str, Any]:
    return cast(dict[str, Any], body(bicep("main.bicep")["modules"][module])["params"])


def storage_flags() -> dict[str, bool]:
    """main.bicep's storageEndpointConfig, as the api and rbac modules receive it."""
    return {flag: main_value(module_params("api")[flag]) for flag in STORAGE_SERVICES}


@functools.cache
def app_settings() -> dict[str, Any]:
    """The function app's settings: api.bicep's `appSettings` with main.bicep's switches applied."""
    api = bicep("app/api.bicep")
    settings = Evaluator(api["variables"], storage_flags())(api["variables"]["appSettings"]["value"])
    assert isinstance(settings, dict)
    return settings


def site() -> dict[str, Any]:
    return body(the_resource("app/api.bicep", "Microsoft.Web/sites"))


# --- reading the code ----------------------------------------------------------------------------

SETTING_READ = re.compile(
    r"""(?:\benv|os\.environ)\.get\(\s*"(?P<get>[A-Za-z_][A-Za-z0-9_]*)"""
    r"""|\b_(?:flag|number|https_url|whole)\(\s*env\s*,\s*"(?P<helper>[A-Za-z_][A-Za-z0-9_]*)"""
    r"""|os\.getenv\(\s*"(?P<getenv>[A-Za-z_][A-Za-z0-9_]*)"""
    # A binding expression in a decorator ("%HUNTER_D365_QUEUE_DEPTH_SCHEDULE%"): the host reads it.
    r"""|"%(?P<expression>[A-Za-z_][A-Za-z0-9_]*)%"""
)


def python_sources() -> Iterator[tuple[Path, str]]:
    for path in sorted(SHARED.rglob("*.py")):
        yield path, path.read_text(encoding="utf-8")
    yield ROOT / "function_app.py", (ROOT / "function_app.py").read_text(encoding="utf-8")


@functools.cache
def settings_read_by_code() -> frozenset[str]:
    """Every environment name the app's code reads (Settings.from_env and the other modules)."""
    names: set[str] = set()
    for _, source in python_sources():
        for match in SETTING_READ.finditer(source):
            names.add(next(group for group in match.groups() if group))
    return frozenset(names)


def code_default(setting: str) -> str:
    """The default `shared/config.py` gives `setting` (`env.get("NAME", "default")`)."""
    source = (SHARED / "config.py").read_text(encoding="utf-8")
    match = re.search(rf'env\.get\(\s*"{setting}"\s*,\s*"([^"]*)"\s*\)', source)
    assert match, f"shared/config.py no longer reads {setting} with a default"
    return match.group(1)


@functools.cache
def code_strings() -> frozenset[str]:
    """Every double-quoted string literal in the app's code (event names, log field names)."""
    found: set[str] = set()
    for _, source in python_sources():
        found.update(re.findall(r'"([A-Za-z_][A-Za-z0-9_]*)"', source))
    return frozenset(found)


# --- the tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("relative", bicep_files())
def test_every_bicep_file_parses_with_the_pinned_parser(relative: str) -> None:
    parsed = bicep(relative)
    assert parsed.get("resources") or parsed.get("modules"), f"{relative} declares nothing"


def test_modules_receive_exactly_the_parameters_they_declare() -> None:
    for name, module in bicep("main.bicep")["modules"].items():
        path = module["detail"]["path"]
        declared = bicep(path)["parameters"]
        config = body(module)  # a conditional module (entra) has its body under the condition
        passed = set(config["params"])
        assert passed <= set(declared), f"module {name} is passed unknown parameters {passed - set(declared)}"
        required = {param for param, spec in declared.items() if "default" not in spec}
        assert required <= passed, f"module {name} misses required parameters {required - passed}"
        assert config["scope"] == "rg", f"module {name} must deploy into the resource group"


def test_flex_consumption_plan_on_linux() -> None:
    plan = body(the_resource("app/api.bicep", "Microsoft.Web/serverfarms"))
    assert plan["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    assert plan["properties"]["reserved"] is True


def test_function_app_runs_python_311_https_only_tls12_ftp_off() -> None:
    app = site()
    assert app["kind"] == "functionapp,linux"
    properties = app["properties"]
    assert properties["httpsOnly"] is True
    assert properties["functionAppConfig"]["runtime"] == {"name": "python", "version": "3.11"}
    config = properties["siteConfig"]
    assert config["minTlsVersion"] == "1.2"
    assert config["scmMinTlsVersion"] == "1.2"
    # Flex Consumption has no FTP at all and lists siteConfig.ftpsState among its deprecated
    # properties; FTP stays off through the publishing-credentials policies below.
    assert "ftpsState" not in config
    assert config["remoteDebuggingEnabled"] is False
    policies = resources("app/api.bicep", "Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert {body(policy)["name"]: body(policy)["properties"]["allow"] for policy in policies.values()} == {
        "ftp": False,
        "scm": False,
    }


def test_function_app_signs_in_everywhere_with_its_user_assigned_identity() -> None:
    app = site()
    assert app["identity"]["type"] == "UserAssigned"
    assert list(app["identity"]["userAssignedIdentities"]) == ["'${identityId}'"]
    properties = app["properties"]
    assert properties["keyVaultReferenceIdentity"] == "identityId"
    deployment = properties["functionAppConfig"]["deployment"]["storage"]
    assert deployment["authentication"] == {
        "type": "UserAssignedIdentity",
        "userAssignedIdentityResourceId": "identityId",
    }
    settings = app_settings()
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage__clientId"] == "identityClientId"
    assert settings["HUNTER_MANAGED_IDENTITY_CLIENT_ID"] == "identityClientId"
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "ClientId=${identityClientId};Authorization=AAD"
    identity = module_params("api")
    assert accessor(identity["identityId"]) == ["identity", "outputs", "id"]
    assert accessor(identity["identityClientId"]) == ["identity", "outputs", "clientId"]
    assert accessor(module_params("rbac")["appPrincipalId"]) == ["identity", "outputs", "principalId"]


def test_deployment_package_lives_in_a_private_container_of_the_same_account() -> None:
    deployment = site()["properties"]["functionAppConfig"]["deployment"]["storage"]
    assert deployment["type"] == "blobContainer"
    assert deployment["value"] == "${storageAccount.properties.primaryEndpoints.blob}${deploymentContainerName}"
    container = body(the_resource("app/storage.bicep", "Microsoft.Storage/storageAccounts/blobServices/containers"))
    assert container["name"] == "deploymentContainerName"
    assert container["properties"]["publicAccess"] == "None"
    assert module_params("api")["deploymentContainerName"] == "deploymentContainerName"
    assert module_params("storage")["deploymentContainerName"] == "deploymentContainerName"


def test_storage_account_takes_entra_id_only_over_https_and_tls12() -> None:
    account = body(the_resource("app/storage.bicep", "Microsoft.Storage/storageAccounts"))
    properties = account["properties"]
    assert properties["allowSharedKeyAccess"] is False
    assert properties["allowBlobPublicAccess"] is False
    assert properties["minimumTlsVersion"] == "TLS1_2"
    assert properties["supportsHttpsTrafficOnly"] is True
    assert properties["defaultToOAuthAuthentication"] is True
    assert properties["allowCrossTenantReplication"] is False


def test_no_template_handles_an_account_key_or_a_secret_value() -> None:
    for relative in bicep_files():
        text = (INFRA / relative).read_text(encoding="utf-8")
        for marker in ("listKeys", "listConnectionStrings", "AccountKey=", "InstrumentationKey=", "SharedAccessKey"):
            assert marker not in text, f"{relative} uses {marker}"
        secure = [
            name
            for name, spec in bicep(relative).get("parameters", {}).items()
            if any(item["type"] == "secure" for item in spec.get("decorators", []))
        ]
        # The one exception: an action group's webhook URL carries its own signature and Azure Monitor
        # needs it as a literal (no Key Vault reference), so it is @secure(): kept out of deployment
        # history, never read by the app.
        assert set(secure) <= {"alertWebhookUrl"}, f"{relative} takes secrets as parameters: {secure}; use Key Vault"
        secrets = resources(relative, "Microsoft.KeyVault/vaults/secrets")
        assert not secrets, f"{relative} writes a secret value into Key Vault; operators do that (docs/runbook.md)"


def test_queues_and_state_table_are_the_names_the_app_is_told() -> None:
    variables = bicep("main.bicep")["variables"]
    queue = variables["queueName"]["value"]
    assert queue == code_default("HUNTER_D365_QUEUE") == "d365-lead-push"
    assert main_value("poisonQueueName") == "${queueName}-poison"  # what Settings derives: f"{queue}-poison"
    assert "-poison" in (SHARED / "config.py").read_text(encoding="utf-8")
    assert variables["resultsQueueName"]["value"] == code_default("HUNTER_D365_RESULTS_QUEUE")
    assert variables["stateTableName"]["value"] == code_default("HUNTER_D365_STATE_TABLE")
    storage = module_params("storage")
    # The last is Hunter's results consumer's own poison queue (hunter_results: f"{results}-poison").
    assert storage["queueNames"] == ["queueName", "poisonQueueName", "resultsQueueName", "${resultsQueueName}-poison"]
    assert storage["tableNames"] == ["stateTableName"]
    queues = the_resource("app/storage.bicep", "Microsoft.Storage/storageAccounts/queueServices/queues")
    assert queues["config"]["loop_type"]["detail"]["array_name"] == "queueNames"
    tables = the_resource("app/storage.bicep", "Microsoft.Storage/storageAccounts/tableServices/tables")
    assert tables["config"]["loop_type"]["detail"]["array_name"] == "tableNames"
    api = module_params("api")
    settings = app_settings()
    for setting, param, variable in (
        ("HUNTER_D365_QUEUE", "queueName", "queueName"),
        ("HUNTER_D365_RESULTS_QUEUE", "resultsQueueName", "resultsQueueName"),
        ("HUNTER_D365_STATE_TABLE", "stateTableName", "stateTableName"),
    ):
        assert settings[setting] == param
        assert api[param] == variable


def test_settings_read_by_the_code_are_found() -> None:
    """Guards the derivation below: if shared/config.py changes style, the regex must follow."""
    names = settings_read_by_code()
    assert len(names) >= 25, sorted(names)
    assert {"HUNTER_D365_BASE_URL", "HUNTER_D365_QUEUE", "AzureWebJobsStorage__queueServiceUri"} <= names
    assert "APPLICATIONINSIGHTS_CONNECTION_STRING" in names  # shared/telemetry.py


def test_every_setting_the_code_reads_is_set_in_azure() -> None:
    required = settings_read_by_code() - set(NOT_SET_IN_AZURE)
    missing = sorted(required - set(app_settings()))
    assert not missing, f"the function app does not get {missing} (read in shared/)"


def test_every_hunter_setting_in_azure_is_one_the_code_reads() -> None:
    """A misspelt setting would be silently ignored by the code and fall back to its default."""
    read = settings_read_by_code()
    unknown = sorted(name for name in app_settings() if name.startswith("HUNTER_") and name not in read)
    assert not unknown, f"settings the code never reads: {unknown}"
    storage = {name for name in app_settings() if name.startswith("AzureWebJobsStorage")}
    assert storage == {
        "AzureWebJobsStorage__credential",
        "AzureWebJobsStorage__clientId",
        "AzureWebJobsStorage__blobServiceUri",
        "AzureWebJobsStorage__queueServiceUri",
        "AzureWebJobsStorage__tableServiceUri",
    }


def test_no_setting_holds_a_secret_or_a_flex_deprecated_name() -> None:
    settings = app_settings()
    assert not FORBIDDEN_SETTINGS & set(settings), FORBIDDEN_SETTINGS & set(settings)
    secret = settings.get("HUNTER_D365_CLIENT_SECRET")
    assert secret is None or (isinstance(secret, str) and secret.startswith("@Microsoft.KeyVault(")), (
        "HUNTER_D365_CLIENT_SECRET may only ever be a Key Vault reference"
    )
    assert settings["HUNTER_KEYVAULT_URL"] == "keyVaultUri"
    assert accessor(module_params("api")["keyVaultUri"]) == ["keyVault", "outputs", "uri"]
    assert bicep("app/keyvault.bicep")["outputs"]["uri"]["value"] == {
        "operator": {
            "type": "property_accessor",
            "operands": {
                "operand_1": "vault",
                "operand_2": {
                    "operator": {
                        "type": "property_accessor",
                        "operands": {"operand_1": "properties", "operand_2": "vaultUri"},
                    }
                },
            },
        }
    }
    assert accessor(settings["APPLICATIONINSIGHTS_CONNECTION_STRING"]) == [
        "applicationInsights",
        "properties",
        "ConnectionString",
    ]
    config = body(resources("app/api.bicep", "Microsoft.Web/sites/config")["settings"])
    assert (config["parent"], config["name"], config["properties"]) == ("site", "appsettings", "appSettings")


def test_app_service_authentication_matches_the_local_host_and_the_anonymous_routes() -> None:
    """authsettingsV2 in Bicep and the local host's copy (devstack.processes.easy_auth_settings)
    agree on every literal, and the excluded paths are exactly the app's ANONYMOUS routes."""
    from devstack.processes import easy_auth_settings

    config = body(resources("app/api.bicep", "Microsoft.Web/sites/config")["authSettings"])
    assert config["name"] == "authsettingsV2"
    deployed = config["properties"]
    info = {
        "openid_issuer": "issuer",
        "api_client_id": "client",
        "api_scope": "api://client/access_as_user",
        "spa_client_id": "spa",
        "backend_client_id": "backend",
        "operator_client_id": "operator",
    }
    local = json.loads(easy_auth_settings(info, [])["LOCAL_HOST_AUTH_SETTINGS_V2"])
    assert deployed["platform"] == local["platform"]
    assert deployed["globalValidation"] == local["globalValidation"]
    assert deployed["login"] == local["login"]
    aad = deployed["identityProviders"]["azureActiveDirectory"]
    assert aad["enabled"] is True and set(aad["validation"]) == set(
        local["identityProviders"]["azureActiveDirectory"]["validation"]
    )
    assert aad["registration"]["openIdIssuer"].endswith("/v2.0")  # v2.0 tokens (the API's manifest)
    anonymous = re.findall(
        r'route="([^"]+)"[^)]*auth_level=func\.AuthLevel\.ANONYMOUS\)\ndef (?:live|ready)',
        (SHARED / "http_api.py").read_text(encoding="utf-8"),
    )
    assert sorted(deployed["globalValidation"]["excludedPaths"]) == sorted(f"/api/{route}" for route in anonymous)


def test_secret_name_and_auth_modes_match_the_code() -> None:
    main = bicep("main.bicep")["parameters"]
    example = json.loads((ROOT / "local.settings.json.example").read_text(encoding="utf-8"))["Values"]
    assert main["d365ClientSecretName"]["default"] == example["HUNTER_D365_CLIENT_SECRET_NAME"]
    match = re.search(r"AUTH_MODES\s*=\s*\(([^)]*)\)", (SHARED / "config.py").read_text(encoding="utf-8"))
    assert match
    modes = set(re.findall(r'"([a-z_]+)"', match.group(1)))
    for relative in ("main.bicep", "app/api.bicep"):
        assert set(decorator(bicep(relative)["parameters"]["d365AuthMode"], "allowed")) == modes
    assert app_settings()["HUNTER_D365_AUTH_MODE"] == "d365AuthMode"
    # The integration stays off until the go/no-go in docs/runbook.md.
    assert main["d365Enabled"]["default"] is False


def test_each_storage_service_in_use_has_its_setting_and_its_role() -> None:
    flags = storage_flags()
    # This app needs all three: the host's blobs and package, the queues, the sync-state table.
    assert flags == {"enableBlob": True, "enableQueue": True, "enableTable": True}
    assert {flag: main_value(module_params("rbac")[flag]) for flag in STORAGE_SERVICES} == flags
    app_roles = {
        ROLES[guid_of(resource)]: condition(resource)
        for resource in role_assignments().values()
        if body(resource)["properties"]["principalId"] == "appPrincipalId"
    }
    for flag, (setting, role) in STORAGE_SERVICES.items():
        assert setting in app_settings()
        assert app_roles[role] == flag, f"{role} must be granted exactly when {flag}"


def role_assignments() -> dict[str, dict[str, Any]]:
    return resources("app/rbac.bicep", "Microsoft.Authorization/roleAssignments")


def guid_of(resource: dict[str, Any]) -> str:
    variable = function(body(resource)["properties"]["roleDefinitionId"], "subscription_resource_id")["resource_name_1"]
    guid = bicep("app/rbac.bicep")["variables"][variable]["value"]
    return cast(str, guid)


def test_role_guids_are_builtin_roles_named_in_a_comment() -> None:
    for name, variable in bicep("app/rbac.bicep")["variables"].items():
        guid = variable["value"]
        if not (isinstance(guid, str) and re.fullmatch(r"[0-9a-f-]{36}", guid)):
            continue
        assert guid in ROLES, f"{name} = {guid} is not a role this deployment expects"
        assert comment_of("app/rbac.bicep", guid) == ROLES[guid], f"{name}: the comment must name {ROLES[guid]}"


def test_role_assignments_are_named_by_scope_principal_and_role() -> None:
    assert role_assignments()
    for name, resource in role_assignments().items():
        config = body(resource)
        properties = config["properties"]
        role = function(properties["roleDefinitionId"], "subscription_resource_id")
        assert role["resource_type"] == "Microsoft.Authorization/roleDefinitions"
        guid = function(config["name"], "guid")
        assert accessor(guid["base_string"]) == [config["scope"], "id"], name
        assert guid["extra_string_1"] == properties["principalId"], name
        assert guid["extra_string_2"] == role["resource_name_1"], name
        if properties["principalId"] == "appPrincipalId":
            assert properties["principalType"] == "ServicePrincipal", name


def test_app_identity_holds_exactly_the_roles_it_needs() -> None:
    scopes = {"storageAccount": "storage", "vault": "key vault", "applicationInsights": "application insights"}
    granted = sorted(
        (ROLES[guid_of(resource)], scopes[body(resource)["scope"]])
        for resource in role_assignments().values()
        if body(resource)["properties"]["principalId"] == "appPrincipalId"
    )
    assert granted == [
        ("Key Vault Secrets User", "key vault"),
        ("Monitoring Metrics Publisher", "application insights"),
        ("Storage Blob Data Owner", "storage"),
        ("Storage Queue Data Contributor", "storage"),
        ("Storage Table Data Contributor", "storage"),
    ]
    operator = sorted(
        ROLES[guid_of(resource)]
        for resource in role_assignments().values()
        if body(resource)["properties"]["principalId"] == "operatorPrincipalId"
    )
    assert operator == ["Key Vault Secrets Officer", "Storage Queue Data Contributor"]
    assert accessor(module_params("rbac")["operatorPrincipalId"]) == ["principalId"]


def test_key_vault_is_rbac_only_with_soft_delete_and_purge_protection_by_default() -> None:
    vault = body(the_resource("app/keyvault.bicep", "Microsoft.KeyVault/vaults"))["properties"]
    assert vault["enableRbacAuthorization"] is True
    assert "accessPolicies" not in vault
    assert vault["enableSoftDelete"] is True
    # ARM refuses an explicit false, so the property is true or absent (null).
    assert vault["enablePurgeProtection"] == {
        "operator": {
            "type": "conditional",
            "operands": {"condition": "purgeProtection", "true_value": True, "false_value": None},
        }
    }
    assert bicep("app/keyvault.bicep")["parameters"]["purgeProtection"]["default"] is True
    assert bicep("main.bicep")["parameters"]["keyVaultPurgeProtection"]["default"] is True
    assert module_params("keyVault")["purgeProtection"] == "keyVaultPurgeProtection"


def test_log_analytics_and_application_insights_refuse_local_auth() -> None:
    workspace = body(the_resource("app/monitoring.bicep", "Microsoft.OperationalInsights/workspaces"))
    assert workspace["properties"]["features"]["disableLocalAuth"] is True
    insights = body(the_resource("app/monitoring.bicep", "Microsoft.Insights/components"))["properties"]
    assert insights["DisableLocalAuth"] is True
    assert accessor(insights["WorkspaceResourceId"]) == ["workspace", "id"]
    assert insights["IngestionMode"] == "LogAnalytics"


def bicep_integer(node: Any, variables: dict[str, Any], known: dict[str, int]) -> int:
    """Evaluates the integer arithmetic api.bicep uses for the queue settings: literals, parameters
    (from `known`), variables, max(), min() and whole division."""
    if isinstance(node, bool):
        raise AssertionError(f"not an integer: {node!r}")
    if isinstance(node, int):
        return node
    if isinstance(node, str):
        if node in known:
            return known[node]
        return bicep_integer(variables[node]["value"], variables, known)
    if "function" in node:
        name = node["function"]["type"]
        arguments = [bicep_integer(arg, variables, known) for arg in node["function"]["parameters"].values()]
        assert name in ("max", "min"), f"unexpected function {name}()"
        return max(arguments) if name == "max" else min(arguments)
    operator = node["operator"]
    assert operator["type"] == "divide", f"unexpected operator {operator['type']}"
    operands = operator["operands"]
    return bicep_integer(operands["operand_1"], variables, known) // bicep_integer(
        operands["operand_2"], variables, known
    )


def queue_settings(instances: int, budget: int) -> tuple[int, int]:
    """(batchSize, newBatchThreshold) as api.bicep derives them for these parameter values."""
    variables = bicep("app/api.bicep")["variables"]
    known = {"maximumInstanceCount": instances, "dataverseConcurrencyBudget": budget}
    return (
        bicep_integer("queueBatchSize", variables, known),
        bicep_integer("queueNewBatchThreshold", variables, known),
    )


def test_concurrency_stays_under_the_dataverse_budget() -> None:
    """Only the queue worker calls Dataverse; it is its own scale group on Flex Consumption, capped
    at maximumInstanceCount on-demand instances, each running batchSize + newBatchThreshold."""
    for relative in ("main.bicep", "app/api.bicep"):
        params = bicep(relative)["parameters"]
        instances, budget = params["maximumInstanceCount"], params["dataverseConcurrencyBudget"]
        assert decorator(budget, "max_value") <= DATAVERSE_CONCURRENCY_LIMIT
        assert decorator(instances, "min_value") >= 1
        assert decorator(instances, "max_value") <= DATAVERSE_CONCURRENCY_LIMIT, "one request each must fit"
        # The default deploys in every region: 40 is the lowest cap every version of Microsoft's
        # page has accepted (event-driven-scaling.md, "Limit scale-out").
        assert instances["default"] == 40
        assert budget["default"] <= DATAVERSE_CONCURRENCY_LIMIT - DEFAULT_HEADROOM
        for count in range(1, decorator(instances, "max_value") + 1):
            for share in range(1, decorator(budget, "max_value") + 1):
                batch, threshold = queue_settings(count, share)
                per_instance = batch + threshold
                assert per_instance >= 1 and batch <= 32
                if count <= share:
                    assert count * per_instance <= share, (count, share)
                else:  # more instances than budget: one request each, still within the 52
                    assert count * per_instance <= DATAVERSE_CONCURRENCY_LIMIT, (count, share)
    api = module_params("api")
    for name in ("maximumInstanceCount", "dataverseConcurrencyBudget", "instanceMemoryMB"):
        assert api[name] == name
    scale = site()["properties"]["functionAppConfig"]["scaleAndConcurrency"]
    # No always-ready instances: they would not count toward maximumInstanceCount.
    assert scale == {"maximumInstanceCount": "maximumInstanceCount", "instanceMemoryMB": "instanceMemoryMB"}
    settings = app_settings()
    assert settings["AzureFunctionsJobHost__extensions__queues__batchSize"] == "${queueBatchSize}"
    assert settings["AzureFunctionsJobHost__extensions__queues__newBatchThreshold"] == "${queueNewBatchThreshold}"
    assert settings["HUNTER_D365_MAX_INSTANCES"] == "${maximumInstanceCount}"
    assert settings["HUNTER_D365_CONCURRENCY_BUDGET"] == "${dataverseConcurrencyBudget}"


def test_bicep_and_the_app_split_the_budget_the_same_way() -> None:
    """shared/concurrency.py (the app's own bound) and api.bicep (the queue settings) agree."""
    concurrency = pytest.importorskip("shared.concurrency")
    params = bicep("main.bicep")["parameters"]
    defaults = (params["maximumInstanceCount"]["default"], params["dataverseConcurrencyBudget"]["default"])
    assert defaults == (concurrency.DEFAULT_MAX_INSTANCES, concurrency.DEFAULT_BUDGET)
    for budget in range(1, DATAVERSE_CONCURRENCY_LIMIT + 1):
        for instances in range(1, budget + 1):
            share = concurrency.plan(budget, instances)
            assert queue_settings(instances, budget) == (share.queue_batch_size, share.queue_new_batch_threshold)


def test_concurrency_arithmetic_is_written_down_with_the_current_numbers() -> None:
    params = bicep("main.bicep")["parameters"]
    instances, budget = params["maximumInstanceCount"], params["dataverseConcurrencyBudget"]
    cases = [
        (instances["default"], budget["default"]),
        (decorator(instances, "max_value"), decorator(budget, "max_value")),
    ]
    for count, share in cases:
        batch, threshold = queue_settings(count, share)
        total = count * (batch + threshold)
        for document in (INFRA / "main.bicep", ROOT / "docs" / "deploy.md"):
            text = document.read_text(encoding="utf-8")
            assert re.search(rf"\b{count}\s*[x×]\s*{batch + threshold}\s*=\s*{total}\b", text), (
                f"{document.name} must show {count} x {batch + threshold} = {total}"
            )


def test_cors_allows_only_the_hunter_ui_origin_parameter() -> None:
    cors = site()["properties"]["siteConfig"]["cors"]
    assert cors["supportCredentials"] is False
    assert cors["allowedOrigins"] == {
        "operator": {
            "type": "conditional",
            "operands": {
                "condition": {"function": {"type": "empty", "parameters": {"item_to_test": "hunterUiOrigin"}}},
                "true_value": [],
                "false_value": ["hunterUiOrigin"],
            },
        }
    }
    assert bicep("main.bicep")["parameters"]["hunterUiOrigin"]["default"] == ""
    assert module_params("api")["hunterUiOrigin"] == "hunterUiOrigin"
    assert "'*'" not in (INFRA / "app" / "api.bicep").read_text(encoding="utf-8"), "no wildcard origin"


def alert_rules() -> dict[str, dict[str, Any]]:
    return resources("app/alerts.bicep", "Microsoft.Insights/scheduledQueryRules")


def alert_query(rule: str) -> str:
    alerts = bicep("app/alerts.bicep")["variables"]
    query = body(alert_rules()[rule])["properties"]["criteria"]["allOf"][0]["query"]
    value = alerts[query]["value"]
    if isinstance(value, dict):  # replace(template, placeholder, poisonQueueName or queueName)
        arguments = function(value, "replace")
        placeholder = {"poisonQueueName": "<poison>", "queueName": "<push>"}[arguments["new_string"]]
        return cast(str, alerts[arguments["original_string"]]["value"]).replace(arguments["old_string"], placeholder)
    return cast(str, value)


def test_alerts_watch_failed_pushes_and_the_poison_backlog() -> None:
    rules = alert_rules()
    assert set(rules) == {
        "failedPushesAlert",
        "poisonBacklogAlert",
        "gaugeSilentAlert",
        "pushBacklogAlert",
        "failedInvocationsAlert",
    }
    for rule in rules.values():
        assert body(rule)["kind"] == "LogAlert"
        properties = body(rule)["properties"]
        assert properties["enabled"] is True
        assert [accessor(scope) for scope in properties["scopes"]] == [["applicationInsights", "id"]]
    failed = alert_query("failedPushesAlert")
    assert '"d365_push_failed"' in failed
    backlog = alert_query("poisonBacklogAlert")
    for needle in ("customMetrics", '"d365_queue_depth"', 'customDimensions.queue) == "<poison>"'):
        assert needle in backlog, needle
    assert module_params("alerts")["poisonQueueName"] == "poisonQueueName"
    criteria = body(rules["failedPushesAlert"])["properties"]["criteria"]["allOf"][0]
    assert criteria["threshold"] == "failedPushThreshold"
    criteria = body(rules["poisonBacklogAlert"])["properties"]["criteria"]["allOf"][0]
    assert (criteria["threshold"], criteria["metricMeasureColumn"]) == ("poisonBacklogThreshold", "depth")
    assert criteria["timeAggregation"] == "Maximum"
    properties = body(rules["poisonBacklogAlert"])["properties"]
    # The timer reads every 5 minutes (Bicep's default schedule): each window sees three readings.
    assert (properties["evaluationFrequency"], properties["windowSize"]) == ("PT5M", "PT15M")
    assert app_settings()["HUNTER_D365_QUEUE_DEPTH_SCHEDULE"] == "queueDepthSchedule"
    assert bicep("main.bicep")["parameters"]["queueDepthSchedule"]["default"] == "0 */5 * * * *"


def workbook() -> dict[str, Any]:
    return cast(dict[str, Any], json.loads((INFRA / "workbook.json").read_text(encoding="utf-8")))


def workbook_queries() -> dict[str, str]:
    return {item["name"]: item["content"]["query"] for item in workbook()["items"] if item["type"] == 3}


def test_workbook_shows_outcomes_failures_throttling_and_latency() -> None:
    resource = body(the_resource("app/workbook.bicep", "Microsoft.Insights/workbooks"))
    assert resource["kind"] == "shared"
    assert accessor(resource["properties"]["sourceId"]) == ["applicationInsights", "id"]
    assert resource["properties"]["serializedData"] == "workbookContent"
    loaded = function(bicep("app/workbook.bicep")["variables"]["workbookTemplate"]["value"], "load_text_content")
    assert (INFRA / "app" / loaded["file_path"]).resolve() == INFRA / "workbook.json"
    assert workbook()["version"] == "Notebook/1.0"
    assert workbook()["fallbackResourceIds"] == ["__APPLICATION_INSIGHTS_ID__"]
    queries = workbook_queries()
    wanted = {
        "pushes-by-outcome": ["d365_lead_created", "d365_lead_already_exists", "d365_push_failed"],
        "failures-recent": ["d365_push_failed", "customDimensions.reason", "customDimensions.error_code"],
        "rate-limited": ["d365_rate_limited", "customDimensions.retry_after"],
        "retries": ["d365_push_retry_scheduled", "customDimensions.delay_seconds"],
        "push-latency": ["customDimensions.latency_ms"],
        "dataverse-dependencies": ["dependencies", "/api/data/"],
        "poison-flow": ["d365_poison_replayed", "'__POISON_QUEUE__'"],
        "queue-depth": ["customMetrics", '"d365_queue_depth"', "customDimensions.queue"],
    }
    for name, needles in wanted.items():
        for needle in needles:
            assert needle in queries[name], f"workbook query {name} lacks {needle}"


def test_alert_and_workbook_queries_use_events_and_fields_the_app_logs() -> None:
    texts = [alert_query("failedPushesAlert"), alert_query("poisonBacklogAlert"), *workbook_queries().values()]
    known = code_strings()
    for text in texts:
        for event in re.findall(r'"(d365_[a-z_]+)"', text):
            assert event in known, f"no event {event} in shared/"
        for field in re.findall(r"customDimensions\.([A-Za-z_]+)", text):
            assert field in known, f"no log field {field} in shared/"


def test_azure_yaml_deploys_this_folder_as_the_tagged_python_function_app() -> None:
    project = yaml.safe_load((ROOT / "azure.yaml").read_text(encoding="utf-8"))
    assert project["services"] == {"api": {"project": ".", "language": "python", "host": "function"}}
    assert project["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    tags = function(site()["tags"], "union")
    assert tags["arg_2"] == {"'azd-service-name'": "api"}
    assert bicep("main.bicep")["outputs"]["SERVICE_API_NAME"]


def test_parameters_file_fills_every_required_parameter_with_the_bicep_defaults() -> None:
    params = bicep("main.bicep")["parameters"]
    values = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert set(values) <= set(params), set(values) - set(params)
    required = {name for name, spec in params.items() if "default" not in spec}
    assert required <= set(values), f"azd would have nothing for {required - set(values)}"
    for name, entry in values.items():
        match = re.fullmatch(r"\$\{([A-Z0-9_]+)(?:=([^}]*))?\}", entry["value"])
        assert match, f"{name}: expected ${{AZD_VARIABLE}} or ${{AZD_VARIABLE=default}}"
        if match.group(2) is not None:
            default = params[name]["default"]
            expected = str(default).lower() if isinstance(default, bool) else str(default)
            assert match.group(2) == expected, f"{name}: main.parameters.json says {match.group(2)}, Bicep {expected}"


def test_every_parameter_is_described_and_documented() -> None:
    deploy = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    for name, spec in bicep("main.bicep")["parameters"].items():
        assert decorator(spec, "description"), f"main.bicep parameter {name} has no @description"
        assert f"`{name}`" in deploy, f"docs/deploy.md does not document {name}"
    for entry in json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"].values():
        variable = re.sub(r"[${}]|=.*", "", entry["value"])
        assert f"`{variable}`" in deploy, f"docs/deploy.md does not name the azd variable {variable}"


def test_every_checkov_skip_is_explained_here_and_in_the_docs() -> None:
    deploy = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    skips = []
    for relative in bicep_files():
        for line in (INFRA / relative).read_text(encoding="utf-8").splitlines():
            match = re.search(r"checkov:skip=([A-Z0-9_]+)(?::(.*))?", line)
            if match:
                skips.append((relative, match.group(1), (match.group(2) or "").strip()))
    assert skips
    for relative, check, reason in skips:
        assert len(reason) >= 30, f"{relative}: skip of {check} needs a real reason"
        assert f"`{check}`" in deploy, f"docs/deploy.md does not list the skip of {check}"


# --- go-live: the operators' other alarms, the audit trail, Entra ID as code ----------------------


def test_alerts_watch_the_gauge_going_silent_the_push_backlog_and_failed_invocations() -> None:
    rules = alert_rules()
    silent = body(rules["gaugeSilentAlert"])["properties"]
    criteria = silent["criteria"]["allOf"][0]
    # "Table rows" below 1: fires on an empty result, the only way a log alert sees "no data".
    assert (criteria["timeAggregation"], criteria["operator"], criteria["threshold"]) == ("Count", "LessThan", 1)
    assert "metricMeasureColumn" not in criteria and silent["windowSize"] == "gaugeSilentWindow"
    assert '"d365_queue_depth"' in alert_query("gaugeSilentAlert")
    backlog = body(rules["pushBacklogAlert"])["properties"]
    criteria = backlog["criteria"]["allOf"][0]
    assert (criteria["timeAggregation"], criteria["metricMeasureColumn"]) == ("Minimum", "lowest")
    assert (criteria["operator"], criteria["threshold"]) == ("GreaterThan", 0)
    assert backlog["windowSize"] == "pushBacklogWindow"
    assert 'customDimensions.queue) == "<push>"' in alert_query("pushBacklogAlert")
    assert "lowest = valueMin" in alert_query("pushBacklogAlert")
    failed = body(rules["failedInvocationsAlert"])["properties"]["criteria"]["allOf"][0]
    assert failed["threshold"] == "failedInvocationThreshold" and failed["metricMeasureColumn"] == "failures"
    query = alert_query("failedInvocationsAlert")
    assert "requests | where success == false" in query and "exceptions" in query
    alerts = module_params("alerts")
    assert alerts["queueName"] == "queueName" and alerts["alertWebhookUrl"] == "alertWebhookUrl"
    assert alerts["pushBacklogWindow"] == "pushBacklogAlertWindow"
    assert alerts["gaugeSilentWindow"] == "gaugeSilentAlertWindow"
    assert alerts["failedInvocationThreshold"] == "failedInvocationAlertThreshold"
    params = bicep("main.bicep")["parameters"]
    assert params["gaugeSilentAlertWindow"]["default"] == "PT30M"  # six missed readings at every 5 minutes
    assert params["failedInvocationAlertThreshold"]["default"] >= 1


def test_action_group_takes_a_webhook_beside_e_mail_and_keeps_it_secret() -> None:
    [group] = resources("app/alerts.bicep", "Microsoft.Insights/actionGroups").values()
    assert condition(group) == "hasReceiver"
    properties = body(group)["properties"]
    assert "emailReceivers" in properties and "webhookReceivers" in properties
    variables = bicep("app/alerts.bicep")["variables"]
    assert variables["hasReceiver"]["value"]["operator"]["type"] == "or"
    for relative, name in (("main.bicep", "alertWebhookUrl"), ("app/alerts.bicep", "alertWebhookUrl")):
        spec = bicep(relative)["parameters"][name]
        assert any(item["type"] == "secure" for item in spec.get("decorators", [])), f"{relative}: {name} not @secure()"
        assert spec["default"] == ""
    text = (INFRA / "app" / "alerts.bicep").read_text(encoding="utf-8")
    assert "actionGroups: hasEmail" not in text, "every alert reaches the webhook too"


def test_diagnostic_settings_send_the_audit_trail_to_log_analytics() -> None:
    settings = resources("app/diagnostics.bicep", "Microsoft.Insights/diagnosticSettings")
    categories = {
        name: ({log["category"] for log in _logs(body(r)["properties"]["logs"])}, body(r)["scope"])
        for name, r in settings.items()
    }
    assert categories["vaultAudit"] == ({"AuditEvent"}, "vault")
    assert categories["functionAppLogs"] == ({"FunctionAppLogs"}, "site")
    for service in ("blob", "queue", "table"):
        assert categories[f"{service}Logs"] == ({"StorageRead", "StorageWrite", "StorageDelete"}, f"{service}Service")
    for resource in settings.values():
        assert body(resource)["properties"]["workspaceId"] == "workspaceId"
    assert accessor(module_params("diagnostics")["workspaceId"]) == ["monitoring", "outputs", "logAnalyticsId"]


def _logs(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, str):  # a variable (the storage services share one list)
        return cast(list[dict[str, Any]], bicep("app/diagnostics.bicep")["variables"][node]["value"])
    return cast(list[dict[str, Any]], node)


def test_instances_get_512_mb() -> None:
    for relative in ("main.bicep", "app/api.bicep"):
        assert bicep(relative)["parameters"]["instanceMemoryMB"]["default"] == 512


def test_entra_registrations_give_the_api_v2_tokens_and_the_roles_the_app_checks() -> None:
    principal = pytest.importorskip("shared.principal")
    graph = {
        name: (resource["type"], body(resource)) for name, resource in bicep("app/entra.bicep")["resources"].items()
    }
    api_type, api = graph["apiApp"]
    assert api_type == "Microsoft.Graph/applications" and api["signInAudience"] == "AzureADMyOrg"
    assert api["api"]["requestedAccessTokenVersion"] == 2  # v2 issuer: what authsettingsV2 trusts
    assert {role["value"] for role in api["appRoles"]} == {principal.READ, principal.PUSH, principal.REPLAY}
    assert [role["id"] for role in api["appRoles"]] == ["readRoleId", "pushRoleId", "replayRoleId"]
    [scope] = api["api"]["oauth2PermissionScopes"]
    assert (scope["id"], scope["value"], scope["type"]) == ("scopeId", "scopeValue", "User")
    _, spa = graph["spaApp"]
    [access] = spa["requiredResourceAccess"]
    assert access["resourceAccess"] == [{"id": "scopeId", "type": "Scope"}]
    _, backend = graph["backendApp"]
    assert backend["requiredResourceAccess"][0]["resourceAccess"] == [{"id": "pushRoleId", "type": "Role"}]
    assign_type, assignment = graph["backendPush"]
    assert assign_type == "Microsoft.Graph/appRoleAssignedTo"
    assert (assignment["appRoleId"], accessor(assignment["resourceId"])) == (
        "pushRoleId",
        ["apiServicePrincipal", "id"],
    )
    assert {name for name, (kind, _) in graph.items() if kind == "Microsoft.Graph/servicePrincipals"} == {
        "apiServicePrincipal",
        "spaServicePrincipal",
        "backendServicePrincipal",
    }
    assert condition(bicep("app/entra.bicep")["resources"]["spaConsent"]) == "grantSpaConsent"
    text = (INFRA / "app" / "entra.bicep").read_text(encoding="utf-8")
    assert re.search(r"(?m)^extension microsoftGraphV1$", text)


def test_registrations_are_created_unless_brought_and_allowed_clients_are_never_empty() -> None:
    main = bicep("main.bicep")
    assert condition(main["modules"]["entra"]) == "createAppRegistrations"
    assert main["parameters"]["createAppRegistrations"]["default"] is True
    assert main["parameters"]["apiClientId"]["default"] == ""  # needed only to bring your own
    api = module_params("api")
    assert (api["apiClientId"], api["allowedClientApplications"]) == ("effectiveApiClientId", "effectiveAllowedClients")
    variables = main["variables"]
    clients = function(variables["effectiveAllowedClients"]["value"], "union")
    assert set(clients.values()) == {"allowedClientApplications", "createdClients"}
    created = variables["createdClients"]["value"]["operator"]["operands"]["true_value"]
    assert [accessor(item) for item in created] == [
        ["entra", "outputs", "spaClientId"],
        ["entra", "outputs", "backendClientId"],
    ]
    # App Service Authentication reads [] as "any client in the tenant": the deployment refuses it.
    allowed = bicep("app/api.bicep")["parameters"]["allowedClientApplications"]
    assert decorator(allowed, "min_length") == 1 and allowed.get("default") is None
    outputs = main["outputs"]
    for name in ("HUNTER_API_CLIENT_ID", "HUNTER_CONNECT_APPLICATION_ID", "HUNTER_D365_BASE_URL"):
        assert name in outputs, name


def test_azd_prints_or_runs_the_one_connect_command_after_provisioning() -> None:
    project = yaml.safe_load((ROOT / "azure.yaml").read_text(encoding="utf-8"))
    hook = project["hooks"]["postprovision"]["posix"]
    script = ROOT / hook["run"]
    assert script.exists() and script.stat().st_mode & 0o111, f"{hook['run']} must exist and be executable"
    text = script.read_text(encoding="utf-8")
    assert "python -m shared.connect" in text and "--dry-run" in text
    outputs = bicep("main.bicep")["outputs"]
    for variable in re.findall(r"\$\{(HUNTER_[A-Z_]+):-", text):
        if variable != "HUNTER_CONNECT_ON_PROVISION":
            assert variable in outputs, f"the hook reads {variable}, which no Bicep output sets"

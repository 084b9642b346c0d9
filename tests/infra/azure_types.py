"""Every resource in infra/ checked against Azure's own type definitions, offline.

Azure publishes, for every resource provider and API version, what a resource body may contain:
the generated `types.json` files of Azure/bicep-types-az (the same definitions the Bicep compiler
checks against). The few files this deployment needs are committed under `tests/infra/types/`, with
the commit they came from (`tests/infra/types/README.md`), so the check needs no network.

For every `resource` in every `.bicep` file under the folder it is given, this module checks:

- the type exists at that API version (`existing` resources too), naming the versions that do exist;
- every property written, nested objects and arrays included: unknown names, wrong case, read-only
  properties (ARM ignores or refuses them), required properties that are missing;
- literal values: closed enums (a union of string literals), string patterns and lengths, integer
  bounds, booleans; a parameter is checked through its `@allowed`, `@minValue` and `@maxValue`;
  both branches of `a ? b : c`; `union(...)` and variables are followed to their literal parts;
- every `resource.properties.x.y` the templates read (outputs, settings) names a readable property.

pycep-parser (the parser checkov pins) gives string literals and symbol references both as Python
strings; a string that names a parameter, variable, resource, module or loop item of the file is
treated as a reference, anything else as a literal.

`#disable-next-line BCP037 <reason>` on the line before a property (Bicep's own directive for "this
property is not in the type definition") accepts that one property, and only with a reason, for
the known gaps in the definitions.

Run: `.venv-infra/bin/python tests/infra/azure_types.py infra` (exit 1 on any finding). The tests in
`test_azure_types.py` run it on the real templates and on mutated copies.
"""

from __future__ import annotations

import copy
import importlib
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TYPES_DIR = Path(__file__).resolve().parent / "types"
# Microsoft Graph resources (Entra ID applications, service principals, app role assignments,
# permission grants) come from the Graph Bicep extension, whose generated types.json
# (microsoftgraph/msgraph-bicep-types) is pinned beside Azure's under types/microsoftgraph. A file
# that declares one must import the extension by the alias that infra/bicepconfig.json maps to
# exactly the pinned version, or the types checked here are not the ones Bicep would use.
GRAPH_NAMESPACE = "microsoft.graph/"
GRAPH_EXTENSION_ALIAS = "microsoftGraphV1"
GRAPH_EXTENSION = "br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:1.0.0"
# `extension <alias>` declares a Bicep extension; pycep-parser 0.5.1 (checkov's pin) predates the
# keyword, so the line is blanked before parsing (line numbers stay) and checked here instead.
EXTENSION_LINE = re.compile(r"(?m)^extension[ \t]+(\S+)[^\n]*$")

# bicep-types TypePropertyFlags (Azure/bicep-types src/bicep-types/src/types.ts).
REQUIRED = 1
READ_ONLY = 2
WRITE_ONLY = 4

# What Bicep itself handles on a resource declaration; never part of the ARM body.
BICEP_RESOURCE_KEYWORDS = {"parent", "scope", "dependsOn"}

INTERPOLATION = re.compile(r"\$\{([^}]*)\}")
PROPERTY_PATH = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


@dataclass(frozen=True)
class Finding:
    """One thing Azure would refuse or silently ignore."""

    file: str
    resource: str
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.resource}.{self.path}" if self.path else self.resource
        return f"{self.file}: {where}: {self.message}"


@dataclass(frozen=True)
class TypeRef:
    """One node in one types.json file."""

    nodes: tuple[dict[str, Any], ...]
    index: int

    @property
    def node(self) -> dict[str, Any]:
        return self.nodes[self.index]

    def follow(self, ref: dict[str, Any]) -> TypeRef:
        return TypeRef(self.nodes, int(ref["$ref"].rsplit("/", 1)[1]))

    def describe(self) -> str:
        node = self.node
        kind = node["$type"]
        if kind == "StringLiteralType":
            return repr(node["value"])
        if kind == "UnionType":
            return " | ".join(self.follow(element).describe() for element in node["elements"])
        return str(node.get("name") or kind.removesuffix("Type").lower())


class TypeLibrary:
    """The committed types.json files, indexed by resource type and API version."""

    def __init__(self, root: Path = TYPES_DIR) -> None:
        self.resources: dict[tuple[str, str], TypeRef] = {}
        self.names: dict[str, str] = {}
        for path in sorted(root.rglob("types.json")):
            nodes = tuple(json.loads(path.read_text(encoding="utf-8")))
            for index, node in enumerate(nodes):
                if node.get("$type") == "ResourceType":
                    name, version = node["name"].rsplit("@", 1)
                    self.resources[(name.lower(), version)] = TypeRef(nodes, index)
                    self.names[name.lower()] = name
        manifest = json.loads((root / "api-versions.json").read_text(encoding="utf-8"))
        self.versions: dict[str, list[str]] = {
            name.lower(): versions for name, versions in manifest.items() if not name.startswith("_")
        }
        self.names.update({name.lower(): name for name in manifest if not name.startswith("_")})

    def body(self, resource_type: str, version: str) -> TypeRef | None:
        found = self.resources.get((resource_type.lower(), version))
        return found.follow(found.node["body"]) if found else None

    def why_missing(self, resource_type: str, version: str) -> str:
        known = self.versions.get(resource_type.lower())
        if known is None:
            return f"no type definition for {resource_type}: not a resource type this check knows (tests/infra/types/api-versions.json)"
        if version not in known:
            return f"{resource_type} has no API version {version}; Azure defines {', '.join(known[-6:])} (newest last)"
        return (
            f"{resource_type}@{version} exists in Azure/bicep-types-az but its types.json is not committed "
            "under tests/infra/types (see the README there)"
        )


# --- the Bicep side ----------------------------------------------------------------------------


def parse_bicep(path: Path) -> dict[str, Any]:
    """One Bicep file as pycep-parser reads it (the version checkov pins). Parsing is slow, and the
    mutation tests check many copies that differ in one file, so parses are kept by content."""
    text = path.read_text(encoding="utf-8")
    if text not in _PARSED:
        pycep = importlib.import_module("pycep")
        _PARSED[text] = pycep.BicepParser().parse(text=pycep_text(text))
    return copy.deepcopy(_PARSED[text])


def pycep_text(text: str) -> str:
    """A Bicep file's text as pycep-parser 0.5.1 can read it: `extension` lines blanked."""
    return EXTENSION_LINE.sub("", text)


def extensions(text: str) -> list[str]:
    """The aliases a Bicep file's `extension` lines import."""
    return EXTENSION_LINE.findall(text)


_PARSED: dict[str, dict[str, Any]] = {}


@dataclass
class BicepFile:
    path: Path
    label: str
    parsed: dict[str, Any]
    loop_items: set[str] = field(default_factory=set)

    @property
    def parameters(self) -> dict[str, Any]:
        return dict(self.parsed.get("parameters") or {})

    @property
    def variables(self) -> dict[str, Any]:
        return dict(self.parsed.get("variables") or {})

    @property
    def resources(self) -> dict[str, Any]:
        return dict(self.parsed.get("resources") or {})

    def symbols(self) -> set[str]:
        names = set(self.parameters) | set(self.variables) | set(self.resources)
        names |= set(self.parsed.get("modules") or {})
        return names | self.loop_items

    def disabled(self, code: str) -> dict[str, str]:
        """Property name -> reason, for each `#disable-next-line <code> reason` before `name: ...`."""
        directive = re.compile(rf"#disable-next-line\s+{code}\b(.*)")
        found: dict[str, str] = {}
        lines = self.path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines[:-1]):
            match = directive.search(line)
            target = re.match(r"\s*'?([A-Za-z_][A-Za-z0-9_]*)'?\s*:", lines[number + 1])
            if match and target:
                found[target.group(1)] = match.group(1).strip()
        return found


def unwrap(config: dict[str, Any], bicep: BicepFile) -> dict[str, Any]:
    """A resource body under any `if (...)` condition or `for` loop."""
    while "config" in config and ("condition" in config or "loop_type" in config):
        loop = config.get("loop_type")
        if loop:
            detail = loop.get("detail") or {}
            for key in ("item_name", "index_name"):
                if isinstance(detail.get(key), str):
                    bicep.loop_items.add(detail[key])
        config = config["config"]
    return config


def operator_of(node: Any) -> dict[str, Any] | None:
    """pycep's `{"operator": {"type": ..., "operands": ...}}`; None for anything else (a property
    that happens to be called `operator`, say)."""
    if isinstance(node, dict) and len(node) == 1 and isinstance(node.get("operator"), dict):
        inner: dict[str, Any] = node["operator"]
        if "type" in inner and "operands" in inner:
            return inner
    return None


def function_of(node: Any) -> dict[str, Any] | None:
    """pycep's `{"function": {"type": ..., "parameters": ...}}`; None for anything else."""
    if isinstance(node, dict) and len(node) == 1 and isinstance(node.get("function"), dict):
        inner: dict[str, Any] = node["function"]
        if "type" in inner:
            return inner
    return None


def decorator(spec: dict[str, Any], kind: str) -> Any:
    for item in spec.get("decorators") or []:
        if item.get("type") == kind:
            return item.get("argument")
    return None


class Checker:
    """Checks the Bicep files under one folder against a TypeLibrary."""

    def __init__(self, library: TypeLibrary) -> None:
        self.library = library
        self.findings: list[Finding] = []
        self.open_enum_allowed: dict[str, str] = {}

    # -- entry points --

    def check_folder(self, folder: Path) -> list[Finding]:
        for path in sorted(folder.rglob("*.bicep")):
            bicep = BicepFile(path, str(path.relative_to(folder.parent)), parse_bicep(path))
            self.check_file(bicep)
            self.check_graph_extension(bicep, folder)
        return self.findings

    def check_graph_extension(self, bicep: BicepFile, folder: Path) -> None:
        """A file with Microsoft.Graph resources imports the Graph extension by the alias
        bicepconfig.json maps to the pinned version (GRAPH_EXTENSION)."""
        graph = [n for n, r in bicep.resources.items() if str(r["type"]).lower().startswith(GRAPH_NAMESPACE)]
        if not graph:
            return
        if GRAPH_EXTENSION_ALIAS not in extensions(bicep.path.read_text(encoding="utf-8")):
            self.report(bicep, graph[0], "", f"Microsoft.Graph resources need `extension {GRAPH_EXTENSION_ALIAS}`")
            return
        config = folder / "bicepconfig.json"
        mapped = json.loads(config.read_text(encoding="utf-8")).get("extensions", {}) if config.exists() else {}
        if mapped.get(GRAPH_EXTENSION_ALIAS) != GRAPH_EXTENSION:
            self.report(
                bicep,
                graph[0],
                "",
                f"bicepconfig.json maps {GRAPH_EXTENSION_ALIAS} to {mapped.get(GRAPH_EXTENSION_ALIAS)!r}, "
                f"not {GRAPH_EXTENSION!r}, the version whose types are pinned under tests/infra/types/microsoftgraph",
            )

    def check_file(self, bicep: BicepFile) -> None:
        bodies = {name: unwrap(resource["config"], bicep) for name, resource in bicep.resources.items()}
        # BCP037: "the property is not allowed" (not in the definitions); BCP036: "the value is not
        # of the expected type" (here: a value an open enum does not list). Bicep's own codes.
        allowed = bicep.disabled("BCP037")
        self.open_enum_allowed = bicep.disabled("BCP036")
        for property_name, reason in {**allowed, **self.open_enum_allowed}.items():
            if len(reason) < 20:
                self.report(bicep, "(directive)", property_name, "#disable-next-line needs a reason after the code")
        declared: dict[str, TypeRef] = {}
        for name, resource in bicep.resources.items():
            type_name, version = resource["type"], resource["api_version"]
            body_type = self.library.body(type_name, version)
            if body_type is None:
                self.report(bicep, name, "", self.library.why_missing(type_name, version))
                continue
            declared[name] = body_type
            if resource.get("existing"):
                continue
            self.check_resource_body(bicep, name, bodies[name], body_type, allowed)
        self.check_reads(bicep, declared)

    # -- resource bodies --

    def check_resource_body(
        self, bicep: BicepFile, name: str, body: dict[str, Any], body_type: TypeRef, allowed: dict[str, str]
    ) -> None:
        arm_body = {key: value for key, value in body.items() if key not in BICEP_RESOURCE_KEYWORDS}
        self.check_value(bicep, name, "", arm_body, body_type, allowed, top=True)

    def check_value(
        self,
        bicep: BicepFile,
        resource: str,
        path: str,
        value: Any,
        expected: TypeRef,
        allowed: dict[str, str],
        top: bool = False,
    ) -> None:
        for literal in self.literal_forms(bicep, value):
            self.check_literal(bicep, resource, path, literal, expected, allowed, top)

    def literal_forms(self, bicep: BicepFile, value: Any, depth: int = 0) -> Iterator[Any]:
        """The literal values an expression can take, as far as they can be known offline.

        Yields a `Reference` for what cannot be resolved further (a parameter, a function result)."""
        if depth > 20:
            yield Reference("(too deep)")
            return
        if isinstance(value, str):
            if value in bicep.variables:
                yield from self.literal_forms(bicep, bicep.variables[value].get("value"), depth + 1)
            elif value in bicep.parameters:
                yield Reference(value, bicep.parameters[value])
            elif value in bicep.symbols():
                yield Reference(value)
            elif INTERPOLATION.search(value):
                yield Reference(value, interpolated=True)
            else:
                yield value
            return
        operator = operator_of(value)
        if operator is not None:
            if operator["type"] == "conditional":
                operands = operator["operands"]
                yield from self.literal_forms(bicep, operands["true_value"], depth + 1)
                yield from self.literal_forms(bicep, operands["false_value"], depth + 1)
                return
            yield Reference(operator["type"])
            return
        function = function_of(value)
        if function is not None:
            if function["type"] == "union":
                parts = [list(self.literal_forms(bicep, part, depth + 1)) for part in function["parameters"].values()]
                if all(all(isinstance(form, dict) for form in forms) for forms in parts):
                    merged: dict[str, Any] = {}
                    for forms in parts:
                        for form in forms:
                            merged.update(form)
                    yield merged
                    return
            yield Reference(f"{function.get('type')}()", function=function.get("type"))
            return
        yield value

    def check_literal(
        self,
        bicep: BicepFile,
        resource: str,
        path: str,
        value: Any,
        expected: TypeRef,
        allowed: dict[str, str],
        top: bool = False,
    ) -> None:
        node = expected.node
        kind = node["$type"]
        if value is None or kind == "AnyType":
            return  # null means "not set" to ARM
        if isinstance(value, Reference):
            self.check_reference(bicep, resource, path, value, expected)
            return
        if kind == "ObjectType":
            self.check_object(bicep, resource, path, value, expected, allowed, top)
        elif kind == "DiscriminatedObjectType":
            self.check_discriminated(bicep, resource, path, value, expected, allowed, top)
        elif kind == "ArrayType":
            self.check_array(bicep, resource, path, value, expected, allowed)
        elif kind in ("StringLiteralType", "UnionType"):
            self.check_enum(bicep, resource, path, value, expected)
        elif kind == "StringType":
            self.check_string(bicep, resource, path, value, node)
        elif kind == "IntegerType":
            self.check_integer(bicep, resource, path, value, node)
        elif kind == "BooleanType" and not isinstance(value, bool):
            self.report(bicep, resource, path, f"expects a bool, got {value!r}")

    def check_object(
        self,
        bicep: BicepFile,
        resource: str,
        path: str,
        value: Any,
        expected: TypeRef,
        allowed: dict[str, str],
        top: bool,
        extra: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(value, dict) or function_of(value) or operator_of(value):
            self.report(bicep, resource, path, f"expects an object ({expected.describe()}), got {value!r}")
            return
        node = expected.node
        properties: dict[str, Any] = {**(extra or {}), **(node.get("properties") or {})}
        additional = node.get("additionalProperties")
        by_lower = {name.lower(): name for name in properties}
        for raw_key, item in value.items():
            key = raw_key.strip("'")
            where = f"{path}.{key}" if path else key
            if INTERPOLATION.search(key):
                if additional:
                    self.check_value(bicep, resource, where, item, expected.follow(additional), allowed)
                continue
            spec = properties.get(key)
            if spec is None and key.lower() in by_lower:
                self.report(bicep, resource, where, f"wrong case: Azure calls it {by_lower[key.lower()]}")
                continue
            if spec is None:
                if additional:
                    self.check_value(bicep, resource, where, item, expected.follow(additional), allowed)
                elif key in allowed:
                    continue  # #disable-next-line BCP037 with a reason: a known gap in the definitions
                else:
                    known = ", ".join(sorted(name for name, s in properties.items() if not s["flags"] & READ_ONLY))
                    self.report(bicep, resource, where, f"unknown property of {expected.describe()}; writable: {known}")
                continue
            flags = spec.get("flags", 0)
            if flags & READ_ONLY and not flags & REQUIRED:
                self.report(bicep, resource, where, "read-only property: Azure sets it, a template cannot")
                continue
            self.check_value(bicep, resource, where, item, expected.follow(spec["type"]), allowed)
        for key, spec in properties.items():
            flags = spec.get("flags", 0)
            if flags & REQUIRED and not flags & READ_ONLY and key not in {k.strip("'") for k in value}:
                self.report(bicep, resource, f"{path}.{key}" if path else key, "required property missing")

    def check_discriminated(
        self,
        bicep: BicepFile,
        resource: str,
        path: str,
        value: Any,
        expected: TypeRef,
        allowed: dict[str, str],
        top: bool,
    ) -> None:
        node = expected.node
        discriminator = node["discriminator"]
        base = node.get("baseProperties") or {}
        chosen = value.get(discriminator) if isinstance(value, dict) else None
        elements = node["elements"]
        if isinstance(chosen, str) and chosen in elements:
            self.check_object(bicep, resource, path, value, expected.follow(elements[chosen]), allowed, top, base)
            return
        forms = list(self.literal_forms(bicep, chosen))
        literal = [form for form in forms if isinstance(form, str)]
        if literal and not any(isinstance(form, Reference) for form in forms):
            self.report(
                bicep,
                resource,
                f"{path}.{discriminator}" if path else discriminator,
                f"{literal[0]!r} is not one of {', '.join(sorted(elements))}",
            )
            return
        # Not decidable offline: accept any property that some variant allows.
        merged: dict[str, Any] = dict(base)
        for element in elements.values():
            merged.update(expected.follow(element).node.get("properties") or {})
        for key, item in (value or {}).items():
            if key.strip("'") not in merged and key.strip("'") not in allowed:
                self.report(bicep, resource, f"{path}.{key}" if path else key, "no variant of this type has it")
            del item

    def check_array(
        self, bicep: BicepFile, resource: str, path: str, value: Any, expected: TypeRef, allowed: dict[str, str]
    ) -> None:
        if not isinstance(value, list):
            self.report(bicep, resource, path, f"expects an array, got {value!r}")
            return
        node = expected.node
        if "minLength" in node and len(value) < node["minLength"]:
            self.report(bicep, resource, path, f"needs at least {node['minLength']} items")
        if "maxLength" in node and len(value) > node["maxLength"]:
            self.report(bicep, resource, path, f"allows at most {node['maxLength']} items")
        for number, item in enumerate(value):
            self.check_value(bicep, resource, f"{path}[{number}]", item, expected.follow(node["itemType"]), allowed)

    def enum_values(self, expected: TypeRef) -> tuple[set[str], bool]:
        """The string literals a type allows, and whether any other string is allowed too."""
        node = expected.node
        if node["$type"] == "StringLiteralType":
            return {node["value"]}, False
        if node["$type"] == "StringType":
            return set(), True
        if node["$type"] == "UnionType":
            values: set[str] = set()
            open_ = False
            for element in node["elements"]:
                more, more_open = self.enum_values(expected.follow(element))
                values |= more
                open_ = open_ or more_open
            return values, open_
        return set(), True  # a union with objects or numbers: not an enum this check decides

    def check_enum(self, bicep: BicepFile, resource: str, path: str, value: Any, expected: TypeRef) -> None:
        values, open_ = self.enum_values(expected)
        if open_ and not isinstance(value, str):
            self.report(bicep, resource, path, f"expects a string, got {value!r}")
            return
        if value in values or (open_ and not values):
            return
        # An open enum (the API accepts other strings too, "modelAsString") still lists the values it
        # knows; a value outside them is far more often a typo than a value newer than the
        # definitions. Comma-separated flag combinations ("AzureServices, Logging") are checked per part.
        if open_ and isinstance(value, str) and all(part.strip() in values for part in value.split(",")):
            return
        if open_ and path.rsplit(".", 1)[-1] in self.open_enum_allowed:
            return
        hint = next((v for v in values if isinstance(value, str) and v.lower() == value.lower()), None)
        kind = "known values" if open_ else "allowed values"
        message = f"{value!r} is not one of the {kind} {', '.join(sorted(repr(v) for v in values))}"
        self.report(bicep, resource, path, message + (f" (case: {hint!r})" if hint else ""))

    def check_string(self, bicep: BicepFile, resource: str, path: str, value: Any, node: dict[str, Any]) -> None:
        if not isinstance(value, str):
            self.report(bicep, resource, path, f"expects a string, got {value!r}")
            return
        if "minLength" in node and len(value) < node["minLength"]:
            self.report(bicep, resource, path, f"{value!r} is shorter than {node['minLength']}")
        if "maxLength" in node and len(value) > node["maxLength"]:
            self.report(bicep, resource, path, f"{value!r} is longer than {node['maxLength']}")
        if "pattern" in node and not re.search(node["pattern"], value):
            self.report(bicep, resource, path, f"{value!r} does not match {node['pattern']}")

    def check_integer(self, bicep: BicepFile, resource: str, path: str, value: Any, node: dict[str, Any]) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.report(bicep, resource, path, f"expects an integer, got {value!r}")
            return
        if "minValue" in node and value < node["minValue"]:
            self.report(bicep, resource, path, f"{value} is below the minimum {node['minValue']}")
        if "maxValue" in node and value > node["maxValue"]:
            self.report(bicep, resource, path, f"{value} is above the maximum {node['maxValue']}")

    def check_reference(self, bicep: BicepFile, resource: str, path: str, value: Reference, expected: TypeRef) -> None:
        """A parameter: its declared type, @allowed values and bounds must fit the property."""
        spec = value.parameter
        if spec is None:
            return
        kind = expected.node["$type"]
        declared = spec.get("type")
        wanted = {"IntegerType": "int", "BooleanType": "bool", "StringType": "string", "ArrayType": "array"}
        if kind in wanted and declared not in (wanted[kind], None):
            self.report(
                bicep, resource, path, f"parameter {value.name} is {declared}, the property wants {wanted[kind]}"
            )
            return
        for allowed_value in decorator(spec, "allowed") or []:
            self.check_literal(bicep, resource, path, allowed_value, expected, {})
        if kind == "IntegerType":
            low, high = decorator(spec, "min_value"), decorator(spec, "max_value")
            node = expected.node
            if "minValue" in node and (low is None or low < node["minValue"]):
                self.report(
                    bicep, resource, path, f"parameter {value.name} allows {low} below the minimum {node['minValue']}"
                )
            if "maxValue" in node and (high is None or high > node["maxValue"]):
                self.report(
                    bicep, resource, path, f"parameter {value.name} allows {high} above the maximum {node['maxValue']}"
                )
        if "default" in spec and spec["default"] is not None and not isinstance(spec["default"], dict):
            self.check_literal(bicep, resource, path, spec["default"], expected, {})

    # -- reads: resource.properties.x.y --

    def check_reads(self, bicep: BicepFile, declared: dict[str, TypeRef]) -> None:
        for read_path in sorted({tuple(found) for found in self.property_paths(bicep.parsed)}):
            path = list(read_path)
            head, *rest = path
            if head not in declared or not rest:
                continue
            current = declared[head]
            for position, key in enumerate(rest):
                node = current.node
                if node["$type"] == "DiscriminatedObjectType":
                    merged: dict[str, Any] = dict(node.get("baseProperties") or {})
                    for element in node["elements"].values():
                        merged.update(current.follow(element).node.get("properties") or {})
                    properties = merged
                elif node["$type"] == "ObjectType":
                    properties = node.get("properties") or {}
                    if key not in properties and node.get("additionalProperties"):
                        break
                else:
                    break
                spec = properties.get(key)
                if spec is None:
                    read = ".".join(path[: position + 2])
                    self.report(bicep, head, ".".join(rest[: position + 1]), f"{read}: no such property to read")
                    break
                if spec.get("flags", 0) & WRITE_ONLY:
                    self.report(bicep, head, ".".join(rest[: position + 1]), "write-only: Azure never returns it")
                    break
                current = current.follow(spec["type"])

    def property_paths(self, node: Any) -> Iterator[list[str]]:
        if isinstance(node, str):
            for expression in INTERPOLATION.findall(node):
                for match in PROPERTY_PATH.finditer(expression):
                    yield [match.group(1), *match.group(2).strip(".").split(".")]
            return
        if isinstance(node, list):
            for item in node:
                yield from self.property_paths(item)
            return
        if not isinstance(node, dict):
            return
        operator = operator_of(node)
        if operator is not None and operator["type"] == "property_accessor":
            path = accessor(node)
            if path:
                yield path
                return
        for item in node.values():
            yield from self.property_paths(item)

    def report(self, bicep: BicepFile, resource: str, path: str, message: str) -> None:
        self.findings.append(Finding(bicep.label, resource, path, message))


@dataclass(frozen=True)
class Reference:
    """A value only Azure knows at deployment time (a parameter, a function result, an interpolation)."""

    name: str
    parameter: dict[str, Any] | None = None
    interpolated: bool = False
    function: str | None = None


def accessor(node: Any) -> list[str] | None:
    """`a.b.c` as ["a", "b", "c"]; None if `node` is not a plain property access."""
    if isinstance(node, str):
        return [node] if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", node) else None
    operator = operator_of(node)
    if operator is None or operator["type"] != "property_accessor":
        return None
    head = accessor(operator["operands"]["operand_1"])
    tail = accessor(operator["operands"]["operand_2"])
    return head + tail if head is not None and tail is not None else None


def check(folder: Path, library: TypeLibrary | None = None) -> list[Finding]:
    """All findings for the Bicep files under `folder` (empty: Azure's types accept everything)."""
    return Checker(library or TypeLibrary()).check_folder(folder)


def main(argv: list[str]) -> int:
    folder = Path(argv[1] if len(argv) > 1 else "infra").resolve()
    library = TypeLibrary()
    findings = check(folder, library)
    for finding in findings:
        print(f"TYPE ERROR {finding}")
    files = len(list(folder.rglob("*.bicep")))
    status = "OK" if not findings else "FAIL"
    print(f"{status} {files} Bicep files, {len(findings)} findings against {len(library.resources)} resource types")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""Every KQL query the deployment ships, checked by Microsoft's Kusto language service, offline.

The queries: the log alert rules in `infra/app/alerts.bicep` (variables, with `replace(...)` applied
as Azure would) and the query tiles of `infra/workbook.json` (with the workbook's own placeholders
filled in: the poison queue's name, and `{TimeRange:grain}`, which the workbook replaces with a
bin size such as `1h`). All run against one Application Insights resource, so against the classic
resource-scoped tables (`traces`, `requests`, `dependencies`, ...), whose columns and types are in
`tests/infra/kql/appinsights-classic-schema.json`.

The check: `tests/infra/kql/check.js` runs `@kusto/language-service-next` (package.json) on Node:
parse plus semantic analysis — unknown tables, columns and functions, type errors, names that need
bracketing. Any diagnostic of severity Error fails.

Run: `python tests/infra/kql_queries.py infra` (exit 1 on any error; needs `node` and the npm
packages in `node_modules`, which `make setup` or `infra/check.sh` installs).
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
KQL_DIR = Path(__file__).resolve().parent / "kql"
SCHEMA = KQL_DIR / "appinsights-classic-schema.json"
CHECKER = KQL_DIR / "check.js"

# What the deployment substitutes for the placeholders (main.bicep: poisonQueueName).
POISON_QUEUE = "d365-lead-push-poison"
PUSH_QUEUE = "d365-lead-push"
# Workbook parameters as the workbook renders them; {TimeRange:grain} becomes a timespan literal.
WORKBOOK_PARAMETERS = {"{TimeRange:grain}": "1h"}


@dataclass(frozen=True)
class Query:
    id: str
    text: str


@dataclass(frozen=True)
class Diagnostic:
    query: str
    code: str
    severity: str
    line: int
    column: int
    message: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.query}:{self.line}:{self.column}: {self.code} {self.message}  >> {self.excerpt}"


def alert_queries(infra: Path) -> list[Query]:
    """The query of every scheduledQueryRules resource in alerts.bicep, as Azure receives it."""
    pycep = importlib.import_module("pycep")
    parsed: dict[str, Any] = pycep.BicepParser().parse(file_path=infra / "app" / "alerts.bicep")
    variables = parsed.get("variables") or {}
    queries = []
    for name, resource in (parsed.get("resources") or {}).items():
        if resource["type"] != "Microsoft.Insights/scheduledQueryRules":
            continue
        config = resource["config"]
        while "config" in config and ("condition" in config or "loop_type" in config):
            config = config["config"]
        for number, criterion in enumerate(config["properties"]["criteria"]["allOf"]):
            text = evaluate(criterion["query"], variables)
            queries.append(Query(f"alerts.bicep:{name}[{number}]", text))
    return queries


def evaluate(node: Any, variables: dict[str, Any]) -> str:
    """A query expression: a variable, a string, or replace(template, 'placeholder', queueName)."""
    if isinstance(node, str) and node in variables:
        return evaluate(variables[node]["value"], variables)
    if isinstance(node, str):
        return node
    function = node.get("function") if isinstance(node, dict) else None
    if function and function["type"] == "replace":
        arguments = function["parameters"]
        template = evaluate(arguments["original_string"], variables)
        queues = {"poisonQueueName": POISON_QUEUE, "queueName": PUSH_QUEUE}
        assert arguments["new_string"] in queues, f"unexpected replacement {arguments['new_string']!r}"
        return template.replace(arguments["old_string"], queues[arguments["new_string"]])
    raise AssertionError(f"cannot evaluate the query expression {node!r}")


def workbook_queries(infra: Path) -> list[Query]:
    """The query of every query tile (type 3) of workbook.json, as the workbook runs it."""
    workbook = json.loads((infra / "workbook.json").read_text(encoding="utf-8"))
    queries = []
    for item in workbook["items"]:
        if item.get("type") != 3:
            continue
        text = item["content"]["query"].replace("__POISON_QUEUE__", POISON_QUEUE)
        for parameter, value in WORKBOOK_PARAMETERS.items():
            text = text.replace(parameter, value)
        queries.append(Query(f"workbook.json:{item['name']}", text))
    return queries


def all_queries(infra: Path) -> list[Query]:
    return alert_queries(infra) + workbook_queries(infra)


def check(queries: list[Query], schema: Path = SCHEMA) -> list[Diagnostic]:
    """Errors the Kusto language service finds in `queries` (empty: all parse and bind).

    Raises RuntimeError if node or the npm package is missing, or the checker fails."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not on PATH (the KQL check runs Microsoft's Kusto language service on Node)")
    request = {"schema": str(schema), "queries": [{"id": query.id, "text": query.text} for query in queries]}
    completed = subprocess.run(
        [node, str(CHECKER)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"the KQL checker failed ({completed.returncode}): {completed.stderr.strip()[-2000:]}")
    texts = {query.id: query.text for query in queries}
    found = []
    for result in json.loads(completed.stdout)["results"]:
        text = texts[result["id"]]
        for item in result["diagnostics"]:
            if item["severity"] != "Error":
                continue
            found.append(diagnostic(result["id"], text, item))
    return found


def diagnostic(query: str, text: str, item: dict[str, Any]) -> Diagnostic:
    start = int(item["start"])
    line = text.count("\n", 0, start) + 1
    column = start - (text.rfind("\n", 0, start) + 1) + 1
    line_text = text.splitlines()[line - 1] if text.splitlines() else ""
    return Diagnostic(query, item["code"], item["severity"], line, column, item["message"], line_text.strip())


def main(argv: list[str]) -> int:
    infra = Path(argv[1] if len(argv) > 1 else "infra").resolve()
    queries = all_queries(infra)
    errors = check(queries)
    for error in errors:
        print(f"KQL ERROR {error}")
    names = ", ".join(sorted({re.sub(r"\[.*", "", query.id.split(":")[0]) for query in queries}))
    status = "OK" if not errors else "FAIL"
    print(f"{status} {len(queries)} queries ({names}), {len(errors)} errors")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

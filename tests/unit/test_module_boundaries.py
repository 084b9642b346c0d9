"""The codebase's shape (issue 19): no module imports another module's private names, the worker
goes straight to the engine, and delays are computed in `retry.py` only."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted([*(ROOT / "shared").rglob("*.py"), ROOT / "function_app.py", *(ROOT / "hunter_results").rglob("*.py")])


def test_no_module_imports_another_modules_private_names() -> None:
    offences = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("shared"):
                offences += [f"{path.name}: {alias.name}" for alias in node.names if alias.name.startswith("_")]
    assert not offences


def test_the_worker_dispatches_to_the_engine_and_only_retry_computes_backoff() -> None:
    worker = (ROOT / "shared" / "worker.py").read_text(encoding="utf-8")
    assert "from shared.engine import process_message" in worker
    assert not (ROOT / "shared" / "bulk.py").exists()
    for path in SOURCES:
        if path.name != "retry.py":
            text = path.read_text(encoding="utf-8")
            assert "2 **" not in text and "math.pow(2" not in text and "retry_after +" not in text, path.name

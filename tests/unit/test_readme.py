"""The README is a front page (STYLE: what it is, the two commands, a picture, where to read on),
and every command it shows is real and run somewhere: each `make` target it names exists, and a
test or `.ci/run` runs what that target runs. Its links lead to files, except the manuals other
work in issue 22 is writing (`PENDING`), which are only linked from here."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
# Linked from the README, written by other work of issue 22 (performance, design, local HTTPS).
PENDING = {"docs/performance.md", "docs/design.md", "docs/local-https.md"}
# Who runs each `make` target the README shows: (what the target's recipe runs, the file that runs
# it, the text in that file that does).
RUN_BY = {
    "run": ("-m devstack up", "tests/e2e/test_local_stack.py", '[sys.executable, "-m", "devstack", "up"]'),
    "demo": ("-m devstack.demo", "tests/e2e/test_local_stack.py", '[sys.executable, "-m", "devstack.demo"'),
    "test": ("-m pytest", ".ci/run", "\nmake test"),
    "clean": ("rm -rf .devstack", "tests/unit/test_readme.py", '["make", "clean"]'),
}


def commands() -> list[str]:
    """Every shell line in a fenced bash block and every inline `make …` span."""
    blocks = re.findall(r"```bash\n(.*?)```", README, re.DOTALL)
    lines = [line.split("#", 1)[0].strip() for block in blocks for line in block.splitlines()]
    inline = re.findall(r"`(make [a-z-]+[^`]*)`", README)
    return [line for line in [*lines, *inline] if line]


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.MULTILINE))


def test_the_readme_is_a_front_page() -> None:
    assert len(README.splitlines()) <= 150
    assert "](docs/badges.png)" in README
    assert "make run" in README and "make test" in README
    for manual in ("api", "consumer", "operations", "local-stack", "performance", "design", "local-https"):
        assert f"](docs/{manual}.md" in README, manual


def test_every_command_in_the_readme_is_a_make_target_that_something_runs() -> None:
    shown = commands()
    assert shown, "no commands found"
    targets = make_targets()
    for command in shown:
        words = command.split()
        assert words[0] == "make", f"not a make command: {command}"
        target = words[1]
        assert target in targets, f"`{command}`: no such make target"
        assert target in RUN_BY, f"`{command}`: no test or CI step runs it"
        recipe = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, timeout=60)
        runs, where, evidence = RUN_BY[target]
        assert runs in recipe.stdout, f"`make {target}` no longer runs {runs!r}:\n{recipe.stdout}"
        assert evidence in (ROOT / where).read_text(), f"{where} no longer runs `{command}`"


def test_ci_runs_make_test() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_make_clean_resets_the_state_directory(tmp_path: Path) -> None:
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / ".devstack" / "azurite").mkdir(parents=True)
    (tmp_path / ".devstack" / "simulator-leads.json").write_text("{}")
    subprocess.run(["make", "clean"], cwd=tmp_path, check=True, capture_output=True, timeout=60)
    assert not (tmp_path / ".devstack").exists()


def test_every_link_in_the_readme_leads_to_a_file() -> None:
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README)
    missing = {link for link in links if not link.startswith("http") and not (ROOT / link).exists()}
    assert missing <= PENDING, f"broken links: {missing - PENDING}"

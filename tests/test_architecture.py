"""The import rules of docs/architecture.md, checked against every import in `src/conveyor/`.

The table in the document is the source of truth: this test parses it, so changing a rule means
changing the document.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
SOURCE = ROOT / "src" / "conveyor"
DOCUMENT = ROOT / "docs" / "architecture.md"
ENTRY_MODULES = {"__init__": {"sdk"}, "__main__": {"cli"}}  # re-export and run; no logic


def allowed_imports() -> dict[str, set[str]]:
    """Package → the packages of Conveyor it may import, from the document's rules table."""
    text = DOCUMENT.read_text()
    section = text.split("## Packages and import rules", 1)[1].split("\n## ", 1)[0]
    rules: dict[str, set[str]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        rules[cells[0].strip("`")] = set(re.findall(r"`(\w+)`", cells[2]))
    return rules


def package_of(path: Path, source: Path = SOURCE) -> str:
    parts = path.relative_to(source).parts
    return parts[0] if len(parts) > 1 else path.stem


def broken_imports(source: Path, rules: dict[str, set[str]]) -> list[str]:
    """Every import under `source` of a Conveyor package that its package may not import."""
    return [
        f"{path.relative_to(source)}:{line}: {package} imports conveyor.{target}"
        for path in sorted(source.rglob("*.py"))
        for line, target in conveyor_imports(path)
        if target != (package := package_of(path, source)) and target not in rules.get(package, set())
    ]


def conveyor_imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported package) for every import of Conveyor in a file, inside functions too."""
    found = []
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                raise AssertionError(f"{path}:{node.lineno}: relative import; Conveyor's imports are absolute")
            names = [node.module or ""]
            if node.module == "conveyor":
                names = [f"conveyor.{alias.name}" for alias in node.names]
        else:
            continue
        found.extend((node.lineno, name.split(".")[1]) for name in names if name.startswith("conveyor."))
    return found


def test_the_document_has_a_rule_for_every_package() -> None:
    rules = allowed_imports()
    packages = {package_of(path) for path in SOURCE.rglob("*.py")} - set(ENTRY_MODULES)
    assert packages == set(rules), "docs/architecture.md must list exactly the packages under src/conveyor"
    for package, allowed in rules.items():
        assert allowed <= set(rules), f"{package} may import unknown packages: {allowed - set(rules)}"


def test_no_import_breaks_a_rule() -> None:
    assert broken_imports(SOURCE, {**allowed_imports(), **ENTRY_MODULES}) == []


@pytest.mark.parametrize(
    "source, expected",
    [
        ("import conveyor.engine.job\n", [(1, "engine")]),
        ("from conveyor.store import Store\n", [(1, "store")]),
        ("from conveyor import sdk\n", [(1, "sdk")]),
        ("def f():\n    from conveyor.api.app import build\n", [(2, "api")]),
        ("import os\nfrom orjson import dumps\n", []),
    ],
)
def test_every_form_of_import_is_seen(tmp_path: Path, source: str, expected: list[tuple[int, str]]) -> None:
    """The checker itself: an import it cannot see is an import it cannot forbid."""
    module = tmp_path / "module.py"
    module.write_text(source)
    assert conveyor_imports(module) == expected


def test_a_forbidden_import_is_reported(tmp_path: Path) -> None:
    (tmp_path / "pipeline").mkdir()
    (tmp_path / "pipeline" / "split.py").write_text("from conveyor.errors import ConveyorError\nfrom conveyor.store import Store\n")
    (tmp_path / "pipeline" / "join.py").write_text("def f():\n    import conveyor.api.app\n")
    assert broken_imports(tmp_path, allowed_imports()) == [
        "pipeline/join.py:2: pipeline imports conveyor.api",
        "pipeline/split.py:2: pipeline imports conveyor.store",
    ]

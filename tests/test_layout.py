"""The layout rules of docs/layout.md, checked on the source tree.

Which package may import which is what keeps each domain walkable on its own: SQL stays in
`store/`, collaboration needs no Temporal code, the API never runs activity code, and workflow
code reaches activities only by name (nothing of theirs enters the sandbox).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("activities", "agent", "collab", "files", "store", "vaporform", "web", "workflows")
OURS = {*PACKAGES, "worker"}
MAX_LINES = 400
# One concept that reads best whole, like text-unicode's 588-line type.
WHOLE = {"collab/ot.py"}

# package -> the project's packages it must never import
FORBIDDEN = {
    "store": OURS - {"store"},
    "collab": {"workflows", "activities", "web", "worker", "agent"},
    "files": {"web", "activities", "workflows", "collab", "worker", "agent"},
    "web": {"activities", "worker"},
    "workflows": {"activities", "web", "collab", "store", "files", "worker", "agent"},
    # The agent reads container names and labels (workflows/containers/names.py), nothing more.
    "agent": {"web", "activities", "worker"},
}


def modules() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def imported_packages(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.partition(".")[0])
    return found & OURS


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_only_what_its_layer_allows(package: str) -> None:
    wrong = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[package])
        for path in (ROOT / package).rglob("*.py")
    }
    assert {path: names for path, names in wrong.items() if names} == {}


def test_no_module_is_longer_than_the_limit() -> None:
    sources = [*modules(), ROOT / "worker.py"]
    long = {
        str(path.relative_to(ROOT)): count
        for path in sources
        if (count := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert {path: n for path, n in long.items() if path not in WHOLE} == {}


def test_the_rules_see_every_package() -> None:
    # A new top-level package must be added to PACKAGES (and to docs/layout.md) to be checked.
    found = {
        path.parent.name
        for path in ROOT.glob("*/__init__.py")
        if path.parent.name not in {"tests", "bench", "build"}
    }
    assert found == set(PACKAGES)

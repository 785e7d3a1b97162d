"""The dependency direction the README's Architecture section draws, checked.

Each top-level part of ``ezlink`` may import only the parts listed for it
(and itself); an import that runs back up the layers fails here, naming the
file and the import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import ezlink

PACKAGE = Path(ezlink.__file__).parent

# part → the parts it may import. Read top-down: the edge, then the core.
ALLOWED: dict[str, set[str]] = {
    "cli": {"app", "catalog", "api", "ops", "accounts", "engine", "upstreams", "backends"},
    "app": {"api", "catalog", "accounts", "engine", "ops"},
    "api": {"accounts", "engine", "upstreams", "ops"},
    "ops": {"engine", "upstreams"},
    "catalog": {"engine", "upstreams"},
    "upstreams": {"engine"},
    "engine": {"backends"},
    "accounts": set(),
    "backends": set(),
    "config": set(),
    "errors": set(),
}
# What every part may import: settings and the error hierarchy.
EVERYWHERE = {"config", "errors", "__init__"}


def part_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def ezlink_imports(path: Path) -> list[str]:
    """The top-level ezlink parts a module imports (module-level or not)."""
    parts = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            pieces = name.split(".")
            if pieces[0] == "ezlink" and len(pieces) > 1:
                parts.append(pieces[1])
    return parts


def test_every_part_is_in_the_table() -> None:
    parts = {part_of(path) for path in PACKAGE.rglob("*.py")}
    assert parts - {"__init__", "__main__"} <= set(ALLOWED), parts - set(ALLOWED)


def test_no_import_runs_up_the_layers() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        part = part_of(path)
        if part in ("__init__", "__main__"):
            continue
        for imported in ezlink_imports(path):
            if imported != part and imported not in ALLOWED[part] | EVERYWHERE:
                wrong.append(f"{path.relative_to(PACKAGE)} imports ezlink.{imported}")
    assert not wrong, "\n".join(wrong)


def test_no_module_is_over_400_lines() -> None:
    long = [
        f"{path.relative_to(PACKAGE)}: {lines}"
        for path in PACKAGE.rglob("*.py")
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > 400
    ]
    assert not long, long

"""The house's floors (shared DESIGN.md, docs/architecture.md): data flows one way, so a module imports
only from its own floor or those below it, at module level or inside a function alike."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "seqstruct"
ARCHITECTURE = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"

# Lowest first. A module's floor is that of its longest listed prefix.
FLOORS: list[tuple[str, ...]] = [
    ("seqstruct.io", "seqstruct.config"),
    ("seqstruct.data",),
    ("seqstruct.attention", "seqstruct.models"),
    ("seqstruct.objectives",),
    ("seqstruct.training",),
    ("seqstruct.evaluation",),
    ("seqstruct.report",),
    ("seqstruct.experiments", "seqstruct.bench"),
    ("seqstruct.cli", "seqstruct"),  # the command, and the package's public API (__init__)
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor(module: str) -> int:
    best, level = -1, None
    for index, prefixes in enumerate(FLOORS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, level = len(prefix), index
    assert level is not None, f"{module} is on no floor: add it to FLOORS"
    return level


def seqstruct_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of a seqstruct module in `path`, nested ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("seqstruct"):
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            # `from seqstruct.models import hooks` names a module; `from seqstruct.x import f` a function.
            found += [(node.lineno, n if (PACKAGE.parent / n.replace(".", "/")).exists() or
                       (PACKAGE.parent / (n.replace(".", "/") + ".py")).exists() else node.module)
                      for n in names]  # fmt: skip
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("seqstruct")]
    return found


def test_no_import_runs_back_up_the_floors() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = module_name(path)
        for line, imported in seqstruct_imports(path):
            if floor(imported) > floor(importer):
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} {importer} imports {imported}")
    assert upward == []


def test_every_module_is_in_the_architecture_page() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    missing = [
        module_name(path)
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "__init__.py" and f"`{path.relative_to(PACKAGE).as_posix()}`" not in text
    ]
    assert missing == []

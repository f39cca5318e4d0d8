"""The package layout the code promises: the command line is a wing on top of the core, never under it."""

from __future__ import annotations

import ast
from pathlib import Path

import studies

STUDIES = Path(studies.__file__).parent
ENTRY_POINTS = {"__main__.py"}  # `python -m studies` is the command line by definition


def imported_modules(source: str, package: list[str]) -> set[str]:
    """Absolute names of every module `source` imports, relative imports resolved against `package`."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            names.update([module, *(f"{module}.{alias.name}" for alias in node.names)])
    return names


def test_no_core_module_imports_the_command_line() -> None:
    core = [path for path in STUDIES.rglob("*.py") if "cli" not in path.relative_to(STUDIES).parts
            and path.name not in ENTRY_POINTS]
    assert len(core) > 10
    offenders = {}
    for path in core:
        package = ["studies", *path.relative_to(STUDIES).parent.parts]
        names = imported_modules(path.read_text(encoding="utf-8"), package)
        offenders[path.relative_to(STUDIES).as_posix()] = sorted(
            name for name in names if name == "studies.cli" or name.startswith("studies.cli."))
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_import_resolver_sees_every_spelling_of_the_wing() -> None:
    # The check above is only as good as this resolution.
    source = "from .cli.progress import STDERR\nfrom . import cli\nfrom ..cli import main\nimport studies.cli.views\n"
    assert imported_modules(source, ["studies"]) >= {"studies.cli.progress", "studies.cli"}
    assert "studies.cli" in imported_modules("from ..cli import main\n", ["studies", "hf_remote"])
    assert "studies.cli.views" in imported_modules(source, ["studies"])

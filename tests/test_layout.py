"""The package layout the code promises: studies/ is rooms over a few top-level modules, with the
command line a wing on top of them all. Each room imports only what its __init__ docstring allows."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import studies

STUDIES = Path(studies.__file__).parent
FOUNDATION = {"errors", "expect", "measures", "settings", "space"}  # top-level modules every room may use
ROOMS = {"storage", "fronts", "export", "workers"}
# What each part of studies/ may import besides itself and the foundation.
ALLOWED: dict[str, set[str]] = {
    "foundation": set(),
    "storage": set(),
    "fronts": {"storage"},
    "export": {"storage"},
    "workers": {"storage", "fronts"},
    "facade": ROOMS,  # api.py and the job process (job.py): the Python API over every room
    "cli": ROOMS | {"facade"},
}


def part_of(path: Path) -> str:
    """Which part of studies/ a module (a file under STUDIES) belongs to."""
    relative = path.relative_to(STUDIES)
    if relative.parts[0] in ROOMS or relative.parts[0] == "cli":
        return relative.parts[0]
    if relative.name == "__main__.py":  # `python -m studies` is the command line by definition
        return "cli"
    return "foundation" if relative.stem in FOUNDATION else "facade"


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


def part_of_name(name: str) -> str | None:
    """The part of studies/ an imported dotted name lands in (None outside studies/ or for the package)."""
    parts = name.split(".")
    if parts[0] != "studies" or len(parts) == 1:
        return None
    if parts[1] in ROOMS or parts[1] == "cli":
        return parts[1]
    if parts[1] == "__main__":
        return "cli"
    return "foundation" if parts[1] in FOUNDATION else "facade"


def modules() -> list[Path]:
    return [path for path in STUDIES.rglob("*.py") if "hf_remote" not in path.parts]


def test_every_room_imports_only_what_it_may() -> None:
    found = modules()
    assert {part_of(path) for path in found} == set(ALLOWED)
    offenders = {}
    for path in found:
        part = part_of(path)
        package = ["studies", *path.relative_to(STUDIES).parent.parts]
        names = imported_modules(path.read_text(encoding="utf-8"), package)
        wrong = sorted(name for name in names
                       if part_of_name(name) not in (None, part, "foundation", *ALLOWED[part]))
        if wrong:
            offenders[path.relative_to(STUDIES).as_posix()] = wrong
    assert offenders == {}


def test_no_core_module_imports_the_command_line() -> None:
    core = [path for path in modules() if part_of(path) != "cli"]
    assert len(core) > 10
    assert all("cli" not in ALLOWED[part_of(path)] for path in core)


def test_each_room_says_what_it_holds_and_may_use() -> None:
    for room in ROOMS:
        doc = ast.get_docstring(ast.parse((STUDIES / room / "__init__.py").read_text(encoding="utf-8")))
        assert doc and "May use" in doc, room


@pytest.mark.parametrize("name, part", [
    ("studies.storage.backends", "storage"), ("studies.fronts", "fronts"), ("studies.measures", "foundation"),
    ("studies.api", "facade"), ("studies.cli.views", "cli"), ("studies.__main__", "cli"), ("optuna", None),
])
def test_imported_names_land_in_their_part(name: str, part: str | None) -> None:
    assert part_of_name(name) == part


def test_the_import_resolver_sees_every_spelling_of_the_wing() -> None:
    # The checks above are only as good as this resolution.
    source = "from .cli.progress import STDERR\nfrom . import cli\nfrom ..cli import main\nimport studies.cli.views\n"
    assert imported_modules(source, ["studies"]) >= {"studies.cli.progress", "studies.cli"}
    assert "studies.cli" in imported_modules("from ..cli import main\n", ["studies", "workers"])
    assert "studies.cli.views" in imported_modules(source, ["studies"])
    assert "studies.workers.trials" in imported_modules("from ..workers import trials\n", ["studies", "fronts"])

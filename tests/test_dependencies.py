"""Every third-party module the package imports is a dependency pyproject.toml declares.

An undeclared import works in the development virtualenv (something else pulled it in) and
breaks ``pip install relctl`` the day that something stops depending on it.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections import defaultdict
from importlib.metadata import packages_distributions
from pathlib import Path

PROJECT = Path(__file__).parent.parent
PACKAGE = PROJECT / "controller"


def normalize(distribution: str) -> str:
    """A distribution name as PEP 503 compares them (``GitPython`` == ``gitpython``)."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


def declared_dependencies() -> set[str]:
    """The distributions ``[project] dependencies`` names, normalized, extras dropped."""
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    names = set()
    for requirement in project["dependencies"]:
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
        assert match, requirement
        names.add(normalize(match.group()))
    return names


def third_party_imports() -> dict[str, set[str]]:
    """Top-level module -> the package files importing it (absolute imports only), leaving
    out the standard library and the package itself."""
    found: dict[str, set[str]] = defaultdict(set)
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_bytes(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.partition(".")[0]
                if top not in sys.stdlib_module_names and top != PACKAGE.name:
                    found[top].add(str(path.relative_to(PROJECT)))
    return found


def test_the_import_scan_sees_the_known_third_party_imports() -> None:
    assert {"yaml", "git", "click", "jsonschema", "jsonschema_rs", "apscheduler"} <= set(
        third_party_imports()
    )


def test_every_third_party_import_is_a_declared_dependency() -> None:
    declared = declared_dependencies()
    providers = packages_distributions()
    undeclared = {}
    for module, files in sorted(third_party_imports().items()):
        distributions = {normalize(d) for d in providers.get(module, [])}
        if not distributions & declared:
            undeclared[module] = (sorted(distributions) or ["none installed"], sorted(files))
    assert undeclared == {}, (
        "imported by controller/ but not in pyproject.toml [project] dependencies "
        "(module: (distributions providing it, importing files)): "
        f"{undeclared}"
    )

"""Property-based fuzzing of manifest validation: mutate a valid manifest (types changed,
keys dropped, YAML 1.1 booleans, unquoted floats, duplicate keys, aliases, random bytes) and
check that loading never crashes and every problem is located (file, line >= 1, column >= 1).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.manifests import Severity, load_repository

BASE = Path(__file__).parent / "data" / "base"
MANIFEST = "releases/shop/gcash.yaml"
VALID = (BASE / MANIFEST).read_text()
LINES = VALID.splitlines()
SETTINGS = settings(deadline=None)

SCALARS = st.sampled_from(
    [
        "yes", "no", "on", "off", "1.10", "010", "0x1f", "-1", "101", "2.5", "~", "", "[]",
        "{}", '"x"', "2024-01-01", "12:30:45", ".inf", ".nan", "!!binary aGk=", "&a 1", "*a",
        "[1, [2, [3]]]", "{a: 1, a: 2}", '"2088000000000001"', "true", "null", "|\n    text",
    ]
)  # fmt: skip


def _line_with_value(lines: list[str], index: int, value: str) -> list[str]:
    line = lines[index]
    if ":" not in line:
        return lines
    key = line.split(":", 1)[0]
    return [*lines[:index], f"{key}: {value}", *lines[index + 1 :]]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    lines = list(LINES)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(
            st.sampled_from(["value", "drop", "duplicate", "alias", "indent", "bytes", "append"])
        )
        index = draw(st.integers(0, len(lines) - 1)) if lines else 0
        if not lines:
            break
        if kind == "value":
            lines = _line_with_value(lines, index, draw(SCALARS))
        elif kind == "drop":
            del lines[index]
        elif kind == "duplicate":
            lines.insert(index, lines[index])
        elif kind == "alias":
            lines = _line_with_value(lines, index, "&x [1]")
            lines.append("  configuration: *x")
        elif kind == "indent":
            lines[index] = draw(st.sampled_from(["", " ", "\t", "    "])) + lines[index]
        elif kind == "append":
            lines.append(draw(st.text(max_size=30)))
        else:
            text = "\n".join(lines).encode()
            at = draw(st.integers(0, len(text)))
            noise = draw(st.binary(min_size=1, max_size=8))
            return text[:at] + noise + text[at:]
    return ("\n".join(lines) + "\n").encode()


def _check(root: Path, data: bytes) -> None:
    (root / MANIFEST).write_bytes(data)
    result = load_repository(root)
    for problem in result.problems:
        assert problem.file, problem
        assert problem.line >= 1 and problem.column >= 1, problem
        assert problem.message and problem.code, problem
        assert problem.severity in (Severity.ERROR, Severity.WARNING)
    if not result.ok:
        assert any(p.severity is Severity.ERROR for p in result.problems)
    if "shop/gcash" in result.invalid:
        assert all(r.key != "shop/gcash" for r in result.releases)
        assert all(p.file.startswith("releases/shop/") for p in result.invalid["shop/gcash"])
    else:
        assert any(r.key == "shop/gcash" for r in result.releases), result.problems


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One copy of the base repository for every example: only the manifest changes."""
    root = tmp_path_factory.mktemp("fuzz") / "repo"
    shutil.copytree(BASE, root)
    return root


@SETTINGS
@given(data=mutated())
def test_mutated_manifests_never_crash_and_problems_are_located(scratch: Path, data: bytes) -> None:
    _check(scratch, data)


@SETTINGS
@given(data=st.binary(max_size=400))
def test_random_bytes_never_crash(scratch: Path, data: bytes) -> None:
    _check(scratch, data)

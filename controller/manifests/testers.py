"""Tester files: CSV or TXT lists of super app user ids referenced by manifests.

:func:`parse_testers` reads the first column of each row with its line and column, so a bad
id is reported where it is written. ``releases`` checks the ids against the target app.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from controller.manifests.problems import Problem, Severity, unreadable_problem, yaml_problem
from controller.manifests.quoting import cut
from controller.manifests.yamlload import decode, too_large
from controller.repofiles import RepoFiles, Unreadable

TESTER_SUFFIXES = (".csv", ".txt")
#: Size limit of one tester file (CSV or TXT), checked from the entry's size before reading.
TESTERS_SIZE_LIMIT = 5 * 1024 * 1024
#: Column separators of a TXT tester file.
_TXT_SEPARATORS = ",\t; "


@dataclass(frozen=True)
class TesterFile:
    """Ids of one tester file with their 1-based line and column, and file-level problems."""

    ids: tuple[tuple[str, int, int], ...]
    problems: tuple[Problem, ...]


def parse_testers(file: str, data: bytes) -> tuple[tuple[tuple[str, int, int], ...], list[Problem]]:
    """User ids in the first column of a CSV/TXT tester file, with (line, column).

    Tolerates a UTF-8 BOM, CRLF, blank lines, ``#`` comments and one header row (a first row
    whose first cell has no digit, such as ``userId,name``). TXT lines may separate columns by
    commas, tabs, semicolons or spaces.
    """
    big = too_large(len(data), TESTERS_SIZE_LIMIT)
    if big is not None:
        return (), [yaml_problem(file, big)]
    text, problem = decode(data)
    if text is None:
        assert problem is not None
        return (), [yaml_problem(file, problem)]
    is_csv = file.lower().endswith(".csv")
    ids: list[tuple[str, int, int]] = []
    problems: list[Problem] = []
    first_row = True
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if is_csv and '"' not in line:  # no quoting: the first cell is what precedes a comma
            first = line.split(",", 1)[0]
        elif is_csv:
            try:
                cell = next(csv.reader(io.StringIO(line), skipinitialspace=True), [""])
            except csv.Error as exc:  # e.g. a field over the csv module's 128 KiB
                problems.append(
                    Problem(
                        file, number, 1, "", Severity.ERROR, "tester-file-syntax",
                        f"line {number} is not a CSV row: {cut(str(exc))}",
                        "one user id per row, in the first column",
                    )
                )  # fmt: skip
                continue
            first = cell[0] if cell else ""
        else:
            first = _first_token(stripped)
        user_id = first.strip()
        column = line.find(user_id) + 1 if user_id else 1
        if first_row:
            first_row = False
            if not any(ch.isdigit() for ch in user_id):
                continue  # header row
        ids.append((user_id, number, max(column, 1)))
    return tuple(ids), problems


def read_testers(files: RepoFiles, file: str) -> TesterFile:
    """The tester file ``file`` read through ``files`` (a regular file of at most
    :data:`TESTERS_SIZE_LIMIT` bytes, else one problem at its line 1) and parsed."""
    try:
        data = files.read(file, TESTERS_SIZE_LIMIT)
    except Unreadable as exc:
        return TesterFile((), (unreadable_problem(exc),))
    ids, problems = parse_testers(file, data)
    return TesterFile(ids, tuple(problems))


def _first_token(line: str) -> str:
    """The text before the first TXT column separator."""
    cut = min((i for i in map(line.find, _TXT_SEPARATORS) if i >= 0), default=len(line))
    return line[:cut]

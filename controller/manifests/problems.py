"""Located problems: what ``relctl validate`` reports, and how a field path finds its line.

A :class:`Problem` is a value (file, line, column, field path, severity, code, message,
hint); :class:`Located` finds the line and column of a field in one file, composing the file's
YAML node tree only when a problem is reported. Used by every other module of the package.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from controller.manifests.quoting import QUOTE_LIMIT, quote
from controller.manifests.yamlload import compose
from controller.repofiles import Unreadable, check_path


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    """One located finding. ``line``/``column`` are 1-based; ``path`` is a field path such as
    ``spec.pilot.testers[2]`` ("" when the problem is not about a field)."""

    file: str
    line: int
    column: int
    path: str
    severity: Severity
    code: str
    message: str
    hint: str | None = None

    @property
    def sort_key(self) -> tuple[str, int, int, str, str]:
        return (self.file, self.line, self.column, self.code, self.message)

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON form (``docs/validate.md``)."""
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "path": self.path,
            "severity": str(self.severity),
            "code": self.code,
            "message": self.message,
            "hint": self.hint,
        }


class Located:
    """Finds line/column of field paths in one file; composes its node tree on first use."""

    def __init__(self, file: str, text: str | None) -> None:
        self.file = file
        self.text = text
        self._root: Any = None
        self._composed = False
        self._indexes: dict[int, dict[str, tuple[Node, Node]]] = {}

    def _tree(self) -> Any:
        if not self._composed:
            self._composed = True
            try:
                self._root = compose(self.text) if self.text is not None else None
            except Exception:
                self._root = None
        return self._root

    def nodes(self, path: Sequence[str | int]) -> tuple[Any, Any]:
        """(key node, value node) at ``path`` as deep as it exists (``find_node``);
        (None, None) when there is no tree. Each mapping is indexed once, so locating many
        problems in a mapping of 100,000 keys is not quadratic."""
        root = self._tree()
        if root is None:
            return None, None
        key_node: Any = None
        node: Any = root
        for part in path:
            if isinstance(node, MappingNode) and isinstance(part, str):
                found = self._index(node).get(part)
                if found is None:
                    return key_node, node
                key_node, node = found
            elif (
                isinstance(node, SequenceNode) and isinstance(part, int) and part < len(node.value)
            ):
                key_node, node = None, node.value[part]
            else:
                return key_node, node
        return key_node, node

    def _index(self, node: MappingNode) -> dict[str, tuple[Node, Node]]:
        index = self._indexes.get(id(node))
        if index is None:  # the first of duplicate keys wins, as in find_node
            index = {k.value: (k, v) for k, v in reversed(node.value) if isinstance(k, ScalarNode)}
            self._indexes[id(node)] = index
        return index

    def problem(
        self,
        path: Sequence[str | int],
        code: str,
        message: str,
        hint: str | None = None,
        *,
        severity: Severity = Severity.ERROR,
        at_key: bool = False,
        field: str | None = None,
    ) -> Problem:
        """A problem located at ``path`` (its value, or its key with ``at_key``); ``field``
        overrides the reported field path (e.g. a missing field reported at its parent)."""
        key_node, value_node = self.nodes(path)
        node = key_node if at_key and key_node is not None else value_node
        line, column = (node.start_mark.line + 1, node.start_mark.column + 1) if node else (1, 1)
        shown = field_path(path) if field is None else field
        return Problem(self.file, line, column, shown, severity, code, message, hint)


def field_path(path: Iterable[str | int]) -> str:
    """``["spec", "pilot", "testers", 2]`` -> ``spec.pilot.testers[2]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            # A key is repository input: a huge or unprintable one is quoted and cut.
            key = part if part.isprintable() and len(part) <= QUOTE_LIMIT else quote(part)
            out += f".{key}" if out else key
    return out


def file_problem(file: str, code: str, message: str, hint: str | None = None) -> Problem:
    return Problem(file, 1, 1, "", Severity.ERROR, code, message, hint)


def yaml_problem(file: str, problem: Any) -> Problem:
    return Problem(
        file,
        problem.line,
        problem.column,
        "",
        Severity.ERROR,
        problem.code,
        problem.message,
        problem.hint,
    )


def shown_path(path: str) -> str:
    """``path`` as a problem names it: itself, or its ``repr`` when it is not a plain
    repository path (a newline, a backslash, a control character, bytes that are not UTF-8),
    so that one line of output stays one line."""
    return path if check_path(path) is None else repr(path)


def unreadable_problem(error: Unreadable) -> Problem:
    """The located problem of a file relctl refused to read (never its content: it was not
    read). Line 1, column 1; the code is the :class:`~controller.repofiles.UnreadableCode`."""
    return Problem(
        shown_path(error.path), 1, 1, "", Severity.ERROR, str(error.code), error.message, error.hint
    )

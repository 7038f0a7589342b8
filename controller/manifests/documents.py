"""One YAML file of the repository: read, parse strictly, check against its schema, explain.

:func:`read_document` reads through :class:`~controller.repofiles.RepoFiles` (bounded, never
a link); :func:`check_document` is the fast path every manifest takes (libyaml +
jsonschema-rs); only a document that fails pays for the reference validator's errors, turned
into located problems with hints (``unknown-field`` with a suggestion, ``unquoted-version``,
``yaml-1.1-boolean``...). :func:`check_chunk` runs in worker processes, on bytes.
"""

from __future__ import annotations

import difflib
import gc
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.manifests.problems import (
    Located,
    Problem,
    Severity,
    field_path,
    shown_path,
    unreadable_problem,
    yaml_problem,
)
from controller.manifests.quoting import cut, quote
from controller.manifests.schema import _schemas, reference_validator
from controller.manifests.yamlload import (
    YAML11_BOOLEANS,
    YAML_SIZE_LIMIT,
    decode,
    load_yaml,
    scalar_source,
)
from controller.repofiles import RepoFiles, Unreadable, WorkTree

#: Schema errors explained per file at most (the rest of a hostile file is not walked).
MAX_SCHEMA_ERRORS = 100


@dataclass(frozen=True)
class Document:
    """A YAML file after parsing and the schema check (picklable, crosses processes)."""

    file: str
    value: Any
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def as_files(files: RepoFiles | Path) -> RepoFiles:
    """A directory means its work tree (``relctl validate`` on a checkout, pre-commit)."""
    return WorkTree(files) if isinstance(files, Path) else files


def read_document(files: RepoFiles, file: str, kind: str) -> Document:
    """Read (bounded, link-free), parse and schema-check one file; ``kind`` picks the schema."""
    try:
        data = files.read(file, YAML_SIZE_LIMIT)
    except Unreadable as exc:
        return Document(shown_path(file), None, (unreadable_problem(exc),))
    return check_document(file, data, kind)


def check_chunk(kind: str, items: list[tuple[str, bytes]]) -> list[Document]:
    """:func:`check_document` over files already read (runs in worker processes: it is
    sent bytes, never paths, and reads nothing). The cyclic garbage collector pauses
    meanwhile, as in the caller (``repository._collector_paused``): the documents made here
    hold no cycles, and collections would walk them all again and again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return [check_document(file, data, kind) for file, data in items]
    finally:
        if enabled:
            gc.enable()


def check_document(file: str, data: bytes, kind: str) -> Document:
    """Parse and schema-check the bytes of ``file``; ``kind`` picks the schema."""
    loaded = load_yaml(data)
    if loaded.problem is not None:
        return Document(file, None, (yaml_problem(file, loaded.problem),))
    value = loaded.value
    schemas = _schemas()
    try:
        valid = bool(schemas.fast[kind].is_valid(value))
    except Exception:  # values jsonschema-rs cannot take (e.g. huge ints): use the reference
        valid = False
    if valid:
        return Document(file, value, ())
    problems = _schema_problems(Located(file, loaded.text), kind, value)
    if not problems:  # the fast validator was stricter: explain with its own words
        problems = _fast_problems(Located(file, loaded.text), kind, value)
    return Document(file, value if not problems else None, tuple(problems))


def located_in(files: RepoFiles, file: str) -> Located:
    """Line/column finder for ``file`` (read again, bounded; no locations when unreadable)."""
    try:
        text, _ = decode(files.read(file, YAML_SIZE_LIMIT))
    except Unreadable:
        text = None
    return Located(file, text)


def problem_at(
    files: RepoFiles | Path,
    file: str,
    path: Sequence[str | int],
    code: str,
    message: str,
    hint: str | None = None,
    *,
    severity: Severity = Severity.ERROR,
) -> Problem:
    """A problem about field ``path`` of ``file`` in ``files``, located at the field's line
    and column (1:1 when the file or field cannot be found)."""
    return located_in(as_files(files), file).problem(path, code, message, hint, severity=severity)


def _schema_problems(at: Located, kind: str, value: Any) -> list[Problem]:
    validator = reference_validator(kind)
    problems: list[Problem] = []
    # Errors are produced lazily: a file with 100,000 bad items costs MAX_SCHEMA_ERRORS.
    for error in itertools.islice(validator.iter_errors(value), MAX_SCHEMA_ERRORS):
        problems.extend(_explain(at, error))
    return problems


def _fast_problems(at: Located, kind: str, value: Any) -> list[Problem]:
    try:
        errors = list(itertools.islice(_schemas().fast[kind].iter_errors(value), MAX_SCHEMA_ERRORS))
    except Exception as exc:
        return [at.problem([], "schema", f"the document cannot be checked: {cut(str(exc))}")]
    return [at.problem(list(e.instance_path), "schema", cut(str(e.message))) for e in errors] or [
        at.problem([], "schema", "the document does not match the schema")
    ]


def _explain(at: Located, error: Any) -> list[Problem]:
    """Located problems for one ``jsonschema.ValidationError``, with hints where they help."""
    path: list[str | int] = list(error.absolute_path)
    instance = error.instance
    validator = error.validator
    schema = error.schema if isinstance(error.schema, dict) else {}
    if validator == "additionalProperties" and isinstance(instance, dict):
        known = sorted(schema.get("properties", {}))
        out = []
        unknown = [key for key in instance if key not in known]
        for key in unknown[:MAX_SCHEMA_ERRORS]:
            close = difflib.get_close_matches(key, known, n=1) if len(key) <= 64 else []
            hint = f"did you mean {close[0]!r}?" if close else _known_fields_hint(known)
            out.append(
                at.problem(
                    [*path, key], "unknown-field", f"unknown field {quote(key)}", hint, at_key=True
                )
            )
        if len(unknown) > MAX_SCHEMA_ERRORS:
            rest = len(unknown) - MAX_SCHEMA_ERRORS
            out.append(
                at.problem(path, "unknown-field", f"{rest:,} more unknown fields", hint=None)
            )
        return out
    if validator == "required" and isinstance(instance, dict):
        return [
            at.problem(
                path,
                "required",
                f"{name} is required",
                _required_hint(name),
                at_key=True,
                field=field_path([*path, name]),
            )
            for name in error.validator_value
            if name not in instance
        ]
    _, value_node = at.nodes(path)
    source = scalar_source(value_node)
    code, message = "schema", _message(error)
    hint = None
    if validator == "type":
        expected = error.validator_value
        expected_types = expected if isinstance(expected, list) else [expected]
        wanted = " or ".join(_TYPE_WORDS.get(str(t), str(t)) for t in expected_types)
        if (
            "boolean" in expected_types
            and isinstance(instance, str)
            and instance.lower() in YAML11_BOOLEANS
        ):
            code = "yaml-1.1-boolean"
            message = f"{quote(instance)} is a string, not a boolean"
            hint = "YAML 1.2 booleans are only true and false: write true or false"
        elif path == ["spec", "version"] and isinstance(instance, int | float):
            code = "unquoted-version"
            raw = source if source is not None else quote(instance)
            message = f"version {quote(raw, bare=True)} is a number, not a quoted string"
            hint = f'quote it: version: "{quote(_suggest_version(raw), bare=True)}"'
        elif instance is None:
            message = f"the value is empty (null); expected {wanted}"
            hint = "write a value, or remove the key to use the default"
        elif isinstance(instance, dict | list):
            message = f"expected {wanted}, found {_json_type(instance)}"
        else:
            raw = source if source is not None else json.dumps(instance)
            message = f"{quote(raw, bare=True)} is {_json_type(instance)}, expected {wanted}"
            if "string" in expected_types:
                hint = f'quote it: "{quote(raw, bare=True)}"'
            elif isinstance(instance, str) and {"integer", "number"} & set(expected_types):
                hint = f"remove the quotes: {quote(instance, bare=True)}"
    elif validator == "const":
        message = f"{quote(instance)} is not allowed here; expected {error.validator_value!r}"
    elif validator == "pattern" and path == ["spec", "version"]:
        message = f"version {quote(instance)} is not x.y.z"
        hint = 'three numbers without leading zeros, e.g. "1.4.0"'
    elif validator == "pattern":
        message = f"{quote(instance)} is not valid here"
        hint = schema.get("description")
    elif validator == "format" and error.validator_value == "regex":
        message = f"{quote(instance)} is not a valid regular expression"
    return [at.problem(path, code, message, hint)]


def _message(error: Any) -> str:
    """jsonschema's message with the value it quotes (``'aaa...' is too long``) quoted by
    :func:`quote` instead, and cut."""
    message = str(error.message)
    instance = error.instance
    if isinstance(instance, str | list | dict):
        message = message.replace(repr(instance), quote(instance), 1)
    return cut(message)


_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "null"


def _known_fields_hint(known: Sequence[str]) -> str | None:
    return f"known fields: {', '.join(known)}" if known else None


def _required_hint(name: str) -> str | None:
    hints = {
        "apiVersion": "start the file with apiVersion: relctl/v1",
        "version": 'the uploaded version to release, e.g. version: "1.4.0"',
        "miniProgram": "the mini program id (the directory name under releases/)",
        "targetApp": "the target app id (the file name), declared in relctl.yaml",
        "miniPrograms": "owners and developers need the mini programs they may release",
        "members": "list the people who may release, e.g. members: []",
        "targetApps": "declare at least one target app, e.g. gcash: {name: GCash}",
    }
    return hints.get(name)


def _suggest_version(raw: str) -> str:
    parts = raw.split(".")
    while len(parts) < 3:
        parts.append("0")
    return ".".join(parts)

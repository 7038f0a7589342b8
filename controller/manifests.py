"""Load and validate a release repository: ``relctl.yaml``, ``access.yaml`` and ``releases/``.

``reconcile`` calls :func:`load_repository` once per pass; ``relctl validate`` calls it and
formats :attr:`LoadResult.problems`. Nothing here raises on bad input: every problem is a
located :class:`Problem` value (file, line, column, field path, code, message, hint).

Pipeline per YAML file (``yamlload`` does the first step):

1. strict YAML 1.2 loading (duplicate keys, aliases, multiple documents... are errors);
2. the JSON Schema in ``schemas/``: jsonschema-rs decides valid / invalid (fast path); only
   for invalid documents, jsonschema (the reference validator) explains every error and the
   node tree is composed again to find each error's line and column;
3. semantic checks the schema cannot express (path matches metadata, target app declared,
   tester files and ids, tester limit, grayscale steps, cancel with grayscale).

Large repositories (``PARALLEL_THRESHOLD`` manifests and more) parse and schema-check in two
processes: the caller's and one worker. Semantic checks always run in the caller.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import multiprocessing
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any

import jsonschema_rs
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from controller.model import (
    API_VERSION,
    DEFAULT_TESTERS_MAX,
    DEFAULT_USER_ID_PATTERN,
    Compatibility,
    Pilot,
    Release,
    ReleaseSpec,
    RepoConfig,
    TargetApp,
)
from controller.schemas import SCHEMA_DIR
from controller.yamlload import (
    TESTERS_SIZE_LIMIT,
    YAML11_BOOLEANS,
    YAML_SIZE_LIMIT,
    compose,
    decode,
    find_node,
    load_yaml,
    scalar_source,
    too_large,
)

CONFIG_FILE = "relctl.yaml"
ACCESS_FILE = "access.yaml"
RELEASES_DIR = "releases"
MANIFEST_SUFFIXES = (".yaml", ".yml")
TESTER_SUFFIXES = (".csv", ".txt")

SCHEMA_BASE = "https://relctl.dev/schemas/"
#: Schema file per manifest ``kind``.
SCHEMA_FILES = {
    "Release": "release.schema.json",
    "Config": "config.schema.json",
    "Access": "access.schema.json",
}
#: From this many manifests on, parsing and schema checks use a second process.
PARALLEL_THRESHOLD = 2000


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


class Role(StrEnum):
    """Platform roles (seed: "Access to release mini programs is role-based")."""

    MASTER = "master"
    OWNER = "owner"
    DEVELOPER = "developer"


@dataclass(frozen=True)
class Member:
    """A person in ``access.yaml``, identified by their git email."""

    email: str
    name: str
    role: Role
    mini_programs: tuple[str, ...] = ()
    signing_key: str | None = None

    def may_release(self, mini_program: str) -> bool:
        """Masters release every mini program; owners and developers their assigned ones."""
        return self.role is Role.MASTER or mini_program in self.mini_programs


@dataclass(frozen=True)
class Access:
    """``access.yaml``: the members of the release repository."""

    members: tuple[Member, ...] = ()

    def member(self, email: str) -> Member | None:
        """The member with this git email (case-insensitive), if any."""
        wanted = email.casefold()
        return next((m for m in self.members if m.email.casefold() == wanted), None)


@dataclass(frozen=True)
class LoadResult:
    """Everything :func:`load_repository` found.

    ``config`` is None when ``relctl.yaml`` is missing or invalid: then no release is built
    (every release depends on its target app's rules) and the caller should act on nothing.
    ``access`` is None when ``access.yaml`` is absent, invalid or was not selected.
    """

    config: RepoConfig | None
    access: Access | None
    #: Valid releases, sorted by key.
    releases: tuple[Release, ...]
    #: Every error and warning, sorted by file, line, column.
    problems: tuple[Problem, ...]
    #: Problems of every manifest that has an error (its tester files' included), by key
    #: ``<mini-program>/<target-app>`` (from the path ``releases/<mp>/<app>.yaml``).
    invalid: Mapping[str, tuple[Problem, ...]] = field(default_factory=lambda: MappingProxyType({}))
    #: Repository-relative paths of the files that were checked.
    files: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return not any(p.severity is Severity.ERROR for p in self.problems)

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity is Severity.ERROR)

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity is Severity.WARNING)


class SchemaSetError(RuntimeError):
    """The schemas shipped with relctl are broken (a bug in relctl, not in the repository)."""


# --------------------------------------------------------------------------------------------
# Schemas
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Schemas:
    documents: Mapping[str, dict[str, Any]]
    registry: Registry[Any]
    fast: Mapping[str, Any]  # kind -> jsonschema_rs validator


@cache
def _schemas() -> _Schemas:
    """Load, check and compile the schema set once per process.

    Checks every schema against the Draft 2020-12 meta-schema and resolves every ``$ref``
    now, so a broken schema fails at start-up rather than at the first document using it.
    The reference validator (``jsonschema``) is built on first use only: importing it costs
    ~0.7 s (its format checkers), which only runs that find a problem should pay.
    """
    documents: dict[str, dict[str, Any]] = {}
    for kind, name in SCHEMA_FILES.items():
        try:
            document = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
            jsonschema_rs.meta.validate(document)
        except (OSError, ValueError, jsonschema_rs.ValidationError) as exc:
            raise SchemaSetError(f"schema {name}: {exc}") from exc
        if document.get("$id") != SCHEMA_BASE + name:
            raise SchemaSetError(f"schema {name}: $id must be {SCHEMA_BASE + name}")
        documents[kind] = document
    registry: Registry[Any] = Registry().with_resources(
        (doc["$id"], DRAFT202012.create_resource(doc)) for doc in documents.values()
    )
    for document in documents.values():
        resolver = registry.resolver(base_uri=document["$id"])
        for ref in _refs(document):
            try:
                resolver.lookup(ref)
            except Exception as exc:
                raise SchemaSetError(f"{document['$id']}: dangling $ref {ref}") from exc
    fast_registry = jsonschema_rs.Registry([(doc["$id"], doc) for doc in documents.values()])
    try:
        fast = {
            kind: jsonschema_rs.Draft202012Validator(
                doc, validate_formats=True, registry=fast_registry
            )
            for kind, doc in documents.items()
        }
    except (ValueError, jsonschema_rs.ValidationError) as exc:
        raise SchemaSetError(f"schemas: {exc}") from exc
    return _Schemas(documents=documents, registry=registry, fast=fast)


@cache
def _reference_validator(kind: str) -> Any:
    """The one reused ``jsonschema`` validator of a kind (format checker on)."""
    import jsonschema  # type: ignore[import-untyped]  # no stubs installed

    schemas = _schemas()
    return jsonschema.Draft202012Validator(
        schemas.documents[kind],
        registry=schemas.registry,
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )


def check_schemas() -> None:
    """Raise :class:`SchemaSetError` if the schema set is broken (call at start-up)."""
    _schemas()


def schema_document(kind: str) -> dict[str, Any]:
    """The JSON Schema of a manifest ``kind`` (Release, Config, Access)."""
    return _schemas().documents[kind]


def _refs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref" and isinstance(item, str):
                yield item
            else:
                yield from _refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item)


# --------------------------------------------------------------------------------------------
# One YAML document: parse + schema (fast path), located problems (slow path)
# --------------------------------------------------------------------------------------------


class _Located:
    """Finds line/column of field paths in one file; composes its node tree on first use."""

    def __init__(self, file: str, text: str | None) -> None:
        self.file = file
        self.text = text
        self._root: Any = None
        self._composed = False

    def _tree(self) -> Any:
        if not self._composed:
            self._composed = True
            try:
                self._root = compose(self.text) if self.text is not None else None
            except Exception:
                self._root = None
        return self._root

    def nodes(self, path: Sequence[str | int]) -> tuple[Any, Any]:
        """(key node, value node) at ``path``; (None, None) when there is no tree."""
        root = self._tree()
        if root is None:
            return None, None
        return find_node(root, path)

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
            out += f".{part}" if out else str(part)
    return out


@dataclass(frozen=True)
class _Document:
    """A YAML file after parsing and the schema check (picklable, crosses processes)."""

    file: str
    value: Any
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_document(root: Path | str, file: str, kind: str) -> _Document:
    """Read, parse and schema-check one file; ``kind`` picks the schema."""
    try:
        with open(os.path.join(root, file), "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            big = too_large(size, YAML_SIZE_LIMIT)
            if big is not None:  # do not even read it
                return _Document(file, None, (_from_yaml(file, big),))
            data = handle.read()
    except OSError as exc:
        return _Document(file, None, (_file_problem(file, "unreadable", exc.strerror or ""),))
    loaded = load_yaml(data)
    if loaded.problem is not None:
        return _Document(file, None, (_from_yaml(file, loaded.problem),))
    value = loaded.value
    schemas = _schemas()
    try:
        valid = bool(schemas.fast[kind].is_valid(value))
    except Exception:  # values jsonschema-rs cannot take (e.g. huge ints): use the reference
        valid = False
    if valid:
        return _Document(file, value, ())
    problems = _schema_problems(_Located(file, loaded.text), kind, value)
    if not problems:  # the fast validator was stricter: explain with its own words
        problems = _fast_problems(_Located(file, loaded.text), kind, value)
    return _Document(file, value if not problems else None, tuple(problems))


def _file_problem(file: str, code: str, message: str, hint: str | None = None) -> Problem:
    return Problem(file, 1, 1, "", Severity.ERROR, code, message, hint)


def _from_yaml(file: str, problem: Any) -> Problem:
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


def _schema_problems(at: _Located, kind: str, value: Any) -> list[Problem]:
    validator = _reference_validator(kind)
    problems: list[Problem] = []
    for error in validator.iter_errors(value):
        problems.extend(_explain(at, error))
    return problems


def _fast_problems(at: _Located, kind: str, value: Any) -> list[Problem]:
    try:
        errors = list(_schemas().fast[kind].iter_errors(value))
    except Exception as exc:
        return [at.problem([], "schema", f"the document cannot be checked: {exc}")]
    return [at.problem(list(e.instance_path), "schema", str(e.message)) for e in errors] or [
        at.problem([], "schema", "the document does not match the schema")
    ]


def _explain(at: _Located, error: Any) -> list[Problem]:
    """Located problems for one ``jsonschema.ValidationError``, with hints where they help."""
    path: list[str | int] = list(error.absolute_path)
    instance = error.instance
    validator = error.validator
    schema = error.schema if isinstance(error.schema, dict) else {}
    if validator == "additionalProperties" and isinstance(instance, dict):
        known = sorted(schema.get("properties", {}))
        out = []
        for key in instance:
            if key in known:
                continue
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else _known_fields_hint(known)
            out.append(
                at.problem(
                    [*path, key], "unknown-field", f"unknown field {key!r}", hint, at_key=True
                )
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
    code, message = "schema", str(error.message)
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
            message = f"{instance!r} is a string, not a boolean"
            hint = "YAML 1.2 booleans are only true and false: write true or false"
        elif path == ["spec", "version"] and isinstance(instance, int | float):
            code = "unquoted-version"
            raw = source if source is not None else str(instance)
            message = f"version {raw} is a number, not a quoted string"
            hint = f'quote it: version: "{_suggest_version(raw)}"'
        elif instance is None:
            message = f"the value is empty (null); expected {wanted}"
            hint = "write a value, or remove the key to use the default"
        elif isinstance(instance, dict | list):
            message = f"expected {wanted}, found {_json_type(instance)}"
        else:
            raw = source if source is not None else json.dumps(instance)
            message = f"{raw} is {_json_type(instance)}, expected {wanted}"
            if "string" in expected_types:
                hint = f'quote it: "{raw}"'
            elif isinstance(instance, str) and {"integer", "number"} & set(expected_types):
                hint = f"remove the quotes: {instance}"
    elif validator == "const":
        message = f"{instance!r} is not allowed here; expected {error.validator_value!r}"
    elif validator == "pattern" and path == ["spec", "version"]:
        message = f"version {instance!r} is not x.y.z"
        hint = 'three numbers without leading zeros, e.g. "1.4.0"'
    elif validator == "pattern":
        message = f"{instance!r} is not valid here"
        hint = schema.get("description")
    elif validator == "format" and error.validator_value == "regex":
        message = f"{instance!r} is not a valid regular expression"
    return [at.problem(path, code, message, hint)]


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


# --------------------------------------------------------------------------------------------
# relctl.yaml and access.yaml
# --------------------------------------------------------------------------------------------


def _load_config(root: Path) -> tuple[RepoConfig | None, list[Problem]]:
    if not (root / CONFIG_FILE).is_file():
        return None, [
            _file_problem(
                CONFIG_FILE,
                "missing-config",
                f"{CONFIG_FILE} not found at the repository root",
                "every release repository declares its target apps in relctl.yaml; "
                "see examples/relctl.yaml",
            )
        ]
    doc = _check_document(root, CONFIG_FILE, "Config")
    if not doc.ok:
        return None, list(doc.problems)
    value = doc.value
    problems: list[Problem] = []
    apps: dict[str, TargetApp] = {}
    for app_id, spec in value["targetApps"].items():
        pattern = spec.get("userIdPattern", DEFAULT_USER_ID_PATTERN)
        try:
            re.compile(pattern)
        except re.error as exc:
            at = _located(root, CONFIG_FILE)
            problems.append(
                at.problem(
                    ["targetApps", app_id, "userIdPattern"],
                    "user-id-pattern",
                    f"{pattern!r} is not a valid regular expression: {exc}",
                )
            )
            continue
        values = spec.get("grayscaleValues")
        apps[app_id] = TargetApp(
            id=app_id,
            name=spec["name"],
            environment=spec.get("environment", "production"),
            testers_max=spec.get("testersMax", DEFAULT_TESTERS_MAX),
            grayscale_values=tuple(sorted(values)) if values is not None else None,
            user_id_pattern=pattern,
        )
    if problems:
        return None, problems
    return (
        RepoConfig(
            target_apps=MappingProxyType(dict(sorted(apps.items()))),
            platform=value.get("platform"),
            require_signed_commits=value.get("policy", {}).get("requireSignedCommits", False),
        ),
        [],
    )


def load_access(root: Path) -> tuple[Access | None, list[Problem]]:
    """``access.yaml`` at ``root``: (None, []) when absent, (None, problems) when invalid."""
    if not (root / ACCESS_FILE).is_file():
        return None, []
    doc = _check_document(root, ACCESS_FILE, "Access")
    if not doc.ok:
        return None, list(doc.problems)
    members: list[Member] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    at: _Located | None = None
    for index, item in enumerate(doc.value["members"]):
        email = item["email"]
        role = Role(item["role"])
        if email.casefold() in seen:
            at = at or _located(root, ACCESS_FILE)
            problems.append(
                at.problem(
                    ["members", index, "email"],
                    "duplicate-member",
                    f"{email} is already listed (members[{seen[email.casefold()]}])",
                    "list each person once",
                )
            )
            continue
        seen[email.casefold()] = index
        if role is Role.MASTER and item.get("miniPrograms"):
            at = at or _located(root, ACCESS_FILE)
            problems.append(
                at.problem(
                    ["members", index, "miniPrograms"],
                    "master-mini-programs",
                    "a master may release every mini program; miniPrograms is ignored",
                    severity=Severity.WARNING,
                )
            )
        members.append(
            Member(
                email=email,
                name=item["name"],
                role=role,
                mini_programs=tuple(item.get("miniPrograms", ())),
                signing_key=item.get("signingKey"),
            )
        )
    if any(p.severity is Severity.ERROR for p in problems):
        return None, problems
    return Access(tuple(members)), problems


def problem_at(
    root: Path,
    file: str,
    path: Sequence[str | int],
    code: str,
    message: str,
    hint: str | None = None,
    *,
    severity: Severity = Severity.ERROR,
) -> Problem:
    """A problem about field ``path`` of ``file`` (relative to ``root``), located at the
    field's line and column (1:1 when the file or field cannot be found)."""
    return _located(root, file).problem(path, code, message, hint, severity=severity)


def _located(root: Path, file: str) -> _Located:
    try:
        text, _ = decode((root / file).read_bytes())
    except OSError:
        text = None
    return _Located(file, text)


# --------------------------------------------------------------------------------------------
# Tester files
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _TesterFile:
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
        return (), [_from_yaml(file, big)]
    text, problem = decode(data)
    if text is None:
        assert problem is not None
        return (), [_from_yaml(file, problem)]
    is_csv = file.lower().endswith(".csv")
    ids: list[tuple[str, int, int]] = []
    first_row = True
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if is_csv:
            cell = next(csv.reader(io.StringIO(line), skipinitialspace=True), [""])
            first = cell[0] if cell else ""
        else:
            first = re.split(r"[,\t; ]", stripped, maxsplit=1)[0]
        user_id = first.strip()
        column = line.find(user_id) + 1 if user_id else 1
        if first_row:
            first_row = False
            if not any(ch.isdigit() for ch in user_id):
                continue  # header row
        ids.append((user_id, number, max(column, 1)))
    return tuple(ids), []


# --------------------------------------------------------------------------------------------
# Releases
# --------------------------------------------------------------------------------------------


def release_key(file: str) -> str | None:
    """``releases/<mp>/<app>.yaml`` -> ``<mp>/<app>``; None for any other path."""
    parts = file.split("/")
    if (
        len(parts) == 3
        and parts[0] == RELEASES_DIR
        and parts[1]
        and parts[2].endswith(MANIFEST_SUFFIXES)
    ):
        stem = parts[2].rpartition(".")[0]
        return f"{parts[1]}/{stem}" if stem else None
    return None


def enumerate_inline(testers: Iterable[str]) -> Iterator[tuple[str, int | tuple[str, int, int]]]:
    """Inline testers with their index (their location in the manifest)."""
    for index, user_id in enumerate(testers):
        yield user_id, index


class _ReleaseChecker:
    """Semantic checks of schema-valid manifests against the config and the repository."""

    def __init__(self, root: Path, config: RepoConfig | None) -> None:
        self.root = root
        self.real_root = Path(os.path.realpath(root))
        self.config = config
        self._tester_files: dict[str, _TesterFile] = {}
        self._patterns: dict[str, re.Pattern[str]] = {}
        self._listings: dict[str, frozenset[str]] = {}

    def check(self, doc: _Document) -> tuple[Release | None, list[Problem]]:
        file = doc.file
        key = release_key(file)
        assert key is not None
        mini_program, app_id = key.split("/")
        value = doc.value
        lazy: list[_Located] = []

        def located() -> _Located:
            if not lazy:
                lazy.append(_located(self.root, file))
            return lazy[0]

        problems: list[Problem] = []
        metadata = value["metadata"]
        for name, expected in (("miniProgram", mini_program), ("targetApp", app_id)):
            if metadata[name] != expected:
                problems.append(
                    located().problem(
                        ["metadata", name],
                        "path-mismatch",
                        f"metadata.{name} is {metadata[name]!r} but the file is {file}",
                        f"the path is releases/<miniProgram>/<targetApp>.yaml: set {name}: "
                        f"{expected} or move the file",
                    )
                )
        directory, _, name = file.rpartition("/")
        stem, _, suffix = name.rpartition(".")
        twin = f"{directory}/{stem}.{'yml' if suffix == 'yaml' else 'yaml'}"
        if twin.rpartition("/")[2] in self._listing(directory):
            problems.append(
                _file_problem(
                    file,
                    "duplicate-release",
                    f"{key} is also defined by {twin}",
                    "keep one manifest per (mini program, target app)",
                )
            )
        if self.config is None:
            return None, problems
        app = self.config.target_apps.get(app_id)
        if app is None:
            declared = ", ".join(self.config.target_apps) or "none"
            problems.append(
                located().problem(
                    ["metadata", "targetApp"],
                    "unknown-target-app",
                    f"target app {app_id!r} is not declared in {CONFIG_FILE}",
                    f"declared target apps: {declared}",
                )
            )
            return None, problems
        spec = value["spec"]
        testers, tester_files, tester_problems = self._testers(
            file, spec.get("pilot", {}), app, located
        )
        problems.extend(tester_problems)
        grayscale = int(spec.get("grayscale", 0))
        if not app.allows_grayscale(grayscale):
            allowed = ", ".join(str(v) for v in (0, *(app.grayscale_values or ()), 100))
            problems.append(
                located().problem(
                    ["spec", "grayscale"],
                    "grayscale-value",
                    f"grayscale {grayscale} is not offered by {app.name} ({app.id})",
                    f"allowed values: {allowed}",
                )
            )
        if spec.get("cancel", False) and grayscale > 0:
            problems.append(
                located().problem(
                    ["spec", "cancel"],
                    "cancel-with-grayscale",
                    f"cancel: true contradicts grayscale: {grayscale} (cancel withdraws the "
                    "version from every user; grayscale asks to expose it)",
                    "to cancel, leave grayscale at its current value or 0 and set cancel: true "
                    "in a change of its own",
                )
            )
        if any(p.severity is Severity.ERROR for p in problems):
            return None, problems
        compatibility = spec.get("compatibility", {})
        pilot = spec.get("pilot", {})
        release = Release(
            mini_program=mini_program,
            target_app=app_id,
            environment=app.environment,
            path=file,
            sources=(file, *tester_files),
            spec=ReleaseSpec(
                version=spec["version"],
                basic_info=MappingProxyType(dict(spec.get("basicInfo", {}))),
                configuration=MappingProxyType(dict(spec.get("configuration", {}))),
                compatibility=Compatibility(
                    min_pass_rate=float(compatibility.get("minPassRate", 95.0)),
                    retest=int(compatibility.get("retest", 0)),
                ),
                pilot=Pilot(testers=testers, complete=bool(pilot.get("complete", False))),
                grayscale=grayscale,
                cancel=bool(spec.get("cancel", False)),
                supersede=bool(spec.get("supersede", False)),
                paused=bool(spec.get("paused", False)),
            ),
        )
        return release, problems

    def _testers(
        self, file: str, pilot: Mapping[str, Any], app: TargetApp, located: Any
    ) -> tuple[tuple[str, ...], tuple[str, ...], list[Problem]]:
        """The resolved tester set (inline + files), the tester files read (repo-relative),
        and the problems found on the way."""
        pattern = self._pattern(app.user_id_pattern)
        problems: list[Problem] = []
        files: list[str] = []
        # Every tester with where it was written: an inline index, or (file, line, column).
        entries: list[tuple[str, int | tuple[str, int, int]]] = list(
            enumerate_inline(pilot.get("testers", ()))
        )
        manifest_dir = file.rpartition("/")[0]
        for index, name in enumerate(pilot.get("testersFiles", ())):
            tester_file, reason = self._tester_path(manifest_dir, name)
            if tester_file is None:
                assert reason is not None
                code, message, hint = reason
                path = ["spec", "pilot", "testersFiles", index]
                problems.append(located().problem(path, code, message, hint))
                continue
            files.append(tester_file)
            parsed = self._tester_file(tester_file)
            problems.extend(parsed.problems)
            entries.extend((user_id, (tester_file, line, col)) for user_id, line, col in parsed.ids)

        def problem(where: int | tuple[str, int, int], code: str, message: str, hint: str) -> None:
            severity = Severity.WARNING if code == "duplicate-tester" else Severity.ERROR
            if isinstance(where, int):
                path = ["spec", "pilot", "testers", where]
                problems.append(located().problem(path, code, message, hint, severity=severity))
            else:
                tester_file, line, column = where
                problems.append(
                    Problem(tester_file, line, column, "", severity, code, message, hint)
                )

        seen: dict[str, int | tuple[str, int, int]] = {}
        for user_id, where in entries:
            if user_id in seen:
                first = seen[user_id]
                first_at = (
                    f"{file} spec.pilot.testers[{first}]"
                    if isinstance(first, int)
                    else f"{first[0]}:{first[1]}"
                )
                problem(
                    where,
                    "duplicate-tester",
                    f"tester {user_id} is listed twice (first at {first_at})",
                    "remove the duplicate",
                )
            elif pattern.search(user_id) is None:
                problem(
                    where,
                    "tester-id",
                    f"{user_id!r} is not a valid {app.name} user id",
                    f"{app.id} user ids match {app.user_id_pattern}",
                )
            else:
                seen[user_id] = where
        if len(seen) > app.testers_max:
            anchor = ["spec", "pilot", "testers" if pilot.get("testers") else "testersFiles"]
            problems.append(
                located().problem(
                    anchor,
                    "tester-limit",
                    f"{len(seen)} testers; {app.name} ({app.id}) accepts at most {app.testers_max}",
                    "remove testers, or split pilot testing into rounds",
                )
            )
        return tuple(sorted(seen)), tuple(files), problems

    def _pattern(self, source: str) -> re.Pattern[str]:
        compiled = self._patterns.get(source)
        if compiled is None:
            compiled = self._patterns[source] = re.compile(source)
        return compiled

    def _listing(self, directory: str) -> frozenset[str]:
        names = self._listings.get(directory)
        if names is None:
            try:
                names = frozenset(os.listdir(self.root / directory))
            except OSError:
                names = frozenset()
            self._listings[directory] = names
        return names

    def _tester_path(
        self, manifest_dir: str, name: str
    ) -> tuple[str | None, tuple[str, str, str | None] | None]:
        """Repository-relative path of a tester file, or (code, message, hint) why not."""
        if "\\" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name):
            return None, (
                "tester-file-path",
                f"{name!r} must be a relative path with '/' separators",
                "paths are relative to the manifest, e.g. testers/gcash.csv",
            )
        if not name.lower().endswith(TESTER_SUFFIXES):
            return None, (
                "tester-file-type",
                f"{name!r} is not a .csv or .txt file",
                "tester files are CSV or TXT with the user id in the first column",
            )
        joined = os.path.normpath(os.path.join(manifest_dir, name))
        if joined.startswith("..") or os.path.isabs(joined):
            return None, (
                "tester-file-path",
                f"{name!r} is outside the repository",
                "keep tester files in the release repository, e.g. testers/gcash.csv",
            )
        full = self.root / joined
        real = Path(os.path.realpath(full))
        if not real.is_relative_to(self.real_root):
            return None, (
                "tester-file-path",
                f"{name!r} leads outside the repository (symbolic link)",
                "replace the link by the file itself",
            )
        if not full.is_file():
            return None, (
                "tester-file-missing",
                f"tester file {PurePosixPath(joined)} not found",
                "paths are relative to the manifest's directory",
            )
        return PurePosixPath(joined).as_posix(), None

    def _tester_file(self, file: str) -> _TesterFile:
        parsed = self._tester_files.get(file)
        if parsed is None:
            try:
                ids, problems = parse_testers(file, (self.root / file).read_bytes())
            except OSError as exc:
                ids, problems = (), [_file_problem(file, "unreadable", str(exc))]
            parsed = self._tester_files[file] = _TesterFile(ids, tuple(problems))
        return parsed


# --------------------------------------------------------------------------------------------
# The repository
# --------------------------------------------------------------------------------------------


def load_repository(
    root: Path, paths: Sequence[Path] | None = None, *, workers: int | None = None
) -> LoadResult:
    """Load and validate the release repository at ``root``.

    ``paths`` (absolute, or relative to ``root``) narrows the check: manifests, directories
    (every manifest below), tester files (every manifest of that mini program), ``relctl.yaml``
    (every manifest: its rules apply to all), ``access.yaml``,
    or any other YAML file (checked against the schema its ``kind`` names, without semantic
    checks). ``relctl.yaml`` is always loaded and its problems always reported: every release
    depends on it. ``workers``: processes for parsing (None: 2 for large repositories).
    Raises ``ValueError`` for a path outside ``root`` and :class:`SchemaSetError` when relctl's
    own schemas are broken; never for anything in the repository.
    """
    root = Path(os.path.abspath(root))
    check_schemas()
    manifests, others, want_access = _select(root, paths)
    problems: list[Problem] = []
    config, config_problems = _load_config(root)
    problems.extend(config_problems)
    access: Access | None = None
    if want_access:
        access, access_problems = load_access(root)
        problems.extend(access_problems)
    documents = _check_documents(root, manifests, workers)
    checker = _ReleaseChecker(root, config)
    releases: list[Release] = []
    invalid: dict[str, tuple[Problem, ...]] = {}
    for doc in documents:
        key = release_key(doc.file)
        if key is None:
            depth_problem = _file_problem(
                doc.file,
                "manifest-path",
                f"{doc.file} is not at releases/<mini-program>/<target-app>.yaml",
                "move the manifest; tester files belong next to it as .csv or .txt",
            )
            problems.append(depth_problem)
            continue
        if doc.ok:
            release, found = checker.check(doc)
        else:
            release, found = None, list(doc.problems)
        problems.extend(found)
        if release is not None:
            releases.append(release)
        elif found:
            invalid[key] = tuple(sorted(set(found), key=lambda p: p.sort_key))
    for file in others:
        problems.extend(_check_standalone(root, file).problems)
    checked = [*manifests, *others, CONFIG_FILE]
    if want_access and (root / ACCESS_FILE).is_file():
        checked.append(ACCESS_FILE)
    return LoadResult(
        config=config,
        access=access,
        releases=tuple(sorted(releases, key=lambda r: r.key)),
        problems=tuple(sorted(set(problems), key=lambda p: p.sort_key)),
        invalid=MappingProxyType(dict(sorted(invalid.items()))),
        files=tuple(sorted(set(checked))),
    )


def _select(root: Path, paths: Sequence[Path] | None) -> tuple[list[str], list[str], bool]:
    """(manifest files, other YAML files, whether access.yaml is checked), repo-relative."""
    if paths is None:
        return _manifests_under(root, root / RELEASES_DIR), [], True
    manifests: set[str] = set()
    others: set[str] = set()
    want_access = False
    for given in paths:
        full = Path(os.path.abspath(given if given.is_absolute() else root / given))
        if not full.is_relative_to(root):
            raise ValueError(f"{given} is outside the repository {root}")
        rel = full.relative_to(root).as_posix()
        if full.is_dir():
            manifests.update(_manifests_under(root, full))
            if full == root:
                want_access = True
        elif rel == CONFIG_FILE:  # its rules apply to every manifest: check them all
            manifests.update(_manifests_under(root, root / RELEASES_DIR))
        elif rel == ACCESS_FILE:
            want_access = True
        elif rel.startswith(f"{RELEASES_DIR}/") and rel.lower().endswith(TESTER_SUFFIXES):
            parts = PurePosixPath(rel).parts
            if len(parts) > 2:
                manifests.update(m for m in _manifests_under(root, root / RELEASES_DIR / parts[1]))
        elif rel.startswith(f"{RELEASES_DIR}/"):
            manifests.add(rel)
        else:
            others.add(rel)
    return sorted(manifests), sorted(others), want_access


def _manifests_under(root: Path, directory: Path) -> list[str]:
    """Every ``*.yaml``/``*.yml`` below ``directory`` that belongs to ``releases/``."""
    found: list[str] = []
    for current, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        base = Path(current).relative_to(root).as_posix()
        if base != RELEASES_DIR and not base.startswith(f"{RELEASES_DIR}/"):
            continue
        found.extend(f"{base}/{name}" for name in files if name.endswith(MANIFEST_SUFFIXES))
    return sorted(found)


def _check_documents(root: Path, files: Sequence[str], workers: int | None) -> list[_Document]:
    if workers is None:
        workers = 2 if len(files) >= PARALLEL_THRESHOLD and (os.cpu_count() or 1) > 1 else 1
    if workers <= 1 or len(files) < 2:
        return _check_chunk(str(root), list(files))
    # The caller's process takes the first share; workers - 1 processes take the rest.
    share = -(-len(files) // workers)
    chunks = [list(files[i : i + share]) for i in range(0, len(files), share)]
    # fork is cheap (nothing to import again) but unsafe once threads run (the daemon):
    # then forkserver, which costs a fresh interpreter importing this module.
    method = "fork" if threading.active_count() == 1 and os.name == "posix" else "forkserver"
    context = multiprocessing.get_context(method)
    try:
        with ProcessPoolExecutor(max_workers=len(chunks) - 1, mp_context=context) as pool:
            futures = [pool.submit(_check_chunk, str(root), chunk) for chunk in chunks[1:]]
            results = _check_chunk(str(root), chunks[0])
            for future in futures:
                results.extend(future.result())
    except (OSError, BrokenProcessPool):  # no processes to be had: do it all here
        return _check_chunk(str(root), list(files))
    return results


def _check_chunk(root: str, files: list[str]) -> list[_Document]:
    """Parse and schema-check manifests (runs in the caller and in worker processes)."""
    return [_check_document(root, file, "Release") for file in files]


def _check_standalone(root: Path, file: str) -> _Document:
    """A YAML file outside the repository layout (e.g. ``examples/``): schema by ``kind``."""
    loaded = load_yaml((root / file).read_bytes()) if (root / file).is_file() else None
    if loaded is None or loaded.problem is not None:
        if loaded is None:
            return _Document(file, None, (_file_problem(file, "unreadable", "not a file"),))
        return _Document(file, None, (_from_yaml(file, loaded.problem),))
    kind = loaded.value.get("kind") if isinstance(loaded.value, dict) else None
    if kind not in SCHEMA_FILES:
        at = _Located(file, loaded.text)
        return _Document(
            file,
            None,
            (
                at.problem(
                    ["kind"],
                    "unknown-kind",
                    f"kind {kind!r} is not one of {', '.join(SCHEMA_FILES)}",
                    f"apiVersion: {API_VERSION} files have kind Release, Config or Access",
                ),
            ),
        )
    return _check_document(root, file, str(kind))

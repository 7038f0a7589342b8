"""Safe, strict YAML loading for the files people keep in a release repository.

``manifests`` calls :func:`load_yaml` for every manifest, ``relctl.yaml`` and ``access.yaml``,
and :func:`compose` again (only for files that failed validation) to find the line and column
of a field. Other modules that read YAML people wrote should use the same functions.

What "strict" means here (see ``docs/manifests.md``, "Loading rules"):

- YAML 1.2 core schema: only ``true``/``false`` (any case spelling of the spec) are booleans,
  ``yes``/``no``/``on``/``off`` stay strings, timestamps stay strings, ``010`` is ten,
  ``0o10`` is eight, ``1.10`` is a float (so an unquoted version is caught by the schema).
- Duplicate keys, non-string keys, anchors and aliases, tags other than the core ones,
  multiple documents, empty documents, ``.inf``/``.nan`` (not JSON), non-UTF-8 bytes and files
  over the size limit are errors with a line and column. A UTF-8 byte order mark is accepted.

Parsing is libyaml (``CSafeLoader``, ~8x faster than the pure Python loader) with a Python
resolver restricted to the core schema; the node tree is turned into plain ``dict``/``list``
values by a small converter instead of PyYAML's constructor machinery, which keeps valid
documents on a fast path. Nothing here raises on bad input: problems are returned as values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from controller.manifests.quoting import cut, quote

#: Size limit of one YAML file (manifest, relctl.yaml, access.yaml).
YAML_SIZE_LIMIT = 1024 * 1024
#: Deepest nesting of mappings and sequences accepted (libyaml itself stops at 1000).
MAX_DEPTH = 64
#: Longest integer accepted, in characters (Python's own limit for decimal is 4300 digits;
#: 1000 hexadecimal digits stay well below it once converted).
MAX_INT_DIGITS = 1000

STR_TAG = "tag:yaml.org,2002:str"
INT_TAG = "tag:yaml.org,2002:int"
FLOAT_TAG = "tag:yaml.org,2002:float"
BOOL_TAG = "tag:yaml.org,2002:bool"
NULL_TAG = "tag:yaml.org,2002:null"
MAP_TAG = "tag:yaml.org,2002:map"
SEQ_TAG = "tag:yaml.org,2002:seq"

#: Words YAML 1.1 reads as booleans; under YAML 1.2 they are strings.
YAML11_BOOLEANS = frozenset(
    w.lower() for w in ("y", "n", "yes", "no", "on", "off", "Y", "N", "YES", "NO", "ON", "OFF")
)

_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")

# The YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1023-core-schema), one regex.
_CORE_SCALAR = re.compile(
    r"""(?P<null>~|null|Null|NULL)
      |(?P<bool>true|True|TRUE|false|False|FALSE)
      |(?P<int>[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)
      |(?P<float>[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?
                 |[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))""",
    re.VERBOSE | re.ASCII,  # only ever used with fullmatch
)
_CORE_FIRST_CHARS = frozenset("~nNtTfF0123456789+-.")
_CORE_TAGS = {"null": NULL_TAG, "bool": BOOL_TAG, "int": INT_TAG, "float": FLOAT_TAG}


@dataclass(frozen=True)
class YamlProblem:
    """One reason a YAML file could not be read. ``line``/``column`` are 1-based."""

    line: int
    column: int
    code: str
    message: str
    hint: str | None = None


@dataclass(frozen=True)
class Loaded:
    """The result of :func:`load_yaml`: the value, or the problem that stopped loading."""

    value: Any = None
    problem: YamlProblem | None = None
    #: The decoded text (without BOM); None when the bytes could not be decoded.
    text: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


class _LoadError(Exception):
    """Internal: raised by the converter, turned into a :class:`YamlProblem`."""

    def __init__(self, node: Node, code: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.problem = YamlProblem(
            node.start_mark.line + 1, node.start_mark.column + 1, code, message, hint
        )


class StrictLoader(yaml.CSafeLoader):
    """libyaml's safe loader restricted to the YAML 1.2 core schema.

    ``yaml.compose(text, Loader=StrictLoader)`` gives the node tree with core-schema tags;
    ``yaml.load`` also works (duplicate keys, aliases and non-core tags raise
    ``yaml.constructor.ConstructorError``), but :func:`load_yaml` is the faster, non-raising way.
    """

    #: Own registry (PyYAML copies the parent's on first add; we start from nothing).
    yaml_implicit_resolvers: dict[Any, Any] = {}

    # libyaml's composer calls these two around every node, for path resolvers, which the
    # core schema has none of. PyYAML's versions are Python functions that return at once:
    # two Python calls per node, ~7% of parsing a manifest. Built-in callables that take the
    # same arguments and do nothing in C stand in for them.
    descend_resolver: Any = staticmethod(slice)  # (parent, index) -> a slice, dropped
    ascend_resolver: Any = staticmethod(tuple)  # () -> (), dropped

    def resolve(self, kind: type[Node], value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is ScalarNode:
            if implicit[0]:
                if value == "":
                    return NULL_TAG
                if value[0] in _CORE_FIRST_CHARS:
                    match = _CORE_SCALAR.fullmatch(value)
                    if match is not None and match.lastgroup is not None:
                        return _CORE_TAGS[match.lastgroup]
            return STR_TAG
        if kind is SequenceNode:
            return SEQ_TAG
        return MAP_TAG

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        if node in self.constructed_objects:
            raise yaml.constructor.ConstructorError(
                None, None, "aliases are not allowed", node.start_mark
            )
        return super().construct_object(node, deep=deep)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, ScalarNode):
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {quote(key_node.value)}", key_node.start_mark
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def _construct_core_scalar(self, node: ScalarNode) -> Any:
        try:
            return _scalar(node)
        except _LoadError as exc:
            raise yaml.constructor.ConstructorError(
                None, None, exc.problem.message, node.start_mark
            ) from None


for _tag in (INT_TAG, FLOAT_TAG, BOOL_TAG, NULL_TAG):
    StrictLoader.add_constructor(_tag, StrictLoader._construct_core_scalar)
for _tag in ("binary", "set", "omap", "pairs", "timestamp"):
    StrictLoader.yaml_constructors.pop(f"tag:yaml.org,2002:{_tag}", None)


def decode(data: bytes) -> tuple[str | None, YamlProblem | None]:
    """UTF-8 text of ``data`` without a byte order mark, or the located decoding problem."""
    if data.startswith(_UTF16_BOMS):
        return None, YamlProblem(
            1, 1, "encoding", "the file is UTF-16 (byte order mark), not UTF-8", "save as UTF-8"
        )
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM) :]
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        column = len(data[line_start : exc.start].decode("utf-8", "replace")) + 1
        bad = data[exc.start : exc.start + 1].hex()
        return None, YamlProblem(
            line, column, "encoding", f"invalid UTF-8 byte 0x{bad}", "save the file as UTF-8"
        )


def too_large(size: int, limit: int) -> YamlProblem | None:
    """The size-limit problem for a file of ``size`` bytes, if it is over ``limit``."""
    if size <= limit:
        return None
    return YamlProblem(
        1,
        1,
        "too-large",
        f"the file is {size} bytes; the limit is {limit} bytes ({limit // 1024} KiB)",
        "split it, or move large data out of the repository",
    )


def load_yaml(data: bytes, *, limit: int = YAML_SIZE_LIMIT) -> Loaded:
    """Parse one single-document YAML file strictly; never raises on bad input."""
    size_problem = too_large(len(data), limit)
    if size_problem is not None:
        return Loaded(problem=size_problem)
    text, problem = decode(data)
    if text is None:
        return Loaded(problem=problem)
    if "&" in text or "*" in text:
        alias = _find_anchor_or_alias(text)
        if alias is not None:
            return Loaded(problem=alias, text=text)
    try:
        node = compose(text)
    except yaml.MarkedYAMLError as exc:
        return Loaded(problem=_marked_problem(exc, text), text=text)
    except yaml.YAMLError as exc:  # pragma: no cover - libyaml always gives a mark
        return Loaded(problem=YamlProblem(1, 1, "yaml-syntax", str(exc)), text=text)
    if node is None or (isinstance(node, ScalarNode) and node.tag == NULL_TAG):
        return Loaded(
            problem=YamlProblem(
                1, 1, "empty", "the file is empty (no YAML document)", "see examples/"
            ),
            text=text,
        )
    try:
        value = to_python(node)
    except _LoadError as exc:
        return Loaded(problem=exc.problem, text=text)
    return Loaded(value=value, text=text)


def compose(text: str) -> Node | None:
    """The node tree (tags resolved by the core schema, 0-based marks); raises YAMLError."""
    loader = StrictLoader(text)
    try:
        node: Node | None = loader.get_single_node()
        return node
    finally:
        loader.dispose()


def to_python(node: Node, depth: int = 0) -> Any:
    """Plain JSON-like value of a composed node; raises ``_LoadError`` on what JSON lacks."""
    if depth > MAX_DEPTH:
        raise _LoadError(node, "too-deep", f"nesting deeper than {MAX_DEPTH} levels")
    cls = node.__class__
    if cls is ScalarNode:
        if node.tag == STR_TAG:  # the common case, inlined
            return node.value
        return _scalar(node)  # type: ignore[arg-type]
    if cls is MappingNode:
        if node.tag != MAP_TAG:
            raise _unsupported_tag(node)
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.__class__ is not ScalarNode or key_node.tag != STR_TAG:
                raise _LoadError(
                    key_node,
                    "key-type",
                    "mapping keys must be strings",
                    "quote the key" if key_node.__class__ is ScalarNode else None,
                )
            key = key_node.value
            if key in result:
                raise _LoadError(
                    key_node,
                    "duplicate-key",
                    f"duplicate key {quote(key)}",
                    "each key may appear once in a mapping; remove one of them",
                )
            if value_node.__class__ is ScalarNode and value_node.tag == STR_TAG:
                result[key] = value_node.value
            else:
                result[key] = to_python(value_node, depth + 1)
        return result
    if node.tag != SEQ_TAG:
        raise _unsupported_tag(node)
    return [to_python(item, depth + 1) for item in node.value]


def _scalar(node: ScalarNode) -> Any:
    tag = node.tag
    value: str = node.value
    if tag == STR_TAG:
        return value
    if tag == NULL_TAG and (value == "" or value in ("~", "null", "Null", "NULL")):
        return None
    if tag == BOOL_TAG and value in ("true", "True", "TRUE", "false", "False", "FALSE"):
        return value.lower() == "true"
    match = _CORE_SCALAR.fullmatch(value)
    kind = match.lastgroup if match else None
    if tag == INT_TAG and kind == "int":
        if len(value) > MAX_INT_DIGITS:  # int() refuses more digits; nothing needs them
            raise _LoadError(
                node,
                "number-too-large",
                f"a number of {len(value):,} digits is too large",
                f"numbers have at most {MAX_INT_DIGITS} digits; quote it if it is text",
            )
        if value.startswith("0o"):
            return int(value[2:], 8)
        if value.startswith("0x"):
            return int(value[2:], 16)
        return int(value, 10)
    if tag == FLOAT_TAG and kind in ("int", "float"):
        lowered = value.lower()
        number = float(value) if "inf" not in lowered and "nan" not in lowered else math.inf
        if not math.isfinite(number):  # .inf, .nan, and 1e999 (too large for a float)
            raise _LoadError(
                node,
                "non-finite-number",
                f"{quote(value, bare=True)} is not a JSON number",
                "JSON has no infinity or NaN; use a finite number or a quoted string",
            )
        return number
    if tag in (NULL_TAG, BOOL_TAG, INT_TAG, FLOAT_TAG):
        raise _LoadError(node, "tag", f"{quote(value)} is not a valid {tag.rsplit(':', 1)[-1]}")
    raise _unsupported_tag(node)


def _unsupported_tag(node: Node) -> _LoadError:
    return _LoadError(
        node,
        "tag",
        f"unsupported tag {quote(node.tag, bare=True)}",
        "only plain YAML values are allowed: strings, numbers, true/false, null, maps, lists",
    )


def _marked_problem(exc: yaml.MarkedYAMLError, text: str) -> YamlProblem:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else 1
    column = mark.column + 1 if mark is not None else 1
    problem = exc.problem or "invalid YAML"
    if "single document" in f"{exc.context} {problem}":
        return YamlProblem(
            line,
            column,
            "multiple-documents",
            "the file holds more than one YAML document",
            "one manifest per file: remove the '---' separator and what follows it",
        )
    context = f"{exc.context}: " if exc.context else ""
    hint = None
    lines = text.splitlines()
    if 0 < line <= len(lines) and lines[line - 1][column - 1 : column] == "\t":
        hint = "indent with spaces, not tabs"
    return YamlProblem(line, column, "yaml-syntax", cut(f"{context}{problem}"), hint)


def _find_anchor_or_alias(text: str) -> YamlProblem | None:
    """The first anchor (``&a``) or alias (``*a``) in ``text``; syntax errors are left for later."""
    try:
        for event in _events(text):
            if isinstance(event, yaml.AliasEvent):
                return _alias_problem(event, "alias")
            if getattr(event, "anchor", None) is not None:
                return _alias_problem(event, "anchor")
    except yaml.YAMLError:
        return None
    return None


def _events(text: str) -> Iterator[yaml.Event]:
    loader = StrictLoader(text)
    try:
        while loader.check_event():
            event = loader.get_event()
            if event is not None:
                yield event
    finally:
        loader.dispose()


def _alias_problem(event: yaml.Event, what: str) -> YamlProblem:
    mark = event.start_mark
    return YamlProblem(
        mark.line + 1 if mark else 1,
        mark.column + 1 if mark else 1,
        "alias",
        f"YAML {what}s are not allowed",
        "write the value out in full; anchors and aliases hide what a reviewer approves",
    )


def scalar_source(node: Node | None) -> str | None:
    """The source text of a plain (unquoted) scalar node, else None."""
    if isinstance(node, ScalarNode) and not node.style:  # libyaml: "" for plain
        return str(node.value)
    return None


def find_node(root: Node, path: Sequence[str | int]) -> tuple[Node | None, Node]:
    """(key node, value node) at ``path`` in a composed tree, as deep as the path exists.

    The key node is None for the root and for sequence items.
    """
    key_node: Node | None = None
    node = root
    for part in path:
        if isinstance(node, MappingNode) and isinstance(part, str):
            for k, v in node.value:
                if isinstance(k, ScalarNode) and k.value == part:
                    key_node, node = k, v
                    break
            else:
                return key_node, node
        elif isinstance(node, SequenceNode) and isinstance(part, int) and part < len(node.value):
            key_node, node = None, node.value[part]
        else:
            return key_node, node
    return key_node, node

"""Tests of ``controller.manifests.yamlload``: strict YAML 1.2 loading, never raising."""

from __future__ import annotations

import time

import pytest
import yaml

from controller.manifests.yamlload import (
    MAX_DEPTH,
    YAML_SIZE_LIMIT,
    StrictLoader,
    compose,
    find_node,
    load_yaml,
)


def value(text: str) -> object:
    loaded = load_yaml(text.encode())
    assert loaded.problem is None, loaded.problem
    return loaded.value


def problem(data: str | bytes) -> tuple[int, int, str]:
    loaded = load_yaml(data.encode() if isinstance(data, str) else data)
    assert loaded.problem is not None, loaded.value
    return loaded.problem.line, loaded.problem.column, loaded.problem.code


@pytest.mark.parametrize(
    ("scalar", "expected"),
    [
        ("true", True),
        ("False", False),
        ("TRUE", True),
        ("yes", "yes"),
        ("no", "no"),
        ("on", "on"),
        ("off", "off"),
        ("y", "y"),
        ("010", 10),
        ("0o10", 8),
        ("0x1f", 31),
        ("-3", -3),
        ("1_000", "1_000"),
        ("1.10", 1.1),
        (".5", 0.5),
        ("1e3", 1000.0),
        ("2024-01-01", "2024-01-01"),
        ("2024-01-01T10:00:00Z", "2024-01-01T10:00:00Z"),
        ("12:30:45", "12:30:45"),
        ("~", None),
        ("null", None),
        ("", None),
        ('"1.10"', "1.10"),
        ("!!str 1.10", "1.10"),
        ("!!int 12", 12),
        ("<<", "<<"),
    ],
)
def test_scalars_follow_the_yaml_1_2_core_schema(scalar: str, expected: object) -> None:
    assert value(f"a: {scalar}\n") == {"a": expected}
    assert type(value(f"a: {scalar}\n")["a"]) is type(expected)  # type: ignore[index]


def test_strict_loader_also_works_through_yaml_load() -> None:
    assert yaml.load("a: yes\nb: 010\nc: 2024-01-01\n", Loader=StrictLoader) == {
        "a": "yes",
        "b": 10,
        "c": "2024-01-01",
    }
    for bad in ("a: 1\na: 2\n", "a: &x 1\nb: *x\n", "a: !!timestamp 2024-01-01\n"):
        with pytest.raises(yaml.constructor.ConstructorError):
            yaml.load(bad, Loader=StrictLoader)


def test_duplicate_keys_are_located_at_the_second_key() -> None:
    assert problem("a: 1\nb:\n  c: 1\n  c: 2\n") == (4, 3, "duplicate-key")


def test_anchors_and_aliases_are_refused() -> None:
    assert problem("a: &x 1\n") == (1, 4, "alias")
    assert problem("a: [1]\nb: &y {c: 1}\nd: *y\n") == (2, 4, "alias")


def test_an_alias_bomb_is_refused_fast() -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for n in range(1, 10):
        prev, cur = chr(ord("a") + n - 1), chr(ord("a") + n)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    started = time.perf_counter()
    assert problem("\n".join(lines))[2] == "alias"
    assert time.perf_counter() - started < 1.0


def test_an_ampersand_in_text_is_not_an_anchor() -> None:
    assert value('a: "Shop & Save"\nb: rock & roll *\n') == {
        "a": "Shop & Save",
        "b": "rock & roll *",
    }


def test_multiple_documents_are_refused() -> None:
    assert problem("a: 1\n---\nb: 2\n") == (2, 1, "multiple-documents")


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_empty_files_are_refused(text: str) -> None:
    assert problem(text)[2] == "empty"


def test_utf8_bom_is_accepted_and_columns_ignore_it() -> None:
    loaded = load_yaml(b"\xef\xbb\xbfa: 1\r\nb: [\r\n")
    assert loaded.problem is not None and loaded.problem.line == 3
    assert load_yaml(b"\xef\xbb\xbfa: 1\r\n").value == {"a": 1}


def test_non_utf8_bytes_are_located() -> None:
    assert problem(b"a: 1\nb: caf\xe9\n") == (2, 7, "encoding")
    assert problem(b"\xff\xfea\x00") == (1, 1, "encoding")


def test_files_over_the_size_limit_are_refused_before_parsing() -> None:
    assert problem(b"a: 1\n" + b"#" * YAML_SIZE_LIMIT) == (1, 1, "too-large")


def test_tabs_get_a_hint() -> None:
    loaded = load_yaml(b"a:\n\tb: 1\n")
    assert loaded.problem is not None and loaded.problem.hint == "indent with spaces, not tabs"


def test_non_string_keys_and_unknown_tags_are_refused() -> None:
    assert problem("1: a\n") == (1, 1, "key-type")
    assert problem("? [a]\n: b\n")[2] == "key-type"
    assert problem("a: !!binary aGk=\n") == (1, 4, "tag")
    assert problem("a: !custom x\n") == (1, 4, "tag")
    assert problem("a: !!int x\n") == (1, 4, "tag")


@pytest.mark.parametrize("number", [".inf", "-.Inf", ".nan"])
def test_non_finite_numbers_are_refused(number: str) -> None:
    assert problem(f"a: {number}\n") == (1, 4, "non-finite-number")


def test_deep_nesting_is_refused_without_recursion_errors() -> None:
    assert problem("[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5))[2] == "too-deep"
    assert problem("[" * 5000)[2] == "yaml-syntax"


def test_find_node_locates_keys_values_and_items() -> None:
    root = compose("a:\n  b: [x, y]\n")
    assert root is not None
    key, node = find_node(root, ["a", "b", 1])
    assert key is None and node.start_mark.line == 1 and node.start_mark.column == 9
    key, node = find_node(root, ["a", "b"])
    assert key is not None and key.start_mark.column == 2
    _, deepest = find_node(root, ["a", "missing", 3])
    assert deepest.start_mark.line == 1

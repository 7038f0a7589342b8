"""Tests of ``schemas/``: meta-schema validity, stable ids, documentation on every property,
no silent typos, every example in ``examples/`` valid against its schema, and the copy shipped
inside the package (``controller/schemas/``) identical to it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from controller.manifests import SCHEMA_FILES, SchemaSetError, load_repository, parse_testers
from controller.manifests import schema as schema_module
from controller.manifests.yamlload import load_yaml
from controller.schemas import SCHEMA_DIR, schema_names

PROJECT = Path(__file__).parent.parent
SCHEMAS = PROJECT / "schemas"
EXAMPLES = PROJECT / "examples"
NAMES = sorted(SCHEMA_FILES.values())


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / name).read_text())
    return loaded


def subschemas(node: Any, where: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every (location, schema) that describes a property or an item."""
    if not isinstance(node, dict):
        return
    for name, sub in node.get("properties", {}).items():
        yield f"{where}/properties/{name}", sub
        yield from subschemas(sub, f"{where}/properties/{name}")
    for keyword in ("items", "additionalProperties", "propertyNames"):
        sub = node.get(keyword)
        if isinstance(sub, dict):
            if "$ref" not in sub:
                yield f"{where}/{keyword}", sub
            yield from subschemas(sub, f"{where}/{keyword}")
    for name, sub in node.get("$defs", {}).items():
        yield f"{where}/$defs/{name}", sub
        yield from subschemas(sub, f"{where}/$defs/{name}")


def test_the_schemas_relctl_loads_are_the_published_ones_byte_for_byte() -> None:
    published = {path.name: path.read_bytes() for path in SCHEMAS.glob("*.schema.json")}
    packaged = {name: (SCHEMA_DIR / name).read_bytes() for name in schema_names()}
    differ = sorted(
        name
        for name in published.keys() | packaged.keys()
        if published.get(name) != packaged.get(name)
    )
    assert differ == [], (
        f"controller/schemas/ (the copy relctl loads and ships) differs from schemas/ in {differ}: "
        "edit schemas/, then run `make schemas` to copy it into the package"
    )


@pytest.mark.parametrize("name", NAMES)
def test_schema_is_valid_draft_2020_12_with_a_stable_id(name: str) -> None:
    document = schema(name)
    jsonschema.Draft202012Validator.check_schema(document)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert document["$id"] == f"https://relctl.dev/schemas/{name}"
    assert document["title"] and document["description"]


@pytest.mark.parametrize("name", NAMES)
def test_every_property_has_a_title_and_a_description(name: str) -> None:
    missing = [
        where
        for where, sub in subschemas(schema(name))
        if not (sub.get("title") and sub.get("description"))
    ]
    assert missing == []


@pytest.mark.parametrize("name", NAMES)
def test_every_object_with_fields_refuses_unknown_fields(name: str) -> None:
    open_objects = [
        where
        for where, sub in [("#", schema(name)), *subschemas(schema(name))]
        if "properties" in sub
        and sub.get("additionalProperties") is not False
        and where.split("/")[-1] != "then"
    ]
    assert open_objects == []


def test_configuration_is_the_one_free_form_object() -> None:
    configuration = schema("release.schema.json")["properties"]["spec"]["properties"][
        "configuration"
    ]
    assert configuration["type"] == "object" and "additionalProperties" not in configuration


EXAMPLE_KINDS = {
    "minimal.yaml": "Release",
    "pilot.yaml": "Release",
    "grayscale.yaml": "Release",
    "cancel.yaml": "Release",
    "supersede.yaml": "Release",
    "paused.yaml": "Release",
    "rollout.yaml": "Release",
    "relctl.yaml": "Config",
    "access.yaml": "Access",
}


def test_every_example_is_listed() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted(EXAMPLE_KINDS)


@pytest.mark.parametrize(("name", "kind"), sorted(EXAMPLE_KINDS.items()))
def test_example_is_valid_against_its_schema(name: str, kind: str) -> None:
    text = (EXAMPLES / name).read_text()
    schema_file = SCHEMA_FILES[kind]
    assert text.startswith(f"# yaml-language-server: $schema=../schemas/{schema_file}\n")
    loaded = load_yaml(text.encode())
    assert loaded.problem is None
    validator = jsonschema.Draft202012Validator(
        schema(schema_file), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    assert list(validator.iter_errors(loaded.value)) == []
    assert loaded.value["kind"] == kind


def test_examples_also_pass_relctl_validate_by_path() -> None:
    result = load_repository(PROJECT, sorted(EXAMPLES.glob("*.yaml")))
    assert result.ok and result.problems == ()


def test_example_tester_files_parse_cleanly() -> None:
    for path in sorted((EXAMPLES / "testers").iterdir()):
        ids, problems = parse_testers(path.name, path.read_bytes())
        assert problems == [] and ids and all(len(i) == 16 for i, _, _ in ids)


def test_a_dangling_ref_fails_at_start_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, broken)
    document = schema("release.schema.json")
    document["properties"]["metadata"]["properties"]["miniProgram"]["$ref"] = "#/$defs/nope"
    (broken / "release.schema.json").write_text(json.dumps(document))
    monkeypatch.setattr(schema_module, "SCHEMA_DIR", broken)
    schema_module._schemas.cache_clear()
    try:
        with pytest.raises(SchemaSetError, match="nope"):
            schema_module.check_schemas()
    finally:
        schema_module._schemas.cache_clear()


def test_an_invalid_schema_fails_at_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, broken)
    document = schema("access.schema.json")
    document["properties"]["members"]["type"] = "list"
    (broken / "access.schema.json").write_text(json.dumps(document))
    monkeypatch.setattr(schema_module, "SCHEMA_DIR", broken)
    schema_module._schemas.cache_clear()
    try:
        with pytest.raises(SchemaSetError, match=r"access\.schema\.json"):
            schema_module.check_schemas()
    finally:
        schema_module._schemas.cache_clear()


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_every_ref_in_the_shipped_schemas_resolves_in_the_reference_validator() -> None:
    """Start-up compiles the schemas with jsonschema-rs, which resolves the references it
    uses; this walks every ``$ref``, used or not, through ``referencing`` (the registry the
    reference validator explains errors with)."""
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012

    documents = [schema(name) for name in NAMES]
    registry: Registry[Any] = Registry().with_resources(
        (doc["$id"], DRAFT202012.create_resource(doc)) for doc in documents
    )
    refs = 0
    for document in documents:
        resolver = registry.resolver(base_uri=document["$id"])
        for ref in _refs(document):
            resolver.lookup(ref)  # raises on a dangling reference
            refs += 1
    assert refs > 10

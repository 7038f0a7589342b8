"""The JSON Schemas of relctl's files: loaded, checked and compiled once per process.

:func:`check_schemas` is the start-up check (every schema valid against Draft 2020-12, every
``$ref`` resolvable); ``documents`` takes the fast validator (jsonschema-rs) and, only for a
document that failed, the reference validator (jsonschema) that explains each error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import jsonschema_rs

from controller.schemas import SCHEMA_DIR as PACKAGED_SCHEMAS

#: The schemas, shipped inside the package (``controller/schemas/``, a copy of ``schemas/``).
SCHEMA_DIR = PACKAGED_SCHEMAS
SCHEMA_BASE = "https://relctl.dev/schemas/"
#: Schema file per manifest ``kind``.
SCHEMA_FILES = {
    "Release": "release.schema.json",
    "Config": "config.schema.json",
    "Access": "access.schema.json",
}


class SchemaSetError(RuntimeError):
    """The schemas shipped with relctl are broken (a bug in relctl, not in the repository)."""


@dataclass(frozen=True)
class _Schemas:
    documents: Mapping[str, dict[str, Any]]
    fast: Mapping[str, Any]  # kind -> jsonschema_rs validator


@cache
def _schemas() -> _Schemas:
    """Load, check and compile the schema set once per process.

    Checks every schema against the Draft 2020-12 meta-schema and compiles it with
    jsonschema-rs, which resolves every ``$ref`` now (a dangling one raises), so a broken
    schema fails at start-up rather than at the first document using it. The reference
    validator (``jsonschema``, with ``referencing``'s registry) is built on first use only:
    importing it costs ~0.7 s (its format checkers), which only runs that find a problem
    should pay.
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
    return _Schemas(documents=documents, fast=fast)


@cache
def reference_validator(kind: str) -> Any:
    """The one reused ``jsonschema`` validator of a kind (format checker on)."""
    import jsonschema  # type: ignore[import-untyped]  # no stubs installed
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012

    schemas = _schemas()
    registry: Registry[Any] = Registry().with_resources(
        (doc["$id"], DRAFT202012.create_resource(doc)) for doc in schemas.documents.values()
    )
    return jsonschema.Draft202012Validator(
        schemas.documents[kind],
        registry=registry,
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )


def check_schemas() -> None:
    """Raise :class:`SchemaSetError` if the schema set is broken (call at start-up)."""
    _schemas()


def schema_document(kind: str) -> dict[str, Any]:
    """The JSON Schema of a manifest ``kind`` (Release, Config, Access)."""
    return _schemas().documents[kind]

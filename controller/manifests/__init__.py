"""Load and validate a release repository: ``relctl.yaml``, ``access.yaml`` and ``releases/``.

``reconcile`` calls :func:`load_repository` once per pass; ``relctl validate`` calls it and
formats :attr:`LoadResult.problems`. Nothing here raises on bad input: every problem is a
located :class:`Problem` value (file, line, column, field path, code, message, hint).

Pipeline per YAML file, one module per job:

1. ``yamlload``: strict YAML 1.2 loading (duplicate keys, aliases, multiple documents... are
   errors);
2. ``documents`` with ``schema``: the JSON Schema in ``schemas/``; jsonschema-rs decides valid
   / invalid (fast path); only for invalid documents, jsonschema (the reference validator)
   explains every error and ``problems`` finds each error's line and column;
3. ``config`` (``relctl.yaml``, ``access.yaml``), ``testers`` (tester files) and ``releases``
   (semantic checks the schema cannot express: path matches metadata, target app declared,
   tester files and ids, tester limit, grayscale steps, cancel with grayscale);
4. ``repository``: finds the files and gathers everything into a :class:`LoadResult`;
5. ``cache``: per-manifest outcomes by blob id (:class:`ValidationCache`), so that a file
   whose content did not change is not parsed or checked again.

This module only re-exports the public API.
"""

from __future__ import annotations

from controller.manifests.cache import CacheStats, ValidationCache
from controller.manifests.config import (
    ACCESS_FILE,
    CONFIG_FILE,
    Access,
    Member,
    Role,
    load_access,
    load_config,
)
from controller.manifests.documents import problem_at
from controller.manifests.problems import Problem, Severity, field_path
from controller.manifests.releases import (
    MANIFEST_SUFFIXES,
    RELEASES_DIR,
    enumerate_inline,
    release_key,
)
from controller.manifests.repository import PARALLEL_THRESHOLD, LoadResult, load_repository
from controller.manifests.schema import (
    SCHEMA_BASE,
    SCHEMA_DIR,
    SCHEMA_FILES,
    SchemaSetError,
    check_schemas,
    schema_document,
)
from controller.manifests.testers import TESTER_SUFFIXES, TESTERS_SIZE_LIMIT, parse_testers
from controller.manifests.yamlload import YAML_SIZE_LIMIT

__all__ = [
    "ACCESS_FILE",
    "CONFIG_FILE",
    "MANIFEST_SUFFIXES",
    "PARALLEL_THRESHOLD",
    "RELEASES_DIR",
    "SCHEMA_BASE",
    "SCHEMA_DIR",
    "SCHEMA_FILES",
    "TESTERS_SIZE_LIMIT",
    "TESTER_SUFFIXES",
    "YAML_SIZE_LIMIT",
    "Access",
    "CacheStats",
    "LoadResult",
    "Member",
    "Problem",
    "Role",
    "SchemaSetError",
    "Severity",
    "ValidationCache",
    "check_schemas",
    "enumerate_inline",
    "field_path",
    "load_access",
    "load_config",
    "load_repository",
    "parse_testers",
    "problem_at",
    "release_key",
    "schema_document",
]

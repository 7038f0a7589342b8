"""The JSON Schemas of relctl's files, shipped inside the package as data.

``manifests`` reads them from here through ``importlib.resources``, so an installed wheel
validates without a checkout. These files are copies: the top-level ``schemas/`` is the
published copy people edit and editors read (``# yaml-language-server: $schema=...``).
``make schemas`` copies it here, and ``tests/test_schemas.py`` fails while the two differ.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

#: The directory of the ``*.schema.json`` files, wherever the package is installed.
SCHEMA_DIR: Traversable = files(__name__)


def schema_names() -> list[str]:
    """The file names of the shipped schemas, sorted."""
    return sorted(e.name for e in SCHEMA_DIR.iterdir() if e.name.endswith(".schema.json"))

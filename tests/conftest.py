"""Settings every test module shares: the Hypothesis profiles, and slow tests first.

``default`` is quick, for the edit-and-test loop; ``ci`` is thorough (many more examples, and
a failure prints the blob that reproduces it). ``ci`` is loaded when ``HYPOTHESIS_PROFILE=ci``
or, unless ``HYPOTHESIS_PROFILE`` says otherwise, when ``CI`` is set (CI systems set it;
``.ci/run`` asks for it explicitly). This holds for ``make test`` and a bare ``pytest`` alike,
and ``pytest --hypothesis-profile=NAME`` still wins. Tests set no example counts of their own.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

settings.register_profile("default", max_examples=60, deadline=None)
settings.register_profile("ci", max_examples=400, deadline=None, print_blob=True)

CI = os.environ.get("CI", "").lower() not in ("", "0", "false")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if CI else "default"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` first (stable otherwise): under ``pytest -n 2`` they then run
    beside the quick ones instead of alone at the end. ``-m "not slow"`` leaves them out."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)

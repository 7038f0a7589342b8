"""Settings every test module shares.

- The Hypothesis profiles: ``default`` is quick, for the edit-and-test loop; ``ci`` is
  thorough (many more examples, and a failure prints the blob that reproduces it). ``ci`` is
  loaded when ``HYPOTHESIS_PROFILE=ci`` or, unless ``HYPOTHESIS_PROFILE`` says otherwise, when
  ``CI`` is set (``.ci/run`` asks for it explicitly); ``pytest --hypothesis-profile=NAME``
  still wins. Tests set no example counts of their own, except a contract test whose every
  example is an HTTP request (it says so).
- Tests marked ``slow`` run first: under ``pytest -n 2`` they then run beside the quick ones.
- The controller's end-to-end scenarios (every test module that builds a ``controller_world``)
  run twice: with the simulator in-process, and over the HTTP contract (``relctl platform
  serve``'s application on 127.0.0.1, the ``HttpPlatform`` adapter). A scenario that only
  makes sense in-process says so with ``@pytest.mark.inprocess_only``.
"""

from __future__ import annotations

import os

import controller_world
import pytest
from hypothesis import settings

settings.register_profile("default", max_examples=60, deadline=None)
settings.register_profile("ci", max_examples=400, deadline=None, print_blob=True)

CI = os.environ.get("CI", "").lower() not in ("", "0", "false")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if CI else "default"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` first (stable otherwise). ``-m "not slow"`` leaves them out."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if getattr(metafunc.module, "make_world", None) is not controller_world.make_world:
        return
    transports = ["inprocess"]
    if metafunc.definition.get_closest_marker("inprocess_only") is None:
        transports.append("http")
    metafunc.fixturenames.append("platform_transport")
    metafunc.parametrize("platform_transport", transports, indirect=True)


@pytest.fixture
def platform_transport(request: pytest.FixtureRequest) -> str:
    """How ``make_world`` connects the controller to the simulator in this test."""
    transport: str = request.param
    controller_world.TRANSPORT = transport
    return transport

"""Suite-wide pytest hooks.

The controller's end-to-end scenarios (every test module that builds a ``controller_world``)
run twice: with the simulator in-process, and over the HTTP contract (``relctl platform
serve``'s application on 127.0.0.1, the ``HttpPlatform`` adapter). A scenario that only makes
sense in-process (it hands the simulator's path to child processes) says so with
``@pytest.mark.inprocess_only``.
"""

from __future__ import annotations

import controller_world
import pytest


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

"""The platform boundary: adapter protocol, typed errors, and the embedded simulator.

``open_platform(spec)`` turns an adapter spec (``relctl.yaml``'s ``platform:`` or the CLI's
``--platform``) into a :class:`~controller.platform.protocol.Platform`. Called by
``controller.cli``, ``controller.daemon`` and the demo.
"""

from __future__ import annotations

from pathlib import Path

from controller.platform.protocol import Platform

#: Adapter schemes ``open_platform`` understands, with a one-line description each.
SCHEMES = {"sim": "embedded platform simulator over one SQLite file: sim:PATH"}


def open_platform(spec: str) -> Platform:
    """Open the platform adapter named by ``spec``.

    ``sim:PATH`` opens the simulator database at ``PATH``, e.g. ``sim:.relctl/platform.db``;
    it must exist (``relctl platform --db PATH init`` creates it), so a typo in the path is an
    error, never a new empty platform. Raises ValueError for a spec that names no known
    adapter, PlatformUnusable for a path that holds no usable simulator database.
    """
    scheme, sep, rest = spec.partition(":")
    if not sep or scheme not in SCHEMES:
        known = "; ".join(SCHEMES.values())
        raise ValueError(f"unknown platform adapter {spec!r}: expected one of: {known}")
    if scheme == "sim":
        if not rest.strip():
            raise ValueError("sim: needs a database path, e.g. sim:.relctl/platform.db")
        from controller.platform.sim import Simulator

        return Simulator(Path(rest), create=False)
    raise AssertionError(scheme)  # pragma: no cover - SCHEMES and the branches agree

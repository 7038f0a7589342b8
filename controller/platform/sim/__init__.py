"""The embedded platform simulator, the default adapter: one package, one module per job.

``Simulator`` (``simulator``) implements :class:`~controller.platform.protocol.Platform` over one
SQLite file; its base class ``PlatformConsole`` (``console``) plays the platform side (target
apps, uploads, reviews, metrics, clock, faults). The other modules, one job each:

* ``actions``: what someone can do to a release, as small values;
* ``engine``: the pure effect of an action on a release snapshot (the platform's rules at work,
  from :mod:`controller.platform.rules`), shared with ``controller.preview``;
* ``records``: the stored state of one release and its time-driven progress;
* ``tables``: typed rows (apps, versions, releases, settings) over a connection;
* ``store``: the SQLite file: schema, transactions, locking;
* ``model``: settings and pure helpers (compatibility matrix, grayscale buckets, QR codes);
* ``cursor``: the opaque cursors of ``list_releases`` (database identity + change sequence);
* ``clock``, ``codec`` (values to JSON and back) and ``faults`` (fault injection).

Callers: :func:`controller.platform.open_platform` (``sim:PATH``), ``controller.cli_platform``
(``relctl platform ...``), the demo, tests and benchmarks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from controller.platform.sim.model import AppSettings, FaultSettings, ReviewMode, UploadedVersion

if TYPE_CHECKING:
    from controller.platform.sim.simulator import Simulator

__all__ = ["AppSettings", "FaultSettings", "ReviewMode", "Simulator", "UploadedVersion"]


def __getattr__(name: str) -> Any:
    # ``Simulator`` is imported on first use: the CLI's tables use the settings above without
    # loading the simulator (``relctl validate`` starts faster).
    if name == "Simulator":
        from controller.platform.sim.simulator import Simulator

        return Simulator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
